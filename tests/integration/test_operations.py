"""Operations, end to end through the real CLI: ``referee serve`` runs as a child process; the tests scrape its
``/metrics``, read its JSON log lines from stderr, and stop it with SIGTERM while a request is in flight."""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.integration.conftest import SignedSet, cosign_config
from tests.support.content import Auth, cosign_sign_legacy, make_image, push_image
from tests.support.referee import (
    Pki,
    RefereeProcess,
    items_by_key,
    provider_request,
    server_section,
    write_config,
)
from tests.support.referrers_proxy import ReferrersProxy
from tests.support.registry import RegistryProcess

# Lines a running server writes outside any ProviderRequest. Every other line must carry a request id.
PROCESS_EVENTS = frozenset(
    {
        "server_started",
        "shutdown_requested",
        "server_stopped",
        "mtls_disabled",
        "config_reloaded",
        "config_reload_rejected",
        "config_reload_needs_restart",
        "config_reload_failed",
        "tls_reloaded",
        "tls_reload_rejected",
    }
)

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


@pytest.fixture
def launch(tmp_path: Path) -> Iterator[Any]:
    started: list[RefereeProcess] = []

    def make(config: dict[str, Any], name: str = "referee") -> RefereeProcess:
        home = tmp_path / f"{name}-home"
        home.mkdir()
        process = RefereeProcess(write_config(tmp_path / f"{name}.yaml", config), tmp_path / f"{name}.log", home)
        started.append(process)
        process.start()
        return process

    yield make
    for process in started:
        process.stop()


async def post(
    referee: RefereeProcess,
    pki: Pki,
    path: str,
    keys: list[str],
    request_id: str | None = None,
    raw: bytes | None = None,
) -> tuple[dict[str, Any], str]:
    """POST a ProviderRequest (or ``raw`` bytes) as Gatekeeper would; returns the body and ``X-Request-Id``."""
    headers = {"Content-Type": "application/json"}
    if request_id is not None:
        headers["X-Request-Id"] = request_id
    async with (
        aiohttp.ClientSession(trust_env=False) as session,
        session.post(
            referee.url + path,
            data=raw if raw is not None else json.dumps(provider_request(keys)).encode(),
            headers=headers,
            ssl=pki.client_context(),
        ) as resp,
    ):
        assert resp.status == 200
        body: dict[str, Any] = await resp.json()
        return body, resp.headers["X-Request-Id"]


async def health_get(referee: RefereeProcess, path: str) -> tuple[int, str]:
    async with aiohttp.ClientSession(trust_env=False) as session, session.get(referee.health_url + path) as resp:
        return resp.status, await resp.text()


async def scrape(referee: RefereeProcess) -> Samples:
    status, text = await health_get(referee, "/metrics")
    assert status == 200
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def total(samples: Samples, name: str, **labels: str) -> float:
    """Sum over every series of ``name`` whose labels include ``labels``."""
    wanted = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and wanted <= ls)


@dataclass
class AuthImage:
    """An image signed with ``signed_set.key`` in the TLS + htpasswd registry."""

    registry: RegistryProcess
    key: str


@pytest.fixture(scope="module")
def auth_image(tls_registry: RegistryProcess, signed_set: SignedSet) -> AuthImage:
    reg = tls_registry
    assert reg.username is not None and reg.password is not None
    auth: Auth = ("basic", reg.username, reg.password)
    image = make_image("operations-auth")
    push_image(reg.url, "ops/private", "v1", image, auth, reg.ssl_context())
    cosign_sign_legacy(reg.url, "ops/private", image["digest"], signed_set.key, auth, reg.ssl_context())
    return AuthImage(reg, f"{reg.host}/ops/private:v1")


def _config_with_credentials(
    signed_set: SignedSet, pki: Pki, auth: AuthImage, tmp_path: Path, **server: Any
) -> dict[str, Any]:
    password_file = tmp_path / "registry-password"
    password_file.write_text(str(auth.registry.password) + "\n")
    config = cosign_config(signed_set, server_section(pki, **server))
    config["registries"]["hosts"].append(
        {
            "host": auth.registry.host,
            "caFile": str(auth.registry.ca_pem_path),
            "username": auth.registry.username,
            "passwordFile": str(password_file),
        }
    )
    return config


