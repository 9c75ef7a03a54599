"""The ``pkix`` verifier on Binary Authorization PKIX attestations signed with ``cryptography`` over payloads made
the way ``gcloud container binauthz create-signature-payload`` makes them, for every declared algorithm."""

from __future__ import annotations

import base64
import hashlib
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa, utils

from provider.config import load_config_bytes
from provider.errors import ConfigError
from provider.verifiers.pkix import default_key_id
from tests.support.attestors import (
    DIGEST,
    IMAGE,
    OTHER_DIGEST,
    PKIX,
    binauthz_payload,
    cosign_payload,
    grafeas_request,
    lookaside_request,
    pkix_sign,
    sigstore_json_blob,
    v1_occurrence,
    v1beta1_pgp_occurrence,
)
from tests.support.sigstore_sign import build_verifier

PAYLOAD = binauthz_payload(IMAGE, DIGEST)
_KEYS: dict[Any, Any] = {}


def private_key(algorithm: str) -> Any:
    family, size, _ = PKIX[algorithm]
    if size not in _KEYS:
        _KEYS[size] = ec.generate_private_key(size()) if family == "ec" else rsa.generate_private_key(65537, size)
    return _KEYS[size]


def pem(key: Any) -> str:
    public = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    return str(public.decode())


def pkix(*keys: dict[str, Any], **params: Any) -> Any:
    return build_verifier({"name": "kms", "type": "pkix", "keys": list(keys), **params})


@pytest.mark.parametrize("algorithm", sorted(PKIX))
async def test_every_algorithm_verifies_with_the_default_key_id(algorithm: str) -> None:
    key = private_key(algorithm)
    key_id = default_key_id(key.public_key())
    occurrence = v1_occurrence(PAYLOAD, [(pkix_sign(key, algorithm, PAYLOAD), key_id)])
    result = await pkix({"key": pem(key), "signatureAlgorithm": algorithm}).verify(grafeas_request(occurrence))
    assert result.succeeded, result.reason
    assert result.details["keyId"] == key_id
    assert result.details["signatureAlgorithm"] == algorithm
    assert result.details["dockerReference"] == IMAGE
    assert key_id.startswith("ni:///sha-256;") and "=" not in key_id


def test_default_key_id_is_the_sha256_of_the_der_spki() -> None:
    key = private_key("ECDSA_P256_SHA256").public_key()
    der = key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    digest = base64.urlsafe_b64encode(hashlib.sha256(der).digest()).decode().rstrip("=")
    assert default_key_id(key) == f"ni:///sha-256;{digest}"


async def test_kms_style_explicit_key_id_and_alias_algorithm_name() -> None:
    key = private_key("ECDSA_P384_SHA384")
    key_id = "//cloudkms.googleapis.com/v1/projects/p/locations/global/keyRings/r/cryptoKeys/k/cryptoKeyVersions/1"
    occurrence = v1_occurrence(PAYLOAD, [(pkix_sign(key, "ECDSA_P384_SHA384", PAYLOAD), key_id)])
    verifier = pkix({"key": pem(key), "signatureAlgorithm": "EC_SIGN_P384_SHA384", "id": key_id})
    assert (await verifier.verify(grafeas_request(occurrence))).succeeded


async def test_signature_naming_another_key_id_fails() -> None:
    key = private_key("ECDSA_P256_SHA256")
    occurrence = v1_occurrence(PAYLOAD, [(pkix_sign(key, "ECDSA_P256_SHA256", PAYLOAD), "ni:///sha-256;other")])
    result = await pkix({"key": pem(key), "signatureAlgorithm": "ECDSA_P256_SHA256"}).verify(
        grafeas_request(occurrence)
    )
    assert not result.succeeded
    assert result.reason == "signed with key id 'ni:///sha-256;other', which is not a configured key"


async def test_wrong_key_under_the_configured_id_fails() -> None:
    configured, other = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    key_id = default_key_id(configured.public_key())
    occurrence = v1_occurrence(PAYLOAD, [(pkix_sign(other, "ECDSA_P256_SHA256", PAYLOAD), key_id)])
    verifier = pkix({"key": pem(configured), "signatureAlgorithm": "ECDSA_P256_SHA256"})
    result = await verifier.verify(grafeas_request(occurrence))
    assert not result.succeeded
    assert "does not verify with" in result.reason and key_id in result.reason


