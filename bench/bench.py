"""Referee benchmark: the real ``referee serve`` process against a real ``docker-registry``, driven over mTLS.

Run from the repository root::

    .venv/bin/python -m bench.bench            # defaults: 200 images, 10,000 verdicts for the memory figure
    .venv/bin/python -m bench.bench --quick    # smoke run: 50 images, 1,000 verdicts, short phases
    .venv/bin/python -m bench.bench --json results.json

Everything talks to 127.0.0.1 only. Every phase is bounded by a request count or a duration, and the server
and the registry are stopped in a ``finally`` block. bench/README.md explains each number.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import math
import os
import platform
import resource
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from prometheus_client.parser import text_string_to_metric_families

from tests.support.content import (
    COSIGN_CONFIG_MEDIA_TYPE,
    COSIGN_SIGNATURE_ANNOTATION,
    COSIGN_SIMPLESIGNING_MEDIA_TYPE,
    OCI_MANIFEST,
    cosign_payload,
    cosign_sign_legacy,
    cosign_sign_payload,
    cosign_signature_tag,
    descriptor,
    make_image,
    push_blob,
    push_image,
    push_manifest,
    sha256_digest,
)
from tests.support.referee import Pki, provider_request, server_section, write_config
from tests.support.registry import RegistryProcess

REPO_ROOT = Path(__file__).resolve().parent.parent
APP_REPO = "bench/app"
MEM_REPO = "bench/mem"
LEGACY_REPO = "bench/legacy"
VERIFIER = "cosign-bench"
# The synthetic artifact type Referee gives cosign's legacy ``sha256-<hex>.sig`` tags (provider/mediatypes.py).
COSIGN_LEGACY_SIG_TYPE = "application/vnd.dev.referee.cosign-legacy.sig"
# "Warm" means the tag resolution and the verdict are both cached: the bench keeps tags for the whole run.
# With the default cache.tagTtl (10 s) each tag costs one HEAD per 10 s, shared by all requests for it.
BENCH_TAG_TTL = 300.0
CLIENT_TIMEOUT = 15.0

# Targets (2-core machine).
TARGET_WARM_P99_MS = 5.0
TARGET_KEYS_PER_CORE_B50 = 2000.0
TARGET_COLD_REQS_LEGACY = 3.0
TARGET_RSS_MIB = 200.0


# --------------------------------------------------------------------------------------------------------
# small helpers
# --------------------------------------------------------------------------------------------------------


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", flush=True)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def percentile(values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(1, math.ceil(p / 100.0 * len(ordered)))
    return ordered[rank - 1]


_CLK_TCK = os.sysconf("SC_CLK_TCK")


def proc_cpu_seconds(pid: int) -> float:
    """utime + stime of ``pid`` (all its threads) from /proc/<pid>/stat."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / _CLK_TCK  # fields 14 and 15 of proc(5)


def proc_memory_mib(pid: int) -> dict[str, float]:
    """VmRSS and VmHWM (peak RSS) of ``pid`` in MiB."""
    out: dict[str, float] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, rest = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            out[name] = int(rest.split()[0]) / 1024.0
    return out


def self_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


# --------------------------------------------------------------------------------------------------------
# registry content
# --------------------------------------------------------------------------------------------------------


@dataclass
class Content:
    app_tags: list[str]
    app_digests: list[str]
    mem_tags: list[str]
    legacy_tags: list[str]
    key_file: Path
    seconds: float
    http_requests: int


def _push_app_image(url: str, key: ec.EllipticCurvePrivateKey, index: int) -> str:
    image = make_image(f"{APP_REPO}/{index}")
    digest = push_image(url, APP_REPO, f"v{index}", image)
    cosign_sign_legacy(url, APP_REPO, digest, key)
    return str(digest)


