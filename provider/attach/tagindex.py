"""The referrers tag schema from the pusher's side: add one entry to the ``<alg>-<hex>`` index.

distribution-spec §"Pushing Manifests with Subject": pull the index at the tag (404: start empty; anything but an
image index: report a failure and leave it alone), do not duplicate the entry, append it, push the index back.
The spec leaves races to clients ("multiple clients could attempt to update the tag simultaneously resulting in
race conditions and data loss … Clients MAY use a conditional HTTP push for registries that support ETag
conditions"). :func:`add_referrer` therefore

* keeps every entry it finds verbatim, including ones it does not understand (unknown fields, types, digests),
  and drops only entries claiming Referee's internal cosign-legacy types, which no pusher may write;
* drops entries the registry refuses because their manifests are gone (distribution checks every index entry
  and answers ``MANIFEST_BLOB_UNKNOWN`` naming them: an index that lists a deleted referrer cannot be rewritten
  with it);
* reads the tag again just before writing and starts over if it moved;
* writes with ``If-Match`` / ``If-None-Match: *`` (honoured by registries with ETag conditions; a ``412`` means
  another writer won) and, because most registries ignore those headers, reads the tag back after a settle delay
  and starts over unless the index still lists the entry.

Without a conditional write no client can exclude a lost update entirely: a writer stalled between its last read
and its write for longer than another writer's whole update overwrites that update unseen.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import structlog

from provider import mediatypes as mt
from provider.errors import ArtifactTooLargeError, ReferrersIndexConflictError, ReferrersIndexInvalidError

log = structlog.get_logger("referee.attach")

DEFAULT_ATTEMPTS = 8
MIN_SETTLE = 0.25
MAX_SETTLE = 2.0


class UnknownEntriesError(Exception):
    """A write was refused because entries point to manifests the repository no longer holds (registries such as
    distribution check every index entry). Raised by :meth:`TagIndexIO.write`."""

    def __init__(self, digests: frozenset[str]) -> None:
        super().__init__(", ".join(sorted(digests)))
        self.digests = digests


@dataclass(frozen=True, slots=True)
class TagIndex:
    """What the referrers tag held: exact bytes, their digest, the registry's ETag (if any)."""

    body: bytes
    digest: str
    media_type: str | None
    etag: str | None = None


class TagIndexIO(Protocol):
    """Reads and writes one referrers tag."""

    @property
    def tag(self) -> str: ...

    def read(self) -> TagIndex | None:
        """The tag's content, ``None`` when the tag does not exist."""
        ...

    def write(self, body: bytes, previous: TagIndex | None) -> bool:
        """Push ``body`` at the tag; ``False`` when the registry refused a conditional write (``412``); raises
        :class:`UnknownEntriesError` when it refused entries pointing to manifests it does not hold."""
        ...


@dataclass(frozen=True, slots=True)
class Merge:
    """``body`` is ``None`` when the index already lists the entry exactly and nothing needs writing."""

    body: bytes | None
    entries: int
    dropped: tuple[str, ...] = ()
    pruned: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class IndexUpdate:
    tag: str
    entries: int
    written: bool
    attempts: int
    dropped: tuple[str, ...] = ()
    pruned: tuple[str, ...] = ()


def _parse(existing: TagIndex, what: str) -> dict[str, Any]:
    if existing.media_type not in (None, mt.OCI_INDEX):
        raise ReferrersIndexInvalidError(
            f"{what} holds a {existing.media_type} manifest, not an OCI image index; it is left alone"
        )
    try:
        doc = json.loads(existing.body)
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise ReferrersIndexInvalidError(f"{what} is not JSON; it is left alone") from None
    if not isinstance(doc, dict) or doc.get("schemaVersion") != 2 or doc.get("mediaType", mt.OCI_INDEX) != mt.OCI_INDEX:
        raise ReferrersIndexInvalidError(f"{what} is not an OCI image index; it is left alone")
    manifests = doc.get("manifests")
    if not isinstance(manifests, list):
        raise ReferrersIndexInvalidError(f"{what} has no manifests list; it is left alone")
    for i, item in enumerate(manifests):
        if not isinstance(item, dict):
            raise ReferrersIndexInvalidError(f"{what}: manifests[{i}] is not a descriptor; the index is left alone")
    return doc


