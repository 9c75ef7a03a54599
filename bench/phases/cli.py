"""cli: ``referee verify --config FILE REF`` of one signed ``bench/app`` image against the registry, as a user types
it (the console script, a new process each time): the wall-clock time from start to exit, median of
``--cli-runs``. The exit status must be 0 (allowed)."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from bench.infra.context import Context
from bench.infra.util import BenchError, log, median, proxy_free_env
from tests.support.referee import write_config

NAME = "cli"
TARGET_CLI_S = 0.4


async def run(ctx: Context) -> None:
    config = write_config(ctx.directory / "referee-cli.yaml", ctx.config())
    script = Path(sys.prefix) / "bin" / "referee"
    ref = ctx.keys("app")[0]
    argv = [str(script), "verify", "--config", str(config), ref]
    times = []
    log(f"cli: {' '.join(argv[1:3])} ... {ref}, {ctx.settings.cli_runs} runs")
    subprocess.run(argv, capture_output=True, env=proxy_free_env(), timeout=60)  # page cache, .pyc files
    for _ in range(ctx.settings.cli_runs):
        started = time.perf_counter()
        done = subprocess.run(argv, capture_output=True, env=proxy_free_env(), timeout=60)
        times.append(time.perf_counter() - started)
        if done.returncode != 0:
            raise BenchError(f"referee verify exited {done.returncode}: {done.stdout!r} {done.stderr!r}")
    value = median(times)
    r = ctx.report
    r.results["cli"] = {"runs": [round(t, 4) for t in times], "median": round(value, 4)}
    r.section("CLI start")
    r.row(
        f"referee verify, one signed image (median of {len(times)})",
        f"{value:.3f} s (min {min(times):.3f}, max {max(times):.3f})",
        f"<= {TARGET_CLI_S:g} s",
        value <= TARGET_CLI_S,
    )
    r.figure("cli_verify_s", value)
