"""The registry client on real registries: auth flows, TLS, the referrers API (through the spec-following
double — no installable registry serves it), the tag-schema fallback, limits, digests and retries."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography.hazmat.primitives.asymmetric import ec

from provider import mediatypes as mt
from provider.config import load_config
from provider.executor import Engine
from provider.reference import ImageRef, parse_reference
from tests.integration.conftest import SignedSet
from tests.support.content import (
    BearerFlow,
    cosign_payload,
    cosign_sign_legacy,
    cosign_sign_payload,
    make_artifact_manifest,
    make_image,
    push_artifact,
    push_fallback_index,
    push_image,
    referrer_descriptor,
)
from tests.support.referee import write_config
from tests.support.referrers_proxy import ReferrersProxy
from tests.support.registry import RegistryProcess


def _config(tmp_path: Path, hosts: list[dict[str, Any]], key_file: Path, **extra: Any) -> Path:
    doc: dict[str, Any] = {
        "registries": {"allow": ["127.0.0.1:*"], "hosts": hosts},
        "verifiers": [{"name": "cosign-ci", "type": "cosign", "keys": [str(key_file)]}],
        "policy": {"type": "required-verifiers", "required": ["cosign-ci"]},
    }
    for section, values in extra.items():
        doc.setdefault(section, {}).update(values)
    return write_config(tmp_path / "referee.yaml", doc)


@pytest.fixture
async def engine_factory() -> AsyncIterator[Any]:
    engines: list[Engine] = []

    def make(path: Path) -> Engine:
        engine = Engine(load_config(path))
        engines.append(engine)
        return engine

    yield make
    for engine in engines:
        await engine.close()


def _cosign_referrer(
    subject: dict[str, Any], key: ec.EllipticCurvePrivateKey, host: str, repo: str
) -> tuple[bytes, dict[str, bytes]]:
    """cosign's OCI 1.1 referrer form: artifactType application/vnd.dev.cosign.artifact.sig.v1+json."""
    payload = cosign_payload(f"{host}/{repo}", subject["digest"])
    signature = cosign_sign_payload(key, payload)
    return make_artifact_manifest(
        subject,
        mt.COSIGN_OCI11_SIGNATURE,
        [(mt.COSIGN_SIMPLESIGNING, payload, {mt.ANNOTATION_COSIGN_SIGNATURE: signature})],
        annotations={mt.ANNOTATION_CREATED: "2026-01-01T00:00:00Z"},
    )


async def test_referrers_api_pagination_filter_and_request_counts(
    referrers_proxy: ReferrersProxy, signed_set: SignedSet, tmp_path: Path, engine_factory: Any
) -> None:
    proxy, key = referrers_proxy, signed_set.key
    repo = "paths/referrers"
    image = make_image("referrers-api")
    push_image(proxy.url, repo, "v1", image)
    sig_manifest, sig_blobs = _cosign_referrer(image["descriptor"], key, proxy.host, repo)
    push_artifact(proxy.url, repo, sig_manifest, sig_blobs)
    for i in range(3):
        other, blobs = make_artifact_manifest(
            image["descriptor"], "application/vnd.example.other", [("text/plain", f"x{i}".encode(), None)]
        )
        push_artifact(proxy.url, repo, other, blobs)
    proxy.page_size = 1
    config = _config(tmp_path, [{"host": proxy.host, "plainHttp": True}], signed_set.key_file)
    engine = engine_factory(config)

    listing = await engine.runtime.client.list_referrers(
        _ref(proxy.host, repo), image["digest"], frozenset({"application/vnd.example.other"})
    )
    listed = listing.descriptors
    assert len(listed) == 3 and {d.artifact_type for d in listed} == {"application/vnd.example.other"}
    assert not listing.truncated and listing.notes == ()
    everything = await engine.runtime.client.list_referrers(_ref(proxy.host, repo), image["digest"], None)
    assert len({d.digest for d in everything.descriptors}) == 4
    assert proxy.count("referrers") >= 5  # both listings paginated

    proxy.page_size = None
    proxy.ignore_filter = True
    proxy.log.clear()
    proxy.counts.clear()
    outcome = await engine.verify_key(f"{proxy.host}/{repo}:v1")
    assert outcome.verdict is not None and outcome.verdict.allowed, outcome
    [artifact] = outcome.verdict.artifacts
    assert artifact.artifact_type == mt.COSIGN_OCI11_SIGNATURE
    # Cold: 1 HEAD to resolve the tag (the earlier listing resolved nothing), 1 referrers listing, the
    # signature manifest, its payload blob (the legacy .sig tag is looked up too: 1 more).
    assert proxy.count("manifests", "HEAD") == 1
    assert proxy.count("referrers") == 1
    assert proxy.count("blobs") == 1
    assert len(proxy.log) == 5, proxy.log

    proxy.log.clear()
    again = await engine.verify_key(f"{proxy.host}/{repo}:v1")
    assert again.cached and again.verdict == outcome.verdict
    assert proxy.log == []


