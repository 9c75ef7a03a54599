"""``referee serve`` as a child process, its configuration, and waiting for it over the health port."""

from __future__ import annotations

import asyncio
import contextlib
import copy
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from bench.infra.util import REPO_ROOT, BenchError, proc_cpu_seconds, proc_memory_mib, proxy_free_env
from tests.support.referee import Pki, server_section, write_config

VERIFIER = "cosign-bench"
# The synthetic artifact type Referee gives cosign's legacy ``sha256-<hex>.sig`` tags (provider/mediatypes.py).
COSIGN_LEGACY_SIG_TYPE = "application/vnd.dev.referee.cosign-legacy.sig"
STARTUP_TIMEOUT = 30.0


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def referee_config(
    pki: Pki,
    registry_hosts: list[str],
    key_file: Path,
    port: int,
    health_port: int,
    *,
    legacy_only: bool = False,
    provider_timeout: str = "3s",
    cache: dict[str, Any] | None = None,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A cosign verifier with the bench key, a ``required-verifiers`` policy, plain-HTTP registry hosts, mutual TLS
    from ``pki``; ``reloadInterval`` keeps its default (5 s), as deployed."""
    verifier: dict[str, Any] = {"name": VERIFIER, "type": "cosign", "keys": [str(key_file)]}
    if legacy_only:
        verifier["artifactTypes"] = [COSIGN_LEGACY_SIG_TYPE]
    server = server_section(pki, port=port, healthPort=health_port, providerTimeout=provider_timeout)
    server.pop("reloadInterval", None)  # the default (5s), as deployed; the harness's 100ms is for tests
    config: dict[str, Any] = {
        "registries": {"allow": ["127.0.0.1:*"], "hosts": [{"host": h, "plainHttp": True} for h in registry_hosts]},
        "verifiers": [verifier],
        "policy": {"type": "required-verifiers", "required": [VERIFIER]},
        "server": server,
        "cache": cache or {},
    }
    return _merge(config, extra or {})


@dataclass
class ServerProcess:
    """``referee --log-level LEVEL serve --config FILE``; its output goes to ``log_path``."""

    config_path: Path
    port: int
    health_port: int
    log_path: Path
    log_level: str = "warning"
    proc: subprocess.Popen[bytes] | None = None
    _log: Any = field(default=None, repr=False)

    @classmethod
    def create(cls, directory: Path, name: str, config: dict[str, Any], *, log_level: str = "warning") -> ServerProcess:
        """Write ``config`` (its ports must come from :func:`free_ports`) and return the unstarted process."""
        path = write_config(directory / f"{name}.yaml", config)
        server = config["server"]
        return cls(path, int(server["port"]), int(server["healthPort"]), directory / f"{name}.log", log_level)

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    @property
    def health_url(self) -> str:
        return f"http://127.0.0.1:{self.health_port}"

    def command(self) -> list[str]:
        script = Path(sys.prefix) / "bin" / "referee"
        # --log-level belongs to the top-level parser (provider/cli.py), so it goes before ``serve``.
        args = ["--log-level", self.log_level, "serve", "--config", str(self.config_path)]
        if script.is_file():
            return [str(script), *args]
        return [sys.executable, "-m", "provider.cli", *args]

    def start(self) -> None:
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            self.command(),
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            cwd=str(REPO_ROOT),
            env=proxy_free_env(),
        )

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def log_bytes(self) -> int:
        try:
            return self.log_path.stat().st_size
        except OSError:
            return 0

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def cpu_seconds(self) -> float:
        return proc_cpu_seconds(self.pid) if self.alive() else 0.0

    def memory_mib(self) -> dict[str, float]:
        return proc_memory_mib(self.pid) if self.alive() else {}

    def kill(self) -> None:
        """SIGKILL, as when a node dies or the OOM killer strikes."""
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
        self._close_log()

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
        self._close_log()
        return code

    def _close_log(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None

    async def wait_ready(self, timeout: float = STARTUP_TIMEOUT) -> dict[str, Any]:
        """Poll ``GET /readyz`` until it answers 200; the body (``configGeneration``…)."""
        deadline = time.monotonic() + timeout
        last: object = None
        async with aiohttp.ClientSession(trust_env=False, timeout=aiohttp.ClientTimeout(total=5)) as session:
            while time.monotonic() < deadline:
                if not self.alive():
                    code = self.proc.returncode if self.proc else None
                    raise BenchError(f"referee exited with {code}:\n{self.log_tail()}")
                try:
                    async with session.get(self.health_url + "/readyz") as resp:
                        body = await resp.json()
                        if resp.status == 200:
                            return dict(body)
                        last = body
                except (aiohttp.ClientError, OSError, TimeoutError) as exc:
                    last = exc
                await asyncio.sleep(0.05)
        raise BenchError(f"referee not ready after {timeout}s ({last}):\n{self.log_tail()}")

    async def readyz(self) -> tuple[int, dict[str, Any]]:
        async with (
            aiohttp.ClientSession(trust_env=False, timeout=aiohttp.ClientTimeout(total=5)) as session,
            session.get(self.health_url + "/readyz") as resp,
        ):
            return resp.status, dict(await resp.json())

    async def wait_generation(self, previous: str, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            _, body = await self.readyz()
            if body.get("lastReloadError"):
                raise BenchError(f"config reload rejected: {body['lastReloadError']}")
            if body.get("configGeneration") != previous:
                return str(body["configGeneration"])
            await asyncio.sleep(0.1)
        raise BenchError(f"configuration not reloaded within {timeout}s")
