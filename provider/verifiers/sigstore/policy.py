"""The trust policy: which keys and keyless identities may sign a repository, and what proves when."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from provider.config import matches_any
from provider.confignode import Node
from provider.reference import ImageRef
from provider.verifiers.keys import TrustedKey, parse_keys
from provider.verifiers.sigstore.binding import Signer
from provider.verifiers.sigstore.common import Rejected, iso
from provider.verifiers.sigstore.evidence import Evidence
from provider.verifiers.sigstore.fulcio import IdentityRule, certificate_identity, parse_identities, verify_chain
from provider.verifiers.sigstore.rekor import verify_tlog_entry
from provider.verifiers.sigstore.sct import verify_sct
from provider.verifiers.sigstore.signatures import verify_signature
from provider.verifiers.sigstore.timestamps import verify_timestamp
from provider.verifiers.sigstore.trust import Authority, TrustMaterial, parse_trust

MAX_TLOG_ENTRIES = 8
MAX_TIMESTAMPS = 8
CERTIFICATE_TIMES = ("signed", "now")
# ``cosign verify`` flags as users copy them into YAML, and the ``identities[]`` field each one is here.
COSIGN_IDENTITY_FLAGS = {
    "certificateIdentity": "identity",
    "certificateIdentityRegexp": "identityRegExp",
    "certificateIdentityRegExp": "identityRegExp",
    "certificateOidcIssuer": "issuer",
    "certificateOIDCIssuer": "issuer",
    "certificateOidcIssuerRegexp": "issuerRegExp",
    "certificateOidcIssuerRegExp": "issuerRegExp",
}
# Other ``cosign verify`` flags and what takes their place.
COSIGN_OTHER_FLAGS = {
    "key": "keys: [<PEM text, file path or KMS URI>] (a list)",
    "insecureIgnoreTlog": "requireTlog: false",
    "insecureIgnoreSCT": "insecureIgnoreSct",
    "rekorUrl": "Referee verifies offline: rekorKeys or trustedRoot",
    "certificateChain": "caRoots (a private CA's roots) or fulcioRoots",
}


@dataclass(frozen=True, slots=True)
class SigstorePolicy:
    """Who may sign (keys and keyless identities, each with its own repository scopes) and what proves when."""

    keys: tuple[TrustedKey, ...] = ()
    identities: tuple[IdentityRule, ...] = ()
    trust: TrustMaterial = field(default_factory=TrustMaterial)
    require_tlog: bool = False
    ignore_sct: bool = False
    certificate_time: str = "signed"

    def keys_for(self, ref: ImageRef) -> list[TrustedKey]:
        return [k for k in self.keys if matches_any(k.scopes, ref.registry, ref.repository)]

    def identities_for(self, ref: ImageRef) -> list[IdentityRule]:
        return [i for i in self.identities if matches_any(i.scopes, ref.registry, ref.repository)]

    def verify(self, evidence: Evidence, ref: ImageRef, now: datetime | None = None) -> dict[str, Any]:
        """Facts about the verified signer; :class:`Rejected` with the most specific reason otherwise. ``now`` is
        the verification time, used only under ``certificateTime: now``."""
        keys, identities = self.keys_for(ref), self.identities_for(ref)
        if not keys and not identities:
            raise Rejected(f"no key or identity is configured for {ref.registry}/{ref.repository}")
        key_failure: Rejected | None = None
        if keys:
            try:
                return self._verify_with_keys(evidence, keys)
            except Rejected as exc:
                key_failure = exc
        if evidence.certificate is not None and identities:
            return self._verify_keyless(evidence, evidence.certificate, identities, now)
        if key_failure is not None:
            raise key_failure
        raise Rejected("signature has no certificate and no key is configured for this repository")

    def _tlog(self, evidence: Evidence, signer: Signer, required: bool) -> tuple[list[datetime], dict[str, Any]]:
        if len(evidence.tlog) > MAX_TLOG_ENTRIES:
            raise Rejected(f"more than {MAX_TLOG_ENTRIES} transparency-log entries")
        if not evidence.tlog or (not self.trust.rekor and not required):
            if required:
                raise Rejected("no transparency-log entry (Rekor SET), which this verifier requires")
            return [], {"tlogVerified": False}
        if not self.trust.rekor:
            raise Rejected("no Rekor public key is configured to verify the transparency-log entry")
        times: list[datetime] = []
        facts: dict[str, Any] = {"tlogVerified": True}
        for entry in evidence.tlog:
            when = verify_tlog_entry(entry, self.trust.rekor)
            evidence.bind(entry.body(), signer)
            facts.setdefault("logIndex", entry.log_index)
            facts.setdefault("logID", entry.log_id.hex())
            if when is not None:
                times.append(when)
                facts.setdefault("integratedTime", iso(when))
        return times, facts

    def _timestamps(self, evidence: Evidence) -> list[datetime]:
        if len(evidence.timestamps) > MAX_TIMESTAMPS:
            raise Rejected(f"more than {MAX_TIMESTAMPS} RFC 3161 timestamps")
        if not evidence.timestamps or not self.trust.tsas:
            return []
        return [verify_timestamp(ts, evidence.timestamp_message, self.trust.tsas) for ts in evidence.timestamps]

    def _verify_with_keys(self, evidence: Evidence, keys: Sequence[TrustedKey]) -> dict[str, Any]:
        key = next(
            (
                k
                for k in keys
                if verify_signature(k.key, evidence.signature, evidence.signed, prehashed=evidence.prehashed)
            ),
            None,
        )
        if key is None:
            raise Rejected(f"signature does not verify with any of {len(keys)} configured keys")
        _, facts = self._tlog(evidence, Signer(key.key, None), self.require_tlog)
        stamps = self._timestamps(evidence)
        if stamps:
            facts["timestamps"] = [iso(t) for t in stamps]
        return {"signer": "key", "keyFingerprint": key.fingerprint, "keyType": key.kind, **facts}

    def _verify_keyless(
        self, evidence: Evidence, cert: x509.Certificate, identities: Sequence[IdentityRule], now: datetime | None
    ) -> dict[str, Any]:
        key = cert.public_key()
        if not isinstance(key, ec.EllipticCurvePublicKey | rsa.RSAPublicKey | ed25519.Ed25519PublicKey):
            raise Rejected("certificate key type is not supported")
        if not verify_signature(key, evidence.signature, evidence.signed, prehashed=evidence.prehashed):
            raise Rejected("signature does not verify with the certificate's key")
        times, facts = self._tlog(evidence, Signer(key, cert), self.require_tlog)
        stamps = self._timestamps(evidence)
        sources = [("integrated", t) for t in times] + [("RFC 3161 timestamp", t) for t in stamps]
        authorities, roots = self._authorities()
        if not sources:
            if self.certificate_time != "now" or now is None:
                raise Rejected(
                    "keyless signature without a verified signing time (a Rekor SET or an RFC 3161 timestamp "
                    "from a configured authority)"
                )
            # certificateTime: now (private PKI only, enforced by the configuration): checked when verified, as
            # cosign does for a certificate without a log entry or timestamp.
            sources = [("verification", now)]
            authorities, roots = self.trust.private_cas, "private (caRoots)"
            facts["certificateCheckedAt"] = iso(now)
        chain: list[x509.Certificate] = []
        for source, moment in sources:
            chain = verify_chain(cert, evidence.chain, authorities, moment, source, roots)
        if not self.ignore_sct:
            facts["sctLogID"] = verify_sct(cert, chain[0], self.trust.ctlogs)
        sans, issuer = certificate_identity(cert)
        rule = next((r for r in identities if r.matches(sans, issuer)), None)
        if rule is None:
            raise Rejected(
                f"certificate identity {', '.join(sans) or '(none)'} with issuer {issuer or '(none)'} matches none "
                f"of the configured identities ({'; '.join(r.describe() for r in identities)})"
            )
        if stamps:
            facts["timestamps"] = [iso(t) for t in stamps]
        return {
            "signer": "keyless",
            "identity": next(s for s in sans if rule.matches([s], issuer)),
            "issuer": issuer,
            "certificateFingerprint": "sha256:" + cert.fingerprint(hashes.SHA256()).hex(),
            "sctVerified": "sctLogID" in facts,
            **facts,
        }

    def _authorities(self) -> tuple[tuple[Authority, ...], str]:
        """The roots a certificate may chain to at a verified signing time, and their name in messages."""
        if not self.trust.private_cas:
            return self.trust.fulcio, "Fulcio"
        if not self.trust.fulcio:
            return self.trust.private_cas, "private (caRoots)"
        return self.trust.fulcio + self.trust.private_cas, "Fulcio or private (caRoots)"


def parse_policy(node: Node, *, require_tlog_default: bool, keys_name: str = "keys") -> SigstorePolicy:
    """The shared parameters: ``keys``, ``identities``, trust material, ``requireTlog``, ``insecureIgnoreSct`` and
    ``certificateTime``."""
    _cosign_cli_spellings(node)
    keys = parse_keys(node, keys_name)
    identities = parse_identities(node)
    trust = parse_trust(node)
    require_tlog = node.flag("require_tlog", require_tlog_default)
    ignore_sct = node.flag("insecure_ignore_sct", False)
    certificate_time = node.string("certificate_time", "signed", choices=CERTIFICATE_TIMES)
    if identities and not trust.fulcio and not trust.private_cas:
        node.error(
            "keyless identities need Fulcio roots (fulcioRoots or trustedRoot) or private CA roots (caRoots)",
            "identities",
        )
    if certificate_time == "now":
        _check_certificate_time_now(node, trust, bool(identities))
    if identities and not trust.ctlogs and not ignore_sct:
        node.error(
            "keyless identities need CT log keys (ctLogKeys or a trustedRoot with ctlogs) to verify the "
            "certificate's embedded SCT; insecureIgnoreSct: true accepts certificates without one",
            "identities",
        )
    if require_tlog and not trust.rekor:
        node.error("requireTlog needs Rekor public keys (rekorKeys or trustedRoot)", "require_tlog")
    return SigstorePolicy(
        keys=keys,
        identities=identities,
        trust=trust,
        require_tlog=require_tlog,
        ignore_sct=ignore_sct,
        certificate_time=certificate_time,
    )


def _cosign_cli_spellings(node: Node) -> None:
    """One problem naming the ``cosign verify`` flags written as keys, with the configuration that means the same:
    not an "unknown key" per flag followed by "a key or identity is required"."""
    given = {flag: node.misspelled(flag) for flag in (*COSIGN_IDENTITY_FLAGS, *COSIGN_OTHER_FLAGS)}
    flags = [flag for flag in COSIGN_IDENTITY_FLAGS if given[flag][0]]
    if flags:
        rule = {COSIGN_IDENTITY_FLAGS[flag]: given[flag][1] for flag in flags}
        written = ", ".join(f"{field}: {json.dumps(value)}" for field, value in rule.items())
        node.error(
            f"{', '.join(flags)} {'is a cosign CLI flag' if len(flags) == 1 else 'are cosign CLI flags'}; "
            f"Referee takes a list of keyless identities, each with identity (or identityRegExp) and issuer "
            f"(or issuerRegExp): identities: [{{{written}}}]",
            flags[0],
        )
    for flag, instead in COSIGN_OTHER_FLAGS.items():
        if given[flag][0]:
            node.error(f"{flag} is a cosign CLI flag; here: {instead}", flag)


def _check_certificate_time_now(node: Node, trust: TrustMaterial, has_identities: bool) -> None:
    """``certificateTime: now`` is for a private PKI's roots only: never with Fulcio roots, whose certificates
    live minutes and count only at a time a log entry or timestamp proves."""
    fulcio_keys = [name for name in ("trustedRoot", "fulcioRoots") if node.has(name)]
    if fulcio_keys:
        node.error(
            f"now is only for private-PKI roots (caRoots), never with Fulcio roots ({' and '.join(fulcio_keys)}): "
            "Fulcio certificates are checked only at a signing time a Rekor entry or RFC 3161 timestamp proves",
            "certificate_time",
        )
    elif not trust.private_cas:
        node.error("now needs the private PKI's root certificates (caRoots)", "certificate_time")
    if not has_identities:
        node.error("now applies to certificates, but no keyless identities are configured", "certificate_time")
