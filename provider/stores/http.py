"""HTTP for evidence stores (Grafeas, lookaside servers), with the registry client's rules.

Async (aiohttp), every body read against a cap, each attempt bounded by ``requestTimeout`` and by the current
deadline, retries only for connection failures, 429 and 5xx (and never past the deadline), TLS verified (a
configured CA bundle or the system's; plain HTTP only when configured), redirects followed by hand: within the
same origin, or to an HTTPS host in ``registries.allow``, without the ``Authorization`` header.
"""

from __future__ import annotations

import asyncio
import random
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urljoin, urlsplit

import aiohttp
import structlog
from yarl import URL

from provider import deadline, metrics
from provider.config import RegistriesConfig
from provider.confignode import Node
from provider.errors import ArtifactTooLargeError, DeadlineExceededError, StoreError, StoreUnavailableError
from provider.limits import read_limited
from provider.registry.client import MAX_RETRY_AFTER, client_context, parse_retry_after
from provider.registry.urls import safe_authority

log = structlog.get_logger("referee.stores")

MAX_REDIRECTS = 3
MAX_ERROR_BODY = 16 * 1024


@dataclass(frozen=True, slots=True)
class HttpSettings:
    """Connection settings of one store endpoint (``caFile``/``ca``, ``plainHttp``, timeouts, attempts)."""

    ca_pem: bytes | None = None
    plain_http: bool = False
    request_timeout: float = 5.0
    max_attempts: int = 2


def parse_http_settings(node: Node, url: str | None, url_key: str = "url") -> HttpSettings:
    ca_pem = node.ca_bundle()
    plain_http = node.flag("plain_http", False)
    scheme = urlsplit(url).scheme if url else ""
    if scheme == "http" and not plain_http:
        node.error("plain HTTP must be enabled explicitly with plainHttp: true", url_key)
    if plain_http and scheme == "https":
        node.error("plainHttp: true contradicts an https URL", "plain_http")
    if plain_http and ca_pem is not None:
        node.error("plainHttp and a CA bundle contradict each other", "plain_http")
    return HttpSettings(
        ca_pem=ca_pem,
        plain_http=plain_http,
        request_timeout=node.duration("request_timeout", 5.0, minimum=0.01),
        max_attempts=node.integer("max_attempts", 2, minimum=1, maximum=10),
    )


@dataclass(slots=True)
class HttpAnswer:
    status: int
    headers: Mapping[str, str]
    body: bytes
    url: str


def _origin(url: str) -> tuple[str, str]:
    parts = urlsplit(url)
    return parts.scheme, parts.netloc


class StoreHttp:
    """One endpoint's client; the session is created on first use and closed with the store."""

    def __init__(self, store: str, settings: HttpSettings, registries: RegistriesConfig) -> None:
        self._store = store
        self._settings = settings
        self._registries = registries
        self._session: aiohttp.ClientSession | None = None
        self._ssl: ssl.SSLContext | bool = self._ssl_context()

    def _ssl_context(self) -> ssl.SSLContext | bool:
        return client_context(self._settings.ca_pem, self._settings.plain_http)

    def _get_session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=16, ttl_dns_cache=60),
                trust_env=False,
                auto_decompress=False,
                headers={"User-Agent": "referee/0.1"},
            )
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _timeout(self) -> float:
        left = deadline.remaining()
        if left is None:
            return self._settings.request_timeout
        if left <= 0:
            raise DeadlineExceededError(f"deadline reached before {self._store} answered")
        return min(self._settings.request_timeout, left)

    async def get(self, url: str, *, headers: Mapping[str, str], max_bytes: int, what: str) -> HttpAnswer:
        """GET with retries; returns any final status other than 429/5xx (the caller reads 4xx)."""
        attempt = 0
        while True:
            attempt += 1
            try:
                answer = await self._follow(url, headers, max_bytes, what)
            except (TimeoutError, aiohttp.ClientError, OSError) as exc:
                if isinstance(exc, aiohttp.ClientConnectorCertificateError | ssl.SSLCertVerificationError):
                    raise StoreError(f"{self._store}: TLS certificate of {urlsplit(url).netloc} not trusted") from None
                if attempt >= self._settings.max_attempts:
                    raise StoreUnavailableError(
                        f"{self._store}: {what} failed after {attempt} attempts ({type(exc).__name__})"
                    ) from None
                await self._backoff(attempt, what)
                continue
            if answer.status == 429 or answer.status >= 500:
                if attempt >= self._settings.max_attempts:
                    raise StoreUnavailableError(
                        f"{self._store} answered {answer.status} to {what} ({attempt} attempts)"
                    )
                await self._backoff(attempt, what, parse_retry_after(answer.headers.get("Retry-After")))
                continue
            return answer

    async def _backoff(self, attempt: int, what: str, retry_after: float | None = None) -> None:
        """Exponential back-off with jitter, or the server's ``Retry-After`` (capped), never past the deadline."""
        if retry_after is not None:
            delay = min(retry_after, MAX_RETRY_AFTER)
        else:
            delay = min(1.0, 0.1 * 2 ** (attempt - 1)) * random.uniform(0.8, 1.2)  # noqa: S311
        left = deadline.remaining()
        if left is not None and delay >= left - 0.01:
            if retry_after is not None:
                raise StoreUnavailableError(f"{self._store} asked to retry {what} in {delay:.2f}s, beyond the deadline")
            raise DeadlineExceededError(f"no time left to retry {what} on {self._store} (attempt {attempt})")
        await asyncio.sleep(delay)

    async def _follow(self, url: str, headers: Mapping[str, str], max_bytes: int, what: str) -> HttpAnswer:
        origin = _origin(url)
        session = self._get_session()
        for _ in range(MAX_REDIRECTS + 1):
            same = _origin(url) == origin
            sent = dict(headers) if same else {k: v for k, v in headers.items() if k.lower() != "authorization"}
            sent["Accept-Encoding"] = "identity"
            proxy_url, proxy_headers = self._registries.proxy.arguments(url, sent)
            async with session.get(
                URL(url, encoded=True),
                headers=sent,
                ssl=self._ssl if same else True,
                allow_redirects=False,
                timeout=aiohttp.ClientTimeout(total=self._timeout()),
                proxy=proxy_url,
                proxy_headers=proxy_headers,
            ) as resp:
                metrics.REGISTRY_REQUESTS.labels(urlsplit(url).netloc, "GET", str(resp.status)).inc()
                if resp.status in (301, 302, 303, 307, 308) and "Location" in resp.headers:
                    url = self._redirect(url, resp.headers["Location"], origin, what)
                    continue
                if resp.status >= 300:
                    body = await resp.content.read(MAX_ERROR_BODY)
                else:
                    body = await read_limited(resp.content, resp.content_length, max_bytes, what, ArtifactTooLargeError)
                return HttpAnswer(resp.status, dict(resp.headers), body, str(resp.url))
        raise StoreError(f"{self._store}: too many redirects for {what}")

    def _redirect(self, url: str, location: str, origin: tuple[str, str], what: str) -> str:
        target = urljoin(url, location)
        host = safe_authority(target)
        if host is None:
            raise StoreError(f"{self._store}: refusing redirect of {what} to {target[:200]!r}")
        if _origin(target) == origin:
            return target
        if urlsplit(target).scheme != "https":
            raise StoreError(f"{self._store}: refusing redirect of {what} to non-HTTPS {target}")
        if not self._registries.is_allowed(host, ""):
            raise StoreError(f"{self._store}: refusing redirect of {what} to {host}, which is not in registries.allow")
        log.debug("store_redirect", store=self._store, target=host)
        return target
