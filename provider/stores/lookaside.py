"""The ``lookaside`` store: containers/image signature storage (``registries.d`` ``lookaside``).

Signatures of ``registry/repository@sha256:<hex>`` live at ``<base>/<repository>@sha256=<hex>/signature-<n>``,
``n`` = 1, 2, … until the first missing one (HTTP 404, or no such file), as containers/image reads them. The base
is an ``http``/``https`` URL or a directory (``path``, or a ``file://`` URL). Each signature file becomes a
synthetic artifact of type ``application/vnd.dev.referee.lookaside-signature.v1`` listed beside the registry's
referrers. The files are OpenPGP signed messages (optionally with containers/image's ``\\x00simple-signing\\n``
prefix) or ``\\x00sigstore-json\\n`` documents.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, unquote, urlsplit

from provider import mediatypes as mt
from provider.attestations import lookaside_document, synthetic_artifact
from provider.config import RegistriesConfig
from provider.confignode import Node
from provider.errors import ArtifactTooLargeError, AuthDeniedError, StoreError
from provider.oci import Descriptor, ReferrerListing
from provider.reference import ImageRef
from provider.registry.client import RegistryClient
from provider.stores.attached import AttachedEvidenceStore, parse_registry_referrers
from provider.stores.base import ReferrerStore, StoreResources, StoreSpec, store_types
from provider.stores.http import HttpSettings, StoreHttp, parse_http_settings


@dataclass(frozen=True, slots=True)
class LookasideParams:
    url: str | None
    directory: str | None
    http: HttpSettings
    max_signatures: int
    max_signature_bytes: int
    registry_referrers: bool


def signature_path(repository: str, digest: str, index: int) -> str:
    """``<repository>@<algorithm>=<hex>/signature-<index>`` (relative to the lookaside base)."""
    algorithm, _, encoded = digest.partition(":")
    return f"{repository}@{algorithm}={encoded}/signature-{index}"


class LookasideStore(AttachedEvidenceStore):
    artifact_type = mt.LOOKASIDE_SIGNATURE

    def __init__(
        self,
        name: str,
        client: RegistryClient,
        max_manifest_bytes: int,
        params: LookasideParams,
        registries: RegistriesConfig,
    ) -> None:
        super().__init__(name, client, max_manifest_bytes, params.registry_referrers)
        self._params = params
        self._http = StoreHttp(name, params.http, registries) if params.url else None

    async def _attached(self, ref: ImageRef, subject: Descriptor) -> ReferrerListing:
        found: list[Descriptor] = []
        for index in range(1, self._params.max_signatures + 2):
            relative = signature_path(ref.repository, subject.digest, index)
            read = await (self._fetch(relative) if self._http is not None else self._read(relative))
            if read is None:
                return ReferrerListing(tuple(found))
            if index > self._params.max_signatures:
                limit = self._params.max_signatures
                note = f"{self.name}: more than maxSignatures ({limit}) signatures; the rest were not read"
                return ReferrerListing(tuple(found), (note,), truncated=True)
            location, blob = read
            annotations = {mt.ANNOTATION_LOOKASIDE_LOCATION: location}
            document = lookaside_document(location, index, blob)
            found.append(synthetic_artifact(subject, self.artifact_type, document, annotations))
        return ReferrerListing(tuple(found))

    async def _fetch(self, relative: str) -> tuple[str, bytes] | None:
        assert self._http is not None
        assert self._params.url is not None
        url = f"{self._params.url.rstrip('/')}/{quote(relative, safe='/@=')}"
        answer = await self._http.get(
            url, headers={}, max_bytes=self._params.max_signature_bytes, what=f"signature {relative}"
        )
        if answer.status == 404:
            return None
        if answer.status in (401, 403):
            raise AuthDeniedError(f"{self.name}: lookaside server refused {relative} ({answer.status})")
        if answer.status != 200:
            raise StoreError(f"{self.name}: lookaside server answered {answer.status} to {relative}")
        return url, answer.body

    async def _read(self, relative: str) -> tuple[str, bytes] | None:
        assert self._params.directory is not None
        return await asyncio.to_thread(self._read_file, Path(self._params.directory) / relative)

    def _read_file(self, path: Path) -> tuple[str, bytes] | None:
        limit = self._params.max_signature_bytes
        try:
            with path.open("rb") as fh:
                data = fh.read(limit + 1)
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise StoreError(f"{self.name}: cannot read {path}: {exc.strerror or exc}") from None
        if len(data) > limit:
            raise ArtifactTooLargeError(f"signature {path} exceeds the {limit}-byte limit")
        return path.as_uri(), data

    async def close(self) -> None:
        if self._http is not None:
            await self._http.close()


@store_types.register("lookaside")
class LookasideStorePlugin:
    def parse_params(self, node: Node) -> LookasideParams:
        url = node.string("url", None)
        directory = node.string("path", None)
        if (url is None) == (directory is None):
            node.error("give exactly one of url (http, https or file://) and path (a directory)", "url")
        if url is not None:
            parts = urlsplit(url)
            if parts.scheme == "file":
                directory, url = unquote(parts.path), None
            elif parts.scheme not in ("https", "http") or not parts.netloc or parts.query or parts.fragment:
                node.error(f"{url!r} is not an http(s) or file:// base URL", "url")
        if directory is not None:
            resolved = node.problems.resolve(directory)
            if not resolved.is_dir():
                node.error(f"{directory} is not a directory", "path" if node.has("path") else "url")
            directory = str(resolved)
        return LookasideParams(
            url=url,
            directory=directory,
            http=parse_http_settings(node, url),
            max_signatures=node.integer("max_signatures", 16, minimum=1, maximum=128),
            max_signature_bytes=node.size("max_signature_bytes", 256 * 1024, minimum=1024),
            registry_referrers=parse_registry_referrers(node),
        )

    def create(self, spec: StoreSpec, resources: StoreResources) -> ReferrerStore:
        return LookasideStore(
            spec.name, resources.registry, resources.limits.max_manifest_bytes, spec.params, resources.registry.config
        )
