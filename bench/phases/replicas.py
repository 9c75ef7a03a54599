"""replicas (#12): ``--replicas`` ``referee serve`` processes sharing one real ``redis-server`` (``cache.shared``),
the client picking a replica at random per request, as kube-proxy spreads a Service's connections.

1. The burst (as the burst phase sends it) against 1 replica, then against N fresh replicas (redis emptied before
   each): registry requests per distinct image must be the same (± 5 %), and the burst's own targets hold.
2. While warm traffic for the burst's images goes to the live replicas, one replica is killed (SIGKILL) and started
   again; its first request for an image the others verified must make 0 registry requests (it comes from the
   shared cache). ``cache.tagTtl`` is 60 s here so that the images are still known when the replica is back.
3. The 429 storm (Retry-After 10, as the storm phase runs it) against N fresh replicas behind the throttling proxy.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Callable
from typing import Any

from bench.infra.client import Client
from bench.infra.context import Context
from bench.infra.metrics import delta, scrape
from bench.infra.procs import RedisServer, ThrottleProxy
from bench.infra.server import ServerProcess
from bench.infra.util import BenchError, free_ports, log
from bench.phases import burst, storm

NAME = "replicas"
TARGET_SPREAD = 0.05
REPLICA_TAG_TTL = "60s"


class Cluster:
    """Redis and the replicas of one sub-phase."""

    def __init__(self, ctx: Context, redis: RedisServer, key_file: str) -> None:
        self.ctx = ctx
        self.redis = redis
        self.key_file = key_file

    def shared(self) -> dict[str, Any]:
        return {"url": self.redis.url, "hmacKeyFile": self.key_file}

    async def flush(self) -> None:
        proc = await asyncio.create_subprocess_exec(
            "redis-cli", "-p", str(self.redis.port), "FLUSHALL", stdout=asyncio.subprocess.DEVNULL
        )
        if await proc.wait() != 0:
            raise BenchError("redis-cli FLUSHALL failed")

    async def start(
        self, name: str, count: int, config: Callable[[int, int], dict[str, Any]] | None = None, **kwargs: Any
    ) -> list[ServerProcess]:
        """Empty redis, then start ``count`` replicas (``config(port, health_port)``, or :meth:`Context.config`)."""
        await self.flush()
        servers = []
        for i in range(count):
            port, health = free_ports(2)
            if config is not None:
                cfg = config(port, health)
            else:
                cfg = self.ctx.config(port=port, health_port=health, **kwargs)
            servers.append(self.ctx.start_server(f"{name}-{i}", cfg, log_level="info"))
        return list(await asyncio.gather(*servers))

    def stop(self, servers: list[ServerProcess]) -> None:
        for server in servers:
            self.ctx.stop_server(server)


async def restart_check(ctx: Context, servers: list[ServerProcess], keys: list[str]) -> dict[str, Any]:
    """Kill replica 0 under warm traffic to the others, start it again, ask it for a known image."""
    victim, others = servers[0], servers[1:]
    failures: list[str] = []
    answers = 0
    stop = asyncio.Event()

    async def traffic(client: Client) -> None:
        nonlocal answers
        position = 0
        while not stop.is_set():
            chunk = [keys[(position + j) % len(keys)] for j in range(ctx.settings.batch)]
            position += ctx.settings.batch
            reply = await client.verify(chunk, fresh=True)
            answers += len(chunk)
            failures.extend(k for k in chunk if k not in reply.answered)
            await asyncio.sleep(0.05)

    async with Client([s.url for s in others or servers], ctx.pki.client_context(), 1) as client:
        task = asyncio.ensure_future(traffic(client))
        await asyncio.sleep(1.0)
        log(f"replicas: killing replica pid {victim.pid} (SIGKILL) under traffic, then starting it again")
        victim.kill()
        await asyncio.sleep(1.0)
        started = time.monotonic()
        victim.start()
        await victim.wait_ready()
        ready_s = time.monotonic() - started
        before = await scrape(victim.health_url)
        async with Client([victim.url], ctx.pki.client_context(), 1) as direct:
            key = keys[len(keys) // 2]
            reply = await direct.verify([key], fresh=True)
        after = await scrape(victim.health_url)
        await asyncio.sleep(1.0)
        stop.set()
        await task
    return {
        "restartReadySeconds": round(ready_s, 3),
        "firstKey": key,
        "firstAnswerAllowed": key in reply.allowed,
        "firstAnswerCached": reply.values.get(key, {}).get("allowed") is True,
        "registryRequestsForFirstKnownImage": int(delta(before, after, "referee_registry_requests_total")),
        "sharedHits": int(delta(before, after, "referee_cache_events_total", tier="shared", result="hit")),
        "trafficKeyAnswers": answers,
        "trafficKeysUnanswered": len(failures),
    }


async def run(ctx: Context) -> None:
    s = ctx.settings
    n = s.replicas
    redis = RedisServer(free_ports(1)[0], ctx.directory)
    ctx.children.append(redis)
    redis.start()
    key_file = ctx.directory / "shared-hmac.key"
    key_file.write_text(secrets.token_hex(32))
    cluster = Cluster(ctx, redis, str(key_file))
    log(f"replicas: redis-server pid {redis.pid} on port {redis.port}")
    keys = ctx.keys("burst")
    bad = ctx.content["burst"].bad_keys(ctx.host)
    cache = {"shared": cluster.shared(), "tagTtl": REPLICA_TAG_TTL}
    r = ctx.report
    results: dict[str, Any] = {"replicas": n}

    one = await cluster.start("referee-r1", 1, provider_timeout="3s", cache=cache)
    try:
        results["burst1"] = await burst.run_burst(ctx, one, keys, bad, "burst, 1 replica + redis")
    finally:
        cluster.stop(one)
    many = await cluster.start(f"referee-r{n}", n, provider_timeout="3s", cache=cache)
    try:
        results["burstN"] = await burst.run_burst(ctx, many, keys, bad, f"burst, {n} replicas + redis")
        results["restart"] = await restart_check(ctx, many, [k for k in keys if k not in bad])
    finally:
        cluster.stop(many)

    proxy = ThrottleProxy(ctx.host, ctx.directory / "throttle-replicas.log")
    ctx.children.append(proxy)
    proxy.start()
    try:
        storm_servers = await cluster.start(
            f"referee-storm-r{n}",
            n,
            config=lambda port, health: _storm_config(ctx, proxy, cluster, port, health),
        )
        try:
            results["storm"] = await storm.run_storm(
                ctx, storm_servers, proxy, 10, f"storm Retry-After 10, {n} replicas"
            )
        finally:
            cluster.stop(storm_servers)
    finally:
        proxy.stop()
        ctx.children.remove(proxy)
    redis.stop()
    ctx.children.remove(redis)
    r.results["replicas"] = results
    _report(ctx, results)


def _storm_config(ctx: Context, proxy: ThrottleProxy, cluster: Cluster, port: int, health: int) -> dict[str, Any]:
    config = storm.storm_config(ctx, proxy, port=port, health_port=health)
    config["cache"]["shared"] = cluster.shared()
    return config


def _report(ctx: Context, results: dict[str, Any]) -> None:
    r = ctx.report
    n = results["replicas"]
    one, many, restart = results["burst1"], results["burstN"], results["restart"]
    per1, perN = one["registryRequestsPerImage"], many["registryRequestsPerImage"]
    r.section(
        f"replicas: {n} x referee serve + one redis-server (cache.shared), a replica picked at random per request"
    )
    spread = abs(perN - per1) / per1 if per1 else float("inf")
    r.row(
        f"registry requests per image, burst: 1 replica / {n} replicas",
        f"{per1:.3f} / {perN:.3f} ({spread:+.1%})",
        f"equal ± {TARGET_SPREAD:.0%}",
        spread <= TARGET_SPREAD,
    )
    burst.report_rows(ctx, many, f"{n} replicas: ", f"burst on {n} replicas")
    r.section(f"replica killed (SIGKILL) and restarted under traffic, {n} replicas")
    r.row(
        "registry requests for its first known image",
        f"{restart['registryRequestsForFirstKnownImage']} (shared-cache hits {restart['sharedHits']}, allowed "
        f"{restart['firstAnswerAllowed']}; ready {restart['restartReadySeconds']:.2f} s after start)",
        "0",
        restart["registryRequestsForFirstKnownImage"] == 0 and restart["firstAnswerAllowed"],
    )
    r.row(
        "keys unanswered by the other replicas meanwhile",
        f"{restart['trafficKeysUnanswered']} of {restart['trafficKeyAnswers']:,}",
        "0",
        restart["trafficKeysUnanswered"] == 0,
    )
    r.section(f"429 storm, Retry-After 10, {n} replicas")
    prefix = f"{n} replicas: "
    storm.report_rows(ctx, results["storm"], prefix, targets=True, recovery_target=storm.TARGET_RECOVERY_S_12)
    r.figure("replicas", n)
    r.figure("registry_requests_per_image_1_replica", per1)
    r.figure("registry_requests_per_image_3_replicas" if n == 3 else f"registry_requests_per_image_{n}_replicas", perN)
    r.figure("restart_registry_requests_warm", restart["registryRequestsForFirstKnownImage"])
    for key, value in (
        ("first_round_verdicts", many["firstRoundVerdicts"]),
        ("rounds_to_all_verdicts", many["roundsToAllVerdicts"]),
        ("total_s", many["totalSeconds"]),
        ("wrongly_allowed", many["wronglyAllowed"]),
    ):
        r.figure(f"replicas_burst_{key}", value)
    st = results["storm"]
    for key, value in (
        ("registry_requests_per_image", st["registryRequestsPerImage"]),
        ("warm_keys_failed", st["warmKeysFailed"]),
        ("recovery_s", st["recoverySeconds"]),
        ("peak_rss_mib", st["peakRssMiB"]),
        ("wrongly_allowed", st["wronglyAllowed"]),
    ):
        r.figure(f"replicas_storm_{key}", value)
