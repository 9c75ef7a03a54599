"""warm: ``--warm-requests`` 1-key requests, one at a time on a keep-alive connection, cycling over the
``bench/app`` tags whose verdicts are cached (the main server keeps tag resolutions for 300 s)."""

from __future__ import annotations

from bench.infra.client import Client
from bench.infra.context import Context
from bench.infra.drive import sequential, verify_all
from bench.infra.util import log, percentile

NAME = "warm"
TARGET_WARM_P99_MS = 5.0


async def run(ctx: Context, client: Client) -> None:
    assert ctx.main is not None
    keys = ctx.keys("app")
    if "cold" not in ctx.phases:
        await verify_all(client, [ctx.main], ctx.registry.pid, keys, ctx.settings.batch, "prime", deadline=3.0)
    warm_keys = [keys[i % len(keys)] for i in range(ctx.settings.warm_requests)]
    log(f"warm: {len(warm_keys)} 1-key requests for cached verdicts, one at a time")
    warm = await sequential(client, [ctx.main], ctx.registry.pid, warm_keys, "warm", deadline=3.0)
    ctx.phases["warm"] = warm
    r = ctx.report
    r.results["warm"] = warm.summary()
    r.deadline("warm 1-key", warm)
    r.section("warm 1-key latency (main server, keep-alive)")
    p99 = percentile(warm.latencies, 99) * 1000
    r.row(f"warm 1-key latency p50 (n={len(warm.latencies)})", f"{percentile(warm.latencies, 50) * 1000:.2f} ms")
    r.row(
        f"warm 1-key latency p99 (n={len(warm.latencies)})",
        f"{p99:.2f} ms",
        f"< {TARGET_WARM_P99_MS:g} ms",
        p99 < TARGET_WARM_P99_MS,
    )
    r.figure("warm_p99_ms", p99)
