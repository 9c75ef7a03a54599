"""Metrics snapshots (``/metrics`` of each server), CPU readings and the :class:`Phase` record they fill."""

from __future__ import annotations

import asyncio
import gc
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from bench.infra.server import ServerProcess
from bench.infra.util import latency_summary, proc_cpu_seconds, self_cpu_seconds

Snapshot = dict[tuple[str, tuple[tuple[str, str], ...]], float]


async def scrape(health_url: str) -> Snapshot:
    async with (
        aiohttp.ClientSession(trust_env=False, timeout=aiohttp.ClientTimeout(total=10)) as session,
        session.get(health_url + "/metrics") as resp,
    ):
        text = await resp.text()
    out: Snapshot = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = float(sample.value)
    return out


def merge(snapshots: Sequence[Snapshot]) -> Snapshot:
    """Sum of several servers' snapshots (the replicas' counters together)."""
    out: Snapshot = {}
    for snap in snapshots:
        for key, value in snap.items():
            out[key] = out.get(key, 0.0) + value
    return out


def delta(before: Snapshot, after: Snapshot, name: str, **labels: str) -> float:
    """Change of the samples named ``name`` whose labels include ``labels``."""
    total = 0.0
    for (sample, labs), value in after.items():
        if sample != name:
            continue
        lab = dict(labs)
        if all(lab.get(k) == v for k, v in labels.items()):
            total += value - before.get((sample, labs), 0.0)
    return total


def registry_requests(before: Snapshot, after: Snapshot) -> dict[str, float]:
    """Delta of ``referee_registry_requests_total`` by method (and ``total``), plus ``status:<code>``."""
    out: dict[str, float] = {"total": 0.0}
    for (name, labels), value in after.items():
        if name != "referee_registry_requests_total":
            continue
        change = value - before.get((name, labels), 0.0)
        if not change:
            continue
        lab = dict(labels)
        out[lab["method"]] = out.get(lab["method"], 0.0) + change
        out[f"status:{lab['status']}"] = out.get(f"status:{lab['status']}", 0.0) + change
        out["total"] += change
    return out


def cache_events(before: Snapshot, after: Snapshot, cache: str) -> dict[str, float]:
    return {
        "hit": delta(before, after, "referee_cache_events_total", cache=cache, result="hit"),
        "miss": delta(before, after, "referee_cache_events_total", cache=cache, result="miss"),
    }


