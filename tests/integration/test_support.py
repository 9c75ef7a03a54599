"""The test infrastructure itself, against the real registry (Debian docker-registry = distribution 2.8.2).

The referrers API exercised here is the ReferrersProxy test double (no installable registry serves it); the
manifests, blobs, fallback tags and auth behind it are the real registry.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import json
import ssl
import time
import urllib.parse
from collections.abc import Callable
from typing import Any, Literal

import aiohttp
import pytest
import trustme
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from tests.support.content import (
    COSIGN_SIGNATURE_ANNOTATION,
    COSIGN_SIMPLESIGNING_MEDIA_TYPE,
    EMPTY_DIGEST,
    EMPTY_MEDIA_TYPE,
    OCI_INDEX,
    OCI_MANIFEST,
    Auth,
    BearerFlow,
    HTTPResult,
    RegistryHTTPError,
    SigningKey,
    cosign_sign_legacy,
    cosign_verify_payload,
    fallback_tag,
    fetch_token,
    get_blob,
    get_manifest,
    http_request,
    make_artifact_manifest,
    make_image,
    make_index,
    parse_www_authenticate,
    push_artifact,
    push_fallback_index,
    push_image,
    push_manifest,
    referrer_descriptor,
    sha256_digest,
)
from tests.support.referrers_proxy import ReferrersProxy
from tests.support.registry import RegistryProcess, TokenServer

SBOM_TYPE = "application/spdx+json"
SIG_TYPE = "application/vnd.example.signature.v1"
INDEX_ACCEPT = OCI_INDEX


def _referrers(proxy: ReferrersProxy, repo: str, digest: str, query: str = "", **headers: str) -> HTTPResult:
    return http_request("GET", f"{proxy.url}/v2/{repo}/referrers/{digest}{query}", headers=headers)


def _push_referrer(
    base: str,
    repo: str,
    subject: dict[str, object],
    artifact_type: str,
    annotations: dict[str, str] | None = None,
    *,
    form: Literal["oci-1.1", "oci-1.0"] = "oci-1.1",
) -> tuple[bytes, str]:
    manifest, blobs = make_artifact_manifest(
        subject,
        artifact_type,
        [("application/octet-stream", f"{artifact_type}{annotations}".encode(), None)],
        annotations,
        form=form,
    )
    digest = push_artifact(base, repo, manifest, blobs)
    return manifest, digest


# --------------------------------------------------------------------------------------------------------
# plain registry, content helpers
# --------------------------------------------------------------------------------------------------------


def test_push_image_roundtrip_byte_identical(registry: RegistryProcess) -> None:
    image = make_image("roundtrip")
    assert make_image("roundtrip")["manifest"] == image["manifest"]  # deterministic
    digest = push_image(registry.url, "support/roundtrip", "v1", image)
    assert digest == image["digest"] == sha256_digest(image["manifest"])
    assert digest.oci_subject is None

    for reference in ("v1", image["digest"]):
        got = get_manifest(registry.url, "support/roundtrip", reference)
        assert got.status == 200
        assert got.body == image["manifest"]
        assert got.header("Docker-Content-Digest") == image["digest"]
        assert got.header("Content-Type") == OCI_MANIFEST

    head = get_manifest(registry.url, "support/roundtrip", "v1", method="HEAD")
    assert head.status == 200
    assert head.body == b""
    assert head.header("Content-Length") == str(len(image["manifest"]))

    config = get_blob(registry.url, "support/roundtrip", image["config_descriptor"]["digest"])
    assert config.body == image["config"]
    layer = get_blob(registry.url, "support/roundtrip", image["layer_descriptors"][0]["digest"])
    assert layer.body == image["layers"][0]
    assert json.loads(image["config"])["rootfs"]["diff_ids"] == [sha256_digest(gzip.decompress(layer.body))]

    # Without OCI types in Accept the registry refuses OCI manifests (reference notes §1).
    refused = get_manifest(
        registry.url, "support/roundtrip", "v1", accept="application/vnd.docker.distribution.manifest.v2+json"
    )
    assert refused.status == 404


def test_index_and_fallback_tag_roundtrip(registry: RegistryProcess) -> None:
    repo = "support/fallback"
    amd, arm = make_image("fb-amd64"), make_image("fb-arm64", architecture="arm64")
    push_image(registry.url, repo, None, amd)
    push_image(registry.url, repo, None, arm)
    index, index_digest = make_index(
        [(amd, {"architecture": "amd64", "os": "linux"}), (arm, {"architecture": "arm64", "os": "linux"})]
    )
    assert push_manifest(registry.url, repo, "multi", index, OCI_INDEX) == index_digest

    m1, d1 = _push_referrer(registry.url, repo, amd["descriptor"], SBOM_TYPE, {"org.example.n": "1"})
    m2, d2 = _push_referrer(registry.url, repo, amd["descriptor"], SIG_TYPE, form="oci-1.0")
    push_fallback_index(registry.url, repo, amd["digest"], [m1])
    written = push_fallback_index(registry.url, repo, amd["digest"], [m2, m1])  # merge, dedupe by digest
    tag = fallback_tag(amd["digest"])
    assert tag == "sha256-" + amd["digest"].removeprefix("sha256:")

    got = get_manifest(registry.url, repo, tag, accept=INDEX_ACCEPT)
    assert got.status == 200
    assert got.header("Docker-Content-Digest") == written
    entries = got.json()["manifests"]
    assert [e["digest"] for e in entries] == [d2, d1]
    assert entries[0]["artifactType"] == SIG_TYPE  # OCI 1.0 form: config.mediaType
    assert entries[1] == referrer_descriptor(m1)
    assert entries[1]["annotations"] == {"org.example.n": "1"}


# --------------------------------------------------------------------------------------------------------
# referrers proxy
# --------------------------------------------------------------------------------------------------------


def test_proxy_lists_referrers(referrers_proxy: ReferrersProxy) -> None:
    proxy, repo = referrers_proxy, "support/referrers"
    image = make_image("referrers")
    push_image(proxy.url, repo, "v1", image)

    annotations = {"org.opencontainers.image.created": "2024-05-01T00:00:00Z", "org.example.kind": "sbom"}
    manifest, blobs = make_artifact_manifest(
        image["descriptor"], SBOM_TYPE, [(SBOM_TYPE, b'{"spdxVersion":"SPDX-2.3"}', None)], annotations
    )
    assert json.loads(manifest)["config"] == {"mediaType": EMPTY_MEDIA_TYPE, "digest": EMPTY_DIGEST, "size": 2}
    pushed = push_artifact(proxy.url, repo, manifest, blobs)
    assert pushed == sha256_digest(manifest)
    assert pushed.oci_subject == image["digest"]
    old_manifest, old_digest = _push_referrer(proxy.url, repo, image["descriptor"], SIG_TYPE, form="oci-1.0")

    # The real registry stored the exact bytes.
    assert get_manifest(proxy.url, repo, pushed).body == manifest

    res = _referrers(proxy, repo, image["digest"], Accept=OCI_INDEX)
    assert res.status == 200
    assert res.header("Content-Type") == OCI_INDEX
    index = res.json()
    assert index["mediaType"] == OCI_INDEX
    assert index["schemaVersion"] == 2
    by_digest = {m["digest"]: m for m in index["manifests"]}
    assert by_digest[pushed] == {
        "mediaType": OCI_MANIFEST,
        "digest": pushed,
        "size": len(manifest),
        "artifactType": SBOM_TYPE,
        "annotations": annotations,
    }
    assert by_digest[old_digest]["artifactType"] == SIG_TYPE
    assert by_digest[old_digest]["size"] == len(old_manifest)

    # An index referrer without artifactType: artifactType omitted.
    idx, idx_digest = make_index([(image, None)], annotations={"org.example.kind": "bundle"})
    idx_obj = json.loads(idx)
    idx_obj["subject"] = image["descriptor"]
    idx = json.dumps(idx_obj, separators=(",", ":")).encode()
    idx_digest = push_manifest(proxy.url, repo, sha256_digest(idx), idx, OCI_INDEX)
    entry = next(m for m in _referrers(proxy, repo, image["digest"]).json()["manifests"] if m["digest"] == idx_digest)
    assert "artifactType" not in entry
    assert entry["mediaType"] == OCI_INDEX
    assert entry["annotations"] == {"org.example.kind": "bundle"}

    unknown = "sha256:" + "0" * 64
    empty = _referrers(proxy, repo, unknown)
    assert empty.status == 200
    assert empty.json()["manifests"] == []
    for bad in ("sha256:abc", "nodigest", "sha256:" + "G" * 64):
        assert _referrers(proxy, repo, bad).status == 400
    assert proxy.count("referrers") == 2 + 1 + 3
    assert proxy.count("manifests", "PUT") == 4


def test_proxy_filter_and_ignore_filter(referrers_proxy: ReferrersProxy) -> None:
    proxy, repo = referrers_proxy, "support/filter"
    image = make_image("filter")
    push_image(proxy.url, repo, "v1", image)
    _, sbom = _push_referrer(proxy.url, repo, image["descriptor"], SBOM_TYPE)
    _push_referrer(proxy.url, repo, image["descriptor"], SIG_TYPE)

    query = "?" + urllib.parse.urlencode({"artifactType": SBOM_TYPE})
    filtered = _referrers(proxy, repo, image["digest"], query)
    assert filtered.header("OCI-Filters-Applied") == "artifactType"
    assert [m["digest"] for m in filtered.json()["manifests"]] == [sbom]

    proxy.ignore_filter = True
    unfiltered = _referrers(proxy, repo, image["digest"], query)
    assert unfiltered.header("OCI-Filters-Applied") is None
    assert len(unfiltered.json()["manifests"]) == 2


def test_proxy_pagination_link(referrers_proxy: ReferrersProxy) -> None:
    proxy, repo = referrers_proxy, "support/pages"
    image = make_image("pages")
    push_image(proxy.url, repo, "v1", image)
    pushed = [_push_referrer(proxy.url, repo, image["descriptor"], SIG_TYPE, {"n": str(i)})[1] for i in range(5)]
    proxy.page_size = 2

    seen: list[str] = []
    url = f"{proxy.url}/v2/{repo}/referrers/{image['digest']}"
    pages = 0
    while url:
        res = http_request("GET", url)
        assert res.status == 200
        pages += 1
        seen.extend(m["digest"] for m in res.json()["manifests"])
        link = res.header("Link")
        if link is None:
            break
        target, _, rel = link.partition(";")
        assert rel.strip() == 'rel="next"'
        url = urllib.parse.urljoin(url, target.strip().strip("<>"))
        assert "n=2" in url
        assert "last=" in url
    assert pages == 3
    assert seen == pushed


def test_proxy_modes(referrers_proxy: ReferrersProxy) -> None:
    proxy, repo = referrers_proxy, "support/modes"
    image = make_image("modes")
    push_image(proxy.url, repo, "v1", image)
    subject = image["digest"]

    proxy.mode = "404"
    res = _referrers(proxy, repo, subject)
    assert res.status == 404
    assert res.body == b"404 page not found\n"
    assert (res.header("Content-Type") or "").startswith("text/plain")

    proxy.mode = "passthrough"  # the real distribution 2.8.2 answer
    real = _referrers(proxy, repo, subject)
    assert real.status == 404
    assert real.body.startswith(b"404 page not found")

    proxy.mode = "401"
    res = _referrers(proxy, repo, subject)
    assert res.status == 401
    scheme, params = parse_www_authenticate(res.header("WWW-Authenticate") or "")
    assert scheme == "bearer"
    assert params["realm"] == f"{proxy.url}/token"
    assert params["scope"] == f"repository:{repo}:pull"
    token = fetch_token(params["realm"], service=params["service"], scopes=[params["scope"]])
    assert _referrers(proxy, repo, subject, Authorization=f"Bearer {token}").status == 200
    proxy.mode = "401-always"
    assert _referrers(proxy, repo, subject, Authorization=f"Bearer {token}").status == 401
    assert proxy.count("tokens") == 1

    proxy.mode, proxy.throttle_count, proxy.retry_after = "429", 2, 3
    for _ in range(2):
        res = _referrers(proxy, repo, subject)
        assert res.status == 429
        assert res.header("Retry-After") == "3"
        assert res.json()["errors"][0]["code"] == "TOOMANYREQUESTS"
    assert _referrers(proxy, repo, subject).status == 200

    proxy.mode, proxy.delay = "slow", 0.3
    started = time.monotonic()
    assert _referrers(proxy, repo, subject).status == 200
    assert time.monotonic() - started >= 0.3


def test_proxy_faults_corruption_and_counters(referrers_proxy: ReferrersProxy) -> None:
    proxy, repo = referrers_proxy, "support/faults"
    image = make_image("faults")
    push_image(proxy.url, repo, "v1", image)
    assert proxy.counts["blobs"] == 4
    assert proxy.counts["manifests"] == 1

    path = f"/v2/{repo}/manifests/{image['digest']}"
    proxy.corrupt_paths.add(path)
    bad = get_manifest(proxy.url, repo, image["digest"])
    assert bad.status == 200
    assert bad.header("Docker-Content-Digest") == image["digest"]
    assert len(bad.body) == len(image["manifest"])
    assert bad.body != image["manifest"]
    assert sum(a != b for a, b in zip(bad.body, image["manifest"], strict=True)) == 1
    json.loads(bad.body)  # still valid JSON: only the digest check can catch it
    assert sha256_digest(bad.body) != image["digest"]
    proxy.corrupt_paths.clear()

    proxy.status_override["/manifests/"] = (503, {"Retry-After": "0"}, 2)
    assert [get_manifest(proxy.url, repo, "v1").status for _ in range(3)] == [503, 503, 200]
    assert proxy.status_override == {}

    head = get_manifest(proxy.url, repo, "v1", method="HEAD")
    assert head.status == 200
    assert head.header("Content-Length") == str(len(image["manifest"]))
    assert head.header("Docker-Content-Digest") == image["digest"]

    assert ("HEAD", f"/v2/{repo}/manifests/v1") in proxy.log
    assert proxy.count("manifests", "GET") == 4


async def test_proxy_usable_from_async_tests(referrers_proxy: ReferrersProxy) -> None:
    repo = "support/async"
    image = make_image("async")
    push_image(referrers_proxy.url, repo, "v1", image)
    _, sbom = _push_referrer(referrers_proxy.url, repo, image["descriptor"], SBOM_TYPE)
    async with aiohttp.ClientSession(trust_env=False) as session:
        url = f"{referrers_proxy.url}/v2/{repo}/referrers/{image['digest']}"
        async with session.get(url, headers={"Accept": OCI_INDEX}) as resp:
            assert resp.status == 200
            body = await resp.json(content_type=None)
    assert [m["digest"] for m in body["manifests"]] == [sbom]


def test_proxy_in_front_of_token_registry(
    token_registry: RegistryProcess, referrers_proxy_factory: Callable[[RegistryProcess], ReferrersProxy]
) -> None:
    proxy = referrers_proxy_factory(token_registry)
    assert token_registry.token_server is not None
    flow = BearerFlow(token_registry.username, token_registry.password)
    image = make_image("proxied-token")
    digest = push_image(proxy.url, "support/proxied", "v1", image, auth=flow)
    assert digest == image["digest"]
    assert proxy.count("tokens") == flow.tokens_fetched == 1  # challenge realm rewritten to the proxy
    got = get_manifest(proxy.url, "support/proxied", "v1", auth=flow)
    assert got.status == 200
    assert got.body == image["manifest"]


# --------------------------------------------------------------------------------------------------------
# TLS + htpasswd
# --------------------------------------------------------------------------------------------------------


def test_tls_basic_auth(tls_registry: RegistryProcess) -> None:
    assert tls_registry.url.startswith("https://127.0.0.1:")
    assert tls_registry.ca_pem_path
    ctx = ssl.create_default_context(cafile=tls_registry.ca_pem_path)

    anonymous = http_request("GET", f"{tls_registry.url}/v2/", ssl_ctx=ctx)
    assert anonymous.status == 401
    assert (anonymous.header("WWW-Authenticate") or "").startswith("Basic realm=")

    assert tls_registry.username is not None
    assert tls_registry.password is not None
    creds: Auth = ("basic", tls_registry.username, tls_registry.password)
    wrong: Auth = ("basic", tls_registry.username, "wrong")
    assert http_request("GET", f"{tls_registry.url}/v2/", ssl_ctx=ctx, headers={}).status == 401
    image = make_image("tls")
    with pytest.raises(RegistryHTTPError) as refused:
        push_image(tls_registry.url, "support/tls", "v1", image, auth=wrong, ssl_ctx=ctx)
    assert refused.value.status == 401
    assert push_image(tls_registry.url, "support/tls", "v1", image, auth=creds, ssl_ctx=ctx) == image["digest"]
    got = get_manifest(tls_registry.url, "support/tls", "v1", auth=creds, ssl_ctx=ctx)
    assert got.status == 200
    assert got.body == image["manifest"]
    assert get_manifest(tls_registry.url, "support/tls", "v1", ssl_ctx=ctx).status == 401

    # A client trusting another CA (and not the system store) cannot connect.
    other = ssl.create_default_context(cadata=trustme.CA().cert_pem.bytes().decode())
    with pytest.raises(ssl.SSLCertVerificationError):
        http_request("GET", f"{tls_registry.url}/v2/", ssl_ctx=other)
    with pytest.raises(ValueError, match="explicit ssl_ctx"):
        http_request("GET", f"{tls_registry.url}/v2/")


# --------------------------------------------------------------------------------------------------------
# token auth
# --------------------------------------------------------------------------------------------------------


def test_token_auth(token_registry: RegistryProcess) -> None:
    ts = token_registry.token_server
    assert ts is not None
    base, repo = token_registry.url, "support/token"
    image = make_image("token")
    push_image(base, repo, "v1", image, auth=BearerFlow(token_registry.username, token_registry.password))

    challenge = http_request("GET", f"{base}/v2/{repo}/manifests/v1")
    assert challenge.status == 401
    scheme, params = parse_www_authenticate(challenge.header("WWW-Authenticate") or "")
    assert scheme == "bearer"
    assert params["realm"] == ts.realm
    assert params["service"] == ts.service
    assert params["scope"] == f"repository:{repo}:pull"

    # Anonymous: the token server answers, but grants nothing (anonymous pull disabled).
    before = len(ts.requests)
    anon = fetch_token(ts.realm, service=ts.service, scopes=[params["scope"]])
    assert ts.requests[before:] == [(params["scope"], None)]
    assert get_manifest(base, repo, "v1", auth=("bearer", anon)).status == 401

    # Wrong password: refused by the token server.
    with pytest.raises(RegistryHTTPError) as bad:
        fetch_token(ts.realm, service=ts.service, scopes=[params["scope"]], username="bob", password="nope")
    assert bad.value.status == 401

    # bob, pull only: GET works, PUT is refused.
    pull = fetch_token(ts.realm, service=ts.service, scopes=[params["scope"]], username="bob", password="hunter2")
    got = get_manifest(base, repo, "v1", auth=("bearer", pull))
    assert got.status == 200
    assert got.body == image["manifest"]
    with pytest.raises(RegistryHTTPError) as denied:
        push_manifest(base, repo, "v2", image["manifest"], OCI_MANIFEST, auth=("bearer", pull))
    assert denied.value.status == 401
    assert "insufficient_scope" in (denied.value.result.header("WWW-Authenticate") or "")

    # bob, pull,push: PUT works.
    push = fetch_token(
        ts.realm, service=ts.service, scopes=[f"repository:{repo}:pull,push"], username="bob", password="hunter2"
    )
    assert push_manifest(base, repo, "v2", image["manifest"], OCI_MANIFEST, auth=("bearer", push)) == image["digest"]

    # A correctly shaped token signed by a key outside the rootcertbundle is rejected.
    rogue = TokenServer(users={"bob": "hunter2"}, issuer=ts.issuer, service=ts.service, ca=trustme.CA())
    try:
        forged = rogue.issue_token("bob", [{"type": "repository", "name": repo, "actions": ["pull"]}])
    finally:
        rogue.stop()
    assert get_manifest(base, repo, "v1", auth=("bearer", forged)).status == 401
    # ... while the same claims from the trusted signer work; wrong audience / expired do not.
    access = [{"type": "repository", "name": repo, "actions": ["pull"]}]
    assert get_manifest(base, repo, "v1", auth=("bearer", ts.issue_token("bob", access))).status == 200
    wrong_aud = ts.issue_token("bob", access, audience="another-registry")
    assert get_manifest(base, repo, "v1", auth=("bearer", wrong_aud)).status == 401
    expired = ts.issue_token("bob", access, expires_in=-600, not_before=time.time() - 1200)
    assert get_manifest(base, repo, "v1", auth=("bearer", expired)).status == 401

    # Token response shape.
    raw = http_request("GET", f"{ts.realm}?service={ts.service}&scope=repository:{repo}:pull")
    body = raw.json()
    assert set(body) == {"token", "access_token", "expires_in", "issued_at"}
    assert body["token"] == body["access_token"]
    assert body["expires_in"] == ts.expires_in


# --------------------------------------------------------------------------------------------------------
# cosign legacy signatures
# --------------------------------------------------------------------------------------------------------


def _read_sig(registry: RegistryProcess, repo: str, tag: str) -> tuple[dict[str, Any], list[bytes]]:
    got = get_manifest(registry.url, repo, tag, accept=OCI_MANIFEST)
    assert got.status == 200
    manifest = got.json()
    blobs = [get_blob(registry.url, repo, layer["digest"]).body for layer in manifest["layers"]]
    return manifest, blobs


def test_cosign_legacy_signature_roundtrip(registry: RegistryProcess) -> None:
    repo = "support/cosign"
    image = make_image("cosign")
    push_image(registry.url, repo, "v1", image)
    ec_key = ec.generate_private_key(ec.SECP256R1())

    sig = cosign_sign_legacy(registry.url, repo, image["digest"], ec_key)
    assert sig.tag == "sha256-" + image["digest"].removeprefix("sha256:") + ".sig"
    manifest, blobs = _read_sig(registry, repo, sig.tag)
    assert manifest["config"]["mediaType"] == "application/vnd.oci.image.config.v1+json"
    (layer,) = manifest["layers"]
    assert layer["mediaType"] == COSIGN_SIMPLESIGNING_MEDIA_TYPE
    payload = blobs[0]
    assert sha256_digest(payload) == layer["digest"]
    assert len(payload) == layer["size"]
    assert payload == (
        b'{"critical":{"identity":{"docker-reference":"' + registry.host.encode() + b'/support/cosign"},'
        b'"image":{"docker-manifest-digest":"' + image["digest"].encode() + b'"},'
        b'"type":"cosign container image signature"},"optional":null}'
    )
    signature = layer["annotations"][COSIGN_SIGNATURE_ANNOTATION]
    assert cosign_verify_payload(ec_key.public_key(), payload, signature)
    assert not cosign_verify_payload(ec.generate_private_key(ec.SECP256R1()).public_key(), payload, signature)
    base64.b64decode(signature, validate=True)

    # More signatures appended as layers: RSA, P-384, Ed25519.
    keys: list[SigningKey] = [
        rsa.generate_private_key(65537, 2048),
        ec.generate_private_key(ec.SECP384R1()),
        ed25519.Ed25519PrivateKey.generate(),
    ]
    for key in keys:
        cosign_sign_legacy(registry.url, repo, image["digest"], key, append=True)
    manifest, blobs = _read_sig(registry, repo, sig.tag)
    layers = manifest["layers"]
    assert len(layers) == 4
    for key, layer, blob in zip([ec_key, *keys], layers, blobs, strict=True):
        assert cosign_verify_payload(key.public_key(), blob, layer["annotations"][COSIGN_SIGNATURE_ANNOTATION])
    config = json.loads(get_blob(registry.url, repo, manifest["config"]["digest"]).body)
    assert config["rootfs"]["diff_ids"] == [layer["digest"] for layer in layers]


def test_cosign_legacy_tampered_and_other_digest(registry: RegistryProcess) -> None:
    repo = "support/cosign-bad"
    image = make_image("cosign-bad")
    push_image(registry.url, repo, "v1", image)
    key = ec.generate_private_key(ec.SECP256R1())

    other = "sha256:" + hashlib.sha256(b"other").hexdigest()
    wrong = cosign_sign_legacy(registry.url, repo, image["digest"], key, digest_in_payload=other)
    assert json.loads(wrong.payload)["critical"]["image"]["docker-manifest-digest"] == other
    assert cosign_verify_payload(key.public_key(), wrong.payload, wrong.signature_b64)  # valid, wrong digest

    tampered_payload = wrong.signed_payload.replace(b"support/cosign-bad", b"support/cosign-ba3")
    tampered = cosign_sign_legacy(registry.url, repo, image["digest"], key, payload_override=tampered_payload)
    manifest, blobs = _read_sig(registry, repo, tampered.tag)
    (layer,) = manifest["layers"]
    assert blobs[0] == tampered_payload
    assert layer["digest"] == sha256_digest(tampered_payload)
    assert not cosign_verify_payload(key.public_key(), blobs[0], layer["annotations"][COSIGN_SIGNATURE_ANNOTATION])
    assert cosign_verify_payload(key.public_key(), tampered.signed_payload, tampered.signature_b64)


@pytest.mark.parametrize("kind", ["plain", "tls", "token"])
def test_fixture_shapes(
    kind: str, registry: RegistryProcess, tls_registry: RegistryProcess, token_registry: RegistryProcess
) -> None:
    reg = {"plain": registry, "tls": tls_registry, "token": token_registry}[kind]
    assert reg.host.startswith("127.0.0.1:")
    assert reg.url.endswith(reg.host)
    assert reg.pid is not None
    if kind == "tls":
        assert (reg.username, reg.password) == ("alice", "s3cret")
        assert reg.ssl_context() is not None
    if kind == "token":
        assert (reg.username, reg.password) == ("bob", "hunter2")
        assert reg.token_server is not None
        assert reg.token_server.anonymous_pull is False
