"""memory: every ``bench/mem`` tag verified once on the main server (``--batch`` keys per request over all
connections; keys named in ``systemError`` are sent again, at most 3 rounds), the RSS with those verdicts cached, a
second pass over ``--memory-sample`` of them (all must be cache hits), then the ``bench/app`` tags re-resolved and
the warm 1-key latency measured again with the cache full."""

from __future__ import annotations

import asyncio

from bench.infra.client import Client
from bench.infra.context import Context
from bench.infra.drive import sequential, verify_all
from bench.infra.util import log, percentile

NAME = "memory"
TARGET_RSS_MIB = 200.0
TARGET_WARM_P99_MS = 5.0


async def run(ctx: Context, client: Client) -> None:
    main = ctx.main
    assert main is not None
    s = ctx.settings
    keys = ctx.keys("mem")
    app = ctx.keys("app")
    pid = ctx.registry.pid
    rss_before = main.memory_mib()
    log(f"memory: verifying {len(keys)} distinct digests, {s.batch} keys per request")
    fill = await verify_all(client, [main], pid, keys, s.batch, "memory", deadline=3.0)
    await asyncio.sleep(0.5)
    rss = main.memory_mib()
    step = max(1, len(keys) // max(1, s.memory_sample))
    sample = keys[::step][: s.memory_sample]
    log(f"memory: second pass over {len(sample)} of them (verdicts must be cache hits)")
    second = await verify_all(client, [main], pid, sample, s.batch, "memory second pass", deadline=3.0)
    rss_after = main.memory_mib()
    log(f"warm again, verdict cache full: re-resolve {len(app)} tags, then {s.warm_requests} requests")
    await verify_all(client, [main], pid, app, s.batch, "re-warm", deadline=3.0)
    warm_keys = [app[i % len(app)] for i in range(s.warm_requests)]
    loaded = await sequential(client, [main], pid, warm_keys, "warm (cache full)", deadline=3.0)

    r = ctx.report
    for name, phase in (("memory fill", fill), ("memory second pass", second), ("warm, cache full", loaded)):
        r.deadline(name, phase)
    r.results["memoryFill"] = fill.summary()
    r.results["memorySecondPass"] = second.summary()
    r.results["warmCacheFull"] = loaded.summary()
    r.results["rssMiB"] = {"beforeFill": rss_before, "afterFill": rss, "afterSecondPass": rss_after}
    verdicts = int(fill.verdict_cache.get("miss", 0))
    cached = verdicts + int(ctx.phases["cold"].keys if "cold" in ctx.phases else len(app))
    r.section("memory (main server)")
    p99 = percentile(loaded.latencies, 99) * 1000
    r.row(
        f"warm 1-key p50 / p99, {cached:,} verdicts cached",
        f"{percentile(loaded.latencies, 50) * 1000:.2f} / {p99:.2f} ms",
        f"p99 < {TARGET_WARM_P99_MS:g} ms",
        p99 < TARGET_WARM_P99_MS,
    )
    value = rss.get("VmRSS", 0.0)
    r.row(
        f"RSS with {verdicts:,} verdicts cached",
        f"{value:.1f} MiB",
        f"< {TARGET_RSS_MIB:g} MiB",
        value < TARGET_RSS_MIB,
    )
    r.figure("rss_mib_10k_verdicts" if verdicts >= 10000 else "rss_mib_verdicts", value)
    before, peak = rss_before.get("VmRSS", 0.0), rss_after.get("VmHWM", 0.0)
    r.row("  RSS before the fill / peak (VmHWM)", f"{before:.1f} / {peak:.1f} MiB")
    hits = int(second.verdict_cache.get("hit", 0))
    misses = int(second.verdict_cache.get("miss", 0))
    r.row(
        "  second pass: verdict cache hits / sampled",
        f"{hits:,} / {second.keys:,} (misses {misses})",
        "all hits",
        hits == second.keys and misses == 0,
    )
    r.row(
        f"  cold fill rate, batch {s.batch}",
        f"{fill.keys / fill.seconds:,.0f} verifications/s ({fill.registry.get('total', 0) / fill.keys:.2f} req each)",
    )
    r.row(
        "  CPU during cold fill: referee / registry",
        f"{fill.server_cpu / fill.seconds:.0%} / {fill.registry_cpu / fill.seconds:.0%} of a core",
    )
