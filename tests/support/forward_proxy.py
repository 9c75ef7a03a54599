"""A real forward proxy for the outbound-proxy tests: Debian's ``tinyproxy`` on ``127.0.0.1``.

``TinyProxy()`` writes a configuration in a temporary directory (listen on 127.0.0.1, clients from 127.0.0.1 only,
every CONNECT port allowed, optional ``BasicAuth``), runs ``tinyproxy -d -c <conf>`` in the foreground and waits
until the port accepts connections. ``requests()`` reads tinyproxy's log: one entry per request it proxied, as it
logged it (``CONNECT 127.0.0.1:5000 HTTP/1.1`` for a tunnel, ``GET http://127.0.0.1:5000/v2/ HTTP/1.1`` for plain
HTTP), so a test counts what went through the proxy. Stopped with SIGTERM by PID.
"""

from __future__ import annotations

import re
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType

__all__ = ["TinyProxy", "find_tinyproxy"]

_REQUEST = re.compile(r"Request \(file descriptor \d+\): (.+)$")


def find_tinyproxy() -> str:
    path = shutil.which("tinyproxy") or ("/usr/bin/tinyproxy" if Path("/usr/bin/tinyproxy").exists() else None)
    if path is None:
        raise RuntimeError("tinyproxy is not installed (apt-get install tinyproxy-bin; scripts/setup.sh does)")
    return path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class TinyProxy:
    def __init__(self, *, user: str | None = None, password: str | None = None, startup_timeout: float = 30.0):
        self.user = user
        self.password = password
        self.startup_timeout = startup_timeout
        self.port = 0
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self.log_path = Path()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def url(self, *, credentials: bool = True) -> str:
        if credentials and self.user is not None:
            return f"http://{self.user}:{self.password}@{self.address}"
        return f"http://{self.address}"

    def requests(self) -> list[str]:
        """Every request tinyproxy has proxied so far, in order (``METHOD target HTTP/1.x``)."""
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return []
        return [m.group(1).strip() for line in text.splitlines() if (m := _REQUEST.search(line))]

    def start(self) -> TinyProxy:
        binary = find_tinyproxy()
        self._tmp = tempfile.TemporaryDirectory(prefix="referee-tinyproxy-")
        tmp = Path(self._tmp.name)
        self.log_path = tmp / "tinyproxy.log"
        for _ in range(5):
            self.port = _free_port()
            lines = [
                f"Port {self.port}",
                "Listen 127.0.0.1",
                "Timeout 60",
                f'LogFile "{self.log_path}"',
                "LogLevel Info",
                "MaxClients 50",
                "Allow 127.0.0.1",
                "DisableViaHeader Yes",
            ]
            if self.user is not None:
                lines.append(f"BasicAuth {self.user} {self.password}")
            conf = tmp / "tinyproxy.conf"
            conf.write_text("\n".join(lines) + "\n")
            self._proc = subprocess.Popen(
                [binary, "-d", "-c", str(conf)],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            if self._wait_ready():
                return self
            self._terminate()
        raise RuntimeError(f"tinyproxy did not start; log: {self.log_path.read_text(errors='replace')[-2000:]}")

    def _wait_ready(self) -> bool:
        assert self._proc is not None
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                return False
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return True
            except OSError:
                time.sleep(0.05)
        return False

    def _terminate(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait(timeout=10)
        self._proc = None

    def stop(self) -> None:
        self._terminate()
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def __enter__(self) -> TinyProxy:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
