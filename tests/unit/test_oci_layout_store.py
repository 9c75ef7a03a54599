"""The oci-layout store over notation's e2e layouts (vectors/notation/README.md §1; oci-and-referrers.md §3-5)."""

from __future__ import annotations

import json
import os
import shutil
import stat
from pathlib import Path

import pytest

from provider import mediatypes as mt
from provider.errors import ArtifactTooLargeError, DigestMismatchError, NotFoundError, ProviderError
from provider.oci import Descriptor
from provider.reference import ImageRef, parse_reference
from provider.stores.oci_layout import OCILayoutStore
from tests.support.paths import VECTORS as SHARED_VECTORS

LAYOUT = SHARED_VECTORS / "notation" / "oci-layouts" / "e2e-valid-signature"
IMAGE = "sha256:b8479de3f88fb259a0a9ea82a5b2a052a1ef3c4ebbcfc61482d5ae4c831f8af9"
IMAGE_SIZE = 517
SIGNATURE_MANIFEST_PREFIX = "sha256:90ceaff2"
ENVELOPE_PREFIX = "sha256:c9af07e0"
NOTARY = "application/vnd.cncf.notary.signature"
THUMBPRINT_ANNOTATION = "io.cncf.notary.x509chain.thumbprint#S256"
MAX_MANIFEST = 4 * 1024 * 1024
REF = parse_reference("localhost:5000/e2e:v1")


def _store(root: Path = LAYOUT, max_manifest: int = MAX_MANIFEST) -> OCILayoutStore:
    return OCILayoutStore("layout", root, max_manifest)


def _writable_copy(tmp_path: Path) -> Path:
    dest = tmp_path / "layout"
    shutil.copytree(LAYOUT, dest)
    for dirpath, dirnames, filenames in os.walk(dest):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            p.chmod(p.stat().st_mode | stat.S_IWUSR)
    dest.chmod(dest.stat().st_mode | stat.S_IWUSR)
    return dest


def _index(root: Path) -> dict[str, object]:
    doc: dict[str, object] = json.loads((root / "index.json").read_text())
    return doc


def _manifests(root: Path) -> list[dict[str, object]]:
    items = _index(root)["manifests"]
    assert isinstance(items, list)
    return items


def _rewrite_index(root: Path, keep: list[dict[str, object]]) -> None:
    doc = _index(root)
    doc["manifests"] = keep
    (root / "index.json").write_text(json.dumps(doc))


def _ref_name(entry: dict[str, object]) -> str:
    annotations = entry.get("annotations") or {}
    assert isinstance(annotations, dict)
    return str(annotations.get("org.opencontainers.image.ref.name", ""))


def _blob_path(root: Path, digest: str) -> Path:
    algorithm, _, encoded = digest.partition(":")
    return root / "blobs" / algorithm / encoded


async def _subject(store: OCILayoutStore, ref: ImageRef = REF) -> Descriptor:
    return await store.resolve(ref)


async def _referrers(
    store: OCILayoutStore, subject: Descriptor, types: frozenset[str] | None = None
) -> list[Descriptor]:
    return list((await store.list_referrers(REF, subject, types)).descriptors)


# -- resolve -------------------------------------------------------------------------------------------------------


async def test_resolve_tag_v1() -> None:
    d = await _subject(_store())
    assert d.digest == IMAGE
    assert d.size == IMAGE_SIZE
    assert d.media_type == mt.OCI_MANIFEST


@pytest.mark.parametrize("value", ["e2e:v1", "localhost:5000/some/repo:v1", "ghcr.io/x/y:v1"])
async def test_resolve_by_tag_regardless_of_repository(value: str) -> None:
    # index.json names the tag only ("v1"): any repository name finds it
    assert (await _store().resolve(parse_reference(value))).digest == IMAGE


async def test_resolve_by_digest() -> None:
    d = await _store().resolve(parse_reference(f"localhost:5000/e2e@{IMAGE}"))
    assert d.digest == IMAGE
    assert d.size == IMAGE_SIZE


