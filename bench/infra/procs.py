"""Child processes besides Referee: the no-op provider, the throttling proxy, the load generator and redis-server.
Each is started with the bench's interpreter and stopped by its own PID."""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from bench.infra.util import REPO_ROOT, BenchError, proc_cpu_seconds, proxy_free_env
from tests.support.referee import Pki


def client_cert_file(pki: Pki) -> Path:
    """The Gatekeeper client certificate and key in one PEM file (for child processes)."""
    path = pki.dir / "gatekeeper-client.pem"
    if not path.exists():
        pki.client.private_key_and_cert_chain_pem.write_to_path(str(path))
    return path


@dataclass
class Child:
    """A Python module run as a child process whose first stdout line says it is ready."""

    argv: list[str]
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None
    first_line: str = ""
    _log: Any = field(default=None, repr=False)

    def start(self, timeout: float = 30.0) -> str:
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [sys.executable, *self.argv],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=self._log,
            cwd=str(REPO_ROOT),
            env=proxy_free_env(),
        )
        assert self.proc.stdout is not None
        deadline = time.monotonic() + timeout
        line = b""
        while time.monotonic() < deadline and not line:
            line = self.proc.stdout.readline()
            if not line and self.proc.poll() is not None:
                break
        if not line:
            self.stop()
            raise BenchError(f"{' '.join(self.argv)} did not start: {self.log_path.read_text(errors='replace')}")
        self.first_line = line.decode().strip()
        return self.first_line

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def cpu_seconds(self) -> float:
        return proc_cpu_seconds(self.pid) if self.proc is not None else 0.0

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)
        if self._log is not None:
            self._log.close()
            self._log = None


class NoopProvider(Child):
    """bench/infra/noop.py on ``port`` with ``pki``'s serving certificate."""

    def __init__(self, pki: Pki, port: int, responses: Path, log_path: Path) -> None:
        super().__init__(
            [
                "-m",
                "bench.infra.noop",
                "--port",
                str(port),
                "--cert",
                str(pki.server_cert),
                "--key",
                str(pki.server_key),
                "--client-ca",
                str(pki.client_ca),
                "--responses",
                str(responses),
            ],
            log_path,
        )
        self.port = port

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"


class ThrottleProxy(Child):
    """bench/infra/throttle.py in front of ``upstream`` (``host:port``)."""

    def __init__(self, upstream: str, log_path: Path) -> None:
        super().__init__(["-m", "bench.infra.throttle", upstream], log_path)
        self.port = 0

    def start(self, timeout: float = 30.0) -> str:
        line = super().start(timeout)
        self.port = int(line.split()[1])
        return line

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    async def storm(self, seconds: float, retry_after: int) -> tuple[float, float]:
        """Start a storm now; its (start, end) on CLOCK_MONOTONIC."""
        async with (
            aiohttp.ClientSession(trust_env=False) as session,
            session.post(
                f"http://{self.host}/_bench/storm", params={"seconds": repr(seconds), "retryAfter": str(retry_after)}
            ) as resp,
        ):
            doc = await resp.json()
        return float(doc["start"]), float(doc["end"])

    async def events(self, since: float = 0.0) -> list[tuple[float, int]]:
        async with (
            aiohttp.ClientSession(trust_env=False) as session,
            session.get(f"http://{self.host}/_bench/events", params={"since": repr(since)}) as resp,
        ):
            return [(float(t), int(s)) for t, s in await resp.json()]


async def run_loadgen(directory: Path, pki: Pki, legs: list[dict[str, Any]], name: str) -> list[dict[str, Any]]:
    """Run bench/infra/loadgen.py over ``legs`` and return its per-leg figures."""
    spec = {"ca": str(pki.serving_ca_pem), "cert": str(client_cert_file(pki)), "legs": legs}
    path = directory / f"loadgen-{name}.json"
    path.write_text(json.dumps(spec))
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bench.infra.loadgen",
        str(path),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        cwd=str(REPO_ROOT),
        env=proxy_free_env(),
    )
    out, err = await proc.communicate()
    if proc.returncode != 0:
        raise BenchError(f"load generator failed ({proc.returncode}): {err.decode(errors='replace')[-2000:]}")
    legs_out: list[dict[str, Any]] = json.loads(out)
    return legs_out


class RedisServer(Child):
    """Debian's ``redis-server`` on 127.0.0.1:``port``, no persistence."""

    def __init__(self, port: int, directory: Path) -> None:
        super().__init__([], directory / "redis.log")
        self.port = port
        self.directory = directory

    def start(self, timeout: float = 30.0) -> str:
        binary = shutil.which("redis-server") or "/usr/bin/redis-server"
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [
                binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.directory),
            ],
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if "Ready to accept connections" in self.log_path.read_text(errors="replace"):
                return "ready"
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        self.stop()
        raise BenchError(f"redis-server did not start: {self.log_path.read_text(errors='replace')[-2000:]}")

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"
