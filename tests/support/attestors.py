"""Attestations the way their producers make them, and verification requests over the synthetic artifacts the
``grafeas``/``lookaside`` stores present.

* :func:`binauthz_payload` follows ``gcloud container binauthz create-signature-payload`` (``json.dumps`` with
  ``indent=2``, ``separators=(",", ": ")``, ``sort_keys=True``, ``ensure_ascii=True`` and a final newline; the
  docker-reference is the repository without tag or digest).
* :func:`atomic_payload` is the containers/image simple-signing payload as ``skopeo standalone-sign`` writes it.
* :func:`v1_occurrence` / :func:`v1beta1_pgp_occurrence` are the bodies ``gcloud container binauthz attestations
  create`` (v1) and the Grafeas tutorial (v1beta1 ``pgpSignedAttestation``) send.
* PKIX signatures are made with ``cryptography`` per the key's declared Binary Authorization algorithm.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

from provider import mediatypes as mt
from provider.attestations import grafeas_document, lookaside_document, synthetic_artifact, synthetic_manifest
from provider.oci import Descriptor
from provider.reference import parse_reference
from provider.verifiers.base import Subject, VerificationRequest

IMAGE = "gcr.io/org/app"
DIGEST = "sha256:" + hashlib.sha256(b"the image manifest").hexdigest()
OTHER_DIGEST = "sha256:" + hashlib.sha256(b"another image manifest").hexdigest()
NOTE = "projects/org/notes/built-by-ci"
OTHER_NOTE = "projects/org/notes/qa-passed"


def binauthz_payload(repository: str, digest: str) -> bytes:
    doc = {
        "critical": {
            "identity": {"docker-reference": repository},
            "image": {"docker-manifest-digest": digest},
            "type": "Google cloud binauthz container signature",
        }
    }
    return (json.dumps(doc, ensure_ascii=True, indent=2, separators=(",", ": "), sort_keys=True) + "\n").encode()


def atomic_payload(reference: str, digest: str) -> bytes:
    doc = {
        "critical": {
            "identity": {"docker-reference": reference},
            "image": {"docker-manifest-digest": digest},
            "type": "atomic container signature",
        },
        "optional": {"creator": "referee tests", "timestamp": 1700000000},
    }
    return json.dumps(doc, separators=(",", ":")).encode()


def cosign_payload(reference: str, digest: str) -> bytes:
    doc = {
        "critical": {
            "identity": {"docker-reference": reference},
            "image": {"docker-manifest-digest": digest},
            "type": "cosign container image signature",
        },
        "optional": None,
    }
    return json.dumps(doc, separators=(",", ":")).encode()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def v1_occurrence(
    payload: bytes | None, signatures: list[tuple[bytes, str]], *, note: str = NOTE, resource: str | None = None
) -> dict[str, Any]:
    attestation: dict[str, Any] = {"signatures": [{"signature": b64(s), "publicKeyId": k} for s, k in signatures]}
    if payload is not None:
        attestation["serializedPayload"] = b64(payload)
    return {
        "resourceUri": resource or f"https://{IMAGE}@{DIGEST}",
        "noteName": note,
        "kind": "ATTESTATION",
        "attestation": attestation,
    }


def v1beta1_pgp_occurrence(
    signature_text: bytes,
    key_id: str,
    *,
    content_type: str = mt.GCR_IMAGE_URL_CONTENT_TYPE,
    note: str = NOTE,
    resource: str | None = None,
) -> dict[str, Any]:
    return {
        "resource": {"uri": resource or f"https://{IMAGE}@{DIGEST}"},
        "noteName": note,
        "kind": "ATTESTATION",
        "attestation": {
            "attestation": {
                "pgpSignedAttestation": {
                    "signature": signature_text.decode(),
                    "contentType": content_type,
                    "pgpKeyId": key_id,
                }
            }
        },
    }


PKIX = {
    "ECDSA_P256_SHA256": ("ec", ec.SECP256R1, hashes.SHA256),
    "ECDSA_P384_SHA384": ("ec", ec.SECP384R1, hashes.SHA384),
    "ECDSA_P521_SHA512": ("ec", ec.SECP521R1, hashes.SHA512),
    "RSA_PSS_2048_SHA256": ("pss", 2048, hashes.SHA256),
    "RSA_PSS_3072_SHA256": ("pss", 3072, hashes.SHA256),
    "RSA_PSS_4096_SHA256": ("pss", 4096, hashes.SHA256),
    "RSA_PSS_4096_SHA512": ("pss", 4096, hashes.SHA512),
    "RSA_SIGN_PKCS1_2048_SHA256": ("pkcs1", 2048, hashes.SHA256),
    "RSA_SIGN_PKCS1_3072_SHA256": ("pkcs1", 3072, hashes.SHA256),
    "RSA_SIGN_PKCS1_4096_SHA256": ("pkcs1", 4096, hashes.SHA256),
    "RSA_SIGN_PKCS1_4096_SHA512": ("pkcs1", 4096, hashes.SHA512),
}


def pkix_sign(key: Any, algorithm: str, payload: bytes) -> bytes:
    """A signature as Cloud KMS / ``openssl dgst -sign`` makes it for ``algorithm`` (ECDSA in DER; PSS with a salt
    as long as the digest)."""
    family, _, digest = PKIX[algorithm]
    if family == "ec":
        assert isinstance(key, ec.EllipticCurvePrivateKey)
        return key.sign(payload, ec.ECDSA(digest()))
    assert isinstance(key, rsa.RSAPrivateKey)
    if family == "pss":
        return key.sign(payload, padding.PSS(mgf=padding.MGF1(digest()), salt_length=digest.digest_size), digest())
    return key.sign(payload, padding.PKCS1v15(), digest())


class InlineContent:
    """The content view a verifier gets for a synthetic artifact: everything is carried inline."""

    async def fetch_manifest(self, descriptor: Descriptor) -> Any:
        return synthetic_manifest(descriptor)

    async def fetch_blob(self, descriptor: Descriptor, max_bytes: int | None = None) -> bytes:
        assert descriptor.data is not None
        return descriptor.data


def _request(artifact_type: str, document: dict[str, Any], key: str, digest: str, now: dt.datetime | None) -> Any:
    subject = Descriptor(media_type=mt.OCI_MANIFEST, digest=digest, size=123)
    artifact = synthetic_artifact(subject, artifact_type, document, {})
    ref = parse_reference(key).with_digest(digest)
    return VerificationRequest(
        subject=Subject(ref, subject),
        artifact=artifact,
        manifest=synthetic_manifest(artifact),
        content=InlineContent(),
        now=now or dt.datetime.now(dt.UTC),
    )


def grafeas_request(
    occurrence: dict[str, Any], *, key: str = f"{IMAGE}@{DIGEST}", digest: str = DIGEST, now: dt.datetime | None = None
) -> VerificationRequest:
    stored = {"name": "projects/org/occurrences/1", "createTime": "2024-01-01T00:00:00Z", **occurrence}
    document = grafeas_document(stored, f"https://{IMAGE}@{digest}")
    result: VerificationRequest = _request(mt.GRAFEAS_ATTESTATION, document, key, digest, now)
    return result


def lookaside_request(
    blob: bytes, *, key: str = f"{IMAGE}@{DIGEST}", digest: str = DIGEST, now: dt.datetime | None = None
) -> VerificationRequest:
    document = lookaside_document("file:///sigstore/app@sha256=x/signature-1", 1, blob)
    result: VerificationRequest = _request(mt.LOOKASIDE_SIGNATURE, document, key, digest, now)
    return result


def sigstore_json_blob(payload: bytes, signature: bytes) -> bytes:
    """A containers/image ``sigstore-json`` signature file (``\\x00sigstore-json\\n`` + JSON)."""
    doc = {
        "mimeType": mt.COSIGN_SIMPLESIGNING,
        "payload": b64(payload),
        "annotations": {mt.ANNOTATION_COSIGN_SIGNATURE: b64(signature)},
    }
    return b"\x00sigstore-json\n" + json.dumps(doc).encode()
