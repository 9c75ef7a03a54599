"""Referee's container image in the suite: podman with the flags this kind of machine needs, the image built by
``scripts/build-image`` from the repository's Dockerfile, and containers run the way the Helm chart runs the pod.

Networking is podman's ``slirp4netns`` with ``allow_host_loopback``: published ports are bound by slirp4netns on
the host's ``127.0.0.1`` only, and the container reaches the host's loopback (the test registry) at
:data:`HOST_LOOPBACK`. Nothing leaves the machine and the host sees only loopback traffic.

Logs use podman's ``k8s-file`` driver, the CRI format the kubelet writes (``<time> <stream> <P|F> <text>``), so
a test can tell which stream each line was written to.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
BUILD_IMAGE = REPO / "scripts" / "build-image"
HOST_LOOPBACK = "10.0.2.2"
INSTALL_HINT = "install it with: apt-get install -y --no-install-recommends podman runc slirp4netns mmdebstrap"
_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # http_proxy must not catch 127.0.0.1


def http_get_status(url: str, timeout: float = 5) -> int | None:
    """The status of ``GET url`` (no proxy), or None when the server is not answering (yet)."""
    try:
        with _NO_PROXY.open(url, timeout=timeout) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)
    except (urllib.error.URLError, http.client.HTTPException, ConnectionError, TimeoutError):
        return None


class ContainerEngineMissingError(RuntimeError):
    """podman (or a tool the image path needs) is not installed."""


def podman_command() -> list[str]:
    """``podman`` and its global flags on this machine, by the same rules as ``scripts/build-image``: cgroupfs
    when systemd is not PID 1, runc when crun is absent."""
    exe = shutil.which("podman")
    if exe is None:
        raise ContainerEngineMissingError(f"podman not found; {INSTALL_HINT}")
    command = [exe]
    if not Path("/run/systemd/system").is_dir():
        command.append("--cgroup-manager=cgroupfs")
    if shutil.which("runc") and not shutil.which("crun"):
        command += ["--runtime", "runc"]
    return command


def ulimit_flags() -> list[str]:
    """podman's default open-files limit exceeds the hard limit on some machines: stay below it there."""
    import resource

    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    if hard != resource.RLIM_INFINITY and hard < 1048576:
        return ["--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024"]
    return []


