"""Rekor transparency-log entries: cosign's bundle annotation, signed entry timestamps (RFC 8785), RFC 9162
inclusion proofs and signed checkpoints."""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import rfc8785

from provider.verifiers.sigstore.common import Rejected, b64decode, iso
from provider.verifiers.sigstore.signatures import verify_signature
from provider.verifiers.sigstore.trust import LogKey

MAX_PROOF_HASHES = 64


@dataclass(frozen=True, slots=True)
class InclusionProof:
    log_index: int
    tree_size: int
    root_hash: bytes
    hashes: tuple[bytes, ...]
    checkpoint: str


@dataclass(frozen=True, slots=True)
class TlogEntry:
    """A Rekor entry as cosign's ``bundle`` annotation or a Sigstore bundle carries it."""

    body_b64: str
    integrated_time: int
    log_index: int
    log_id: bytes
    signed_entry_timestamp: bytes | None
    inclusion_proof: InclusionProof | None = None

    def body(self) -> dict[str, Any]:
        try:
            body = json.loads(base64.b64decode(self.body_b64, validate=True))
        except (binascii.Error, ValueError):
            raise Rejected("Rekor entry body is not base64 JSON") from None
        if not isinstance(body, dict):
            raise Rejected("Rekor entry body is not a JSON object")
        return body


def parse_cosign_bundle(annotation: str) -> TlogEntry:
    """cosign's ``dev.sigstore.cosign/bundle`` annotation: ``{SignedEntryTimestamp, Payload{body, integratedTime,
    logIndex, logID}}``."""
    try:
        doc = json.loads(annotation)
        payload = doc["Payload"]
        entry = TlogEntry(
            body_b64=payload["body"],
            integrated_time=payload["integratedTime"],
            log_index=payload["logIndex"],
            log_id=bytes.fromhex(payload["logID"]),
            signed_entry_timestamp=b64decode(doc["SignedEntryTimestamp"], "SignedEntryTimestamp"),
        )
    except (json.JSONDecodeError, KeyError, TypeError, ValueError):
        raise Rejected("Rekor bundle annotation is malformed") from None
    if not isinstance(entry.body_b64, str) or not all(
        isinstance(v, int) and not isinstance(v, bool) for v in (entry.integrated_time, entry.log_index)
    ):
        raise Rejected("Rekor bundle annotation is malformed")
    return entry


def _hash_children(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def _verify_inclusion(entry: TlogEntry, proof: InclusionProof) -> None:
    """RFC 9162 §2.1.3.2 audit path verification of the entry's leaf against the proof's root."""
    if not 0 <= proof.log_index < proof.tree_size or len(proof.hashes) > MAX_PROOF_HASHES:
        raise Rejected("Rekor inclusion proof is malformed")
    node = hashlib.sha256(b"\x00" + base64.b64decode(entry.body_b64)).digest()
    fn, sn = proof.log_index, proof.tree_size - 1
    for sibling in proof.hashes:
        if sn == 0:
            raise Rejected("Rekor inclusion proof is longer than the tree")
        if fn & 1 or fn == sn:
            node = _hash_children(sibling, node)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            node = _hash_children(node, sibling)
        fn >>= 1
        sn >>= 1
    if sn != 0 or node != proof.root_hash:
        raise Rejected("Rekor inclusion proof does not lead to the checkpoint's root hash")


def _verify_checkpoint(proof: InclusionProof, rekor: Mapping[bytes, LogKey]) -> None:
    """The signed note (``origin\\nsize\\nroot\\n…\\n\\n— name base64(keyhint‖sig)``) must be signed by a
    configured Rekor key and name the proof's tree size and root hash."""
    if not proof.checkpoint.strip():
        raise Rejected(
            "Rekor inclusion proof has no checkpoint (inclusionProof.checkpoint.envelope is missing or empty): "
            "without the log's signed tree head the proof proves nothing"
        )
    text, sep, signatures = proof.checkpoint.partition("\n\n")
    lines = text.split("\n")
    if not sep:
        raise Rejected("Rekor checkpoint is malformed: no blank line between the note and its signatures")
    if len(lines) < 3:
        raise Rejected("Rekor checkpoint is malformed: the note needs an origin, a tree size and a root hash line")
    try:
        size = int(lines[1])
    except ValueError:
        raise Rejected(f"Rekor checkpoint is malformed: tree size {lines[1][:32]!r} is not a number") from None
    try:
        root = base64.b64decode(lines[2], validate=True)
    except (ValueError, binascii.Error):
        raise Rejected("Rekor checkpoint is malformed: root hash is not base64") from None
    if size != proof.tree_size or root != proof.root_hash:
        raise Rejected("Rekor checkpoint does not match the inclusion proof")
    note = (text + "\n").encode()
    for line in signatures.splitlines():
        if not line.startswith("\u2014 "):
            continue
        _name, _, encoded = line[2:].rpartition(" ")
        try:
            raw = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError):
            continue
        for log in rekor.values():
            if log.log_id[:4] == raw[:4] and verify_signature(log.key, raw[4:], note):
                return
    raise Rejected("Rekor checkpoint is not signed by a configured Rekor key")


def verify_tlog_entry(entry: TlogEntry, rekor: Mapping[bytes, LogKey]) -> datetime | None:
    """Verify the entry's SET (→ its integrated time, returned) and/or inclusion proof + checkpoint."""
    if entry.signed_entry_timestamp is None and entry.inclusion_proof is None:
        raise Rejected("Rekor entry has neither a signed entry timestamp nor an inclusion proof")
    log = rekor.get(entry.log_id)
    if log is None:
        raise Rejected(f"Rekor entry is from log {entry.log_id.hex()[:16]}…, for which no key is configured")
    verified_time: datetime | None = None
    if entry.signed_entry_timestamp is not None:
        canonical = rfc8785.dumps(
            {
                "body": entry.body_b64,
                "integratedTime": entry.integrated_time,
                "logIndex": entry.log_index,
                "logID": entry.log_id.hex(),
            }
        )
        if not verify_signature(log.key, entry.signed_entry_timestamp, canonical):
            raise Rejected("Rekor signed entry timestamp (SET) does not verify with the configured Rekor key")
        verified_time = datetime.fromtimestamp(entry.integrated_time, UTC)
        if not log.validity.contains(verified_time):
            raise Rejected(f"Rekor key was not valid at integrated time {iso(verified_time)}")
    if entry.inclusion_proof is not None:
        _verify_inclusion(entry, entry.inclusion_proof)
        _verify_checkpoint(entry.inclusion_proof, rekor)
    return verified_time