@dataclass
class _CheapSet:
    """Distinct manifests over one shared config blob and one shared layer blob, each with a legacy
    cosign signature whose ``.sig`` manifests share one config blob too."""

    url: str
    host: str
    repo: str
    key: ec.EllipticCurvePrivateKey
    base: dict[str, Any]
    sig_config_desc: dict[str, Any] = field(default_factory=dict)

    def prepare(self) -> None:
        push_blob(self.url, self.repo, self.base["config"])
        for layer in self.base["layers"]:
            push_blob(self.url, self.repo, layer)
        epoch = "0001-01-01T00:00:00Z"
        sig_config = json.dumps(
            {
                "architecture": "",
                "created": epoch,
                "history": [{"created": epoch}],
                "os": "",
                "rootfs": {"type": "layers", "diff_ids": []},
                "config": {},
            },
            separators=(",", ":"),
        ).encode()
        push_blob(self.url, self.repo, sig_config)
        self.sig_config_desc = {
            "mediaType": COSIGN_CONFIG_MEDIA_TYPE,
            "size": len(sig_config),
            "digest": sha256_digest(sig_config),
        }

    def push(self, tag: str) -> str:
        manifest = json.dumps(
            {
                "schemaVersion": 2,
                "mediaType": OCI_MANIFEST,
                "config": self.base["config_descriptor"],
                "layers": self.base["layer_descriptors"],
                "annotations": {"org.referee.bench.tag": f"{self.repo}:{tag}"},
            },
            separators=(",", ":"),
        ).encode()
        digest = str(push_manifest(self.url, self.repo, tag, manifest, OCI_MANIFEST))
        payload = cosign_payload(f"{self.host}/{self.repo}", digest)
        signature = cosign_sign_payload(self.key, payload)
        push_blob(self.url, self.repo, payload)
        layer = descriptor(COSIGN_SIMPLESIGNING_MEDIA_TYPE, payload, {COSIGN_SIGNATURE_ANNOTATION: signature})
        sig_manifest = json.dumps(
            {"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": self.sig_config_desc, "layers": [layer]},
            separators=(",", ":"),
        ).encode()
        push_manifest(self.url, self.repo, cosign_signature_tag(digest), sig_manifest, OCI_MANIFEST)
        return digest


