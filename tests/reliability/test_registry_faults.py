"""Registry faults through the real server (issue #13 item 1): ``referee serve`` behind :class:`FaultProxy` in front
of Debian's docker-registry, asked the way Gatekeeper asks (TLS 1.3, client certificate, timeout = providerTimeout).

Every row runs at once, each on its own registry (its own proxy port, so a ``Retry-After`` pause stays in its row).
A row's batch holds the faulty key (a signed image whose evidence sits behind the fault), a warm key of the same
registry (verified before the fault) and a cold healthy key of another registry. For each row:

* the answer arrives before Gatekeeper's timeout and is a well-formed ProviderResponse;
* the faulty key is never allowed: a transient fault leaves it out and names it in ``systemError`` with its code; a
  deterministic fault is an item error with its code — or, for a fault while *reading evidence* (not the image
  itself), a denial that says so (``complete: false``, the code in its notes) and is kept only ``cache.tagTtl``;
* the healthy keys keep their verdicts;
* once the fault clears, the background work it started has ended (``referee_verifications_pending`` 0) and the
  brief window for verdicts decided on incomplete evidence (``min(verdictTtl, tagTtl)``) has passed, the *first*
  request allows the key: nothing was cached from the fault. The one exception is a ``Retry-After: 3600``: Referee
  keeps that registry paused for up to 60 s (``MAX_PAUSE``), so the first request after the fault still names the
  pause — the figure says so.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from provider import mediatypes as mt
from tests.reliability.conftest import Launcher
from tests.reliability.harness import Answer, GatekeeperClient, eventually, scrape
from tests.support.content import (
    cosign_payload,
    cosign_sign_legacy,
    cosign_sign_payload,
    make_artifact_manifest,
    make_image,
    push_artifact,
    push_image,
    referrer_descriptor,
)
from tests.support.fault_proxy import Fault, FaultProxy
from tests.support.figures import Figures
from tests.support.referee import Pki, RefereeProcess, server_section
from tests.support.registry import RegistryProcess

PROVIDER_TIMEOUT = 2.0
TAG_TTL = 1.0
MAX_MANIFEST = 256 * 1024
TRANSIENT = ("REGISTRY_UNAVAILABLE", "DEADLINE_EXCEEDED")
TOKEN_TRANSIENT = ("AUTH_UNAVAILABLE", "DEADLINE_EXCEEDED")


@dataclass(frozen=True)
class Row:
    name: str
    target: str  # "tag" | "signature" | "blob" | "referrers"
    fault: Fault
    expect: str  # "transient" | "item-error" | "denied-incomplete" | "tolerated" (not a fault: must be allowed)
    codes: tuple[str, ...]
    recovers: str = "first request"
    signature: str = "legacy"  # "legacy" (.sig tag) | "referrer" (OCI 1.1, through the referrers API)
    token_fault: Fault | None = None  # the target answers a challenge whose realm (this row's own) gets this fault


def _status(code: int, **headers: str) -> Fault:
    return Fault("status", status=code, headers=headers)


ROWS: list[Row] = [
    Row("HTTP 500 on the image tag", "tag", _status(500), "transient", TRANSIENT),
    Row("HTTP 502 on the signature manifest", "signature", _status(502), "transient", TRANSIENT),
    Row("HTTP 503 on the signature payload blob", "blob", _status(503), "transient", TRANSIENT),
    Row("HTTP 429 without Retry-After", "tag", _status(429), "transient", TRANSIENT),
    Row("HTTP 429 with Retry-After: 1", "tag", _status(429, **{"Retry-After": "1"}), "transient", TRANSIENT),
    Row(
        "HTTP 429 with Retry-After: 3600",
        "tag",
        _status(429, **{"Retry-After": "3600"}),
        "transient",
        ("REGISTRY_UNAVAILABLE",),
        recovers="after the pause (at most 60 s)",
    ),
    Row(
        "latency above the deadline (3 s) on the image tag", "tag", Fault("delay", seconds=3.0), "transient", TRANSIENT
    ),
    Row(
        "latency above the deadline (3 s) on the signature blob",
        "blob",
        Fault("delay", seconds=3.0),
        "transient",
        TRANSIENT,
    ),
    Row("a connection that never answers (signature manifest)", "signature", Fault("hang"), "transient", TRANSIENT),
    Row("a connection that never answers (image tag)", "tag", Fault("hang"), "transient", TRANSIENT),
    Row("connection reset mid-body (signature manifest)", "signature", Fault("reset"), "transient", TRANSIENT),
    Row("connection reset mid-body (signature blob)", "blob", Fault("reset"), "transient", TRANSIENT),
    Row("truncated body (signature blob)", "blob", Fault("truncate"), "transient", TRANSIENT),
    Row("truncated body (signature manifest)", "signature", Fault("truncate"), "transient", TRANSIENT),
    Row(
        "non-JSON manifest (image tag)",
        "tag",
        Fault("body", body=b"<html>not a manifest</html>"),
        "item-error",
        ("MANIFEST_INVALID",),
    ),
    Row(
        "non-JSON manifest (signature manifest)",
        "signature",
        Fault("body", body=b"\xff\xfe not json"),
        "item-error",
        ("MANIFEST_INVALID",),
    ),
    Row(
        "bytes that do not match the digest (signature manifest)",
        "signature",
        Fault("corrupt"),
        "item-error",
        ("DIGEST_MISMATCH",),
    ),
    Row(
        "bytes that do not match the digest (signature blob)",
        "blob",
        Fault("corrupt"),
        "denied-incomplete",
        ("DIGEST_MISMATCH",),
    ),
    Row(
        "oversize manifest, honest Content-Length",
        "signature",
        Fault("oversize", size=2 * MAX_MANIFEST),
        "item-error",
        ("ARTIFACT_TOO_LARGE",),
    ),
    Row(
        "oversize manifest, chunked without Content-Length",
        "signature",
        Fault("oversize-chunked", size=2 * MAX_MANIFEST),
        "item-error",
        ("ARTIFACT_TOO_LARGE",),
    ),
    Row(
        "oversize manifest, Content-Length lies",
        "signature",
        Fault("oversize-lying", size=2 * MAX_MANIFEST),
        "transient",
        ("REGISTRY_UNAVAILABLE",),
    ),
    Row(
        "oversize blob, chunked without Content-Length",
        "blob",
        Fault("oversize-chunked", size=2 * MAX_MANIFEST),
        "denied-incomplete",
        ("ARTIFACT_TOO_LARGE",),
    ),
    Row(
        "oversize blob, Content-Length lies",
        "blob",
        Fault("oversize-lying", size=2 * MAX_MANIFEST),
        "transient",
        ("REGISTRY_UNAVAILABLE",),
    ),
    Row(
        "endless referrers pagination (Link)",
        "referrers",
        Fault("pages"),
        "denied-incomplete",
        ("maxReferrerPages", "REFERRERS_CAPPED"),
        signature="referrer",
    ),
    Row("redirect loop (image tag)", "tag", Fault("redirect"), "item-error", ("REGISTRY_ERROR",)),
    Row("redirect loop (signature blob)", "blob", Fault("redirect"), "denied-incomplete", ("REGISTRY_ERROR",)),
    Row(
        "redirect to a host not in registries.allow (signature manifest)",
        "signature",
        Fault("redirect", location="https://localhost:9/elsewhere"),
        "item-error",
        ("REGISTRY_ERROR",),
    ),
    Row(
        "redirect to a host not in registries.allow (signature blob)",
        "blob",
        Fault("redirect", location="https://localhost:9/elsewhere"),
        "denied-incomplete",
        ("REGISTRY_ERROR",),
    ),
    Row(
        "token realm on a host not in registries.allow",
        "tag",
        Fault("challenge", location="https://localhost:9/token"),
        "item-error",
        ("AUTH_DENIED",),
    ),
    Row(
        "wrong Content-Type (image tag)",
        "tag",
        Fault("content-type", content_type="text/html"),
        "item-error",
        ("UNSUPPORTED",),
    ),
    # The manifest is digest-verified and names its own mediaType: the header is not evidence, so this is not a fault.
    Row(
        "wrong Content-Type (signature manifest)",
        "signature",
        Fault("content-type", content_type="text/html"),
        "tolerated",
        (),
    ),
    Row("401 challenge loop (image tag)", "tag", Fault("challenge"), "item-error", ("AUTH_DENIED",)),
    Row(
        "token service answers 503",
        "tag",
        Fault("challenge"),
        "transient",
        TOKEN_TRANSIENT,
        token_fault=_status(503),
    ),
    Row(
        "token service never answers",
        "tag",
        Fault("challenge"),
        "transient",
        TOKEN_TRANSIENT,
        token_fault=Fault("hang"),
    ),
    Row("401 challenge loop (signature blob)", "blob", Fault("challenge"), "denied-incomplete", ("AUTH_DENIED",)),
]


@dataclass
class Case:
    row: Row
    registry: str
    repo: str
    key: str
    warm: str
    healthy: str
    path: str = ""
    faults: dict[str, Fault] = field(default_factory=dict)
    fault_answer: Answer | None = None
    recovery: Answer | None = None
    notes: list[str] = field(default_factory=list)


def _slug(index: int) -> str:
    return f"r{index:02d}"


def _sign_referrer(
    base_url: str, host: str, repo: str, image: dict[str, Any], key: ec.EllipticCurvePrivateKey
) -> dict[str, Any]:
    payload = cosign_payload(f"{host}/{repo}", image["digest"])
    layer = (mt.COSIGN_SIMPLESIGNING, payload, {mt.ANNOTATION_COSIGN_SIGNATURE: cosign_sign_payload(key, payload)})
    manifest, blobs = make_artifact_manifest(image["descriptor"], mt.COSIGN_OCI11_SIGNATURE, [layer])
    push_artifact(base_url, repo, manifest, blobs)
    return referrer_descriptor(manifest)


@pytest.fixture(scope="module")
def fault_proxy(registry: RegistryProcess) -> Any:
    with FaultProxy(registry.url, registries=len(ROWS)) as proxy:
        yield proxy


@pytest.fixture(scope="module")
def cases(
    fault_proxy: FaultProxy, registry: RegistryProcess, cosign_key: tuple[ec.EllipticCurvePrivateKey, Path]
) -> list[Case]:
    key, _ = cosign_key
    warm_image = make_image("reliability/warm")
    push_image(registry.url, "rel/warm", "v1", warm_image)
    cosign_sign_legacy(registry.url, "rel/warm", warm_image["digest"], key)
    out = []
    for index, row in enumerate(ROWS):
        slug = _slug(index)
        host = fault_proxy.hosts[index]
        repo = f"rel/fault/{slug}"
        image = make_image(f"reliability/fault/{slug}")
        push_image(registry.url, repo, "v1", image)
        if row.signature == "referrer":
            desc = _sign_referrer(registry.url, host, repo, image, key)
            fault_proxy.add_referrer(repo, image["digest"], desc)
        else:
            signature = cosign_sign_legacy(registry.url, repo, image["digest"], key)
        healthy = make_image(f"reliability/healthy/{slug}")
        push_image(registry.url, "rel/healthy", slug, healthy)
        cosign_sign_legacy(registry.url, "rel/healthy", healthy["digest"], key)
        paths = {
            "tag": f"/v2/{repo}/manifests/v1",
            "referrers": f"/v2/{repo}/referrers/",
        }
        if row.signature == "legacy":
            paths["signature"] = f"/v2/{repo}/manifests/{signature.tag}"
            paths["blob"] = f"/v2/{repo}/blobs/{signature.layer['digest']}"
        faults = {paths[row.target]: row.fault}
        if row.token_fault is not None:
            realm = f"/tokens/{slug}"
            faults = {paths[row.target]: Fault("challenge", location=f"http://{host}{realm}"), realm: row.token_fault}
        out.append(
            Case(
                row=row,
                registry=host,
                repo=repo,
                key=f"{host}/{repo}:v1",
                warm=f"{host}/rel/warm@{warm_image['digest']}",
                healthy=f"{registry.host}/rel/healthy:{slug}",
                path=paths[row.target],
                faults=faults,
            )
        )
    return out


def _config(proxy: FaultProxy, registry: RegistryProcess, key_file: Path, pki: Pki) -> dict[str, Any]:
    hosts = [{"host": host, "plainHttp": True} for host in proxy.hosts]
    hosts.append({"host": registry.host, "plainHttp": True})
    return {
        "registries": {"allow": ["127.0.0.1:*"], "hosts": hosts, "requestTimeout": "1s"},
        "verifiers": [{"name": "cosign-ci", "type": "cosign", "keys": [str(key_file)]}],
        "policy": {"type": "required-verifiers", "required": ["cosign-ci"]},
        "cache": {"tagTtl": f"{TAG_TTL}s"},
        "limits": {
            "verificationTimeout": "4s",
            "maxReferrerPages": 4,
            "maxManifestBytes": f"{MAX_MANIFEST // 1024}KiB",
            "maxPendingVerifications": 4096,
        },
        "server": server_section(pki, providerTimeout=f"{PROVIDER_TIMEOUT}s", reloadInterval="10s"),
    }


def _judge_fault(case: Case, answer: Answer) -> str:
    """Assert the row's expectation on the fault-time answer; return what was seen."""
    row, key = case.row, case.key
    assert answer.allowed(case.warm), (row.name, "warm key", answer.doc)
    assert answer.allowed(case.healthy), (row.name, "healthy key of another registry", answer.doc)
    if row.expect == "tolerated":
        assert answer.allowed(key), (row.name, answer.doc)
        return "allowed: the content is digest-verified and names its own mediaType"
    assert not answer.allowed(key), (row.name, answer.doc)
    if row.expect == "transient":
        assert key not in answer.items, (row.name, answer.doc)
        named = [code for code in row.codes if f"{key}: {code}" in answer.system_error]
        assert named, (row.name, answer.system_error)
        return f"left out, systemError {named[0]}"
    if row.expect == "item-error":
        error = answer.error(key)
        assert error is not None and error.startswith(row.codes), (row.name, answer.doc)
        return f"item error {error.split(':', 1)[0]}"
    verdict = answer.verdict(key)
    assert verdict is not None and verdict["allowed"] is False, (row.name, answer.doc)
    assert verdict["complete"] is False, (row.name, verdict)
    said = " ".join([verdict["reason"], *verdict.get("notes", [])])
    found = [code for code in row.codes if code in said]
    assert found, (row.name, said)
    return f"denied, complete: false ({found[0]})"