def _ref(host: str, repo: str) -> ImageRef:
    return parse_reference(f"{host}/{repo}:v1")


async def test_legacy_cosign_needs_three_requests_cold_and_none_warm(
    referrers_proxy: ReferrersProxy, signed_set: SignedSet, tmp_path: Path, engine_factory: Any
) -> None:
    proxy = referrers_proxy
    config = _config(tmp_path, [{"host": proxy.host, "plainHttp": True}], signed_set.key_file)
    doc = yaml.safe_load(config.read_text())
    doc["verifiers"][0]["artifactTypes"] = [mt.COSIGN_LEGACY_SIGNATURES]
    engine = engine_factory(write_config(config, doc))
    key = f"{proxy.host}/{signed_set.repo}:signed"
    outcome = await engine.verify_key(key)
    assert outcome.verdict is not None and outcome.verdict.allowed
    # resolve tag (HEAD) + .sig manifest + payload blob; no referrers listing is needed for legacy tags
    assert sorted(m for m, _ in proxy.log) == ["GET", "GET", "HEAD"], proxy.log
    proxy.log.clear()
    assert (await engine.verify_key(key)).cached
    assert proxy.log == []


async def test_fallback_tag_schema_is_used_and_remembered(
    referrers_proxy: ReferrersProxy, signed_set: SignedSet, tmp_path: Path, engine_factory: Any
) -> None:
    proxy = referrers_proxy
    proxy.mode = "404"
    repo = "paths/fallback"
    images = [make_image(f"fallback-{i}") for i in range(2)]
    for i, image in enumerate(images):
        push_image(proxy.url, repo, f"v{i}", image)
        manifest, blobs = _cosign_referrer(image["descriptor"], signed_set.key, proxy.host, repo)
        push_artifact(proxy.url, repo, manifest, blobs)
        push_fallback_index(proxy.url, repo, image["digest"], [referrer_descriptor(manifest)])
    engine = engine_factory(_config(tmp_path, [{"host": proxy.host, "plainHttp": True}], signed_set.key_file))
    for i in range(2):
        outcome = await engine.verify_key(f"{proxy.host}/{repo}:v{i}")
        assert outcome.verdict is not None and outcome.verdict.allowed, outcome
    assert proxy.count("referrers") == 1  # the 404 is remembered per registry


async def test_digest_mismatch_is_an_error_never_trusted(
    referrers_proxy: ReferrersProxy, signed_set: SignedSet, tmp_path: Path, engine_factory: Any
) -> None:
    proxy = referrers_proxy
    engine = engine_factory(_config(tmp_path, [{"host": proxy.host, "plainHttp": True}], signed_set.key_file))
    digest = signed_set.digest("signed")
    sig_path = f"/v2/{signed_set.repo}/manifests/{digest.replace(':', '-')}.sig"
    proxy.corrupt_paths.add(sig_path)
    corrupted = await engine.verify_key(f"{proxy.host}/{signed_set.repo}:signed")
    assert corrupted.error is not None and corrupted.error.code == "DIGEST_MISMATCH"
    assert not corrupted.error.transient
    other = await engine.verify_key(f"{proxy.host}/{signed_set.repo}:wrongkey")
    assert other.verdict is not None and not other.verdict.allowed

    proxy.corrupt_paths.clear()
    image = make_image("blob-corruption")
    push_image(proxy.url, "paths/blob", "v1", image)
    sig = cosign_sign_legacy(proxy.url, "paths/blob", image["digest"], signed_set.key)
    proxy.corrupt_paths.add(f"/v2/paths/blob/blobs/{sig.layer['digest']}")
    outcome = await engine.verify_key(f"{proxy.host}/paths/blob:v1")
    assert outcome.verdict is not None and not outcome.verdict.allowed
    assert "DIGEST_MISMATCH" in outcome.verdict.decision.reason


