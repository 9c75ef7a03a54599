"""The ``cosign`` verifier: cosign simple-signing signatures, key-based or keyless (Fulcio + Rekor).

Handles the legacy ``sha256-<hex>.sig`` tag form (one layer per signature) and cosign's OCI 1.1 referrer
form (``application/vnd.dev.cosign.artifact.sig.v1+json``), which stores the same layers. Each layer blob is
the signed payload; the signature is the ``dev.cosignproject.cosign/signature`` annotation. The payload must
be a ``cosign container image signature`` whose ``docker-manifest-digest`` is the subject's digest.

Keys verify directly. A keyless signature carries its Fulcio certificate (``dev.sigstore.cosign/certificate``,
``…/chain``); it counts when the Rekor SET (``dev.sigstore.cosign/bundle``) or an RFC 3161 timestamp proves a
signing time inside the certificate's validity, the chain reaches a configured Fulcio root at that time and the
SAN + OIDC issuer match a configured identity. The checks live in :mod:`provider.verifiers.sigstore`.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from provider import mediatypes as mt
from provider.confignode import Node
from provider.errors import ArtifactTooLargeError, DigestMismatchError, ManifestInvalidError
from provider.oci import Descriptor
from provider.verifiers.base import VerificationRequest, VerifierResult, VerifierSpec, verifier_types
from provider.verifiers.keys import TrustedKey
from provider.verifiers.sigstore.binding import message_binder
from provider.verifiers.sigstore.common import Rejected, std_b64decode
from provider.verifiers.sigstore.evidence import evidence_from_annotations
from provider.verifiers.sigstore.policy import SigstorePolicy, parse_policy

MAX_PAYLOAD_BYTES = 256 * 1024
MAX_SIGNATURES = 32


@dataclass(frozen=True, slots=True)
class CosignParams:
    keys: tuple[TrustedKey, ...]
    policy: SigstorePolicy = field(default_factory=SigstorePolicy)


def check_simple_signing(payload: bytes, subject_digest: str) -> tuple[str | None, dict[str, Any]]:
    """Return ``(problem, facts)`` for a simple-signing payload; ``problem`` is None when it binds the digest."""
    try:
        doc = json.loads(payload)
    except (UnicodeDecodeError, json.JSONDecodeError):
        return "payload is not JSON", {}
    critical = doc.get("critical") if isinstance(doc, dict) else None
    if not isinstance(critical, dict):
        return "payload has no critical section", {}
    image = _mapping(critical.get("image"))
    identity = _mapping(critical.get("identity"))
    facts = {
        "dockerReference": identity.get("docker-reference"),
        "signedDigest": image.get("docker-manifest-digest"),
    }
    if critical.get("type") != mt.COSIGN_SIGNATURE_TYPE:
        return f"payload type is {critical.get('type')!r}, not {mt.COSIGN_SIGNATURE_TYPE!r}", facts
    if image.get("docker-manifest-digest") != subject_digest:
        return f"payload signs {image.get('docker-manifest-digest')}, not {subject_digest}", facts
    return None, facts


def _mapping(value: object) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


class CosignVerifier:
    type = "cosign"

    def __init__(self, spec: VerifierSpec) -> None:
        self.name = spec.name
        self.artifact_types = spec.artifact_types
        self.params: CosignParams = spec.params

    def can_verify(self, artifact: Descriptor) -> bool:
        return artifact.artifact_type in self.artifact_types

    async def verify(self, request: VerificationRequest) -> VerifierResult:
        layers = [layer for layer in request.manifest.layers if layer.media_type == mt.COSIGN_SIMPLESIGNING]
        if not layers:
            return VerifierResult(False, "no cosign simple-signing layer in the signature manifest")
        failures: list[str] = []
        for index, layer in enumerate(layers[:MAX_SIGNATURES]):
            outcome = await self._verify_layer(request, layer)
            if isinstance(outcome, VerifierResult):
                return outcome
            failures.append(f"signature {index}: {outcome}")
        if len(layers) > MAX_SIGNATURES:
            failures.append(f"{len(layers) - MAX_SIGNATURES} further signatures not examined")
        return VerifierResult(
            False,
            "no signature verified with the configured keys: " + "; ".join(failures),
            {"signaturesChecked": min(len(layers), MAX_SIGNATURES), "failures": failures},
        )

    async def _verify_layer(self, request: VerificationRequest, layer: Descriptor) -> VerifierResult | str:
        encoded = layer.annotations.get(mt.ANNOTATION_COSIGN_SIGNATURE)
        if not encoded:
            return "no signature annotation"
        try:
            signature = std_b64decode(encoded, "signature annotation")
        except Rejected as exc:
            return exc.reason
        try:
            payload = await request.content.fetch_blob(layer, MAX_PAYLOAD_BYTES)
        except (ArtifactTooLargeError, DigestMismatchError, ManifestInvalidError) as exc:
            return str(exc)
        try:
            evidence = evidence_from_annotations(
                layer.annotations,
                signature=signature,
                signed=payload,
                bind=message_binder(hashlib.sha256(payload).digest(), signature),
                timestamp_message=signature,
            )
            facts = self.params.policy.verify(evidence, request.subject.ref, request.now)
        except Rejected as exc:
            return exc.reason
        problem, statement = check_simple_signing(payload, request.subject.descriptor.digest)
        if problem is not None:
            return f"signature valid but {problem}"
        if facts.get("signer") == "keyless":
            reason = f"keyless signature by {facts['identity']} ({facts['issuer']}) verified"
            if "integratedTime" in facts:
                reason += f", logged at {facts['integratedTime']}"
            elif "certificateCheckedAt" in facts:
                reason += f", certificate valid at verification time {facts['certificateCheckedAt']}"
        else:
            reason = f"signature verified with key {facts['keyFingerprint'][:19]}"
        return VerifierResult(
            True,
            reason,
            {
                **facts,
                "payloadDigest": layer.digest,
                **{k: v for k, v in statement.items() if v is not None},
            },
        )


@verifier_types.register("cosign")
class CosignPlugin:
    default_artifact_types = frozenset({mt.COSIGN_LEGACY_SIGNATURES, mt.COSIGN_OCI11_SIGNATURE})

    def parse_params(self, node: Node) -> CosignParams:
        """``keys`` and/or keyless ``identities`` with their trust material (see :func:`parse_policy`)."""
        before = len(node.problems.items)
        policy = parse_policy(node, require_tlog_default=False)
        if not policy.keys and not policy.identities and len(node.problems.items) == before:
            node.error("at least one public key or keyless identity is required", "keys")
        return CosignParams(keys=policy.keys, policy=policy)

    def create(self, spec: VerifierSpec) -> CosignVerifier:
        return CosignVerifier(spec)
