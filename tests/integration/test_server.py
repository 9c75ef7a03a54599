"""The HTTPS provider: mutual TLS, malformed input, deadlines with partial answers, reload, health and logs."""

from __future__ import annotations

import asyncio
import json
import shutil
import ssl
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import trustme

from provider import logs
from provider.errors import ConfigError
from provider.server.app import RefereeServer
from tests.integration.conftest import SignedSet, cosign_config
from tests.support.content import make_image, push_image
from tests.support.referee import (
    Pki,
    cert_without_client_auth,
    items_by_key,
    provider_request,
    running_referee,
    server_section,
    write_config,
)
from tests.support.referrers_proxy import ReferrersProxy

CONNECTION_ERRORS = (aiohttp.ClientConnectionError, aiohttp.ClientSSLError, ConnectionResetError, ssl.SSLError)


async def _raw_post(url: str, ctx: ssl.SSLContext, data: bytes) -> dict[str, Any]:
    async with (
        aiohttp.ClientSession(trust_env=False) as session,
        session.post(url, data=data, ssl=ctx, headers={"Content-Type": "application/json"}) as resp,
    ):
        assert resp.status == 200
        body: dict[str, Any] = await resp.json()
        return body


@pytest.fixture
def config_file(tmp_path: Path, signed_set: SignedSet, pki: Pki) -> Path:
    return write_config(tmp_path / "referee.yaml", cosign_config(signed_set, server_section(pki)))


async def test_mtls_refuses_clients_without_a_gatekeeper_certificate(
    config_file: Path, pki: Pki, signed_set: SignedSet, tmp_path: Path
) -> None:
    other_ca = trustme.CA()
    no_client_auth_cert, no_client_auth_key = cert_without_client_auth(pki.gatekeeper_ca, tmp_path)
    body = json.dumps(provider_request([signed_set.ref("signed")])).encode()
    async with running_referee(config_file, pki) as referee:
        url = referee.url + "/verify"
        served = await _raw_post(url, pki.client_context(), body)
        assert items_by_key(served)[signed_set.ref("signed")]["value"]["allowed"] is True

        no_cert = pki.client_context(present_cert=False)
        foreign = pki.client_context(other_ca.issue_cert("gatekeeper-webhook-service.gatekeeper-system.svc"))
        server_only = pki.client_context(present_cert=False)
        server_only.load_cert_chain(str(no_client_auth_cert), str(no_client_auth_key))
        tls12 = pki.client_context()
        tls12.minimum_version = ssl.TLSVersion.TLSv1_2
        tls12.maximum_version = ssl.TLSVersion.TLSv1_2
        for ctx in (no_cert, foreign, server_only, tls12):
            with pytest.raises(CONNECTION_ERRORS):
                await _raw_post(url, ctx, body)
        # the server is unharmed
        again = await _raw_post(url, pki.client_context(), body)
        assert items_by_key(again)[signed_set.ref("signed")]["value"]["allowed"] is True


