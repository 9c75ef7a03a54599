"""The ``oci-layout`` store: an OCI image layout directory, for offline and pre-push verification.

Referrers are found three ways, as in a registry without the referrers API: manifests listed in
``index.json`` whose ``subject`` is the image, the ``sha256-<hex>`` tag-schema index, and cosign's legacy
``sha256-<hex>.sig`` / ``.att`` tags.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path

from provider import mediatypes as mt
from provider.confignode import Node
from provider.errors import ArtifactTooLargeError, ManifestInvalidError, NotFoundError
from provider.oci import (
    Descriptor,
    Manifest,
    ReferrerListing,
    listed_referrers,
    parse_index_descriptors,
    parse_manifest,
    referrer_descriptor,
)
from provider.reference import ImageRef, parse_digest, referrers_tag, verify_digest
from provider.stores.base import ReferrerStore, StoreResources, StoreSpec, store_types


@dataclass(frozen=True, slots=True)
class LayoutParams:
    path: str


class OCILayoutStore:
    def __init__(self, name: str, root: Path, max_manifest_bytes: int) -> None:
        self.name = name
        self.root = root
        self._max_manifest_bytes = max_manifest_bytes

    def _index(self) -> list[Descriptor]:
        layout = self.root / "oci-layout"
        if not layout.is_file():
            raise NotFoundError(f"{self.root} is not an OCI image layout (no oci-layout file)")
        raw = self._read(self.root / "index.json", self._max_manifest_bytes, "index.json")
        return parse_index_descriptors(raw, f"{self.root}/index.json")

    def _read(self, path: Path, max_bytes: int, what: str) -> bytes:
        try:
            with path.open("rb") as fh:
                data = fh.read(max_bytes + 1)
        except FileNotFoundError:
            raise NotFoundError(f"{what} not found in layout {self.root}") from None
        if len(data) > max_bytes:
            raise ArtifactTooLargeError(f"{what} is over the {max_bytes}-byte limit")
        return data

    def _blob(self, digest: str, max_bytes: int, what: str) -> bytes:
        parse_digest(digest)
        algorithm, _, encoded = digest.partition(":")
        data = self._read(self.root / "blobs" / algorithm / encoded, max_bytes, what)
        verify_digest(data, digest, what)
        return data

    def _tagged(self, index: list[Descriptor], ref: ImageRef, tag: str) -> Descriptor | None:
        """The manifest whose ``org.opencontainers.image.ref.name`` names ``tag``: ``<tag>``, or ``<name>:<tag>``
        where ``<name>`` is the reference's ``registry/repository`` or a trailing part of it on ``/`` boundaries
        (``app:v1`` and ``team/app:v1`` as ``skopeo copy … oci:DIR:team/app:v1`` writes them). The most
        complete name wins; a bare tag comes last."""
        best: tuple[int, Descriptor] | None = None
        for d in index:
            score = _ref_name_score(d.annotations.get(mt.ANNOTATION_REF_NAME), ref, tag)
            if score is not None and (best is None or score > best[0]):
                best = (score, d)
        return best[1] if best else None

    async def resolve(self, ref: ImageRef) -> Descriptor:
        return await asyncio.to_thread(self._resolve, ref)

    def _resolve(self, ref: ImageRef) -> Descriptor:
        index = self._index()
        if ref.digest:
            for d in index:
                if d.digest == ref.digest:
                    return Descriptor(media_type=d.media_type, digest=d.digest, size=d.size)
            manifest = self._manifest(ref.digest, None)
            return manifest.descriptor
        found = self._tagged(index, ref, ref.tag or "latest")
        if found is None:
            raise NotFoundError(f"tag {ref.tag!r} not found in layout {self.root}")
        if found.size > self._max_manifest_bytes:
            raise ArtifactTooLargeError(f"manifest {found.digest} over the size limit")
        return Descriptor(media_type=found.media_type, digest=found.digest, size=found.size)

    def _manifest(self, digest: str, media_type: str | None) -> Manifest:
        raw = self._blob(digest, self._max_manifest_bytes, f"manifest {digest}")
        return parse_manifest(raw, digest, media_type, f"manifest {digest}")

    async def list_referrers(
        self, ref: ImageRef, subject: Descriptor, artifact_types: frozenset[str] | None
    ) -> ReferrerListing:
        return ReferrerListing(tuple(await asyncio.to_thread(self._referrers, ref, subject, artifact_types)))

    def _referrers(self, ref: ImageRef, subject: Descriptor, artifact_types: frozenset[str] | None) -> list[Descriptor]:
        """Referrers found in ``index.json`` and the fallback index (never claiming Referee's synthetic legacy
        types), then cosign's legacy tags, which only the store itself presents under those types."""
        index = self._index()
        listed: list[Descriptor] = []
        for d in index:
            if d.digest == subject.digest or d.size > self._max_manifest_bytes:
                continue
            if d.media_type not in mt.SUPPORTED_MANIFEST_TYPES:
                continue
            try:
                manifest = self._manifest(d.digest, d.media_type)
            except (ManifestInvalidError, NotFoundError):
                continue
            if manifest.subject is not None and manifest.subject.digest == subject.digest:
                listed.append(referrer_descriptor(manifest))
        fallback = self._tagged(index, ref, referrers_tag(subject.digest))
        if fallback is not None:
            raw = self._blob(fallback.digest, self._max_manifest_bytes, "referrers tag index")
            listed.extend(parse_index_descriptors(raw, f"referrers tag {referrers_tag(subject.digest)}"))
        found = {d.digest: d for d in listed_referrers(listed, None)}
        for legacy_type, suffix in mt.COSIGN_LEGACY_TYPES.items():
            tagged = self._tagged(index, ref, referrers_tag(subject.digest) + suffix)
            if tagged is not None:
                manifest = self._manifest(tagged.digest, tagged.media_type)
                found[tagged.digest] = Descriptor(
                    media_type=manifest.descriptor.media_type,
                    digest=tagged.digest,
                    size=tagged.size,
                    artifact_type=legacy_type,
                    annotations=manifest.annotations,
                )
        return [d for d in found.values() if artifact_types is None or d.artifact_type in artifact_types]

    async def fetch_manifest(self, ref: ImageRef, descriptor: Descriptor) -> Manifest:
        if descriptor.size > self._max_manifest_bytes:
            raise ArtifactTooLargeError(f"manifest {descriptor.digest} over the size limit")
        return await asyncio.to_thread(self._manifest, descriptor.digest, descriptor.media_type)

    async def fetch_blob(self, ref: ImageRef, descriptor: Descriptor, max_bytes: int) -> bytes:
        if descriptor.data is not None:
            return descriptor.data
        if descriptor.size > max_bytes:
            raise ArtifactTooLargeError(f"blob {descriptor.digest} is {descriptor.size} bytes, over {max_bytes}")
        return await asyncio.to_thread(self._blob, descriptor.digest, max_bytes, f"blob {descriptor.digest}")

    async def close(self) -> None:
        """Nothing to release."""


@store_types.register("oci-layout")
class OCILayoutStorePlugin:
    def parse_params(self, node: Node) -> LayoutParams:
        path = node.string("path")
        if path is not None:
            resolved = node.problems.resolve(path)
            if not (resolved / "oci-layout").is_file():
                node.error(f"{path} is not an OCI image layout (no oci-layout file)", "path")
            path = str(resolved)
        return LayoutParams(path=path or "")

    def create(self, spec: StoreSpec, resources: StoreResources) -> ReferrerStore:
        return OCILayoutStore(spec.name, Path(spec.params.path), resources.limits.max_manifest_bytes)


def _ref_name_score(value: str | None, ref: ImageRef, tag: str) -> int | None:
    """How well a ``ref.name`` annotation names ``ref`` at ``tag``: the number of name components it gives
    (0 for a bare tag), or ``None`` when it names something else."""
    if value is None:
        return None
    if value == tag:
        return 0
    name, sep, value_tag = value.rpartition(":")
    if not sep or value_tag != tag or not name or "/" in value_tag:
        return None
    parts = ref.name.split("/")
    given = name.split("/")
    if len(given) > len(parts) or parts[len(parts) - len(given) :] != given:
        return None
    return len(given)
