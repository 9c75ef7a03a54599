"""``referee attach --layout DIR``: write the artifact into an OCI image layout.

Blobs go to ``blobs/<alg>/<hex>`` (written to a temporary file, checked against their digest, renamed), the
manifest is listed in ``index.json`` (untagged, with its ``artifactType``), which is how the ``oci-layout`` store
and ORAS find referrers in a layout. ``index.json`` is rewritten atomically under an exclusive lock on the layout
directory, keeping every entry and field it holds.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hashlib
import json
import os
import tempfile
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

from provider import mediatypes as mt
from provider.attach.artifact import EMPTY_CONFIG, EMPTY_CONFIG_DIGEST, build_artifact, referrers_entry
from provider.attach.result import AttachResult
from provider.errors import (
    ConfigError,
    DigestMismatchError,
    NotFoundError,
    ReferrersIndexInvalidError,
    SubjectMismatchError,
)
from provider.oci import Descriptor, parse_manifest
from provider.reference import ImageRef, parse_digest, verify_digest
from provider.stores.oci_layout import OCILayoutStore


class LayoutWriter:
    def __init__(self, root: Path, max_manifest_bytes: int) -> None:
        if not (root / "oci-layout").is_file():
            raise ConfigError([f"--layout: {root} is not an OCI image layout (no oci-layout file)"])
        self.root = root
        self.max_manifest_bytes = max_manifest_bytes

    def resolve(self, ref: ImageRef) -> Descriptor:
        store = OCILayoutStore(f"layout:{self.root}", self.root, self.max_manifest_bytes)
        return asyncio.run(store.resolve(ref))

    def _blob_path(self, digest: str) -> Path:
        algorithm, _, encoded = parse_digest(digest).partition(":")
        return self.root / "blobs" / algorithm / encoded

    def put_blob(self, digest: str, chunks: Iterator[bytes]) -> None:
        target = self._blob_path(digest)
        if target.is_file():
            return
        target.parent.mkdir(parents=True, exist_ok=True)
        algorithm = digest.partition(":")[0]
        hasher = hashlib.new(algorithm)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".referee-")
        try:
            with os.fdopen(fd, "wb") as out:
                for chunk in chunks:
                    hasher.update(chunk)
                    out.write(chunk)
            if f"{algorithm}:{hasher.hexdigest()}" != digest:
                raise DigestMismatchError(f"blob {digest}: the content changed while it was written")
            os.replace(tmp, target)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)

    def read_blob(self, digest: str, what: str) -> bytes:
        try:
            with self._blob_path(digest).open("rb") as fh:
                data = fh.read(self.max_manifest_bytes + 1)
        except FileNotFoundError:
            raise NotFoundError(f"{what} not found in layout {self.root}") from None
        if len(data) > self.max_manifest_bytes:
            raise ConfigError([f"{what} is over the {self.max_manifest_bytes}-byte manifest limit"])
        verify_digest(data, digest, what)
        return data

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        fd = os.open(self.root, os.O_RDONLY)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def list_manifest(self, entry: dict[str, Any]) -> bool:
        """Add ``entry`` to ``index.json`` unless its digest is listed; ``True`` when the file changed."""
        index_path = self.root / "index.json"
        with self._locked():
            try:
                doc = json.loads(index_path.read_bytes())
            except FileNotFoundError:
                doc = {"schemaVersion": 2, "mediaType": mt.OCI_INDEX, "manifests": []}
            except (UnicodeDecodeError, ValueError):
                raise ConfigError([f"--layout: {index_path} is not JSON"]) from None
            if not isinstance(doc, dict) or not isinstance(doc.get("manifests", []), list):
                raise ConfigError([f"--layout: {index_path} is not an OCI image index"])
            manifests = doc.setdefault("manifests", [])
            if any(isinstance(m, dict) and m.get("digest") == entry["digest"] for m in manifests):
                return False
            manifests.append(entry)
            fd, tmp = tempfile.mkstemp(dir=self.root, prefix=".index.json.")
            try:
                with os.fdopen(fd, "w") as out:
                    json.dump(doc, out, separators=(",", ":"))
                os.replace(tmp, index_path)
            finally:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(tmp)
            return True


def _file_chunks(path: Path) -> Iterator[bytes]:
    with path.open("rb") as fh:
        while chunk := fh.read(1024 * 1024):
            yield chunk


def _index_entry(entry: dict[str, Any]) -> dict[str, Any]:
    return {k: entry[k] for k in ("mediaType", "digest", "size", "artifactType") if k in entry}


def attach_files(
    root: Path,
    ref: ImageRef,
    artifact_type: str,
    files: list[str],
    annotations: dict[str, str],
    *,
    max_manifest_bytes: int,
    now: datetime | None = None,
) -> AttachResult:
    writer = LayoutWriter(root, max_manifest_bytes)
    subject = writer.resolve(ref)
    artifact = build_artifact(subject, artifact_type, files, annotations, now=now)
    for f in artifact.files:
        writer.put_blob(f.descriptor["digest"], _file_chunks(f.path))
    writer.put_blob(EMPTY_CONFIG_DIGEST, iter([EMPTY_CONFIG]))
    writer.put_blob(artifact.digest, iter([artifact.manifest]))
    manifest = parse_manifest(artifact.manifest, artifact.digest, artifact.media_type, "artifact manifest")
    writer.list_manifest(_index_entry(referrers_entry(manifest)))
    return AttachResult(ref.with_digest(subject.digest).pinned(), artifact.digest, artifact_type, "layout")


def index_referrer(root: Path, ref: ImageRef, referrer_digest: str, *, max_manifest_bytes: int) -> AttachResult:
    """List a manifest already in the layout's blobs whose ``subject`` is ``ref``."""
    writer = LayoutWriter(root, max_manifest_bytes)
    subject = writer.resolve(ref)
    what = f"manifest {referrer_digest}"
    raw = writer.read_blob(referrer_digest, what)
    manifest = parse_manifest(raw, referrer_digest, None, what)
    if manifest.subject is None or manifest.subject.digest != subject.digest:
        found = manifest.subject.digest if manifest.subject else "no subject"
        raise SubjectMismatchError(f"{what} is not a referrer of {ref.name}@{subject.digest} ({found})")
    entry = referrers_entry(manifest)
    if entry.get("artifactType") in mt.INTERNAL_TYPES:
        raise ReferrersIndexInvalidError(f"{entry['artifactType']} is Referee's internal type; it is never written")
    writer.list_manifest(_index_entry(entry))
    return AttachResult(
        ref.with_digest(subject.digest).pinned(), referrer_digest, str(entry.get("artifactType", "")), "layout"
    )
