"""deadline: large batches against the Provider timeout under load (#19 item 5). A fresh ``referee serve`` (shipped
log level) with ``providerTimeout: 2s`` and ``mutateProviderTimeout: 1s`` gets warm ``--batch``-key requests from
the load generator on 2 keep-alive connections for the whole phase (its event loop stays busy), while the bench sends,
each on a fresh TLS connection and one at a time, ``--deadline-repeats`` times: ``/mutate`` with ``--deadline-keys``
never-resolved tags, then ``/verify`` with as many never-verified digests (from ``bench/mem``). Each answer must
arrive before its timeout, however little of the work finished."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

from bench.infra.client import Client
from bench.infra.context import Context
from bench.infra.drive import verify_all
from bench.infra.metrics import scrape
from bench.infra.procs import run_loadgen
from bench.infra.server import ServerProcess
from bench.infra.util import BenchError, log
from bench.phases.throughput import chunks, leg, record

NAME = "deadline"
IDLE_TIMEOUT = 60.0
VERIFY_TIMEOUT = 2.0
MUTATE_TIMEOUT = 1.0
LOAD_WORKERS = 2


async def wait_idle(server: ServerProcess) -> None:
    """Until the background work of the previous large request is done (``referee_verifications_pending`` 0), so
    that each large request starts its own work instead of being refused (``limits.maxPendingVerifications``)."""
    deadline = time.monotonic() + IDLE_TIMEOUT
    while time.monotonic() < deadline:
        snapshot = await scrape(server.health_url)
        if not snapshot.get(("referee_verifications_pending", ()), 0.0):
            return
        await asyncio.sleep(0.2)
    raise BenchError(f"referee still had pending verifications after {IDLE_TIMEOUT:g}s")


async def run(ctx: Context) -> None:
    s = ctx.settings
    app = ctx.keys("app")
    tags = ctx.keys("mem")
    digests = ctx.keys("mem", by_digest=True)
    k, repeats = s.deadline_keys, s.deadline_repeats
    config = ctx.config(
        provider_timeout=f"{VERIFY_TIMEOUT:g}s",
        extra={"server": {"mutateProviderTimeout": f"{MUTATE_TIMEOUT:g}s", "maxKeys": max(1000, k)}},
        cache={"tagTtl": "300s"},
    )
    server = await ctx.start_server("referee-deadline", config, log_level="info")
    results: dict[str, list[dict[str, Any]]] = {"mutate": [], "verify": []}
    try:
        async with Client([server.url], ctx.pki.client_context(), s.workers, timeout=30.0) as client:
            await verify_all(client, [server], None, app, s.batch, "deadline prime", deadline=VERIFY_TIMEOUT)
            workload = ctx.directory / "workload-deadline.json"
            workload.write_text(json.dumps(await record(client, chunks(app, s.batch))))
            stop_file = ctx.directory / "deadline-load.stop"
            load = asyncio.ensure_future(
                run_loadgen(
                    ctx.directory,
                    ctx.pki,
                    [
                        leg(
                            "load",
                            server.url,
                            server.pid,
                            str(workload),
                            LOAD_WORKERS,
                            600.0,
                            deadline=VERIFY_TIMEOUT,
                            keep_latencies=True,
                            stop_file=str(stop_file),
                        )
                    ],
                    "deadline",
                )
            )
            await asyncio.sleep(1.0)
            for i in range(repeats):
                batch = tags[i * k : (i + 1) * k]
                log(f"deadline: /mutate with {len(batch)} cold tags (timeout {MUTATE_TIMEOUT:g}s), under load")
                reply = await client.mutate(batch, fresh=True)
                pinned = sum(1 for v in reply.values.values() if isinstance(v, str))
                results["mutate"].append(
                    {
                        "keys": len(batch),
                        "seconds": round(reply.latency, 4),
                        "pinned": pinned,
                        "itemErrors": len(reply.item_errors),
                    }
                )
                await wait_idle(server)
                batch = digests[(repeats + i) * k : (repeats + i + 1) * k]
                log(f"deadline: /verify with {len(batch)} cold digests (timeout {VERIFY_TIMEOUT:g}s), under load")
                reply = await client.verify(batch, fresh=True)
                results["verify"].append(
                    {
                        "keys": len(batch),
                        "seconds": round(reply.latency, 4),
                        "verdicts": len(reply.values),
                        "unanswered": len(reply.unanswered),
                    }
                )
                await wait_idle(server)
            stop_file.touch()
            [load_result] = await load
    finally:
        ctx.stop_server(server)
    r = ctx.report
    r.results["deadline"] = {**results, "load": {k: v for k, v in load_result.items() if k != "latencies"}}
    r.record_deadline("deadline: /mutate 1,000 cold tags", MUTATE_TIMEOUT, [x["seconds"] for x in results["mutate"]])
    r.record_deadline("deadline: /verify 1,000 cold digests", VERIFY_TIMEOUT, [x["seconds"] for x in results["verify"]])
    r.record_deadline("deadline: background load", VERIFY_TIMEOUT, load_result["latencies"] or [])
    r.section(f"large batches under load ({LOAD_WORKERS} connections of warm batch {s.batch} alongside)")
    for endpoint, timeout, done_key in (("mutate", MUTATE_TIMEOUT, "pinned"), ("verify", VERIFY_TIMEOUT, "verdicts")):
        runs = results[endpoint]
        worst = max(x["seconds"] for x in runs)
        r.row(
            f"/{endpoint}, {k:,} cold keys: slowest answer of {len(runs)}",
            f"{worst * 1000:,.0f} ms ({', '.join(str(x[done_key]) for x in runs)} {done_key})",
            f"< {timeout * 1000:,.0f} ms",
            worst < timeout,
        )
        r.figure(f"deadline_{endpoint}_max_s", worst)
    r.row(
        "  background load: keys/s, answer p99",
        f"{load_result['keysPerSecond']:,.0f}, {load_result['latencyMs'].get('p99', 0):.1f} ms",
    )
