"""Sigstore evidence end to end: POST /verify over mTLS against the real test registry, for every storage form —
legacy ``.sig`` (key with a Rekor SET, keyless from the shared vector), Sigstore bundle referrers (referrers API
double and fallback tag index), cosign's OCI 1.1 referrer (keyless) and ``.att`` attestations whose provenance
passes or fails a builder-id rule."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
from pathlib import Path
from typing import Any

from aiohttp import web
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from provider import mediatypes as mt
from tests.support.content import (
    OCI_CONFIG,
    OCI_MANIFEST,
    make_artifact_manifest,
    make_image,
    push_artifact,
    push_fallback_index,
    push_image,
    referrer_descriptor,
)
from tests.support.paths import VECTORS as SHARED_VECTORS
from tests.support.referee import Pki, items_by_key, running_referee, server_section, write_config
from tests.support.referrers_proxy import ReferrersProxy
from tests.support.registry import RegistryProcess
from tests.support.sigstore_sign import (
    FakeSigstore,
    ct_log_pems,
    pem_cert,
    pem_public,
    sign_dsse,
    slsa_v1,
    statement,
)

COSIGN_VECTORS = SHARED_VECTORS / "cosign"
PINNED = dt.datetime(2026, 11, 1, tzinfo=dt.UTC)
IDENTITY = {"identity": "https://ci.example/workflows/release@refs/heads/main", "issuer": "https://issuer.example"}
BUILDER = "https://github.com/org/builder/.github/workflows/build.yml@refs/tags/v2.0.0"


def _config(tmp_path: Path, pki: Pki, host: str, verifier: dict[str, Any]) -> Path:
    doc = {
        "registries": {"allow": ["127.0.0.1:*"], "hosts": [{"host": host, "plainHttp": True}]},
        "verifiers": [verifier],
        "policy": {"type": "required-verifiers", "required": [verifier["name"]]},
        "server": server_section(pki),
    }
    return write_config(tmp_path / "referee.yaml", doc)


async def _verdicts(config: Path, pki: Pki, keys: list[str]) -> dict[str, dict[str, Any]]:
    async with running_referee(config, pki, clock=lambda: PINNED) as referee:
        response = await referee.verify(keys)
    assert "systemError" not in response["response"], response
    return {key: item["value"] for key, item in items_by_key(response).items()}


def _push_legacy(
    url: str, repo: str, image_digest: str, suffix: str, layers: list[tuple[str, bytes, dict[str, str]]]
) -> None:
    """A cosign legacy tag manifest (``sha256-<hex>.sig`` / ``.att``): image config media type, one layer each."""
    manifest, blobs = make_artifact_manifest(None, "unused", layers, form="oci-1.0", config_media_type=OCI_CONFIG)
    tag = image_digest.replace(":", "-") + suffix
    push_artifact(url, repo, manifest, blobs, reference=tag)


def _simple_signing(host: str, repo: str, digest: str) -> bytes:
    doc = {
        "critical": {
            "identity": {"docker-reference": f"{host}/{repo}"},
            "image": {"docker-manifest-digest": digest},
            "type": "cosign container image signature",
        },
        "optional": None,
    }
    return json.dumps(doc, separators=(",", ":")).encode()


def _write(path: Path, data: bytes) -> str:
    path.write_bytes(data)
    return str(path)


# -- legacy .sig: key + Rekor SET, required -----------------------------------------------------------------------


async def test_legacy_sig_with_key_and_required_tlog(registry: RegistryProcess, pki: Pki, tmp_path: Path) -> None:
    fake = FakeSigstore()
    key = ec.generate_private_key(ec.SECP256R1())
    repo = "sigstore/key-tlog"
    images = {tag: make_image(f"{repo}/{tag}") for tag in ("logged", "unlogged")}
    for tag, image in images.items():
        push_image(registry.url, repo, tag, image)
        payload = _simple_signing(registry.host, repo, image["digest"])
        signature = key.sign(payload, ec.ECDSA(hashes.SHA256()))
        annotations = {mt.ANNOTATION_COSIGN_SIGNATURE: base64.b64encode(signature).decode()}
        if tag == "logged":
            body = fake.hashedrekord(hashlib.sha256(payload).digest(), signature, pem_public(key))
            annotations[mt.ANNOTATION_COSIGN_BUNDLE] = fake.cosign_bundle_annotation(fake.log_entry(body))
        _push_legacy(registry.url, repo, image["digest"], ".sig", [(mt.COSIGN_SIMPLESIGNING, payload, annotations)])
    verifier = {
        "name": "signed",
        "type": "cosign",
        "keys": [_write(tmp_path / "cosign.pub", pem_public(key))],
        "rekorKeys": [_write(tmp_path / "rekor.pub", fake.rekor_pem)],
        "requireTlog": True,
    }
    keys = [f"{registry.host}/{repo}:logged", f"{registry.host}/{repo}:unlogged"]
    verdicts = await _verdicts(_config(tmp_path, pki, registry.host, verifier), pki, keys)
    logged = verdicts[keys[0]]
    assert logged["allowed"] is True, logged["reason"]
    assert logged["artifacts"][0]["details"]["tlogVerified"] is True
    unlogged = verdicts[keys[1]]
    assert unlogged["allowed"] is False
    assert "no transparency-log entry (Rekor SET), which this verifier requires" in unlogged["reason"]


# -- legacy .sig: keyless, the shared fulcio-rekor-valid vector -----------------------------------------------------


class VectorImageShim(ReferrersProxy):
    """Serves one image manifest the registry refuses to store (its config and layer blobs are not part of the
    vector, so distribution answers MANIFEST_BLOB_UNKNOWN) and proxies everything else to the real registry."""

    def __init__(self, upstream: str, repo: str, manifest: bytes, media_type: str) -> None:
        super().__init__(upstream)
        self.repo, self.manifest, self.media_type = repo, manifest, media_type
        self.digest = "sha256:" + hashlib.sha256(manifest).hexdigest()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        prefix = f"/v2/{self.repo}/manifests/"
        if request.method in ("GET", "HEAD") and request.path in (prefix + self.digest, prefix + "vector"):
            headers = {"Docker-Content-Digest": self.digest, "Content-Type": self.media_type}
            return web.Response(body=self.manifest, headers=headers)
        return await super()._handle(request)


async def test_legacy_sig_keyless_vector(registry: RegistryProcess, pki: Pki, tmp_path: Path) -> None:
    case = COSIGN_VECTORS / "fulcio-rekor-valid"
    manifest = (case / "image-manifest.json").read_bytes()
    payload = (case / "payload.json").read_bytes()
    annotations = json.loads((case / "layer-descriptor.json").read_text())["annotations"]
    repo = "sigstore/keyless-vector"
    with VectorImageShim(registry.url, repo, manifest, mt.DOCKER_MANIFEST) as shim:
        digest = shim.digest
        assert json.loads(payload)["critical"]["image"]["docker-manifest-digest"] == digest
        _push_legacy(registry.url, repo, digest, ".sig", [(mt.COSIGN_SIMPLESIGNING, payload, annotations)])
        verifier = {
            "name": "keyless",
            "type": "cosign",
            "identities": [{"identity": "mitr@redhat.com", "issuer": "https://github.com/login/oauth"}],
            "fulcioRoots": [str(COSIGN_VECTORS / "keys" / "fulcio_v1.crt.pem")],
            "rekorKeys": [str(COSIGN_VECTORS / "keys" / "rekor.pub")],
            "ctLogKeys": ct_log_pems(SHARED_VECTORS / "sigstore-bundle" / "trusted_root.public-good.json"),
            "requireTlog": True,
        }
        config = _config(tmp_path, pki, shim.host, verifier)
        keys = [f"{shim.host}/{repo}:vector", f"{shim.host}/{repo}@{digest}"]
        verdicts = await _verdicts(config, pki, keys)
        for key in keys:
            verdict = verdicts[key]
            assert verdict["allowed"] is True, verdict["reason"]
            details = verdict["artifacts"][0]["details"]
            assert details["identity"] == "mitr@redhat.com"
            assert details["integratedTime"] == "2023-01-20T20:51:33Z"
        (tmp_path / "other").mkdir()
        wrong = dict(verifier, identities=[{"identity": "mitr@redhat.com", "issuer": "https://accounts.google.com"}])
        denied = await _verdicts(_config(tmp_path / "other", pki, shim.host, wrong), pki, keys[:1])
    assert denied[keys[0]]["allowed"] is False
    assert (
        "with issuer https://github.com/login/oauth matches none of the configured identities"
        in denied[keys[0]]["reason"]
    )


# -- Sigstore bundle referrers -------------------------------------------------------------------------------------


def _bundle_manifest(
    fake: FakeSigstore, image: dict[str, Any], key: ec.EllipticCurvePrivateKey, cert: Any
) -> tuple[bytes, dict[str, bytes]]:
    payload = statement(image["digest"], "https://sigstore.dev/cosign/sign/v1", {})
    bundle = fake.dsse_bundle(key, payload, cert=cert)
    manifest, blobs = make_artifact_manifest(
        image["descriptor"],
        mt.SIGSTORE_BUNDLE_V03,
        [(mt.SIGSTORE_BUNDLE_V03, bundle, None)],
        annotations={
            mt.ANNOTATION_BUNDLE_CONTENT: "dsse-envelope",
            mt.ANNOTATION_BUNDLE_PREDICATE_TYPE: "https://sigstore.dev/cosign/sign/v1",
            mt.ANNOTATION_CREATED: "2026-10-01T00:00:00Z",
        },
    )
    return manifest, blobs


def _bundle_verifier(fake: FakeSigstore, tmp_path: Path) -> dict[str, Any]:
    return {
        "name": "bundles",
        "type": "sigstore-bundle",
        "trustedRoot": _write(tmp_path / "trusted_root.json", fake.trusted_root()),
        "identities": [IDENTITY],
    }


async def test_bundle_referrer_through_the_referrers_api(
    referrers_proxy: ReferrersProxy, pki: Pki, tmp_path: Path
) -> None:
    proxy, fake = referrers_proxy, FakeSigstore()
    key, cert = fake.issue(IDENTITY["identity"], IDENTITY["issuer"])
    _, stranger = fake.issue("intruder@example.com", IDENTITY["issuer"])
    repo = "sigstore/bundle-api"
    good, bad = make_image(f"{repo}/good"), make_image(f"{repo}/bad")
    for tag, image, signer in (("good", good, cert), ("bad", bad, stranger)):
        push_image(proxy.url, repo, tag, image)
        manifest, blobs = _bundle_manifest(fake, image, key, signer)
        push_artifact(proxy.url, repo, manifest, blobs)
    keys = [f"{proxy.host}/{repo}:good", f"{proxy.host}/{repo}:bad"]
    verdicts = await _verdicts(_config(tmp_path, pki, proxy.host, _bundle_verifier(fake, tmp_path)), pki, keys)
    assert proxy.count("referrers") >= 1
    allowed = verdicts[keys[0]]
    assert allowed["allowed"] is True, allowed["reason"]
    assert allowed["artifacts"][0]["details"]["verifiedWith"] == "sigstore-python"
    assert allowed["artifacts"][0]["artifactType"] == mt.SIGSTORE_BUNDLE_V03
    denied = verdicts[keys[1]]
    assert denied["allowed"] is False
    assert "certificate identity intruder@example.com" in denied["reason"]


async def test_bundle_referrer_through_the_fallback_tag_index(
    registry: RegistryProcess, pki: Pki, tmp_path: Path
) -> None:
    fake = FakeSigstore()
    key, cert = fake.issue(IDENTITY["identity"], IDENTITY["issuer"])
    repo = "sigstore/bundle-fallback"
    image = make_image(repo)
    push_image(registry.url, repo, "v1", image)
    manifest, blobs = _bundle_manifest(fake, image, key, cert)
    push_artifact(registry.url, repo, manifest, blobs)
    push_fallback_index(registry.url, repo, image["digest"], [referrer_descriptor(manifest)])
    key_ref = f"{registry.host}/{repo}:v1"
    verdicts = await _verdicts(_config(tmp_path, pki, registry.host, _bundle_verifier(fake, tmp_path)), pki, [key_ref])
    assert verdicts[key_ref]["allowed"] is True, verdicts[key_ref]["reason"]
    assert verdicts[key_ref]["artifacts"][0]["details"]["identity"] == IDENTITY["identity"]


# -- cosign OCI 1.1 referrer (keyless) -----------------------------------------------------------------------------


async def test_cosign_oci11_referrer_keyless(referrers_proxy: ReferrersProxy, pki: Pki, tmp_path: Path) -> None:
    proxy, fake = referrers_proxy, FakeSigstore()
    key, cert = fake.issue(IDENTITY["identity"], IDENTITY["issuer"])
    repo = "sigstore/oci11"
    image = make_image(repo)
    push_image(proxy.url, repo, "v1", image)
    payload = _simple_signing(proxy.host, repo, image["digest"])
    signature = key.sign(payload, ec.ECDSA(hashes.SHA256()))
    entry = fake.log_entry(fake.hashedrekord(hashlib.sha256(payload).digest(), signature, pem_cert(cert)))
    annotations = {
        mt.ANNOTATION_COSIGN_SIGNATURE: base64.b64encode(signature).decode(),
        mt.ANNOTATION_COSIGN_CERTIFICATE: pem_cert(cert).decode(),
        mt.ANNOTATION_COSIGN_CHAIN: fake.ca_pem.decode(),
        mt.ANNOTATION_COSIGN_BUNDLE: fake.cosign_bundle_annotation(entry),
    }
    manifest, blobs = make_artifact_manifest(
        image["descriptor"], mt.COSIGN_OCI11_SIGNATURE, [(mt.COSIGN_SIMPLESIGNING, payload, annotations)]
    )
    push_artifact(proxy.url, repo, manifest, blobs)
    verifier = {
        "name": "keyless",
        "type": "cosign",
        "artifactTypes": [mt.COSIGN_OCI11_SIGNATURE],
        "identities": [IDENTITY],
        "trustedRoot": _write(tmp_path / "trusted_root.json", fake.trusted_root()),
    }
    key_ref = f"{proxy.host}/{repo}:v1"
    verdicts = await _verdicts(_config(tmp_path, pki, proxy.host, verifier), pki, [key_ref])
    verdict = verdicts[key_ref]
    assert verdict["allowed"] is True, verdict["reason"]
    [artifact] = verdict["artifacts"]
    assert artifact["artifactType"] == mt.COSIGN_OCI11_SIGNATURE
    assert artifact["details"]["sctVerified"] is True and artifact["details"]["signedDigest"] == image["digest"]


# -- attestations: provenance passes / fails a builder-id rule -------------------------------------------------------


async def test_attestation_provenance_builder_rule(registry: RegistryProcess, pki: Pki, tmp_path: Path) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    repo = "sigstore/provenance"
    builders = {"trusted": BUILDER, "untrusted": "https://evil.example/builder@v1"}
    for tag, builder in builders.items():
        image = make_image(f"{repo}/{tag}")
        push_image(registry.url, repo, tag, image)
        predicate = slsa_v1(builder, "https://github.com/org/app", "refs/heads/main")
        envelope, _ = sign_dsse(key, statement(image["digest"], "https://slsa.dev/provenance/v1", predicate))
        annotations = {mt.ANNOTATION_COSIGN_SIGNATURE: "", "predicateType": "https://slsa.dev/provenance/v1"}
        _push_legacy(registry.url, repo, image["digest"], ".att", [(mt.DSSE_ENVELOPE, envelope, annotations)])
    verifier = {
        "name": "provenance",
        "type": "attestation",
        "keys": [_write(tmp_path / "builder.pub", pem_public(key))],
        "predicateTypes": ["https://slsa.dev/provenance/v1"],
        "provenance": {
            "builderIdRegExp": r"https://github\.com/org/builder/\.github/workflows/build\.yml@refs/tags/v2\..*",
            "sourceRepository": "https://github.com/org/app",
        },
    }
    keys = [f"{registry.host}/{repo}:trusted", f"{registry.host}/{repo}:untrusted"]
    verdicts = await _verdicts(_config(tmp_path, pki, registry.host, verifier), pki, keys)
    trusted = verdicts[keys[0]]
    assert trusted["allowed"] is True, trusted["reason"]
    [artifact] = trusted["artifacts"]
    assert artifact["artifactType"] == mt.COSIGN_LEGACY_ATTESTATIONS
    assert artifact["details"]["predicateType"] == "https://slsa.dev/provenance/v1"
    assert artifact["details"]["builderId"] == BUILDER
    assert artifact["details"]["predicate"]["runDetails"]["builder"]["id"] == BUILDER
    untrusted = verdicts[keys[1]]
    assert untrusted["allowed"] is False
    assert "builder id https://evil.example/builder@v1 does not match" in untrusted["reason"]
    assert untrusted["artifacts"][0]["details"]["builderId"] == "https://evil.example/builder@v1"


def test_manifest_helpers_agree() -> None:
    # the legacy tag manifest built here is an image manifest with the image config media type (as cosign writes)
    manifest, _ = make_artifact_manifest(
        None, "unused", [(mt.DSSE_ENVELOPE, b"{}", None)], form="oci-1.0", config_media_type=OCI_CONFIG
    )
    doc = json.loads(manifest)
    assert doc["mediaType"] == OCI_MANIFEST and doc["config"]["mediaType"] == OCI_CONFIG and "artifactType" not in doc
