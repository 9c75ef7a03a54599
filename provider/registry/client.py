"""Async OCI distribution client: manifests, blobs, referrers, auth, limits, retries.

Every manifest and blob is checked against its digest; every body is read against a size cap; TLS is verified
unless a registry is explicitly configured as plain HTTP; retries honour ``Retry-After`` but never outlive the
current deadline (:mod:`provider.deadline`).
"""

from __future__ import annotations

import asyncio
import dataclasses
import email.utils
import json
import random
import ssl
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode, urljoin, urlsplit

import aiohttp
import structlog

from provider import deadline, metrics
from provider import mediatypes as mt
from provider.cache import ContentCache
from provider.config import Credentials, LimitsConfig, RegistriesConfig, RegistryHostConfig
from provider.errors import (
    ArtifactTooLargeError,
    AuthDeniedError,
    AuthUnavailableError,
    DeadlineExceededError,
    DigestMismatchError,
    ManifestInvalidError,
    NotFoundError,
    ProviderError,
    RegistryError,
    RegistryNotAllowedError,
    RegistryUnavailableError,
    UnsupportedError,
)
from provider.fairness import SharedSlots
from provider.limits import read_limited
from provider.oci import (
    Descriptor,
    Manifest,
    ReferrerListing,
    listed_referrers,
    parse_index_descriptors,
    parse_manifest,
    unwanted_types,
)
from provider.reference import ImageRef, compute_digest, parse_digest, referrers_tag, verify_digest
from provider.registry.auth import (
    Challenge,
    HostAuthState,
    TokenCache,
    basic_header,
    parse_challenge,
    pull_scope,
)
from provider.registry.credentials import CredentialStore
from provider.registry.realms import judge_realm
from provider.registry.urls import origin as _origin
from provider.registry.urls import safe_authority

log = structlog.get_logger("referee.registry")


def _retryable(status: int) -> bool:
    return status == 429 or status >= 500


MAX_REDIRECTS = 3
MAX_ERROR_BODY = 64 * 1024
MAX_TOKEN_BODY = 64 * 1024
MAX_RETRY_AFTER = 30.0
MAX_PAUSE = 60.0
LISTING_FACTOR = 4
MAX_AUTH_STATES = 1024


@dataclass(slots=True)
class Response:
    status: int
    headers: Mapping[str, str]
    body: bytes
    url: str


@dataclass(slots=True)
class _Host:
    registry: str
    base_url: str
    ssl: ssl.SSLContext | bool
    slots: SharedSlots
    auth: HostAuthState
    settings: RegistryHostConfig
    referrers_api_unsupported_until: float = 0.0
    helper_only: bool = False
    paused_until: float = 0.0
    probe: asyncio.Future[bool] | None = None
    referrers_api_seen: bool = False


def client_context(ca_pem: bytes | None, plain_http: bool) -> ssl.SSLContext | bool:
    """TLS for an outbound connection: ``False`` for plain HTTP; else TLS 1.2+, verified against ``ca_pem`` when
    given (it replaces the system trust store), else the system's."""
    if plain_http:
        return False
    ctx = (
        ssl.create_default_context(cadata=ca_pem.decode("ascii", "replace"))
        if ca_pem is not None
        else (ssl.create_default_context())
    )
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    return ctx


def _ssl_context(settings: RegistryHostConfig) -> ssl.SSLContext | bool:
    return client_context(settings.ca_pem, settings.plain_http)


def parse_retry_after(value: str | None) -> float | None:
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def _error_summary(body: bytes) -> str:
    try:
        doc = json.loads(body)
        errors = doc.get("errors") if isinstance(doc, dict) else None
        if isinstance(errors, list) and errors and isinstance(errors[0], dict):
            first = errors[0]
            return f"{first.get('code', '')} {first.get('message', '')}".strip()[:200]
    except (ValueError, UnicodeDecodeError):
        pass
    return body[:200].decode("utf-8", "replace").strip()


def _media_type(headers: Mapping[str, str]) -> str | None:
    value = headers.get("Content-Type")
    if not value:
        return None
    return value.split(";", 1)[0].strip() or None