async def test_metrics_move_with_requests(
    launch: Any, signed_set: SignedSet, pki: Pki, auth_image: AuthImage, tmp_path: Path
) -> None:
    referee = launch(_config_with_credentials(signed_set, pki, auth_image, tmp_path))
    before = await scrape(referee)
    assert ("referee_verifications_in_flight", frozenset()) in before

    signed, unsigned = signed_set.ref("signed"), signed_set.ref("unsigned")
    first, _ = await post(referee, pki, "/verify", [signed, unsigned, auth_image.key])
    items = items_by_key(first)
    assert items[signed]["value"]["allowed"] is True
    assert items[unsigned]["value"]["allowed"] is False
    assert items[auth_image.key]["value"]["allowed"] is True
    again, _ = await post(referee, pki, "/verify", [signed])
    assert items_by_key(again)[signed]["value"]["allowed"] is True
    pinned, _ = await post(referee, pki, "/mutate", [signed])
    assert items_by_key(pinned)[signed]["value"].endswith("@" + signed_set.digest("signed"))
    rejected, _ = await post(referee, pki, "/verify", [], raw=b"{not json")
    assert "body is not JSON" in rejected["response"]["systemError"]
    after = await scrape(referee)

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    # request latency histograms per endpoint, and request outcomes
    assert delta("referee_request_duration_seconds_count", endpoint="verify") == 3  # the rejected one is timed too
    assert delta("referee_request_duration_seconds_count", endpoint="mutate") == 1
    assert delta("referee_request_duration_seconds_sum", endpoint="verify") > 0
    assert delta("referee_request_duration_seconds_bucket", endpoint="verify", le="+Inf") == 3
    assert delta("referee_requests_total", endpoint="verify", outcome="ok") == 2
    assert delta("referee_requests_total", endpoint="mutate", outcome="ok") == 1
    assert delta("referee_requests_total", endpoint="verify", outcome="rejected") == 1
    # keys by verdict
    assert delta("referee_keys_total", endpoint="verify", outcome="allowed") == 3
    assert delta("referee_keys_total", endpoint="verify", outcome="denied") == 1
    assert delta("referee_keys_total", endpoint="mutate", outcome="pinned") == 1
    # per-verifier duration and outcome: two signatures verified (the unsigned image has no artifact)
    assert (
        delta(
            "referee_verifier_duration_seconds_count", verifier="cosign-ci", verifier_type="cosign", outcome="success"
        )
        == 2
    )
    # registry requests by host and status: both registries, including the one behind basic auth
    plain = signed_set.registry.host
    private = auth_image.registry.host
    assert total(after, "referee_registry_requests_total", host=plain, status="200") > total(
        before, "referee_registry_requests_total", host=plain, status="200"
    )
    assert total(after, "referee_registry_requests_total", host=private, status="200") > 0
    assert total(after, "referee_registry_requests_total", host=private, status="401") > 0
    # cache hits and misses: the second ask for the signed image is a verdict-cache hit
    assert delta("referee_cache_events_total", cache="verdict", tier="local", result="miss") == 3
    assert delta("referee_cache_events_total", cache="verdict", tier="local", result="hit") >= 1
    assert value(after, "referee_verifications_in_flight") == 0
    assert value(after, "referee_verifications_pending") == 0
    # decisions by result and reason code; the unsigned image misses the one required verifier
    assert delta("referee_decisions_total", result="allowed", reason="POLICY_SATISFIED") == 3
    assert delta("referee_decisions_total", result="denied", reason="NO_EVIDENCE") == 1
    assert delta("referee_unmet_requirements_total", requirement="cosign-ci", reason="NO_EVIDENCE") == 1
    # registry latency per host of the URL, the Provider timeout the answers are held to, the TLS files' expiry
    assert delta("referee_registry_request_duration_seconds_count", host=plain) > 0
    assert delta("referee_registry_request_duration_seconds_count", host=private) > 0
    assert value(after, "referee_provider_timeout_seconds", endpoint="verify") == 2.0
    assert value(after, "referee_provider_timeout_seconds", endpoint="mutate") == 1.0
    assert value(after, "referee_config_last_reload_successful") == 1
    assert value(after, "referee_tls_last_reload_successful") == 1
    expiry = {
        dict(ls)["certificate"] for (n, ls) in after if n == "referee_tls_certificate_expiration_timestamp_seconds"
    }
    assert expiry == {"serving", "client_ca"}