def push_content(
    registry: RegistryProcess, directory: Path, images: int, mem_verdicts: int, legacy: int, threads: int
) -> Content:
    started = time.perf_counter()
    key = ec.generate_private_key(ec.SECP256R1())
    key_file = directory / "cosign.pub"
    key_file.write_bytes(
        key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    url = registry.url
    with ThreadPoolExecutor(max_workers=threads) as pool:
        app_digests = list(pool.map(lambda i: _push_app_image(url, key, i), range(images)))
        log(f"pushed {images} signed images to {APP_REPO} ({time.perf_counter() - started:.1f}s)")
        mem = _CheapSet(url, registry.host, MEM_REPO, key, make_image(f"{MEM_REPO}/base"))
        mem.prepare()
        mem_tags = [f"m{i}" for i in range(mem_verdicts)]
        list(pool.map(mem.push, mem_tags))
        log(f"pushed {mem_verdicts} signed manifests to {MEM_REPO} ({time.perf_counter() - started:.1f}s)")
        lega = _CheapSet(url, registry.host, LEGACY_REPO, key, make_image(f"{LEGACY_REPO}/base"))
        lega.prepare()
        legacy_tags = [f"l{i}" for i in range(legacy)]
        list(pool.map(lega.push, legacy_tags))
    # push_image: 2 blobs (POST+PUT each) + manifest; cosign_sign_legacy: 2 blobs + manifest -> 11 per image.
    # cheap set: manifest + payload blob (POST+PUT) + .sig manifest -> 4 per tag, plus 3 blobs once per repo.
    http_requests = images * 11 + (mem_verdicts + legacy) * 4 + 2 * 6
    return Content(
        app_tags=[f"v{i}" for i in range(images)],
        app_digests=app_digests,
        mem_tags=mem_tags,
        legacy_tags=legacy_tags,
        key_file=key_file,
        seconds=time.perf_counter() - started,
        http_requests=http_requests,
    )


# --------------------------------------------------------------------------------------------------------
# the server process
# --------------------------------------------------------------------------------------------------------


def referee_config(
    pki: Pki, registry: RegistryProcess, key_file: Path, port: int, health_port: int, *, legacy_only: bool
) -> dict[str, Any]:
    verifier: dict[str, Any] = {"name": VERIFIER, "type": "cosign", "keys": [str(key_file)]}
    if legacy_only:
        verifier["artifactTypes"] = [COSIGN_LEGACY_SIG_TYPE]
    server = server_section(pki, port=port, healthPort=health_port, providerTimeout="3s")
    server.pop("reloadInterval", None)  # the default (5s), as deployed; the harness's 100ms is for tests
    return {
        "registries": {"allow": ["127.0.0.1:*"], "hosts": [{"host": registry.host, "plainHttp": True}]},
        "verifiers": [verifier],
        "policy": {"type": "required-verifiers", "required": [VERIFIER]},
        "server": server,
        "cache": {"verdictMaxEntries": 20000, "verdictTtl": "1h", "tagTtl": f"{BENCH_TAG_TTL:g}s"},
    }


class ServerProcess:
    """``referee --log-level warning serve --config FILE`` as a child process."""

    def __init__(self, config_path: Path, port: int, health_port: int, log_path: Path) -> None:
        self.config_path = config_path
        self.port = port
        self.health_port = health_port
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None
        self._log: Any = None

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def command(self) -> list[str]:
        script = Path(sys.prefix) / "bin" / "referee"
        # --log-level belongs to the top-level parser (provider/cli.py), so it goes before ``serve``.
        args = ["--log-level", "warning", "serve", "--config", str(self.config_path)]
        if script.is_file():
            return [str(script), *args]
        return [sys.executable, "-m", "provider.cli", *args]

    def start(self) -> None:
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
        self.proc = subprocess.Popen(
            self.command(),
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            cwd=str(REPO_ROOT),
            env=env,
        )

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> int | None:
        proc, self.proc = self.proc, None
        code = None
        if proc is not None:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.send_signal(signal.SIGTERM)
                try:
                    code = proc.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    code = proc.wait(timeout=5)
            else:
                code = proc.returncode
        if self._log is not None:
            self._log.close()
            self._log = None
        return code


# --------------------------------------------------------------------------------------------------------
# client side
# --------------------------------------------------------------------------------------------------------


class BenchError(RuntimeError):
    pass


@dataclass
class Reply:
    latency: float
    allowed: int
    items: int
    errors: list[str]
    system_error: str
    unanswered: list[str]


class Client:
    """One aiohttp session (and so one keep-alive TLS 1.3 connection) per worker."""

    def __init__(self, base_url: str, health_url: str, ssl_ctx: Any, workers: int, registry_pid: int | None) -> None:
        self.base_url = base_url
        self.registry_pid = registry_pid  # to account the registry's CPU per phase
        self.health_url = health_url
        self.ssl_ctx = ssl_ctx
        self.sessions: list[aiohttp.ClientSession] = []
        self.health: aiohttp.ClientSession | None = None
        self.workers = workers
        self.requests = 0

    async def __aenter__(self) -> Client:
        timeout = aiohttp.ClientTimeout(total=CLIENT_TIMEOUT)
        for _ in range(self.workers):
            connector = aiohttp.TCPConnector(limit=1, ssl=self.ssl_ctx, keepalive_timeout=300)
            self.sessions.append(aiohttp.ClientSession(connector=connector, trust_env=False, timeout=timeout))
        self.health = aiohttp.ClientSession(trust_env=False, timeout=timeout)
        return self

    async def __aexit__(self, *exc: object) -> None:
        for s in self.sessions:
            await s.close()
        if self.health is not None:
            await self.health.close()

    async def verify(self, worker: int, keys: list[str]) -> Reply:
        body = json.dumps(provider_request(keys)).encode()
        session = self.sessions[worker]
        started = time.perf_counter()
        async with session.post(
            self.base_url + "/verify", data=body, headers={"Content-Type": "application/json"}
        ) as resp:
            raw = await resp.read()
            latency = time.perf_counter() - started
            status = resp.status
        self.requests += 1
        if status != 200:
            raise BenchError(f"POST /verify -> HTTP {status}: {raw[:300]!r}")
        doc = json.loads(raw)["response"]
        items = doc.get("items", [])
        answered = {item["key"] for item in items}
        allowed = sum(1 for item in items if "value" in item and item["value"].get("allowed") is True)
        errors = [
            f"{item['key']}: {item.get('error') or item['value'].get('reason')}"
            for item in items
            if "value" not in item or item["value"].get("allowed") is not True
        ]
        return Reply(
            latency=latency,
            allowed=allowed,
            items=len(items),
            errors=errors,
            system_error=doc.get("systemError", ""),
            unanswered=[k for k in dict.fromkeys(keys) if k not in answered],
        )

    async def connect_all(self) -> None:
        """Open every worker's TLS connection with an empty ProviderRequest (no verification work)."""
        await asyncio.gather(*(self.verify(w, []) for w in range(self.workers)))

    async def metrics(self) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        assert self.health is not None
        async with self.health.get(self.health_url + "/metrics") as resp:
            text = await resp.text()
        out: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                out[(sample.name, tuple(sorted(sample.labels.items())))] = float(sample.value)
        return out

    async def readyz(self) -> tuple[int, dict[str, Any]]:
        assert self.health is not None
        async with self.health.get(self.health_url + "/readyz") as resp:
            return resp.status, await resp.json()


Snapshot = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def registry_requests(before: Snapshot, after: Snapshot) -> dict[str, float]:
    """Delta of ``referee_registry_requests_total`` by method (and ``total``), plus ``status:<code>``."""
    out: dict[str, float] = {"total": 0.0}
    for (name, labels), value in after.items():
        if name != "referee_registry_requests_total":
            continue
        delta = value - before.get((name, labels), 0.0)
        if not delta:
            continue
        lab = dict(labels)
        out[lab["method"]] = out.get(lab["method"], 0.0) + delta
        out[f"status:{lab['status']}"] = out.get(f"status:{lab['status']}", 0.0) + delta
        out["total"] += delta
    return out


def cache_events(before: Snapshot, after: Snapshot, cache: str) -> dict[str, float]:
    out = {"hit": 0.0, "miss": 0.0}
    for (name, labels), value in after.items():
        lab = dict(labels)
        if name == "referee_cache_events_total" and lab.get("cache") == cache:
            out[lab["result"]] += value - before.get((name, labels), 0.0)
    return out


def check(reply: Reply, expected_keys: int, what: str) -> None:
    if reply.system_error or reply.errors or reply.allowed != expected_keys:
        raise BenchError(
            f"{what}: expected {expected_keys} allowed, got {reply.allowed}; "
            f"errors={reply.errors[:3]} systemError={reply.system_error[:300]!r}"
        )


# --------------------------------------------------------------------------------------------------------
# phases
# --------------------------------------------------------------------------------------------------------


@dataclass
class Phase:
    keys: int = 0
    requests: int = 0
    seconds: float = 0.0
    server_cpu: float = 0.0
    client_cpu: float = 0.0
    registry_cpu: float = 0.0
    latencies: list[float] = field(default_factory=list)
    registry: dict[str, float] = field(default_factory=dict)
    verdict_cache: dict[str, float] = field(default_factory=dict)
    tag_cache: dict[str, float] = field(default_factory=dict)

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
            "registryRequests": {k: int(v) for k, v in self.registry.items()},
            "verdictCache": {k: int(v) for k, v in self.verdict_cache.items()},
            "tagCache": {k: int(v) for k, v in self.tag_cache.items()},
        }
        if self.latencies:
            out["latencyMs"] = {
                "p50": round(percentile(self.latencies, 50) * 1000, 3),
                "p90": round(percentile(self.latencies, 90) * 1000, 3),
                "p99": round(percentile(self.latencies, 99) * 1000, 3),
                "max": round(max(self.latencies) * 1000, 3),
                "mean": round(sum(self.latencies) / len(self.latencies) * 1000, 3),
                "n": len(self.latencies),
            }
        return out


