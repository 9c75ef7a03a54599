"""throughput: warm keys per second from ``--workers`` concurrent connections, Referee (the main server) against a
no-op provider that serves the same bytes with the same TLS (bench/infra/noop.py), in the same run.

Referee's answer for every request body is recorded first (and must be an allow for every key); the no-op serves
those bytes, and the load generator (bench/infra/loadgen.py, its own process) checks every answer of both against
them. Legs alternate Referee / no-op in ``--slices`` slices so that load from elsewhere on the machine falls on both
alike: batch 1 and batch ``--batch`` on keep-alive connections, batch 1 on a fresh TCP + TLS 1.3 connection per
request (as Gatekeeper v3.21 does), and one request at a time on fresh connections for the warm 1-key latency."""

from __future__ import annotations

import json
from collections import defaultdict
from typing import Any

from bench.infra.client import Client, check_all_allowed
from bench.infra.context import Context
from bench.infra.metrics import Measure, Phase
from bench.infra.procs import NoopProvider, run_loadgen
from bench.infra.util import BenchError, free_ports, log

NAME = "throughput"
TARGET_KEYS_PER_CORE_B50 = 2000.0
TARGET_NOOP_B1 = 0.75
TARGET_NOOP_B50 = 0.6
TARGET_NOOP_FRESH = 0.9
TARGET_FRESH_P99_MS = 4.0
DEADLINE = 3.0


def chunks(keys: list[str], batch: int) -> list[list[str]]:
    n = len(keys)
    return [[keys[(start + j) % n] for j in range(batch)] for start in range(0, n, batch)]


async def record(client: Client, groups: list[list[str]]) -> list[dict[str, Any]]:
    """Referee's answer to each group, twice: both must allow every key and be byte-identical."""
    out = []
    for group in groups:
        first = await client.verify(group)
        check_all_allowed(first, "recording")
        again = await client.verify(group)
        if again.raw != first.raw:
            raise BenchError("Referee's answers to the same warm request differ; the no-op cannot replay them")
        body = json.dumps(
            {"apiVersion": "externaldata.gatekeeper.sh/v1beta1", "kind": "ProviderRequest", "request": {"keys": group}}
        )
        out.append({"keys": group, "body": body, "response": first.raw.decode()})
    return out


def leg(name: str, url: str, pid: int, workload: str, workers: int, duration: float, **extra: Any) -> dict[str, Any]:
    return {
        "name": name,
        "url": url,
        "server_pid": pid,
        "workload": workload,
        "workers": workers,
        "duration": duration,
        "deadline": DEADLINE,
        **extra,
    }


async def run(ctx: Context, client: Client) -> None:
    assert ctx.main is not None
    s = ctx.settings
    keys = ctx.keys("app")
    if s.batch > len(keys):
        raise BenchError(f"batch {s.batch} needs at least {s.batch} distinct keys, have {len(keys)}")
    workloads: dict[str, list[dict[str, Any]]] = {
        "b1": await record(client, chunks(keys, 1)),
        "bN": await record(client, chunks(keys, s.batch)),
    }
    paths = {}
    for name, recorded in workloads.items():
        paths[name] = ctx.directory / f"workload-{name}.json"
        paths[name].write_text(json.dumps(recorded))
    responses = ctx.directory / "noop-responses.json"
    responses.write_text(json.dumps(workloads["b1"] + workloads["bN"]))
    noop = NoopProvider(ctx.pki, free_ports(1)[0], responses, ctx.directory / "noop.log")
    ctx.children.append(noop)
    noop.start()
    log(f"no-op provider pid {noop.pid} on {noop.url}")

    targets = {"referee": (ctx.main.url, ctx.main.pid), "noop": (noop.url, noop.pid)}
    per = s.duration / s.slices
    legs: list[dict[str, Any]] = []
    for _ in range(s.slices):
        for mode, workload, workers, fresh in (
            ("b1", "b1", s.workers, False),
            ("bN", "bN", s.workers, False),
            ("fresh", "b1", s.workers, True),
            ("fresh-seq", "b1", 1, True),
        ):
            for target, (url, pid) in targets.items():
                legs.append(
                    leg(
                        f"{target}/{mode}",
                        url,
                        pid,
                        str(paths[workload]),
                        workers,
                        per,
                        fresh=fresh,
                        keep_latencies=True,
                    )
                )
    log(
        f"throughput: Referee and the no-op, {s.slices} slices of {per:.2f}s each: batch 1, batch {s.batch}, "
        f"fresh TLS batch 1 ({s.workers} workers), fresh TLS one at a time"
    )
    async with Measure([ctx.main], ctx.registry.pid, Phase("throughput", DEADLINE)) as phase:
        results = await run_loadgen(ctx.directory, ctx.pki, legs, "throughput")
    noop.stop()
    ctx.children.remove(noop)
    ctx.phases["throughput"] = phase

    agg: dict[str, dict[str, Any]] = defaultdict(
        lambda: {"keys": 0, "requests": 0, "seconds": 0.0, "cpu": 0.0, "latencies": [], "mismatches": 0, "errors": 0}
    )
    for result in results:
        a = agg[result["name"]]
        a["keys"] += result["keys"]
        a["requests"] += result["requests"]
        a["seconds"] += result["seconds"]
        a["cpu"] += result["serverCpuSeconds"] or 0.0
        a["latencies"] += result["latencies"] or []
        a["mismatches"] += result["mismatches"]
        a["errors"] += result["errors"]
        if result["mismatches"] or result["errors"]:
            raise BenchError(f"throughput leg {result['name']}: wrong answers: {result['samples']}")
    summary = _report(ctx, agg)
    ctx.report.results["throughput"] = summary