def podman(*args: str, timeout: float = 300, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run ``podman ARGS`` and capture its output; with ``check`` a failure raises with stderr in the message."""
    result = subprocess.run(
        [*podman_command(), *args], capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL
    )
    if check and result.returncode != 0:
        raise RuntimeError(f"podman {' '.join(args)} exited {result.returncode}:\n{result.stderr[-4000:]}")
    return result


# --------------------------------------------------------------------------------------------------------
# building
# --------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BuiltImage:
    tag: str
    base: str
    seconds: float
    log: Path

    def inspect(self) -> dict[str, Any]:
        result: list[dict[str, Any]] = json.loads(podman("image", "inspect", self.tag).stdout)
        return result[0]

    def size_bytes(self) -> int:
        return int(self.inspect()["Size"])

    def layers(self) -> list[tuple[int, str]]:
        """``(size, created by)`` of each history entry that made a layer, oldest first."""
        rows = json.loads(podman("image", "history", "--format", "json", self.tag).stdout)
        return [(int(r["size"]), str(r.get("CreatedBy", r.get("createdBy", "")))) for r in reversed(rows) if r["size"]]


def venv_constraints(path: Path) -> Path:
    """``pip freeze`` of the environment running the suite: the image gets the dependency versions it tested."""
    frozen = subprocess.run(
        [sys.executable, "-m", "pip", "freeze", "--exclude-editable"],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    ).stdout
    path.write_text("".join(line + "\n" for line in frozen.splitlines() if "==" in line and " @ " not in line))
    return path


def build_image(
    tag: str, log: Path, *, base: str = "auto", constraints: Path | None = None, no_cache: bool = False
) -> BuiltImage:
    """``scripts/build-image`` (hermetic: wheelhouse, no network in the build); its output goes to ``log``."""
    if shutil.which("podman") is None:
        raise ContainerEngineMissingError(f"podman not found; {INSTALL_HINT}")
    command = [str(BUILD_IMAGE), "--tag", tag, "--base", base]
    if constraints is not None:
        command += ["--constraints", str(constraints)]
    if no_cache:
        command.append("--no-cache")
    env = {**os.environ, "REFEREE_CONTAINER_ENGINE": "podman", "PYTHON": sys.executable}
    started = time.monotonic()
    with log.open("w") as out:
        result = subprocess.run(command, stdout=subprocess.PIPE, stderr=out, text=True, env=env, timeout=1500)
    seconds = time.monotonic() - started
    text = log.read_text()
    if result.returncode != 0:
        raise RuntimeError(f"scripts/build-image exited {result.returncode}; its log ends:\n{text[-6000:]}")
    used = re.search(r"building \S+ with podman from (\S+)", text)
    return BuiltImage(tag=result.stdout.strip(), base=used.group(1) if used else "?", seconds=seconds, log=log)


# --------------------------------------------------------------------------------------------------------
# running
# --------------------------------------------------------------------------------------------------------


@dataclass
class LogLine:
    stream: str
    text: str


@dataclass
class Container:
    """A detached container of ``image``: read-only root filesystem with a tmpfs ``/tmp`` (the chart's emptyDir),
    every capability dropped, no privilege escalation, ``mounts`` read-only, ``ports`` published on 127.0.0.1."""

    image: str
    mounts: Sequence[tuple[Path, str]] = ()
    ports: Sequence[int] = ()
    args: Sequence[str] = ()
    name: str = field(default_factory=lambda: f"referee-test-{uuid.uuid4().hex[:12]}")
    started_at: float = 0.0

    def run_flags(self) -> list[str]:
        flags = [
            "--name",
            self.name,
            "--read-only",
            "--read-only-tmpfs=false",
            "--tmpfs",
            "/tmp:rw,size=64m,mode=1777",
            "--cap-drop=all",
            "--security-opt=no-new-privileges",
            "--network",
            "slirp4netns:allow_host_loopback=true,port_handler=slirp4netns",
            "--log-driver",
            "k8s-file",
            *ulimit_flags(),
        ]
        for source, target in self.mounts:
            flags += ["--volume", f"{source}:{target}:ro"]
        for port in self.ports:
            flags += ["--publish", f"127.0.0.1::{port}"]
        return flags

    def start(self) -> Container:
        self.started_at = time.monotonic()
        podman("run", "--detach", *self.run_flags(), self.image, *self.args)
        return self

    def inspect(self) -> dict[str, Any]:
        result: list[dict[str, Any]] = json.loads(podman("container", "inspect", self.name).stdout)
        return result[0]

    def status(self) -> str:
        return podman("container", "inspect", "--format", "{{.State.Status}}", self.name).stdout.strip()

    def host_port(self, port: int) -> int:
        bindings = self.inspect()["NetworkSettings"]["Ports"][f"{port}/tcp"]
        assert len(bindings) == 1, bindings
        return int(bindings[0]["HostPort"])

    def pid(self) -> int:
        return int(self.inspect()["State"]["Pid"])

    def wait_ready(self, url: str, timeout: float = 180) -> float:
        """Poll ``url`` until it answers 200; seconds since :meth:`start`. Fails at once if the container exits."""
        deadline = time.monotonic() + timeout
        while True:
            if http_get_status(url) == 200:
                return time.monotonic() - self.started_at
            status = self.status()
            if status not in ("running", "created", "configured", "initialized"):
                raise RuntimeError(f"container {self.name} is {status} before ready:\n{self.log_text()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"{url} not ready after {timeout}s:\n{self.log_text()}")
            time.sleep(0.1)

    def exec(self, *command: str, user: str | None = None) -> subprocess.CompletedProcess[str]:
        flags = ["--user", user] if user else []
        return podman("exec", *flags, self.name, *command, check=False)

    def signal(self, name: str) -> None:
        podman("kill", "--signal", name, self.name)

    def wait_exit(self, timeout: float) -> int:
        """Block until the container exits (``podman wait``); its exit code. ``TimeoutExpired`` after ``timeout``."""
        return int(podman("wait", self.name, timeout=timeout).stdout.strip())

    def logs(self) -> list[LogLine]:
        """Every line the container wrote, with its stream, from the k8s-file log (partial lines joined)."""
        path = Path(self.inspect()["HostConfig"]["LogConfig"]["Path"])
        lines: list[LogLine] = []
        partial: dict[str, str] = {}
        for raw in path.read_text().splitlines():
            _, stream, tag, text = [*raw.split(" ", 3), "", "", ""][:4]
            if tag == "P":
                partial[stream] = partial.get(stream, "") + text
                continue
            lines.append(LogLine(stream, partial.pop(stream, "") + text))
        return lines

    def log_text(self) -> str:
        with contextlib.suppress(Exception):
            return "\n".join(f"{line.stream}: {line.text}" for line in self.logs())[-6000:]
        return "(no log)"

    def remove(self) -> None:
        podman("rm", "--force", "--time", "0", self.name, check=False)


@contextlib.contextmanager
def running(container: Container) -> Iterator[Container]:
    try:
        yield container.start()
    finally:
        container.remove()


def listening_addresses(port: int) -> set[str]:
    """Local IPv4 addresses with a TCP socket in LISTEN on ``port`` (from /proc/net/tcp)."""
    found = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        address, hex_port = fields[1].split(":")
        if fields[3] == "0A" and int(hex_port, 16) == port:
            octets = bytes.fromhex(address)[::-1]
            found.add(".".join(str(b) for b in octets))
    if Path("/proc/net/tcp6").exists():
        for line in Path("/proc/net/tcp6").read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A" and int(fields[1].split(":")[1], 16) == port:
                found.add("ipv6:" + fields[1].split(":")[0])
    return found


def proc_ids(pid: int) -> dict[str, list[int]]:
    """``Uid`` and ``Gid`` (real, effective, saved, filesystem) of a host process."""
    ids: dict[str, list[int]] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("Uid", "Gid"):
            ids[key] = [int(v) for v in value.split()]
    return ids


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for {pid}")


def generate_sbom(image: str, tool_path: Path) -> bytes:
    """A CycloneDX 1.6 JSON SBOM of the image's Python environment (``/opt/referee``), made by ``cyclonedx-py
    environment`` running inside a container of the image with the interpreter of the image.

    The tool (PyPI ``cyclonedx-bom``) comes from ``tool_path`` (the suite's site-packages), mounted read-only and
    appended to ``sys.path`` of that process only: the interpreter it inspects runs without it, so the SBOM lists
    the image's distributions and nothing of the tool's."""
    program = (
        "import runpy, sys; sys.path.append('/sbom-tool'); "
        "sys.argv = ['cyclonedx-py', 'environment', '--sv', '1.6', '--output-reproducible', '/opt/referee']; "
        "runpy.run_module('cyclonedx_py', run_name='__main__')"
    )
    result = podman(
        "run",
        "--rm",
        "--read-only",
        "--network",
        "none",
        *ulimit_flags(),
        "--volume",
        f"{tool_path}:/sbom-tool:ro",
        "--entrypoint",
        "/opt/referee/bin/python",
        image,
        "-c",
        program,
    )
    return result.stdout.encode()