class Measure:
    """Context for one phase: metrics, server CPU and client CPU before/after."""

    def __init__(self, client: Client, server: ServerProcess, phase: Phase) -> None:
        self.client = client
        self.server = server
        self.phase = phase

    def _registry_cpu(self) -> float:
        pid = self.client.registry_pid
        return proc_cpu_seconds(pid) if pid else 0.0

    async def __aenter__(self) -> Phase:
        self._metrics = await self.client.metrics()
        self._requests = self.client.requests
        self._server_cpu = proc_cpu_seconds(self.server.pid)
        self._client_cpu = self_cpu_seconds()
        self._reg_cpu = self._registry_cpu()
        self._started = time.perf_counter()
        return self.phase

    async def __aexit__(self, exc_type: object, *exc: object) -> None:
        if exc_type is not None:
            return
        p = self.phase
        p.seconds = time.perf_counter() - self._started
        p.server_cpu = proc_cpu_seconds(self.server.pid) - self._server_cpu
        p.client_cpu = self_cpu_seconds() - self._client_cpu
        p.registry_cpu = self._registry_cpu() - self._reg_cpu
        p.requests = self.client.requests - self._requests
        after = await self.client.metrics()
        p.registry = registry_requests(self._metrics, after)
        p.verdict_cache = cache_events(self._metrics, after, "verdict")
        p.tag_cache = cache_events(self._metrics, after, "tag")


async def sequential(client: Client, server: ServerProcess, keys: Sequence[str], what: str) -> Phase:
    """One 1-key request at a time on one connection; latency of each."""
    async with Measure(client, server, Phase()) as phase:
        for key in keys:
            reply = await client.verify(0, [key])
            check(reply, 1, f"{what} {key}")
            phase.latencies.append(reply.latency)
            phase.keys += 1
    return phase


async def throughput(
    client: Client, server: ServerProcess, keys: Sequence[str], batch: int, duration: float, what: str
) -> Phase:
    """``client.workers`` workers send ``batch`` distinct keys per request, back to back, for ``duration``."""
    if batch > len(keys):
        raise BenchError(f"{what}: batch {batch} needs at least {batch} distinct keys, have {len(keys)}")
    async with Measure(client, server, Phase()) as phase:
        stop_at = time.perf_counter() + duration

        async def worker(w: int) -> None:
            offset = (w * len(keys)) // client.workers
            while time.perf_counter() < stop_at:
                chunk = [keys[(offset + j) % len(keys)] for j in range(batch)]
                offset = (offset + batch) % len(keys)
                reply = await client.verify(w, chunk)
                check(reply, batch, what)
                phase.latencies.append(reply.latency)
                phase.keys += batch

        await asyncio.gather(*(worker(w) for w in range(client.workers)))
    return phase