async def test_mtls_off_only_when_explicit(tmp_path: Path, signed_set: SignedSet, pki: Pki) -> None:
    implicit = cosign_config(
        signed_set, server_section(pki, tls={"certFile": str(pki.server_cert), "keyFile": str(pki.server_key)})
    )
    with pytest.raises(ConfigError) as exc:
        RefereeServer(str(write_config(tmp_path / "implicit.yaml", implicit)))
    assert "clientCaFile" in str(exc.value)

    explicit = cosign_config(
        signed_set,
        server_section(
            pki, tls={"certFile": str(pki.server_cert), "keyFile": str(pki.server_key), "clientAuth": "disabled"}
        ),
    )
    async with running_referee(write_config(tmp_path / "explicit.yaml", explicit), pki) as referee:
        response = await referee.post(
            "/verify", provider_request([signed_set.ref("signed")]), ssl_ctx=pki.client_context(present_cert=False)
        )
        assert items_by_key(response)[signed_set.ref("signed")]["value"]["allowed"] is True


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (b"{not json", "body is not JSON"),
        (b"\xff\xfe", "not UTF-8"),
        (b"[]", "not a JSON object"),
        (json.dumps({"apiVersion": "v1", "kind": "ProviderRequest", "request": {"keys": []}}).encode(), "apiVersion"),
        (json.dumps({**provider_request([]), "kind": "Pod"}).encode(), "kind must be ProviderRequest"),
        (json.dumps(provider_request(["ok", 3, None])).encode(), "item(s) 1, 2 are not"),
        (json.dumps(provider_request([f"img{i}" for i in range(10_000)])).encode(), "10000 keys"),
        (b'{"x": "' + b"a" * (10 * 1024 * 1024) + b'"}', "exceeds"),
    ],
)
async def test_bad_input_gets_a_well_formed_system_error(
    config_file: Path, pki: Pki, signed_set: SignedSet, raw: bytes, expected: str
) -> None:
    async with running_referee(config_file, pki) as referee:
        response = await referee.post("/verify", None, raw=raw)
        assert response["kind"] == "ProviderResponse"
        assert response["response"]["items"] == []
        assert expected in response["response"]["systemError"]
        ok = await referee.verify([signed_set.ref("signed")])
        assert "systemError" not in ok["response"]


async def test_deadline_answers_finished_keys_and_names_the_rest(
    referrers_proxy: ReferrersProxy, signed_set: SignedSet, pki: Pki, tmp_path: Path
) -> None:
    proxy = referrers_proxy
    slow_image = make_image("deadline-slow")
    push_image(proxy.url, "server/slow", "v1", slow_image)
    proxy.path_delays["/server/slow/"] = 1.5
    config = cosign_config(signed_set, server_section(pki, providerTimeout="1s", deadlineMargin="200ms"))
    config["registries"]["hosts"] = [{"host": proxy.host, "plainHttp": True}]
    fast_key = f"{proxy.host}/{signed_set.repo}:signed"
    slow_key = f"{proxy.host}/server/slow:v1"
    async with running_referee(write_config(tmp_path / "c.yaml", config), pki) as referee:
        started = time.monotonic()
        response = await referee.verify([fast_key, slow_key, "bad ref"])
        elapsed = time.monotonic() - started
        body = response["response"]
        assert elapsed < 1.0, elapsed
        assert [item["key"] for item in body["items"]] == [fast_key, "bad ref"]
        assert body["items"][0]["value"]["allowed"] is True
        assert body["items"][1]["error"].startswith("REFERENCE_INVALID")
        assert f"{slow_key}: DEADLINE_EXCEEDED" in body["systemError"]
        assert fast_key not in body["systemError"]
        # the key's resolution and verification go on in the background; a later ask gets the verdict
        proxy.path_delays.clear()
        later: dict[str, Any] = {}

        async def answered() -> bool:
            nonlocal later
            later = await referee.verify([slow_key])
            return "systemError" not in later["response"]

        await _wait_for(answered)
        assert items_by_key(later)[slow_key]["value"]["allowed"] is False


async def test_transient_registry_faults_are_left_out_not_cached(
    referrers_proxy: ReferrersProxy, signed_set: SignedSet, pki: Pki, tmp_path: Path
) -> None:
    proxy = referrers_proxy
    config = cosign_config(signed_set, server_section(pki))
    config["registries"]["hosts"] = [{"host": proxy.host, "plainHttp": True}]
    good = f"{proxy.host}/{signed_set.repo}:signed"
    flaky = f"{proxy.host}/{signed_set.repo}:unsigned"
    async with running_referee(write_config(tmp_path / "c.yaml", config), pki) as referee:
        await referee.verify([good])
        proxy.status_override[f"/{signed_set.repo}/manifests/unsigned"] = (503, {}, 3)
        response = await referee.verify([good, flaky])
        assert [i["key"] for i in response["response"]["items"]] == [good]
        assert f"{flaky}: REGISTRY_UNAVAILABLE" in response["response"]["systemError"]
        recovered = await referee.verify([flaky])
        assert items_by_key(recovered)[flaky]["value"]["allowed"] is False
        assert "systemError" not in recovered["response"]


