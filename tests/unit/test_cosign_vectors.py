"""The cosign verifier against the shared cosign vectors and in-test keys (vectors/cosign/README.md)."""

from __future__ import annotations

import base64
import functools
import hashlib
import json
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa

from provider import mediatypes as mt
from provider.config import load_config_bytes
from provider.errors import ArtifactTooLargeError, ConfigError, NotFoundError
from provider.oci import Descriptor, Manifest, parse_manifest
from provider.reference import compute_digest, parse_reference, verify_digest
from provider.verifiers.base import Subject, VerificationRequest, VerifierResult, verifier_types
from provider.verifiers.cosign import CosignVerifier
from tests.support.paths import VECTORS as SHARED_VECTORS

VECTORS = SHARED_VECTORS / "cosign"
KEYS = VECTORS / "keys"
COSIGN_PUB = KEYS / "cosign.pub"
COSIGN2_PUB = KEYS / "cosign2.pub"
SIGNATURE_ANNOTATION = "dev.cosignproject.cosign/signature"
SIMPLESIGNING = "application/vnd.dev.cosign.simplesigning.v1+json"
COSIGN_TYPE = "cosign container image signature"


# -- a data source that serves blobs by digest, verifying them like a real store -----------------------------------


class BlobSource:
    def __init__(self, blobs: dict[str, bytes] | None = None) -> None:
        self.blobs: dict[str, bytes] = dict(blobs or {})
        self.fetched: list[str] = []
        self.limits: list[int | None] = []

    def add(self, data: bytes) -> str:
        digest = compute_digest(data)
        self.blobs[digest] = data
        return digest

    async def fetch_manifest(self, descriptor: Descriptor) -> Manifest:
        data = await self.fetch_blob(descriptor)
        return parse_manifest(data, descriptor.digest, descriptor.media_type)

    async def fetch_blob(self, descriptor: Descriptor, max_bytes: int | None = None) -> bytes:
        self.fetched.append(descriptor.digest)
        self.limits.append(max_bytes)
        if max_bytes is not None and descriptor.size > max_bytes:
            raise ArtifactTooLargeError(f"blob {descriptor.digest} is {descriptor.size} bytes, over {max_bytes}")
        data = self.blobs.get(descriptor.digest)
        if data is None:
            raise NotFoundError(f"blob {descriptor.digest} not found")
        if max_bytes is not None and len(data) > max_bytes:
            raise ArtifactTooLargeError(f"blob {descriptor.digest} over {max_bytes}")
        verify_digest(data, descriptor.digest, f"blob {descriptor.digest}")
        return data


# -- building requests ---------------------------------------------------------------------------------------------


def _read(case: str, name: str) -> bytes:
    return (VECTORS / case / name).read_bytes()


def _subject_digest(case: str) -> str:
    return "sha256:" + hashlib.sha256(_read(case, "image-manifest.json")).hexdigest()


def _layer_descriptor(case: str) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(_read(case, "layer-descriptor.json"))
    return doc


CONFIG_BLOB = b'{"architecture":"","config":{},"created":"0001-01-01T00:00:00Z","os":"","rootfs":{"type":"layers"}}'


def _sig_manifest(layers: Sequence[dict[str, Any]]) -> tuple[Descriptor, Manifest]:
    """A cosign ``.sig`` manifest (OCI image manifest, one layer per signature), parsed from its exact bytes."""
    doc = {
        "schemaVersion": 2,
        "mediaType": mt.OCI_MANIFEST,
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "size": len(CONFIG_BLOB),
            "digest": compute_digest(CONFIG_BLOB),
        },
        "layers": list(layers),
    }
    raw = json.dumps(doc, separators=(",", ":")).encode()
    digest = compute_digest(raw)
    manifest = parse_manifest(raw, digest, mt.OCI_MANIFEST)
    artifact = Descriptor(
        media_type=mt.OCI_MANIFEST, digest=digest, size=len(raw), artifact_type=mt.COSIGN_LEGACY_SIGNATURES
    )
    return artifact, manifest


def _request(
    layers: Sequence[dict[str, Any]], source: BlobSource, subject_digest: str, repo: str = "registry.example/app"
) -> VerificationRequest:
    artifact, manifest = _sig_manifest(layers)
    subject = Subject(
        ref=parse_reference(f"{repo}@{subject_digest}"),
        descriptor=Descriptor(media_type=mt.DOCKER_MANIFEST, digest=subject_digest, size=1),
    )
    return VerificationRequest(
        subject=subject, artifact=artifact, manifest=manifest, content=source, now=datetime.now(UTC)
    )