async def test_missing_tag_is_not_found() -> None:
    with pytest.raises(NotFoundError) as info:
        await _store().resolve(parse_reference("localhost:5000/e2e:v2"))
    assert info.value.code == "NOT_FOUND"


async def test_default_latest_tag_is_not_found() -> None:
    with pytest.raises(NotFoundError):
        await _store().resolve(parse_reference("localhost:5000/e2e"))


async def test_unknown_digest_is_not_found() -> None:
    with pytest.raises(NotFoundError):
        await _store().resolve(parse_reference("localhost:5000/e2e@sha256:" + "0" * 64))


async def test_not_a_layout(tmp_path: Path) -> None:
    with pytest.raises(NotFoundError):
        await _store(tmp_path).resolve(REF)


# -- referrers -----------------------------------------------------------------------------------------------------


async def test_referrers_find_the_notary_signature_exactly_once() -> None:
    store = _store()
    found = await _referrers(store, await _subject(store))
    assert len(found) == 1
    (sig,) = found
    assert sig.digest.startswith(SIGNATURE_MANIFEST_PREFIX)
    assert sig.artifact_type == NOTARY
    assert sig.media_type == mt.OCI_MANIFEST
    assert THUMBPRINT_ANNOTATION in sig.annotations


async def test_referrers_filter_by_artifact_type() -> None:
    store = _store()
    subject = await _subject(store)
    assert len(await _referrers(store, subject, frozenset({NOTARY}))) == 1
    assert await _referrers(store, subject, frozenset({mt.COSIGN_OCI11_SIGNATURE})) == []


async def test_referrers_via_config_media_type_fallback(tmp_path: Path) -> None:
    # without the referrers-tag index, the signature manifest is found through its subject; it has no
    # artifactType, so its config.mediaType stands in (image-spec implementers note)
    root = _writable_copy(tmp_path)
    keep = [m for m in _manifests(root) if not _ref_name(m).startswith("sha256-")]
    assert len(keep) == 2
    _rewrite_index(root, keep)
    store = _store(root)
    found = await _referrers(store, await _subject(store))
    assert [d.digest[:15] for d in found] == [SIGNATURE_MANIFEST_PREFIX]
    assert found[0].artifact_type == NOTARY
    # the descriptor carries the manifest's annotations, as the referrers API would
    assert THUMBPRINT_ANNOTATION in found[0].annotations


async def test_referrers_via_tag_schema_index(tmp_path: Path) -> None:
    # the signature manifest is no longer listed in index.json; only the sha256-<hex> tag index names it
    root = _writable_copy(tmp_path)
    keep = [m for m in _manifests(root) if not str(m["digest"]).startswith(SIGNATURE_MANIFEST_PREFIX)]
    assert len(keep) == 2
    _rewrite_index(root, keep)
    store = _store(root)
    found = await _referrers(store, await _subject(store))
    assert len(found) == 1
    assert found[0].digest.startswith(SIGNATURE_MANIFEST_PREFIX)
    assert found[0].artifact_type == NOTARY


async def test_no_referrers_for_another_subject() -> None:
    store = _store()
    other = Descriptor(mt.OCI_MANIFEST, "sha256:" + "0" * 64, 10)
    assert await _referrers(store, other) == []


# -- fetching ------------------------------------------------------------------------------------------------------


async def test_fetch_signature_manifest_and_envelope() -> None:
    store = _store()
    (sig,) = await _referrers(store, await _subject(store))
    manifest = await store.fetch_manifest(REF, sig)
    assert manifest.subject is not None
    assert manifest.subject.digest == IMAGE
    assert manifest.effective_artifact_type == NOTARY
    (layer,) = manifest.layers
    assert layer.digest.startswith(ENVELOPE_PREFIX)
    assert layer.media_type == "application/jose+json"
    envelope = await store.fetch_blob(REF, layer, 64 * 1024)
    assert len(envelope) == layer.size
    assert json.loads(envelope)["payload"]


