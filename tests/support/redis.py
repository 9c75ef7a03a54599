"""A real ``redis-server`` (Debian's package) as a child process on ``127.0.0.1``: a free port, its own temporary
directory, no persistence (``--save ""``), optionally TLS (``--tls-port``, a trustme certificate). Stopped by PID.

``stop()`` and ``start()`` again on the same port model a cache that goes away and comes back; ``kill()`` sends
SIGKILL. A missing ``redis-server`` FAILS the test with an install hint (scripts/setup.sh installs it)."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import Self

import redis
import trustme

INSTALL_HINT = "install it with: apt-get install -y --no-install-recommends redis-server (scripts/setup.sh does)"


def find_redis_server() -> str:
    fallback = "/usr/bin/redis-server"
    found = shutil.which("redis-server") or (fallback if os.access(fallback, os.X_OK) else None)
    if not found:
        raise RuntimeError(f"redis-server not found; {INSTALL_HINT}")
    return found


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class RedisServer:
    """``with RedisServer() as r: r.url`` — ``redis://127.0.0.1:<port>`` (``rediss://localhost:<port>`` with TLS)."""

    def __init__(self, *, tls_ca: trustme.CA | None = None, password: str | None = None) -> None:
        self.binary = find_redis_server()
        self.port = free_port()
        self.password = password
        self._dir = Path(tempfile.mkdtemp(prefix="referee-redis-"))
        self.log_path = self._dir / "redis.log"
        self.tls_ca = tls_ca
        self.ca_file: Path | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        if tls_ca is not None:
            cert = tls_ca.issue_cert("localhost", "127.0.0.1")
            cert.private_key_pem.write_to_path(str(self._dir / "server.key"))
            cert.cert_chain_pems[0].write_to_path(str(self._dir / "server.crt"))
            self.ca_file = self._dir / "ca.crt"
            tls_ca.cert_pem.write_to_path(str(self.ca_file))

    @property
    def url(self) -> str:
        if self.tls_ca is not None:
            return f"rediss://localhost:{self.port}"
        return f"redis://127.0.0.1:{self.port}"

    def _args(self) -> list[str]:
        args = [self.binary, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", str(self._dir)]
        args += ["--logfile", str(self.log_path), "--daemonize", "no", "--protected-mode", "no"]
        if self.password is not None:
            args += ["--requirepass", self.password]
        if self.tls_ca is not None:
            args += ["--port", "0", "--tls-port", str(self.port), "--tls-auth-clients", "no"]
            args += ["--tls-cert-file", str(self._dir / "server.crt"), "--tls-key-file", str(self._dir / "server.key")]
            args += ["--tls-ca-cert-file", str(self.ca_file)]
        else:
            args += ["--port", str(self.port)]
        return args

    def start(self, timeout: float = 30.0) -> Self:
        assert self._proc is None or self._proc.poll() is not None, "already running"
        offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        self._proc = subprocess.Popen(self._args(), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise RuntimeError(f"redis-server exited: {self._log_tail()}")
            if self.log_path.exists() and b"Ready to accept connections" in self.log_path.read_bytes()[offset:]:
                return self
            time.sleep(0.02)
        self.stop()
        raise RuntimeError(f"redis-server did not become ready: {self._log_tail()}")

    def _log_tail(self) -> str:
        return self.log_path.read_text(errors="replace")[-2000:] if self.log_path.exists() else "(no log)"

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(15)

    def kill(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait(15)

    def client(self) -> redis.Redis:
        """A synchronous redis-py client for the test's own reads and writes (plain connections only)."""
        assert self.tls_ca is None
        return redis.Redis(host="127.0.0.1", port=self.port, password=self.password, socket_timeout=10)

    def close(self) -> None:
        self.stop()
        with contextlib.suppress(OSError):
            shutil.rmtree(self._dir)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
