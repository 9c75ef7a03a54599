"""Binding a Rekor entry body to the evidence: the recorded hash, signature and signer must be this signature's
(``hashedrekord`` 0.0.1/0.0.2, ``dsse`` 0.0.1/0.0.2, ``intoto`` 0.0.1/0.0.2)."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization

from provider.verifiers.keys import PublicKey
from provider.verifiers.sigstore.common import Rejected, b64decode, get_path
from provider.verifiers.sigstore.dsse import Envelope, pae
from provider.verifiers.sigstore.signatures import spki


@dataclass(frozen=True, slots=True)
class Signer:
    key: PublicKey
    certificate: x509.Certificate | None


def _certificate_names(cert: x509.Certificate, signer: Signer) -> bool:
    """A certificate recorded in a log entry is the signer's certificate, or (key signer) carries its key."""
    if signer.certificate is not None:
        return cert == signer.certificate
    try:
        return spki(cert.public_key()) == spki(signer.key)  # type: ignore[arg-type]
    except (UnsupportedAlgorithm, ValueError):
        return False


def _same_signer(pem: bytes, signer: Signer) -> bool:
    if b"CERTIFICATE" in pem:
        try:
            cert = x509.load_pem_x509_certificate(pem)
        except ValueError:
            return False
        return _certificate_names(cert, signer)
    try:
        key = serialization.load_pem_public_key(pem)
    except (ValueError, UnsupportedAlgorithm):
        return False
    return spki(key) == spki(signer.key)  # type: ignore[arg-type]


def _kind(body: Mapping[str, Any]) -> str:
    return f"{body.get('kind')} {body.get('apiVersion')}"


_V2_HASHES: Mapping[str, Callable[[bytes], Any]] = {
    "SHA2_256": hashlib.sha256,
    "SHA2_384": hashlib.sha384,
    "SHA2_512": hashlib.sha512,
}


def _v2_signer_matches(verifier: object, signer: Signer) -> bool:
    """A Rekor v2 ``Verifier`` (``publicKey.rawBytes`` DER SPKI or ``x509Certificate.rawBytes`` DER) names
    ``signer``."""
    cert_b64 = get_path(verifier, "x509Certificate", "rawBytes")
    if cert_b64 is not None:
        try:
            cert = x509.load_der_x509_certificate(b64decode(cert_b64, "Rekor verifier"))
        except ValueError:
            return False
        return _certificate_names(cert, signer)
    key_b64 = get_path(verifier, "publicKey", "rawBytes")
    return key_b64 is not None and b64decode(key_b64, "Rekor verifier") == spki(signer.key)


def _bind_v2_signature(recorded: object, signature: bytes, signer: Signer) -> bool:
    return b64decode(get_path(recorded, "content"), "Rekor signature") == signature and _v2_signer_matches(
        get_path(recorded, "verifier"), signer
    )


def _v2_hash_matches(recorded: object, digest_of: Callable[[str], bytes | None]) -> bool:
    """A Rekor v2 ``HashOutput`` (``{algorithm, digest}``) holds ``digest_of(algorithm)``; None refuses it."""
    algorithm = get_path(recorded, "algorithm")
    expected = digest_of(algorithm) if isinstance(algorithm, str) else None
    return expected is not None and b64decode(get_path(recorded, "digest"), "Rekor digest") == expected


def _digests_of(data: bytes) -> Callable[[str], bytes | None]:
    return lambda algorithm: _V2_HASHES[algorithm](data).digest() if algorithm in _V2_HASHES else None


def _bind_hashedrekord_v2(
    body: Mapping[str, Any], digest_of: Callable[[str], bytes | None], signature: bytes, signer: Signer
) -> None:
    """``hashedrekord`` 0.0.2 (Rekor v2): the entry records the digest of the signed bytes, this signature and
    this signer. Rekor v2 records a DSSE envelope this way too, hashing its PAE."""
    spec = get_path(body, "spec", "hashedRekordV002")
    if not _v2_hash_matches(get_path(spec, "data"), digest_of):
        raise Rejected("Rekor entry records another payload hash")
    if not _bind_v2_signature(get_path(spec, "signature"), signature, signer):
        raise Rejected("Rekor entry records another signature or signer")


