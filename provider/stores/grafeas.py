"""The ``grafeas`` store: attestation occurrences from a Grafeas server (Container Analysis, or self-hosted).

For an image ``registry/repository@digest`` it lists
``GET {url}/{apiVersion}/projects/{project}/occurrences?filter=resourceUrl="https://registry/repository@digest"
AND kind="ATTESTATION"`` in every configured project, following ``nextPageToken``. Occurrences count only when
they are attached to one of the configured notes (the attestors' notes), are of kind ``ATTESTATION`` and name
exactly that resource; the others are skipped and logged. Each remaining occurrence becomes a synthetic artifact
of type ``application/vnd.dev.referee.grafeas-attestation.v1`` listed beside the registry's referrers. Both
occurrence shapes are read: v1 ``attestation {serializedPayload, signatures[]}`` and v1beta1
``attestation.attestation.{pgpSignedAttestation | genericSignedAttestation}``.

Authentication: an optional bearer token read from ``tokenFile`` (re-read when the file changes, so projected
or rotated tokens work).
"""

from __future__ import annotations

import asyncio
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

import structlog

from provider import mediatypes as mt
from provider.attestations import NOTE_NAME, grafeas_document, synthetic_artifact
from provider.config import RegistriesConfig
from provider.confignode import Node
from provider.errors import AuthDeniedError, StoreError
from provider.oci import Descriptor, ReferrerListing
from provider.reference import ImageRef
from provider.registry.client import RegistryClient
from provider.stores.attached import AttachedEvidenceStore, parse_registry_referrers
from provider.stores.base import ReferrerStore, StoreResources, StoreSpec, store_types
from provider.stores.http import HttpSettings, StoreHttp, parse_http_settings

log = structlog.get_logger("referee.stores.grafeas")

PROJECT_ID = re.compile(r"^[a-z0-9][a-z0-9.:-]{0,99}$")
MAX_TOKEN_BYTES = 64 * 1024


@dataclass(frozen=True, slots=True)
class GrafeasParams:
    url: str
    api_version: str
    projects: tuple[str, ...]
    notes: frozenset[str]
    token_file: str | None
    http: HttpSettings
    page_size: int
    max_pages: int
    max_occurrences: int
    max_response_bytes: int
    registry_referrers: bool


class _Token:
    """A bearer token file, re-read when its modification time or size changes."""

    def __init__(self, path: str) -> None:
        self._path = Path(path)
        self._stamp: tuple[int, int] | None = None
        self._value = ""

    def _read(self) -> str:
        try:
            info = self._path.stat()
            stamp = (info.st_mtime_ns, info.st_size)
            if stamp != self._stamp:
                with self._path.open("rb") as fh:
                    data = fh.read(MAX_TOKEN_BYTES + 1)
                if len(data) > MAX_TOKEN_BYTES:
                    raise AuthDeniedError(f"Grafeas token file {self._path} is larger than {MAX_TOKEN_BYTES} bytes")
                self._value, self._stamp = data.decode("utf-8", "replace").strip(), stamp
        except OSError as exc:
            raise AuthDeniedError(f"cannot read Grafeas token file {self._path}: {exc.strerror or exc}") from None
        if not self._value:
            raise AuthDeniedError(f"Grafeas token file {self._path} is empty")
        return self._value

    async def header(self) -> str:
        return "Bearer " + await asyncio.to_thread(self._read)


def _status_message(body: bytes) -> str:
    """The ``google.rpc.Status`` message of an error body (``{"error": {"code", "message", "status"}}``)."""
    try:
        doc = json.loads(body)
        error = doc.get("error") if isinstance(doc, dict) else None
        if isinstance(error, dict):
            return f"{error.get('status', '')} {error.get('message', '')}".strip()[:200]
    except (ValueError, UnicodeDecodeError, RecursionError):
        pass
    return body[:200].decode("utf-8", "replace").strip()


