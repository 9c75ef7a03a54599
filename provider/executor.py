"""The pipeline for one image: resolve → list referrers → verify (bounded, concurrent) → nested → policy.

:class:`Runtime` holds what one configuration generation built (client, stores, verifiers, policy);
:class:`Engine` holds the caches that outlive reloads and swaps runtimes atomically.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TypeVar

import structlog

from provider import deadline, metrics
from provider import mediatypes as mt
from provider.cache import ContentCache, SingleFlight, TTLMap
from provider.config import Config, matches_any
from provider.errors import OverloadedError, ProviderError, UnsupportedError
from provider.evidence import ConfiguredVerifier, EvidenceCollector
from provider.fairness import SharedSlots
from provider.oci import Descriptor
from provider.policies.base import PolicyEnforcer, policy_types
from provider.reference import ImageRef, parse_reference
from provider.registry.client import RegistryClient
from provider.sharedtier import LeaseBusyError, LeaseKey, ResolutionKey, SharedTier, VerdictKey, open_shared_tier
from provider.stores.base import ReferrerStore, StoreResources, store_types
from provider.verdict import POLICY_SATISFIED, Decision, Verdict
from provider.verifiers.base import Subject, verifier_types

log = structlog.get_logger("referee.executor")

Clock = Callable[[], datetime]
T = TypeVar("T")
ADMISSION_FACTOR = 2
MAX_LOOKUPS = 8192


@dataclass(frozen=True, slots=True)
class KeyLookup:
    """What a key means under one configuration generation: its reference, its store, and its cache keys."""

    ref: ImageRef
    store: ReferrerStore
    resolution_key: tuple[str, str]
    verdict_prefix: tuple[str, str, str]

    @property
    def by_digest(self) -> bool:
        return self.ref.digest is not None


def utc_now() -> datetime:
    return datetime.now(UTC)


class Runtime:
    """Objects built from one configuration generation."""

    def __init__(self, config: Config, content: ContentCache) -> None:
        self.config = config
        self.client = RegistryClient(config.registries, config.limits, content)
        resources = StoreResources(registry=self.client, content=content, limits=config.limits)
        self.stores: list[tuple[tuple[str, ...], ReferrerStore]] = []
        for spec in config.stores:
            plugin = store_types.get(spec.type)
            assert plugin is not None
            self.stores.append((spec.scopes, plugin.create(spec, resources)))
        self.verifiers: list[ConfiguredVerifier] = []
        for vspec in config.verifiers:
            vplugin = verifier_types.get(vspec.type)
            assert vplugin is not None
            self.verifiers.append(ConfiguredVerifier(vspec, vplugin.create(vspec)))
        pplugin = policy_types.get(config.policy.type)
        assert pplugin is not None
        self.policy: PolicyEnforcer = pplugin.create(config.policy)
        self._lookups: dict[str, KeyLookup] = {}

    @property
    def generation(self) -> str:
        return self.config.generation

    def store_for(self, ref: ImageRef) -> ReferrerStore:
        for scopes, store in self.stores:
            if matches_any(scopes, ref.registry, ref.repository):
                return store
        raise UnsupportedError(f"no store is configured for {ref.name}")

    def lookup(self, key: str) -> KeyLookup:
        """Parse ``key`` and find its store, once per key (remembered for up to ``MAX_LOOKUPS`` keys); raises the
        ProviderError of a key that is not a reference or has no store."""
        found = self._lookups.get(key)
        if found is None:
            ref = parse_reference(key)
            store = self.store_for(ref)
            if ref.digest:
                resolution_key = (store.name, f"{ref.name}@{ref.digest}")
            else:
                resolution_key = (f"{store.name}/{self.generation}", str(ref))
            if len(self._lookups) >= MAX_LOOKUPS:
                self._lookups.clear()
            prefix = (store.name, ref.name, ref.tag or "")  # Engine._verdict_key without digest and generation
            found = self._lookups[key] = KeyLookup(ref, store, resolution_key, prefix)
        return found

    def verifiers_for(self, ref: ImageRef) -> list[ConfiguredVerifier]:
        return [v for v in self.verifiers if matches_any(v.spec.scopes, ref.registry, ref.repository)]

    async def close(self) -> None:
        for _, store in self.stores:
            await store.close()
        await self.client.close()


async def _bounded(runtime: Runtime, work: Awaitable[T], what: str, seconds: float | None = None) -> T:
    """Run shared work under its own deadline (``limits.verificationTimeout``, or ``seconds`` when shorter), not the
    asking request's."""
    limit = runtime.config.limits.verification_timeout
    seconds = limit if seconds is None else min(seconds, limit)
    with deadline.fresh(seconds):
        try:
            async with asyncio.timeout(seconds):
                return await work
        except TimeoutError:
            raise deadline.exceeded(what) from None


