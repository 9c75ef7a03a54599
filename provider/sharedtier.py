"""What the engine asks of a cache shared by the replicas (``cache.shared``), and nothing about how it is stored.

The in-process caches stay the first level; the shared tier is consulted only on the cold path. Every method is
bounded by ``cache.shared.operationTimeout`` and never raises for a cache that is down, slow or holding bad data: it
answers "nothing there" (and the tier reports itself local-only until it reconnects). :func:`open_shared_tier`
imports the Valkey/Redis implementation (:mod:`provider.sharedcache`) only when the configuration asks for it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from provider.config import SharedCacheConfig
from provider.oci import Descriptor
from provider.verdict import Verdict

VerdictKey = tuple[str, str, str, str, str]
"""``(store, repository, tag or "", digest, decision generation)``: a signed identity may name a tag."""
ResolutionKey = tuple[str, str, str]
"""``(store, decision generation, reference)``."""


LeaseKey = tuple[str, tuple[str, ...]]
"""What a lease is on: ``("verdict", VerdictKey)``, or ``("tag" | "subject", ResolutionKey)``."""


class LeaseBusyError(Exception):
    """Another replica holds the lease on this work: wait for it (:meth:`SharedTier.await_holder`)."""


@dataclass(frozen=True, slots=True)
class SharedResolution:
    descriptor: Descriptor
    fresh_for: float
    """Seconds it may still be used; ``<= 0``: only as a stale answer while the registry fails."""
    stale_for: float
    """Seconds it may still be used as a stale answer."""


class Lease(Protocol):
    """This replica verifies the digest; others wait for it. Renewed in the background until released."""

    async def release(self) -> None: ...


class SharedTier(Protocol):
    def status(self) -> dict[str, Any]:
        """For ``/readyz``: ``{"state": "up" | "local-only", ...}``."""
        ...

    async def get_verdict(self, key: VerdictKey) -> tuple[Verdict, float] | None:
        """A verdict and the seconds it may still be used."""
        ...

    async def put_verdict(self, key: VerdictKey, verdict: Verdict, ttl: float) -> None: ...

    async def get_resolution(self, kind: str, key: ResolutionKey) -> SharedResolution | None: ...

    async def put_resolution(
        self, kind: str, key: ResolutionKey, descriptor: Descriptor, fresh: float, stale: float
    ) -> None: ...

    async def claim(self, key: LeaseKey, bound: float) -> Lease | None:
        """Take the lease on verifying (or resolving) ``key`` for at most ``bound`` seconds. ``None``: work without
        one (the tier is unavailable, or the lease in place is not a replica's). Raises :class:`LeaseBusyError`."""
        ...

    async def await_holder(self, key: LeaseKey) -> bool:
        """When a replica holds the lease on ``key``: wait until its entry is written, it releases the lease, or a
        slice of the lease time passes, and return True (look again). False at once when nobody (valid) holds it."""
        ...

    async def close(self) -> None: ...


def open_shared_tier(config: SharedCacheConfig) -> SharedTier:
    from provider.sharedcache import RedisSharedCache  # local: redis is imported only when configured

    return RedisSharedCache(config)