def _vector_request(case: str, subject_digest: str | None = None) -> VerificationRequest:
    source = BlobSource()
    source.add(_read(case, "payload.json"))
    return _request([_layer_descriptor(case)], source, subject_digest or _subject_digest(case))


def _verifier_from_keys(keys: Sequence[str]) -> CosignVerifier:
    """Build the verifier the way the server does: from configuration."""
    doc = {"verifiers": [{"name": "sig", "type": "cosign", "keys": list(keys)}]}
    config = load_config_bytes(json.dumps(doc).encode(), Path("/"))
    plugin = verifier_types.get("cosign")
    assert plugin is not None
    verifier = plugin.create(config.verifiers[0])
    assert isinstance(verifier, CosignVerifier)
    return verifier


def _verifier(*paths: Path) -> CosignVerifier:
    return _verifier_from_keys([str(p) for p in paths])


def _fingerprint_of_pem(path: Path) -> str:
    key = serialization.load_pem_public_key(path.read_bytes())
    der = key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return "sha256:" + hashlib.sha256(der).hexdigest()


# -- the vectors ---------------------------------------------------------------------------------------------------


def test_vector_subject_digests_match_payloads() -> None:
    # sanity of the harness: the sha256 of image-manifest.json is the digest each payload signs
    for case in ("key-valid", "key-rekor-valid"):
        payload = json.loads(_read(case, "payload.json"))
        assert payload["critical"]["image"]["docker-manifest-digest"] == _subject_digest(case)
        assert _layer_descriptor(case)["digest"] == compute_digest(_read(case, "payload.json"))


async def test_key_valid_passes_with_cosign_pub() -> None:
    result = await _verifier(COSIGN_PUB).verify(_vector_request("key-valid"))
    assert isinstance(result, VerifierResult)
    assert result.succeeded, result.reason
    assert result.details["keyFingerprint"] == _fingerprint_of_pem(COSIGN_PUB)


async def test_key_valid_fails_with_cosign2_pub() -> None:
    result = await _verifier(COSIGN2_PUB).verify(_vector_request("key-valid"))
    assert not result.succeeded
    assert "key" in result.reason


async def test_key_rekor_valid_passes_with_cosign2_pub() -> None:
    result = await _verifier(COSIGN2_PUB).verify(_vector_request("key-rekor-valid"))
    assert result.succeeded, result.reason
    assert result.details["keyFingerprint"] == _fingerprint_of_pem(COSIGN2_PUB)


async def test_key_rekor_valid_fails_with_cosign_pub() -> None:
    result = await _verifier(COSIGN_PUB).verify(_vector_request("key-rekor-valid"))
    assert not result.succeeded
    assert "key" in result.reason


async def test_tampered_payload_fails() -> None:
    result = await _verifier(COSIGN_PUB).verify(_vector_request("key-valid-tampered-payload"))
    assert not result.succeeded


async def test_valid_signature_for_another_subject_fails_naming_the_digest() -> None:
    other = _subject_digest("key-rekor-valid")
    assert other != _subject_digest("key-valid")
    result = await _verifier(COSIGN_PUB).verify(_vector_request("key-valid", subject_digest=other))
    assert not result.succeeded
    assert other in result.reason or _subject_digest("key-valid") in result.reason


async def test_docker_reference_is_not_checked() -> None:
    # cosign ignores critical.identity.docker-reference: a subject in another repository still verifies
    source = BlobSource()
    source.add(_read("key-valid", "payload.json"))
    request = _request([_layer_descriptor("key-valid")], source, _subject_digest("key-valid"), "ghcr.io/other/name")
    assert (await _verifier(COSIGN_PUB).verify(request)).succeeded


@pytest.mark.parametrize("case", ["key-valid", "key-rekor-valid"])
async def test_key_rotation_any_configured_key(case: str) -> None:
    result = await _verifier(COSIGN2_PUB, COSIGN_PUB).verify(_vector_request(case))
    assert result.succeeded, result.reason
    expected = COSIGN_PUB if case == "key-valid" else COSIGN2_PUB
    assert result.details["keyFingerprint"] == _fingerprint_of_pem(expected)