def _report(ctx: Context, agg: dict[str, dict[str, Any]]) -> dict[str, Any]:
    from bench.infra.util import latency_summary, percentile

    s = ctx.settings
    r = ctx.report

    def rate(name: str) -> float:
        return agg[name]["keys"] / agg[name]["seconds"] if agg[name]["seconds"] else 0.0

    def per_cpu(name: str) -> float:
        return agg[name]["keys"] / agg[name]["cpu"] if agg[name]["cpu"] else 0.0

    for name, a in agg.items():
        r.record_deadline(f"throughput {name}", DEADLINE, a["latencies"])
    r.section(f"warm throughput: Referee vs the no-op provider, {s.workers} workers, same TLS, same bytes")
    ratios = {}
    for mode, label, key, target in (
        ("b1", "batch 1, keep-alive", "noop_ratio_b1", TARGET_NOOP_B1),
        ("bN", f"batch {s.batch}, keep-alive", "noop_ratio_b50", TARGET_NOOP_B50),
        ("fresh", "batch 1, fresh TLS per request", "noop_ratio_fresh_tls", TARGET_NOOP_FRESH),
    ):
        ref, noop = rate(f"referee/{mode}"), rate(f"noop/{mode}")
        ratio = ref / noop if noop else 0.0
        ratios[mode] = ratio
        r.row(
            f"warm keys/s, {label}: Referee / no-op",
            f"{ref:,.0f} / {noop:,.0f} = {ratio:.2f}x",
            f">= {target:g}x",
            ratio >= target,
        )
        r.figure(key, ratio)
        ref_cpu, noop_cpu = per_cpu(f"referee/{mode}"), per_cpu(f"noop/{mode}")
        a_ref, a_noop = agg[f"referee/{mode}"], agg[f"noop/{mode}"]
        r.row(
            "  server CPU: Referee / no-op",
            f"{a_ref['cpu'] / a_ref['seconds']:.0%} / {a_noop['cpu'] / a_noop['seconds']:.0%} of a core",
        )
        r.row(
            "  keys per server CPU-second: Referee / no-op",
            f"{ref_cpu:,.0f} / {noop_cpu:,.0f} = {ref_cpu / noop_cpu if noop_cpu else 0:.2f}x",
        )
        r.figure(key.replace("noop_ratio", "noop_cpu_ratio"), ref_cpu / noop_cpu if noop_cpu else 0.0)
        lat = a_ref["latencies"]
        r.row(
            "  Referee request latency p50 / p99",
            f"{percentile(lat, 50) * 1000:.2f} / {percentile(lat, 99) * 1000:.2f} ms",
        )
    r.figure("noop_ratio_keepalive", ratios["b1"])
    b50 = rate("referee/bN")
    r.row(
        f"warm keys/s, batch {s.batch} (= per core, one event loop)",
        f"{b50:,.0f}",
        f">= {TARGET_KEYS_PER_CORE_B50:,.0f}",
        b50 >= TARGET_KEYS_PER_CORE_B50,
    )
    r.figure("warm_keys_per_s_b50", b50)
    r.figure("warm_keys_per_cpu_s_b50", per_cpu("referee/bN"))
    r.figure("warm_keys_per_cpu_s_b1", per_cpu("referee/b1"))
    seq_ref, seq_noop = agg["referee/fresh-seq"]["latencies"], agg["noop/fresh-seq"]["latencies"]
    p50, p99 = percentile(seq_ref, 50) * 1000, percentile(seq_ref, 99) * 1000
    r.row(
        f"fresh TLS warm 1-key p50 / p99, one at a time (n={len(seq_ref)})",
        f"{p50:.2f} / {p99:.2f} ms",
        f"p99 < {TARGET_FRESH_P99_MS:g} ms",
        p99 < TARGET_FRESH_P99_MS,
    )
    r.row(
        "  no-op provider, same client",
        f"{percentile(seq_noop, 50) * 1000:.2f} / {percentile(seq_noop, 99) * 1000:.2f} ms",
    )
    r.figure("fresh_tls_p50_ms", p50)
    r.figure("fresh_tls_p99_ms", p99)
    r.figure("noop_fresh_tls_p50_ms", percentile(seq_noop, 50) * 1000)
    r.figure("noop_fresh_tls_p99_ms", percentile(seq_noop, 99) * 1000)
    warm_phases = [p for p in (ctx.phases.get("warm"), ctx.phases.get("throughput")) if p is not None]
    warm_keys = sum(p.keys for p in warm_phases) + sum(a["keys"] for n, a in agg.items() if n.startswith("referee/"))
    gets = sum(p.registry.get("total", 0) - p.registry.get("HEAD", 0) for p in warm_phases)
    heads = sum(p.registry.get("HEAD", 0) for p in warm_phases)
    r.row(f"registry GETs while warm ({warm_keys:,} keys)", f"{int(gets)}", "0", gets == 0)
    r.row("registry HEADs while warm", f"{int(heads)} (tagTtl 300s)", "0", heads == 0)
    return {
        name: {
            "keys": a["keys"],
            "requests": a["requests"],
            "seconds": round(a["seconds"], 3),
            "keysPerSecond": round(a["keys"] / a["seconds"], 1) if a["seconds"] else None,
            "serverCpuSeconds": round(a["cpu"], 3),
            "keysPerServerCpuSecond": round(a["keys"] / a["cpu"], 1) if a["cpu"] else None,
            "latencyMs": latency_summary(a["latencies"]),
        }
        for name, a in agg.items()
    }
