"""Referee benchmark: the real ``referee serve`` process against a real ``docker-registry``, driven over mTLS the
way Gatekeeper drives it, every phase in one run, one table of figures against the targets of issues #12 and #23.

Run from the repository root::

    .venv/bin/python -m bench.bench                 # every phase (a few minutes on 2 cores)
    .venv/bin/python -m bench.bench --quick         # smoke run: smaller sets, short phases
    .venv/bin/python -m bench.bench --json results.json
    .venv/bin/python -m bench.bench --only burst,storm   # or --skip memory,cli

Everything talks to 127.0.0.1 only. Every phase is bounded by a request count or a duration; every process the
bench starts is stopped by its PID in a ``finally`` block. The phases live in ``bench/phases/`` (one module each,
run in the order of :data:`PHASES`); the shared parts in ``bench/infra/``. bench/README.md explains each figure.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.infra.client import Client
from bench.infra.content import BURST_REPO, LEGACY_REPO, MEM_REPO, STORM_REPO, ContentPusher, SetSpec
from bench.infra.context import BENCH_TAG_TTL, Context, Settings
from bench.infra.util import log, machine
from bench.phases import burst, cli, cold, deadline, info, legacy, memory, replicas, storm, throughput, warm
from tests.support.referee import Pki
from tests.support.registry import RegistryProcess

# Phases on the main server (``run(ctx, client)``), then phases that start their own processes (``run(ctx)``).
MAIN_PHASES = [cold, warm, throughput, info, memory, legacy]
OWN_PHASES = [burst, storm, deadline, cli, replicas]
PHASES = [p.NAME for p in MAIN_PHASES + OWN_PHASES]


def content_specs(s: Settings) -> list[SetSpec]:
    wanted = set(s.phases)
    specs = []
    if wanted & {"memory", "deadline"}:
        specs.append(SetSpec("mem", MEM_REPO, "m", s.memory_verdicts))
    if "legacy" in wanted:
        specs.append(SetSpec("legacy", LEGACY_REPO, "l", s.legacy_images))
    if wanted & {"burst", "replicas"}:
        specs.append(SetSpec("burst", BURST_REPO, "b", s.burst_images, bad_every=20))
    if wanted & {"storm", "replicas"}:
        specs.append(SetSpec("storm", STORM_REPO, "s", s.storm_cold, bad_every=10))
    return specs


def _settle() -> None:
    """Collect, then freeze what earlier phases left (results, content sets): the bench's own garbage collections
    during a phase then scan only that phase's objects, so they stay short beside the latencies they would inflate."""
    gc.collect()
    gc.freeze()


async def drive(ctx: Context) -> None:
    s = ctx.settings
    main_phases = [p for p in MAIN_PHASES if p.NAME in s.phases]
    if main_phases:
        cache = {"verdictMaxEntries": 20000, "verdictTtl": "1h", "tagTtl": f"{BENCH_TAG_TTL:g}s"}
        ctx.main = await ctx.start_server("referee", ctx.config(cache=cache))
        ctx.report.results["rssStartMiB"] = ctx.main.memory_mib()
        async with Client([ctx.main.url], ctx.pki.client_context(), s.workers) as client:
            await client.connect_all()
            for phase in main_phases:
                _settle()
                started = time.perf_counter()
                await phase.run(ctx, client)
                ctx.report.results.setdefault("phaseSeconds", {})[phase.NAME] = round(time.perf_counter() - started, 1)
        ctx.report.results["mainServerExitCode"] = ctx.stop_server(ctx.main)
        ctx.main = None
    for phase in OWN_PHASES:
        if phase.NAME in s.phases:
            _settle()
            started = time.perf_counter()
            await phase.run(ctx)
            ctx.report.results.setdefault("phaseSeconds", {})[phase.NAME] = round(time.perf_counter() - started, 1)


