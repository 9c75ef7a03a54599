"""The pipeline for one image: resolve → list referrers → verify (bounded, concurrent) → nested → policy.

:class:`Runtime` holds what one configuration generation built (client, stores, verifiers, policy);
:class:`Engine` holds the caches that outlive reloads and swaps runtimes atomically.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TypeVar

import structlog

from provider import deadline, metrics
from provider import mediatypes as mt
from provider.cache import ContentCache, SingleFlight, TTLMap
from provider.config import Config, matches_any
from provider.errors import NotFoundError, OverloadedError, ProviderError, SubjectMismatchError, UnsupportedError
from provider.oci import Descriptor, Manifest
from provider.policies.base import PolicyEnforcer, policy_types
from provider.reference import ImageRef, parse_reference
from provider.registry.client import LISTING_NOTES, RegistryClient
from provider.stores.base import ReferrerStore, StoreResources, store_types
from provider.verdict import ArtifactResult, Verdict
from provider.verifiers.base import (
    Subject,
    VerificationRequest,
    Verifier,
    VerifierSpec,
    verifier_types,
)

log = structlog.get_logger("referee.executor")

Clock = Callable[[], datetime]
T = TypeVar("T")


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class _ConfiguredVerifier:
    spec: VerifierSpec
    verifier: Verifier


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
        self.verifiers: list[_ConfiguredVerifier] = []
        for vspec in config.verifiers:
            vplugin = verifier_types.get(vspec.type)
            assert vplugin is not None
            self.verifiers.append(_ConfiguredVerifier(vspec, vplugin.create(vspec)))
        pplugin = policy_types.get(config.policy.type)
        assert pplugin is not None
        self.policy: PolicyEnforcer = pplugin.create(config.policy)

    @property
    def generation(self) -> str:
        return self.config.generation

    def store_for(self, ref: ImageRef) -> ReferrerStore:
        for scopes, store in self.stores:
            if matches_any(scopes, ref.registry, ref.repository):
                return store
        raise UnsupportedError(f"no store is configured for {ref.name}")

    def verifiers_for(self, ref: ImageRef) -> list[_ConfiguredVerifier]:
        return [v for v in self.verifiers if matches_any(v.spec.scopes, ref.registry, ref.repository)]

    async def close(self) -> None:
        for _, store in self.stores:
            await store.close()
        await self.client.close()


async def _bounded(runtime: Runtime, work: Awaitable[T], what: str) -> T:
    """Run shared work under its own deadline (``limits.verificationTimeout``), not the asking request's."""
    seconds = runtime.config.limits.verification_timeout
    with deadline.fresh(seconds):
        try:
            async with asyncio.timeout(seconds):
                return await work
        except TimeoutError:
            raise deadline.exceeded(what) from None


def _check_subject(manifest: Manifest, artifact: Descriptor, subject: Subject) -> None:
    """A referrer list is not trusted (any pusher can write the tag-schema index): the referrer manifest's own
    ``subject`` must be the image (or parent artifact) under verification. cosign's legacy tag forms carry no
    ``subject``; their signed payload binds the digest instead."""
    if artifact.artifact_type in mt.COSIGN_LEGACY_TYPES:
        return
    expected = subject.descriptor.digest
    if manifest.subject is None:
        raise SubjectMismatchError(f"referrer {artifact.digest} has no subject; it cannot be evidence for {expected}")
    if manifest.subject.digest != expected:
        raise SubjectMismatchError(
            f"referrer {artifact.digest} was listed for {expected} but its subject is {manifest.subject.digest}"
        )


class _Content:
    """A verifier's view of the subject's repository (digest-verified, size-limited reads)."""

    def __init__(self, store: ReferrerStore, ref: ImageRef, max_blob_bytes: int) -> None:
        self._store = store
        self._ref = ref
        self._max_blob_bytes = max_blob_bytes

    async def fetch_manifest(self, descriptor: Descriptor) -> Manifest:
        return await self._store.fetch_manifest(self._ref, descriptor)

    async def fetch_blob(self, descriptor: Descriptor, max_bytes: int | None = None) -> bytes:
        limit = self._max_blob_bytes if max_bytes is None else min(max_bytes, self._max_blob_bytes)
        return await self._store.fetch_blob(self._ref, descriptor, limit)


@dataclass(frozen=True, slots=True)
class Outcome:
    """The result for one key: a verdict, or the error that stopped it (``error.transient`` decides how it
    is reported to Gatekeeper)."""

    key: str
    verdict: Verdict | None = None
    error: ProviderError | None = None
    cached: bool = False


