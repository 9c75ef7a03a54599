"""DSSE envelopes (PAE) and in-toto Statements v0.1 / v1."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from provider.verifiers.sigstore.common import Rejected, b64decode

STATEMENT_TYPES = frozenset({"https://in-toto.io/Statement/v0.1", "https://in-toto.io/Statement/v1"})
INTOTO_PAYLOAD_TYPE = "application/vnd.in-toto+json"


@dataclass(frozen=True, slots=True)
class Envelope:
    payload_type: str
    payload: bytes
    signatures: tuple[bytes, ...]


def pae(payload_type: str, payload: bytes) -> bytes:
    """DSSE pre-authentication encoding."""
    kind = payload_type.encode()
    return b"DSSEv1 %d %s %d %s" % (len(kind), kind, len(payload), payload)


def parse_envelope(doc: object) -> Envelope:
    """A DSSE envelope (JSON bytes or an already-decoded object)."""
    if isinstance(doc, bytes | str):
        try:
            doc = json.loads(doc)
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise Rejected("DSSE envelope is not JSON") from None
    if not isinstance(doc, dict):
        raise Rejected("DSSE envelope is not a JSON object")
    payload_type = doc.get("payloadType")
    if not isinstance(payload_type, str):
        raise Rejected("DSSE envelope has no payloadType")
    payload = b64decode(doc.get("payload"), "DSSE payload")
    raw_sigs = doc.get("signatures")
    if not isinstance(raw_sigs, list) or not raw_sigs:
        raise Rejected("DSSE envelope has no signatures")
    sigs = tuple(b64decode(s.get("sig") if isinstance(s, dict) else None, "DSSE signature") for s in raw_sigs[:16])
    return Envelope(payload_type, payload, sigs)


@dataclass(frozen=True, slots=True)
class Statement:
    type: str
    subjects: tuple[Mapping[str, Any], ...]
    predicate_type: str
    predicate: Any
    raw: Mapping[str, Any]

    def names_digest(self, digest: str) -> bool:
        """True when a subject's digest equals ``digest`` (``alg:hex``; hex compared case-insensitively)."""
        alg, _, hex_value = digest.partition(":")
        return any(
            isinstance(s.get("digest"), dict)
            and isinstance(s["digest"].get(alg), str)
            and s["digest"][alg].lower() == hex_value.lower()
            for s in self.subjects
        )

    def subject_digests(self) -> list[str]:
        out: list[str] = []
        for s in self.subjects:
            digest = s.get("digest")
            if isinstance(digest, dict):
                out.extend(f"{k}:{v}" for k, v in digest.items() if isinstance(v, str))
        return out


def parse_statement(payload_type: str, payload: bytes) -> Statement:
    """An in-toto Statement v0.1 or v1 (``application/vnd.in-toto+json``)."""
    if payload_type != INTOTO_PAYLOAD_TYPE:
        raise Rejected(f"DSSE payloadType is {payload_type!r}, not {INTOTO_PAYLOAD_TYPE!r}")
    try:
        doc = json.loads(payload)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise Rejected("in-toto payload is not JSON") from None
    if not isinstance(doc, dict):
        raise Rejected("in-toto payload is not a JSON object")
    kind = doc.get("_type")
    if kind not in STATEMENT_TYPES:
        raise Rejected(f"in-toto payload type {kind!r} is not a Statement v0.1 or v1")
    subjects = doc.get("subject")
    predicate_type = doc.get("predicateType")
    if not isinstance(subjects, list) or not subjects or not all(isinstance(s, dict) for s in subjects):
        raise Rejected("in-toto Statement has no subjects")
    if not isinstance(predicate_type, str) or not predicate_type:
        raise Rejected("in-toto Statement has no predicateType")
    return Statement(str(kind), tuple(subjects), predicate_type, doc.get("predicate"), doc)