def merge_entry(
    existing: TagIndex | None,
    entry: Mapping[str, Any],
    what: str,
    max_bytes: int,
    gone: frozenset[str] = frozenset(),
) -> Merge:
    """The index with ``entry`` added (or corrected in place when its digest is listed with other fields), without
    entries whose manifests the registry said it no longer holds (``gone``)."""
    if entry.get("artifactType") in mt.INTERNAL_TYPES:
        raise ReferrersIndexInvalidError(f"{entry.get('artifactType')} is Referee's internal type; it is never written")
    doc: dict[str, Any] = (
        {"schemaVersion": 2, "mediaType": mt.OCI_INDEX, "manifests": []} if existing is None else _parse(existing, what)
    )
    kept: list[Any] = []
    dropped: list[str] = []
    pruned: list[str] = []
    found = False
    changed = existing is None
    for item in doc["manifests"]:
        if item.get("digest") in gone and item.get("digest") != entry["digest"]:
            pruned.append(str(item["digest"]))
            changed = True
            continue
        if item.get("artifactType") in mt.INTERNAL_TYPES:
            dropped.append(str(item.get("digest")))
            changed = True
            continue
        if item.get("digest") == entry["digest"]:
            if found or item != entry:
                changed = True
            if not found:
                kept.append(dict(entry))
            found = True
            continue
        kept.append(item)
    if not found:
        kept.append(dict(entry))
        changed = True
    if not changed:
        return Merge(None, len(kept))
    doc["manifests"] = kept
    doc.setdefault("mediaType", mt.OCI_INDEX)
    body = json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode()
    if len(body) > max_bytes:
        raise ArtifactTooLargeError(f"{what} would grow to {len(body)} bytes, over the {max_bytes}-byte limit")
    return Merge(body, len(kept), tuple(dropped), tuple(pruned))


def lists_entry(index: TagIndex | None, entry: Mapping[str, Any]) -> bool:
    if index is None:
        return False
    try:
        doc = json.loads(index.body)
    except (UnicodeDecodeError, ValueError, RecursionError):
        return False
    manifests = doc.get("manifests") if isinstance(doc, dict) else None
    return isinstance(manifests, list) and any(item == entry for item in manifests)


def _same(a: TagIndex | None, b: TagIndex | None) -> bool:
    return (a is None and b is None) or (a is not None and b is not None and a.digest == b.digest)


def add_referrer(
    io: TagIndexIO,
    entry: Mapping[str, Any],
    *,
    what: str,
    max_bytes: int,
    attempts: int = DEFAULT_ATTEMPTS,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> IndexUpdate:
    """Add ``entry`` to the index at ``io.tag`` (read, merge, re-read, conditional write, settle, verify)."""
    rng = random.SystemRandom()
    gone: frozenset[str] = frozenset()
    for attempt in range(1, attempts + 1):
        current = io.read()
        merge = merge_entry(current, entry, what, max_bytes, gone)
        if merge.body is None:
            return IndexUpdate(io.tag, merge.entries, written=False, attempts=attempt)
        if merge.dropped:
            log.warning("referrers_index_internal_type_dropped", tag=io.tag, digests=list(merge.dropped))
        if _same(io.read(), current):
            started = clock()
            try:
                written = io.write(merge.body, current)
            except UnknownEntriesError as exc:
                if entry["digest"] in exc.digests or exc.digests <= gone:
                    raise ReferrersIndexInvalidError(
                        f"{what}: the registry refused the index, naming {exc} as missing"
                    ) from None
                log.warning("referrers_index_dangling_pruned", tag=io.tag, digests=sorted(exc.digests))
                gone |= exc.digests
                continue
            if written:
                latency = clock() - started
                sleep(min(MAX_SETTLE, max(MIN_SETTLE, 3 * latency)) * rng.uniform(1.0, 1.5))
                if lists_entry(io.read(), entry):
                    return IndexUpdate(io.tag, merge.entries, True, attempt, merge.dropped, merge.pruned)
        log.info("referrers_index_conflict", tag=io.tag, attempt=attempt)
        sleep(min(2.0, 0.05 * 2**attempt) * rng.uniform(0.5, 1.5))
    raise ReferrersIndexConflictError(
        f"{what}: other writers kept replacing the index in {attempts} attempts; run the command again"
    )