async def test_every_registry_fault_is_answered_in_time_fails_closed_and_leaves_nothing_behind(
    fault_proxy: FaultProxy,
    registry: RegistryProcess,
    cases: list[Case],
    cosign_key: tuple[ec.EllipticCurvePrivateKey, Path],
    rel_pki: Pki,
    launch_module: Launcher,
    figures: Figures,
) -> None:
    referee = launch_module(_config(fault_proxy, registry, cosign_key[1], rel_pki), name="faults")
    async with GatekeeperClient(referee.url, rel_pki.client_context(), PROVIDER_TIMEOUT) as client:
        await _run(fault_proxy, referee, client, cases, figures)


async def _run(
    fault_proxy: FaultProxy, referee: RefereeProcess, client: GatekeeperClient, cases: list[Case], figures: Figures
) -> None:
    warm_keys = [case.warm for case in cases]

    async def warmed() -> bool:
        answer = await client.verify(warm_keys)
        return all(answer.allowed(k) for k in warm_keys)

    await eventually(warmed)
    # one kept-alive connection per row, as Gatekeeper keeps its connections to the provider
    await asyncio.gather(*(client.verify([case.warm]) for case in cases))

    for case in cases:
        for path, fault in case.faults.items():
            fault_proxy.inject(path, fault)
    try:
        answers = await asyncio.gather(*(client.verify([c.key, c.warm, c.healthy]) for c in cases))
    finally:
        faults_ended = time.monotonic()
        fault_proxy.clear_faults()
    failures: list[str] = []
    for case, answer in zip(cases, answers, strict=True):
        case.fault_answer = answer
        try:
            case.notes.append(_judge_fault(case, answer))
        except AssertionError as exc:
            failures.append(f"{case.row.name}: {exc}")
        for path in case.faults:
            assert fault_proxy.hits[path] > 0, f"{case.row.name}: the fault on {path} was never reached"

    async def drained() -> bool:
        samples = await scrape(referee.health_url)
        return samples.get("referee_verifications_pending{}", 1) == 0

    await eventually(drained, timeout=30)
    await asyncio.sleep(max(0.0, faults_ended + TAG_TTL + 0.2 - time.monotonic()))
    recoveries = await asyncio.gather(*(client.verify([c.key]) for c in cases))
    for case, answer in zip(cases, recoveries, strict=True):
        case.recovery = answer
        if case.row.recovers == "first request":
            if not answer.allowed(case.key):
                failures.append(f"{case.row.name}: first request after the fault cleared: {answer.doc['response']}")
        else:
            assert case.key not in answer.items and "Retry-After" in answer.system_error, answer.doc

    for case in cases:
        fault_answer = case.fault_answer
        assert fault_answer is not None and case.recovery is not None
        figures.record(
            "faults",
            case.row.name,
            target=case.row.target,
            outcome=case.notes[0] if case.notes else "FAILED",
            answered_s=round(fault_answer.elapsed, 3),
            deadline_s=PROVIDER_TIMEOUT,
            late=0,
            wrongly_allowed=int(fault_answer.allowed(case.key) and case.row.expect != "tolerated"),
            healthy_kept=fault_answer.allowed(case.warm) and fault_answer.allowed(case.healthy),
            recovered=case.recovery.allowed(case.key),
            recovery=case.row.recovers,
            survived=not any(f.startswith(case.row.name + ":") for f in failures),
        )
    assert not failures, "\n".join(failures)
