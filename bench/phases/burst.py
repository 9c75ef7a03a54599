"""burst: ``--burst-images`` never-seen signed images (one in 20 signed with a key Referee does not trust) sent as
concurrent requests of ``--batch`` keys (1,000 → 20 requests of 50) to a fresh ``referee serve`` at the shipped log
level, ``providerTimeout: 3s``, each request on a fresh TLS connection. Each request is then re-sent the way
Gatekeeper's callers re-evaluate an admission: the keys that got an item are cached by Gatekeeper and not asked
again, the others are sent again at once, until every key has a verdict.

Figures: verdicts in the first round, rounds until every key had one, total time, registry requests per image (from
``referee_registry_requests_total``), and images allowed although signed with the untrusted key."""

from __future__ import annotations

import time
from typing import Any

from bench.infra.client import Client
from bench.infra.context import Context
from bench.infra.drive import Admission, gatekeeper_rounds
from bench.infra.metrics import Measure, Phase
from bench.infra.server import ServerProcess
from bench.infra.util import BenchError, log

NAME = "burst"
PROVIDER_TIMEOUT = 3.0
TARGET_FIRST_ROUND_SHARE = 0.5
TARGET_ROUNDS = 2
TARGET_REQUESTS_PER_IMAGE = 4.05
GIVE_UP_S = 60.0


def groups_of(keys: list[str], batch: int) -> list[list[str]]:
    return [keys[i : i + batch] for i in range(0, len(keys), batch)]


async def run_burst(
    ctx: Context, servers: list[ServerProcess], keys: list[str], bad: set[str], label: str
) -> dict[str, Any]:
    """One burst against ``servers`` (a replica picked at random per request); its figures."""
    s = ctx.settings
    groups = groups_of(keys, s.batch)
    log(f"{label}: {len(keys)} never-seen images as {len(groups)} concurrent requests of {s.batch} keys")
    async with (
        Client([srv.url for srv in servers], ctx.pki.client_context(), 1, timeout=30.0) as client,
        Measure(servers, ctx.registry.pid, Phase(label, PROVIDER_TIMEOUT)) as phase,
    ):
        started = time.monotonic()
        admissions = await gatekeeper_rounds(
            client, groups, started=started, give_up_at=started + GIVE_UP_S, fresh=True
        )
        phase.latencies = [rep.latency for a in admissions for rep in a.replies]
        phase.keys = len(keys)
    return summarise(ctx, phase, admissions, keys, bad, label)


def summarise(
    ctx: Context, phase: Phase, admissions: list[Admission], keys: list[str], bad: set[str], label: str
) -> dict[str, Any]:
    values: dict[str, Any] = {}
    item_errors: dict[str, str] = {}
    first_round_verdicts = 0
    for adm in admissions:
        for i, reply in enumerate(adm.replies):
            values.update(reply.values)
            item_errors.update(reply.item_errors)
            if i == 0:
                first_round_verdicts += len(reply.values)
    missing = [k for k in keys if k not in values and k not in item_errors]
    if missing:
        raise BenchError(f"{label}: {len(missing)} keys without an answer after {GIVE_UP_S:.0f}s")
    allowed = {k for k, v in values.items() if v.get("allowed") is True}
    wrongly_allowed = len(allowed & bad)
    wrongly_denied = len((set(keys) - bad) - allowed)
    rounds = max(a.rounds for a in admissions)
    per_round: dict[int, int] = {}
    for adm in admissions:
        for i, reply in enumerate(adm.replies):
            per_round[i + 1] = per_round.get(i + 1, 0) + len(reply.values)
    total_s = max(t for a in admissions for t in a.item_times.values())
    registry_total = phase.registry.get("total", 0.0)
    ctx.report.deadline(label, phase)
    return {
        "images": len(keys),
        "requests": len(admissions),
        "firstRoundVerdicts": first_round_verdicts,
        "verdictsPerRound": per_round,
        "roundsToAllVerdicts": rounds,
        "totalSeconds": round(total_s, 3),
        "itemErrors": len(item_errors),
        "itemErrorSamples": list(item_errors.items())[:3],
        "registryRequests": {k: int(v) for k, v in phase.registry.items()},
        "registryRequestsPerImage": round(registry_total / len(keys), 4),
        "wronglyAllowed": wrongly_allowed,
        "wronglyDenied": wrongly_denied,
        "serverCpuSeconds": round(phase.server_cpu, 3),
        "registryCpuSeconds": round(phase.registry_cpu, 3),
        "maxAnswerSeconds": round(phase.max_latency, 4),
        "answersAfterDeadline": phase.over_deadline,
    }


def report_rows(ctx: Context, result: dict[str, Any], prefix: str, title: str) -> None:
    r = ctx.report
    n = result["images"]
    r.section(title)
    r.row(
        f"{prefix}verdicts in the first round",
        f"{result['firstRoundVerdicts']:,} of {n:,} (rounds: {result['verdictsPerRound']})",
        f">= {int(n * TARGET_FIRST_ROUND_SHARE):,}",
        result["firstRoundVerdicts"] >= n * TARGET_FIRST_ROUND_SHARE,
    )
    r.row(
        f"{prefix}rounds until every key has a verdict",
        f"{result['roundsToAllVerdicts']}",
        f"<= {TARGET_ROUNDS}",
        result["roundsToAllVerdicts"] <= TARGET_ROUNDS,
    )
    r.row(f"{prefix}time until the last verdict", f"{result['totalSeconds']:.2f} s")
    r.row(
        f"{prefix}registry requests per image",
        f"{result['registryRequestsPerImage']:.3f}",
        f"<= {TARGET_REQUESTS_PER_IMAGE:g}",
        result["registryRequestsPerImage"] <= TARGET_REQUESTS_PER_IMAGE,
    )
    r.row(f"{prefix}wrongly allowed (untrusted key)", f"{result['wronglyAllowed']}", "0", result["wronglyAllowed"] == 0)
    r.row(
        f"{prefix}wrongly denied / item errors",
        f"{result['wronglyDenied']} / {result['itemErrors']}",
        "0 / 0",
        result["wronglyDenied"] == 0 and result["itemErrors"] == 0,
    )
    r.row(
        f"{prefix}CPU seconds: referee / registry",
        f"{result['serverCpuSeconds']:.2f} / {result['registryCpuSeconds']:.2f}",
    )


async def run(ctx: Context) -> None:
    keys = ctx.keys("burst")
    bad = ctx.content["burst"].bad_keys(ctx.host)
    config = ctx.config(provider_timeout=f"{PROVIDER_TIMEOUT:g}s")
    server = await ctx.start_server("referee-burst", config, log_level="info")
    try:
        result = await run_burst(ctx, [server], keys, bad, "burst")
        result["peakRssMiB"] = server.memory_mib().get("VmHWM")
    finally:
        ctx.stop_server(server)
    r = ctx.report
    r.results["burst"] = result
    report_rows(
        ctx,
        result,
        "",
        f"burst: {len(keys):,} never-seen images, {ctx.settings.burst_requests} x "
        f"{ctx.settings.batch} keys at once, providerTimeout 3s, fresh TLS, 1 replica",
    )
    r.figure("burst_images", result["images"])
    r.figure("burst_first_round_verdicts", result["firstRoundVerdicts"])
    r.figure("burst_rounds_to_all_verdicts", result["roundsToAllVerdicts"])
    r.figure("burst_total_s", result["totalSeconds"])
    r.figure("burst_registry_requests_per_image", result["registryRequestsPerImage"])
    r.figure("burst_wrongly_allowed", result["wronglyAllowed"])
