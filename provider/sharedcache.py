"""The shared tier on Valkey or Redis (``cache.shared``), through redis-py's asyncio client (``redis.asyncio``).

Entries (verdicts, tag and digest resolutions) are sealed: ``RF1 | HMAC-SHA256 | payload``, the MAC covering the
entry's full key and its payload, which carries its own expiry. The key is a file shared by the replicas, so write
access to the cache alone cannot admit an image: a forged entry, a genuine one copied under another key, one sealed
with another installation's key or replayed after its expiry is ignored and counted
(``referee_shared_cache_rejected_entries_total``). Leases are sealed the same way, with the holder's own bound on how
long it may work, so a lease nobody renews or nobody could have issued never makes a replica wait.

Cross-replica single flight: the replica that resolves a cold reference or verifies a cold digest holds a lease
(``SET NX PX``, renewed every third of ``leaseTtl``, released by a compare-and-delete script: redis-py's
:class:`~redis.asyncio.lock.Lock`); others wait for a notification on a Pub/Sub channel (every entry written
publishes its name), looking again every third of ``leaseTtl``, and take over when the lease ends without an entry
(its holder died or failed).

Every operation is bounded by ``operationTimeout`` (plus ``connectTimeout`` for a new connection). Three connection
errors or timeouts in a row make the tier *local-only* (``referee_shared_cache_local_only`` 1, ``/readyz`` says so):
operations return "nothing" at once, and a probe tries again every ``retryInterval`` until the cache answers.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import secrets
import ssl
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar
from urllib.parse import urlsplit

import structlog
from redis.asyncio import ConnectionPool, Redis
from redis.asyncio.connection import Connection, SSLConnection
from redis.asyncio.lock import Lock
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import LockError, RedisError, ResponseError

from provider import metrics
from provider.config import SharedCacheConfig
from provider.errors import ProviderError
from provider.oci import Descriptor
from provider.sharedtier import LeaseBusyError, LeaseKey, ResolutionKey, SharedResolution, VerdictKey
from provider.verdict import Verdict

log = structlog.get_logger("referee.sharedcache")

T = TypeVar("T")
MAGIC = b"RF1"
MAC_BYTES = 32
MAX_ENTRY_BYTES = 4 * 1024 * 1024
SCHEMA = "v1:"
FAILURES_TO_GO_LOCAL = 3
"""Consecutive failed or timed-out operations that make the tier local-only (one blip does not)."""


class RejectedEntryError(Exception):
    """An entry or lease that must be ignored; ``reason`` is a metric label."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class _UnavailableError(Exception):
    """The operation did not happen (the tier is local-only, or the operation just failed)."""


class Sealer:
    """HMAC-SHA256 over a domain, the entry's key and its payload."""

    def __init__(self, key: bytes) -> None:
        self._key = key

    def _mac(self, domain: bytes, name: bytes, payload: bytes) -> bytes:
        return hmac.new(self._key, domain + b"\0" + name + b"\0" + payload, hashlib.sha256).digest()

    def seal(self, name: bytes, payload: bytes) -> bytes:
        return MAGIC + self._mac(b"entry", name, payload) + payload

    def open(self, name: bytes, blob: bytes) -> bytes:
        if len(blob) < len(MAGIC) + MAC_BYTES or not blob.startswith(MAGIC):
            raise RejectedEntryError("malformed")
        mac, payload = blob[len(MAGIC) : len(MAGIC) + MAC_BYTES], blob[len(MAGIC) + MAC_BYTES :]
        if not hmac.compare_digest(mac, self._mac(b"entry", name, payload)):
            raise RejectedEntryError("signature")
        return payload

    def lease_token(self, name: bytes, valid_until: float) -> str:
        """``nonce.valid-until-ms.mac``: a lease value only a replica can make, valid until its holder's bound."""
        body = f"{secrets.token_hex(8)}.{int(valid_until * 1000)}"
        return f"{body}.{self._mac(b'lease', name, body.encode()).hex()}"

    def check_lease(self, name: bytes, value: bytes, now: float) -> None:
        try:
            nonce, until, mac = value.decode("ascii").split(".")
            valid_until = int(until) / 1000
            given = bytes.fromhex(mac)
        except (UnicodeDecodeError, ValueError):
            raise RejectedEntryError("malformed") from None
        if not hmac.compare_digest(given, self._mac(b"lease", name, f"{nonce}.{until}".encode())):
            raise RejectedEntryError("signature")
        if valid_until <= now:
            raise RejectedEntryError("expired")


def _as_bytes(value: bytes | str) -> bytes:
    return value if isinstance(value, bytes) else value.encode()


