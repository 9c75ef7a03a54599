"""The ``Verifier`` seam: protocol, request/result types and the factory registry."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from provider.confignode import Node
from provider.oci import Descriptor, Manifest
from provider.plugins import PluginRegistry
from provider.reference import ImageRef


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
    """One artifact to judge. ``referrers`` lists every artifact found beside it for the same subject (of
    the types any configured verifier asked for), so a verifier can consult siblings (VEX documents for a
    report, the newest of several reports) through ``content``."""

    subject: Subject
    artifact: Descriptor
    manifest: Manifest
    content: ContentSource
    now: datetime
    referrers: tuple[Descriptor, ...] = ()


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


@dataclass(frozen=True, slots=True)
class VerifierSpec:
    """A configured verifier instance (``verifiers[i]`` in YAML)."""

    name: str
    type: str
    artifact_types: frozenset[str]
    scopes: tuple[str, ...]
    params: Any


class VerifierPlugin(Protocol):
    """Factory for one verifier ``type``: parses its parameters and builds instances."""

    default_artifact_types: frozenset[str]

    def parse_params(self, node: Node) -> Any: ...

    def create(self, spec: VerifierSpec) -> Verifier: ...


verifier_types: PluginRegistry[VerifierPlugin] = PluginRegistry("verifier")
