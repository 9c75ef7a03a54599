"""``referee attach`` without a registry: the artifact manifest it builds, the referrers entry, and the tag-schema
index merge (what a pusher must keep, drop, refuse)."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from provider import mediatypes as mt
from provider.attach.artifact import build_artifact, parse_annotations, referrers_entry
from provider.attach.tagindex import TagIndex, lists_entry, merge_entry
from provider.errors import ArtifactTooLargeError, ConfigError, ReferrersIndexInvalidError
from provider.oci import Descriptor, parse_manifest

SUBJECT = Descriptor(mt.OCI_MANIFEST, "sha256:" + "1" * 64, 1234)
NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)


def _digest(n: int) -> str:
    return "sha256:" + f"{n:x}" * 64


def _entry(n: int, artifact_type: str = "application/vnd.example+json", **extra: Any) -> dict[str, Any]:
    return {"mediaType": mt.OCI_MANIFEST, "digest": _digest(n), "size": 100 + n, "artifactType": artifact_type, **extra}


def _index(*entries: Any, **top: Any) -> TagIndex:
    body = json.dumps({"schemaVersion": 2, "mediaType": mt.OCI_INDEX, "manifests": list(entries), **top}).encode()
    return TagIndex(body, "sha256:" + hashlib.sha256(body).hexdigest(), mt.OCI_INDEX)


def _manifests(body: bytes | None) -> list[Any]:
    assert body is not None
    doc = json.loads(body)
    assert doc["schemaVersion"] == 2 and doc["mediaType"] == mt.OCI_INDEX
    return list(doc["manifests"])


def test_artifact_manifest(tmp_path: Path) -> None:
    sbom = tmp_path / "sbom.spdx.json"
    sbom.write_bytes(b'{"spdxVersion": "SPDX-2.3"}')
    scan = tmp_path / "scan.sarif"
    scan.write_bytes(b'{"version": "2.1.0"}')
    artifact = build_artifact(
        SUBJECT,
        mt.SPDX_JSON,
        [str(sbom), f"{scan}:{mt.SARIF_JSON}"],
        parse_annotations(["org.example.k=v=w"]),
        now=NOW,
    )
    assert artifact.digest == "sha256:" + hashlib.sha256(artifact.manifest).hexdigest()
    doc = json.loads(artifact.manifest)
    assert doc["artifactType"] == mt.SPDX_JSON and doc["mediaType"] == mt.OCI_MANIFEST
    assert doc["config"]["mediaType"] == mt.OCI_EMPTY and doc["config"]["size"] == 2
    assert doc["subject"] == {"mediaType": mt.OCI_MANIFEST, "digest": SUBJECT.digest, "size": 1234}
    assert doc["annotations"] == {mt.ANNOTATION_CREATED: "2026-06-01T12:00:00Z", "org.example.k": "v=w"}
    assert [
        (layer["mediaType"], layer["annotations"]["org.opencontainers.image.title"]) for layer in doc["layers"]
    ] == [
        (mt.SPDX_JSON, "sbom.spdx.json"),
        (mt.SARIF_JSON, "scan.sarif"),
    ]
    assert doc["layers"][0]["digest"] == "sha256:" + hashlib.sha256(sbom.read_bytes()).hexdigest()
    manifest = parse_manifest(artifact.manifest, artifact.digest, mt.OCI_MANIFEST)
    entry = referrers_entry(manifest)
    assert entry == {
        "mediaType": mt.OCI_MANIFEST,
        "digest": artifact.digest,
        "size": len(artifact.manifest),
        "artifactType": mt.SPDX_JSON,
        "annotations": doc["annotations"],
    }


def test_created_annotation_can_be_given_but_must_be_rfc3339(tmp_path: Path) -> None:
    f = tmp_path / "x.json"
    f.write_text("{}")
    given = parse_annotations([f"{mt.ANNOTATION_CREATED}=2026-05-01T08:00:00+02:00"])
    doc = json.loads(build_artifact(SUBJECT, mt.SPDX_JSON, [str(f)], given, now=NOW).manifest)
    assert doc["annotations"][mt.ANNOTATION_CREATED] == "2026-05-01T08:00:00+02:00"
    for bad in ("yesterday", "2026-05-01", "2026-05-01T08:00:00"):
        with pytest.raises(ConfigError, match="RFC 3339"):
            parse_annotations([f"{mt.ANNOTATION_CREATED}={bad}"])
    with pytest.raises(ConfigError, match="not key=value"):
        parse_annotations(["novalue"])


@pytest.mark.parametrize("artifact_type", [*mt.COSIGN_LEGACY_TYPES, "not a type", "text"])
def test_artifact_type_must_be_a_public_media_type(artifact_type: str, tmp_path: Path) -> None:
    f = tmp_path / "x.json"
    f.write_text("{}")
    with pytest.raises(ConfigError, match="--artifact-type"):
        build_artifact(SUBJECT, artifact_type, [str(f)], {}, now=NOW)


def test_referrers_entry_falls_back_to_config_media_type() -> None:
    raw = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": mt.OCI_MANIFEST,
            "config": {"mediaType": mt.SPDX_JSON, "digest": _digest(2), "size": 2},
            "layers": [],
            "subject": {"mediaType": mt.OCI_MANIFEST, "digest": SUBJECT.digest, "size": 1},
        }
    ).encode()
    digest = "sha256:" + hashlib.sha256(raw).hexdigest()
    entry = referrers_entry(parse_manifest(raw, digest, None))
    assert entry["artifactType"] == mt.SPDX_JSON and "annotations" not in entry
    index = json.dumps({"schemaVersion": 2, "mediaType": mt.OCI_INDEX, "manifests": []}).encode()
    entry = referrers_entry(parse_manifest(index, "sha256:" + hashlib.sha256(index).hexdigest(), None))
    assert "artifactType" not in entry


def test_merge_starts_an_index_when_there_is_none() -> None:
    merge = merge_entry(None, _entry(1), "tag", 1 << 20)
    assert _manifests(merge.body) == [_entry(1)] and merge.entries == 1


def test_merge_keeps_every_other_entry_verbatim_and_in_order() -> None:
    odd = {"mediaType": "application/x-unknown", "digest": "sha384:" + "a" * 96, "size": 1, "x-extra": [1, {"y": 2}]}
    index_entry = {"mediaType": mt.OCI_INDEX, "digest": _digest(4), "size": 5}
    existing = _index(_entry(2), odd, index_entry, _entry(2), annotations={"org.example": "kept"})
    merge = merge_entry(existing, _entry(3), "tag", 1 << 20)
    assert _manifests(merge.body) == [_entry(2), odd, index_entry, _entry(2), _entry(3)]
    assert merge.body is not None and json.loads(merge.body)["annotations"] == {"org.example": "kept"}


def test_merge_is_idempotent_and_corrects_its_own_entry_in_place() -> None:
    same = _index(_entry(2), _entry(3))
    assert merge_entry(same, _entry(3), "tag", 1 << 20).body is None
    stale = _index(_entry(3, "application/wrong"), _entry(2), _entry(3))
    assert _manifests(merge_entry(stale, _entry(3), "tag", 1 << 20).body) == [_entry(3), _entry(2)]


def test_merge_drops_entries_claiming_referee_internal_types() -> None:
    forged = [_entry(5, t) for t in mt.COSIGN_LEGACY_TYPES]
    merge = merge_entry(_index(_entry(2), *forged), _entry(3), "tag", 1 << 20)
    assert _manifests(merge.body) == [_entry(2), _entry(3)]
    assert merge.dropped == tuple(f["digest"] for f in forged)
    with pytest.raises(ReferrersIndexInvalidError, match="internal type"):
        merge_entry(None, _entry(3, mt.COSIGN_LEGACY_ATTESTATIONS), "tag", 1 << 20)


def test_merge_prunes_only_what_the_registry_named_missing() -> None:
    merge = merge_entry(_index(_entry(2), _entry(4)), _entry(3), "tag", 1 << 20, gone=frozenset({_digest(4)}))
    assert _manifests(merge.body) == [_entry(2), _entry(3)] and merge.pruned == (_digest(4),)


@pytest.mark.parametrize(
    ("existing", "message"),
    [
        (TagIndex(b"{}", _digest(9), mt.OCI_MANIFEST), r"holds a application/vnd\.oci\.image\.manifest\.v1\+json"),
        (TagIndex(b"not json", _digest(9), None), "not JSON"),
        (TagIndex(b'{"schemaVersion": 2, "config": {}}', _digest(9), None), "no manifests list"),
        (TagIndex(b'{"schemaVersion": 1, "manifests": []}', _digest(9), None), "not an OCI image index"),
        (_index("sha256:abc"), r"manifests\[0\] is not a descriptor"),
    ],
)
def test_merge_leaves_anything_but_an_index_alone(existing: TagIndex, message: str) -> None:
    with pytest.raises(ReferrersIndexInvalidError, match=message):
        merge_entry(existing, _entry(3), "tag", 1 << 20)


def test_merge_respects_the_manifest_size_limit() -> None:
    big = _index(*[_entry(n % 15 + 1, annotations={"pad": "x" * 500}) for n in range(20)])
    with pytest.raises(ArtifactTooLargeError):
        merge_entry(big, _entry(3), "tag", 4096)


def test_lists_entry_needs_the_exact_descriptor() -> None:
    assert lists_entry(_index(_entry(2), _entry(3)), _entry(3))
    assert not lists_entry(_index(_entry(3, "application/other")), _entry(3))
    assert not lists_entry(None, _entry(3))
    assert not lists_entry(TagIndex(b"[", _digest(9), None), _entry(3))


async def test_attach_uses_the_credentials_verify_would_use_for_the_repository(tmp_path: Path) -> None:
    """Review finding: repository-scoped Docker config entries collapsed into one per host, so attach sent
    team-b's credentials for team-a's repository."""
    import base64
    import json

    from provider.attach.session import RegistrySession
    from provider.config import load_config
    from provider.reference import parse_reference
    from provider.registry.credentials import CredentialStore

    def b64(text: str) -> str:
        return base64.b64encode(text.encode()).decode()

    docker = tmp_path / "config.json"
    docker.write_text(
        json.dumps(
            {
                "auths": {
                    "registry.example.com/team-a": {"auth": b64("team-a:secret-a")},
                    "registry.example.com/team-b": {"auth": b64("team-b:secret-b")},
                }
            }
        )
    )
    path = tmp_path / "c.yaml"
    path.write_text(json.dumps({"registries": {"allow": ["registry.example.com"], "dockerConfig": str(docker)}}))
    config = load_config(path)
    for team in ("team-a", "team-b"):
        ref = parse_reference(f"registry.example.com/{team}/app:v1")
        verify_side = await CredentialStore(config.registries).lookup(ref)
        with RegistrySession(ref, config.registries, max_manifest_bytes=4 << 20) as session:
            assert verify_side is not None and session.credentials == verify_side
            assert session.credentials.username == team
