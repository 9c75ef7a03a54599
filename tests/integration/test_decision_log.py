"""The decision log (``server.decisionLog``): one JSON line per key answered by ``/verify``, on its own stream,
with the fields an audit needs, bounded, without credentials, and switchable by a configuration reload."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.integration.conftest import SignedSet, cosign_config
from tests.support.content import cosign_sign_legacy, make_image, push_image
from tests.support.referee import Pki, RunningReferee, provider_request, running_referee, server_section, write_config
from tests.support.registry import RegistryProcess

FIELDS = {
    "timestamp",
    "level",
    "logger",
    "event",
    "request_id",
    "key",
    "result",
    "allowed",
    "reason_code",
    "reason",
    "subject",
    "digest",
    "verifiers",
    "config_generation",
    "cached",
    "duration_ms",
}


async def verify(referee: RunningReferee, keys: list[str], request_id: str) -> dict[str, Any]:
    async with (
        aiohttp.ClientSession(trust_env=False) as session,
        session.post(
            referee.url + "/verify",
            data=json.dumps(provider_request(keys)).encode(),
            headers={"Content-Type": "application/json", "X-Request-Id": request_id},
            ssl=referee.pki.client_context(),
        ) as resp,
    ):
        assert resp.headers["X-Request-Id"] == request_id
        body: dict[str, Any] = await resp.json()
        return body


def decisions(text: str) -> list[dict[str, Any]]:
    out = []
    for raw in text.splitlines():
        if raw.startswith("{") and '"logger":"referee.decision"' in raw:
            assert len(raw.encode()) < 4096, len(raw)
            out.append(json.loads(raw))
    return out


async def decided_total(referee: RunningReferee) -> float:
    _, text = await referee.health("/metrics")
    return sum(
        s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == "referee_decisions_total"
    )


async def test_one_line_per_key_with_what_an_audit_needs(
    signed_set: SignedSet, pki: Pki, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(tmp_path / "referee.yaml", cosign_config(signed_set, server_section(pki)))
    signed, unsigned, missing = signed_set.ref("signed"), signed_set.ref("unsigned"), signed_set.ref("missing")
    async with running_referee(config, pki) as referee:
        generation = json.loads((await referee.health("/readyz"))[1])["configGeneration"]
        capsys.readouterr()
        await verify(referee, [signed, unsigned, signed, "Not A Reference", missing], "audit-1")
        await verify(referee, [signed], "audit-2")
    captured = capsys.readouterr()
    assert not decisions(captured.err), "the decision log goes to stdout by default, apart from the operational log"
    lines = decisions(captured.out)
    assert [(line["request_id"], line["key"]) for line in lines] == [
        ("audit-1", signed),
        ("audit-1", unsigned),
        ("audit-1", "Not A Reference"),
        ("audit-1", missing),
        ("audit-2", signed),
    ]
    for line in lines:
        assert set(line) == FIELDS, line
        assert (line["level"], line["logger"], line["event"]) == ("audit", "referee.decision", "decision")
        assert line["config_generation"] == generation
        assert line["timestamp"].endswith("Z")
    allowed, denied, invalid, absent, cached = lines
    assert allowed["result"] == "allowed" and allowed["allowed"] is True and allowed["cached"] is False
    assert allowed["reason_code"] == "POLICY_SATISFIED"
    assert allowed["verifiers"] == ["cosign-ci"]
    assert allowed["subject"] == signed_set.pinned("signed") and allowed["digest"] == signed_set.digest("signed")
    assert denied["result"] == "denied" and denied["allowed"] is False and denied["verifiers"] == []
    assert denied["reason_code"] == "NO_EVIDENCE" and "cosign-ci" in denied["reason"]
    assert (invalid["result"], invalid["reason_code"], invalid["subject"]) == ("error", "REFERENCE_INVALID", None)
    assert (absent["result"], absent["reason_code"]) == ("error", "NOT_FOUND")
    assert cached["cached"] is True and cached["result"] == "allowed" and cached["subject"] == allowed["subject"]


async def test_bounded_and_without_credentials(
    tls_registry: RegistryProcess, signed_set: SignedSet, pki: Pki, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    reg = tls_registry
    assert reg.username is not None and reg.password is not None
    auth = ("basic", reg.username, reg.password)
    image = make_image("decision-log-private")
    push_image(reg.url, "audit/private", "v1", image, auth, reg.ssl_context())
    cosign_sign_legacy(reg.url, "audit/private", image["digest"], signed_set.key, auth, reg.ssl_context())
    config = cosign_config(signed_set, server_section(pki))
    config["registries"]["hosts"] = [
        {"host": reg.host, "caFile": str(reg.ca_pem_path), "username": reg.username, "password": reg.password}
    ]
    huge = f"{reg.host}/audit/" + "a" * 200_000 + ":v1"
    async with running_referee(write_config(tmp_path / "referee.yaml", config), pki) as referee:
        capsys.readouterr()
        body = await verify(referee, [f"{reg.host}/audit/private:v1", huge, "x" * 50_000], "audit-bounded")
        assert len(body["response"]["items"]) == 3
    out = capsys.readouterr().out
    lines = decisions(out)  # asserts every line is below 4 KiB
    assert [line["result"] for line in lines] == ["allowed", "error", "error"]
    assert len(lines[1]["key"]) == 512 and lines[1]["key"].endswith("...")
    assert reg.password not in out


async def test_turned_off_and_moved_to_stderr_by_a_reload(
    signed_set: SignedSet, pki: Pki, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    signed = signed_set.ref("signed")
    path = tmp_path / "referee.yaml"
    write_config(path, cosign_config(signed_set, server_section(pki, decisionLog={"enabled": False})))
    async with running_referee(path, pki) as referee:

        async def reload(decision_log: dict[str, Any]) -> None:
            before = referee.server.state.config.generation
            write_config(path, cosign_config(signed_set, server_section(pki, decisionLog=decision_log)))
            while referee.server.state.config.generation == before:
                await asyncio.sleep(0.02)

        counted = await decided_total(referee)
        capsys.readouterr()
        await verify(referee, [signed], "audit-off")
        off = capsys.readouterr()
        assert not decisions(off.out) and not decisions(off.err)
        assert await decided_total(referee) == counted + 1  # metrics count with the log off

        await reload({"output": "stderr"})
        await verify(referee, [signed], "audit-stderr")
        moved = capsys.readouterr()
        assert not decisions(moved.out)
        assert [line["request_id"] for line in decisions(moved.err)] == ["audit-stderr"]