async def test_one_good_signature_among_several_layers_passes() -> None:
    source = BlobSource()
    source.add(_read("key-rekor-valid", "payload.json"))
    source.add(_read("key-valid", "payload.json"))
    layers = [_layer_descriptor("key-rekor-valid"), _layer_descriptor("key-valid")]
    # key-rekor-valid's signature signs another digest and another key; key-valid's verifies
    result = await _verifier(COSIGN_PUB).verify(_request(layers, source, _subject_digest("key-valid")))
    assert result.succeeded, result.reason


async def test_all_layers_failing_fails_and_reports_each() -> None:
    source = BlobSource()
    source.add(_read("key-rekor-valid", "payload.json"))
    source.add(_read("key-valid", "payload.json"))
    layers = [_layer_descriptor("key-rekor-valid"), _layer_descriptor("key-valid")]
    result = await _verifier(COSIGN2_PUB).verify(_request(layers, source, _subject_digest("key-valid")))
    assert not result.succeeded
    assert "signature 0" in result.reason
    assert "signature 1" in result.reason


async def test_payload_not_matching_layer_digest_fails() -> None:
    # the layer names key-valid's payload digest, but the store holds different bytes under that digest
    layer = _layer_descriptor("key-valid")
    source = BlobSource({layer["digest"]: _read("key-valid-tampered-payload", "payload.json")})
    result = await _verifier(COSIGN_PUB).verify(_request([layer], source, _subject_digest("key-valid")))
    assert not result.succeeded


async def test_oversized_payload_fails() -> None:
    layer = dict(_layer_descriptor("key-valid"))
    layer["size"] = 10 * 1024 * 1024
    source = BlobSource()
    source.add(_read("key-valid", "payload.json"))
    result = await _verifier(COSIGN_PUB).verify(_request([layer], source, _subject_digest("key-valid")))
    assert not result.succeeded


async def test_payload_reads_are_size_bounded() -> None:
    # signatures are small: the verifier must ask for a bounded read (oci-and-referrers.md §2, "signatures: KiB")
    request = _vector_request("key-valid")
    assert (await _verifier(COSIGN_PUB).verify(request)).succeeded
    assert isinstance(request.content, BlobSource)
    assert request.content.limits
    assert all(limit is not None and limit <= 1024 * 1024 for limit in request.content.limits)


async def test_no_simple_signing_layer() -> None:
    layer = dict(_layer_descriptor("key-valid"))
    layer["mediaType"] = "application/octet-stream"
    source = BlobSource()
    source.add(_read("key-valid", "payload.json"))
    result = await _verifier(COSIGN_PUB).verify(_request([layer], source, _subject_digest("key-valid")))
    assert not result.succeeded
    assert "simple-signing" in result.reason or "layer" in result.reason


def test_can_verify_cosign_artifact_types_only() -> None:
    verifier = _verifier(COSIGN_PUB)

    def desc(artifact_type: str | None) -> Descriptor:
        return Descriptor(mt.OCI_MANIFEST, "sha256:" + "0" * 64, 1, artifact_type=artifact_type)

    assert verifier.can_verify(desc(mt.COSIGN_LEGACY_SIGNATURES))
    assert verifier.can_verify(desc("application/vnd.dev.cosign.artifact.sig.v1+json"))
    assert not verifier.can_verify(desc("application/vnd.cncf.notary.signature"))
    assert not verifier.can_verify(desc(None))


# -- keys generated here, signing the way cosign does --------------------------------------------------------------


def _payload(digest: str, type_: str = COSIGN_TYPE) -> bytes:
    doc = {
        "critical": {
            "identity": {"docker-reference": "registry.example/app"},
            "image": {"docker-manifest-digest": digest},
            "type": type_,
        },
        "optional": None,
    }
    return json.dumps(doc, separators=(",", ":")).encode()


@functools.cache
def _private_key(kind: str) -> Any:
    if kind.startswith("rsa-"):
        return rsa.generate_private_key(public_exponent=65537, key_size=int(kind[4:]))
    if kind == "p256":
        return ec.generate_private_key(ec.SECP256R1())
    if kind.startswith("p384"):
        return ec.generate_private_key(ec.SECP384R1())
    if kind == "ed25519":
        return ed25519.Ed25519PrivateKey.generate()
    raise AssertionError(kind)


