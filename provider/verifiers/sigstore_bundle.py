"""The ``sigstore-bundle`` verifier: Sigstore bundles (v0.1 to v0.3, cosign v3's default) attached as OCI 1.1
referrers, verified offline against a configured ``trusted_root.json`` (and/or PEM trust material).

What does which part:

* **sigstore-python** (``sigstore.verify.Verifier(trusted_root=TrustedRoot.from_file(...))``, ``verify_artifact``
  / ``verify_dsse``) verifies certificate-based bundles whose log entry is ``hashedrekord`` 0.0.1/0.0.2 or
  ``dsse`` 0.0.1: time from the SET or RFC 3161, Fulcio chain at that time, SCT, inclusion promise/proof,
  signature and log-body consistency. The identity policy it is given is ours (:class:`_IdentityPolicy`: SAN
  exact or regex, issuer from extension ``…1.8`` or ``…1.1``; sigstore-python's ``Identity`` reads only ``…1.1``).
* **Hand-written** (:mod:`provider.verifiers.sigstore`): public-key bundles (sigstore-python cannot load
  them), ``intoto`` 0.0.1/0.0.2 log entries (sigstore-python refuses their integrated time), certificate bundles
  when only PEM trust material is configured, and the binding to the image in every case: a message signature
  must sign the image manifest (``messageDigest`` = the image digest), a DSSE statement must name the image digest
  among its subjects.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import structlog
from cryptography import x509

from provider import mediatypes as mt
from provider.confignode import Node
from provider.errors import ArtifactTooLargeError, DigestMismatchError, ManifestInvalidError
from provider.oci import Descriptor
from provider.reference import ImageRef
from provider.verifiers.base import VerificationRequest, VerifierResult, VerifierSpec, verifier_types
from provider.verifiers.sigstore.binding import dsse_binder, message_binder
from provider.verifiers.sigstore.bundle import material_list, parse_material, refuse_root_in_chain
from provider.verifiers.sigstore.common import Rejected, b64decode, get_path, iso
from provider.verifiers.sigstore.dsse import Statement, pae, parse_envelope, parse_statement
from provider.verifiers.sigstore.evidence import Evidence
from provider.verifiers.sigstore.fulcio import IdentityRule, certificate_identity
from provider.verifiers.sigstore.policy import SigstorePolicy, parse_policy

if TYPE_CHECKING:
    from sigstore.verify import Verifier as SigstoreVerifier

# sigstore-python (with pydantic, rich, requests, …) is imported only when a verifier is configured with a
# trusted root, so deployments that do not use it do not pay its memory.

log = structlog.get_logger("referee.sigstore_bundle")

MAX_BUNDLE_BYTES = 4 * 1024 * 1024
MAX_BUNDLES = 16
_SIGSTORE_KINDS = frozenset({("hashedrekord", "0.0.1"), ("hashedrekord", "0.0.2"), ("dsse", "0.0.1")})


class _IdentityPolicy:
    """A sigstore-python ``VerificationPolicy`` applying our identity rules."""

    def __init__(self, rules: Sequence[IdentityRule]) -> None:
        self.rules = rules

    def verify(self, cert: x509.Certificate) -> None:
        from sigstore.errors import VerificationError as SigstoreVerificationError

        sans, issuer = certificate_identity(cert)
        if not any(rule.matches(sans, issuer) for rule in self.rules):
            raise SigstoreVerificationError(
                f"certificate identity {', '.join(sans) or '(none)'} with issuer {issuer or '(none)'} matches none "
                f"of the configured identities ({'; '.join(r.describe() for r in self.rules)})"
            )


@dataclass(frozen=True, slots=True)
class BundleOutcome:
    """A verified bundle: facts about the signer, and the verified in-toto Statement of a DSSE bundle."""

    facts: dict[str, Any]
    statement: Statement | None = None


@dataclass(frozen=True, slots=True)
class BundleChecker:
    """Verifies one bundle for one image digest under a :class:`SigstorePolicy`."""

    policy: SigstorePolicy
    sigstore: SigstoreVerifier | None = None

    def verify(self, raw: bytes, digest: str, ref: ImageRef, now: datetime | None = None) -> BundleOutcome:
        """Raise :class:`Rejected` with the reason unless the bundle verifies and binds ``digest``; ``now`` is the
        verification time (used only under ``certificateTime: now``)."""
        algorithm, _, hex_digest = digest.partition(":")
        if algorithm != "sha256" or len(hex_digest) != 64:
            raise Rejected(f"only sha256 image digests can be bound to a Sigstore bundle, not {algorithm}")
        try:
            doc = json.loads(raw)
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise Rejected("bundle is not JSON") from None
        if not isinstance(doc, dict) or not isinstance(doc.get("verificationMaterial"), dict):
            raise Rejected("bundle has no verificationMaterial")
        media_type = doc.get("mediaType")
        if not isinstance(media_type, str) or media_type not in mt.SIGSTORE_BUNDLE_TYPES:
            raise Rejected(f"unsupported bundle media type {media_type!r}")
        if ("dsseEnvelope" in doc) == ("messageSignature" in doc):
            raise Rejected("bundle must hold exactly one of dsseEnvelope or messageSignature")
        material = doc["verificationMaterial"]
        entries = material_list(material.get("tlogEntries"), "tlogEntries")
        material_list(get_path(material, "timestampVerificationData", "rfc3161Timestamps"), "rfc3161Timestamps")
        kinds = {(str(get_path(e, "kindVersion", "kind")), str(get_path(e, "kindVersion", "version"))) for e in entries}
        keyless = "certificate" in material or "x509CertificateChain" in material
        refuse_root_in_chain(material)
        base = {"bundleMediaType": media_type, "content": "dsse-envelope" if "dsseEnvelope" in doc else "message"}
        # sigstore-python knows only the trusted root's CAs: with private-PKI roots (caRoots) the hand-written path
        # checks every certificate bundle against all configured roots.
        private = bool(self.policy.trust.private_cas)
        if keyless and self.sigstore is not None and entries and kinds <= _SIGSTORE_KINDS and not private:
            outcome = self._with_sigstore(raw, doc, bytes.fromhex(hex_digest), ref)
        else:
            outcome = self._by_hand(doc, bytes.fromhex(hex_digest), ref, now)
        if outcome.statement is not None and not outcome.statement.names_digest(digest):
            raise Rejected(
                f"statement subjects ({', '.join(outcome.statement.subject_digests()) or 'none'}) do not include "
                f"the image digest {digest}"
            )
        facts = {**base, **outcome.facts}
        if outcome.statement is not None:
            facts["predicateType"] = outcome.statement.predicate_type
        return BundleOutcome(facts, outcome.statement)

    # -- sigstore-python ---------------------------------------------------------------------------------------------

    def _with_sigstore(self, raw: bytes, doc: dict[str, Any], digest: bytes, ref: ImageRef) -> BundleOutcome:
        from sigstore.errors import Error as SigstoreError
        from sigstore.hashes import Hashed
        from sigstore.models import Bundle
        from sigstore_models.common.v1 import HashAlgorithm

        assert self.sigstore is not None
        rules = self.policy.identities_for(ref)
        if not rules:
            raise Rejected(f"keyless bundle, but no identity is configured for {ref.registry}/{ref.repository}")
        policy = _IdentityPolicy(rules)
        statement: Statement | None = None
        try:
            bundle = Bundle.from_json(raw)
            if "dsseEnvelope" in doc:
                payload_type, payload = self.sigstore.verify_dsse(bundle, policy)
                statement = parse_statement(payload_type, payload)
            else:
                self.sigstore.verify_artifact(Hashed(algorithm=HashAlgorithm.SHA2_256, digest=digest), bundle, policy)
            cert = bundle.signing_certificate
        except (SigstoreError, ValueError) as exc:
            raise Rejected(f"bundle does not verify: {exc}") from None
        sans, issuer = certificate_identity(cert)
        rule = next(r for r in rules if r.matches(sans, issuer))
        facts: dict[str, Any] = {
            "signer": "keyless",
            "identity": next(s for s in sans if rule.matches([s], issuer)),
            "issuer": issuer,
            "verifiedWith": "sigstore-python",
            "tlogVerified": True,
        }
        entry = (doc["verificationMaterial"].get("tlogEntries") or [{}])[0]
        if entry.get("inclusionPromise") and str(entry.get("integratedTime", "")).isdigit():
            facts["integratedTime"] = iso(datetime.fromtimestamp(int(entry["integratedTime"]), UTC))
        if str(entry.get("logIndex", "")).isdigit():
            facts["logIndex"] = int(entry["logIndex"])
        return BundleOutcome(facts, statement)

    # -- by hand -------------------------------------------------------------------------------------------------

    def _by_hand(self, doc: dict[str, Any], digest: bytes, ref: ImageRef, now: datetime | None) -> BundleOutcome:
        material = parse_material(doc["verificationMaterial"])

        def evidence(signature: bytes, signed: bytes, prehashed: bool, bind: Any) -> Evidence:
            return Evidence(
                signature=signature,
                signed=signed,
                bind=bind,
                certificate=material.certificate,
                chain=material.chain,
                tlog=material.tlog,
                timestamps=material.timestamps,
                timestamp_message=signature,
                prehashed=prehashed,
            )

        if "messageSignature" in doc:
            message = doc["messageSignature"]
            signature = b64decode(get_path(message, "signature"), "message signature")
            recorded = get_path(message, "messageDigest")
            if recorded is not None:
                if get_path(recorded, "algorithm") != "SHA2_256":
                    raise Rejected(f"message digest algorithm {get_path(recorded, 'algorithm')!r} is not SHA2_256")
                signed_digest = b64decode(get_path(recorded, "digest"), "message digest")
                if signed_digest != digest:
                    raise Rejected(f"bundle signs sha256:{signed_digest.hex()}, not the image sha256:{digest.hex()}")
            facts = self.policy.verify(
                evidence(signature, digest, True, message_binder(digest, signature)),
                ref,
                now,
            )
            return BundleOutcome({**facts, "verifiedWith": "referee"})
        envelope = parse_envelope(doc["dsseEnvelope"])
        failure: Rejected | None = None
        for signature in envelope.signatures:
            try:
                facts = self.policy.verify(
                    evidence(
                        signature,
                        pae(envelope.payload_type, envelope.payload),
                        False,
                        dsse_binder(envelope, signature),
                    ),
                    ref,
                    now,
                )
            except Rejected as exc:
                failure = failure or exc
                continue
            statement = parse_statement(envelope.payload_type, envelope.payload)
            return BundleOutcome({**facts, "verifiedWith": "referee"}, statement)
        assert failure is not None
        raise failure


def sigstore_verifier(trusted_root_path: str | None, node: Node) -> SigstoreVerifier | None:
    """sigstore-python's verifier for the configured trusted root (None without one)."""
    if trusted_root_path is None:
        return None
    from sigstore.errors import Error as SigstoreError
    from sigstore.models import TrustedRoot
    from sigstore.verify import Verifier as SigstoreVerifier

    try:
        return SigstoreVerifier(trusted_root=TrustedRoot.from_file(trusted_root_path))
    except (SigstoreError, ValueError, OSError) as exc:
        node.error(f"sigstore-python cannot use this trusted root: {exc}", "trusted_root")
        return None