async def test_tampered_payload_fails() -> None:
    key = private_key("RSA_PSS_2048_SHA256")
    signature = pkix_sign(key, "RSA_PSS_2048_SHA256", PAYLOAD)
    tampered = PAYLOAD.replace(DIGEST.encode(), OTHER_DIGEST.encode())
    occurrence = v1_occurrence(tampered, [(signature, default_key_id(key.public_key()))])
    verifier = pkix({"key": pem(key), "signatureAlgorithm": "RSA_PSS_2048_SHA256"})
    result = await verifier.verify(grafeas_request(occurrence))
    assert not result.succeeded
    assert "the payload was altered or another key signed it" in result.reason


async def test_attestation_for_another_image_fails() -> None:
    key = private_key("ECDSA_P256_SHA256")
    other = binauthz_payload(IMAGE, OTHER_DIGEST)
    occurrence = v1_occurrence(other, [(pkix_sign(key, "ECDSA_P256_SHA256", other), default_key_id(key.public_key()))])
    result = await pkix({"key": pem(key), "signatureAlgorithm": "ECDSA_P256_SHA256"}).verify(
        grafeas_request(occurrence)
    )
    assert not result.succeeded
    assert f"is for {OTHER_DIGEST}, not this image" in result.reason


async def test_declared_algorithm_is_the_only_one_tried() -> None:
    """A PKCS#1 v1.5 signature does not pass for a key declared PSS (and vice versa)."""
    key = private_key("RSA_PSS_2048_SHA256")
    pkcs1 = pkix_sign(key, "RSA_SIGN_PKCS1_2048_SHA256", PAYLOAD)
    occurrence = v1_occurrence(PAYLOAD, [(pkcs1, default_key_id(key.public_key()))])
    declared_pss = pkix({"key": pem(key), "signatureAlgorithm": "RSA_PSS_2048_SHA256"})
    assert not (await declared_pss.verify(grafeas_request(occurrence))).succeeded


async def test_raw_ecdsa_signature_is_not_accepted() -> None:
    key = private_key("ECDSA_P256_SHA256")
    r, s = utils.decode_dss_signature(pkix_sign(key, "ECDSA_P256_SHA256", PAYLOAD))
    raw = r.to_bytes(32, "big") + s.to_bytes(32, "big")
    occurrence = v1_occurrence(PAYLOAD, [(raw, default_key_id(key.public_key()))])
    result = await pkix({"key": pem(key), "signatureAlgorithm": "ECDSA_P256_SHA256"}).verify(
        grafeas_request(occurrence)
    )
    assert not result.succeeded


async def test_missing_payload_fails() -> None:
    key = private_key("ECDSA_P256_SHA256")
    occurrence = v1_occurrence(None, [(pkix_sign(key, "ECDSA_P256_SHA256", PAYLOAD), default_key_id(key.public_key()))])
    result = await pkix({"key": pem(key), "signatureAlgorithm": "ECDSA_P256_SHA256"}).verify(
        grafeas_request(occurrence)
    )
    assert result.reason == "the attestation carries no serializedPayload for its PKIX signature"


async def test_v1beta1_generic_signed_attestation_verifies() -> None:
    key = private_key("ECDSA_P256_SHA256")
    key_id = default_key_id(key.public_key())
    occurrence = {
        "resource": {"uri": f"https://{IMAGE}@{DIGEST}"},
        "noteName": "projects/org/notes/built-by-ci",
        "kind": "ATTESTATION",
        "attestation": {
            "attestation": {
                "genericSignedAttestation": {
                    "contentType": "SIMPLE_SIGNING_JSON",
                    "serializedPayload": base64.b64encode(PAYLOAD).decode(),
                    "signatures": [
                        {
                            "signature": base64.urlsafe_b64encode(
                                pkix_sign(key, "ECDSA_P256_SHA256", PAYLOAD)
                            ).decode(),
                            "publicKeyId": key_id,
                        }
                    ],
                }
            }
        },
    }
    result = await pkix({"key": pem(key), "signatureAlgorithm": "ECDSA_P256_SHA256"}).verify(
        grafeas_request(occurrence)
    )
    assert result.succeeded, result.reason