async def _wait_for(predicate: Any, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await predicate():
            return
        await asyncio.sleep(0.05)
    raise AssertionError("condition not reached")


async def test_config_reload_applies_good_files_and_keeps_the_last_good_one(
    signed_set: SignedSet, pki: Pki, tmp_path: Path
) -> None:
    path = write_config(tmp_path / "c.yaml", cosign_config(signed_set, server_section(pki)))
    key = signed_set.ref("signed")
    async with running_referee(path, pki) as referee:
        assert items_by_key(await referee.verify([key]))[key]["value"]["allowed"] is True
        rotated = cosign_config(signed_set, server_section(pki))
        rotated["verifiers"][0]["keys"] = [str(signed_set.other_key_file)]
        write_config(path, rotated)

        async def denied() -> bool:
            return items_by_key(await referee.verify([key]))[key]["value"]["allowed"] is False

        await _wait_for(denied)
        generation = referee.server.state.config.generation
        path.write_text("verifiers: [\n")
        await asyncio.sleep(0.5)
        status, text = await referee.health("/readyz")
        assert status == 200
        assert "not valid YAML" in json.loads(text)["lastReloadError"][0]
        assert referee.server.state.config.generation == generation
        assert await denied()

        # the key file itself changes (same YAML): the new trust material is picked up
        shutil.copy(signed_set.key_file, signed_set.other_key_file.with_name("rotated.pub"))
        rotated["verifiers"][0]["keys"] = [str(signed_set.other_key_file.with_name("rotated.pub"))]
        write_config(path, rotated)

        async def allowed() -> bool:
            return items_by_key(await referee.verify([key]))[key]["value"]["allowed"] is True

        await _wait_for(allowed)


async def test_serving_certificate_and_client_ca_reload_without_restart(signed_set: SignedSet, tmp_path: Path) -> None:
    pki = Pki.create(tmp_path / "pki")
    path = write_config(tmp_path / "c.yaml", cosign_config(signed_set, server_section(pki)))
    body = json.dumps(provider_request([signed_set.ref("signed")])).encode()
    async with running_referee(path, pki) as referee:
        url = referee.url + "/verify"
        old_ctx = pki.client_context()
        await _raw_post(url, old_ctx, body)
        new_pki = Pki.create(tmp_path / "pki2")
        shutil.copy(new_pki.server_cert, pki.server_cert)
        shutil.copy(new_pki.server_key, pki.server_key)
        shutil.copy(new_pki.client_ca, pki.client_ca)

        async def new_served() -> bool:
            try:
                await _raw_post(url, new_pki.client_context(), body)
            except CONNECTION_ERRORS:
                return False
            return True

        await _wait_for(new_served)
        with pytest.raises(CONNECTION_ERRORS):
            await _raw_post(url, pki.client_context(), body)


async def test_health_metrics_and_logs(
    config_file: Path, pki: Pki, signed_set: SignedSet, capsys: pytest.CaptureFixture[str]
) -> None:
    logs.configure("info", json_output=True)
    try:
        async with running_referee(config_file, pki) as referee:
            assert (await referee.health("/healthz"))[0] == 200
            status, text = await referee.health("/readyz")
            assert status == 200
            assert json.loads(text)["ready"] is True
            _, before = await referee.health("/metrics")
            await referee.verify([signed_set.ref("signed"), signed_set.ref("unsigned")])
            await referee.verify([signed_set.ref("signed")])
            _, after = await referee.health("/metrics")
    finally:
        logs.configure("info", json_output=False)

    def value(text: str, line_prefix: str) -> float:
        total = 0.0
        for line in text.splitlines():
            if line.startswith(line_prefix):
                total += float(line.rsplit(" ", 1)[1])
        return total

    assert (
        value(after, 'referee_keys_total{endpoint="verify",outcome="allowed"}')
        >= value(before, 'referee_keys_total{endpoint="verify",outcome="allowed"}') + 2
    )
    assert (
        value(after, 'referee_request_duration_seconds_count{endpoint="verify"}')
        >= value(before, 'referee_request_duration_seconds_count{endpoint="verify"}') + 2
    )
    assert value(after, 'referee_cache_events_total{cache="verdict",result="hit",tier="local"}') > value(
        before, 'referee_cache_events_total{cache="verdict",result="hit",tier="local"}'
    )
    assert value(after, "referee_registry_requests_total") > value(before, "referee_registry_requests_total")

    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines() if line.startswith("{")]
    # At info, one summary line per request (per-key lines are at debug; the decision log has one per key).
    assert not [line for line in lines if line["event"] == "key_answered"]
    answered = [line for line in lines if line["event"] == "request_answered"]
    assert len(answered) == 2
    assert all(line["request_id"] for line in answered)
    assert answered[0]["request_id"] != answered[1]["request_id"]
    assert (answered[0]["keys"], answered[0]["allowed"], answered[0]["denied"], answered[0]["cached"]) == (2, 1, 1, 0)
    assert (answered[1]["keys"], answered[1]["allowed"], answered[1]["cached"]) == (1, 1, 1)


