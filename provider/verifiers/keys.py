"""Public keys from configuration (PEM inline or file), with stable fingerprints."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa

from provider.confignode import Node
from provider.verifiers import kms

PublicKey = ec.EllipticCurvePublicKey | rsa.RSAPublicKey | ed25519.Ed25519PublicKey

_EC_HASHES: dict[str, tuple[hashes.HashAlgorithm, ...]] = {
    "secp256r1": (hashes.SHA256(),),
    "secp384r1": (hashes.SHA256(), hashes.SHA384()),
    "secp521r1": (hashes.SHA256(), hashes.SHA512()),
}
MIN_RSA_BITS = 2048


@dataclass(frozen=True, slots=True)
class TrustedKey:
    key: PublicKey
    fingerprint: str
    source: str
    scopes: tuple[str, ...] = ("*",)

    @property
    def kind(self) -> str:
        if isinstance(self.key, ec.EllipticCurvePublicKey):
            return f"ecdsa-{self.key.curve.name}"
        if isinstance(self.key, rsa.RSAPublicKey):
            return f"rsa-{self.key.key_size}"
        return "ed25519"

    def verify(self, signature: bytes, data: bytes) -> bool:
        """True when ``signature`` over ``data`` verifies under this key (cosign's schemes)."""
        key = self.key
        try:
            if isinstance(key, ed25519.Ed25519PublicKey):
                key.verify(signature, data)
                return True
            if isinstance(key, rsa.RSAPublicKey):
                key.verify(signature, data, padding.PKCS1v15(), hashes.SHA256())
                return True
            for algorithm in _EC_HASHES.get(key.curve.name, (hashes.SHA256(),)):
                try:
                    key.verify(signature, data, ec.ECDSA(algorithm))
                    return True
                except InvalidSignature:
                    continue
            return False
        except InvalidSignature:
            return False


def fingerprint(key: PublicKey) -> str:
    der = key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return "sha256:" + hashlib.sha256(der).hexdigest()


def load_public_key(pem: bytes, *, der: bool = False) -> PublicKey:
    """Parse a PEM SubjectPublicKeyInfo (DER with ``der``); raise ValueError with a user-facing reason."""
    if not der and b"-----BEGIN" not in pem:
        raise ValueError("not a PEM public key")
    try:
        key = serialization.load_der_public_key(pem) if der else serialization.load_pem_public_key(pem)
    except (ValueError, UnsupportedAlgorithm):
        raise ValueError("not a PEM public key" if not der else "the KMS returned no usable public key") from None
    if isinstance(key, rsa.RSAPublicKey):
        if key.key_size < MIN_RSA_BITS:
            raise ValueError(f"RSA key of {key.key_size} bits is too small (minimum {MIN_RSA_BITS})")
        return key
    if isinstance(key, ec.EllipticCurvePublicKey):
        if key.curve.name not in _EC_HASHES:
            raise ValueError(f"unsupported elliptic curve {key.curve.name}")
        return key
    if isinstance(key, ed25519.Ed25519PublicKey):
        return key
    raise ValueError(f"unsupported public key type {type(key).__name__}")


def parse_keys(node: Node, name: str = "keys") -> tuple[TrustedKey, ...]:
    """``keys``: a list whose items are PEM text, a path to a PEM file or a KMS key reference (``awskms://…``,
    :mod:`provider.verifiers.kms`, fetched once here), or mappings ``{key: <any of those>, scopes: [patterns]}``
    limiting the repositories the key may sign for."""

    def parse(item: object, path: str) -> TrustedKey | None:
        if isinstance(item, dict):
            entry = Node(item, path, node.problems)
            value = entry.string("key")
            scopes = entry.str_list("scopes", ("*",))
            entry.finish()
            if value is None:
                return None
            found = parse(value, f"{path}.key")
            return None if found is None else replace(found, scopes=scopes)
        if not isinstance(item, str) or not item.strip():
            node.problems.add(path, "expected PEM text or a file path")
            return None
        if kms.is_kms_reference(item):
            try:
                der, source = kms.fetch_public_key(item)
                key = load_public_key(der, der=True)
            except ValueError as exc:
                node.problems.add(path, f"{item}: {exc}")
                return None
            node.problems.fingerprint.update(b"kms\0" + item.encode() + b"\0" + der)
            return TrustedKey(key=key, fingerprint=fingerprint(key), source=source)
        if "-----BEGIN" in item:
            data: bytes | None = item.encode()
            source = "inline"
        else:
            data = node.problems.read_file(item, path, max_bytes=64 * 1024)
            source = item
        if data is None:
            return None
        try:
            key = load_public_key(data)
        except ValueError as exc:
            node.problems.add(path, str(exc))
            return None
        return TrustedKey(key=key, fingerprint=fingerprint(key), source=source)

    keys = node.parse_each(name, parse)
    return keys