class GrafeasStore(AttachedEvidenceStore):
    artifact_type = mt.GRAFEAS_ATTESTATION

    def __init__(
        self,
        name: str,
        client: RegistryClient,
        max_manifest_bytes: int,
        params: GrafeasParams,
        registries: RegistriesConfig,
    ) -> None:
        super().__init__(name, client, max_manifest_bytes, params.registry_referrers)
        self._params = params
        self._http = StoreHttp(name, params.http, registries)
        self._token = _Token(params.token_file) if params.token_file else None

    async def _attached(self, ref: ImageRef, subject: Descriptor) -> ReferrerListing:
        resource = f"https://{ref.name}@{subject.digest}"
        found: list[Descriptor] = []
        truncated = False
        for project in self._params.projects:
            occurrences, more = await self._occurrences(project, resource)
            truncated = truncated or more
            for occurrence in occurrences:
                if len(found) >= self._params.max_occurrences:
                    truncated = True
                    break
                descriptor = self._artifact(occurrence, resource, subject)
                if descriptor is not None:
                    found.append(descriptor)
        if not truncated:
            return ReferrerListing(tuple(found))
        log.warning("grafeas_occurrences_capped", store=self.name, resource=resource)
        note = (
            f"{self.name}: more attestation occurrences than maxOccurrences ({self._params.max_occurrences}) "
            f"or maxPages ({self._params.max_pages}); the rest were not read"
        )
        return ReferrerListing(tuple(found), (note,), truncated=True)

    def _artifact(self, occurrence: Any, resource: str, subject: Descriptor) -> Descriptor | None:
        if not isinstance(occurrence, dict):
            log.warning("grafeas_occurrence_ignored", store=self.name, reason="not an object")
            return None
        name, note = occurrence.get("name"), occurrence.get("noteName")
        uri = occurrence.get("resourceUri")
        if uri is None and isinstance(occurrence.get("resource"), dict):
            uri = occurrence["resource"].get("uri")
        reason = None
        if occurrence.get("kind") != "ATTESTATION":
            reason = f"kind {occurrence.get('kind')!r}"
        elif uri != resource:
            reason = f"resource {uri!r}"
        elif note not in self._params.notes:
            reason = f"note {note!r} is not configured"
        if reason is not None:
            log.info("grafeas_occurrence_ignored", store=self.name, occurrence=name, reason=reason)
            return None
        annotations = {
            mt.ANNOTATION_GRAFEAS_OCCURRENCE: str(name or ""),
            mt.ANNOTATION_GRAFEAS_NOTE: str(note),
        }
        created = occurrence.get("createTime")
        if isinstance(created, str) and created:
            annotations[mt.ANNOTATION_CREATED] = created
        return synthetic_artifact(subject, self.artifact_type, grafeas_document(occurrence, resource), annotations)

    async def _occurrences(self, project: str, resource: str) -> tuple[list[Any], bool]:
        """The occurrences of ``resource`` in ``project``, and whether a limit stopped the listing."""
        params = self._params
        base = f"{params.url.rstrip('/')}/{params.api_version}/projects/{quote(project, safe='')}/occurrences"
        query = {"filter": f'resourceUrl="{resource}" AND kind="ATTESTATION"', "pageSize": str(params.page_size)}
        headers = {"Accept": "application/json"}
        if self._token is not None:
            headers["Authorization"] = await self._token.header()
        out: list[Any] = []
        seen_tokens: set[str] = set()
        for page in range(params.max_pages):
            what = f"occurrences of {resource} in project {project} (page {page + 1})"
            answer = await self._http.get(
                f"{base}?{urlencode(query)}", headers=headers, max_bytes=params.max_response_bytes, what=what
            )
            if answer.status in (401, 403):
                raise AuthDeniedError(f"{self.name}: Grafeas refused {what}: {_status_message(answer.body)}")
            if answer.status != 200:
                raise StoreError(
                    f"{self.name}: Grafeas answered {answer.status} to {what}: {_status_message(answer.body)}"
                )
            try:
                doc = json.loads(answer.body)
            except (ValueError, UnicodeDecodeError, RecursionError):
                raise StoreError(f"{self.name}: {what} is not JSON") from None
            if not isinstance(doc, dict):
                raise StoreError(f"{self.name}: {what} is not a JSON object")
            occurrences = doc.get("occurrences") or []
            if not isinstance(occurrences, list):
                raise StoreError(f"{self.name}: {what}: occurrences is not a list")
            out.extend(occurrences)
            token = doc.get("nextPageToken")
            if not token:
                return out, False
            if len(out) >= params.max_occurrences:
                return out, True
            if not isinstance(token, str) or token in seen_tokens:
                raise StoreError(f"{self.name}: {what}: invalid or repeated nextPageToken")
            seen_tokens.add(token)
            query["pageToken"] = token
        log.warning("grafeas_pages_truncated", store=self.name, resource=resource, pages=params.max_pages)
        return out, True

    async def close(self) -> None:
        await self._http.close()


@store_types.register("grafeas")
class GrafeasStorePlugin:
    def parse_params(self, node: Node) -> GrafeasParams:
        url = node.string("url")
        if url is not None:
            parts = urlsplit(url)
            if parts.scheme not in ("https", "http") or not parts.netloc or parts.query or parts.fragment:
                node.error(f"{url!r} is not an http(s) base URL", "url")
        projects = node.str_list("projects")
        if not node.has("projects"):
            node.error("required", "projects")
        for i, project in enumerate(projects):
            if not PROJECT_ID.match(project):
                node.problems.add(f"{node.child_path('projects')}[{i}]", f"{project!r} is not a project id")
        notes = node.str_list("notes")
        if not notes:
            node.error("at least one note (projects/<project>/notes/<note>) is required", "notes")
        for i, note in enumerate(notes):
            if not NOTE_NAME.match(note):
                node.problems.add(f"{node.child_path('notes')}[{i}]", f"{note!r} is not a note name")
        token_file = node.string("token_file", None)
        http = parse_http_settings(node, url)
        if token_file is not None:
            if not os.path.isabs(token_file):
                token_file = str(node.problems.resolve(token_file))
            if http.plain_http:
                node.error("a bearer token is never sent over plain HTTP", "token_file")
        return GrafeasParams(
            url=url or "",
            api_version=node.string("api_version", "v1", choices=("v1", "v1beta1")),
            projects=projects,
            notes=frozenset(notes),
            token_file=token_file,
            http=http,
            page_size=node.integer("page_size", 100, minimum=1, maximum=1000),
            max_pages=node.integer("max_pages", 10, minimum=1, maximum=100),
            max_occurrences=node.integer("max_occurrences", 64, minimum=1, maximum=1000),
            max_response_bytes=node.size("max_response_bytes", 4 * 1024 * 1024, minimum=1024),
            registry_referrers=parse_registry_referrers(node),
        )

    def create(self, spec: StoreSpec, resources: StoreResources) -> ReferrerStore:
        return GrafeasStore(
            spec.name, resources.registry, resources.limits.max_manifest_bytes, spec.params, resources.registry.config
        )