async def _drain(client: Client, phase: Phase, queue: list[list[str]], what: str) -> list[str]:
    """Send every chunk of ``queue`` once over all workers; return the keys left unanswered."""
    unanswered: list[str] = []
    position = 0

    async def worker(w: int) -> None:
        nonlocal position
        while position < len(queue):
            chunk = queue[position]
            position += 1
            reply = await client.verify(w, chunk)
            if reply.errors:
                raise BenchError(f"{what}: {reply.errors[:3]}")
            phase.latencies.append(reply.latency)
            phase.keys += reply.allowed
            unanswered.extend(reply.unanswered)

    await asyncio.gather(*(worker(w) for w in range(client.workers)))
    return unanswered


async def verify_all(client: Client, server: ServerProcess, keys: Sequence[str], batch: int, what: str) -> Phase:
    """Verify every key once, ``batch`` keys per request over all workers; keys the server names in
    ``systemError`` (deadline) are sent again, at most 3 rounds."""
    async with Measure(client, server, Phase()) as phase:
        pending = list(keys)
        for _ in range(3):
            retry = await _drain(client, phase, [pending[i : i + batch] for i in range(0, len(pending), batch)], what)
            if not retry:
                break
            log(f"{what}: {len(retry)} keys unanswered within the deadline, sending them again")
            pending = retry
        else:
            raise BenchError(f"{what}: {len(pending)} keys still unanswered after 3 rounds")
    return phase


