"""The ``pkix`` verifier: Binary Authorization PKIX attestations.

An occurrence holds ``serializedPayload`` and ``signatures[] {signature, publicKeyId}``. The signature is checked
over the exact payload bytes with the configured key whose id equals ``publicKeyId`` (Binary Authorization looks
keys up by id), using the algorithm the key was declared with: ECDSA P-256/P-384/P-521 (DER signatures, as
Cloud KMS and ``openssl dgst -sign`` write them), RSASSA-PSS (any salt length, as Go's verifier accepts) or
RSASSA-PKCS#1 v1.5, with SHA-256 or SHA-512. A key without an explicit ``id`` gets Binary Authorization's
default, ``ni:///sha-256;<base64url(SHA-256(DER SubjectPublicKeyInfo))>``. A signature without any key id
(containers/image ``sigstore-json`` files in a lookaside store) is tried with every configured key.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

from provider.attestations import Attestation, SignatureEntry
from provider.confignode import Node
from provider.verifiers.base import VerifierSpec, verifier_types
from provider.verifiers.claims import (
    DEFAULT_ARTIFACT_TYPES,
    AttestationVerifier,
    Checked,
    ClaimPolicy,
    parse_claim_policy,
    parse_notes,
)
from provider.verifiers.keys import PublicKey, fingerprint, load_public_key
from provider.verifiers.pgp import looks_like_openpgp


@dataclass(frozen=True, slots=True)
class Algorithm:
    family: str  # "ecdsa" | "rsa-pss" | "rsa-pkcs1"
    size: int | str  # RSA modulus bits, or the curve name
    hash: type[hashes.HashAlgorithm]


def _algorithms() -> dict[str, Algorithm]:
    table: dict[str, Algorithm] = {}
    for bits, digest in ((2048, "SHA256"), (3072, "SHA256"), (4096, "SHA256"), (4096, "SHA512")):
        rsa_hash: type[hashes.HashAlgorithm] = hashes.SHA256 if digest == "SHA256" else hashes.SHA512
        table[f"RSA_PSS_{bits}_{digest}"] = table[f"RSA_SIGN_PSS_{bits}_{digest}"] = Algorithm(
            "rsa-pss", bits, rsa_hash
        )
        table[f"RSA_SIGN_PKCS1_{bits}_{digest}"] = Algorithm("rsa-pkcs1", bits, rsa_hash)
    curves: tuple[tuple[str, str, str, type[hashes.HashAlgorithm]], ...] = (
        ("P256", "secp256r1", "SHA256", hashes.SHA256),
        ("P384", "secp384r1", "SHA384", hashes.SHA384),
        ("P521", "secp521r1", "SHA512", hashes.SHA512),
    )
    for curve, name, suffix, h in curves:
        table[f"ECDSA_{curve}_{suffix}"] = table[f"EC_SIGN_{curve}_{suffix}"] = Algorithm("ecdsa", name, h)
    return table


ALGORITHMS = _algorithms()


@dataclass(frozen=True, slots=True, eq=False)
class PkixKey:
    id: str
    key: PublicKey
    algorithm_name: str
    algorithm: Algorithm
    fingerprint: str

    def verify(self, signature: bytes, payload: bytes) -> bool:
        algorithm, key = self.algorithm, self.key
        try:
            if algorithm.family == "ecdsa" and isinstance(key, ec.EllipticCurvePublicKey):
                key.verify(signature, payload, ec.ECDSA(algorithm.hash()))
            elif algorithm.family == "rsa-pss" and isinstance(key, rsa.RSAPublicKey):
                pss = padding.PSS(mgf=padding.MGF1(algorithm.hash()), salt_length=padding.PSS.AUTO)
                key.verify(signature, payload, pss, algorithm.hash())
            elif algorithm.family == "rsa-pkcs1" and isinstance(key, rsa.RSAPublicKey):
                key.verify(signature, payload, padding.PKCS1v15(), algorithm.hash())
            else:
                return False
        except (InvalidSignature, ValueError):
            return False
        return True


def default_key_id(key: PublicKey) -> str:
    """Binary Authorization's default PKIX key id (RFC 6920 ``ni`` URI of the DER SubjectPublicKeyInfo)."""
    der = key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    digest = base64.urlsafe_b64encode(hashlib.sha256(der).digest()).rstrip(b"=").decode()
    return f"ni:///sha-256;{digest}"


