"""replicas: not yet available (needs ``cache.shared``, issue #12)."""

from __future__ import annotations

from bench.infra.context import Context
from bench.infra.util import log

NAME = "replicas"


async def run(ctx: Context) -> None:
    log("replicas: skipped, this build has no cache.shared")
    ctx.report.section("replicas: not measured (cache.shared is not in this build)")
