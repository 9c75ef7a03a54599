"""OCI descriptors and manifests, parsed from exact bytes (never re-serialised)."""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from provider import mediatypes as mt
from provider.errors import ManifestInvalidError, ReferenceInvalidError
from provider.reference import parse_digest, verify_digest


@dataclass(frozen=True, slots=True)
class Descriptor:
    """An OCI content descriptor. ``artifact_type`` falls back to ``config.mediaType`` for referrers."""

    media_type: str
    digest: str
    size: int
    artifact_type: str | None = None
    annotations: Mapping[str, str] = field(default_factory=dict)
    data: bytes | None = None
    platform: Mapping[str, Any] | None = None

    @classmethod
    def from_json(cls, obj: object, what: str = "descriptor") -> Descriptor:
        if not isinstance(obj, dict):
            raise ManifestInvalidError(f"{what}: not an object")
        media_type = obj.get("mediaType")
        digest = obj.get("digest")
        size = obj.get("size")
        if not isinstance(media_type, str) or not media_type:
            raise ManifestInvalidError(f"{what}: mediaType missing")
        if not isinstance(digest, str):
            raise ManifestInvalidError(f"{what}: digest missing")
        try:
            parse_digest(digest)
        except ReferenceInvalidError as exc:
            raise ManifestInvalidError(f"{what}: {exc.message}") from None
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise ManifestInvalidError(f"{what}: size must be a non-negative integer")
        artifact_type = obj.get("artifactType")
        annotations = obj.get("annotations") or {}
        if not isinstance(annotations, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in annotations.items()
        ):
            raise ManifestInvalidError(f"{what}: annotations must map strings to strings")
        data: bytes | None = None
        raw_data = obj.get("data")
        if raw_data is not None:
            try:
                data = base64.b64decode(raw_data, validate=True)
            except (binascii.Error, TypeError):
                raise ManifestInvalidError(f"{what}: data is not base64") from None
            verify_digest(data, digest, f"{what} embedded data")
        platform = obj.get("platform")
        return cls(
            media_type=media_type,
            digest=digest,
            size=size,
            artifact_type=artifact_type if isinstance(artifact_type, str) and artifact_type else None,
            annotations=dict(annotations),
            data=data,
            platform=platform if isinstance(platform, dict) else None,
        )

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"mediaType": self.media_type, "digest": self.digest, "size": self.size}
        if self.artifact_type:
            out["artifactType"] = self.artifact_type
        if self.annotations:
            out["annotations"] = dict(self.annotations)
        return out


@dataclass(frozen=True, slots=True)
class Manifest:
    """A parsed manifest or index together with the exact bytes it came from."""

    descriptor: Descriptor
    raw: bytes
    document: Mapping[str, Any]
    config: Descriptor | None
    layers: tuple[Descriptor, ...]
    manifests: tuple[Descriptor, ...]
    subject: Descriptor | None
    artifact_type: str | None
    annotations: Mapping[str, str]

    @property
    def is_index(self) -> bool:
        return self.descriptor.media_type in mt.INDEX_TYPES

    @property
    def effective_artifact_type(self) -> str | None:
        """``artifactType``, else ``config.mediaType`` (OCI 1.0 artifacts), per image-spec."""
        if self.artifact_type:
            return self.artifact_type
        if self.config is not None and self.config.media_type not in (mt.OCI_IMAGE_CONFIG, mt.OCI_EMPTY):
            return self.config.media_type
        return None


def _descriptors(doc: Mapping[str, Any], key: str, what: str) -> tuple[Descriptor, ...]:
    items = doc.get(key)
    if items is None:
        return ()
    if not isinstance(items, list):
        raise ManifestInvalidError(f"{what}: {key} must be a list")
    return tuple(Descriptor.from_json(item, f"{what}.{key}[{i}]") for i, item in enumerate(items))


