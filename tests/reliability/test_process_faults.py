"""Process faults of ``referee serve`` (issue #13 item 4): SIGTERM under load, SIGKILL and restart, a reload to a
broken configuration under load, and memory under a mixed load (``REFEREE_SOAK_SECONDS``, 5 s in the suite, 60 s from
``scripts/reliability_report.py --soak 60``)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from tests.reliability.conftest import Launcher
from tests.reliability.harness import Answer, GatekeeperClient, LateAnswerError, eventually, health
from tests.support.content import cosign_sign_legacy, make_image, push_image
from tests.support.fault_proxy import Fault, FaultProxy
from tests.support.figures import Figures
from tests.support.referee import Pki, RefereeProcess, server_section, write_config
from tests.support.registry import RegistryProcess

SHUTDOWN_GRACE = 5.0
SOAK_SECONDS = float(os.environ.get("REFEREE_SOAK_SECONDS", "5"))


def _config(hosts: list[str], key_file: Path, pki: Pki, **server: Any) -> dict[str, Any]:
    return {
        "registries": {"allow": ["127.0.0.1:*"], "hosts": [{"host": h, "plainHttp": True} for h in hosts]},
        "verifiers": [{"name": "cosign-ci", "type": "cosign", "keys": [str(key_file)]}],
        "policy": {"type": "required-verifiers", "required": ["cosign-ci"]},
        "server": server_section(pki, **server),
    }


def _signed(registry: RegistryProcess, key: ec.EllipticCurvePrivateKey, repo: str, count: int) -> list[dict[str, Any]]:
    images = []
    for i in range(count):
        image = make_image(f"reliability/{repo}/{i}")
        push_image(registry.url, repo, f"v{i}", image)
        cosign_sign_legacy(registry.url, repo, image["digest"], key)
        images.append(image)
    return images


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


async def test_sigterm_under_load_answers_in_flight_refuses_new_and_exits_within_the_grace(
    registry: RegistryProcess,
    rel_pki: Pki,
    cosign_key: tuple[ec.EllipticCurvePrivateKey, Path],
    launch: Launcher,
    figures: Figures,
) -> None:
    key, key_file = cosign_key
    images = _signed(registry, key, "rel/drain", 20)
    with FaultProxy(registry.url) as proxy:
        referee = launch(
            _config([proxy.host], key_file, rel_pki, providerTimeout="4s", shutdownGrace=f"{SHUTDOWN_GRACE}s"),
            name="drain",
        )
        client = GatekeeperClient(referee.url, rel_pki.client_context(), 4.0)
        proxy.inject("/rel/drain/manifests/sha256-", Fault("delay", seconds=1.0))  # every signature tag is slow
        keys = [f"{proxy.host}/rel/drain:v{i}" for i in range(len(images))]
        in_flight = [asyncio.ensure_future(client.verify([k])) for k in keys]

        async def all_asked() -> bool:
            return proxy.hits["/rel/drain/manifests/sha256-"] >= len(keys)

        await eventually(all_asked, timeout=10, interval=0.02)
        assert referee.proc is not None
        signalled = time.monotonic()
        referee.terminate()

        async def refused() -> str:
            try:
                async with GatekeeperClient(referee.url, rel_pki.client_context(), 4.0) as fresh:
                    answer = await fresh.verify([keys[0]])
            except (aiohttp.ClientConnectorError, aiohttp.ServerDisconnectedError, ConnectionError) as exc:
                return type(exc).__name__
            return "answered" if answer.allowed(keys[0]) else "answered-not-allowed"

        await asyncio.sleep(0.2)
        late_caller = await refused()
        answers: list[Answer] = await asyncio.gather(*in_flight)
        returncode = await asyncio.to_thread(referee.proc.wait, SHUTDOWN_GRACE + 15)
        exited = time.monotonic() - signalled
        await client.close()
    assert all(answer.allowed(k) for answer, k in zip(answers, keys, strict=True)), [a.doc for a in answers]
    assert late_caller in ("ClientConnectorError", "answered"), late_caller
    assert returncode == 0
    events = [line["event"] for line in referee.lines()]
    assert events.index("shutdown_requested") < events.index("server_stopped")
    figures.record(
        "process",
        "SIGTERM with 20 requests in flight",
        outcome=f"20/20 in-flight answered (allowed); a new request after SIGTERM: {late_caller}; exit 0",
        exit_s=round(exited, 2),
        shutdown_grace_s=SHUTDOWN_GRACE,
        survived=True,
    )


async def test_sigkill_then_restart_serves_again(
    registry: RegistryProcess,
    rel_pki: Pki,
    cosign_key: tuple[ec.EllipticCurvePrivateKey, Path],
    launch: Launcher,
    figures: Figures,
) -> None:
    key, key_file = cosign_key
    _signed(registry, key, "rel/kill", 1)
    referee = launch(_config([registry.host], key_file, rel_pki), name="kill")
    client = GatekeeperClient(referee.url, rel_pki.client_context(), 2.0)
    ref = f"{registry.host}/rel/kill:v0"

    async def allowed(process: RefereeProcess) -> bool:
        client.url = process.url
        return (await client.verify([ref])).allowed(ref)

    await eventually(lambda: allowed(referee))
    assert referee.proc is not None
    referee.proc.send_signal(signal.SIGKILL)
    assert await asyncio.to_thread(referee.proc.wait, 10) == -signal.SIGKILL
    started = time.monotonic()
    referee.start()  # same configuration, same ports requested (0: new ones)

    async def ready() -> bool:
        try:
            status, _ = await health(referee.health_url, "/readyz")
        except aiohttp.ClientError:
            return False
        return status == 200

    await eventually(ready, timeout=30, interval=0.02)
    ready_s = time.monotonic() - started
    await eventually(lambda: allowed(referee), timeout=30, interval=0.02)
    first_verdict_s = time.monotonic() - started
    await client.close()
    figures.record(
        "process",
        "SIGKILL, then restart",
        outcome="ready and allowing again",
        ready_s=round(ready_s, 2),
        first_verdict_s=round(first_verdict_s, 2),
        survived=True,
    )


BROKEN_CONFIGURATIONS: dict[str, tuple[bytes | None, str]] = {
    "invalid YAML": (b"verifiers: [\n  - name: x\n", "YAML"),
    "an empty file": (b"", "empty"),
    "an unknown verifier type": (None, "verifiers[0].type"),
    "a key file that does not exist": (None, "keys[0]"),
}


def _broken(name: str, good: dict[str, Any]) -> bytes:
    raw, _ = BROKEN_CONFIGURATIONS[name]
    if raw is not None:
        return raw
    doc = json.loads(json.dumps(good))
    if name == "an unknown verifier type":
        doc["verifiers"][0]["type"] = "no-such-verifier"
    else:
        doc["verifiers"][0]["keys"] = ["/nonexistent/cosign.pub"]
    return json.dumps(doc).encode()


async def _load(client: GatekeeperClient, keys: list[str], stop: asyncio.Event, answers: list[Answer]) -> None:
    while not stop.is_set():
        answers.append(await client.verify(keys))
        await asyncio.sleep(0.01)


@pytest.mark.parametrize("broken", list(BROKEN_CONFIGURATIONS))
async def test_a_reload_to_a_broken_file_under_load_keeps_the_last_good_configuration(
    registry: RegistryProcess,
    rel_pki: Pki,
    cosign_key: tuple[ec.EllipticCurvePrivateKey, Path],
    launch: Launcher,
    figures: Figures,
    broken: str,
) -> None:
    key, key_file = cosign_key
    repo = "rel/reload-" + broken.lower().replace(" ", "-")
    _signed(registry, key, repo, 2)
    good = _config([registry.host], key_file, rel_pki, reloadInterval="100ms")
    referee = launch(good, name="reload")
    keys = [f"{registry.host}/{repo}:v0", f"{registry.host}/{repo}:v1"]
    client = GatekeeperClient(referee.url, rel_pki.client_context(), 2.0)
    await eventually(lambda: _all_allowed(client, keys))
    stop = asyncio.Event()
    answers: list[Answer] = []
    load = [asyncio.ensure_future(_load(client, keys, stop, answers)) for _ in range(4)]
    try:
        temporary = referee.config_path.with_suffix(".tmp")
        temporary.write_bytes(_broken(broken, good))
        os.replace(temporary, referee.config_path)
        problem = BROKEN_CONFIGURATIONS[broken][1]

        async def reported() -> bool:
            status, body = await health(referee.health_url, "/readyz")
            return status == 200 and any(problem in p for p in body.get("lastReloadError", []))

        await eventually(reported, timeout=15)
        seen = len(answers)
        await eventually(lambda: _more(answers, seen + 20), timeout=15)
        write_config(referee.config_path, good | {"cache": {"tagTtl": "9s"}})

        async def cleared() -> bool:
            _, body = await health(referee.health_url, "/readyz")
            return "lastReloadError" not in body

        await eventually(cleared, timeout=15)
    finally:
        stop.set()
        results = await asyncio.gather(*load, return_exceptions=True)
        await client.close()
    late = sum(isinstance(r, LateAnswerError) for r in results)
    assert late == 0 and not any(isinstance(r, BaseException) for r in results), results
    denied = [a.doc for a in answers if not all(a.allowed(k) for k in keys)]
    assert not denied, denied[:2]
    figures.record(
        "process",
        f"reload to {broken} under load",
        outcome=f"last good configuration kept; /readyz named the problem ({problem})",
        requests=len(answers),
        not_allowed=len(denied),
        late=late,
        survived=True,
    )


async def _all_allowed(client: GatekeeperClient, keys: list[str]) -> bool:
    answer = await client.verify(keys)
    return all(answer.allowed(k) for k in keys)


async def _more(answers: list[Answer], count: int) -> bool:
    return len(answers) >= count


async def test_memory_under_mixed_load(
    registry: RegistryProcess,
    rel_pki: Pki,
    cosign_key: tuple[ec.EllipticCurvePrivateKey, Path],
    launch: Launcher,
    figures: Figures,
) -> None:
    """Warm and cold keys, unknown images, refused registries, invalid references and invalid bodies, for
    ``REFEREE_SOAK_SECONDS``: every request is answered in time and the resident memory stays bounded."""
    key, key_file = cosign_key
    images = _signed(registry, key, "rel/soak", 5)
    referee = launch(_config([registry.host], key_file, rel_pki), name="soak")
    assert referee.proc is not None
    client = GatekeeperClient(referee.url, rel_pki.client_context(), 2.0)
    warm = [f"{registry.host}/rel/soak@{image['digest']}" for image in images]
    await eventually(lambda: _all_allowed(client, warm))
    before = _rss_kib(referee.proc.pid)
    peak = before
    counter = 0
    requests = 0
    deadline = time.monotonic() + SOAK_SECONDS

    async def worker(n: int) -> None:
        nonlocal counter, requests, peak
        while time.monotonic() < deadline:
            counter += 1
            batch = [
                *warm,
                f"{registry.host}/rel/soak:v{counter % len(images)}",
                f"{registry.host}/rel/missing-{counter}:v1",
                f"registry.invalid/app-{counter}:v1",
                f"not a reference {counter}",
            ]
            if n == 0 and counter % 5 == 0:
                raw = json.dumps({"kind": "ProviderRequest", "request": {"keys": [counter]}}).encode()
                answer = await client.post("/verify", raw)
                assert "REQUEST_INVALID" in answer.system_error
            else:
                answer = await client.verify(batch)
                assert all(answer.allowed(k) for k in warm), answer.doc
            requests += 1
            if counter % 50 == 0:
                peak = max(peak, _rss_kib(referee.proc.pid))

    await asyncio.gather(*(worker(n) for n in range(4)))
    await client.close()
    after = _rss_kib(referee.proc.pid)
    peak = max(peak, after)
    growth_mib = (after - before) / 1024
    figures.record(
        "process",
        "memory under mixed load",
        outcome=f"{requests} requests in {SOAK_SECONDS:.0f} s, every one answered in time",
        seconds=SOAK_SECONDS,
        requests=requests,
        rss_before_mib=round(before / 1024, 1),
        rss_peak_mib=round(peak / 1024, 1),
        rss_after_mib=round(after / 1024, 1),
        survived=True,
    )
    assert growth_mib < 150, (before, after)
