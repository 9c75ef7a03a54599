"""The ``Verifier`` seam: protocol, request/result types and the factory registry."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from provider import specs
from provider.confignode import Node
from provider.oci import Descriptor, Manifest
from provider.plugins import PluginRegistry
from provider.reference import ImageRef
from provider.specs import Signature
from provider.specs import VerifierSpec as VerifierSpec
from provider.verdict import ArtifactResult


@dataclass(frozen=True, slots=True)
class Subject:
    """The image being verified: its digest-pinned reference and its descriptor."""

    ref: ImageRef
    descriptor: Descriptor


class ContentSource(Protocol):
    """Digest-verified, size-limited reads from the subject's repository."""

    async def fetch_manifest(self, descriptor: Descriptor) -> Manifest: ...

    async def fetch_blob(self, descriptor: Descriptor, max_bytes: int | None = None) -> bytes: ...


@dataclass(frozen=True, slots=True)
class VerificationRequest:
    """One artifact to judge. ``referrers`` lists the artifacts examined beside it for the same subject (of the
    types any configured verifier asked for), in examination order. ``accepted`` holds the digests of those
    siblings that are evidence under the policy — verified, and signed where the policy requires a signature —, and
    ``unsettled`` those that passed but whose required signatures could not all be examined (a consumer must not
    judge without them); both are filled in only for a :class:`SiblingConsumer`, whose consumed types the executor
    judges first."""

    subject: Subject
    artifact: Descriptor
    manifest: Manifest
    content: ContentSource
    now: datetime
    referrers: tuple[Descriptor, ...] = ()
    accepted: frozenset[str] = frozenset()
    unsettled: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class VerifierResult:
    """A verifier's answer. A negative verdict is ``succeeded=False`` with a reason, never an exception."""

    succeeded: bool
    reason: str
    details: Mapping[str, Any] = field(default_factory=dict)


class Verifier(Protocol):
    """Judges one kind of artifact. Raises only when it cannot decide (the executor records an error)."""

    name: str
    type: str

    def can_verify(self, artifact: Descriptor) -> bool: ...

    async def verify(self, request: VerificationRequest) -> VerifierResult: ...


class SiblingConsumer(Protocol):
    """A verifier whose judgement reads sibling artifacts (a report reading VEX documents). Artifacts of the
    ``consumes`` types are judged, with their nested signatures, before it runs; it may read only the siblings in
    ``VerificationRequest.accepted``."""

    consumes: frozenset[str]


SignedUnderPolicy = Callable[[ArtifactResult], Signature]


class Reconciler(Protocol):
    """A verifier whose results for one subject are judged together once every result (nested signatures
    included) is known, e.g. only the newest report decides.

    ``signed`` tells, for a result, whether the artifact carries the signatures the policy requires on it
    (:class:`provider.specs.Signature`). ``complete`` is false when a limit stopped the listing of this
    verifier's artifact types, so that some artifacts were not examined."""

    def reconcile(
        self, results: Sequence[ArtifactResult], signed: SignedUnderPolicy, complete: bool
    ) -> list[ArtifactResult]: ...


class VerifierPlugin(Protocol):
    """Factory for one verifier ``type``: parses its parameters and builds instances."""

    default_artifact_types: frozenset[str]

    def parse_params(self, node: Node) -> Any: ...

    def create(self, spec: VerifierSpec) -> Verifier: ...


verifier_types: PluginRegistry[VerifierPlugin] = specs.verifier_types