async def test_sigstore_json_lookaside_signature_verifies_without_a_key_id() -> None:
    key = private_key("ECDSA_P256_SHA256")
    payload = cosign_payload(f"{IMAGE}:v1", DIGEST)
    blob = sigstore_json_blob(payload, pkix_sign(key, "ECDSA_P256_SHA256", payload))
    verifier = pkix({"key": pem(key), "signatureAlgorithm": "ECDSA_P256_SHA256"})
    result = await verifier.verify(lookaside_request(blob, key=f"{IMAGE}:v1"))
    assert result.succeeded, result.reason
    assert result.details["source"] == "lookaside"


async def test_openpgp_entry_is_not_claimed() -> None:
    key = private_key("ECDSA_P256_SHA256")
    armored = b"-----BEGIN PGP MESSAGE-----\n\nowE=\n-----END PGP MESSAGE-----\n"
    occurrence = v1beta1_pgp_occurrence(armored, "ABCD")
    result = await pkix({"key": pem(key), "signatureAlgorithm": "ECDSA_P256_SHA256"}).verify(
        grafeas_request(occurrence)
    )
    assert result.reason == "signed with key id 'ABCD', which is not a configured key"


async def test_malformed_occurrences_are_failures_with_reasons() -> None:
    key = private_key("ECDSA_P256_SHA256")
    verifier = pkix({"key": pem(key), "signatureAlgorithm": "ECDSA_P256_SHA256"})
    bad = v1_occurrence(PAYLOAD, [])
    bad["attestation"]["serializedPayload"] = "***"
    bad["attestation"]["signatures"] = [{"signature": "***", "publicKeyId": "x"}, "nope"]
    result = await verifier.verify(grafeas_request(bad))
    assert not result.succeeded
    assert result.reason == (
        "serializedPayload is not base64; signatures[0].signature is not base64; signatures[1] is not an object"
    )
    jwt_only = {"kind": "ATTESTATION", "noteName": "projects/o/notes/n", "attestation": {"jwts": [{"compactJwt": "x"}]}}
    assert (await verifier.verify(grafeas_request(jwt_only))).reason == "JWT attestations are not supported"


# -- configuration -------------------------------------------------------------------------------------------------


def test_config_errors_name_their_path(tmp_path: Path) -> None:
    p256 = pem(private_key("ECDSA_P256_SHA256"))
    (tmp_path / "p256.pem").write_text(p256)
    entries = [
        {"key": "p256.pem", "signatureAlgorithm": "ECDSA_P384_SHA384"},
        {"key": "p256.pem", "signatureAlgorithm": "RSA_PSS_2048_SHA256"},
        {"key": "p256.pem", "signatureAlgorithm": "ED25519"},
        {"key": "not a pem", "signatureAlgorithm": "ECDSA_P256_SHA256"},
        {"key": p256, "signatureAlgorithm": "ECDSA_P256_SHA256", "id": "k", "extra": 1},
        {"key": p256, "signatureAlgorithm": "ECDSA_P256_SHA256", "id": "k"},
        {"signatureAlgorithm": "ECDSA_P256_SHA256"},
    ]
    import json

    text = json.dumps({"verifiers": [{"name": "kms", "type": "pkix", "keys": entries}, {"name": "x", "type": "pkix"}]})
    with pytest.raises(ConfigError) as info:
        load_config_bytes(text.encode(), tmp_path)
    assert info.value.problems == [
        "verifiers[0].keys[0].signatureAlgorithm: ECDSA_P384_SHA384 needs an EC secp384r1 key",
        "verifiers[0].keys[1].signatureAlgorithm: RSA_PSS_2048_SHA256 needs an RSA 2048-bit key",
        "verifiers[0].keys[2].signatureAlgorithm: unknown algorithm 'ED25519'; known: " + ", ".join(sorted(PKIX_NAMES)),
        "verifiers[0].keys[3].key: cannot read not a pem: No such file or directory",
        "verifiers[0].keys[4].extra: unknown key",
        "verifiers[0].keys[6].key: required",
        "verifiers[0].keys: key id 'k' is used twice",
        "verifiers[1].keys: at least one PKIX public key is required",
    ]


PKIX_NAMES = sorted(
    {
        *PKIX,
        "RSA_SIGN_PSS_2048_SHA256",
        "RSA_SIGN_PSS_3072_SHA256",
        "RSA_SIGN_PSS_4096_SHA256",
        "RSA_SIGN_PSS_4096_SHA512",
        "EC_SIGN_P256_SHA256",
        "EC_SIGN_P384_SHA384",
        "EC_SIGN_P521_SHA512",
    }
)