def parse_manifest(raw: bytes, digest: str, media_type: str | None, what: str = "manifest") -> Manifest:
    """Parse manifest bytes whose digest has already been verified by the caller."""
    try:
        doc = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ManifestInvalidError(f"{what} {digest}: not JSON ({exc})") from None
    except (RecursionError, ValueError) as exc:
        raise ManifestInvalidError(f"{what} {digest}: cannot be decoded ({type(exc).__name__})") from None
    if not isinstance(doc, dict):
        raise ManifestInvalidError(f"{what} {digest}: not a JSON object")
    declared = doc.get("mediaType")
    if declared is not None and not isinstance(declared, str):
        raise ManifestInvalidError(f"{what} {digest}: mediaType must be a string")
    effective = declared or media_type
    if effective is None:
        effective = mt.OCI_INDEX if "manifests" in doc else mt.OCI_MANIFEST
    if effective in (mt.DOCKER_SCHEMA1, mt.DOCKER_SCHEMA1_SIGNED):
        raise ManifestInvalidError(f"{what} {digest}: Docker schema 1 manifests are not supported")
    if effective == mt.OCI_ARTIFACT_MANIFEST_WITHDRAWN:
        raise ManifestInvalidError(f"{what} {digest}: the withdrawn OCI artifact manifest is not supported")
    if effective not in mt.SUPPORTED_MANIFEST_TYPES:
        raise ManifestInvalidError(f"{what} {digest}: unsupported media type {effective!r}")
    if doc.get("schemaVersion") != 2:
        raise ManifestInvalidError(f"{what} {digest}: schemaVersion must be 2")
    config = doc.get("config")
    annotations = doc.get("annotations") or {}
    if not isinstance(annotations, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in annotations.items()
    ):
        raise ManifestInvalidError(f"{what} {digest}: annotations must map strings to strings")
    artifact_type = doc.get("artifactType")
    if artifact_type is not None and not isinstance(artifact_type, str):
        raise ManifestInvalidError(f"{what} {digest}: artifactType must be a string")
    subject = doc.get("subject")
    is_index = effective in mt.INDEX_TYPES
    parsed_config = None if config is None else Descriptor.from_json(config, f"{what}.config")
    if not is_index and parsed_config is None:
        raise ManifestInvalidError(f"{what} {digest}: config descriptor missing")
    return Manifest(
        descriptor=Descriptor(media_type=effective, digest=digest, size=len(raw), artifact_type=artifact_type),
        raw=raw,
        document=doc,
        config=parsed_config,
        layers=_descriptors(doc, "layers", what),
        manifests=_descriptors(doc, "manifests", what),
        subject=None if subject is None else Descriptor.from_json(subject, f"{what}.subject"),
        artifact_type=artifact_type or None,
        annotations=dict(annotations),
    )


@dataclass(frozen=True, slots=True)
class ReferrerListing:
    """What a store listed for one subject, in listing order and de-duplicated by digest.

    ``notes`` say what the store could not see (no referrers API and no fallback index, …); ``truncated`` is set
    when the listing stopped at a limit, so that absent entries cannot be ruled out. ``other_types`` counts the
    referrers listed of types nobody asked for (``(artifact type, count)``), for messages only: when the store
    knows them; ``None`` when it cannot tell (a store that does not report them)."""

    descriptors: tuple[Descriptor, ...]
    notes: tuple[str, ...] = ()
    truncated: bool = False
    other_types: tuple[tuple[str, int], ...] | None = None


def listed_referrers(descriptors: list[Descriptor], artifact_types: frozenset[str] | None) -> list[Descriptor]:
    """Referrers of the wanted types, first occurrence of each digest kept. Entries claiming Referee's internal types
    (cosign legacy tags, attestor-style evidence) are dropped: only Referee's own stores present those."""
    seen: set[str] = set()
    out: list[Descriptor] = []
    for d in descriptors:
        if d.digest in seen or d.artifact_type in mt.INTERNAL_TYPES:
            continue
        if artifact_types is not None and d.artifact_type not in artifact_types:
            continue
        seen.add(d.digest)
        out.append(d)
    return out


def unwanted_types(descriptors: list[Descriptor], artifact_types: frozenset[str] | None) -> tuple[tuple[str, int], ...]:
    """How many referrers of each type outside ``artifact_types`` were listed (first-listed type first)."""
    if artifact_types is None:
        return ()
    counts: dict[str, int] = {}
    seen: set[str] = set()
    for d in descriptors:
        if d.digest in seen or d.artifact_type in mt.INTERNAL_TYPES or d.artifact_type in artifact_types:
            continue
        seen.add(d.digest)
        kind = d.artifact_type or d.media_type
        counts[kind] = counts.get(kind, 0) + 1
    return tuple(counts.items())


def referrer_descriptor(manifest: Manifest) -> Descriptor:
    """The descriptor the referrers API would list for ``manifest``."""
    d = manifest.descriptor
    return Descriptor(
        media_type=d.media_type,
        digest=d.digest,
        size=d.size,
        artifact_type=manifest.effective_artifact_type,
        annotations=manifest.annotations,
    )


def parse_index_descriptors(raw: bytes, what: str) -> list[Descriptor]:
    """Parse a referrers list (an OCI index) into descriptors; invalid entries raise."""
    try:
        doc = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ManifestInvalidError(f"{what}: not JSON ({exc})") from None
    except (RecursionError, ValueError) as exc:
        raise ManifestInvalidError(f"{what}: cannot be decoded ({type(exc).__name__})") from None
    if not isinstance(doc, dict):
        raise ManifestInvalidError(f"{what}: not a JSON object")
    if doc.get("mediaType", mt.OCI_INDEX) != mt.OCI_INDEX:
        raise ManifestInvalidError(f"{what}: not an OCI image index")
    return list(_descriptors(doc, "manifests", what))