async def test_credentials_never_reach_the_logs(
    tls_registry: Any, signed_set: SignedSet, pki: Pki, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    reg = tls_registry
    image = make_image("log-secrets")
    push_image(reg.url, "server/secrets", "v1", image, ("basic", reg.username, reg.password), reg.ssl_context())
    config = cosign_config(signed_set, server_section(pki))
    config["registries"]["hosts"] = [
        {"host": reg.host, "caFile": str(reg.ca_pem_path), "username": reg.username, "password": reg.password}
    ]
    logs.configure("debug", json_output=True)
    try:
        async with running_referee(write_config(tmp_path / "c.yaml", config), pki) as referee:
            await referee.verify([f"{reg.host}/server/secrets:v1"])
            wrong = dict(config["registries"]["hosts"][0], password="another-s3cret-pw")
            config["registries"]["hosts"] = [wrong]
            write_config(tmp_path / "c.yaml", config)
            await asyncio.sleep(0.3)
            await referee.verify([f"{reg.host}/server/secrets:v1"])
    finally:
        logs.configure("info", json_output=False)
    captured = capsys.readouterr()
    output = captured.out + captured.err
    assert "key_answered" in output
    assert reg.password not in output
    assert "another-s3cret-pw" not in output
    assert "Authorization" not in output


async def test_client_auth_cannot_be_switched_off_by_a_reload(signed_set: SignedSet, tmp_path: Path) -> None:
    """OpenSSL keeps the listening context's verify mode across SNI swaps, so clientAuth changes need a restart:
    the reload is refused and client certificates stay required."""
    pki = Pki.create(tmp_path / "pki")
    path = write_config(tmp_path / "c.yaml", cosign_config(signed_set, server_section(pki)))
    body = json.dumps(provider_request([signed_set.ref("signed")])).encode()
    async with running_referee(path, pki) as referee:
        url = referee.url + "/verify"
        off = cosign_config(
            signed_set,
            server_section(
                pki, tls={"certFile": str(pki.server_cert), "keyFile": str(pki.server_key), "clientAuth": "disabled"}
            ),
        )
        off["cache"] = {"verdictTtl": "1s"}
        write_config(path, off)

        async def reloaded() -> bool:
            return referee.server.state.config.cache.verdict_ttl == 1.0

        await _wait_for(reloaded)
        await asyncio.sleep(0.3)
        assert referee.server.state.tls is not None
        assert referee.server.state.tls.config.client_auth == "require"
        with pytest.raises(CONNECTION_ERRORS):
            await _raw_post(url, pki.client_context(present_cert=False), body)
        served = await _raw_post(url, pki.client_context(), body)
        assert items_by_key(served)[signed_set.ref("signed")]["value"]["allowed"] is True