def bind_message(body: Mapping[str, Any], digest: bytes, signature: bytes, signer: Signer) -> None:
    """``hashedrekord`` 0.0.1 or 0.0.2: the entry records sha256 of the signed bytes, this signature and this
    signer."""
    if _kind(body) == "hashedrekord 0.0.2":
        _bind_hashedrekord_v2(body, lambda algorithm: digest if algorithm == "SHA2_256" else None, signature, signer)
        return
    if _kind(body) != "hashedrekord 0.0.1":
        raise Rejected(f"Rekor entry kind {_kind(body)} does not record a message signature")
    if (
        get_path(body, "spec", "data", "hash", "algorithm") != "sha256"
        or get_path(body, "spec", "data", "hash", "value") != digest.hex()
    ):
        raise Rejected("Rekor entry records another payload hash")
    if b64decode(get_path(body, "spec", "signature", "content"), "Rekor signature") != signature:
        raise Rejected("Rekor entry records another signature")
    pem = b64decode(get_path(body, "spec", "signature", "publicKey", "content"), "Rekor public key")
    if not _same_signer(pem, signer):
        raise Rejected("Rekor entry records another signing key or certificate")


def bind_dsse(body: Mapping[str, Any], payload_type: str, payload: bytes, signature: bytes, signer: Signer) -> None:
    """``dsse`` 0.0.1 / 0.0.2, ``intoto`` 0.0.1 / 0.0.2, or Rekor v2's ``hashedrekord`` 0.0.2 over the PAE:
    payload hash, signature (where recorded) and signer."""
    kind = _kind(body)
    if kind == "hashedrekord 0.0.2":
        _bind_hashedrekord_v2(body, _digests_of(pae(payload_type, payload)), signature, signer)
        return
    if kind == "dsse 0.0.2":
        spec = get_path(body, "spec", "dsseV002")
        if not _v2_hash_matches(get_path(spec, "payloadHash"), _digests_of(payload)):
            raise Rejected("Rekor entry records another payload hash")
        signatures = get_path(spec, "signatures")
        if not isinstance(signatures, list) or not any(_bind_v2_signature(s, signature, signer) for s in signatures):
            raise Rejected("Rekor entry records another signature or signer")
        return
    payload_hex = hashlib.sha256(payload).hexdigest()
    spec = get_path(body, "spec")
    if kind == "dsse 0.0.1":
        recorded_hash = get_path(spec, "payloadHash")
        entries = [
            (s.get("signature"), s.get("verifier")) for s in get_path(spec, "signatures") or [] if isinstance(s, dict)
        ]
        decode_sig: Callable[[object], bytes] = lambda v: b64decode(v, "Rekor signature")  # noqa: E731
    elif kind == "intoto 0.0.2":
        recorded_hash = get_path(spec, "content", "payloadHash")
        sigs = get_path(spec, "content", "envelope", "signatures") or []
        entries = [(s.get("sig"), s.get("publicKey")) for s in sigs if isinstance(s, dict)]

        def decode_sig(v: object) -> bytes:
            return b64decode(b64decode(v, "Rekor signature").decode("ascii", "replace"), "Rekor signature")

    elif kind == "intoto 0.0.1":
        recorded_hash = get_path(spec, "content", "payloadHash")
        entries = [(None, get_path(spec, "publicKey"))]
        decode_sig = lambda v: signature  # noqa: E731  (0.0.1 records no signature)
    else:
        raise Rejected(f"Rekor entry kind {kind} does not record a DSSE envelope")
    if get_path(recorded_hash, "algorithm") != "sha256" or get_path(recorded_hash, "value") != payload_hex:
        raise Rejected("Rekor entry records another payload hash")
    for sig, verifier in entries:
        if decode_sig(sig) == signature and _same_signer(b64decode(verifier, "Rekor verifier"), signer):
            return
    raise Rejected("Rekor entry records another signature or signer")


def dsse_binder(envelope: Envelope, signature: bytes) -> Callable[[Mapping[str, Any], Signer], None]:
    """:func:`bind_dsse` for one envelope signature."""
    return lambda body, signer: bind_dsse(body, envelope.payload_type, envelope.payload, signature, signer)


def message_binder(digest: bytes, signature: bytes) -> Callable[[Mapping[str, Any], Signer], None]:
    """:func:`bind_message` for one signature over bytes whose SHA-256 is ``digest``."""
    return lambda body, signer: bind_message(body, digest, signature, signer)
