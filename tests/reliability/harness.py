"""What every reliability test needs: a Gatekeeper-like client and the ProviderResponse shape it checks."""

from __future__ import annotations

import asyncio
import json
import ssl
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from tests.support.referee import provider_request

API_VERSION = "externaldata.gatekeeper.sh/v1beta1"


class LateAnswerError(AssertionError):
    """The provider did not answer within Gatekeeper's timeout."""


def check_response(doc: object, keys: list[str] | None = None) -> dict[str, Any]:
    """Assert ``doc`` is a well-formed ProviderResponse (docs/protocol.md) and return it. With ``keys``, every
    item names a requested key, items keep the request order, and every key is answered or named in systemError."""
    assert isinstance(doc, dict), doc
    assert doc.get("apiVersion") == API_VERSION, doc
    assert doc.get("kind") == "ProviderResponse", doc
    response = doc.get("response")
    assert isinstance(response, dict), doc
    assert response.get("idempotent") is True, doc
    items = response.get("items")
    assert isinstance(items, list), doc
    for item in items:
        assert isinstance(item, dict) and isinstance(item.get("key"), str), item
        assert ("value" in item) != ("error" in item), item
        if "error" in item:
            assert isinstance(item["error"], str) and item["error"], item
    system_error = response.get("systemError", "")
    assert isinstance(system_error, str), doc
    assert set(response) <= {"idempotent", "items", "systemError"}, doc
    if keys is not None:
        answered = [item["key"] for item in items]
        assert answered == [k for k in keys if k in set(answered)], (answered, keys)
        for key in dict.fromkeys(keys):
            assert key in answered or key in system_error or len(system_error) >= 4000, (key, doc)
    return doc


@dataclass
class Answer:
    doc: dict[str, Any]
    elapsed: float

    @property
    def items(self) -> dict[str, dict[str, Any]]:
        return {item["key"]: item for item in self.doc["response"]["items"]}

    @property
    def system_error(self) -> str:
        return str(self.doc["response"].get("systemError", ""))

    def allowed(self, key: str) -> bool:
        item = self.items.get(key)
        return item is not None and isinstance(item.get("value"), dict) and item["value"].get("allowed") is True

    def verdict(self, key: str) -> dict[str, Any] | None:
        item = self.items.get(key)
        value = item.get("value") if item else None
        return value if isinstance(value, dict) else None

    def error(self, key: str) -> str | None:
        item = self.items.get(key)
        return item.get("error") if item else None


class GatekeeperClient:
    """Calls Referee the way Gatekeeper does: POST over TLS 1.3 with its client certificate on kept-alive
    connections, giving up after the Provider's ``timeout`` (``providerTimeout``); a late answer raises
    :class:`LateAnswerError`. Use ``async with`` (or :meth:`close`) to release the connections."""

    def __init__(self, url: str, ssl_ctx: ssl.SSLContext, timeout: float) -> None:
        self.url = url
        self.ssl_ctx = ssl_ctx
        self.timeout = timeout
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> GatekeeperClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                trust_env=False,
                timeout=aiohttp.ClientTimeout(total=self.timeout),
                connector=aiohttp.TCPConnector(limit=0, keepalive_timeout=60),
            )
        return self._session

    async def post(self, path: str, data: bytes, headers: Mapping[str, str] | None = None) -> Answer:
        started = time.monotonic()
        try:
            async with self._client().post(
                self.url + path,
                data=data,
                headers={"Content-Type": "application/json", **(headers or {})},
                ssl=self.ssl_ctx,
            ) as resp:
                assert resp.status == 200, resp.status
                raw = await resp.read()
        except TimeoutError:
            raise LateAnswerError(f"no answer within {self.timeout}s") from None
        return Answer(json.loads(raw), time.monotonic() - started)

    async def verify(self, keys: list[str]) -> Answer:
        answer = await self.post("/verify", json.dumps(provider_request(keys)).encode())
        check_response(answer.doc, keys)
        return answer


async def eventually(check: Callable[[], Awaitable[bool]], timeout: float = 30.0, interval: float = 0.1) -> None:
    """Wait until ``check()`` is true (event-driven tests poll state, they never assert on speed)."""
    deadline = time.monotonic() + timeout
    while True:
        if await check():
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not reached within {timeout}s")
        await asyncio.sleep(interval)


async def scrape(health_url: str) -> dict[str, float]:
    """Every sample of ``/metrics`` as ``name{labels}`` -> value (labels sorted)."""
    async with aiohttp.ClientSession(trust_env=False) as session, session.get(health_url + "/metrics") as resp:
        text = await resp.text()
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()))
            out[f"{sample.name}{{{labels}}}"] = sample.value
    return out


async def health(health_url: str, path: str) -> tuple[int, dict[str, Any]]:
    async with aiohttp.ClientSession(trust_env=False) as session, session.get(health_url + path) as resp:
        return resp.status, await resp.json(content_type=None)