class RegistryClient:
    """One client per configuration generation; share it between stores and requests."""

    def __init__(
        self,
        config: RegistriesConfig,
        limits: LimitsConfig,
        content: ContentCache,
        *,
        monotonic: Any = time.monotonic,
    ) -> None:
        self.config = config
        self.limits = limits
        self.content = content
        self._monotonic = monotonic
        self._hosts: dict[str, _Host] = {}
        self._tokens = TokenCache(clock=monotonic)
        self._session: aiohttp.ClientSession | None = None
        self._token_locks: dict[tuple[str, str, str, str], asyncio.Lock] = {}
        self.credentials = CredentialStore(config, clock=monotonic)
        self._auth_states: dict[tuple[str, Credentials | None], HostAuthState] = {}
        self.request_count = 0

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _get_session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(limit=0, ttl_dns_cache=60)
            self._session = aiohttp.ClientSession(
                connector=connector,
                trust_env=False,
                auto_decompress=False,
                headers={"User-Agent": "referee/0.1"},
                trace_configs=[metrics.registry_trace()],
            )
        return self._session

    # -- hosts -----------------------------------------------------------------------------------------

    def check_allowed(self, ref: ImageRef) -> None:
        if not self.config.is_allowed(ref.registry, ref.repository):
            raise RegistryNotAllowedError(
                f"{ref.name} is not in registries.allow; Referee contacts only listed registries"
            )

    def _host_allowed(self, host: str) -> bool:
        """A host (``host[:port]`` from :func:`authority`) Referee may contact besides a registry itself (token
        realms, blob redirects)."""
        return self.config.is_allowed(host, "") or host in {h.host for h in self.config.hosts}

    def _host(self, ref: ImageRef) -> _Host:
        host = self._hosts.get(ref.registry)
        if host is not None:
            return host
        settings = self.config.host_config(ref.registry)
        scheme = "http" if settings.plain_http else "https"
        api_host = ref.api_host
        host = _Host(
            registry=ref.registry,
            base_url=f"{scheme}://{api_host}",
            ssl=_ssl_context(settings),
            slots=SharedSlots(settings.max_concurrency or self.config.max_concurrency),
            auth=HostAuthState(credentials=None),
            settings=settings,
            helper_only=ref.registry in self.config.credential_helpers or "*" in self.config.credential_helpers,
        )
        self._hosts[ref.registry] = host
        return host

    def _with_credentials(self, host: _Host, credentials: Credentials | None) -> _Host:
        """``host`` as one request sees it: with the credentials chosen for its repository
        (:class:`CredentialStore`). The auth state — the challenge learnt — is kept per registry and
        credentials, so credentials of different repositories, or rotated ones, never share it."""
        key = (host.registry, credentials)
        state = self._auth_states.get(key)
        if state is None:
            known = next((s.challenge for (r, _), s in self._auth_states.items() if r == host.registry), None)
            if len(self._auth_states) >= MAX_AUTH_STATES:
                del self._auth_states[next(iter(self._auth_states))]
            state = self._auth_states[key] = HostAuthState(credentials=credentials, challenge=known)
        return dataclasses.replace(host, auth=state, helper_only=host.helper_only and credentials is None)

    # -- auth -------------------------------------------------------------------------------------------

    def _auth_header(self, host: _Host, scope: str) -> str | None:
        creds = host.auth.credentials
        challenge = host.auth.challenge
        if challenge is None:
            if creds and creds.registry_token:
                return f"Bearer {creds.registry_token.reveal()}"
            return None
        if challenge.scheme == "basic":
            if creds and creds.username and creds.password:
                return basic_header(creds.username, creds.password.reveal())
            return None
        if challenge.scheme == "bearer":
            if creds and creds.registry_token:
                return f"Bearer {creds.registry_token.reveal()}"
            token = self._tokens.get(self._token_key(host, challenge, scope))
            return f"Bearer {token}" if token else None
        return None

    def _token_key(self, host: _Host, challenge: Challenge, scope: str) -> tuple[str, str, str, str]:
        return (host.registry, challenge.realm or "", challenge.service or "", scope)

    async def _authenticate(self, host: _Host, challenge: Challenge, scope: str) -> None:
        """React to a 401 challenge: remember it and, for bearer, obtain a token for ``scope``."""
        if host.helper_only:
            raise AuthDeniedError(
                f"{host.registry} uses a docker credential helper, which Referee cannot run; "
                "give credentials in registries.hosts or an auths entry"
            )
        host.auth.challenge = challenge
        if challenge.scheme == "basic":
            creds = host.auth.credentials
            if not (creds and creds.username and creds.password):
                raise AuthDeniedError(f"{host.registry} requires credentials and none are configured")
            return
        if challenge.scheme != "bearer":
            raise UnsupportedError(f"{host.registry}: unsupported auth scheme {challenge.scheme!r}")
        if not challenge.realm:
            raise AuthDeniedError(f"{host.registry}: bearer challenge without realm")
        key = self._token_key(host, challenge, scope)
        lock = self._token_locks.setdefault(key, asyncio.Lock())
        async with lock:
            if self._tokens.get(key):
                return
            token, expires_in = await self._fetch_token(host, challenge, scope)
            self._tokens.put(key, token, expires_in)

    async def _fetch_token(self, host: _Host, challenge: Challenge, scope: str) -> tuple[str, float]:
        realm = challenge.realm or ""
        judged = judge_realm(realm, host.registry, host.base_url, host.settings, self.config, host.auth.credentials)
        realm_host, scheme, realm_settings = judged.host, judged.scheme, judged.settings
        creds = host.auth.credentials
        ssl_ctx: ssl.SSLContext | bool
        if scheme == "http":
            ssl_ctx = False
        elif realm_host in {h.host for h in self.config.hosts}:
            ssl_ctx = _ssl_context(realm_settings)
        else:
            ssl_ctx = host.ssl if host.ssl is not False else ssl.create_default_context()
        headers: dict[str, str] = {}
        method = "GET"
        query: dict[str, str] = {}
        data: dict[str, str] | None = None
        if challenge.service:
            query["service"] = challenge.service
        query["scope"] = scope
        if creds and creds.identity_token:
            method = "POST"
            data = {
                "grant_type": "refresh_token",
                "refresh_token": creds.identity_token.reveal(),
                "client_id": "referee",
                "scope": scope,
                **({"service": challenge.service} if challenge.service else {}),
            }
            query = {}
        elif creds and creds.username and creds.password:
            headers["Authorization"] = basic_header(creds.username, creds.password.reveal())
        url = realm + ("&" if "?" in realm else "?") + urlencode(query) if query else realm
        timeout = self._attempt_timeout()
        session = self._get_session()
        proxy_url, proxy_headers = self.config.proxy.arguments(url, headers)
        try:
            async with session.request(
                method,
                url,
                headers=headers,
                data=data,
                ssl=ssl_ctx,
                allow_redirects=False,
                timeout=aiohttp.ClientTimeout(total=timeout),
                proxy=proxy_url,
                proxy_headers=proxy_headers,
            ) as resp:
                self.request_count += 1
                metrics.REGISTRY_REQUESTS.labels(realm_host, method, str(resp.status)).inc()
                body = await self._read_limited(resp, MAX_TOKEN_BODY, "token response")
                status = resp.status
        except ValueError as exc:
            raise AuthDeniedError(f"token service {realm_host}: invalid request ({type(exc).__name__})") from None
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            raise AuthUnavailableError(f"token service {realm_host} unreachable: {type(exc).__name__}") from None
        if status in (401, 403):
            raise AuthDeniedError(f"token service {realm_host} refused the credentials for {scope} ({status})")
        if status >= 500 or status == 429:
            raise AuthUnavailableError(f"token service {realm_host} answered {status}")
        if status != 200:
            raise AuthDeniedError(f"token service {realm_host} answered {status}: {_error_summary(body)}")
        try:
            doc = json.loads(body)
        except (ValueError, UnicodeDecodeError):
            raise AuthDeniedError(f"token service {realm_host} returned a non-JSON body") from None
        token = doc.get("token") or doc.get("access_token") if isinstance(doc, dict) else None
        if not isinstance(token, str) or not token:
            raise AuthDeniedError(f"token service {realm_host} returned no token")
        expires_in = doc.get("expires_in", 60)
        if not isinstance(expires_in, (int, float)) or isinstance(expires_in, bool):
            expires_in = 60
        log.debug("registry_token_obtained", registry=host.registry, scope=scope, expires_in=expires_in)
        return token, float(expires_in)

    # -- request core -------------------------------------------------------------------------------------

    def _attempt_timeout(self) -> float:
        left = deadline.remaining()
        if left is None:
            return self.config.request_timeout
        if left <= 0:
            raise DeadlineExceededError("deadline reached before the registry answered")
        return min(self.config.request_timeout, left)

    async def _read_limited(self, resp: aiohttp.ClientResponse, max_bytes: int, what: str) -> bytes:
        return await read_limited(resp.content, resp.content_length, max_bytes, what, ArtifactTooLargeError)

    async def request(
        self,
        ref: ImageRef,
        method: str,
        path: str,
        *,
        accept: str | None = None,
        max_bytes: int,
        what: str,
        url: str | None = None,
    ) -> Response:
        """Send one logical request with auth, redirects, retries and limits. Returns any final status
        other than 401 and the retryable ones; the caller interprets 404 and friends."""
        self.check_allowed(ref)
        shared = self._host(ref)  # registry-wide state (pause, slots) lives here; ``host`` is this request's view
        host = self._with_credentials(shared, await self.credentials.lookup(ref))
        scope = pull_scope(ref.repository)
        target = url or f"{host.base_url}{path}"
        attempts = 0
        authenticated_retry = False
        while True:
            await self._wait_if_paused(shared, what)
            try:
                async with host.slots.slot(ref.repository):
                    if self._monotonic() < shared.paused_until:
                        continue  # paused while this attempt waited for a slot: wait (or fail) without one
                    attempts += 1
                    resp = await self._send(host, method, target, scope, accept, max_bytes, what)
            except (TimeoutError, aiohttp.ClientError, OSError) as exc:
                if isinstance(exc, aiohttp.ClientConnectorCertificateError | ssl.SSLCertVerificationError):
                    raise RegistryError(f"{host.registry}: TLS certificate not trusted: {exc}") from None
                if attempts >= self.config.max_attempts:
                    raise RegistryUnavailableError(
                        f"{host.registry} unreachable after {attempts} attempts ({type(exc).__name__})"
                    ) from None
                await self._backoff(host, attempts, None, what)
                continue
            if resp.status == 401:
                challenge = parse_challenge(resp.headers.get("WWW-Authenticate", ""))
                if challenge is None:
                    raise AuthDeniedError(f"{host.registry} answered 401 without a challenge for {what}")
                if authenticated_retry:
                    if challenge.scheme == "bearer":
                        self._tokens.drop(self._token_key(host, challenge, scope))
                    detail = f" ({challenge.error})" if challenge.error else ""
                    raise AuthDeniedError(f"{host.registry} refused access to {ref.repository}{detail}")
                authenticated_retry = True
                stale = host.auth.challenge
                if stale is not None and stale.scheme == "bearer":
                    self._tokens.drop(self._token_key(host, stale, scope))
                await self._authenticate(host, challenge, scope)
                continue
            if _retryable(resp.status):
                retry_after = parse_retry_after(resp.headers.get("Retry-After"))
                if retry_after is not None and resp.status in (429, 503):
                    self._pause(shared, retry_after, resp.status)
                if attempts >= self.config.max_attempts:
                    raise RegistryUnavailableError(
                        f"{host.registry} answered {resp.status} to {what} after {attempts} attempts"
                    )
                await self._backoff(host, attempts, retry_after, what)
                continue
            return resp

    def paused(self, registry: str) -> bool:
        """Whether ``registry`` asked to be left alone (429/503 with ``Retry-After``) and the pause still runs."""
        host = self._hosts.get(registry)
        return host is not None and self._monotonic() < host.paused_until

    def _pause(self, host: _Host, seconds: float, status: int) -> None:
        """A registry that asked every client to wait (429/503 with ``Retry-After``) is not asked again until then:
        one request per key would turn a throttled registry into a 429 storm."""
        until = self._monotonic() + min(seconds, MAX_PAUSE)
        if until > host.paused_until:
            host.paused_until = until
            log.warning(
                "registry_paused", registry=host.registry, status=status, seconds=round(min(seconds, MAX_PAUSE), 3)
            )

    async def _wait_if_paused(self, host: _Host, what: str) -> None:
        """Before an attempt: wait out a registry pause when it ends before the deadline, else fail fast (transient)
        without sending anything. Never holds a slot."""
        wait = host.paused_until - self._monotonic()
        if wait <= 0:
            return
        left = deadline.remaining()
        if left is not None and wait >= left - 0.01:
            raise RegistryUnavailableError(
                f"{host.registry} asked clients to wait {wait:.2f}s more (Retry-After), beyond the request deadline"
            )
        await asyncio.sleep(wait)

    async def _backoff(self, host: _Host, attempt: int, retry_after: float | None, what: str) -> None:
        delay = retry_after if retry_after is not None else min(2.0, 0.1 * 2 ** (attempt - 1))
        delay = min(delay, MAX_RETRY_AFTER) * (1.0 if retry_after is not None else random.uniform(0.8, 1.2))  # noqa: S311
        left = deadline.remaining()
        if left is not None and delay >= left - 0.01:
            if retry_after is None:
                raise DeadlineExceededError(f"no time left to retry {what} on {host.registry} (attempt {attempt})")
            raise RegistryUnavailableError(
                f"{host.registry} asked to retry {what} in {delay:.2f}s, beyond the request deadline"
            )
        log.debug("registry_retry", registry=host.registry, what=what, attempt=attempt, delay=round(delay, 3))
        await asyncio.sleep(delay)

    async def _send(
        self, host: _Host, method: str, url: str, scope: str, accept: str | None, max_bytes: int, what: str
    ) -> Response:
        session = self._get_session()
        origin = _origin(host.base_url)
        for _ in range(MAX_REDIRECTS + 1):
            headers: dict[str, str] = {"Accept-Encoding": "identity"}
            if accept:
                headers["Accept"] = accept
            same_origin = _origin(url) == origin
            if same_origin:
                auth = self._auth_header(host, scope)
                if auth:
                    headers["Authorization"] = auth
            timeout = aiohttp.ClientTimeout(total=self._attempt_timeout())
            proxy_url, proxy_headers = self.config.proxy.arguments(url, headers)
            async with session.request(
                method,
                url,
                headers=headers,
                ssl=host.ssl if same_origin else True,
                allow_redirects=False,
                timeout=timeout,
                proxy=proxy_url,
                proxy_headers=proxy_headers,
            ) as resp:
                self.request_count += 1
                metrics.REGISTRY_REQUESTS.labels(host.registry, method, str(resp.status)).inc()
                if resp.status in (301, 302, 303, 307, 308) and "Location" in resp.headers:
                    next_url = urljoin(url, resp.headers["Location"])
                    target_host = safe_authority(next_url)
                    if target_host is None:
                        raise RegistryError(f"{host.registry}: refusing redirect of {what} to {next_url[:200]!r}")
                    if _origin(next_url) != origin:
                        if urlsplit(next_url).scheme != "https":
                            raise RegistryError(f"{host.registry}: refusing redirect of {what} to non-HTTPS {next_url}")
                        if not self._host_allowed(target_host):
                            raise RegistryError(
                                f"{host.registry}: refusing redirect of {what} to {target_host}, which is not in "
                                "registries.allow or registries.hosts"
                            )
                    url = next_url
                    continue
                if method == "HEAD" or resp.status >= 300:
                    limit = 0 if method == "HEAD" else MAX_ERROR_BODY
                    body = b"" if method == "HEAD" else (await resp.content.read(limit))
                else:
                    body = await self._read_limited(resp, max_bytes, what)
                return Response(resp.status, dict(resp.headers), body, str(resp.url))
        raise RegistryError(f"{host.registry}: too many redirects for {what}")

    # -- manifests and blobs --------------------------------------------------------------------------------

    def _raise_for_status(self, ref: ImageRef, resp: Response, what: str) -> None:
        if resp.status == 404:
            raise NotFoundError(f"{what} not found in {ref.name} ({_error_summary(resp.body) or 404})")
        if resp.status == 403:
            raise AuthDeniedError(f"{ref.registry} denied access to {what}: {_error_summary(resp.body)}")
        if resp.status != 200:
            raise RegistryError(f"{ref.registry} answered {resp.status} to {what}: {_error_summary(resp.body)}")

    async def resolve(self, ref: ImageRef) -> Descriptor:
        """Resolve a tag or digest to the subject's descriptor (HEAD; GET when the registry omits the digest)."""
        reference = ref.reference
        what = f"manifest {ref.name}:{reference}" if not ref.digest else f"manifest {ref.name}@{ref.digest}"
        resp = await self.request(
            ref,
            "HEAD",
            f"/v2/{ref.repository}/manifests/{reference}",
            accept=mt.ACCEPT_SUBJECT,
            max_bytes=0,
            what=what,
        )
        self._raise_for_status(ref, resp, what)
        media_type = _media_type(resp.headers)
        digest = resp.headers.get("Docker-Content-Digest")
        size_header = resp.headers.get("Content-Length")
        if ref.digest and digest and digest != ref.digest:
            raise DigestMismatchError(f"{what}: registry reports digest {digest}")
        if digest is None or size_header is None or media_type is None:
            manifest = await self.get_manifest(ref, reference, mt.ACCEPT_SUBJECT, ref.digest, what)
            return manifest.descriptor
        try:
            parse_digest(digest)
        except ProviderError:
            raise RegistryError(f"{what}: registry sent an invalid Docker-Content-Digest {digest!r}") from None
        if media_type not in mt.SUPPORTED_MANIFEST_TYPES:
            raise UnsupportedError(f"{what}: unsupported manifest media type {media_type!r}")
        size = int(size_header) if size_header.isdigit() else -1
        if size < 0 or size > self.limits.max_manifest_bytes:
            raise ArtifactTooLargeError(f"{what}: manifest size {size_header} over the limit")
        return Descriptor(media_type=media_type, digest=digest, size=size)

    async def get_manifest(
        self,
        ref: ImageRef,
        reference: str,
        accept: str,
        expected_digest: str | None,
        what: str,
        max_bytes: int | None = None,
    ) -> Manifest:
        """GET a manifest by tag or digest; verify its digest (the expected one, else the header's)."""
        if expected_digest:
            cached = self.content.get(expected_digest)
            if cached is not None:
                return parse_manifest(cached, expected_digest, None, what)
        limit = max_bytes or self.limits.max_manifest_bytes
        resp = await self.request(
            ref,
            "GET",
            f"/v2/{ref.repository}/manifests/{reference}",
            accept=accept,
            max_bytes=limit,
            what=what,
        )
        self._raise_for_status(ref, resp, what)
        header_digest = resp.headers.get("Docker-Content-Digest")
        digest = expected_digest or header_digest
        if digest:
            verify_digest(resp.body, digest, what)
            if header_digest and header_digest != digest:
                raise DigestMismatchError(f"{what}: Docker-Content-Digest {header_digest} differs from {digest}")
        else:
            digest = compute_digest(resp.body)
        manifest = parse_manifest(resp.body, digest, _media_type(resp.headers), what)
        self.content.put(digest, resp.body)
        return manifest

    async def get_blob(self, ref: ImageRef, descriptor: Descriptor, max_bytes: int, what: str) -> bytes:
        if descriptor.data is not None:
            return descriptor.data
        if descriptor.size > max_bytes:
            raise ArtifactTooLargeError(f"{what} is {descriptor.size} bytes, over the {max_bytes}-byte limit")
        cached = self.content.get(descriptor.digest)
        if cached is not None:
            return cached
        resp = await self.request(
            ref,
            "GET",
            f"/v2/{ref.repository}/blobs/{descriptor.digest}",
            max_bytes=descriptor.size,
            what=what,
        )
        self._raise_for_status(ref, resp, what)
        if len(resp.body) != descriptor.size:
            raise DigestMismatchError(f"{what}: got {len(resp.body)} bytes, descriptor says {descriptor.size}")
        verify_digest(resp.body, descriptor.digest, what)
        self.content.put(descriptor.digest, resp.body)
        return resp.body

    # -- referrers ----------------------------------------------------------------------------------------------

    def _listing_bound(self, artifact_types: frozenset[str] | None) -> int:
        """How many descriptors a listing may hold: room for ``limits.maxReferrers`` of every wanted type several
        times over (the executor examines at most that many per type; the rest only proves a cap was hit)."""
        return self.limits.max_referrers * LISTING_FACTOR * max(1, len(artifact_types or ()))

    async def list_referrers(
        self, ref: ImageRef, subject_digest: str, artifact_types: frozenset[str] | None
    ) -> ReferrerListing:
        """Referrers of ``subject_digest``: the OCI 1.1 API when the registry has it, else the tag schema;
        plus cosign's legacy ``.sig``/``.att`` tags when those synthetic types are asked for."""
        oci_types = None if artifact_types is None else artifact_types - set(mt.COSIGN_LEGACY_TYPES)
        listing = ReferrerListing(())
        if oci_types is None or oci_types:
            listing = await self._list_oci_referrers(ref, subject_digest, oci_types)
        legacy: list[Descriptor] = []
        if self.config.cosign_legacy_tags:
            for legacy_type, suffix in mt.COSIGN_LEGACY_TYPES.items():
                if artifact_types is None or legacy_type in artifact_types:
                    desc = await self._cosign_tag(ref, subject_digest, suffix, legacy_type)
                    if desc is not None:
                        legacy.append(desc)
        notes = listing.notes
        if legacy:  # evidence was found after all (cosign's tags): "no referrers listed" would only confuse
            notes = tuple(n for n in notes if not n.startswith("no referrers listed"))
        return ReferrerListing((*listing.descriptors, *legacy), notes, listing.truncated, listing.other_types)

    async def _list_oci_referrers(
        self, ref: ImageRef, subject_digest: str, artifact_types: frozenset[str] | None
    ) -> ReferrerListing:
        host = self._host(ref)
        mode = host.settings.referrers_api
        if mode == "never" or (mode == "auto" and self._monotonic() < host.referrers_api_unsupported_until):
            return await self._referrers_tag(ref, host, subject_digest, artifact_types, api=False)
        if mode == "auto" and not host.referrers_api_seen:
            probe = host.probe
            if probe is not None and not await self._probe_says_supported(probe):
                return await self._referrers_tag(ref, host, subject_digest, artifact_types, api=False)
            if probe is None:
                return await self._probe_referrers_api(ref, host, subject_digest, artifact_types)
        listed = await self._referrers_api(ref, host, subject_digest, artifact_types)
        if listed is not None:
            return listed
        if mode == "auto":
            self._remember_no_referrers_api(host)
        return await self._referrers_tag(ref, host, subject_digest, artifact_types, api=mode == "always")

    async def _probe_referrers_api(
        self, ref: ImageRef, host: _Host, subject_digest: str, artifact_types: frozenset[str] | None
    ) -> ReferrerListing:
        """The first listing on a registry of unknown kind asks the referrers API; concurrent listings wait for its
        answer instead of probing too (one 404 per registry, not one per key)."""
        probe: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        host.probe = probe
        try:
            listed = await self._referrers_api(ref, host, subject_digest, artifact_types)
        except BaseException:
            probe.set_result(True)  # undecided: whoever waits asks for itself
            raise
        finally:
            host.probe = None
        probe.set_result(listed is not None)
        if listed is not None:
            host.referrers_api_seen = True
            return listed
        self._remember_no_referrers_api(host)
        return await self._referrers_tag(ref, host, subject_digest, artifact_types, api=False)

    @staticmethod
    async def _probe_says_supported(probe: asyncio.Future[bool]) -> bool:
        return await asyncio.shield(probe)

    def _remember_no_referrers_api(self, host: _Host) -> None:
        host.referrers_api_seen = False
        host.referrers_api_unsupported_until = self._monotonic() + self.config.referrers_api_memory
        log.info("referrers_api_unavailable", registry=host.registry, fallback="tag-schema")

    async def _referrers_api(
        self, ref: ImageRef, host: _Host, subject_digest: str, artifact_types: frozenset[str] | None
    ) -> ReferrerListing | None:
        path = f"/v2/{ref.repository}/referrers/{subject_digest}"
        if artifact_types is not None and len(artifact_types) == 1:
            path += "?" + urlencode({"artifactType": next(iter(artifact_types))})
        url = f"{host.base_url}{path}"
        found: list[Descriptor] = []
        others: list[Descriptor] = []
        bound = self._listing_bound(artifact_types)
        for page in range(self.limits.max_referrer_pages):
            what = f"referrers of {ref.name}@{subject_digest} (page {page + 1})"
            resp = await self.request(
                ref,
                "GET",
                path,
                url=url,
                accept=mt.ACCEPT_INDEX,
                max_bytes=self.limits.max_manifest_bytes,
                what=what,
            )
            if resp.status == 404:
                if page == 0:
                    return None
                raise RegistryError(f"{what}: next page vanished (404)")
            self._raise_for_status(ref, resp, what)
            # Filtering here is a no-op when the registry applied the filter (OCI-Filters-Applied) and
            # required when it did not, or when several types were asked for and no filter was sent.
            page_descriptors = parse_index_descriptors(resp.body, what)
            found = listed_referrers([*found, *page_descriptors], artifact_types)
            if len(others) <= bound:
                others.extend(
                    d for d in page_descriptors if artifact_types is None or d.artifact_type not in artifact_types
                )
            if len(found) > bound:
                log.warning("referrers_listing_truncated", subject=f"{ref.name}@{subject_digest}", bound=bound)
                note = f"the referrers listing of {ref.name}@{subject_digest} stopped at {bound} entries"
                return ReferrerListing(tuple(found[:bound]), (note,), truncated=True)
            next_url = _next_link(resp.headers.get("Link"), resp.url)
            if next_url is None:
                filtered = "artifacttype" in resp.headers.get("OCI-Filters-Applied", "").lower()
                if filtered and not found and page == 0:
                    return ReferrerListing((), other_types=await self._other_referrer_types(ref, host, subject_digest))
                return ReferrerListing(tuple(found), other_types=unwanted_types(others, artifact_types))
            if _origin(next_url) != _origin(host.base_url):
                raise RegistryError(f"{what}: Link to another origin {_origin(next_url)} refused")
            url = next_url
        pages = self.limits.max_referrer_pages
        log.warning("referrers_listing_truncated", subject=f"{ref.name}@{subject_digest}", pages=pages)
        note = f"the referrers listing of {ref.name}@{subject_digest} stopped after {pages} pages (maxReferrerPages)"
        return ReferrerListing(tuple(found), (note,), truncated=True)

    async def _other_referrer_types(
        self, ref: ImageRef, host: _Host, subject_digest: str
    ) -> tuple[tuple[str, int], ...] | None:
        """After a type-filtered listing came back empty: what *is* attached (first page, unfiltered), only to say
        so in the verdict. ``None`` when that cannot be learnt."""
        path = f"/v2/{ref.repository}/referrers/{subject_digest}"
        what = f"referrers of {ref.name}@{subject_digest} (unfiltered, for the denial's reason)"
        try:
            resp = await self.request(
                ref, "GET", path, accept=mt.ACCEPT_INDEX, max_bytes=self.limits.max_manifest_bytes, what=what
            )
            if resp.status != 200:
                return None
            return unwanted_types(parse_index_descriptors(resp.body, what), frozenset())
        except ProviderError as exc:
            log.debug("referrers_unfiltered_listing_failed", subject=f"{ref.name}@{subject_digest}", error=exc.code)
            return None

    async def _get_tag(self, ref: ImageRef, tag: str, accept: str, what: str) -> tuple[Response, str] | None:
        """GET a manifest by tag; ``None`` on 404. The body is checked against Docker-Content-Digest when the
        registry sends it; the returned digest is that header's, else the body's own."""
        resp = await self.request(
            ref,
            "GET",
            f"/v2/{ref.repository}/manifests/{tag}",
            accept=accept,
            max_bytes=self.limits.max_manifest_bytes,
            what=what,
        )
        if resp.status == 404:
            return None
        self._raise_for_status(ref, resp, what)
        header_digest = resp.headers.get("Docker-Content-Digest")
        if header_digest:
            verify_digest(resp.body, header_digest, what)
        return resp, header_digest or compute_digest(resp.body)

    async def _referrers_tag(
        self, ref: ImageRef, host: _Host, subject_digest: str, artifact_types: frozenset[str] | None, *, api: bool
    ) -> ReferrerListing:
        tag = referrers_tag(subject_digest)
        what = f"referrers tag {ref.name}:{tag}"
        found = await self._get_tag(ref, tag, mt.ACCEPT_INDEX, what)
        if found is None:
            why = "the referrers API answered 404" if api else f"{host.registry} has no referrers API"
            note = f"no referrers listed: {why} and no fallback index {tag[:19]}… exists"
            return ReferrerListing((), (f"{note} (attach with a tool that writes it)",))
        try:
            descriptors = parse_index_descriptors(found[0].body, what)
        except ManifestInvalidError as exc:
            log.warning("referrers_tag_invalid", subject=f"{ref.name}@{subject_digest}", error=exc.message)
            return ReferrerListing((), (f"no referrers listed: the fallback index {ref.name}:{tag} is invalid",))
        listed = listed_referrers(descriptors, artifact_types)
        bound = self._listing_bound(artifact_types)
        if len(listed) > bound:
            note = f"the fallback index {ref.name}:{tag} lists more than {bound} referrers; the rest were not read"
            return ReferrerListing(tuple(listed[:bound]), (note,), truncated=True)
        return ReferrerListing(tuple(listed), other_types=unwanted_types(descriptors, artifact_types))

    async def _cosign_tag(
        self, ref: ImageRef, subject_digest: str, suffix: str, artifact_type: str
    ) -> Descriptor | None:
        tag = referrers_tag(subject_digest) + suffix
        what = f"cosign tag {ref.name}:{tag}"
        found = await self._get_tag(ref, tag, mt.ACCEPT_COSIGN_TAG, what)
        if found is None:
            return None
        resp, digest = found
        manifest = parse_manifest(resp.body, digest, _media_type(resp.headers), what)
        self.content.put(digest, resp.body)
        return Descriptor(
            media_type=manifest.descriptor.media_type,
            digest=digest,
            size=len(resp.body),
            artifact_type=artifact_type,
            annotations=manifest.annotations,
        )


def _next_link(header: str | None, base: str) -> str | None:
    """The ``rel="next"`` target of an RFC 8288 ``Link`` header, resolved against ``base``."""
    if not header:
        return None
    for part in header.split(","):
        if "<" not in part or ">" not in part:
            continue
        target = part[part.index("<") + 1 : part.index(">")]
        params = part[part.index(">") + 1 :].lower().replace(" ", "")
        if 'rel="next"' in params or "rel=next" in params:
            return urljoin(base, target)
    return None