async def fetch_bundles(request: VerificationRequest) -> list[tuple[Descriptor, bytes | str]]:
    """The bundle layers of a referrer manifest: ``(layer, bytes)`` or ``(layer, problem)``."""
    layers = [layer for layer in request.manifest.layers if layer.media_type in mt.SIGSTORE_BUNDLE_TYPES]
    out: list[tuple[Descriptor, bytes | str]] = []
    for layer in layers[:MAX_BUNDLES]:
        try:
            out.append((layer, await request.content.fetch_blob(layer, MAX_BUNDLE_BYTES)))
        except (ArtifactTooLargeError, DigestMismatchError, ManifestInvalidError) as exc:
            out.append((layer, str(exc)))
    return out


@dataclass(frozen=True, slots=True)
class BundleParams:
    checker: BundleChecker
    predicate_types: frozenset[str] = field(default_factory=frozenset)


class SigstoreBundleVerifier:
    type = "sigstore-bundle"

    def __init__(self, spec: VerifierSpec) -> None:
        self.name = spec.name
        self.artifact_types = spec.artifact_types
        self.params: BundleParams = spec.params

    def can_verify(self, artifact: Descriptor) -> bool:
        return artifact.artifact_type in self.artifact_types

    async def verify(self, request: VerificationRequest) -> VerifierResult:
        bundles = await fetch_bundles(request)
        if not bundles:
            return VerifierResult(False, "no Sigstore bundle layer in the referrer manifest")
        failures: list[str] = []
        digest = request.subject.descriptor.digest
        for index, (layer, data) in enumerate(bundles):
            if isinstance(data, str):
                failures.append(f"bundle {index}: {data}")
                continue
            try:
                outcome = self.params.checker.verify(data, digest, request.subject.ref, request.now)
                wanted = self.params.predicate_types
                if outcome.statement is not None and wanted and outcome.statement.predicate_type not in wanted:
                    raise Rejected(f"predicate type {outcome.statement.predicate_type} is not one of the accepted")
            except Rejected as exc:
                failures.append(f"bundle {index}: {exc.reason}")
                continue
            facts = {**outcome.facts, "bundleDigest": layer.digest}
            who = facts.get("identity") or facts.get("keyFingerprint", "")[:19]
            log.debug("bundle_verified", verifier=self.name, subject=digest, signer=who)
            return VerifierResult(True, f"Sigstore bundle verified: signed by {who}", facts)
        return VerifierResult(
            False,
            "no Sigstore bundle verified: " + "; ".join(failures),
            {"bundlesChecked": len(bundles), "failures": failures},
        )


def parse_bundle_checker(node: Node, *, require_tlog_default: bool) -> BundleChecker:
    before = len(node.problems.items)
    policy = parse_policy(node, require_tlog_default=require_tlog_default)
    if not policy.keys and not policy.identities and len(node.problems.items) == before:
        node.error("at least one public key or keyless identity is required", "keys")
    return BundleChecker(policy, sigstore_verifier(policy.trust.trusted_root_path, node))


@verifier_types.register("sigstore-bundle")
class SigstoreBundlePlugin:
    default_artifact_types = mt.SIGSTORE_BUNDLE_TYPES

    def parse_params(self, node: Node) -> BundleParams:
        """Shared key/identity/trust parameters (``requireTlog`` defaults to true) and ``predicateTypes``."""
        checker = parse_bundle_checker(node, require_tlog_default=True)
        return BundleParams(checker, frozenset(node.str_list("predicate_types")))

    def create(self, spec: VerifierSpec) -> SigstoreBundleVerifier:
        return SigstoreBundleVerifier(spec)
