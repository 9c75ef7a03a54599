"""A load generator in its own process, so that the bench's own event loop neither slows it nor is measured with
it: ``python -m bench.infra.loadgen SPEC.json`` runs the spec's *legs* one after the other and prints one JSON
document with each leg's figures.

A leg sends recorded ProviderRequests (``workload``: JSON list of ``{"keys": [...], "body": "...", "response":
"..."}``) from ``workers`` concurrent workers for ``duration`` seconds (or until its ``stop_file`` appears), to
``url``, either on one keep-alive connection per worker or on a fresh TCP + TLS 1.3 connection per request
(``fresh``), as Gatekeeper v3.21 does.
Every answer must be byte-identical to the recorded ``response`` (Referee's answer for the same keys, recorded
once by the bench), so a fast client can still check every answer. Before and after each leg it reads the CPU
time of ``server_pid`` (/proc), so the figures include the server's CPU seconds per leg.
"""

from __future__ import annotations

import asyncio
import json
import resource
import ssl
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp

from bench.infra.util import latency_summary, proc_cpu_seconds


def client_context(spec: dict[str, Any]) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=spec["ca"])
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.load_cert_chain(spec["cert"])
    return ctx


def self_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def run_leg(leg: dict[str, Any], ctx: ssl.SSLContext) -> dict[str, Any]:
    workload = json.loads(Path(leg["workload"]).read_text())
    bodies = [w["body"].encode() for w in workload]
    expected = [w["response"].encode() if w.get("response") is not None else None for w in workload]
    keys_per = [len(w["keys"]) for w in workload]
    url = leg["url"] + leg.get("path", "/verify")
    workers = int(leg["workers"])
    fresh = bool(leg.get("fresh"))
    pause = float(leg.get("pause", 0.0))
    timeout = aiohttp.ClientTimeout(total=float(leg.get("timeout", 15.0)))
    headers = {"Content-Type": "application/json"}
    if fresh:
        sessions = [
            aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=0, ssl=ctx, force_close=True), timeout=timeout, trust_env=False
            )
        ] * workers
    else:
        sessions = [
            aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=1, ssl=ctx, keepalive_timeout=300),
                timeout=timeout,
                trust_env=False,
            )
            for _ in range(workers)
        ]
    latencies: list[float] = []
    counts = {"requests": 0, "keys": 0, "mismatches": 0, "errors": 0}
    samples: list[str] = []
    try:
        # Warm-up: one request per worker (opens the keep-alive connections), not measured.
        for w in range(workers):
            async with sessions[w].post(url, data=bodies[w % len(bodies)], headers=headers) as resp:
                await resp.read()
        pid = leg.get("server_pid")
        cpu0 = proc_cpu_seconds(pid) if pid else 0.0
        self0 = self_cpu()
        started = time.perf_counter()
        stop_at = started + float(leg["duration"])
        stop_file = Path(leg["stop_file"]) if leg.get("stop_file") else None

        async def watch() -> None:
            nonlocal stop_at
            while stop_file is not None and time.perf_counter() < stop_at:
                if stop_file.exists():
                    stop_at = time.perf_counter()
                await asyncio.sleep(0.1)

        watcher = asyncio.ensure_future(watch())

        async def worker(w: int) -> None:
            session = sessions[w]
            i = (w * len(bodies)) // workers
            while time.perf_counter() < stop_at:
                index = i % len(bodies)
                i += 1
                t0 = time.perf_counter()
                try:
                    async with session.post(url, data=bodies[index], headers=headers) as resp:
                        raw = await resp.read()
                        status = resp.status
                except (aiohttp.ClientError, OSError, TimeoutError) as exc:
                    counts["errors"] += 1
                    if len(samples) < 3:
                        samples.append(f"{type(exc).__name__}: {exc}")
                    continue
                latencies.append(time.perf_counter() - t0)
                counts["requests"] += 1
                counts["keys"] += keys_per[index]
                want = expected[index]
                if status != 200 or (want is not None and raw != want):
                    counts["mismatches"] += 1
                    if len(samples) < 3:
                        samples.append(f"HTTP {status}: {raw[:400]!r}")
                if pause:
                    await asyncio.sleep(pause)

        await asyncio.gather(*(worker(w) for w in range(workers)))
        watcher.cancel()
        seconds = time.perf_counter() - started
        server_cpu = (proc_cpu_seconds(pid) - cpu0) if pid else None
        client_cpu = self_cpu() - self0
    finally:
        for session in set(sessions):
            await session.close()
    return {
        "name": leg.get("name", ""),
        **counts,
        "seconds": round(seconds, 4),
        "keysPerSecond": round(counts["keys"] / seconds, 1),
        "serverCpuSeconds": None if server_cpu is None else round(server_cpu, 4),
        "keysPerServerCpuSecond": round(counts["keys"] / server_cpu, 1) if server_cpu else None,
        "loadgenCpuSeconds": round(client_cpu, 4),
        "latencyMs": latency_summary(latencies),
        "latencies": [round(x, 6) for x in latencies] if leg.get("keep_latencies") else None,
        "samples": samples,
    }


async def run(spec: dict[str, Any]) -> list[dict[str, Any]]:
    ctx = client_context(spec)
    return [await run_leg(leg, ctx) for leg in spec["legs"]]


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    spec = json.loads(Path(args[0]).read_text())
    print(json.dumps(asyncio.run(run(spec))), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
