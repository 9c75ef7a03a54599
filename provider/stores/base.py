"""The ``ReferrerStore`` seam: where subjects and their referrers come from."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from provider import specs
from provider.confignode import Node
from provider.oci import Descriptor, Manifest, ReferrerListing
from provider.plugins import PluginRegistry
from provider.reference import ImageRef
from provider.specs import StoreSpec as StoreSpec

if TYPE_CHECKING:
    from provider.cache import ContentCache
    from provider.config import LimitsConfig
    from provider.registry.client import RegistryClient


__all__ = ["ReferrerListing", "ReferrerStore", "StorePlugin", "StoreResources", "StoreSpec", "store_types"]


class ReferrerStore(Protocol):
    """Resolves references and lists referrers; every read is digest-verified and size-limited.

    Raises only store errors (``ProviderError`` subclasses); pagination and fallbacks stay inside.
    """

    name: str

    async def resolve(self, ref: ImageRef) -> Descriptor: ...

    async def list_referrers(
        self, ref: ImageRef, subject: Descriptor, artifact_types: frozenset[str] | None
    ) -> ReferrerListing:
        """Referrers of ``subject`` of the wanted types (``None``: all), never Referee's synthetic cosign-legacy
        types unless the store itself found the legacy tags."""
        ...

    async def fetch_manifest(self, ref: ImageRef, descriptor: Descriptor) -> Manifest: ...

    async def fetch_blob(self, ref: ImageRef, descriptor: Descriptor, max_bytes: int) -> bytes: ...

    async def close(self) -> None: ...


@dataclass(frozen=True, slots=True)
class StoreResources:
    """Shared objects a store factory may use: the registry client, content cache and limits."""

    registry: RegistryClient
    content: ContentCache
    limits: LimitsConfig


class StorePlugin(Protocol):
    def parse_params(self, node: Node) -> Any: ...

    def create(self, spec: StoreSpec, resources: StoreResources) -> ReferrerStore: ...


store_types: PluginRegistry[StorePlugin] = specs.store_types
