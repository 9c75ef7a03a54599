"""What every phase shares: the settings, the registry and its content, the PKI, the results report, the main
``referee serve`` process, and a factory for further Referee processes that are all stopped at the end."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.infra.content import Content
from bench.infra.metrics import Phase
from bench.infra.server import ServerProcess, referee_config
from bench.infra.table import Report
from bench.infra.util import free_ports, log
from tests.support.referee import Pki
from tests.support.registry import RegistryProcess

# "Warm" means the tag resolution and the verdict are both cached: the main server keeps tags for the whole run.
# With the default cache.tagTtl (10 s) each tag costs one HEAD per 10 s, shared by all requests for it.
BENCH_TAG_TTL = 300.0


@dataclass
class Settings:
    images: int
    memory_verdicts: int
    legacy_images: int
    warm_requests: int
    duration: float
    slices: int
    workers: int
    batch: int
    push_threads: int
    memory_sample: int
    burst_images: int
    burst_requests: int
    storm_seconds: float
    storm_cold: int
    deadline_keys: int
    deadline_repeats: int
    cli_runs: int
    replicas: int
    quick: bool
    phases: list[str]


@dataclass
class Context:
    settings: Settings
    directory: Path
    registry: RegistryProcess
    content: Content
    pki: Pki
    report: Report = field(default_factory=Report)
    main: ServerProcess | None = None
    phases: dict[str, Phase] = field(default_factory=dict)
    servers: list[ServerProcess] = field(default_factory=list)
    children: list[Any] = field(default_factory=list)

    @property
    def host(self) -> str:
        return self.registry.host

    def keys(self, name: str, *, host: str | None = None, by_digest: bool = False) -> list[str]:
        return self.content[name].keys(host or self.host, by_digest=by_digest)

    def config(
        self,
        *,
        hosts: list[str] | None = None,
        provider_timeout: str = "3s",
        cache: dict[str, Any] | None = None,
        extra: dict[str, Any] | None = None,
        legacy_only: bool = False,
        port: int | None = None,
        health_port: int | None = None,
    ) -> dict[str, Any]:
        if port is None or health_port is None:
            port, health_port = free_ports(2)
        return referee_config(
            self.pki,
            hosts or [self.host],
            self.content.key_file,
            port,
            health_port,
            legacy_only=legacy_only,
            provider_timeout=provider_timeout,
            cache=cache,
            extra=extra,
        )

    async def start_server(self, name: str, config: dict[str, Any], *, log_level: str = "warning") -> ServerProcess:
        """Write ``config``, start ``referee serve`` with it and wait for ``/readyz``; stopped at the end of the run
        (or earlier by :meth:`stop_server`)."""
        server = ServerProcess.create(self.directory, name, config, log_level=log_level)
        self.servers.append(server)
        server.start()
        ready = await server.wait_ready()
        log(f"referee {name!r} pid {server.pid} ready (log level {log_level}, generation {ready['configGeneration']})")
        return server

    def stop_server(self, server: ServerProcess) -> int | None:
        code = server.stop()
        if server in self.servers:
            self.servers.remove(server)
        return code

    def stop_all(self) -> None:
        for server in list(self.servers):
            self.stop_server(server)
        for child in reversed(self.children):
            child.stop()
        self.children.clear()
