"""The bench's Gatekeeper: ProviderRequests over TLS 1.3 with a client certificate, either on keep-alive
connections (one per worker) or, as Gatekeeper v3.21's external-data client does, on a fresh TCP + TLS connection
for every request (``fresh=True``). With several base URLs (replicas) each request goes to one picked at random,
as kube-proxy spreads connections over a Service's endpoints."""

from __future__ import annotations

import json
import random
import ssl
import time
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from bench.infra.util import BenchError
from tests.support.referee import provider_request

CLIENT_TIMEOUT = 15.0


@dataclass
class Reply:
    """One ProviderResponse: ``latency`` from before connecting (fresh) or sending (keep-alive) to the whole body."""

    keys: list[str]
    latency: float
    values: dict[str, Any]
    item_errors: dict[str, str]
    system_error: str
    url: str
    raw: bytes = b""

    @property
    def allowed(self) -> set[str]:
        return {k for k, v in self.values.items() if isinstance(v, dict) and v.get("allowed") is True}

    @property
    def denied(self) -> set[str]:
        return {k for k, v in self.values.items() if isinstance(v, dict) and v.get("allowed") is not True}

    @property
    def answered(self) -> set[str]:
        """Keys with an item (a verdict or an item error): Gatekeeper caches these."""
        return set(self.values) | set(self.item_errors)

    @property
    def unanswered(self) -> list[str]:
        answered = self.answered
        return [k for k in dict.fromkeys(self.keys) if k not in answered]

    def problems(self) -> list[str]:
        out = [f"{k}: {e}" for k, e in self.item_errors.items()]
        out += [f"{k}: {v.get('reason')}" for k, v in self.values.items() if isinstance(v, dict) and not v["allowed"]]
        return out


def check_all_allowed(reply: Reply, what: str) -> None:
    """Abort the run unless every key was allowed (the phases whose images are all signed by the trusted key)."""
    expected = len(set(reply.keys))
    if reply.system_error or reply.item_errors or len(reply.allowed) != expected:
        raise BenchError(
            f"{what}: expected {expected} allowed, got {len(reply.allowed)}; "
            f"errors={reply.problems()[:3]} systemError={reply.system_error[:300]!r}"
        )


@dataclass
class Client:
    """``workers`` keep-alive connections per base URL, and a fresh-connection session."""

    base_urls: list[str]
    ssl_ctx: ssl.SSLContext
    workers: int = 1
    timeout: float = CLIENT_TIMEOUT
    requests: int = 0
    _keepalive: dict[tuple[int, str], aiohttp.ClientSession] = field(default_factory=dict)
    _fresh: aiohttp.ClientSession | None = None
    _rng: random.Random = field(default_factory=lambda: random.Random(12))

    async def __aenter__(self) -> Client:
        timeout = aiohttp.ClientTimeout(total=self.timeout)
        for url in self.base_urls:
            for worker in range(self.workers):
                connector = aiohttp.TCPConnector(limit=1, ssl=self.ssl_ctx, keepalive_timeout=300)
                self._keepalive[(worker, url)] = aiohttp.ClientSession(
                    connector=connector, trust_env=False, timeout=timeout
                )
        connector = aiohttp.TCPConnector(limit=0, ssl=self.ssl_ctx, force_close=True)
        self._fresh = aiohttp.ClientSession(connector=connector, trust_env=False, timeout=timeout)
        return self

    async def __aexit__(self, *exc: object) -> None:
        for session in self._keepalive.values():
            await session.close()
        if self._fresh is not None:
            await self._fresh.close()

    def pick(self) -> str:
        return self.base_urls[0] if len(self.base_urls) == 1 else self._rng.choice(self.base_urls)

    async def post(
        self, keys: list[str], *, worker: int = 0, fresh: bool = False, path: str = "/verify", url: str | None = None
    ) -> Reply:
        """POST a ProviderRequest; raises :class:`BenchError` on a non-200 or a malformed body."""
        base = url or self.pick()
        body = json.dumps(provider_request(keys)).encode()
        session = self._fresh if fresh else self._keepalive[(worker % self.workers, base)]
        assert session is not None
        started = time.perf_counter()
        async with session.post(base + path, data=body, headers={"Content-Type": "application/json"}) as resp:
            raw = await resp.read()
            latency = time.perf_counter() - started
            status = resp.status
        self.requests += 1
        if status != 200:
            raise BenchError(f"POST {path} -> HTTP {status}: {raw[:300]!r}")
        doc = json.loads(raw)["response"]
        values: dict[str, Any] = {}
        errors: dict[str, str] = {}
        for item in doc.get("items", []):
            if item.get("error"):
                errors[item["key"]] = item["error"]
            else:
                values[item["key"]] = item.get("value")
        return Reply(keys, latency, values, errors, doc.get("systemError", ""), base, raw)

    async def verify(self, keys: list[str], **kwargs: Any) -> Reply:
        return await self.post(keys, path="/verify", **kwargs)

    async def mutate(self, keys: list[str], **kwargs: Any) -> Reply:
        return await self.post(keys, path="/mutate", **kwargs)

    async def connect_all(self) -> None:
        """Open every keep-alive connection with an empty ProviderRequest (no verification work)."""
        for url in self.base_urls:
            for worker in range(self.workers):
                await self.post([], worker=worker, url=url)
