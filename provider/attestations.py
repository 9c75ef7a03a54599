"""Attestor-style evidence as it travels from a store to a verifier.

The ``grafeas`` and ``lookaside`` stores do not find OCI referrers: they find Grafeas occurrences and
containers/image signature files. Each one becomes a *synthetic artifact*: an OCI manifest built by the store
(``subject`` = the image, one layer = a Referee attestation document), carried inline in the listed descriptor
(``data``), so the executor fetches and digest-checks it like any referrer.

Which note an occurrence is attached to is not covered by any signature, and a registry listing is attacker
input: a pusher could publish a manifest shaped like a synthetic artifact claiming another note. So the store
*seals* each document with an HMAC under a key that exists only in this process; verifiers accept only sealed
documents (:func:`is_sealed`).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from provider import mediatypes as mt
from provider.errors import ManifestInvalidError
from provider.oci import Descriptor, Manifest, parse_manifest
from provider.reference import compute_digest, verify_digest

NOTE_NAME = re.compile(r"^projects/[^/\s]+/notes/[^/\s]+$")
_SEAL_KEY = secrets.token_bytes(32)
EMPTY_CONFIG = b"{}"
MAX_SIGNATURES_PER_ATTESTATION = 16


def seal(document: bytes) -> str:
    return hmac.new(_SEAL_KEY, document, hashlib.sha256).hexdigest()


def is_sealed(document: bytes, tag: str | None) -> bool:
    return tag is not None and hmac.compare_digest(seal(document), tag)


def synthetic_artifact(
    subject: Descriptor,
    artifact_type: str,
    document: Mapping[str, Any],
    annotations: Mapping[str, str],
) -> Descriptor:
    """The descriptor of a store-built manifest whose only layer is the sealed ``document``."""
    doc = json.dumps(document, sort_keys=True, separators=(",", ":")).encode()
    layer = {
        "mediaType": mt.REFEREE_ATTESTATION_DOCUMENT,
        "digest": compute_digest(doc),
        "size": len(doc),
        "data": base64.b64encode(doc).decode(),
        "annotations": {mt.ANNOTATION_ATTESTATION_SEAL: seal(doc)},
    }
    manifest = {
        "schemaVersion": 2,
        "mediaType": mt.OCI_MANIFEST,
        "artifactType": artifact_type,
        "config": {"mediaType": mt.OCI_EMPTY, "digest": compute_digest(EMPTY_CONFIG), "size": len(EMPTY_CONFIG)},
        "layers": [layer],
        "subject": {"mediaType": subject.media_type, "digest": subject.digest, "size": subject.size},
        "annotations": dict(annotations),
    }
    raw = json.dumps(manifest, sort_keys=True, separators=(",", ":")).encode()
    return Descriptor(
        media_type=mt.OCI_MANIFEST,
        digest=compute_digest(raw),
        size=len(raw),
        artifact_type=artifact_type,
        annotations=dict(annotations),
        data=raw,
    )


def synthetic_manifest(descriptor: Descriptor) -> Manifest:
    """Parse the manifest a store carried inline in ``descriptor`` (digest-checked)."""
    if descriptor.data is None:
        raise ManifestInvalidError(f"synthetic artifact {descriptor.digest} carries no manifest")
    verify_digest(descriptor.data, descriptor.digest, f"synthetic artifact {descriptor.digest}")
    return parse_manifest(descriptor.data, descriptor.digest, mt.OCI_MANIFEST, "synthetic artifact")


@dataclass(frozen=True, slots=True)
class SignatureEntry:
    """One signature of an attestation, with the key id the store recorded beside it (a hint for PGP, the lookup
    key for PKIX) and, for containers/image ``sigstore-json`` files, the payload that travels with it."""

    signature: bytes
    key_id: str | None = None
    embedded_payload: bytes | None = None


@dataclass(frozen=True, slots=True)
class Attestation:
    """What a verifier judges: the unsigned metadata (source, note, location) and the signatures with the
    payload they claim to cover. ``problems`` lists parts that could not be read."""

    source: str
    note: str | None
    occurrence: str | None
    location: str | None
    content_type: str | None
    payload: bytes | None
    signatures: tuple[SignatureEntry, ...]
    problems: tuple[str, ...] = ()


def grafeas_document(occurrence: Mapping[str, Any], resource: str) -> dict[str, Any]:
    """The attestation document for one Grafeas occurrence (its ``attestation`` object kept as sent)."""
    return {
        "source": "grafeas",
        "occurrence": occurrence.get("name"),
        "note": occurrence.get("noteName"),
        "resource": resource,
        "createTime": occurrence.get("createTime"),
        "attestation": occurrence.get("attestation"),
    }


def lookaside_document(location: str, index: int, blob: bytes) -> dict[str, Any]:
    return {
        "source": "lookaside",
        "location": location,
        "index": index,
        "signature": base64.b64encode(blob).decode(),
    }


def decode_bytes(value: object) -> bytes | None:
    """Protobuf JSON ``bytes``: standard or URL-safe base64, padding optional. ``None`` when not decodable."""
    if not isinstance(value, str):
        return None
    text = "".join(value.split())
    text += "=" * (-len(text) % 4)
    try:
        if "-" in text or "_" in text:
            return base64.urlsafe_b64decode(text.encode())
        return base64.b64decode(text.encode(), validate=True)
    except (binascii.Error, ValueError):
        return None


def parse_attestation(raw: bytes) -> Attestation:
    """Read a sealed attestation document; malformed parts become ``problems`` (the verifier reports them)."""
    try:
        doc = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        return Attestation("unknown", None, None, None, None, None, (), ("attestation document is not JSON",))
    if not isinstance(doc, dict):
        return Attestation("unknown", None, None, None, None, None, (), ("attestation document is not an object",))
    source = str(doc.get("source") or "unknown")
    if source == "lookaside":
        return _lookaside_attestation(doc)
    return _grafeas_attestation(doc)


def _text(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


def _lookaside_attestation(doc: Mapping[str, Any]) -> Attestation:
    location = _text(doc.get("location"))
    blob = decode_bytes(doc.get("signature"))
    if blob is None:
        return Attestation("lookaside", None, None, location, None, None, (), ("signature file is not readable",))
    entries, problems = _containers_signature(blob)
    return Attestation("lookaside", None, None, location, None, None, entries, problems)


def _containers_signature(blob: bytes) -> tuple[tuple[SignatureEntry, ...], tuple[str, ...]]:
    """A containers/image signature file: raw OpenPGP, or ``\\x00<format>\\n<data>`` (``simple-signing`` =
    OpenPGP, ``sigstore-json`` = a cosign simple-signing payload with its signature annotation)."""
    if not blob:
        return (), ("empty signature file",)
    if blob[0] != 0:
        return (SignatureEntry(blob),), ()
    format_id, newline, chunk = blob[1:].partition(b"\n")
    if not newline:
        return (), ("signature file format marker has no newline",)
    if format_id == b"simple-signing":
        return (SignatureEntry(chunk),), ()
    if format_id != b"sigstore-json":
        return (), (f"unsupported signature file format {format_id[:40].decode('ascii', 'replace')!r}",)
    try:
        doc = json.loads(chunk)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        return (), ("sigstore-json signature is not JSON",)
    annotations = doc.get("annotations") if isinstance(doc, dict) else None
    payload = decode_bytes(doc.get("payload")) if isinstance(doc, dict) else None
    signature = decode_bytes(annotations.get(mt.ANNOTATION_COSIGN_SIGNATURE)) if isinstance(annotations, dict) else None
    if payload is None or signature is None:
        return (), ("sigstore-json signature lacks a base64 payload or signature annotation",)
    return (SignatureEntry(signature, None, payload),), ()


def _grafeas_attestation(doc: Mapping[str, Any]) -> Attestation:
    note, occurrence = _text(doc.get("note")), _text(doc.get("occurrence"))
    body = doc.get("attestation")
    problems: list[str] = []
    if not isinstance(body, dict):
        return Attestation("grafeas", note, occurrence, None, None, None, (), ("occurrence has no attestation",))
    content_type: str | None = None
    payload: bytes | None = None
    entries: list[SignatureEntry] = []
    generic: Mapping[str, Any] = body
    inner = body.get("attestation")
    if isinstance(inner, dict):  # v1beta1: attestation.attestation.{pgpSignedAttestation | genericSignedAttestation}
        pgp = inner.get("pgpSignedAttestation")
        if isinstance(pgp, dict):
            content_type = _text(pgp.get("contentType"))
            signature = _text(pgp.get("signature"))
            if signature is None:
                problems.append("pgpSignedAttestation has no signature")
            else:
                entries.append(SignatureEntry(signature.encode(), _text(pgp.get("pgpKeyId"))))
        nested = inner.get("genericSignedAttestation")
        generic = nested if isinstance(nested, dict) else {}
        if generic:
            content_type = content_type or _text(generic.get("contentType"))
    if "serializedPayload" in generic:
        payload = decode_bytes(generic.get("serializedPayload"))
        if payload is None:
            problems.append("serializedPayload is not base64")
    signatures = generic.get("signatures")
    if signatures is not None and not isinstance(signatures, list):
        problems.append("signatures is not a list")
        signatures = []
    for i, item in enumerate(signatures or []):
        if not isinstance(item, dict):
            problems.append(f"signatures[{i}] is not an object")
            continue
        signature_bytes = decode_bytes(item.get("signature"))
        if signature_bytes is None:
            problems.append(f"signatures[{i}].signature is not base64")
            continue
        entries.append(SignatureEntry(signature_bytes, _text(item.get("publicKeyId"))))
    if not entries and body.get("jwts"):
        problems.append("JWT attestations are not supported")
    if not entries and not problems:
        problems.append("occurrence carries no signature")
    kept = tuple(entries[:MAX_SIGNATURES_PER_ATTESTATION])
    return Attestation("grafeas", note, occurrence, None, content_type, payload, kept, tuple(problems))
