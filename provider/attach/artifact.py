"""The artifact ``referee attach`` pushes: an OCI 1.1 image manifest with ``artifactType``, the empty config, one
layer per file, ``subject`` = the image, and the ``org.opencontainers.image.created`` annotation.

Also the descriptor a referrers list carries for a manifest (distribution-spec §"Pushing Manifests with Subject":
``artifactType`` = the manifest's, else its ``config.mediaType``; every manifest annotation copied).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import oras.oci
import oras.utils

from provider import mediatypes as mt
from provider.errors import ConfigError
from provider.oci import Descriptor, Manifest
from provider.reference import compute_digest

EMPTY_CONFIG = b"{}"
EMPTY_CONFIG_DIGEST = "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"
ANNOTATION_TITLE = "org.opencontainers.image.title"

# image-spec descriptor.md: the media type grammar of RFC 6838 §4.2.
_MEDIA_TYPE_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}/[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}")
_ANNOTATION_KEY_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._/#-]*")


@dataclass(frozen=True, slots=True)
class ArtifactFile:
    """One file to push as a layer."""

    path: Path
    media_type: str
    descriptor: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Artifact:
    """A ready-to-push artifact: exact manifest bytes, its digest, and the blobs it references."""

    manifest: bytes
    digest: str
    artifact_type: str
    files: tuple[ArtifactFile, ...]

    @property
    def media_type(self) -> str:
        return mt.OCI_MANIFEST


def check_media_type(value: str, what: str) -> str:
    if not _MEDIA_TYPE_RE.fullmatch(value):
        raise ConfigError([f"{what}: {value!r} is not a media type (type/subtype)"])
    if value in mt.INTERNAL_TYPES:
        raise ConfigError([f"{what}: {value} is an internal type of Referee's own stores; it is never pushed"])
    return value


def parse_annotations(pairs: Sequence[str]) -> dict[str, str]:
    """``key=value`` pairs (``--annotation``); the created annotation must be an RFC 3339 date-time."""
    out: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not _ANNOTATION_KEY_RE.fullmatch(key):
            raise ConfigError([f"--annotation: {pair!r} is not key=value"])
        if key in out:
            raise ConfigError([f"--annotation: {key} given twice"])
        out[key] = value
    created = out.get(mt.ANNOTATION_CREATED)
    if created is not None:
        try:
            moment = datetime.fromisoformat(created)
        except ValueError:
            moment = None
        if moment is None or moment.tzinfo is None or "T" not in created.upper():
            raise ConfigError([f"--annotation: {mt.ANNOTATION_CREATED} must be an RFC 3339 date-time, got {created!r}"])
    return out


def rfc3339_now(now: datetime | None = None) -> str:
    return (now or datetime.now(UTC)).astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def split_file_argument(argument: str, default_media_type: str) -> tuple[Path, str]:
    """``FILE[:MEDIATYPE]`` as the ORAS CLI reads it (an existing path wins over the split)."""
    parts = oras.utils.split_path_and_content(argument)
    media_type = parts.content or default_media_type
    check_media_type(media_type, f"file {parts.path}")
    path = Path(parts.path)
    if not path.is_file():
        raise ConfigError([f"{parts.path}: not a file"])
    return path, media_type


def build_artifact(
    subject: Descriptor,
    artifact_type: str,
    files: Sequence[str],
    annotations: Mapping[str, str],
    *,
    now: datetime | None = None,
) -> Artifact:
    """The manifest for ``files`` attached to ``subject``. Layer descriptors come from oras-py (``NewLayer``:
    size and sha256 of the file); the manifest bytes are serialised here, once, and never re-encoded."""
    check_media_type(artifact_type, "--artifact-type")
    if not files:
        raise ConfigError(["attach: at least one FILE is required"])
    layers: list[ArtifactFile] = []
    for argument in files:
        path, media_type = split_file_argument(argument, artifact_type)
        layer: dict[str, Any] = oras.oci.NewLayer(str(path), media_type=media_type)
        layer["annotations"] = {ANNOTATION_TITLE: os.path.basename(path)}
        layers.append(ArtifactFile(path=path, media_type=media_type, descriptor=layer))
    manifest_annotations = {mt.ANNOTATION_CREATED: rfc3339_now(now), **annotations}
    document: dict[str, Any] = {
        "schemaVersion": 2,
        "mediaType": mt.OCI_MANIFEST,
        "artifactType": artifact_type,
        "config": {"mediaType": mt.OCI_EMPTY, "digest": EMPTY_CONFIG_DIGEST, "size": len(EMPTY_CONFIG), "data": "e30="},
        "layers": [f.descriptor for f in layers],
        "subject": {"mediaType": subject.media_type, "digest": subject.digest, "size": subject.size},
        "annotations": manifest_annotations,
    }
    raw = json.dumps(document, separators=(",", ":"), ensure_ascii=False).encode()
    return Artifact(manifest=raw, digest=compute_digest(raw), artifact_type=artifact_type, files=tuple(layers))


def referrers_entry(manifest: Manifest) -> dict[str, Any]:
    """The referrers-list descriptor of ``manifest`` as the spec asks a pusher to write it."""
    entry: dict[str, Any] = {
        "mediaType": manifest.descriptor.media_type,
        "digest": manifest.descriptor.digest,
        "size": manifest.descriptor.size,
    }
    artifact_type = manifest.artifact_type
    if not artifact_type and not manifest.is_index and manifest.config is not None:
        artifact_type = manifest.config.media_type
    if artifact_type:
        entry["artifactType"] = artifact_type
    if manifest.annotations:
        entry["annotations"] = dict(manifest.annotations)
    return entry
