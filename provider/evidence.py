"""The evidence for one subject: list its referrers, choose which to examine, judge them, and reconcile.

Per level (the image, then each artifact whose own referrers are verified):

1. **Listing** — whatever the store lists (attacker-writable on registries without the referrers API).
2. **Selection** — per artifact type, in listing order, up to ``limits.maxReferrers`` artifacts that could be fetched
   and name this subject; entries that cannot be fetched do not count against the cap. Nothing a pusher writes
   (annotations, ordering across types) decides what is examined, and what was not examined is said: each verifier
   gets a ``REFERRERS_CAPPED`` result for a type that was capped, so ``every`` rules fail closed.
3. **Judging** — every verifier on every examined artifact it can verify, with nested referrers (signatures on an
   SBOM). Types a :class:`SiblingConsumer` reads (VEX documents for a report) are judged first; the consumer sees
   only those that are evidence under the policy (verified, and signed wherever the policy requires it).
4. **Reconciling** — a :class:`Reconciler` (the newest report decides) judges its results together once every
   result and signature is known.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TypeVar

import structlog

from provider import mediatypes as mt
from provider import metrics
from provider.config import LimitsConfig
from provider.errors import (
    ArtifactTooLargeError,
    AuthDeniedError,
    DigestMismatchError,
    NotFoundError,
    ProviderError,
    ReferrersCappedError,
    RegistryError,
    SubjectMismatchError,
)
from provider.oci import Descriptor, Manifest, ReferrerListing
from provider.policies.base import PolicyEnforcer, Signature, signed_under
from provider.stores.base import ReferrerStore
from provider.verdict import ArtifactResult
from provider.verifiers.base import (
    SignedUnderPolicy,
    Subject,
    VerificationRequest,
    Verifier,
    VerifierResult,
    VerifierSpec,
)

log = structlog.get_logger("referee.evidence")

T = TypeVar("T")
EXAMINE_FACTOR = 4
# Faults of the registry while reading content (not of the content itself, which is digest-checked): a verdict that
# met one could not see its evidence, so it is not cached as a plain denial. A redirect loop, a redirect or token realm
# refused, a 401 loop or an unexpected 4xx on a blob are the registry's, like wrong bytes or a vanished artifact.
READ_FAULTS = (DigestMismatchError, ArtifactTooLargeError, NotFoundError, RegistryError, AuthDeniedError)
MAX_NOTES = 8
MAX_NOTE_CHARS = 300


@dataclass(frozen=True, slots=True)
class ConfiguredVerifier:
    spec: VerifierSpec
    verifier: Verifier


@dataclass(frozen=True, slots=True)
class _Entry:
    """A listed referrer that was examined: its manifest, or why it could not be used."""

    descriptor: Descriptor
    manifest: Manifest | None = None
    fault: ProviderError | None = None


def check_subject(manifest: Manifest, artifact: Descriptor, subject: Subject) -> None:
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


def _attestation_manifest(descriptor: Descriptor) -> bool:
    """BuildKit's in-index attestation manifests (``vnd.docker.reference.type: attestation-manifest``, platform
    ``unknown/unknown``) are not platforms."""
    if descriptor.annotations.get("vnd.docker.reference.type") == "attestation-manifest":
        return True
    platform = descriptor.platform or {}
    return platform.get("os") == "unknown" and platform.get("architecture") == "unknown"


def _shown(artifact_type: str) -> str:
    """An artifact type as users know it (Referee's internal names for cosign's tags are not theirs)."""
    suffix = mt.COSIGN_LEGACY_TYPES.get(artifact_type)
    return f"cosign's sha256-<digest>{suffix} tag" if suffix else artifact_type


async def _all(works: Sequence[Awaitable[T]]) -> list[T]:
    """Await every work item; re-raise the first exception only after all have finished."""
    gathered = await asyncio.gather(*works, return_exceptions=True)
    out: list[T] = []
    for item in gathered:
        if isinstance(item, BaseException):
            raise item
        out.append(item)
    return out


class _Content:
    """A verifier's view of the subject's repository (digest-verified, size-limited reads).

    A read that fails for the registry's sake — wrong bytes for a digest, more bytes than the descriptor declared,
    an artifact listed but gone, a redirect loop or a refused redirect, access refused — is reported to ``on_fault``
    even when the verifier turns it into a failed result: a verdict that could not read its evidence must not be
    cached as a plain denial."""

    def __init__(
        self,
        store: ReferrerStore,
        subject: Subject,
        max_blob_bytes: int,
        on_fault: Callable[[Descriptor, ProviderError], None],
    ) -> None:
        self._store = store
        self._ref = subject.ref
        self._max_blob_bytes = max_blob_bytes
        self._on_fault = on_fault

    async def fetch_manifest(self, descriptor: Descriptor) -> Manifest:
        try:
            return await self._store.fetch_manifest(self._ref, descriptor)
        except READ_FAULTS as exc:
            self._on_fault(descriptor, exc)
            raise

    async def fetch_blob(self, descriptor: Descriptor, max_bytes: int | None = None) -> bytes:
        limit = self._max_blob_bytes if max_bytes is None else min(max_bytes, self._max_blob_bytes)
        try:
            return await self._store.fetch_blob(self._ref, descriptor, limit)
        except READ_FAULTS as exc:
            if not (isinstance(exc, ArtifactTooLargeError) and descriptor.size > limit):
                self._on_fault(descriptor, exc)  # declared too large is the artifact's own problem, not a fault
            raise


def error_result(artifact: Descriptor, spec: VerifierSpec, code: str, reason: str) -> ArtifactResult:
    return ArtifactResult(
        digest=artifact.digest,
        artifact_type=artifact.artifact_type or "",
        verifier=spec.name,
        verifier_type=spec.type,
        succeeded=False,
        reason=reason,
        error=code,
    )


class EvidenceCollector:
    """Collects the artifact results for one subject; ``notes`` and ``complete`` say what could not be seen."""

    def __init__(
        self,
        store: ReferrerStore,
        subject: Subject,
        verifiers: Sequence[ConfiguredVerifier],
        policy: PolicyEnforcer,
        limits: LimitsConfig,
        semaphore: asyncio.Semaphore,
        now: datetime,
        *,
        platform_artifact_types: frozenset[str] = frozenset(),
        max_platforms: int = 16,
        explain: bool = True,
    ) -> None:
        self._store = store
        self._platform_types = platform_artifact_types
        self._max_platforms = max_platforms
        self._explain = explain
        self._subject = subject
        self._verifiers = tuple(verifiers)
        self._policy = policy
        self._limits = limits
        self._semaphore = semaphore
        self._now = now
        self._content = _Content(store, subject, limits.max_blob_bytes, self._read_fault)
        self._nested: dict[tuple[str, int], asyncio.Task[list[ArtifactResult]]] = {}
        self.notes: list[str] = []
        self.complete = True

    async def collect(self) -> list[ArtifactResult]:
        try:
            results = await self._level(self._subject, 0)
            if self._platform_types and self._subject.descriptor.media_type in mt.INDEX_TYPES:
                results.extend(await self._platform_results())
            return results
        finally:
            for task in self._nested.values():
                task.cancel()

    async def _platform_results(self) -> list[ArtifactResult]:
        """Evidence of ``multiArch.platformArtifactTypes`` attached to the platform manifests the index lists. The
        index is read by its digest (verified), so the platforms are the ones it binds; each platform's referrers
        must name that platform as their subject."""
        index = await self._store.fetch_manifest(self._subject.ref, self._subject.descriptor)
        platforms = [d for d in index.manifests if d.media_type in mt.MANIFEST_TYPES and not _attestation_manifest(d)]
        if len(platforms) > self._max_platforms:
            self.complete = False
            self._note(
                f"{len(platforms) - self._max_platforms} platform manifests of the index were not examined "
                f"(multiArch.maxPlatforms {self._max_platforms})"
            )
            platforms = platforms[: self._max_platforms]
        verifiers = [
            ConfiguredVerifier(
                dataclasses.replace(v.spec, artifact_types=v.spec.artifact_types & self._platform_types), v.verifier
            )
            for v in self._verifiers
            if v.spec.artifact_types & self._platform_types
        ]
        if not verifiers:
            return []

        async def one(platform: Descriptor) -> list[ArtifactResult]:
            child = EvidenceCollector(
                self._store,
                Subject(self._subject.ref.with_digest(platform.digest), platform),
                verifiers,
                self._policy,
                self._limits,
                self._semaphore,
                self._now,
                explain=False,
            )
            found = await child.collect()
            for note in child.notes:
                self._note(f"platform {platform.digest[:19]}: {note}")
            self.complete = self.complete and child.complete
            return [dataclasses.replace(r, subject=platform.digest) for r in found]

        return [r for results in await _all([one(p) for p in platforms]) for r in results]

    def _read_fault(self, descriptor: Descriptor, exc: ProviderError) -> None:
        self.complete = False
        self._note(f"{descriptor.digest[:19]} could not be read: {exc.code}")

    def _note(self, text: str) -> None:
        if len(self.notes) < MAX_NOTES and text not in self.notes:
            self.notes.append(text[:MAX_NOTE_CHARS])

    # -- one level ----------------------------------------------------------------------------------------------

    async def _level(self, subject: Subject, depth: int) -> list[ArtifactResult]:
        wanted = frozenset().union(*(v.spec.artifact_types for v in self._verifiers))
        if not wanted:
            return []
        listing = await self._store.list_referrers(subject.ref, subject.descriptor, wanted)
        for note in listing.notes:
            self._note(note)
        if depth == 0 and self._explain:
            self._explain_missing(subject, listing)
        entries, capped = await self._select(subject, listing.descriptors, wanted)
        if listing.truncated:
            self.complete = False
        examined = tuple(e.descriptor for e in entries if e.manifest is not None)
        consumed = [v for v in self._verifiers if getattr(v.verifier, "consumes", None)]
        results: dict[int, ArtifactResult] = {}

        def signed(result: ArtifactResult) -> Signature:
            return signed_under(self._policy, subject, result)

        async def judge(
            group: Sequence[ConfiguredVerifier], accepted: frozenset[str], unsettled: frozenset[str]
        ) -> None:
            jobs = [
                (i * len(self._verifiers) + self._verifiers.index(v), entry, v)
                for i, entry in enumerate(entries)
                for v in group
                if v.verifier.can_verify(entry.descriptor)
            ]
            done = await _all([self._run_one(subject, e, v, examined, accepted, unsettled, depth) for _, e, v in jobs])
            results.update((index, result) for (index, _, _), result in zip(jobs, done, strict=True))

        await judge([v for v in self._verifiers if v not in consumed], frozenset(), frozenset())
        if consumed:
            passed = [r for r in results.values() if r.succeeded and r.error is None]
            accepted = frozenset(r.digest for r in passed if signed(r) is Signature.PRESENT)
            unsettled = frozenset(r.digest for r in passed if signed(r) is Signature.UNKNOWN) - accepted
            await judge(consumed, accepted, unsettled)
        ordered = [results[i] for i in sorted(results)]
        truncated = set(capped) | (set(wanted) if listing.truncated else set())
        ordered.extend(self._capped_results(subject, capped, listing.truncated, wanted))
        return self._reconcile(ordered, signed, frozenset(truncated))

    def _explain_missing(self, subject: Subject, listing: ReferrerListing) -> None:
        """Say why a verifier will find nothing: the digest has no referrers at all, or only of other types."""
        if listing.notes or listing.truncated or listing.other_types is None:
            return
        listed: dict[str, int] = {}
        for d in listing.descriptors:
            listed[d.artifact_type or d.media_type] = listed.get(d.artifact_type or d.media_type, 0) + 1
        for kind, count in listing.other_types:
            listed[kind] = listed.get(kind, 0) + count
        if not listed:
            self._note(
                f"no referrers listed for {subject.descriptor.digest[:19]}…: nothing is attached to this digest "
                "(a tag's index and each of its platform manifests have their own digests)"
            )
            return
        total = sum(listed.values())
        for v in self._verifiers:
            if any(kind in v.spec.artifact_types for kind in listed):
                continue
            kinds = ", ".join(f"{kind} ({count})" for kind, count in list(listed.items())[:4])
            more = f" and {len(listed) - 4} more types" if len(listed) > 4 else ""
            self._note(
                f"{v.spec.name}: none of the {total} referrers listed is of a type it verifies "
                f"({', '.join(sorted(_shown(t) for t in v.spec.artifact_types))}); listed: {kinds}{more}"
            )

    async def _select(
        self, subject: Subject, listed: Sequence[Descriptor], wanted: frozenset[str]
    ) -> tuple[list[_Entry], dict[str, tuple[int, Descriptor]]]:
        """Per artifact type, in listing order, up to ``maxReferrers`` usable referrers (fetched, naming this
        subject); unusable ones are kept as faults but do not count. Returns the entries and, per capped type,
        how many were left and the first of them."""
        groups: dict[str, list[Descriptor]] = {}
        for d in listed:
            if d.artifact_type in wanted:
                groups.setdefault(d.artifact_type or "", []).append(d)
        cap = self._limits.max_referrers
        entries: list[_Entry] = []
        capped: dict[str, tuple[int, Descriptor]] = {}
        for artifact_type, group in groups.items():
            usable = position = 0
            budget = cap * EXAMINE_FACTOR
            while usable < cap and position < min(len(group), budget):
                window = group[position : position + min(cap - usable, budget - position)]
                position += len(window)
                fetched = await _all([self._fetch(subject, d) for d in window])
                entries.extend(fetched)
                usable += sum(1 for e in fetched if e.manifest is not None)
            if position < len(group):
                left = len(group) - position
                capped[artifact_type] = (left, group[position])
                self.complete = False
                self._note(f"{left} referrers of type {artifact_type} were not examined (limits.maxReferrers {cap})")
                log.warning(
                    "referrers_capped", subject=subject.ref.pinned(), artifact_type=artifact_type, left=left, cap=cap
                )
        return entries, capped

    async def _fetch(self, subject: Subject, descriptor: Descriptor) -> _Entry:
        try:
            async with self._semaphore:
                manifest = await self._store.fetch_manifest(subject.ref, descriptor)
            check_subject(manifest, descriptor, subject)
        except ProviderError as exc:
            if exc.transient:
                raise
            declared_too_large = descriptor.size > self._limits.max_manifest_bytes
            if isinstance(exc, READ_FAULTS) and not declared_too_large:
                self._read_fault(descriptor, exc)
            return _Entry(descriptor, fault=exc)
        return _Entry(descriptor, manifest=manifest)

    def _capped_results(
        self,
        subject: Subject,
        capped: dict[str, tuple[int, Descriptor]],
        listing_truncated: bool,
        wanted: frozenset[str],
    ) -> list[ArtifactResult]:
        """One ``REFERRERS_CAPPED`` result per verifier and type that was not examined in full."""
        out: list[ArtifactResult] = []
        code = ReferrersCappedError.code
        for v in self._verifiers:
            for artifact_type, (left, first) in capped.items():
                if v.verifier.can_verify(first):
                    reason = f"{left} further referrers of type {artifact_type} were not examined (maxReferrers)"
                    out.append(error_result(first, v.spec, code, reason))
            if listing_truncated:
                for artifact_type in sorted((v.spec.artifact_types & wanted) - set(capped)):
                    placeholder = Descriptor(subject.descriptor.media_type, subject.descriptor.digest, 0, artifact_type)
                    if v.verifier.can_verify(placeholder):
                        reason = f"the referrer listing was truncated; artifacts of type {artifact_type} may be missing"
                        out.append(error_result(placeholder, v.spec, code, reason))
        return out

    def _reconcile(
        self, results: list[ArtifactResult], signed: SignedUnderPolicy, truncated: frozenset[str]
    ) -> list[ArtifactResult]:
        for v in self._verifiers:
            reconcile = getattr(v.verifier, "reconcile", None)
            positions = [i for i, r in enumerate(results) if r.verifier == v.spec.name]
            if reconcile is None or not positions:
                continue
            consumed: frozenset[str] = getattr(v.verifier, "consumes", frozenset())
            complete = not ((v.spec.artifact_types - consumed) & truncated)
            replaced = reconcile([results[i] for i in positions], signed, complete)
            for i, result in zip(positions, replaced, strict=True):
                results[i] = result
        return results

    # -- one artifact -------------------------------------------------------------------------------------------

    async def _run_one(
        self,
        subject: Subject,
        entry: _Entry,
        configured: ConfiguredVerifier,
        examined: tuple[Descriptor, ...],
        accepted: frozenset[str],
        unsettled: frozenset[str],
        depth: int,
    ) -> ArtifactResult:
        spec = configured.spec
        artifact = entry.descriptor
        if entry.manifest is None:
            assert entry.fault is not None
            fault = entry.fault
            if isinstance(fault, NotFoundError):
                return error_result(artifact, spec, fault.code, f"referrer listed but not fetchable: {fault.message}")
            return error_result(artifact, spec, fault.code, f"could not verify: {fault}")
        manifest = entry.manifest
        started = asyncio.get_running_loop().time()
        outcome = "error"
        try:
            request = VerificationRequest(
                subject=subject,
                artifact=artifact,
                manifest=manifest,
                content=self._content,
                now=self._now,
                referrers=examined,
                accepted=accepted,
                unsettled=unsettled,
            )
            async with self._semaphore:
                result: VerifierResult = await configured.verifier.verify(request)
            outcome = "success" if result.succeeded else "failure"
            nested = await self._nested_results(subject, artifact, manifest, spec, depth)
            return ArtifactResult(
                digest=artifact.digest,
                artifact_type=artifact.artifact_type or "",
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
                return error_result(artifact, spec, exc.code, f"referrer listed but not fetchable: {exc.message}")
            return error_result(artifact, spec, exc.code, f"could not verify: {exc}")
        except Exception as exc:
            log.exception("verifier_crashed", verifier=spec.name, artifact=artifact.digest)
            return error_result(artifact, spec, "INTERNAL_ERROR", f"verifier failed: {type(exc).__name__}")
        finally:
            elapsed = asyncio.get_running_loop().time() - started
            metrics.VERIFIER_DURATION.labels(spec.name, spec.type, outcome).observe(elapsed)

    async def _nested_results(
        self, subject: Subject, artifact: Descriptor, manifest: Manifest, spec: VerifierSpec, depth: int
    ) -> list[ArtifactResult]:
        """The artifact's own referrers (its signatures), verified once per artifact however many verifiers
        judged it."""
        limits = self._limits
        if depth >= limits.max_nested_depth or (artifact.artifact_type or "") not in limits.nested_artifact_types:
            return []
        digest = manifest.descriptor.digest
        task = self._nested.get((digest, depth))
        if task is None:
            child = Subject(subject.ref.with_digest(digest), manifest.descriptor)
            task = asyncio.ensure_future(self._level(child, depth + 1))
            self._nested[(digest, depth)] = task
        try:
            return list(await asyncio.shield(task))
        except ProviderError as exc:
            if exc.transient:
                raise
            self.complete = False
            self._note(f"the referrers of {digest[:19]} could not be listed: {exc.code}")
            reason = f"nested evidence could not be listed: {exc}"
            return [error_result(manifest.descriptor, v.spec, exc.code, reason) for v in self._verifiers]
