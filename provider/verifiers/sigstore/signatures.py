"""Public keys and signature verification with Sigstore's schemes."""

from __future__ import annotations

from typing import Any

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed

from provider.verifiers.keys import PublicKey, TrustedKey


def spki(key: PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def verify_signature(key: PublicKey, signature: bytes, data: bytes, *, prehashed: bool = False) -> bool:
    """Sigstore's schemes: ECDSA (hash by curve, or a SHA-256 digest when ``prehashed``), RSA PKCS#1 v1.5 or PSS
    with SHA-256, Ed25519 (never prehashed)."""
    try:
        if isinstance(key, ed25519.Ed25519PublicKey):
            if prehashed:
                return False
            key.verify(signature, data)
            return True
        if isinstance(key, rsa.RSAPublicKey):
            algorithm: Any = Prehashed(hashes.SHA256()) if prehashed else hashes.SHA256()
            for pad in (padding.PKCS1v15(), padding.PSS(padding.MGF1(hashes.SHA256()), padding.PSS.AUTO)):
                try:
                    key.verify(signature, data, pad, algorithm)
                    return True
                except InvalidSignature:
                    continue
            return False
        if prehashed:
            key.verify(signature, data, ec.ECDSA(Prehashed(hashes.SHA256())))
            return True
        return TrustedKey(key=key, fingerprint="", source="").verify(signature, data)
    except (InvalidSignature, ValueError, UnsupportedAlgorithm):
        return False