def _sign(kind: str, data: bytes) -> bytes:
    key = _private_key(kind)
    if kind.startswith("rsa-"):
        return bytes(key.sign(data, padding.PKCS1v15(), hashes.SHA256()))
    if kind == "p384-sha384":
        return bytes(key.sign(data, ec.ECDSA(hashes.SHA384())))
    if kind in ("p256", "p384-sha256"):
        return bytes(key.sign(data, ec.ECDSA(hashes.SHA256())))
    return bytes(key.sign(data))


def _public_pem(kind: str) -> str:
    pub = _private_key(kind).public_key()
    return pub.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()


def _signed_request(
    kind: str,
    subject_digest: str,
    payload: bytes | None = None,
    annotation: str | None = None,
    drop_annotation: bool = False,
) -> VerificationRequest:
    payload = _payload(subject_digest) if payload is None else payload
    source = BlobSource()
    digest = source.add(payload)
    annotations = {}
    if not drop_annotation:
        annotations[SIGNATURE_ANNOTATION] = (
            annotation if annotation is not None else base64.b64encode(_sign(kind, payload)).decode()
        )
    layer = {"mediaType": SIMPLESIGNING, "size": len(payload), "digest": digest, "annotations": annotations}
    return _request([layer], source, subject_digest)


SUBJECT = compute_digest(b"an image manifest")
KINDS = ["rsa-2048", "rsa-3072", "p256", "p384-sha256", "p384-sha384", "ed25519"]


@pytest.mark.parametrize("kind", KINDS)
async def test_generated_keys_verify(kind: str) -> None:
    verifier = _verifier_from_keys([_public_pem(kind)])
    result = await verifier.verify(_signed_request(kind, SUBJECT))
    assert result.succeeded, result.reason


@pytest.mark.parametrize("kind", KINDS)
async def test_generated_keys_reject_other_payload(kind: str) -> None:
    verifier = _verifier_from_keys([_public_pem(kind)])
    good = _payload(SUBJECT)
    signature = base64.b64encode(_sign(kind, good)).decode()
    tampered = good.replace(b"registry.example/app", b"registry.example/apq")
    request = _signed_request(kind, SUBJECT, payload=tampered, annotation=signature)
    assert not (await verifier.verify(request)).succeeded


@pytest.mark.parametrize("kind", ["rsa-2048", "p256", "ed25519"])
async def test_generated_key_wrong_subject(kind: str) -> None:
    verifier = _verifier_from_keys([_public_pem(kind)])
    other = compute_digest(b"another image manifest")
    request = _signed_request(kind, SUBJECT, payload=_payload(other))
    result = await verifier.verify(request)
    assert not result.succeeded
    assert other in result.reason or SUBJECT in result.reason


async def test_key_of_another_type_does_not_verify() -> None:
    verifier = _verifier_from_keys([_public_pem("rsa-2048"), _public_pem("ed25519")])
    result = await verifier.verify(_signed_request("p256", SUBJECT))
    assert not result.succeeded


def test_rsa_1024_rejected_at_config_time() -> None:
    weak = rsa.generate_private_key(public_exponent=65537, key_size=1024).public_key()
    pem = weak.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    with pytest.raises(ConfigError) as info:
        _verifier_from_keys([pem])
    assert len(info.value.problems) == 1
    problem = info.value.problems[0]
    assert problem.startswith("verifiers[0].keys[0]: ")
    assert "1024" in problem


def test_second_key_problem_names_its_index() -> None:
    weak = rsa.generate_private_key(public_exponent=65537, key_size=1024).public_key()
    pem = weak.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    with pytest.raises(ConfigError) as info:
        _verifier_from_keys([str(COSIGN_PUB), pem])
    assert [p.split(": ", 1)[0] for p in info.value.problems] == ["verifiers[0].keys[1]"]


async def test_missing_signature_annotation() -> None:
    verifier = _verifier_from_keys([_public_pem("p256")])
    result = await verifier.verify(_signed_request("p256", SUBJECT, drop_annotation=True))
    assert not result.succeeded
    assert "annotation" in result.reason