def _key_id(kind: str, key: tuple[str, ...]) -> str:
    """The hex name of an entry (and of the lease on making it)."""
    return hashlib.sha256(json.dumps([kind, *key], separators=(",", ":")).encode()).hexdigest()


def _pool(config: SharedCacheConfig) -> ConnectionPool:
    parts = urlsplit(config.url)
    kwargs: dict[str, Any] = {
        "host": parts.hostname,
        "port": parts.port or 6379,
        "db": int(parts.path[1:]) if parts.path[1:] else 0,
        "username": config.username,
        "password": config.password.reveal() if config.password is not None else None,
        "socket_timeout": config.operation_timeout,
        "socket_connect_timeout": config.connect_timeout,
        "retry": Retry(NoBackoff(), 0),
        "connection_class": Connection,
    }
    if config.tls:
        kwargs.update(
            connection_class=SSLConnection,
            ssl_cert_reqs="required",
            ssl_check_hostname=True,
            ssl_min_version=ssl.TLSVersion.TLSv1_2,
            ssl_ca_data=config.ca_pem.decode("ascii") if config.ca_pem is not None else None,
            ssl_certfile=config.cert_file,
            ssl_keyfile=config.key_file,
        )
    return ConnectionPool(max_connections=config.max_connections, **kwargs)


class _RedisLease:
    def __init__(self, cache: RedisSharedCache, lock: Lock, key_id: str, valid_until: float) -> None:
        self._cache = cache
        self._lock = lock
        self._key_id = key_id
        self._renewal = asyncio.ensure_future(self._renew(valid_until))

    async def _renew(self, valid_until: float) -> None:
        interval = self._cache.config.lease_ttl / 3
        while time.time() + interval < valid_until:
            await asyncio.sleep(interval)
            try:
                await self._cache.call("lease", self._lock.reacquire)
            except (_UnavailableError, LockError):
                return

    async def release(self) -> None:
        self._renewal.cancel()
        await asyncio.gather(self._renewal, return_exceptions=True)
        with contextlib.suppress(_UnavailableError, LockError):
            await self._cache.call("lease", self._lock.release)
        await self._cache.notify(self._key_id)