def parse_args(argv: Sequence[str] | None) -> tuple[Settings, argparse.Namespace]:
    p = argparse.ArgumentParser(prog="bench", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--images", type=int, help="signed images for the cold/warm phases (default 200; quick 50)")
    p.add_argument("--memory-verdicts", type=int, help="distinct verdicts for the RSS figure (default 10000)")
    p.add_argument("--legacy-images", type=int, help="unseen images for the legacy-only cold pass (default 50)")
    p.add_argument("--warm-requests", type=int, help="sequential warm 1-key requests (default 2000)")
    p.add_argument("--duration", type=float, help="seconds per throughput measurement (default 6; quick 2)")
    p.add_argument("--slices", type=int, help="Referee/no-op alternations per measurement (default 3; quick 1)")
    p.add_argument("--workers", type=int, default=4, help="concurrent client connections (default 4)")
    p.add_argument("--batch", type=int, default=50, help="keys per request in the batch phases (default 50)")
    p.add_argument("--push-threads", type=int, default=8, help="threads pushing registry content (default 8)")
    p.add_argument("--memory-sample", type=int, default=1000, help="keys re-sent to check the verdict cache")
    p.add_argument("--burst-images", type=int, help="never-seen images in the burst (default 1000; quick 200)")
    p.add_argument("--storm-seconds", type=float, default=10.0, help="length of each 429 storm (default 10)")
    p.add_argument("--storm-cold", type=int, help="never-seen images sent during a storm (default 200; quick 50)")
    p.add_argument("--deadline-keys", type=int, help="cold keys per large request (default 1000; quick 300)")
    p.add_argument("--deadline-repeats", type=int, help="large requests per endpoint (default 3; quick 1)")
    p.add_argument("--cli-runs", type=int, help="referee verify runs for the CLI figure (default 5; quick 3)")
    p.add_argument("--replicas", type=int, default=3, help="referee serve replicas in the replica phase")
    p.add_argument("--only", help=f"comma-separated phases to run (of {','.join(PHASES)})")
    p.add_argument("--skip", help="comma-separated phases to skip")
    p.add_argument("--quick", action="store_true", help="smoke run: small sets, short phases")
    p.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    p.add_argument("--keep", metavar="DIR", help="work in DIR and keep it (configurations, logs, workloads)")
    p.add_argument("--strict", action="store_true", help="exit 1 when any target is missed")
    args = p.parse_args(argv)
    quick = args.quick

    def pick(value: int | float | None, full: float, small: float) -> Any:
        return value if value is not None else (small if quick else full)

    phases = PHASES if not args.only else [x.strip() for x in args.only.split(",") if x.strip()]
    skip = {x.strip() for x in (args.skip or "").split(",") if x.strip()}
    unknown = (set(phases) | skip) - set(PHASES)
    if unknown:
        p.error(f"unknown phase(s) {', '.join(sorted(unknown))}; phases are {', '.join(PHASES)}")
    settings = Settings(
        images=int(pick(args.images, 200, 50)),
        memory_verdicts=int(pick(args.memory_verdicts, 10000, 1000)),
        legacy_images=int(pick(args.legacy_images, 50, 20)),
        warm_requests=int(pick(args.warm_requests, 2000, 500)),
        duration=float(pick(args.duration, 6.0, 2.0)),
        slices=max(1, int(pick(args.slices, 3, 1))),
        workers=max(1, args.workers),
        batch=max(1, args.batch),
        push_threads=max(1, args.push_threads),
        memory_sample=max(1, args.memory_sample),
        burst_images=int(pick(args.burst_images, 1000, 200)),
        burst_requests=0,
        storm_seconds=float(args.storm_seconds),
        storm_cold=int(pick(args.storm_cold, 200, 50)),
        deadline_keys=int(pick(args.deadline_keys, 1000, 300)),
        deadline_repeats=int(pick(args.deadline_repeats, 3, 1)),
        cli_runs=int(pick(args.cli_runs, 5, 3)),
        replicas=max(1, args.replicas),
        quick=quick,
        phases=[x for x in PHASES if x in phases and x not in skip],
    )
    settings.burst_requests = max(1, settings.burst_images // settings.batch)
    if settings.images < settings.batch:
        p.error(f"--images ({settings.images}) must be at least --batch ({settings.batch})")
    if "deadline" in settings.phases and 2 * settings.deadline_keys * settings.deadline_repeats > max(
        settings.memory_verdicts, 1
    ):
        p.error("--memory-verdicts must be at least 2 x --deadline-keys x --deadline-repeats")
    if min(settings.images, settings.memory_verdicts, settings.legacy_images, settings.warm_requests) < 1:
        p.error("counts must be positive")
    return settings, args


def main(argv: Sequence[str] | None = None) -> int:
    settings, args = parse_args(argv)
    info = machine()
    log(f"machine: nproc={info['nproc']} cpu={info['cpu']!r} python {info['python']} load {info['loadAverageAtStart']}")
    log(f"phases: {', '.join(settings.phases)}")
    wall = time.perf_counter()
    with contextlib.ExitStack() as stack:
        if args.keep:
            directory = Path(args.keep).resolve()
            directory.mkdir(parents=True, exist_ok=True)
        else:
            directory = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="referee-bench-")))
        registry = RegistryProcess()
        ctx: Context | None = None
        try:
            registry.start()
            log(f"registry {registry.url} (pid {registry.pid})")
            pusher = ContentPusher(registry, directory, settings.push_threads)
            content = pusher.push(settings.images, content_specs(settings))
            log(f"setup: pushed content in {content.seconds:.1f}s (~{content.http_requests:,} registry requests)")
            ctx = Context(settings, directory, registry, content, Pki.create(directory / "pki"))
            asyncio.run(drive(ctx))
        finally:
            if ctx is not None:
                ctx.stop_all()
            registry.stop()
    report = ctx.report
    report.deadline_rows()
    report.results["setupSeconds"] = round(content.seconds, 1)
    report.results["totalSeconds"] = round(time.perf_counter() - wall, 1)
    info["loadAverageAtEnd"] = [round(x, 2) for x in __import__("os").getloadavg()]
    print()
    print(
        f"Referee benchmark, {info['date']}: nproc {info['nproc']}, {info['cpu'] or 'cpu ?'}, "
        f"Python {info['python']}, referee {info['revision']}"
    )
    print(
        f"phases {','.join(settings.phases)}; {settings.images} images, {settings.workers} client workers; setup "
        f"{content.seconds:.1f}s, total {report.results['totalSeconds']:.1f}s; load average at start "
        f"{info['loadAverageAtStart'][0]:.2f}, at end {info['loadAverageAtEnd'][0]:.2f}"
    )
    print(report.format())
    print()
    if args.json:
        doc = {
            "machine": info,
            "settings": settings.__dict__,
            "figures": report.figures,
            "missed": report.missed,
            "table": report.rows,
            "deadlines": report.deadlines,
            "results": report.results,
        }
        Path(args.json).write_text(json.dumps(doc, indent=2) + "\n")
        log(f"wrote {args.json}")
    if not report.ok:
        log(f"{len(report.missed)} target(s) missed (MISS above)")
    return 1 if (args.strict and not report.ok) else 0


if __name__ == "__main__":
    sys.exit(main())