async def test_non_base64_signature() -> None:
    verifier = _verifier_from_keys([_public_pem("p256")])
    result = await verifier.verify(_signed_request("p256", SUBJECT, annotation="not*base64!"))
    assert not result.succeeded
    assert "base64" in result.reason


def _wrapped(text: str, width: int, newline: str) -> str:
    return newline.join(text[i : i + width] for i in range(0, len(text), width)) + newline


@pytest.mark.parametrize(
    "annotation",
    [
        _wrapped(_layer_descriptor("key-valid")["annotations"][SIGNATURE_ANNOTATION], 64, "\n"),
        _wrapped(_layer_descriptor("key-valid")["annotations"][SIGNATURE_ANNOTATION], 76, "\r\n"),
        "\n".join(_layer_descriptor("key-valid")["annotations"][SIGNATURE_ANNOTATION]),
    ],
    ids=["lf-64", "crlf-76", "lf-everywhere"],
)
async def test_signature_annotation_wrapped_with_newlines_verifies(annotation: str) -> None:
    """cosign and containers/image decode the annotation with Go's ``base64.StdEncoding``, which ignores ``\r``
    and ``\n``: the real key-valid signature, line-wrapped as some signers write it, verifies."""
    descriptor = _layer_descriptor("key-valid")
    descriptor["annotations"][SIGNATURE_ANNOTATION] = annotation
    source = BlobSource()
    source.add(_read("key-valid", "payload.json"))
    result = await _verifier(COSIGN_PUB).verify(_request([descriptor], source, _subject_digest("key-valid")))
    assert result.succeeded, result.reason


@pytest.mark.parametrize(
    "damage",
    [
        lambda s: s[:40] + " " + s[40:],  # Go does not ignore spaces or tabs
        lambda s: s[:40] + "\t" + s[40:],
        lambda s: s.replace("/", "_").replace("+", "-"),  # nor the URL-safe alphabet
        lambda s: s + "=",  # nor excess padding
        lambda s: s[:-2],  # nor missing padding
    ],
    ids=["space", "tab", "url-safe", "excess-padding", "unpadded"],
)
async def test_signature_annotation_accepts_nothing_go_refuses(damage: Any) -> None:
    descriptor = _layer_descriptor("key-valid")
    signature = descriptor["annotations"][SIGNATURE_ANNOTATION]
    assert "/" in signature and len(signature) % 4 == 0 and not signature.endswith("=")
    descriptor["annotations"][SIGNATURE_ANNOTATION] = damage(signature)
    source = BlobSource()
    source.add(_read("key-valid", "payload.json"))
    result = await _verifier(COSIGN_PUB).verify(_request([descriptor], source, _subject_digest("key-valid")))
    assert not result.succeeded
    assert "signature annotation is not base64" in result.reason


async def test_wrong_critical_type() -> None:
    verifier = _verifier_from_keys([_public_pem("p256")])
    payload = _payload(SUBJECT, type_="atomic container signature")
    result = await verifier.verify(_signed_request("p256", SUBJECT, payload=payload))
    assert not result.succeeded
    assert "type" in result.reason
    assert "atomic container signature" in result.reason


async def test_payload_not_json() -> None:
    verifier = _verifier_from_keys([_public_pem("p256")])
    result = await verifier.verify(_signed_request("p256", SUBJECT, payload=b"\x00not json"))
    assert not result.succeeded
    assert "JSON" in result.reason


async def test_payload_without_critical() -> None:
    verifier = _verifier_from_keys([_public_pem("p256")])
    result = await verifier.verify(_signed_request("p256", SUBJECT, payload=b'{"optional":{}}'))
    assert not result.succeeded
    assert "critical" in result.reason


@pytest.mark.parametrize("kind", ["rsa-2048", "p256", "p384-sha384", "ed25519"])
@pytest.mark.parametrize("garbage", [b"", b"x", b"\x30\x06\x02\x01\x01\x02\x01\x01", b"a" * 64, b"a" * 512])
async def test_garbage_signature_bytes_fail_cleanly(kind: str, garbage: bytes) -> None:
    verifier = _verifier_from_keys([_public_pem(kind)])
    annotation = base64.b64encode(garbage).decode()
    request = _signed_request(kind, SUBJECT, annotation=annotation)
    if not annotation:
        request = _signed_request(kind, SUBJECT, drop_annotation=True)
    result = await verifier.verify(request)
    assert not result.succeeded