class RedisSharedCache:
    """:class:`provider.sharedtier.SharedTier` on Valkey or Redis."""

    def __init__(self, config: SharedCacheConfig, *, wall: Callable[[], float] = time.time) -> None:
        self.config = config
        self._wall = wall
        self._sealer = Sealer(config.hmac_key)
        self._prefix = config.key_prefix + SCHEMA
        self._channel = f"{self._prefix}done"
        self._redis = Redis(connection_pool=_pool(config))
        self._down_since: float | None = None
        self._failures = 0
        self._last_error = ""
        # Operations wait here, not in the pool: waiting for a connection is local congestion, not the cache's
        # slowness. One connection is left for the Pub/Sub listener.
        self._slots = asyncio.Semaphore(max(1, config.max_connections - 1))
        self._probe: asyncio.Task[None] | None = None
        self._listener: asyncio.Task[None] | None = None
        self._waiters: dict[str, set[asyncio.Event]] = {}
        self._closed = False
        metrics.SHARED_CACHE_LOCAL_ONLY.set(0)

    # -- health -------------------------------------------------------------------------------------------------

    @property
    def available(self) -> bool:
        return self._down_since is None

    def status(self) -> dict[str, Any]:
        if self._down_since is None:
            return {"state": "up"}
        return {
            "state": "local-only",
            "since": round(self._down_since),
            "error": self._last_error,
        }

    async def call(self, operation: str, work: Callable[[], Awaitable[T]]) -> T:
        """Run one operation within ``operationTimeout``; :class:`_UnavailableError` when it did not happen."""
        if self._down_since is not None or self._closed:
            raise _UnavailableError
        self._ensure_listener()
        async with self._slots:
            if self._down_since is not None:
                raise _UnavailableError
            try:  # reads and writes: socket_timeout (operationTimeout); a new connection: connectTimeout
                async with asyncio.timeout(self.config.operation_timeout + self.config.connect_timeout):
                    result = await work()
            except (LockError, LeaseBusyError):
                self._failures = 0
                raise
            except ResponseError as exc:  # the server refused this command (e.g. a key of the wrong type): not down
                metrics.shared_cache_errors(operation).inc()
                log.warning("shared_cache_command_failed", operation=operation, error=str(exc)[:200])
                raise _UnavailableError from None
            except (RedisError, OSError, TimeoutError) as exc:
                metrics.shared_cache_errors(operation).inc()
                self._failures += 1
                if self._failures >= FAILURES_TO_GO_LOCAL:
                    self._mark_down(operation, exc)
                raise _UnavailableError from None
        self._failures = 0
        return result

    def _mark_down(self, operation: str, exc: BaseException) -> None:
        if self._down_since is not None:
            return
        self._down_since = self._wall()
        self._last_error = f"{operation}: {type(exc).__name__}: {str(exc)[:160]}".rstrip(": ")
        metrics.SHARED_CACHE_LOCAL_ONLY.set(1)
        log.warning("shared_cache_unavailable", operation=operation, error=self._last_error)
        if not self._closed and (self._probe is None or self._probe.done()):
            self._probe = asyncio.ensure_future(self._reconnect())

    async def _reconnect(self) -> None:
        while not self._closed:
            await asyncio.sleep(self.config.retry_interval)
            try:
                await self._redis.connection_pool.disconnect()
                async with asyncio.timeout(self.config.connect_timeout + self.config.operation_timeout):
                    await self._redis.ping()
            except (RedisError, OSError, TimeoutError) as exc:
                self._last_error = f"reconnect: {type(exc).__name__}: {str(exc)[:160]}"
                continue
            down_for = self._wall() - (self._down_since or self._wall())
            self._down_since = None
            self._failures = 0
            self._last_error = ""
            metrics.SHARED_CACHE_LOCAL_ONLY.set(0)
            log.info("shared_cache_reconnected", down_s=round(down_for, 1))
            return

    # -- entries ------------------------------------------------------------------------------------------------

    def _name(self, kind: str, key_id: str) -> str:
        return f"{self._prefix}{kind}:{key_id}"

    async def _get(self, kind: str, key: tuple[str, ...]) -> dict[str, Any] | None:
        """The opened payload of an entry, or None (absent, unavailable, or rejected and counted)."""
        name = self._name(kind, _key_id(kind, key))
        try:
            blob = await self.call("get", lambda: self._redis.getrange(name, 0, MAX_ENTRY_BYTES))
        except _UnavailableError:
            return None
        if not blob:
            metrics.cache_events(kind, "shared", "miss").inc()
            return None
        try:
            if len(blob) > MAX_ENTRY_BYTES:
                raise RejectedEntryError("oversize")
            payload = json.loads(self._sealer.open(name.encode(), _as_bytes(blob)))
            if not isinstance(payload, dict) or not isinstance(payload.get("exp"), int | float):
                raise RejectedEntryError("malformed")
            if payload["exp"] <= self._wall():
                raise RejectedEntryError("expired")
        except (RejectedEntryError, ValueError) as exc:
            self._reject(kind, exc)
            return None
        return payload

    def _reject(self, kind: str, exc: Exception) -> None:
        reason = exc.reason if isinstance(exc, RejectedEntryError) else "malformed"
        metrics.shared_cache_rejected(reason).inc()
        metrics.cache_events(kind, "shared", "miss").inc()
        log.warning("shared_cache_entry_rejected", cache=kind, reason=reason)

    async def _put(self, kind: str, key: tuple[str, ...], payload: dict[str, Any], ttl: float) -> None:
        key_id = _key_id(kind, key)
        name = self._name(kind, key_id)
        payload["exp"] = self._wall() + ttl
        blob = self._sealer.seal(name.encode(), json.dumps(payload, separators=(",", ":")).encode())
        if len(blob) > MAX_ENTRY_BYTES:
            return

        async def write() -> None:
            pipe = self._redis.pipeline(transaction=False)
            pipe.set(name, blob, px=max(1, int(ttl * 1000)))
            pipe.publish(self._channel, key_id)  # wake the replicas waiting for it
            await pipe.execute()

        with contextlib.suppress(_UnavailableError):
            await self.call("set", write)

    async def get_verdict(self, key: VerdictKey) -> tuple[Verdict, float] | None:
        payload = await self._get("verdict", key)
        if payload is None:
            return None
        try:
            verdict = Verdict.from_record(payload.get("d"))
            if verdict.digest != key[3] or verdict.subject != f"{key[1]}@{key[3]}":
                raise RejectedEntryError("mismatch")
        except (RejectedEntryError, ValueError) as exc:
            self._reject("verdict", exc)
            return None
        metrics.cache_events("verdict", "shared", "hit").inc()
        return verdict, float(payload["exp"]) - self._wall()

    async def put_verdict(self, key: VerdictKey, verdict: Verdict, ttl: float) -> None:
        if ttl > 0:
            await self._put("verdict", key, {"d": verdict.to_record()}, ttl)

    async def get_resolution(self, kind: str, key: ResolutionKey) -> SharedResolution | None:
        payload = await self._get(kind, key)
        if payload is None:
            return None
        try:
            fresh = payload.get("fresh")
            if not isinstance(fresh, int | float):
                raise RejectedEntryError("malformed")
            descriptor = Descriptor.from_json(payload.get("d"), "shared resolution")
            if "@" in key[2] and descriptor.digest != key[2].rsplit("@", 1)[1]:
                raise RejectedEntryError("mismatch")
        except (RejectedEntryError, ProviderError) as exc:
            self._reject(kind, exc if isinstance(exc, RejectedEntryError) else RejectedEntryError("malformed"))
            return None
        now = self._wall()
        metrics.cache_events(kind, "shared", "hit" if fresh > now else "miss").inc()
        return SharedResolution(descriptor, fresh - now, float(payload["exp"]) - now)

    async def put_resolution(
        self, kind: str, key: ResolutionKey, descriptor: Descriptor, fresh: float, stale: float
    ) -> None:
        ttl = max(fresh, stale)
        if ttl > 0:
            await self._put(kind, key, {"d": descriptor.to_json(), "fresh": self._wall() + fresh}, ttl)

    # -- leases -------------------------------------------------------------------------------------------------

    async def claim(self, key: LeaseKey, bound: float) -> _RedisLease | None:
        key_id = _key_id(*key)
        name = self._name("lease", key_id)
        valid_until = self._wall() + bound + self.config.lease_ttl
        token = self._sealer.lease_token(name.encode(), valid_until)
        lock = Lock(self._redis, name, timeout=self.config.lease_ttl, blocking=False, thread_local=False)
        for _ in range(2):
            try:
                if await self.call("lease", lambda: lock.acquire(blocking=False, token=token)):
                    return _RedisLease(self, lock, key_id, valid_until)
                if await self._held(name):
                    raise LeaseBusyError
            except _UnavailableError:
                return None
            except RejectedEntryError:
                return None  # a lease no replica made: verify without one
        return None

    async def _held(self, name: str) -> bool:
        """Whether a valid lease is in place (RejectedEntryError, counted, for one that is not)."""
        value = await self.call("lease", lambda: self._redis.get(name))
        if value is None:
            return False
        try:
            self._sealer.check_lease(name.encode(), _as_bytes(value)[:256], self._wall())
        except RejectedEntryError as exc:
            metrics.shared_cache_rejected(exc.reason).inc()
            log.warning("shared_cache_lease_rejected", reason=exc.reason)
            raise
        return True

    async def await_holder(self, key: LeaseKey) -> bool:
        key_id = _key_id(*key)
        event = asyncio.Event()
        waiters = self._waiters.setdefault(key_id, set())
        waiters.add(event)
        try:
            try:
                if not await self._held(self._name("lease", key_id)):
                    return False
            except (_UnavailableError, RejectedEntryError):
                return False
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.config.lease_ttl / 3):
                    await event.wait()
            return True
        finally:
            waiters.discard(event)
            if not waiters:
                self._waiters.pop(key_id, None)

    async def notify(self, key_id: str) -> None:
        with contextlib.suppress(_UnavailableError):
            await self.call("publish", lambda: self._redis.publish(self._channel, key_id))

    def _ensure_listener(self) -> None:
        if self._listener is None or self._listener.done():
            self._listener = asyncio.ensure_future(self._listen())

    async def _listen(self) -> None:
        """Wake local waiters when another replica finishes a key (a lost message costs a slice of waiting)."""
        while not self._closed:
            pubsub = self._redis.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(self._channel)
                while not self._closed:
                    message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
                    if message is None or message.get("type") != "message":
                        continue
                    data = message.get("data")
                    if isinstance(data, bytes) and len(data) == 64:
                        for event in self._waiters.get(data.decode("ascii", "replace"), ()):
                            event.set()
            except (RedisError, OSError, TimeoutError) as exc:
                log.debug("shared_cache_listener_failed", error=type(exc).__name__)
            finally:
                with contextlib.suppress(Exception):
                    await pubsub.aclose()
            await asyncio.sleep(self.config.retry_interval)

    async def close(self) -> None:
        self._closed = True
        for task in (self._probe, self._listener):
            if task is not None:
                task.cancel()
        await asyncio.gather(*(t for t in (self._probe, self._listener) if t is not None), return_exceptions=True)
        with contextlib.suppress(Exception):
            await self._redis.aclose()
            await self._redis.connection_pool.disconnect()
