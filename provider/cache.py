"""Caches: immutable content by digest (bounded by bytes), tag resolutions and verdicts (bounded by TTL and
count), and in-flight sharing so concurrent requests for one subject run one verification."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

from cachetools import LRUCache, TLRUCache

from provider import metrics

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class ContentCache:
    """Digest-addressed bytes (manifests and blobs). Safe to share: content never changes for a digest."""

    def __init__(self, max_bytes: int) -> None:
        self._cache: LRUCache[str, bytes] | None = LRUCache(maxsize=max_bytes, getsizeof=len) if max_bytes > 0 else None
        self._hit = metrics.cache_events("content", "local", "hit")
        self._miss = metrics.cache_events("content", "local", "miss")

    def get(self, digest: str) -> bytes | None:
        if self._cache is None:
            return None
        value = self._cache.get(digest)
        (self._miss if value is None else self._hit).inc()
        return value

    def put(self, digest: str, data: bytes) -> None:
        if self._cache is not None and len(data) <= self._cache.maxsize:
            self._cache[digest] = data


def _expires(_key: object, entry: tuple[object, float], now: float) -> float:
    return now + entry[1]


class TTLMap(Generic[K, V]):
    """A bounded TTL map; ``ttl <= 0`` or ``max_entries == 0`` disables it. An entry may be given a shorter
    lifetime than ``ttl`` (one that was already cached elsewhere for a while)."""

    def __init__(self, name: str, max_entries: int, ttl: float, timer: Callable[[], float]) -> None:
        self.name = name
        self.ttl = ttl
        self._cache: TLRUCache[K, tuple[V, float]] | None = (
            TLRUCache(maxsize=max_entries, ttu=_expires, timer=timer) if ttl > 0 and max_entries > 0 else None
        )
        self._hit = metrics.cache_events(name, "local", "hit")
        self._miss = metrics.cache_events(name, "local", "miss")

    def get(self, key: K) -> V | None:
        if self._cache is None:
            return None
        try:
            entry = self._cache[key]  # one lookup (``TLRUCache.get`` takes two, each checking expiry)
        except KeyError:
            self._miss.inc()
            return None
        self._hit.inc()
        return entry[0]

    def put(self, key: K, value: V, ttl: float | None = None) -> None:
        """Keep ``value`` for ``ttl`` seconds (at most the map's own TTL; the map's TTL when ``None``)."""
        if self._cache is None:
            return
        seconds = self.ttl if ttl is None else min(ttl, self.ttl)
        if seconds > 0:
            self._cache[key] = (value, seconds)

    def clear(self) -> None:
        if self._cache is not None:
            self._cache.clear()

    def __len__(self) -> int:
        return 0 if self._cache is None else len(self._cache)


class SingleFlight(Generic[K, V]):
    """Runs one computation per key at a time; concurrent callers await the same task.

    The task is shielded: a caller that gives up (its request deadline passed) does not cancel the work,
    so the result still lands in the cache for the next request.
    """

    def __init__(self) -> None:
        self._tasks: dict[K, asyncio.Task[V]] = {}

    def __len__(self) -> int:
        return len(self._tasks)

    def __contains__(self, key: object) -> bool:
        return key in self._tasks

    async def run(self, key: K, compute: Callable[[], Awaitable[V]]) -> V:
        task = self._tasks.get(key)
        if task is None:
            task = asyncio.ensure_future(compute())
            self._tasks[key] = task
            task.add_done_callback(functools.partial(self._forget, key))
        return await asyncio.shield(task)

    def _forget(self, key: K, task: asyncio.Task[V]) -> None:
        if self._tasks.get(key) is task:
            del self._tasks[key]
        if not task.cancelled():
            task.exception()

    async def cancel_all(self) -> None:
        tasks = list(self._tasks.values())
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
