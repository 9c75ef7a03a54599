"""Admission latency through the real chain: ``kubectl create`` of a Pod against kube-apiserver → Gatekeeper v3.21
(mutating and validating webhooks) → Referee (``referee serve`` as the chart lays it out) → a real registry.

Run from the repository root::

    .venv/bin/python -m bench.admission                 # 40 Pods per phase
    .venv/bin/python -m bench.admission --pods 100 --json admission.json

Phases, each timing ``--pods`` runs of ``kubectl create -f -`` (one Pod, one container, the process's whole wall
time, so kubectl's own start-up is in every figure and cancels out of the difference):

* cold: every Pod names a new signed image by tag: Referee resolves and verifies it (the Assign pins it through
  ``/mutate``, the constraint verifies it through ``/verify``);
* warm: every Pod names the same verified tag: Referee's tag cache answers ``/mutate``, Gatekeeper's response
  cache answers ``/verify``;
* without Referee: the warm Pod in ``referee-system``, which the sample constraint and the Assigns exclude: the API
  server and both Gatekeeper webhooks run, nothing of Referee's does.

The three phases are interleaved Pod by Pod, so that load from elsewhere on the machine falls on them alike.

The chain is set up as tests/e2e sets it up (tests/support/admission.py, docs/deploy.md); everything listens on
127.0.0.1 and every process is stopped by its PID at the end. bench/README.md has the figures.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from tests.support.admission import base_values, install_referee, sample
from tests.support.content import cosign_sign_legacy, make_image, push_image
from tests.support.gatekeeper_chain import GatekeeperChain
from tests.support.registry import RegistryProcess

NAMESPACE = "bench"
# Excluded by the sample constraint's and the Assigns' match: both webhooks run, nothing of Referee's applies.
PLAIN_NAMESPACE = "referee-system"
REPO = "bench/admission"


def percentile(values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    rank = max(1, math.ceil(p / 100 * len(ordered)))
    return ordered[rank - 1]


def pod(name: str, image: str, namespace: str = NAMESPACE) -> str:
    return yaml.safe_dump(
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"containers": [{"name": "app", "image": image}], "restartPolicy": "Never"},
        }
    )


def timed_create(chain: GatekeeperChain, name: str, image: str, namespace: str = NAMESPACE) -> float:
    started = time.perf_counter()
    result = chain.k("create", "-f", "-", input=pod(name, image, namespace))
    elapsed = time.perf_counter() - started
    if not result.ok:
        raise RuntimeError(f"kubectl create {name} ({image}) failed: {result.stderr.strip()}")
    return elapsed


def summary(samples: list[float]) -> dict[str, float]:
    return {
        "n": len(samples),
        "p50_ms": percentile(samples, 50) * 1000,
        "p99_ms": percentile(samples, 99) * 1000,
        "mean_ms": sum(samples) / len(samples) * 1000,
    }


def run(pods: int, workdir: Path) -> dict[str, Any]:
    began = time.monotonic()
    chain = GatekeeperChain(workdir / "chain")
    (workdir / "chain").mkdir()
    registry = RegistryProcess()
    install = None
    try:
        chain.start()
        registry.start()
        key = ec.generate_private_key(ec.SECP256R1())
        pem = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        tags = [f"v{i}" for i in range(pods + 1)]
        for tag in tags:
            digest = str(push_image(registry.url, REPO, tag, make_image(f"{REPO}/{tag}")))
            cosign_sign_legacy(registry.url, REPO, digest, key)
        values = base_values(registries=[registry.host], cosign_public_pem=pem.decode())
        install = install_referee(chain, workdir, values)
        [constraint] = sample("refereeverifiedimages", "constraint.yaml")
        constraint["spec"]["parameters"]["requireDigest"] = True
        install.apply_constraints([constraint])
        chain.k.ok("create", "namespace", NAMESPACE)
        chain.k.ok("create", "namespace", PLAIN_NAMESPACE)
        setup = time.monotonic() - began

        phases: dict[str, list[float]] = {"cold": [], "warm": [], "without Referee": []}
        warm = f"{registry.host}/{REPO}:{tags[0]}"
        timed_create(chain, "warm-first", warm)
        # Interleaved, so that load from elsewhere on the machine falls on the three phases alike.
        for i, tag in enumerate(tags[1:]):
            phases["cold"].append(timed_create(chain, f"cold-{i}", f"{registry.host}/{REPO}:{tag}"))
            phases["warm"].append(timed_create(chain, f"warm-{i}", warm))
            phases["without Referee"].append(timed_create(chain, f"plain-{i}", warm, PLAIN_NAMESPACE))
        return {
            "setup_s": setup,
            "total_s": time.monotonic() - began,
            "phases": {name: summary(samples) for name, samples in phases.items()},
            "samples_ms": {name: [round(s * 1000, 2) for s in samples] for name, samples in phases.items()},
        }
    finally:
        if install is not None:
            install.stop()
        registry.stop()
        chain.stop()


def machine() -> dict[str, Any]:
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False, cwd=Path(__file__).parent
    ).stdout.strip()
    return {
        "when": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "nproc": os.cpu_count(),
        "python": platform.python_version(),
        "referee": commit or "unknown",
    }


def table(results: dict[str, Any]) -> str:
    phases = results["phases"]
    base = phases["without Referee"]
    rows = [("phase", "n", "p50", "p99", "added p50", "added p99")]
    for name, s in phases.items():
        added = (
            ("-", "-")
            if name == "without Referee"
            else (
                f"{s['p50_ms'] - base['p50_ms']:+.1f} ms",
                f"{s['p99_ms'] - base['p99_ms']:+.1f} ms",
            )
        )
        rows.append((name, str(s["n"]), f"{s['p50_ms']:.1f} ms", f"{s['p99_ms']:.1f} ms", *added))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip() for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    m = results["machine"]
    head = (
        f"Admission latency (kubectl create of one Pod), {m['when']}: nproc {m['nproc']}, Python {m['python']}, "
        f"referee {m['referee']}\nsetup {results['setup_s']:.1f}s, total {results['total_s']:.1f}s"
    )
    return head + "\n" + "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench.admission", description=__doc__.split("\n\n")[0])
    parser.add_argument("--pods", type=int, default=40, help="Pods created per phase (default 40)")
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    args = parser.parse_args(argv)
    if args.pods < 1:
        parser.error("--pods must be at least 1")
    with tempfile.TemporaryDirectory(prefix="referee-bench-admission-") as tmp:
        results = run(args.pods, Path(tmp))
    results["machine"] = machine()
    print(table(results))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
