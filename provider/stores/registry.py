"""The ``registry`` store: subjects and referrers from OCI registries through :class:`RegistryClient`."""

from __future__ import annotations

from typing import Any

from provider import mediatypes as mt
from provider.confignode import Node
from provider.errors import ArtifactTooLargeError
from provider.oci import Descriptor, Manifest, ReferrerListing
from provider.reference import ImageRef
from provider.registry.client import RegistryClient
from provider.stores.base import ReferrerStore, StoreResources, StoreSpec, store_types


class RegistryStore:
    def __init__(self, name: str, client: RegistryClient, max_manifest_bytes: int) -> None:
        self.name = name
        self._client = client
        self._max_manifest_bytes = max_manifest_bytes

    async def resolve(self, ref: ImageRef) -> Descriptor:
        return await self._client.resolve(ref)

    async def list_referrers(
        self, ref: ImageRef, subject: Descriptor, artifact_types: frozenset[str] | None
    ) -> ReferrerListing:
        return await self._client.list_referrers(ref, subject.digest, artifact_types)

    async def fetch_manifest(self, ref: ImageRef, descriptor: Descriptor) -> Manifest:
        if descriptor.size > self._max_manifest_bytes:
            raise ArtifactTooLargeError(
                f"manifest {descriptor.digest} is {descriptor.size} bytes, over {self._max_manifest_bytes}"
            )
        return await self._client.get_manifest(
            ref,
            descriptor.digest,
            mt.ACCEPT_REFERRER + ", " + mt.DOCKER_MANIFEST + ", " + mt.DOCKER_MANIFEST_LIST,
            descriptor.digest,
            f"manifest {ref.name}@{descriptor.digest}",
        )

    async def fetch_blob(self, ref: ImageRef, descriptor: Descriptor, max_bytes: int) -> bytes:
        return await self._client.get_blob(ref, descriptor, max_bytes, f"blob {ref.name}@{descriptor.digest}")

    async def close(self) -> None:
        """The client is shared and closed by its owner."""


@store_types.register("registry")
class RegistryStorePlugin:
    def parse_params(self, node: Node) -> Any:
        return None

    def create(self, spec: StoreSpec, resources: StoreResources) -> ReferrerStore:
        return RegistryStore(spec.name, resources.registry, resources.limits.max_manifest_bytes)
