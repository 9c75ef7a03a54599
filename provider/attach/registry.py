"""``referee attach`` against a registry: push the artifact, then make it discoverable.

A registry that processed the ``subject`` answers the manifest ``PUT`` with ``OCI-Subject`` and lists the artifact
through its referrers API. Without that header the pusher must maintain the referrers tag schema itself
(:mod:`provider.attach.tagindex`); ``registries.hosts[].referrersApi`` overrides the detection (``always``: trust
the API, ``never``: always write the tag index).
"""

from __future__ import annotations

from datetime import datetime

import structlog

from provider import mediatypes as mt
from provider.attach.artifact import EMPTY_CONFIG, EMPTY_CONFIG_DIGEST, build_artifact, referrers_entry
from provider.attach.result import AttachResult
from provider.attach.session import ManifestRefsUnknownError, RegistrySession, open_session
from provider.attach.tagindex import IndexUpdate, TagIndex, UnknownEntriesError, add_referrer
from provider.config import Config
from provider.errors import NotFoundError, SubjectMismatchError
from provider.oci import Descriptor, parse_manifest
from provider.reference import ImageRef, parse_digest, referrers_tag

log = structlog.get_logger("referee.attach")


class RegistryTagIndex:
    """The referrers tag of one subject, read and written through a :class:`RegistrySession`."""

    def __init__(self, session: RegistrySession, subject_digest: str) -> None:
        self._session = session
        self._tag = referrers_tag(subject_digest)
        self.what = f"referrers tag {session.registry}/{session.repository}:{self._tag}"

    @property
    def tag(self) -> str:
        return self._tag

    def read(self) -> TagIndex | None:
        # Every manifest type is accepted so that a tag holding something else is seen (and left alone) rather
        # than reported as missing by registries that answer 404 to an unacceptable type.
        fetched = self._session.fetch(self._tag, mt.ACCEPT_SUBJECT, self.what)
        if fetched is None:
            return None
        return TagIndex(fetched.body, fetched.digest, fetched.media_type, fetched.etag)

    def write(self, body: bytes, previous: TagIndex | None) -> bool:
        # Conditional only on what the registry said: an ETag it did not send could never match.
        condition: dict[str, str] = {}
        if previous is None:
            condition["If-None-Match"] = "*"
        elif previous.etag:
            condition["If-Match"] = previous.etag
        try:
            return self._session.put_manifest(self._tag, body, mt.OCI_INDEX, self.what, condition) is not None
        except ManifestRefsUnknownError as exc:
            raise UnknownEntriesError(exc.digests) from None


def _uses_api(session: RegistrySession, subject_digest: str, *, oci_subject: str | None, probe: bool) -> bool:
    """Whether the registry lists referrers itself: ``OCI-Subject`` on the push (distribution-spec), else a probe
    of the referrers endpoint when asked, unless ``referrersApi`` says otherwise."""
    mode = session.settings.referrers_api
    if mode != "auto":
        return mode == "always"
    if oci_subject == subject_digest:
        return True
    return probe and session.has_referrers_api(subject_digest)


def _index(session: RegistrySession, subject: Descriptor, entry: dict[str, object]) -> IndexUpdate:
    io = RegistryTagIndex(session, subject.digest)
    update = add_referrer(io, entry, what=io.what, max_bytes=session.max_manifest_bytes)
    log.info(
        "referrers_index_updated" if update.written else "referrers_index_unchanged",
        tag=io.tag,
        entries=update.entries,
        attempts=update.attempts,
    )
    return update


def attach_files(
    config: Config,
    ref: ImageRef,
    artifact_type: str,
    files: list[str],
    annotations: dict[str, str],
    *,
    now: datetime | None = None,
) -> AttachResult:
    """Push ``files`` as an artifact whose subject is ``ref`` and make it discoverable."""
    with open_session(ref, config.registries, max_manifest_bytes=config.limits.max_manifest_bytes) as session:
        subject = session.resolve(ref)
        artifact = build_artifact(subject, artifact_type, files, annotations, now=now)
        for f in artifact.files:
            session.upload_file(f.path, f.descriptor)
        session.upload_bytes(EMPTY_CONFIG, {"mediaType": mt.OCI_EMPTY, "digest": EMPTY_CONFIG_DIGEST, "size": 2})
        what = f"artifact manifest {ref.name}@{artifact.digest}"
        resp = session.put_manifest(artifact.digest, artifact.manifest, artifact.media_type, what)
        pushed_subject = resp.headers.get("OCI-Subject") if resp is not None else None
        log.info("artifact_pushed", subject=subject.digest, digest=artifact.digest, oci_subject=pushed_subject)
        pinned = ref.with_digest(subject.digest).pinned()
        if _uses_api(session, subject.digest, oci_subject=pushed_subject, probe=False):
            return AttachResult(pinned, artifact.digest, artifact_type, "referrers-api")
        manifest = parse_manifest(artifact.manifest, artifact.digest, artifact.media_type, what)
        update = _index(session, subject, referrers_entry(manifest))
        return AttachResult(pinned, artifact.digest, artifact_type, "tag-schema", update)


def index_referrer(config: Config, ref: ImageRef, referrer_digest: str) -> AttachResult:
    """Make a manifest already pushed with ``subject`` = ``ref`` discoverable (e.g. one pushed by oras-py or
    ``skopeo copy``, which never write the tag schema)."""
    parse_digest(referrer_digest)
    with open_session(ref, config.registries, max_manifest_bytes=config.limits.max_manifest_bytes) as session:
        subject = session.resolve(ref)
        what = f"manifest {ref.name}@{referrer_digest}"
        fetched = session.fetch(referrer_digest, mt.ACCEPT_REFERRER, what)
        if fetched is None:
            raise NotFoundError(f"{what} not found")
        manifest = parse_manifest(fetched.body, referrer_digest, fetched.media_type, what)
        if manifest.subject is None or manifest.subject.digest != subject.digest:
            found = manifest.subject.digest if manifest.subject else "no subject"
            raise SubjectMismatchError(f"{what} is not a referrer of {ref.name}@{subject.digest} ({found})")
        entry = referrers_entry(manifest)
        artifact_type = str(entry.get("artifactType", ""))
        pinned = ref.with_digest(subject.digest).pinned()
        if _uses_api(session, subject.digest, oci_subject=None, probe=True):
            return AttachResult(pinned, referrer_digest, artifact_type, "referrers-api")
        update = _index(session, subject, entry)
        return AttachResult(pinned, referrer_digest, artifact_type, "tag-schema", update)
