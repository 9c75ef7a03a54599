"""One signature and what came with it, and how a cosign layer's annotations provide it."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from cryptography import x509

from provider import mediatypes as mt
from provider.verifiers.sigstore.binding import Signer
from provider.verifiers.sigstore.common import Rejected, b64decode
from provider.verifiers.sigstore.fulcio import load_certificate, load_pem_chain
from provider.verifiers.sigstore.rekor import TlogEntry, parse_cosign_bundle


@dataclass(frozen=True, slots=True)
class Evidence:
    """One signature and what came with it. ``signed`` is the exact signed bytes (a SHA-256 digest when
    ``prehashed``); ``bind`` checks a Rekor entry body against the signature and signer."""

    signature: bytes
    signed: bytes
    bind: Callable[[Mapping[str, Any], Signer], None]
    certificate: x509.Certificate | None = None
    chain: tuple[x509.Certificate, ...] = ()
    tlog: tuple[TlogEntry, ...] = ()
    timestamps: tuple[bytes, ...] = ()
    timestamp_message: bytes = b""
    prehashed: bool = False


def evidence_from_annotations(
    annotations: Mapping[str, str],
    *,
    signature: bytes,
    signed: bytes,
    bind: Callable[[Mapping[str, Any], Signer], None],
    timestamp_message: bytes,
) -> Evidence:
    """Evidence from a cosign layer's annotations: certificate, chain, Rekor bundle (SET), RFC 3161 timestamp."""
    cert_pem = annotations.get(mt.ANNOTATION_COSIGN_CERTIFICATE)
    chain_pem = annotations.get(mt.ANNOTATION_COSIGN_CHAIN)
    bundle = annotations.get(mt.ANNOTATION_COSIGN_BUNDLE)
    stamp = annotations.get(mt.ANNOTATION_COSIGN_RFC3161)
    timestamps: tuple[bytes, ...] = ()
    if stamp:
        try:
            timestamps = (b64decode(json.loads(stamp)["SignedRFC3161Timestamp"], "RFC 3161 timestamp"),)
        except (json.JSONDecodeError, KeyError, TypeError):
            raise Rejected("RFC 3161 timestamp annotation is malformed") from None
    return Evidence(
        signature=signature,
        signed=signed,
        bind=bind,
        certificate=load_certificate(cert_pem.encode(), "certificate annotation") if cert_pem else None,
        chain=load_pem_chain(chain_pem, "chain annotation") if chain_pem else (),
        tlog=(parse_cosign_bundle(bundle),) if bundle else (),
        timestamps=timestamps,
        timestamp_message=timestamp_message,
    )
