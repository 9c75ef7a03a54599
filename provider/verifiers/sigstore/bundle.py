"""A Sigstore bundle's ``verificationMaterial`` (protobuf-specs JSON form: int64 as strings, bytes as base64):
certificate or chain, transparency-log entries, RFC 3161 timestamps."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm

from provider.verifiers.sigstore.common import Rejected, b64decode, get_path
from provider.verifiers.sigstore.fulcio import load_certificate
from provider.verifiers.sigstore.rekor import InclusionProof, TlogEntry


@dataclass(frozen=True, slots=True)
class Material:
    """What a bundle's ``verificationMaterial`` carries besides the signature."""

    certificate: x509.Certificate | None
    chain: tuple[x509.Certificate, ...]
    tlog: tuple[TlogEntry, ...]
    timestamps: tuple[bytes, ...]


def material_list(value: object, what: str) -> list[Any]:
    """A repeated field: absent is empty, anything but a list is refused."""
    if value is None:
        return []
    if not isinstance(value, list):
        raise Rejected(f"bundle {what} is not a list")
    return value


def _int(value: object, what: str) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and value.isdigit():
        return int(value)
    raise Rejected(f"bundle {what} is not an integer")


def _self_signed(cert: x509.Certificate) -> bool:
    if cert.issuer != cert.subject:
        return False
    try:
        cert.verify_directly_issued_by(cert)
    except (ValueError, TypeError, InvalidSignature, UnsupportedAlgorithm):
        return False
    return True


def refuse_root_in_chain(material: dict[str, Any]) -> None:
    """A chain (``x509CertificateChain``) must not carry a root certificate: the trust anchor comes from the
    configuration, never from the bundle (protobuf-specs client policy; sigstore-conformance
    ``test_verify_rejects_root``). sigstore-python only logs a warning, so this runs before either path."""
    raw_certs = get_path(material, "x509CertificateChain", "certificates")
    if not isinstance(raw_certs, list):
        return
    for index, entry in enumerate(raw_certs[1:], start=1):
        cert = load_certificate(b64decode(get_path(entry, "rawBytes"), "certificate"), "certificate")
        if _self_signed(cert):
            raise Rejected(
                f"bundle certificate chain includes a root certificate at position {index} "
                f"({cert.subject.rfc4514_string() or 'empty subject'}); a bundle must not carry its trust anchor"
            )


def parse_material(material: dict[str, Any]) -> Material:
    """The certificate (``certificate`` or ``x509CertificateChain``; none with ``publicKey``), log entries and
    timestamps; :class:`Rejected` when malformed."""
    cert: x509.Certificate | None = None
    chain: tuple[x509.Certificate, ...] = ()
    if "certificate" in material:
        cert = load_certificate(b64decode(get_path(material, "certificate", "rawBytes"), "certificate"), "certificate")
    elif "x509CertificateChain" in material:
        raw_certs = get_path(material, "x509CertificateChain", "certificates")
        if not isinstance(raw_certs, list) or not raw_certs:
            raise Rejected("bundle certificate chain is empty")
        certs = [load_certificate(b64decode(get_path(c, "rawBytes"), "certificate"), "certificate") for c in raw_certs]
        cert, chain = certs[0], tuple(certs[1:])
    elif "publicKey" not in material:
        raise Rejected("bundle has neither a certificate nor a public key")
    tlog = tuple(parse_tlog_entry(e) for e in material_list(material.get("tlogEntries"), "tlogEntries")[:16])
    stamps = material_list(get_path(material, "timestampVerificationData", "rfc3161Timestamps"), "rfc3161Timestamps")
    timestamps = tuple(b64decode(get_path(s, "signedTimestamp"), "RFC 3161 timestamp") for s in stamps[:16])
    return Material(cert, chain, tlog, timestamps)


def parse_tlog_entry(entry: object) -> TlogEntry:
    """A protobuf-specs ``TransparencyLogEntry``."""
    if not isinstance(entry, dict) or not isinstance(entry.get("canonicalizedBody"), str):
        raise Rejected("bundle transparency-log entry has no canonicalizedBody")
    promise = get_path(entry, "inclusionPromise", "signedEntryTimestamp")
    proof_doc = entry.get("inclusionProof")
    proof: InclusionProof | None = None
    if isinstance(proof_doc, dict):
        hashes = proof_doc.get("hashes") or []
        if not isinstance(hashes, list):
            raise Rejected("bundle inclusion proof is malformed")
        checkpoint = get_path(proof_doc, "checkpoint", "envelope")
        proof = InclusionProof(
            log_index=_int(proof_doc.get("logIndex"), "inclusion proof logIndex"),
            tree_size=_int(proof_doc.get("treeSize"), "inclusion proof treeSize"),
            root_hash=b64decode(proof_doc.get("rootHash"), "inclusion proof rootHash"),
            hashes=tuple(b64decode(h, "inclusion proof hash") for h in hashes[:64]),
            checkpoint=checkpoint if isinstance(checkpoint, str) else "",
        )
    return TlogEntry(
        body_b64=entry["canonicalizedBody"],
        integrated_time=_int(entry.get("integratedTime", 0), "integratedTime"),
        log_index=_int(entry.get("logIndex"), "logIndex"),
        log_id=b64decode(get_path(entry, "logId", "keyId"), "logId"),
        signed_entry_timestamp=None if promise is None else b64decode(promise, "signedEntryTimestamp"),
        inclusion_proof=proof,
    )