@dataclass(frozen=True, slots=True)
class Outcome:
    """The result for one key: a verdict, or the error that stopped it (``error.transient`` decides how it
    is reported to Gatekeeper)."""

    key: str
    verdict: Verdict | None = None
    error: ProviderError | None = None
    cached: bool = False


class Engine:
    """Runs verifications against the current runtime, with caches that survive configuration reloads.

    A key whose tag resolution and verdict are cached is answered synchronously (:meth:`cached_outcome`). Any other
    key becomes a shared background job (one per key and configuration generation) that resolves and verifies it
    within ``limits.verificationTimeout``, admitted per registry in arrival order and at most
    ``ADMISSION_FACTOR * maxConcurrency`` at a time (a repository at most half of them): a burst of new images then
    finishes in waves, and the first keys get verdicts before the first deadline instead of every key waiting on
    every other's first request."""

    def __init__(self, config: Config, *, clock: Clock = utc_now, monotonic: Callable[[], float] = time.monotonic):
        self.clock = clock
        self.content = ContentCache(config.cache.content_max_bytes)
        self._monotonic = monotonic
        self.runtime = Runtime(config, self.content)
        self._configure_caches(config)
        self._keys: SingleFlight[tuple[str, str, str], Verdict] = SingleFlight()
        self._flight: SingleFlight[VerdictKey, Verdict] = SingleFlight()
        self._resolving: SingleFlight[tuple[str, str], Descriptor] = SingleFlight()
        self._admission: dict[str, SharedSlots] = {}
        self._retired: dict[asyncio.Task[None], tuple[Runtime, SharedTier | None]] = {}
        self.shared: SharedTier | None = open_shared_tier(config.cache.shared) if config.cache.shared else None

    def _configure_caches(self, config: Config) -> None:
        c = config.cache
        self.verdicts: TTLMap[VerdictKey, Verdict] = TTLMap(
            "verdict", c.verdict_max_entries, c.verdict_ttl, self._monotonic
        )
        # A verdict decided without examining every referrer (a cap was hit, evidence could not be read) is kept
        # only briefly: a flood must not lock an image out, nor keep an allow decided on partial evidence, for long.
        self.partial_verdicts: TTLMap[VerdictKey, Verdict] = TTLMap(
            "verdict-partial", c.verdict_max_entries, min(c.verdict_ttl, c.tag_ttl), self._monotonic
        )
        self.tags: TTLMap[tuple[str, str], Descriptor] = TTLMap("tag", c.tag_max_entries, c.tag_ttl, self._monotonic)
        self.stale_tags: TTLMap[tuple[str, str], Descriptor] = TTLMap(
            "tag-stale",
            c.tag_max_entries,
            c.tag_ttl + c.tag_stale_if_error if c.tag_stale_if_error else 0,
            self._monotonic,
        )
        self.subjects: TTLMap[tuple[str, str], Descriptor] = TTLMap(
            "subject", c.tag_max_entries, max(c.verdict_ttl, c.tag_ttl), self._monotonic
        )
        self._semaphore = asyncio.Semaphore(config.limits.max_concurrent_verifications)

    @property
    def config(self) -> Config:
        return self.runtime.config

    @property
    def pending(self) -> int:
        """Shared verifications and resolutions started and not finished (bounded by maxPendingVerifications)."""
        return len(self._flight) + len(self._resolving)

    def swap(self, config: Config) -> None:
        """Install a new configuration generation; in-flight work finishes on the old one."""
        old = self.runtime
        if old.config.cache.content_max_bytes != config.cache.content_max_bytes:
            self.content = ContentCache(config.cache.content_max_bytes)
        self.runtime = Runtime(config, self.content)
        if old.config.cache != config.cache or old.config.limits != config.limits:
            self._configure_caches(config)
        if old.config.registries != config.registries:
            self._admission = {}
        old_shared = None
        if old.config.cache.shared != config.cache.shared:
            old_shared = self.shared
            self.shared = open_shared_tier(config.cache.shared) if config.cache.shared else None
            if self.shared is None:
                metrics.SHARED_CACHE_LOCAL_ONLY.set(0)
        task = asyncio.ensure_future(self._retire(old, old_shared))
        self._retired[task] = (old, old_shared)
        task.add_done_callback(self._retired.pop)

    async def _retire(self, runtime: Runtime, shared: SharedTier | None) -> None:
        await asyncio.sleep(runtime.config.limits.verification_timeout + 1.0)
        await runtime.close()
        if shared is not None:
            await shared.close()

    def shared_status(self) -> dict[str, object] | None:
        """The shared cache's state for ``/readyz``; None when none is configured."""
        return None if self.shared is None else self.shared.status()

    async def close(self) -> None:
        await self._keys.cancel_all()
        await self._flight.cancel_all()
        await self._resolving.cancel_all()
        retired = list(self._retired.items())
        for task, _ in retired:
            task.cancel()
        for _, (runtime, shared) in retired:
            await runtime.close()
            if shared is not None:
                await shared.close()
        await self.runtime.close()
        if self.shared is not None:
            await self.shared.close()

    # -- entry points ------------------------------------------------------------------------------------------

    def cached_outcome(self, key: str) -> Outcome | None:
        """The answer for ``key`` when it needs no I/O: a cached verdict for a cached resolution, or a key that
        cannot be a reference. ``None`` when the key needs work (:meth:`verify_key`)."""
        runtime = self.runtime
        try:
            lookup = runtime.lookup(key)
        except ProviderError as exc:
            return Outcome(key=key, error=exc)
        descriptor = (self.subjects if lookup.by_digest else self.tags).get(lookup.resolution_key)
        if descriptor is None:
            return None
        verdict_key = (*lookup.verdict_prefix, descriptor.digest, runtime.generation)
        verdict = self.verdicts.get(verdict_key) or self.partial_verdicts.get(verdict_key)
        return None if verdict is None else Outcome(key=key, verdict=verdict, cached=True)

    def _stale_when_paused(self, runtime: Runtime, ref: ImageRef, cache_key: tuple[str, str]) -> Descriptor | None:
        """The stale-if-error resolution of a tag whose registry is paused (it asked clients to wait): served at once,
        without waiting for the pause or queueing behind the keys that need the registry."""
        if ref.digest or not runtime.client.paused(ref.registry):
            return None
        stale = self.stale_tags.get(cache_key)
        if stale is not None:
            self._served_stale(ref, stale, "registry_paused")
        return stale

    @staticmethod
    def _served_stale(ref: ImageRef, stale: Descriptor, why: str) -> None:
        metrics.STALE_RESOLUTIONS.inc()
        log.info("tag_resolution_stale", ref=str(ref), digest=stale.digest, error=why)

    async def verify_key(self, key: str) -> Outcome:
        """Verify one Gatekeeper key; never raises ProviderError (it is returned in the outcome).

        Bounded by ``limits.verificationTimeout`` and by any enclosing (request) deadline."""
        try:
            with deadline.deadline_after(self.config.limits.verification_timeout):
                verdict, cached = await self._verify(key)
        except ProviderError as exc:
            return Outcome(key=key, error=exc)
        return Outcome(key=key, verdict=verdict, cached=cached)

    async def resolve_key(self, key: str) -> tuple[ImageRef, Descriptor]:
        """Resolve a key to its digest (for mutation)."""
        ref = parse_reference(key)
        runtime = self.runtime
        with deadline.deadline_after(self.config.limits.verification_timeout):
            return ref, await self._resolve_anywhere(runtime, runtime.store_for(ref), ref)

    # -- internals ------------------------------------------------------------------------------------------------

    def _resolution_key(
        self, runtime: Runtime, store: ReferrerStore, ref: ImageRef
    ) -> tuple[TTLMap[tuple[str, str], Descriptor], tuple[str, str]]:
        """The cache and key of ``ref``'s resolution (as :meth:`Runtime.lookup` computes them)."""
        if ref.digest:
            return self.subjects, (store.name, f"{ref.name}@{ref.digest}")
        return self.tags, (f"{store.name}/{runtime.generation}", str(ref))

    def _cached_resolution(self, runtime: Runtime, store: ReferrerStore, ref: ImageRef) -> Descriptor | None:
        cache, cache_key = self._resolution_key(runtime, store, ref)
        return cache.get(cache_key)

    def _verdict_key(self, runtime: Runtime, store: ReferrerStore, ref: ImageRef, descriptor: Descriptor) -> VerdictKey:
        # The tag is part of the key: an attestor's signed identity may name a tag (``matchExact``), so the verdict
        # for ``repo:v1`` says nothing about ``repo:v2`` pointing at the same digest.
        return (store.name, ref.name, ref.tag or "", descriptor.digest, runtime.generation)

    def _cached_verdict(
        self, runtime: Runtime, store: ReferrerStore, ref: ImageRef, descriptor: Descriptor
    ) -> Verdict | None:
        cache_key = self._verdict_key(runtime, store, ref, descriptor)
        return self.verdicts.get(cache_key) or self.partial_verdicts.get(cache_key)

    async def _resolve(self, runtime: Runtime, store: ReferrerStore, ref: ImageRef) -> Descriptor:
        """The subject's descriptor: digests are cached for the verdict TTL, tags for ``cache.tagTtl``.
        Concurrent resolutions of one reference share one registry call, which finishes in the background
        (within ``limits.verificationTimeout``) even when the asking request's deadline passes. When the registry
        fails transiently, a tag resolved within ``cache.tagStaleIfError`` is served again (stale-if-error). With a
        shared cache, the resolution is made under a lease (:class:`LeaseBusyError` when another replica holds it),
        another replica's is used when one is there, and this one's is published."""
        cache, cache_key = self._resolution_key(runtime, store, ref)
        found = cache.get(cache_key) or self._stale_when_paused(runtime, ref, cache_key)
        if found is not None:
            return found
        shared = self.shared

        async def compute() -> Descriptor:
            lease = None
            if shared is not None:
                bound = runtime.config.limits.verification_timeout
                lease = await shared.claim(self._shared_resolution_key(runtime, store, ref), bound)
            try:
                if shared is not None:  # looked for before, but another replica may have finished meanwhile
                    known = await self._shared_resolution(runtime, store, ref, shared)
                    if known is not None:
                        return known
                stale = None if ref.digest else self.stale_tags.get(cache_key)
                # With a known-good resolution at hand, wait for the registry only as long as a request could wait:
                # a registry that is slow or asks to retry later then gets the stale answer instead of a failure.
                patience = None if stale is None else self._stale_patience(runtime)
                try:
                    descriptor = await _bounded(runtime, store.resolve(ref), f"resolution of {ref}", patience)
                except ProviderError as exc:
                    if stale is None or not exc.transient:
                        raise
                    self._served_stale(ref, stale, exc.code)
                    return stale
                cache.put(cache_key, descriptor)
                if not ref.digest:
                    self.stale_tags.put(cache_key, descriptor)
                if shared is not None:
                    await self._publish_resolution(runtime, store, ref, descriptor, shared)
                return descriptor
            finally:
                if lease is not None:
                    await lease.release()

        if cache_key not in self._resolving:
            self._check_capacity(runtime)
        return await self._resolving.run(cache_key, compute)

    @staticmethod
    def _stale_patience(runtime: Runtime) -> float:
        server = runtime.config.server
        return min(server.verify_deadline, server.mutate_deadline) / 2

    async def _resolve_anywhere(self, runtime: Runtime, store: ReferrerStore, ref: ImageRef) -> Descriptor:
        """:meth:`_resolve`; with a shared cache, another replica's resolution first, and a replica that is resolving
        the same reference is waited for instead of asking the registry too."""
        shared = self.shared
        if shared is None:
            return await self._resolve(runtime, store, ref)
        while True:
            found = self._cached_resolution(runtime, store, ref) or await self._shared_resolution(
                runtime, store, ref, shared
            )
            if found is not None:
                return found
            if await shared.await_holder(self._shared_resolution_key(runtime, store, ref)):
                continue
            try:
                return await self._resolve(runtime, store, ref)
            except LeaseBusyError:
                continue

    def _check_capacity(self, runtime: Runtime) -> None:
        """Shared work outlives requests; bound how much of it may pile up (keys are attacker-chosen)."""
        pending = len(self._keys) + len(self._flight) + len(self._resolving)
        if pending >= runtime.config.limits.max_pending_verifications:
            raise OverloadedError(f"{pending} verifications already pending; ask again shortly")

    def _slots(self, runtime: Runtime, registry: str) -> SharedSlots:
        slots = self._admission.get(registry)
        if slots is None:
            registries = runtime.config.registries
            limit = registries.host_config(registry).max_concurrency or registries.max_concurrency
            slots = self._admission[registry] = SharedSlots(ADMISSION_FACTOR * limit)
        return slots

    async def _verify(self, key: str) -> tuple[Verdict, bool]:
        runtime = self.runtime
        lookup = runtime.lookup(key)
        ref, store = lookup.ref, lookup.store
        descriptor = self._cached_resolution(runtime, store, ref)
        if descriptor is None:
            descriptor = self._stale_when_paused(runtime, ref, self._resolution_key(runtime, store, ref)[1])
        if descriptor is not None:
            verdict = self._cached_verdict(runtime, store, ref, descriptor)
            if verdict is not None:
                return verdict, True
        job_key = (store.name, runtime.generation, key)
        if job_key not in self._keys:
            self._check_capacity(runtime)
        return await self._keys.run(job_key, lambda: self._cold(runtime, store, ref)), False

    async def _cold(self, runtime: Runtime, store: ReferrerStore, ref: ImageRef) -> Verdict:
        """One key's resolution and verification, admitted fairly among the keys of its registry."""
        seconds = runtime.config.limits.verification_timeout
        shared = self.shared
        with deadline.fresh(seconds):
            try:
                async with asyncio.timeout(seconds):
                    if shared is not None:
                        return await self._cold_shared(runtime, store, ref, shared)
                    async with self._slots(runtime, ref.registry).slot(ref.repository):
                        descriptor = await self._resolve(runtime, store, ref)
                        return await self._verdict(runtime, store, ref, descriptor)
            except TimeoutError:
                raise deadline.exceeded(f"verification of {ref}") from None

    async def _cold_shared(self, runtime: Runtime, store: ReferrerStore, ref: ImageRef, shared: SharedTier) -> Verdict:
        """:meth:`_cold` with a shared cache: what another replica resolved or decided is used before asking for an
        admission slot, and a reference another replica is resolving or a digest it is verifying is waited for
        (outside any slot, until its entry arrives or its lease ends) instead of asking the registry again."""
        descriptor: Descriptor | None = None
        waited = False
        while True:
            descriptor = (
                descriptor
                or self._cached_resolution(runtime, store, ref)
                or await self._shared_resolution(runtime, store, ref, shared)
            )
            if descriptor is None:
                holder: LeaseKey = self._shared_resolution_key(runtime, store, ref)
            else:
                verdict = self._cached_verdict(runtime, store, ref, descriptor) or await self._shared_verdict(
                    runtime, store, ref, descriptor, shared
                )
                if verdict is not None:
                    if waited:
                        metrics.SHARED_CACHE_WAITS.labels("verdict").inc()
                    return verdict
                holder = ("verdict", self._shared_verdict_key(runtime, store, ref, descriptor))
            if await shared.await_holder(holder):
                waited = True
                continue
            async with self._slots(runtime, ref.registry).slot(ref.repository):
                try:
                    if descriptor is None:
                        descriptor = await self._resolve(runtime, store, ref)
                    verdict = await self._verdict(runtime, store, ref, descriptor)
                except LeaseBusyError:
                    waited = True
                    continue
            if waited:
                metrics.SHARED_CACHE_WAITS.labels("takeover").inc()
            return verdict

    async def _verdict(self, runtime: Runtime, store: ReferrerStore, ref: ImageRef, descriptor: Descriptor) -> Verdict:
        cache_key = self._verdict_key(runtime, store, ref, descriptor)
        cached = self.verdicts.get(cache_key) or self.partial_verdicts.get(cache_key)
        if cached is not None:
            return cached
        pinned = ref.with_digest(descriptor.digest)
        shared = self.shared

        async def compute() -> Verdict:
            lease = None
            if shared is not None:
                bound = runtime.config.limits.verification_timeout  # what _bounded allows the work below
                lease = await shared.claim(
                    ("verdict", self._shared_verdict_key(runtime, store, ref, descriptor)), bound
                )
            try:
                if shared is not None:  # looked for before, but another replica may have finished meanwhile
                    known = await self._shared_verdict(runtime, store, ref, descriptor, shared)
                    if known is not None:
                        return known
                metrics.IN_FLIGHT.inc()
                try:
                    subject = Subject(pinned, descriptor)
                    verdict = await _bounded(
                        runtime, self._decide(runtime, store, ref, subject), f"verification of {pinned.pinned()}"
                    )
                finally:
                    metrics.IN_FLIGHT.dec()
                ttl = self._verdict_ttl(runtime, verdict)
                (self.verdicts if verdict.complete else self.partial_verdicts).put(cache_key, verdict)
                if shared is not None:
                    await shared.put_verdict(self._shared_verdict_key(runtime, store, ref, descriptor), verdict, ttl)
            finally:
                if lease is not None:
                    await lease.release()
            return verdict

        return await self._flight.run(cache_key, compute)

    async def _decide(self, runtime: Runtime, store: ReferrerStore, ref: ImageRef, subject: Subject) -> Verdict:
        """The subject's own verdict; for ``name:tag@<platform manifest>`` under ``multiArch.indexCoversPlatforms``,
        a denial is reconsidered against the index the tag names."""
        verdict = await self._verify_subject(runtime, store, subject)
        covers = runtime.config.multi_arch.index_covers_platforms
        if verdict.allowed or not covers or not (ref.tag and ref.digest):
            return verdict
        if subject.descriptor.media_type not in mt.MANIFEST_TYPES:
            return verdict
        return await self._index_cover(runtime, store, ref, subject, verdict)

    async def _index_cover(
        self, runtime: Runtime, store: ReferrerStore, ref: ImageRef, subject: Subject, own: Verdict
    ) -> Verdict:
        """Allowed when the index the tag names lists this manifest's digest and is allowed itself. The index is
        resolved and read by digest (verified) and judged like any key: its own evidence, never the tag's word."""

        def denied(note: str) -> Verdict:
            return dataclasses.replace(own, notes=(*own.notes, note)[:8])

        tag_ref = ImageRef(ref.registry, ref.repository, ref.tag, None)
        digest = subject.descriptor.digest
        try:
            index_descriptor = await self._resolve(runtime, store, tag_ref)
            if index_descriptor.media_type not in mt.INDEX_TYPES:
                return denied(f"multiArch: the tag {ref.tag} names no index ({index_descriptor.media_type})")
            index = await store.fetch_manifest(tag_ref.with_digest(index_descriptor.digest), index_descriptor)
        except ProviderError as exc:
            if exc.transient:
                raise
            return denied(f"multiArch: the tag {ref.tag} could not be read as an index: {exc.code}")
        short = index_descriptor.digest[:19]
        if digest not in {m.digest for m in index.manifests}:
            return denied(f"multiArch: the index {short}… that {ref.tag} names does not list {digest[:19]}…")
        index_verdict = await self._verdict(runtime, store, tag_ref, index_descriptor)
        if not index_verdict.allowed:
            return denied(f"multiArch: the index {short}… that {ref.tag} names is not allowed either")
        decision = Decision(
            True,
            f"covered by the index {short}… that {ref.tag} names, which lists this manifest: "
            f"{index_verdict.decision.reason}",
            {"type": "index", "index": index_descriptor.digest, "indexPolicy": dict(index_verdict.decision.details)},
            code=POLICY_SATISFIED,
            verifiers=index_verdict.decision.verifiers,
        )
        return dataclasses.replace(
            own,
            decision=decision,
            artifacts=tuple(index_verdict.artifacts),
            notes=index_verdict.notes,
            complete=index_verdict.complete,
        )

    # -- the shared tier ------------------------------------------------------------------------------------------

    @staticmethod
    def _verdict_ttl(runtime: Runtime, verdict: Verdict) -> float:
        """How long a verdict may be reused: ``verdictTtl``, and only ``min(verdictTtl, tagTtl)`` for one decided
        without examining every referrer (see :meth:`_configure_caches`)."""
        c = runtime.config.cache
        if not c.verdict_max_entries:
            return 0.0
        return c.verdict_ttl if verdict.complete else min(c.verdict_ttl, c.tag_ttl)

    def _shared_verdict_key(
        self, runtime: Runtime, store: ReferrerStore, ref: ImageRef, descriptor: Descriptor
    ) -> VerdictKey:
        return (store.name, ref.name, ref.tag or "", descriptor.digest, runtime.config.decision_generation)

    def _shared_resolution_key(
        self, runtime: Runtime, store: ReferrerStore, ref: ImageRef
    ) -> tuple[str, ResolutionKey]:
        generation = runtime.config.decision_generation
        if ref.digest:
            return "subject", (store.name, generation, f"{ref.name}@{ref.digest}")
        return "tag", (store.name, generation, str(ref))

    async def _shared_verdict(
        self, runtime: Runtime, store: ReferrerStore, ref: ImageRef, descriptor: Descriptor, shared: SharedTier
    ) -> Verdict | None:
        found = await shared.get_verdict(self._shared_verdict_key(runtime, store, ref, descriptor))
        if found is None:
            return None
        verdict, remaining = found
        local = self.verdicts if verdict.complete else self.partial_verdicts
        local.put(self._verdict_key(runtime, store, ref, descriptor), verdict, ttl=remaining)
        return verdict

    async def _shared_resolution(
        self, runtime: Runtime, store: ReferrerStore, ref: ImageRef, shared: SharedTier
    ) -> Descriptor | None:
        """Another replica's fresh resolution of ``ref``; a stale one only arms stale-if-error."""
        kind, key = self._shared_resolution_key(runtime, store, ref)
        found = await shared.get_resolution(kind, key)
        if found is None:
            return None
        cache, cache_key = self._resolution_key(runtime, store, ref)
        if not ref.digest and found.stale_for > 0:
            self.stale_tags.put(cache_key, found.descriptor, ttl=found.stale_for)
        if found.fresh_for <= 0:
            return None
        cache.put(cache_key, found.descriptor, ttl=found.fresh_for)
        return found.descriptor

    async def _publish_resolution(
        self, runtime: Runtime, store: ReferrerStore, ref: ImageRef, descriptor: Descriptor, shared: SharedTier
    ) -> None:
        c = runtime.config.cache
        if not c.tag_max_entries:
            return
        kind, key = self._shared_resolution_key(runtime, store, ref)
        if ref.digest:
            await shared.put_resolution(kind, key, descriptor, max(c.verdict_ttl, c.tag_ttl), 0.0)
        else:
            stale = c.tag_ttl + c.tag_stale_if_error if c.tag_stale_if_error and c.tag_ttl else 0.0
            await shared.put_resolution(kind, key, descriptor, c.tag_ttl, stale)

    async def _verify_subject(self, runtime: Runtime, store: ReferrerStore, subject: Subject) -> Verdict:
        started = time.perf_counter()
        now = self.clock()
        collector = EvidenceCollector(
            store,
            subject,
            runtime.verifiers_for(subject.ref),
            runtime.policy,
            runtime.config.limits,
            self._semaphore,
            now,
            platform_artifact_types=runtime.config.multi_arch.platform_artifact_types,
            max_platforms=runtime.config.multi_arch.max_platforms,
        )
        results = await collector.collect()
        decision = runtime.policy.decide(subject, results)
        if not decision.allowed and collector.notes:
            decision = dataclasses.replace(decision, reason=f"{decision.reason} [{'; '.join(collector.notes[:2])}]")
        verdict = Verdict(
            subject=subject.ref.pinned(),
            digest=subject.descriptor.digest,
            media_type=subject.descriptor.media_type,
            decision=decision,
            artifacts=tuple(results),
            verified_at=now.isoformat().replace("+00:00", "Z"),
            config_generation=runtime.generation,
            notes=tuple(collector.notes),
            complete=collector.complete,
        )
        log.info(
            "subject_verified",
            subject=verdict.subject,
            allowed=verdict.allowed,
            complete=verdict.complete,
            artifacts=len(results),
            duration_ms=round((time.perf_counter() - started) * 1000, 1),
        )
        return verdict
