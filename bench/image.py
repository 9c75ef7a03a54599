"""Container image facts, measured: size and layers, time from ``podman run`` to ready, RSS at idle.

Run from the repository root::

    .venv/bin/python -m bench.image                       # builds with scripts/build-image --base auto
    .venv/bin/python -m bench.image --image localhost/referee:dev --runs 20

The container runs as tests/integration/test_image.py runs it (and as the Helm chart runs the pod): read-only root
filesystem, tmpfs ``/tmp``, no capabilities, configuration and certificates mounted read-only, ports published on
127.0.0.1. "Ready" is the first 200 from ``/readyz`` on the published health port, polled every 20 ms, counted
from just before ``podman run --detach``. Idle RSS is ``VmRSS`` of the container's ``referee`` process a few
seconds after ready, before any request. Each run starts a new container; the first run is reported apart, since
it pays for the page cache. bench/README.md ("Container image") shows a run.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import platform
import statistics
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

import yaml

from bench.infra.table import Report
from tests.support.container import Container, build_image, http_get_status, podman, rss_kib
from tests.support.referee import Pki

REPO_ROOT = Path(__file__).resolve().parent.parent


def _config_dir(directory: Path) -> Path:
    pki = Pki.create(directory / "pki")
    etc = directory / "etc"
    etc.mkdir(mode=0o755)
    for source, name in ((pki.server_cert, "tls.crt"), (pki.server_key, "tls.key"), (pki.client_ca, "ca.crt")):
        (etc / name).write_bytes(source.read_bytes())
    config = {
        "registries": {"allow": []},
        "policy": {"type": "deny-all"},
        "server": {
            "tls": {
                "certFile": "/etc/referee/tls.crt",
                "keyFile": "/etc/referee/tls.key",
                "clientCaFile": "/etc/referee/ca.crt",
            }
        },
    }
    (etc / "referee.yaml").write_text(yaml.safe_dump(config))
    for path in etc.iterdir():
        path.chmod(0o644)
    return etc


def _ready_seconds(container: Container, url: str, timeout: float = 120) -> float:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if http_get_status(url, timeout=2) == 200:
            return time.monotonic() - container.started_at
        time.sleep(0.02)
    raise RuntimeError(f"not ready after {timeout}s:\n{container.log_text()}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--image", help="an image already built (default: build one with scripts/build-image)")
    parser.add_argument("--base", default="auto", help="--base for scripts/build-image (default auto)")
    parser.add_argument("--runs", type=int, default=10, help="containers started for time to ready (default 10)")
    parser.add_argument("--idle", type=float, default=3.0, help="seconds after ready before RSS is read (default 3)")
    parser.add_argument("--json", type=Path, help="also write the figures as JSON")
    args = parser.parse_args()

    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="referee-image-bench-") as tmp:
        work = Path(tmp)
        built_here = None
        if args.image:
            image = args.image
            build_note = "given"
        else:
            tag = f"localhost/referee-bench:{uuid.uuid4().hex[:8]}"
            built_here = build_image(tag, work / "build.log", base=args.base)
            image = built_here.tag
            build_note = f"scripts/build-image --base {args.base}: {built_here.seconds:.1f} s, base {built_here.base}"
        try:
            info = json.loads(podman("image", "inspect", image).stdout)[0]
            history = json.loads(podman("image", "history", "--format", "json", image).stdout)
            layers = [(int(h["size"]), str(h.get("CreatedBy", ""))) for h in reversed(history) if h["size"]]
            etc = _config_dir(work)
            ready: list[float] = []
            rss: list[int] = []
            for _ in range(args.runs):
                container = Container(image, mounts=[(etc, "/etc/referee")], ports=[8443, 8080])
                try:
                    container.start()
                    url = f"http://127.0.0.1:{container.host_port(8080)}/readyz"
                    ready.append(_ready_seconds(container, url))
                    time.sleep(args.idle)
                    rss.append(rss_kib(container.pid()))
                finally:
                    container.remove()
        finally:
            if built_here is not None:
                podman("rmi", "--force", built_here.tag, check=False)

    later = ready[1:] or ready
    size = int(info["Size"])
    rows = [
        (
            "image size",
            f"{size / 1e6:.1f} MB ({size / 2**20:.1f} MiB)",
            "< 200 MB (official base)",
            "PASS" if size < 200e6 else "over",
        ),
        *[(f"  layer {i + 1}: {_short(by)}", f"{n / 1e6:.1f} MB", "", "") for i, (n, by) in enumerate(layers)],
        ("time to ready, first run", f"{ready[0]:.2f} s", "", ""),
        (
            f"time to ready, runs 2-{len(ready)} (median / min / max)",
            f"{statistics.median(later):.2f} / {min(later):.2f} / {max(later):.2f} s",
            "",
            "",
        ),
        ("idle RSS (median / max)", f"{statistics.median(rss) / 1024:.1f} / {max(rss) / 1024:.1f} MiB", "", ""),
    ]
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    version = subprocess.run(["podman", "--version"], capture_output=True, text=True).stdout.strip()
    print(f"Referee image facts, {now}: {image}, {version}, {platform.machine()}, {len(ready)} runs")
    print(f"build: {build_note}; total {time.monotonic() - started:.1f} s")
    report = Report()
    report.rows.extend(rows)
    print(report.format())
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "image": image,
                    "sizeBytes": int(info["Size"]),
                    "layers": [{"sizeBytes": s, "createdBy": b} for s, b in layers],
                    "readySeconds": ready,
                    "idleRssKiB": rss,
                },
                indent=2,
            )
        )
    return 0


def _short(created_by: str) -> str:
    text = created_by.removeprefix("/bin/sh -c ").removeprefix("#(nop) ").strip()
    return text[:40]


if __name__ == "__main__":
    raise SystemExit(main())
