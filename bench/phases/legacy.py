"""legacy: the main server's configuration rewritten with ``artifactTypes: [cosign legacy .sig]``; once
``/readyz`` shows the new generation, a cold 1-key pass over the ``bench/legacy`` tags, which no phase has touched.
Referee then skips the referrers listing: 3 registry requests per verification (HEAD, ``.sig`` manifest, payload)."""

from __future__ import annotations

from bench.infra.client import Client
from bench.infra.context import BENCH_TAG_TTL, Context
from bench.infra.drive import sequential
from bench.infra.server import referee_config
from bench.infra.util import log
from tests.support.referee import write_config

NAME = "legacy"
TARGET_COLD_REQS_LEGACY = 3.0


async def run(ctx: Context, client: Client) -> None:
    main = ctx.main
    assert main is not None
    _, ready = await main.readyz()
    log("reloading the configuration with artifactTypes = [cosign legacy .sig] only")
    config = referee_config(
        ctx.pki,
        [ctx.host],
        ctx.content.key_file,
        main.port,
        main.health_port,
        legacy_only=True,
        cache={"verdictMaxEntries": 20000, "verdictTtl": "1h", "tagTtl": f"{BENCH_TAG_TTL:g}s"},
    )
    write_config(main.config_path, config)
    generation = await main.wait_generation(ready["configGeneration"], 20.0)
    keys = ctx.keys("legacy")
    log(f"generation {generation} in force; cold pass over {len(keys)} unseen images")
    legacy = await sequential(client, [main], ctx.registry.pid, keys, "cold legacy-only", deadline=3.0)
    r = ctx.report
    r.results["coldLegacyOnly"] = legacy.summary()
    r.deadline("cold legacy-only", legacy)
    n = legacy.keys
    total = legacy.registry.get("total", 0)
    r.section("cold verification, legacy-only types (main server after a reload)")
    r.row(
        "cold registry req/verification, legacy-only types",
        f"{total / n:.3f} (HEAD {legacy.registry.get('HEAD', 0) / n:.2f}, GET {legacy.registry.get('GET', 0) / n:.2f})",
        f"= {TARGET_COLD_REQS_LEGACY:g} (minimum)",
        total == TARGET_COLD_REQS_LEGACY * n,
    )