async def wait_ready(client: Client, server: ServerProcess, timeout: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        if not server.alive():
            raise BenchError(f"referee exited with {server.proc and server.proc.returncode}:\n{server.log_tail()}")
        try:
            status, body = await client.readyz()
            if status == 200:
                return body
            last = body
        except (aiohttp.ClientError, OSError) as exc:
            last = exc
        await asyncio.sleep(0.05)
    raise BenchError(f"referee not ready after {timeout}s ({last}):\n{server.log_tail()}")


async def wait_generation(client: Client, previous: str, timeout: float) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        _, body = await client.readyz()
        if body.get("lastReloadError"):
            raise BenchError(f"config reload rejected: {body['lastReloadError']}")
        if body.get("configGeneration") != previous:
            return str(body["configGeneration"])
        await asyncio.sleep(0.1)
    raise BenchError(f"configuration not reloaded within {timeout}s")


# --------------------------------------------------------------------------------------------------------
# the run
# --------------------------------------------------------------------------------------------------------


@dataclass
class Settings:
    images: int
    memory_verdicts: int
    legacy_images: int
    warm_requests: int
    duration: float
    workers: int
    batch: int
    push_threads: int
    memory_sample: int


async def drive(
    settings: Settings,
    content: Content,
    server: ServerProcess,
    pki: Pki,
    registry: RegistryProcess,
    config_path: Path,
) -> dict[str, Any]:
    s = settings
    host = registry.host
    app_keys = [f"{host}/{APP_REPO}:{t}" for t in content.app_tags]
    mem_keys = [f"{host}/{MEM_REPO}:{t}" for t in content.mem_tags]
    legacy_keys = [f"{host}/{LEGACY_REPO}:{t}" for t in content.legacy_tags]
    results: dict[str, Any] = {}
    async with Client(
        f"https://127.0.0.1:{server.port}",
        f"http://127.0.0.1:{server.health_port}",
        pki.client_context(),
        s.workers,
        registry.pid,
    ) as client:
        started = time.perf_counter()
        ready = await wait_ready(client, server, 30.0)
        log(
            f"referee pid {server.pid} ready in {time.perf_counter() - started:.2f}s (generation "
            f"{ready['configGeneration']})"
        )
        await client.connect_all()
        results["rssStartMiB"] = proc_memory_mib(server.pid)

        log(f"cold: {len(app_keys)} first-time verifications, one 1-key request at a time")
        cold = await sequential(client, server, app_keys, "cold")
        results["cold"] = cold.summary()

        warm_keys = [app_keys[i % len(app_keys)] for i in range(s.warm_requests)]
        log(f"warm: {len(warm_keys)} 1-key requests for cached verdicts, one at a time")
        warm = await sequential(client, server, warm_keys, "warm")
        results["warm"] = warm.summary()

        log(f"throughput: batch 1, {s.workers} workers, {s.duration:.0f}s")
        b1 = await throughput(client, server, app_keys, 1, s.duration, "batch 1")
        results["batch1"] = b1.summary()
        log(f"throughput: batch {s.batch}, {s.workers} workers, {s.duration:.0f}s")
        bn = await throughput(client, server, app_keys, s.batch, s.duration, f"batch {s.batch}")
        results["batchN"] = bn.summary()
        results["rssAfterWarmMiB"] = proc_memory_mib(server.pid)

        log(f"memory: verifying {len(mem_keys)} distinct digests, {s.batch} keys per request")
        mem = await verify_all(client, server, mem_keys, s.batch, "memory")
        results["memoryFill"] = mem.summary()
        await asyncio.sleep(0.5)
        results["rssAfterMemoryMiB"] = proc_memory_mib(server.pid)
        step = max(1, len(mem_keys) // max(1, s.memory_sample))
        sample = mem_keys[::step][: s.memory_sample]
        log(f"memory: second pass over {len(sample)} of them (verdicts must be cache hits)")
        second = await verify_all(client, server, sample, s.batch, "memory second pass")
        results["memorySecondPass"] = second.summary()
        results["rssAfterSecondPassMiB"] = proc_memory_mib(server.pid)
        log(f"warm again, verdict cache full: re-resolve {len(app_keys)} tags, then {len(warm_keys)} requests")
        await verify_all(client, server, app_keys, s.batch, "re-warm")
        loaded = await sequential(client, server, warm_keys, "warm (cache full)")
        results["warmCacheFull"] = loaded.summary()

        log("reloading the configuration with artifactTypes = [cosign legacy .sig] only")
        write_config(
            config_path,
            referee_config(pki, registry, content.key_file, server.port, server.health_port, legacy_only=True),
        )
        generation = await wait_generation(client, ready["configGeneration"], 20.0)
        log(f"generation {generation} in force; cold pass over {len(legacy_keys)} unseen images")
        legacy = await sequential(client, server, legacy_keys, "cold legacy-only")
        results["coldLegacyOnly"] = legacy.summary()

    results["phasesSeconds"] = round(time.perf_counter() - started, 1)
    results["_phases"] = {"cold": cold, "warm": warm, "b1": b1, "bn": bn, "mem": mem, "second": second,
                          "legacy": legacy, "loaded": loaded}  # fmt: skip
    return results


def build_table(settings: Settings, results: dict[str, Any]) -> tuple[list[tuple[str, str, str, str]], bool]:
    ph: dict[str, Phase] = results["_phases"]
    cold, warm, b1, bn = ph["cold"], ph["warm"], ph["b1"], ph["bn"]
    mem, second, legacy = ph["mem"], ph["second"], ph["legacy"]
    rows: list[tuple[str, str, str, str]] = []
    ok = True

    def row(metric: str, value: str, target: str = "-", passed: bool | None = None) -> None:
        nonlocal ok
        verdict = "" if passed is None else ("PASS" if passed else "MISS")
        if passed is False:
            ok = False
        rows.append((metric, value, target, verdict))

    def ms(phase: Phase, p: float) -> float:
        return percentile(phase.latencies, p) * 1000

    def per_core(phase: Phase) -> float:
        return phase.keys / phase.seconds

    row(f"cold 1-key latency p50 (n={len(cold.latencies)})", f"{ms(cold, 50):.2f} ms")
    row(f"cold 1-key latency p99 (n={len(cold.latencies)})", f"{ms(cold, 99):.2f} ms")
    row(f"warm 1-key latency p50 (n={len(warm.latencies)})", f"{ms(warm, 50):.2f} ms")
    loaded = ph["loaded"]
    warm_p99 = ms(warm, 99)
    row(
        f"warm 1-key latency p99 (n={len(warm.latencies)})",
        f"{warm_p99:.2f} ms",
        f"< {TARGET_WARM_P99_MS:g} ms",
        warm_p99 < TARGET_WARM_P99_MS,
    )
    loaded_p99 = ms(loaded, 99)
    row(
        f"warm 1-key p50 / p99, {int(cold.keys + mem.verdict_cache.get('miss', 0)):,} verdicts cached",
        f"{ms(loaded, 50):.2f} / {loaded_p99:.2f} ms",
        f"p99 < {TARGET_WARM_P99_MS:g} ms",
        loaded_p99 < TARGET_WARM_P99_MS,
    )
    for label, phase, target in (("1", b1, None), (str(settings.batch), bn, TARGET_KEYS_PER_CORE_B50)):
        rate = per_core(phase)
        row(
            f"warm keys/s, batch {label}, {settings.workers} workers (= per core)",
            f"{rate:,.0f}",
            f">= {target:,.0f}" if target else "-",
            None if target is None else rate >= target,
        )
        row(
            f"  server CPU, batch {label}",
            f"{phase.server_cpu:.2f} s in {phase.seconds:.1f} s ({phase.server_cpu / phase.seconds:.0%} of a core)",
        )
        row(f"  keys per server CPU-second, batch {label}", f"{phase.keys / phase.server_cpu:,.0f}")
        row(
            f"  request latency p50 / p99, batch {label}",
            f"{ms(phase, 50):.2f} / {ms(phase, 99):.2f} ms",
        )
    n = cold.keys
    cold_per = cold.registry.get("total", 0) / n
    row(
        "cold registry req/verification, default types",
        f"{cold_per:.3f} (HEAD {cold.registry.get('HEAD', 0) / n:.2f}, GET {cold.registry.get('GET', 0) / n:.3f})",
        "= 4 (+1 API probe once)",
        cold.registry.get("total", 0) <= 4 * n + 1,
    )
    nl = legacy.keys
    legacy_per = legacy.registry.get("total", 0) / nl
    row(
        "cold registry req/verification, legacy-only types",
        f"{legacy_per:.3f} (HEAD {legacy.registry.get('HEAD', 0) / nl:.2f}, "
        f"GET {legacy.registry.get('GET', 0) / nl:.2f})",
        f"= {TARGET_COLD_REQS_LEGACY:g} (minimum)",
        legacy.registry.get("total", 0) == TARGET_COLD_REQS_LEGACY * nl,
    )
    warm_phases = (warm, b1, bn)
    warm_keys = sum(p.keys for p in warm_phases)
    gets = sum(p.registry.get("GET", 0) for p in warm_phases)
    heads = [int(p.registry.get("HEAD", 0)) for p in warm_phases]
    others = sum(p.registry.get("total", 0) for p in warm_phases) - gets - sum(heads)
    row(
        f"registry GETs while warm ({warm_keys:,} keys)",
        f"{int(gets + others)}",
        "0",
        gets + others == 0,
    )
    row(
        "registry HEADs while warm: latency / b1 / b50",
        f"{heads[0]} / {heads[1]} / {heads[2]} (tagTtl {BENCH_TAG_TTL:g}s)",
        "0",
        sum(heads) == 0,
    )
    rss = results["rssAfterMemoryMiB"]["VmRSS"]
    verdicts = int(mem.verdict_cache.get("miss", 0))
    hits = int(second.verdict_cache.get("hit", 0))
    row(f"RSS with {verdicts:,} verdicts cached", f"{rss:.1f} MiB", f"< {TARGET_RSS_MIB:g} MiB", rss < TARGET_RSS_MIB)
    row("  RSS at start / after warm phases", f"{results['rssStartMiB']['VmRSS']:.1f} / "
        f"{results['rssAfterWarmMiB']['VmRSS']:.1f} MiB")  # fmt: skip
    row("  peak RSS (VmHWM)", f"{results['rssAfterSecondPassMiB']['VmHWM']:.1f} MiB")
    row(
        "  second pass: verdict cache hits / sampled",
        f"{hits:,} / {second.keys:,} (misses {int(second.verdict_cache.get('miss', 0))})",
        "all hits",
        hits == second.keys and second.verdict_cache.get("miss", 0) == 0,
    )
    row(
        f"  cold fill rate, batch {settings.batch}",
        f"{mem.keys / mem.seconds:,.0f} verifications/s ({mem.registry.get('total', 0) / mem.keys:.2f} req each)",
    )
    row(
        "  CPU during cold fill: referee / registry",
        f"{mem.server_cpu / mem.seconds:.0%} / {mem.registry_cpu / mem.seconds:.0%} of a core",
    )
    return rows, ok


def format_table(rows: list[tuple[str, str, str, str]]) -> str:
    header = ("metric", "value", "target", "result")
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(4)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)).rstrip()]
    lines.append("  ".join("-" * w for w in widths))
    for r in rows:
        lines.append("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())
    return "\n".join(lines)


def machine() -> dict[str, Any]:
    model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    revision = "unknown"
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        out = subprocess.run(
            ["git", "describe", "--always", "--dirty"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=10
        )
        revision = out.stdout.strip() or revision
    return {
        "revision": revision,
        "nproc": os.cpu_count(),
        "cpu": model,
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
    }


def parse_args(argv: Sequence[str] | None) -> tuple[Settings, argparse.Namespace]:
    p = argparse.ArgumentParser(prog="bench", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--images", type=int, help="signed images for the cold/warm phases (default 200; quick 50)")
    p.add_argument("--memory-verdicts", type=int, help="distinct verdicts for the RSS figure (default 10000)")
    p.add_argument("--legacy-images", type=int, help="unseen images for the legacy-only cold pass (default 50)")
    p.add_argument("--warm-requests", type=int, help="sequential warm 1-key requests (default 2000)")
    p.add_argument("--duration", type=float, help="seconds per throughput phase (default 5)")
    p.add_argument("--workers", type=int, default=4, help="concurrent client connections (default 4)")
    p.add_argument("--batch", type=int, default=50, help="keys per request in the batch phase (default 50)")
    p.add_argument("--push-threads", type=int, default=8, help="threads pushing registry content (default 8)")
    p.add_argument("--memory-sample", type=int, default=1000, help="keys re-sent to check the verdict cache")
    p.add_argument("--quick", action="store_true", help="smoke run: 50 images, 1000 verdicts, short phases")
    p.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    p.add_argument("--strict", action="store_true", help="exit 1 when any target is missed")
    args = p.parse_args(argv)
    quick = args.quick

    def pick(value: int | float | None, full: float, small: float) -> Any:
        return value if value is not None else (small if quick else full)

    settings = Settings(
        images=int(pick(args.images, 200, 50)),
        memory_verdicts=int(pick(args.memory_verdicts, 10000, 1000)),
        legacy_images=int(pick(args.legacy_images, 50, 20)),
        warm_requests=int(pick(args.warm_requests, 2000, 500)),
        duration=float(pick(args.duration, 5.0, 2.0)),
        workers=max(1, args.workers),
        batch=max(1, args.batch),
        push_threads=max(1, args.push_threads),
        memory_sample=max(1, args.memory_sample),
    )
    if settings.images < settings.batch:
        p.error(f"--images ({settings.images}) must be at least --batch ({settings.batch})")
    if min(settings.images, settings.memory_verdicts, settings.legacy_images, settings.warm_requests) < 1:
        p.error("counts must be positive")
    return settings, args


def main(argv: Sequence[str] | None = None) -> int:
    settings, args = parse_args(argv)
    info = machine()
    log(f"machine: nproc={info['nproc']} cpu={info['cpu']!r} python {info['python']} ({info['platform']})")
    log(f"settings: {settings}")
    wall = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="referee-bench-") as tmp:
        directory = Path(tmp)
        registry = RegistryProcess()
        server: ServerProcess | None = None
        try:
            registry.start()
            log(f"registry {registry.url} (pid {registry.pid})")
            content = push_content(
                registry,
                directory,
                settings.images,
                settings.memory_verdicts,
                settings.legacy_images,
                settings.push_threads,
            )
            log(
                f"setup: pushed content in {content.seconds:.1f}s (~{content.http_requests:,} registry requests, "
                f"{settings.push_threads} threads)"
            )
            pki = Pki.create(directory / "pki")
            port, health_port = free_port(), free_port()
            while health_port == port:
                health_port = free_port()
            config_path = write_config(
                directory / "referee.yaml",
                referee_config(pki, registry, content.key_file, port, health_port, legacy_only=False),
            )
            server = ServerProcess(config_path, port, health_port, directory / "referee.log")
            server.start()
            results = asyncio.run(drive(settings, content, server, pki, registry, config_path))
            stop_code = server.stop()
            server = None
        finally:
            if server is not None:
                log("stopping referee")
                server.stop()
            registry.stop()
    rows, ok = build_table(settings, results)
    results.pop("_phases")
    results["setupSeconds"] = round(content.seconds, 1)
    results["totalSeconds"] = round(time.perf_counter() - wall, 1)
    results["serverExitCode"] = stop_code
    print()
    print(
        f"Referee benchmark, {info['date']}: nproc {info['nproc']}, {info['cpu'] or 'cpu ?'}, "
        f"Python {info['python']}, referee {info['revision']}"
    )
    print(
        f"{settings.images} images, {settings.memory_verdicts:,} memory verdicts, {settings.workers} client "
        f"workers, setup {content.seconds:.1f}s, total {results['totalSeconds']:.1f}s, server exit {stop_code}"
    )
    print(format_table(rows))
    print()
    if args.json:
        doc = {"machine": info, "settings": settings.__dict__, "table": rows, "results": results}
        Path(args.json).write_text(json.dumps(doc, indent=2) + "\n")
        log(f"wrote {args.json}")
    if not ok:
        log("at least one target was missed (MISS above)")
    return 1 if (args.strict and not ok) else 0


if __name__ == "__main__":
    sys.exit(main())
