"""Embedded signed certificate timestamps (RFC 6962 §3.2) checked against configured CT log keys."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from datetime import datetime, timedelta

from cryptography import x509

from provider.verifiers.sigstore.common import Rejected
from provider.verifiers.sigstore.signatures import spki, verify_signature
from provider.verifiers.sigstore.trust import LogKey


def verify_sct(leaf: x509.Certificate, issuer: x509.Certificate, ctlogs: Mapping[bytes, LogKey]) -> str:
    """Verify one embedded precertificate SCT against the configured CT logs (RFC 6962 §3.2); returns its log ID."""
    try:
        scts = leaf.extensions.get_extension_for_class(x509.PrecertificateSignedCertificateTimestamps).value
        tbs = leaf.tbs_precertificate_bytes
    except (x509.ExtensionNotFound, ValueError):
        raise Rejected("certificate carries no embedded SCT") from None
    issuer_key_hash = hashlib.sha256(spki(issuer.public_key())).digest()  # type: ignore[arg-type]
    epoch = datetime(1970, 1, 1)
    for sct in scts:
        log = ctlogs.get(sct.log_id)
        if log is None:
            continue
        millis = (sct.timestamp.replace(tzinfo=None) - epoch) // timedelta(milliseconds=1)
        ext = sct.extension_bytes
        signed = (
            b"\x00\x00"
            + millis.to_bytes(8, "big")
            + b"\x00\x01"
            + issuer_key_hash
            + len(tbs).to_bytes(3, "big")
            + tbs
            + len(ext).to_bytes(2, "big")
            + ext
        )
        if verify_signature(log.key, sct.signature, signed):
            return bytes(sct.log_id).hex()
    raise Rejected("no embedded SCT verifies with a configured CT log key")