async def test_fetch_manifest_digest_mismatch(tmp_path: Path) -> None:
    root = _writable_copy(tmp_path)
    store = _store(root)
    (sig,) = await _referrers(store, await _subject(store))
    path = _blob_path(root, sig.digest)
    data = bytearray(path.read_bytes())
    # flip one byte inside a JSON string so the document stays parseable
    pos = data.index(b"jose+json") + 1
    data[pos] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(DigestMismatchError) as info:
        await store.fetch_manifest(REF, sig)
    assert info.value.code == "DIGEST_MISMATCH"


async def test_fetch_blob_digest_mismatch(tmp_path: Path) -> None:
    root = _writable_copy(tmp_path)
    store = _store(root)
    (sig,) = await _referrers(store, await _subject(store))
    (layer,) = (await store.fetch_manifest(REF, sig)).layers
    path = _blob_path(root, layer.digest)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(DigestMismatchError) as info:
        await store.fetch_blob(REF, layer, 64 * 1024)
    assert str(info.value).startswith("DIGEST_MISMATCH: ")


async def test_resolve_by_digest_with_corrupt_manifest(tmp_path: Path) -> None:
    root = _writable_copy(tmp_path)
    # drop the tag so resolution by digest must read the blob
    _rewrite_index(root, [m for m in _manifests(root) if m["digest"] != IMAGE])
    path = _blob_path(root, IMAGE)
    data = bytearray(path.read_bytes())
    data[-3] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(ProviderError) as info:
        await _store(root).resolve(parse_reference(f"localhost:5000/e2e@{IMAGE}"))
    assert info.value.code == "DIGEST_MISMATCH"


async def test_blob_over_size_limit() -> None:
    store = _store()
    (sig,) = await _referrers(store, await _subject(store))
    (layer,) = (await store.fetch_manifest(REF, sig)).layers
    with pytest.raises(ArtifactTooLargeError) as info:
        await store.fetch_blob(REF, layer, layer.size - 1)
    assert info.value.code == "ARTIFACT_TOO_LARGE"


async def test_blob_larger_than_its_descriptor_claims() -> None:
    # a descriptor that under-states the size must not let a large file through
    store = _store()
    (sig,) = await _referrers(store, await _subject(store))
    (layer,) = (await store.fetch_manifest(REF, sig)).layers
    lying = Descriptor(layer.media_type, layer.digest, 10)
    with pytest.raises(ArtifactTooLargeError):
        await store.fetch_blob(REF, lying, 100)


async def test_manifest_over_size_limit() -> None:
    (sig,) = await _referrers(_store(), await _subject(_store()))
    assert sig.size > 100
    store = _store(max_manifest=100)
    with pytest.raises(ArtifactTooLargeError):
        await store.fetch_manifest(REF, sig)


async def test_missing_blob_is_not_found(tmp_path: Path) -> None:
    root = _writable_copy(tmp_path)
    store = _store(root)
    (sig,) = await _referrers(store, await _subject(store))
    (layer,) = (await store.fetch_manifest(REF, sig)).layers
    _blob_path(root, layer.digest).unlink()
    with pytest.raises(NotFoundError):
        await store.fetch_blob(REF, layer, 64 * 1024)


@pytest.mark.parametrize(
    "digest",
    ["sha256:../../oci-layout", "sha256:" + "../" * 10 + "etc/passwd", "../sha256:" + "0" * 64, "md5:" + "0" * 32],
)
async def test_blob_paths_come_only_from_valid_digests(digest: str) -> None:
    # digests come from untrusted manifests: they must never address a file outside blobs/<alg>/<hex>
    with pytest.raises(ProviderError) as info:
        await _store().fetch_blob(REF, Descriptor("application/octet-stream", digest, 1), 1024)
    assert info.value.code in ("REFERENCE_INVALID", "DIGEST_MISMATCH", "MANIFEST_INVALID")
