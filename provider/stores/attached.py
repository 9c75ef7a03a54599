"""Stores that list attestor-style evidence beside the registry's referrers.

A ``grafeas`` or ``lookaside`` store resolves images and lists OCI referrers through the registry (exactly as
the ``registry`` store does) and adds its own findings as synthetic artifacts
(:func:`provider.attestations.synthetic_artifact`). Registry listings never contribute artifacts of the
synthetic types: those come only from the store itself.
"""

from __future__ import annotations

from provider import mediatypes as mt
from provider.attestations import synthetic_manifest
from provider.confignode import Node
from provider.errors import ArtifactTooLargeError
from provider.oci import Descriptor, Manifest, ReferrerListing
from provider.reference import ImageRef
from provider.registry.client import RegistryClient
from provider.stores.registry import RegistryStore


def parse_registry_referrers(node: Node) -> bool:
    """``registryReferrers`` (default true): also list the registry's OCI referrers and cosign tags."""
    return node.flag("registry_referrers", True)


class AttachedEvidenceStore:
    """Base class: subclasses implement :meth:`_attached` and set ``artifact_type``."""

    artifact_type: str

    def __init__(self, name: str, client: RegistryClient, max_manifest_bytes: int, registry_referrers: bool) -> None:
        self.name = name
        self._client = client
        self._registry = RegistryStore(name, client, max_manifest_bytes)
        self._registry_referrers = registry_referrers

    async def resolve(self, ref: ImageRef) -> Descriptor:
        return await self._registry.resolve(ref)

    async def list_referrers(
        self, ref: ImageRef, subject: Descriptor, artifact_types: frozenset[str] | None
    ) -> ReferrerListing:
        if subject.artifact_type in mt.ATTESTED_EVIDENCE_TYPES:
            return ReferrerListing(())
        listing = ReferrerListing(())
        if self._registry_referrers:
            others = None if artifact_types is None else artifact_types - mt.ATTESTED_EVIDENCE_TYPES
            if others is None or others:
                listing = await self._registry.list_referrers(ref, subject, others)
        attached = ReferrerListing(())
        if artifact_types is None or self.artifact_type in artifact_types:
            self._client.check_allowed(ref)
            attached = await self._attached(ref, subject)
        registry = [d for d in listing.descriptors if d.artifact_type not in mt.ATTESTED_EVIDENCE_TYPES]
        return ReferrerListing(
            (*registry, *attached.descriptors),
            (*listing.notes, *attached.notes),
            listing.truncated or attached.truncated,
            listing.other_types,
        )

    async def _attached(self, ref: ImageRef, subject: Descriptor) -> ReferrerListing:
        """The store's own findings; ``truncated`` when a limit stopped the search (the verdict then says so and is
        kept only briefly, instead of a flood silently hiding a valid attestation)."""
        raise NotImplementedError

    async def fetch_manifest(self, ref: ImageRef, descriptor: Descriptor) -> Manifest:
        if descriptor.artifact_type in mt.ATTESTED_EVIDENCE_TYPES and descriptor.data is not None:
            return synthetic_manifest(descriptor)
        return await self._registry.fetch_manifest(ref, descriptor)

    async def fetch_blob(self, ref: ImageRef, descriptor: Descriptor, max_bytes: int) -> bytes:
        if descriptor.data is not None:
            if len(descriptor.data) > max_bytes:
                raise ArtifactTooLargeError(f"blob {descriptor.digest} is over the {max_bytes}-byte limit")
            return descriptor.data
        return await self._registry.fetch_blob(ref, descriptor, max_bytes)

    async def close(self) -> None:
        """Subclasses release their own connections; the registry client is shared."""