async def test_429_and_5xx_are_retried_within_the_deadline(
    referrers_proxy: ReferrersProxy, signed_set: SignedSet, tmp_path: Path, engine_factory: Any
) -> None:
    proxy = referrers_proxy
    engine = engine_factory(_config(tmp_path, [{"host": proxy.host, "plainHttp": True}], signed_set.key_file))
    proxy.status_override["/manifests/"] = (429, {"Retry-After": "0"}, 2)
    outcome = await engine.verify_key(f"{proxy.host}/{signed_set.repo}:signed")
    assert outcome.verdict is not None and outcome.verdict.allowed
    assert proxy.count("manifests", "HEAD") == 3  # two 429s, then the answer

    proxy.status_override["/manifests/"] = (503, {}, 10)
    failed = await engine.verify_key(f"{proxy.host}/{signed_set.repo}:unsigned")
    assert failed.error is not None and failed.error.code == "REGISTRY_UNAVAILABLE" and failed.error.transient

    proxy.status_override["/manifests/"] = (501, {}, 10)
    unimplemented = await engine.verify_key(f"{proxy.host}/{signed_set.repo}:copied")
    assert unimplemented.error is not None
    assert unimplemented.error.code == "REGISTRY_UNAVAILABLE"
    assert unimplemented.error.transient

    proxy.status_override["/manifests/"] = (429, {"Retry-After": "120"}, 1)
    slow = await engine.verify_key(f"{proxy.host}/{signed_set.repo}:tampered")
    assert slow.error is not None and slow.error.transient
    assert "beyond the request deadline" in slow.error.message


async def test_token_auth_caches_one_token_per_repository(
    token_registry: RegistryProcess, signed_set: SignedSet, tmp_path: Path, engine_factory: Any
) -> None:
    reg = token_registry
    flow = BearerFlow(reg.username, reg.password)
    repo = "paths/token"
    images = [make_image(f"token-{i}") for i in range(3)]
    for i, image in enumerate(images):
        push_image(reg.url, repo, f"v{i}", image, flow)
        cosign_sign_legacy(reg.url, repo, image["digest"], signed_set.key, flow)
    server = reg.token_server
    assert server is not None
    realm_host = server.url.split("//")[1].split("/")[0]
    hosts = [
        {
            "host": reg.host,
            "plainHttp": True,
            "username": reg.username,
            "password": reg.password,
            "tokenRealms": [realm_host],
        },
        {"host": realm_host, "plainHttp": True},
    ]
    (tmp_path / "ok").mkdir()
    engine = engine_factory(_config(tmp_path / "ok", hosts, signed_set.key_file))
    before = len(server.requests)
    for i in range(3):
        outcome = await engine.verify_key(f"{reg.host}/{repo}:v{i}")
        assert outcome.verdict is not None and outcome.verdict.allowed, outcome
    scopes = [scope for scope, _user in server.requests[before:]]
    assert scopes == [f"repository:{repo}:pull"]

    (tmp_path / "bad").mkdir()
    bad_hosts = [dict(hosts[0], password="wrong"), hosts[1]]
    bad = engine_factory(_config(tmp_path / "bad", bad_hosts, signed_set.key_file))
    denied = await bad.verify_key(f"{reg.host}/{repo}:v0")
    assert denied.error is not None and denied.error.code == "AUTH_DENIED"