class Engine:
    """Runs verifications against the current runtime, with caches that survive configuration reloads."""

    def __init__(self, config: Config, *, clock: Clock = utc_now, monotonic: Callable[[], float] = time.monotonic):
        self.clock = clock
        self.content = ContentCache(config.cache.content_max_bytes)
        self._monotonic = monotonic
        self.runtime = Runtime(config, self.content)
        self._configure_caches(config)
        self._flight: SingleFlight[tuple[str, str, str, str], Verdict] = SingleFlight()
        self._resolving: SingleFlight[tuple[str, str], Descriptor] = SingleFlight()
        self._retired: set[asyncio.Task[None]] = set()

    def _configure_caches(self, config: Config) -> None:
        c = config.cache
        self.verdicts: TTLMap[tuple[str, str, str, str], Verdict] = TTLMap(
            "verdict", c.verdict_max_entries, c.verdict_ttl, self._monotonic
        )
        self.tags: TTLMap[tuple[str, str], Descriptor] = TTLMap("tag", c.tag_max_entries, c.tag_ttl, self._monotonic)
        self.subjects: TTLMap[tuple[str, str], Descriptor] = TTLMap(
            "subject", c.tag_max_entries, max(c.verdict_ttl, c.tag_ttl), self._monotonic
        )
        self._semaphore = asyncio.Semaphore(config.limits.max_concurrent_verifications)

    @property
    def config(self) -> Config:
        return self.runtime.config

    def swap(self, config: Config) -> None:
        """Install a new configuration generation; in-flight work finishes on the old one."""
        old = self.runtime
        if old.config.cache.content_max_bytes != config.cache.content_max_bytes:
            self.content = ContentCache(config.cache.content_max_bytes)
        self.runtime = Runtime(config, self.content)
        if old.config.cache != config.cache or old.config.limits != config.limits:
            self._configure_caches(config)
        task = asyncio.ensure_future(self._retire(old))
        self._retired.add(task)
        task.add_done_callback(self._retired.discard)

    async def _retire(self, runtime: Runtime) -> None:
        await asyncio.sleep(runtime.config.limits.verification_timeout + 1.0)
        await runtime.close()

    async def close(self) -> None:
        await self._flight.cancel_all()
        await self._resolving.cancel_all()
        for task in list(self._retired):
            task.cancel()
        await self.runtime.close()

    # -- entry points ------------------------------------------------------------------------------------------

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
            return ref, await self._resolve(runtime, runtime.store_for(ref), ref)

    # -- internals ------------------------------------------------------------------------------------------------

    async def _resolve(self, runtime: Runtime, store: ReferrerStore, ref: ImageRef) -> Descriptor:
        """The subject's descriptor: digests are cached for the verdict TTL, tags for ``cache.tagTtl``.
        Concurrent resolutions of one reference share one registry call, which finishes in the background
        (within ``limits.verificationTimeout``) even when the asking request's deadline passes."""
        if ref.digest:
            cache, cache_key = self.subjects, (store.name, f"{ref.name}@{ref.digest}")
        else:
            cache, cache_key = self.tags, (f"{store.name}/{runtime.generation}", str(ref))
        found = cache.get(cache_key)
        if found is not None:
            return found

        async def compute() -> Descriptor:
            descriptor = await _bounded(runtime, store.resolve(ref), f"resolution of {ref}")
            cache.put(cache_key, descriptor)
            return descriptor

        if cache_key not in self._resolving:
            self._check_capacity(runtime)
        return await self._resolving.run(cache_key, compute)

    def _check_capacity(self, runtime: Runtime) -> None:
        """Shared work outlives requests; bound how much of it may pile up (keys are attacker-chosen)."""
        pending = len(self._flight) + len(self._resolving)
        if pending >= runtime.config.limits.max_pending_verifications:
            raise OverloadedError(f"{pending} verifications already pending; ask again shortly")

    async def _verify(self, key: str) -> tuple[Verdict, bool]:
        ref = parse_reference(key)
        runtime = self.runtime
        store = runtime.store_for(ref)
        descriptor = await self._resolve(runtime, store, ref)
        pinned = ref.with_digest(descriptor.digest)
        cache_key = (store.name, pinned.name, descriptor.digest, runtime.generation)
        cached = self.verdicts.get(cache_key)
        if cached is not None:
            return cached, True

        async def compute() -> Verdict:
            metrics.IN_FLIGHT.inc()
            try:
                subject = Subject(pinned, descriptor)
                verdict = await _bounded(
                    runtime, self._verify_subject(runtime, store, subject), f"verification of {pinned.pinned()}"
                )
            finally:
                metrics.IN_FLIGHT.dec()
            self.verdicts.put(cache_key, verdict)
            return verdict

        if cache_key not in self._flight:
            self._check_capacity(runtime)
        return await self._flight.run(cache_key, compute), False

    async def _verify_subject(self, runtime: Runtime, store: ReferrerStore, subject: Subject) -> Verdict:
        started = time.perf_counter()
        verifiers = runtime.verifiers_for(subject.ref)
        now = self.clock()
        notes: list[str] = []
        token = LISTING_NOTES.set(notes)
        try:
            results = await self._verify_referrers(runtime, store, subject, subject.descriptor, verifiers, now, 0)
        finally:
            LISTING_NOTES.reset(token)
        decision = runtime.policy.decide(subject, results)
        verdict = Verdict(
            subject=subject.ref.pinned(),
            digest=subject.descriptor.digest,
            media_type=subject.descriptor.media_type,
            decision=decision,
            artifacts=tuple(results),
            verified_at=now.isoformat().replace("+00:00", "Z"),
            config_generation=runtime.generation,
            notes=tuple(notes),
        )
        log.info(
            "subject_verified",
            subject=verdict.subject,
            allowed=verdict.allowed,
            artifacts=len(results),
            duration_ms=round((time.perf_counter() - started) * 1000, 1),
        )
        return verdict

    async def _verify_referrers(
        self,
        runtime: Runtime,
        store: ReferrerStore,
        subject: Subject,
        target: Descriptor,
        verifiers: Sequence[_ConfiguredVerifier],
        now: datetime,
        depth: int,
    ) -> list[ArtifactResult]:
        limits = runtime.config.limits
        wanted = frozenset().union(*(v.spec.artifact_types for v in verifiers)) if verifiers else frozenset()
        if not wanted:
            return []
        referrers: dict[str, Descriptor] = {}
        notes = LISTING_NOTES.get() if depth == 0 else None
        listing = LISTING_NOTES.set(notes)  # nested listings (evidence on evidence) add no notes
        try:
            async for d in store.list_referrers(subject.ref, target, wanted):
                referrers.setdefault(d.digest, d)
        finally:
            LISTING_NOTES.reset(listing)
        ordered = sorted(referrers.values(), key=lambda d: d.annotations.get(mt.ANNOTATION_CREATED, ""), reverse=True)
        if len(ordered) > limits.max_referrers:
            log.warning("referrers_capped", subject=subject.ref.pinned(), found=len(ordered), cap=limits.max_referrers)
            ordered = ordered[: limits.max_referrers]
        content = _Content(store, subject.ref, limits.max_blob_bytes)
        # Nested evidence (a signature on an SBOM) is about the parent artifact, not the image.
        target_subject = (
            subject
            if target.digest == subject.descriptor.digest
            else Subject(subject.ref.with_digest(target.digest), target)
        )
        siblings = tuple(ordered)
        jobs = [
            self._run_one(runtime, store, target_subject, artifact, v, content, verifiers, now, depth, siblings)
            for artifact in ordered
            for v in verifiers
            if v.verifier.can_verify(artifact)
        ]
        gathered = await asyncio.gather(*jobs, return_exceptions=True)
        results: list[ArtifactResult] = []
        for item in gathered:
            if isinstance(item, BaseException):
                raise item
            results.append(item)
        return results

    async def _run_one(
        self,
        runtime: Runtime,
        store: ReferrerStore,
        subject: Subject,
        artifact: Descriptor,
        configured: _ConfiguredVerifier,
        content: _Content,
        verifiers: Sequence[_ConfiguredVerifier],
        now: datetime,
        depth: int,
        siblings: tuple[Descriptor, ...],
    ) -> ArtifactResult:
        spec = configured.spec
        artifact_type = artifact.artifact_type or ""
        started = time.perf_counter()
        outcome = "error"
        try:
            async with self._semaphore:
                manifest = await store.fetch_manifest(subject.ref, artifact)
                _check_subject(manifest, artifact, subject)
                request = VerificationRequest(
                    subject=subject, artifact=artifact, manifest=manifest, content=content, now=now, referrers=siblings
                )
                result = await configured.verifier.verify(request)
            outcome = "success" if result.succeeded else "failure"
            nested: list[ArtifactResult] = []
            limits = runtime.config.limits
            if depth < limits.max_nested_depth and artifact_type in limits.nested_artifact_types:
                try:
                    nested = await self._verify_referrers(
                        runtime, store, subject, manifest.descriptor, verifiers, now, depth + 1
                    )
                except ProviderError as exc:
                    if exc.transient:
                        raise
                    reason = f"nested evidence could not be listed: {exc}"
                    nested = [self._error_result(manifest.descriptor, spec, exc.code, reason)]
            return ArtifactResult(
                digest=artifact.digest,
                artifact_type=artifact_type,
                verifier=spec.name,
                verifier_type=spec.type,
                succeeded=result.succeeded,
                reason=result.reason,
                details=result.details,
                nested=tuple(nested),
            )
        except ProviderError as exc:
            if exc.transient:
                raise
            if isinstance(exc, NotFoundError):
                reason = f"referrer listed but not fetchable: {exc.message}"
            else:
                reason = f"could not verify: {exc}"
            return self._error_result(artifact, spec, exc.code, reason)
        except Exception as exc:
            log.exception("verifier_crashed", verifier=spec.name, artifact=artifact.digest)
            return self._error_result(artifact, spec, "INTERNAL_ERROR", f"verifier failed: {type(exc).__name__}")
        finally:
            metrics.VERIFIER_DURATION.labels(spec.name, spec.type, outcome).observe(time.perf_counter() - started)

    @staticmethod
    def _error_result(artifact: Descriptor, spec: VerifierSpec, code: str, reason: str) -> ArtifactResult:
        return ArtifactResult(
            digest=artifact.digest,
            artifact_type=artifact.artifact_type or "",
            verifier=spec.name,
            verifier_type=spec.type,
            succeeded=False,
            reason=reason,
            error=code,
        )