async def test_logs_carry_request_ids_and_no_credentials(
    launch: Any, signed_set: SignedSet, pki: Pki, auth_image: AuthImage, tmp_path: Path
) -> None:
    referee = launch(_config_with_credentials(signed_set, pki, auth_image, tmp_path))
    signed, unsigned = signed_set.ref("signed"), signed_set.ref("unsigned")
    _, echoed = await post(referee, pki, "/verify", [signed, unsigned], request_id="ops-req-1")
    assert echoed == "ops-req-1"
    await post(referee, pki, "/verify", [auth_image.key, "not a reference!"], request_id="ops-req-2")
    await post(referee, pki, "/mutate", [signed], request_id="ops-req-3")
    _, generated = await post(referee, pki, "/verify", [signed])  # no header: the server makes one up
    assert generated
    rejected, _ = await post(referee, pki, "/verify", [], request_id="ops-req-5", raw=b"[]")
    assert rejected["response"]["systemError"].endswith("body is not a JSON object")

    ours = {"ops-req-1", "ops-req-2", "ops-req-3", generated, "ops-req-5"}
    lines = referee.lines()
    assert lines, "no log output"
    for line in lines:
        assert {"event", "level", "timestamp"} <= set(line), line
        if line["event"] in PROCESS_EVENTS:
            continue
        assert line.get("request_id") in ours, f"log line without this test's request id: {line}"

    # one summary line per key: subject digest, verdict, duration
    answered = [line for line in lines if line["event"] == "key_answered"]
    by_request: dict[str, dict[str, dict[str, Any]]] = {}
    for line in answered:
        by_request.setdefault(line["request_id"], {})[line["key"]] = line
    assert set(by_request["ops-req-1"]) == {signed, unsigned}
    assert by_request["ops-req-1"][signed]["outcome"] == "allowed"
    assert by_request["ops-req-1"][unsigned]["outcome"] == "denied"
    assert by_request["ops-req-1"][signed]["subject"].endswith("@" + signed_set.digest("signed"))
    assert by_request["ops-req-1"][unsigned]["subject"].endswith("@" + signed_set.digest("unsigned"))
    for line in by_request["ops-req-1"].values():
        assert isinstance(line["duration_ms"], int | float) and line["duration_ms"] >= 0
    assert set(by_request["ops-req-2"]) == {auth_image.key, "not a reference!"}
    assert by_request["ops-req-2"][auth_image.key]["outcome"] == "allowed"
    assert by_request["ops-req-2"]["not a reference!"]["outcome"] == "error"
    assert by_request[generated][signed]["cached"] is True
    verified = {line["subject"]: line["request_id"] for line in lines if line["event"] == "subject_verified"}
    assert verified[signed_set.pinned("signed")] == "ops-req-1"

    # the registry password (given through passwordFile) never reaches the log, nor does its Basic header
    password = str(auth_image.registry.password)
    basic = base64.b64encode(f"{auth_image.registry.username}:{password}".encode()).decode()
    raw = referee.raw_log()
    assert password not in raw
    assert basic not in raw
    assert "Basic " not in raw


async def test_sigterm_drains_the_in_flight_request(
    launch: Any, referrers_proxy: ReferrersProxy, signed_set: SignedSet, pki: Pki
) -> None:
    proxy = referrers_proxy
    slow_image = make_image("operations-drain")
    push_image(proxy.url, "ops/slow", "v1", slow_image)
    cosign_sign_legacy(proxy.url, "ops/slow", slow_image["digest"], signed_set.key)
    config = cosign_config(
        signed_set,
        server_section(pki, providerTimeout="20s", shutdownGrace="15s"),
        limits={"verificationTimeout": "20s"},
    )
    config["registries"]["hosts"] = [{"host": proxy.host, "plainHttp": True}]
    referee = launch(config)
    slow_key = f"{proxy.host}/ops/slow:v1"
    delay = 2.5
    # cosign's signature tag is read during the verification itself (after the tag is resolved)
    signature_tag = "/v2/ops/slow/manifests/" + slow_image["digest"].replace(":", "-") + ".sig"
    proxy.path_delays[signature_tag] = delay
    proxy.log.clear()  # forget the pushes above

    request = asyncio.ensure_future(post(referee, pki, "/verify", [slow_key], request_id="ops-drain"))
    deadline = time.monotonic() + 10
    while not any(path == signature_tag for _, path in proxy.log):
        assert time.monotonic() < deadline, f"Referee never asked for the signature: {proxy.log}"
        assert not request.done(), request
        await asyncio.sleep(0.02)
    registry_asked = time.monotonic()  # the registry holds its answer for `delay` seconds from about now
    in_flight = await scrape(referee)
    assert value(in_flight, "referee_verifications_in_flight") == 1

    referee.terminate()
    # while draining, the health port still answers and reports not ready
    drain_status = None
    for _ in range(40):
        try:
            drain_status, _ = await health_get(referee, "/readyz")
        except aiohttp.ClientError:
            break
        if drain_status == 503:
            break
        await asyncio.sleep(0.02)
    assert drain_status == 503

    body, request_id = await asyncio.wait_for(request, timeout=15)
    assert request_id == "ops-drain"
    assert "systemError" not in body["response"], body
    assert items_by_key(body)[slow_key]["value"]["allowed"] is True
    assert referee.proc is not None
    returncode = await asyncio.to_thread(referee.proc.wait, 15)
    assert returncode == 0
    assert time.monotonic() - registry_asked >= delay - 0.1  # it waited for the request instead of dropping it
    events = [line["event"] for line in referee.lines()]
    assert events.index("shutdown_requested") < events.index("server_stopped")
    answered = [line for line in referee.lines() if line["event"] == "key_answered"]
    assert [(line["key"], line["request_id"], line["outcome"]) for line in answered] == [
        (slow_key, "ops-drain", "allowed")
    ]
    # new connections are refused once the process is gone
    with pytest.raises(aiohttp.ClientConnectionError):
        await post(referee, pki, "/verify", [slow_key])
