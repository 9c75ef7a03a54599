"""What an attestor-style signature claims, and the verifier shared by the ``pgp``, ``pkix`` and ``attestor`` types.

A verified payload is either a simple-signing JSON document (containers/image ``atomic container signature``,
Binary Authorization's ``Google cloud binauthz container signature``, cosign's type) or, in the Grafeas tutorial
flow, the text of an image reference with its digest (``gcr.io/org/app@sha256:…``). Either way it must name the
subject's digest; its ``docker-reference`` is matched as configured (``signedIdentity``, containers/image's names).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from provider import mediatypes as mt
from provider.attestations import NOTE_NAME, Attestation, SignatureEntry, is_sealed, parse_attestation
from provider.confignode import Node
from provider.errors import ArtifactTooLargeError, DigestMismatchError, ManifestInvalidError, ReferenceInvalidError
from provider.oci import Descriptor
from provider.reference import ImageRef, parse_reference
from provider.verifiers.base import Subject, VerificationRequest, VerifierResult, VerifierSpec

MAX_DOCUMENT_BYTES = 1024 * 1024
MAX_REASONS = 4
IDENTITY_MODES = ("matchRepoDigestOrExact", "matchRepository", "matchExact", "ignore")
DEFAULT_PAYLOAD_TYPES = (
    mt.SIMPLE_SIGNING_ATOMIC_TYPE,
    mt.SIMPLE_SIGNING_BINAUTHZ_TYPE,
    mt.COSIGN_SIGNATURE_TYPE,
)
DEFAULT_ARTIFACT_TYPES = mt.ATTESTED_EVIDENCE_TYPES


@dataclass(frozen=True, slots=True)
class ClaimPolicy:
    """How a verified payload must relate to the image: its identity mode and accepted simple-signing types
    (compared case-insensitively, as Binary Authorization's documentation spells its type both ways)."""

    signed_identity: str = "matchRepoDigestOrExact"
    payload_types: frozenset[str] = frozenset(t.casefold() for t in DEFAULT_PAYLOAD_TYPES)


@dataclass(frozen=True, slots=True)
class Claim:
    shape: str
    docker_reference: str | None
    digest: str | None
    type: str | None = None


@dataclass(frozen=True, slots=True)
class Checked:
    """A signature that verified cryptographically: the bytes it covers and facts about the key."""

    payload: bytes
    key: str
    facts: Mapping[str, Any] = field(default_factory=dict)


class SignatureChecker(Protocol):
    """Checks one kind of signature (OpenPGP, PKIX) with configured keys."""

    def claims(self, entry: SignatureEntry) -> bool: ...

    def unclaimed(self, entry: SignatureEntry) -> str: ...

    def check(self, entry: SignatureEntry, attestation: Attestation, now: datetime) -> Checked | str: ...


def parse_claim_policy(node: Node, default_identity: str) -> ClaimPolicy:
    identity = node.string("signed_identity", default_identity, choices=IDENTITY_MODES)
    types = node.str_list("payload_types", DEFAULT_PAYLOAD_TYPES)
    if node.has("payload_types") and not types:
        node.error("must list at least one simple-signing type", "payload_types")
    return ClaimPolicy(signed_identity=identity, payload_types=frozenset(t.casefold() for t in types))


def parse_notes(node: Node) -> frozenset[str]:
    """``notes``: when set, only Grafeas attestations under these notes count."""
    notes = node.str_list("notes")
    for i, note in enumerate(notes):
        if not NOTE_NAME.match(note):
            node.problems.add(f"{node.child_path('notes')}[{i}]", f"{note!r} is not a note name")
    return frozenset(notes)


def read_claim(payload: bytes, content_type: str | None) -> Claim | str:
    """Parse a verified payload; a string is the reason it says nothing usable."""
    stripped = payload.strip()
    if content_type == mt.GCR_IMAGE_URL_CONTENT_TYPE or (stripped and not stripped.startswith(b"{")):
        return _image_url_claim(stripped)
    try:
        doc = json.loads(payload)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        return "signed payload is neither simple-signing JSON nor an image reference"
    critical = doc.get("critical") if isinstance(doc, dict) else None
    if not isinstance(critical, dict):
        return "signed payload has no critical section"
    identity = _mapping(critical.get("identity"))
    image = _mapping(critical.get("image"))
    reference, digest, kind = (
        identity.get("docker-reference"),
        image.get("docker-manifest-digest"),
        critical.get("type"),
    )
    return Claim(
        shape="simple-signing",
        docker_reference=reference if isinstance(reference, str) else None,
        digest=digest if isinstance(digest, str) else None,
        type=kind if isinstance(kind, str) else None,
    )


def _mapping(value: object) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _image_url_claim(text: bytes) -> Claim | str:
    try:
        value = text.decode("utf-8")
    except UnicodeDecodeError:
        return "signed payload is not text"
    value = value.removeprefix("https://")
    if not value or any(c.isspace() for c in value) or "@" not in value:
        return "signed text is not a single image reference with a digest"
    try:
        ref = parse_reference(value)
    except ReferenceInvalidError as exc:
        return f"signed text is not an image reference: {exc.message}"
    return Claim(shape="image-url", docker_reference=value, digest=ref.digest)


def judge_claim(claim: Claim, subject: Subject, policy: ClaimPolicy) -> str | None:
    """``None`` when the claim vouches for the subject under ``policy``, else why not."""
    if claim.shape == "simple-signing":
        if claim.type is None:
            return "signed payload has no critical.type"
        if claim.type.casefold() not in policy.payload_types:
            return f"signed payload type {claim.type!r} is not accepted"
    expected = subject.descriptor.digest
    if claim.digest is None:
        return "signed payload names no image digest"
    if claim.digest != expected:
        return f"signature is for {claim.digest}, not this image ({expected})"
    return _judge_identity(claim, subject.ref, policy.signed_identity)


def _has_tag(reference: str) -> bool:
    name = reference.partition("@")[0]
    return ":" in name.rpartition("/")[2]


def _judge_identity(claim: Claim, image: ImageRef, mode: str) -> str | None:
    if mode == "ignore":
        return None
    if not claim.docker_reference:
        return "signed payload names no docker-reference"
    try:
        signed = parse_reference(claim.docker_reference)
    except ReferenceInvalidError:
        return f"signed docker-reference {claim.docker_reference!r} is not a valid reference"
    if signed.name != image.name:
        return f"signed for repository {signed.name}, not {image.name}"
    if mode == "matchRepository" or (mode == "matchRepoDigestOrExact" and image.tag is None):
        return None
    signed_tag = signed.tag if _has_tag(claim.docker_reference) else None
    if image.tag is not None:
        if signed_tag != image.tag or (signed.digest is not None and signed.digest != image.digest):
            return f"signed for {claim.docker_reference}, not {image.name}:{image.tag} (exact match required)"
        return None
    if signed_tag is not None or signed.digest != image.digest:
        return f"signed for {claim.docker_reference}, not {image.name}@{image.digest} (exact match required)"
    return None


class AttestationVerifier:
    """Judges one synthetic attestation artifact with one or more signature checkers.

    Succeeds on the first signature that verifies with a configured key and whose payload vouches for the
    image; everything else is a failure with the reasons, never a pass."""

    def __init__(
        self,
        spec: VerifierSpec,
        checkers: Sequence[SignatureChecker],
        notes: frozenset[str],
        claims: ClaimPolicy,
    ) -> None:
        self.name = spec.name
        self.type = spec.type
        self.artifact_types = spec.artifact_types
        self._checkers = tuple(checkers)
        self._notes = notes
        self._claims = claims

    def can_verify(self, artifact: Descriptor) -> bool:
        return artifact.artifact_type in self.artifact_types

    async def verify(self, request: VerificationRequest) -> VerifierResult:
        layers = [layer for layer in request.manifest.layers if layer.media_type == mt.REFEREE_ATTESTATION_DOCUMENT]
        if len(layers) != 1:
            return VerifierResult(False, "artifact is not an attestation presented by a Referee evidence store")
        layer = layers[0]
        try:
            raw = await request.content.fetch_blob(layer, MAX_DOCUMENT_BYTES)
        except (ArtifactTooLargeError, DigestMismatchError, ManifestInvalidError) as exc:
            return VerifierResult(False, f"attestation document unreadable: {exc}")
        if not is_sealed(raw, layer.annotations.get(mt.ANNOTATION_ATTESTATION_SEAL)):
            return VerifierResult(False, "attestation document was not produced by a Referee evidence store")
        attestation = parse_attestation(raw)
        where = _where(attestation)
        if self._notes and attestation.note not in self._notes:
            listed = ", ".join(sorted(self._notes))
            found = f"under note {attestation.note}" if attestation.note else "not attached to a Grafeas note"
            return VerifierResult(False, f"attestation is {found}; {self.name} accepts only {listed}", where)
        failures = list(attestation.problems)
        for index, entry in enumerate(attestation.signatures):
            outcome = self._check(entry, attestation, request)
            if isinstance(outcome, VerifierResult):
                return outcome
            failures.append(f"signature {index}: {outcome}" if len(attestation.signatures) > 1 else outcome)
        reason = "; ".join(failures[:MAX_REASONS]) or "no signature"
        return VerifierResult(False, reason, {**where, "failures": failures})

    def _check(
        self, entry: SignatureEntry, attestation: Attestation, request: VerificationRequest
    ) -> VerifierResult | str:
        checkers = [c for c in self._checkers if c.claims(entry)]
        if not checkers:
            return self._checkers[0].unclaimed(entry)
        reasons: list[str] = []
        for checker in checkers:
            checked = checker.check(entry, attestation, request.now)
            if isinstance(checked, str):
                reasons.append(checked)
                continue
            claim = read_claim(checked.payload, attestation.content_type)
            problem = claim if isinstance(claim, str) else judge_claim(claim, request.subject, self._claims)
            if problem is not None:
                reasons.append(f"signature by {checked.key} verified, but {problem}")
                continue
            assert isinstance(claim, Claim)
            details: dict[str, Any] = {**_where(attestation), **checked.facts, "payloadShape": claim.shape}
            if claim.docker_reference:
                details["dockerReference"] = claim.docker_reference
            details["signedDigest"] = claim.digest
            source = f"Grafeas note {attestation.note}" if attestation.note else attestation.source
            return VerifierResult(True, f"attestation by {checked.key} verified ({source})", details)
        return "; ".join(reasons)


def _where(attestation: Attestation) -> dict[str, Any]:
    out: dict[str, Any] = {"source": attestation.source}
    if attestation.note:
        out["note"] = attestation.note
    if attestation.occurrence:
        out["occurrence"] = attestation.occurrence
    if attestation.location:
        out["location"] = attestation.location
    return out