def _matches(key: PublicKey, algorithm: Algorithm) -> str | None:
    if algorithm.family == "ecdsa":
        if not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.name != algorithm.size:
            return f"needs an EC {algorithm.size} key"
        return None
    if not isinstance(key, rsa.RSAPublicKey) or key.key_size != algorithm.size:
        return f"needs an RSA {algorithm.size}-bit key"
    return None


def parse_pkix_keys(node: Node, name: str) -> tuple[PkixKey, ...]:
    """``<name>``: mappings ``{key: <PEM or path>, signatureAlgorithm: <Binary Authorization name>, id: <opt.>}``."""

    def parse(item: object, path: str) -> PkixKey | None:
        entry = Node(item, path, node.problems)
        value = entry.string("key")
        algorithm_name = entry.string("signature_algorithm")
        key_id = entry.string("id", None)
        entry.finish()
        if value is None or algorithm_name is None:
            return None
        algorithm = ALGORITHMS.get(algorithm_name)
        if algorithm is None:
            entry.error(
                f"unknown algorithm {algorithm_name!r}; known: {', '.join(sorted(ALGORITHMS))}", "signature_algorithm"
            )
            return None
        data = value.encode() if "-----BEGIN" in value else node.problems.read_file(value, f"{path}.key", 64 * 1024)
        if data is None:
            return None
        try:
            key = load_public_key(data)
        except ValueError as exc:
            entry.error(str(exc), "key")
            return None
        mismatch = _matches(key, algorithm)
        if mismatch is not None:
            entry.error(f"{algorithm_name} {mismatch}", "signature_algorithm")
            return None
        return PkixKey(key_id or default_key_id(key), key, algorithm_name, algorithm, fingerprint(key))

    keys = node.parse_each(name, parse)
    seen: set[str] = set()
    for key in keys:
        if key.id in seen:
            node.error(f"key id {key.id!r} is used twice", name)
        seen.add(key.id)
    return keys


class PkixChecker:
    """Checks PKIX signatures over ``serializedPayload`` with the key its ``publicKeyId`` names."""

    def __init__(self, keys: tuple[PkixKey, ...]) -> None:
        self._keys = keys
        self._ids = {k.id for k in keys}

    def claims(self, entry: SignatureEntry) -> bool:
        if entry.key_id is not None:
            return entry.key_id in self._ids
        return entry.embedded_payload is not None or not looks_like_openpgp(entry.signature)

    def unclaimed(self, entry: SignatureEntry) -> str:
        if entry.key_id is not None:
            return f"signed with key id {entry.key_id!r}, which is not a configured key"
        return "not a PKIX signature (it is OpenPGP)"

    def check(self, entry: SignatureEntry, attestation: Attestation, now: datetime) -> Checked | str:
        payload = entry.embedded_payload if entry.embedded_payload is not None else attestation.payload
        if payload is None:
            return "the attestation carries no serializedPayload for its PKIX signature"
        candidates = [k for k in self._keys if entry.key_id is None or k.id == entry.key_id]
        for key in candidates:
            if key.verify(entry.signature, payload):
                facts: dict[str, Any] = {
                    "keyId": key.id,
                    "signatureAlgorithm": key.algorithm_name,
                    "keyFingerprint": key.fingerprint,
                }
                return Checked(payload=payload, key=key.id, facts=facts)
        names = ", ".join(k.id for k in candidates)
        return f"signature does not verify with {names}: the payload was altered or another key signed it"


@dataclass(frozen=True, slots=True)
class PkixParams:
    keys: tuple[PkixKey, ...]
    notes: frozenset[str]
    claims: ClaimPolicy


@verifier_types.register("pkix")
class PkixPlugin:
    default_artifact_types = DEFAULT_ARTIFACT_TYPES

    def parse_params(self, node: Node) -> PkixParams:
        before = len(node.problems.items)
        keys = parse_pkix_keys(node, "keys")
        if not keys and len(node.problems.items) == before:
            node.error("at least one PKIX public key is required", "keys")
        notes = parse_notes(node)
        return PkixParams(keys=keys, notes=notes, claims=parse_claim_policy(node, "matchRepository"))

    def create(self, spec: VerifierSpec) -> AttestationVerifier:
        params: PkixParams = spec.params
        return AttestationVerifier(spec, [PkixChecker(params.keys)], params.notes, params.claims)
