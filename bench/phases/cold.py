"""cold: one 1-key request per ``bench/app`` tag, one at a time, on a keep-alive connection to the main server.
Every key is verified for the first time: latency, and registry requests per verification (4 with the default
cosign types, plus the referrers-API probe once per registry)."""

from __future__ import annotations

from bench.infra.client import Client
from bench.infra.context import Context
from bench.infra.drive import sequential
from bench.infra.util import log, percentile

NAME = "cold"


async def run(ctx: Context, client: Client) -> None:
    assert ctx.main is not None
    keys = ctx.keys("app")
    log(f"cold: {len(keys)} first-time verifications, one 1-key request at a time")
    cold = await sequential(client, [ctx.main], ctx.registry.pid, keys, "cold", deadline=3.0)
    ctx.phases["cold"] = cold
    r = ctx.report
    r.results["cold"] = cold.summary()
    r.deadline("cold 1-key", cold)
    r.section("cold verification (main server, keep-alive)")
    r.row(f"cold 1-key latency p50 (n={len(cold.latencies)})", f"{percentile(cold.latencies, 50) * 1000:.2f} ms")
    r.row(f"cold 1-key latency p99 (n={len(cold.latencies)})", f"{percentile(cold.latencies, 99) * 1000:.2f} ms")
    n = cold.keys
    total = cold.registry.get("total", 0)
    r.row(
        "cold registry req/verification, default types",
        f"{total / n:.3f} (HEAD {cold.registry.get('HEAD', 0) / n:.2f}, GET {cold.registry.get('GET', 0) / n:.3f})",
        "= 4 (+1 API probe once)",
        total <= 4 * n + 1,
    )
    r.figure("cold_registry_requests_per_image", total / n)