async def test_docker_config_credentials_and_plain_http_realm_refused(
    token_registry: RegistryProcess, signed_set: SignedSet, tmp_path: Path, engine_factory: Any
) -> None:
    reg = token_registry
    flow = BearerFlow(reg.username, reg.password)
    image = make_image("docker-config")
    push_image(reg.url, "paths/dockercfg", "v1", image, flow)
    cosign_sign_legacy(reg.url, "paths/dockercfg", image["digest"], signed_set.key, flow)
    assert reg.token_server is not None
    realm_host = reg.token_server.url.split("//")[1].split("/")[0]
    auth = base64.b64encode(f"{reg.username}:{reg.password}".encode()).decode()
    docker_config = tmp_path / "config.json"
    docker_config.write_text(json.dumps({"auths": {f"http://{reg.host}": {"auth": auth}}}))
    hosts = [
        {"host": reg.host, "plainHttp": True, "tokenRealms": [realm_host]},
        {"host": realm_host, "plainHttp": True},
    ]
    config = _config(tmp_path, hosts, signed_set.key_file, registries={"dockerConfig": str(docker_config)})
    outcome = await engine_factory(config).verify_key(f"{reg.host}/paths/dockercfg:v1")
    assert outcome.verdict is not None and outcome.verdict.allowed, outcome

    (tmp_path / "no-realm").mkdir()
    strict = _config(
        tmp_path / "no-realm", hosts[:1], signed_set.key_file, registries={"dockerConfig": str(docker_config)}
    )
    refused = await engine_factory(strict).verify_key(f"{reg.host}/paths/dockercfg:v1")
    assert refused.error is not None and refused.error.code == "AUTH_DENIED"
    assert "plain HTTP" in refused.error.message


async def test_basic_auth_over_tls_with_a_private_ca(
    tls_registry: RegistryProcess, signed_set: SignedSet, tmp_path: Path, engine_factory: Any
) -> None:
    reg = tls_registry
    auth = ("basic", reg.username, reg.password)
    ctx = reg.ssl_context()
    image = make_image("tls-basic")
    push_image(reg.url, "paths/tls", "v1", image, auth, ctx)
    cosign_sign_legacy(reg.url, "paths/tls", image["digest"], signed_set.key, auth, ctx)
    key = f"{reg.host}/paths/tls:v1"
    good_host = {"host": reg.host, "caFile": str(reg.ca_pem_path), "username": reg.username, "password": reg.password}
    cases = {
        "ok": (good_host, None),
        "no-ca": ({k: v for k, v in good_host.items() if k != "caFile"}, "REGISTRY_ERROR"),
        "no-creds": ({"host": reg.host, "caFile": str(reg.ca_pem_path)}, "AUTH_DENIED"),
        "wrong-password": (dict(good_host, password="nope"), "AUTH_DENIED"),
    }
    for name, (host, expected_error) in cases.items():
        (tmp_path / name).mkdir()
        outcome = await engine_factory(_config(tmp_path / name, [host], signed_set.key_file)).verify_key(key)
        if expected_error is None:
            assert outcome.verdict is not None and outcome.verdict.allowed, outcome
        else:
            assert outcome.error is not None and outcome.error.code == expected_error, (name, outcome)


async def test_size_limits_apply_before_reading(
    referrers_proxy: ReferrersProxy, signed_set: SignedSet, tmp_path: Path, engine_factory: Any
) -> None:
    proxy = referrers_proxy
    repo = "paths/big"
    image = make_image("big-payload")
    push_image(proxy.url, repo, "v1", image)
    big_optional = {"padding": "x" * 300_000}
    payload = cosign_payload(f"{proxy.host}/{repo}", image["digest"], big_optional)
    cosign_sign_legacy(proxy.url, repo, image["digest"], signed_set.key, optional=big_optional)
    assert len(payload) > 256 * 1024
    engine = engine_factory(_config(tmp_path, [{"host": proxy.host, "plainHttp": True}], signed_set.key_file))
    proxy.log.clear()
    outcome = await engine.verify_key(f"{proxy.host}/{repo}:v1")
    assert outcome.verdict is not None and not outcome.verdict.allowed
    assert "ARTIFACT_TOO_LARGE" in outcome.verdict.decision.reason
    assert "over the" in outcome.verdict.decision.reason and "limit" in outcome.verdict.decision.reason
    assert proxy.count("blobs") == 0  # refused from the descriptor size, nothing downloaded


