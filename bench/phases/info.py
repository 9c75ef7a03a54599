"""info: the warm batch phase at the shipped default ``--log-level info`` as well as ``warning``.

A second ``referee serve`` with the main server's configuration, at ``info``, verifies the ``bench/app`` tags once;
then the load generator sends ``--batch``-key requests on keep-alive connections to the main server (``warning``)
and to the ``info`` server, alternating in ``--slices`` slices. The figure is keys per server CPU-second, which does
not depend on how fast the client is. The decision log (one audit line per key, on by default, independent of the
log level) is on in both."""

from __future__ import annotations

import json
from typing import Any

from bench.infra.client import Client
from bench.infra.context import BENCH_TAG_TTL, Context
from bench.infra.drive import verify_all
from bench.infra.procs import run_loadgen
from bench.infra.util import BenchError, log
from bench.phases.throughput import DEADLINE, chunks, leg, record

NAME = "info"
TARGET_KEYS_PER_CPU_S_INFO = 50_000.0


async def run(ctx: Context, client: Client) -> None:
    assert ctx.main is not None
    s = ctx.settings
    keys = ctx.keys("app")
    config = ctx.config(cache={"verdictMaxEntries": 20000, "verdictTtl": "1h", "tagTtl": f"{BENCH_TAG_TTL:g}s"})
    info = await ctx.start_server("referee-info", config, log_level="info")
    async with Client([info.url], ctx.pki.client_context(), s.workers) as info_client:
        await verify_all(info_client, [info], ctx.registry.pid, keys, s.batch, "info prime", deadline=DEADLINE)
        workloads: dict[str, Any] = {
            "warning": (ctx.main, await record(client, chunks(keys, s.batch))),
            "info": (info, await record(info_client, chunks(keys, s.batch))),
        }
    legs = []
    per = s.duration / s.slices
    for level, (server, recorded) in workloads.items():
        path = ctx.directory / f"workload-info-{level}.json"
        path.write_text(json.dumps(recorded))
        workloads[level] = (server, path)
    log_before = info.log_bytes()
    for _ in range(s.slices):
        for level, (server, path) in workloads.items():
            legs.append(leg(level, server.url, server.pid, str(path), s.workers, per, keep_latencies=True))
    log(f"info: batch {s.batch} at log level warning and info, {s.slices} slices of {per:.2f}s")
    results = await run_loadgen(ctx.directory, ctx.pki, legs, "info")
    log_bytes = info.log_bytes() - log_before
    ctx.stop_server(info)
    totals: dict[str, dict[str, float]] = {}
    for result in results:
        if result["mismatches"] or result["errors"]:
            raise BenchError(f"info leg {result['name']}: wrong answers: {result['samples']}")
        t = totals.setdefault(result["name"], {"keys": 0, "cpu": 0.0, "seconds": 0.0})
        t["keys"] += result["keys"]
        t["cpu"] += result["serverCpuSeconds"] or 0.0
        t["seconds"] += result["seconds"]
        ctx.report.record_deadline(f"info-phase {result['name']}", DEADLINE, result["latencies"] or [])
    r = ctx.report
    r.section(f"warm batch {s.batch} by log level (decision log on, as shipped)")
    per_cpu = {level: t["keys"] / t["cpu"] if t["cpu"] else 0.0 for level, t in totals.items()}
    r.row(f"keys per server CPU-second, batch {s.batch}, warning", f"{per_cpu['warning']:,.0f}")
    r.row(
        f"keys per server CPU-second, batch {s.batch}, info",
        f"{per_cpu['info']:,.0f}",
        f">= {TARGET_KEYS_PER_CPU_S_INFO:,.0f}",
        per_cpu["info"] >= TARGET_KEYS_PER_CPU_S_INFO,
    )
    r.row("  log bytes per key at info (operational + decision log)", f"{log_bytes / totals['info']['keys']:.0f}")
    r.figure("warm_keys_per_cpu_s_b50_info", per_cpu["info"])
    r.figure("warm_keys_per_cpu_s_b50_warning", per_cpu["warning"])
    r.results["info"] = {
        level: {**t, "keysPerServerCpuSecond": round(per_cpu[level], 1)} for level, t in totals.items()
    } | {"infoLogBytesPerKey": round(log_bytes / totals["info"]["keys"], 1)}