class ClientStalls:
    """How long the bench's own process stood still while it measured: the worst event-loop lag (a 10 ms timer
    firing late) and the longest garbage collection. A client latency includes these; Gatekeeper's Go client does
    not pay Python's, so the deadline rows print them beside a late answer."""

    INTERVAL = 0.01

    def __init__(self) -> None:
        self.loop_lag = 0.0
        self.gc_pause = 0.0
        self._gc_started: float | None = None
        self._task: asyncio.Task[None] | None = None

    def _on_gc(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._gc_started = time.perf_counter()
        elif self._gc_started is not None:
            self.gc_pause = max(self.gc_pause, time.perf_counter() - self._gc_started)
            self._gc_started = None

    async def _sample(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            before = loop.time()
            await asyncio.sleep(self.INTERVAL)
            self.loop_lag = max(self.loop_lag, loop.time() - before - self.INTERVAL)

    def start(self) -> None:
        if self._task is not None:
            raise RuntimeError("ClientStalls already started")
        gc.callbacks.append(self._on_gc)
        self._task = asyncio.ensure_future(self._sample())

    async def stop(self) -> None:
        if self._on_gc in gc.callbacks:
            gc.callbacks.remove(self._on_gc)
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None


@dataclass
class Phase:
    """What one phase saw: keys answered, wall and CPU time, per-request latencies and metric deltas."""

    name: str = ""
    deadline: float | None = None  # the Provider timeout the client would enforce
    keys: int = 0
    requests: int = 0
    seconds: float = 0.0
    server_cpu: float = 0.0
    client_cpu: float = 0.0
    registry_cpu: float = 0.0
    client_stalls: ClientStalls = field(default_factory=ClientStalls, repr=False)
    latencies: list[float] = field(default_factory=list)
    registry: dict[str, float] = field(default_factory=dict)
    verdict_cache: dict[str, float] = field(default_factory=dict)
    tag_cache: dict[str, float] = field(default_factory=dict)
    before: Snapshot = field(default_factory=dict, repr=False)
    after: Snapshot = field(default_factory=dict, repr=False)

    @property
    def over_deadline(self) -> int:
        if self.deadline is None:
            return 0
        return sum(1 for x in self.latencies if x > self.deadline)

    @property
    def max_latency(self) -> float:
        return max(self.latencies, default=0.0)

    def summary(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "keys": self.keys,
            "requests": self.requests,
            "seconds": round(self.seconds, 3),
            "keysPerSecond": round(self.keys / self.seconds, 1) if self.seconds else None,
            "serverCpuSeconds": round(self.server_cpu, 3),
            "serverCpuUtilisation": round(self.server_cpu / self.seconds, 3) if self.seconds else None,
            "keysPerServerCpuSecond": round(self.keys / self.server_cpu, 1) if self.server_cpu else None,
            "clientCpuSeconds": round(self.client_cpu, 3),
            "registryCpuSeconds": round(self.registry_cpu, 3),
            "clientLoopLagMaxMs": round(self.client_stalls.loop_lag * 1000, 1),
            "clientGcPauseMaxMs": round(self.client_stalls.gc_pause * 1000, 1),
            "registryRequests": {k: int(v) for k, v in self.registry.items()},
            "verdictCache": {k: int(v) for k, v in self.verdict_cache.items()},
            "tagCache": {k: int(v) for k, v in self.tag_cache.items()},
        }
        if self.latencies:
            out["latencyMs"] = latency_summary(self.latencies)
        if self.deadline is not None:
            out["deadlineSeconds"] = self.deadline
            out["answersAfterDeadline"] = self.over_deadline
        return out


class Measure:
    """``async with Measure(servers, registry_pid, phase)``: metrics, server/registry/client CPU before and after."""

    def __init__(self, servers: Sequence[ServerProcess], registry_pid: int | None, phase: Phase) -> None:
        self.servers = list(servers)
        self.registry_pid = registry_pid
        self.phase = phase

    def _server_cpu(self) -> float:
        return sum(s.cpu_seconds() for s in self.servers)

    def _registry_cpu(self) -> float:
        return proc_cpu_seconds(self.registry_pid) if self.registry_pid else 0.0

    async def snapshot(self) -> Snapshot:
        return merge([await scrape(s.health_url) for s in self.servers if s.alive()])

    async def __aenter__(self) -> Phase:
        self.phase.before = await self.snapshot()
        self._server_cpu0 = self._server_cpu()
        self._client_cpu0 = self_cpu_seconds()
        self._reg_cpu0 = self._registry_cpu()
        self._started = time.perf_counter()
        self.phase.client_stalls.start()
        return self.phase

    async def __aexit__(self, exc_type: object, *exc: object) -> None:
        await self.phase.client_stalls.stop()
        if exc_type is not None:
            return
        p = self.phase
        p.seconds = time.perf_counter() - self._started
        p.server_cpu = self._server_cpu() - self._server_cpu0
        p.client_cpu = self_cpu_seconds() - self._client_cpu0
        p.registry_cpu = self._registry_cpu() - self._reg_cpu0
        p.requests = p.requests or len(p.latencies)
        p.after = await self.snapshot()
        p.registry = registry_requests(p.before, p.after)
        p.verdict_cache = cache_events(p.before, p.after, "verdict")
        p.tag_cache = cache_events(p.before, p.after, "tag")