async def test_nested_signatures_are_verified_against_their_parent_artifact(
    referrers_proxy: ReferrersProxy, signed_set: SignedSet, tmp_path: Path, engine_factory: Any
) -> None:
    proxy, key = referrers_proxy, signed_set.key
    repo = "paths/nested"
    image = make_image("nested")
    push_image(proxy.url, repo, "v1", image)
    parent, blobs = _cosign_referrer(image["descriptor"], key, proxy.host, repo)
    push_artifact(proxy.url, repo, parent, blobs)
    parent_digest = referrer_descriptor(parent)["digest"]
    # a signature over the signature manifest itself (cosign's legacy tag for the parent's digest)
    cosign_sign_legacy(proxy.url, repo, parent_digest, key)
    config = _config(
        tmp_path,
        [{"host": proxy.host, "plainHttp": True}],
        signed_set.key_file,
        limits={"maxNestedDepth": 1, "nestedArtifactTypes": [mt.COSIGN_OCI11_SIGNATURE]},
    )
    outcome = await engine_factory(config).verify_key(f"{proxy.host}/{repo}:v1")
    assert outcome.verdict is not None
    [top] = [a for a in outcome.verdict.artifacts if a.artifact_type == mt.COSIGN_OCI11_SIGNATURE]
    assert top.succeeded
    [nested] = top.nested
    assert nested.succeeded, nested.reason
    assert nested.details["signedDigest"] == parent_digest
    assert nested.nested == ()  # depth-limited

    (tmp_path / "flat").mkdir()
    flat = await engine_factory(
        _config(tmp_path / "flat", [{"host": proxy.host, "plainHttp": True}], signed_set.key_file)
    ).verify_key(f"{proxy.host}/{repo}:v1")
    assert flat.verdict is not None
    assert all(a.nested == () for a in flat.verdict.artifacts)


async def test_evidence_listed_for_another_image_is_never_accepted(
    registry: RegistryProcess, signed_set: SignedSet, tmp_path: Path, engine_factory: Any
) -> None:
    """Anyone who can push can write image B's sha256-<hex> index: listing A's SBOM there must not count for B."""
    repo = "paths/cross-subject"
    image_a, image_b = make_image("cross-a"), make_image("cross-b")
    push_image(registry.url, repo, "a", image_a)
    push_image(registry.url, repo, "b", image_b)
    spdx = json.dumps(
        {"spdxVersion": "SPDX-2.3", "dataLicense": "CC0-1.0", "SPDXID": "SPDXRef-DOCUMENT", "name": "a",
         "documentNamespace": "https://example.com/a", "creationInfo": {"created": "2026-01-01T00:00:00Z",
         "creators": ["Tool: test"]}, "packages": []}
    ).encode()  # fmt: skip
    sbom, blobs = make_artifact_manifest(
        image_a["descriptor"], "application/spdx+json", [("application/spdx+json", spdx, None)]
    )
    push_artifact(registry.url, repo, sbom, blobs)
    push_fallback_index(registry.url, repo, image_a["digest"], [referrer_descriptor(sbom)])
    push_fallback_index(registry.url, repo, image_b["digest"], [referrer_descriptor(sbom)])
    config = write_config(
        tmp_path / "referee.yaml",
        {
            "registries": {"allow": ["127.0.0.1:*"], "hosts": [{"host": registry.host, "plainHttp": True}]},
            "verifiers": [{"name": "sbom", "type": "sbom"}],
            "policy": {"type": "required-verifiers", "required": ["sbom"]},
        },
    )
    engine = engine_factory(config)
    genuine = await engine.verify_key(f"{registry.host}/{repo}:a")
    assert genuine.verdict is not None
    assert genuine.verdict.allowed, genuine.verdict.decision.reason
    forged = await engine.verify_key(f"{registry.host}/{repo}:b")
    assert forged.verdict is not None
    assert not forged.verdict.allowed
    [result] = forged.verdict.artifacts
    assert result.error == "SUBJECT_MISMATCH"
    assert f"its subject is {image_a['digest']}" in result.reason
