"""What a pusher running oras-py (the ``oras`` package) attaches, and what Referee finds.

oras-py 0.2.x pushes a manifest with ``subject`` and nothing more. Its ``push`` cannot set ``artifactType``: the
artifact type travels in ``config.mediaType`` (the pre-OCI-1.1 convention, which the referrers API and Referee
fall back to). A pusher who wants ``artifactType`` builds the manifest dict and sends it with
``upload_manifest``. It neither lists referrers nor writes the referrers tag schema.

* With the referrers API (the spec-following test double in front of Debian's docker-registry): the registry
  indexes ``subject`` itself and Referee finds and judges the SBOM, the SARIF scan and the VEX document, in both
  shapes.
* Without it (docker-registry alone): the pushes are invisible — the verdict is a denial whose notes say that the
  registry has no referrers API and no fallback index — until ``referee attach --referrer`` writes the tag schema.
* On a token-auth registry oras-py cannot push at all (it reuses a pull-only token).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import oras.client
import oras.defaults
import oras.oci
import pytest

from provider import mediatypes as mt
from tests.integration.attach_support import RULES, TYPES, evidence_files, run_cli, succeeded, verify, write_config
from tests.support.content import OCI_INDEX, BearerFlow, fallback_tag, get_manifest, make_image, push_image
from tests.support.referrers_proxy import ReferrersProxy
from tests.support.registry import RegistryProcess

REPO = "oras/app"
CREATED = "org.opencontainers.image.created"


@pytest.fixture(autouse=True)
def _no_docker_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """oras-py's ``push`` reads ``~/.docker/config.json``: give it an empty home."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("DOCKER_CONFIG", raising=False)


def _stamp() -> str:
    from datetime import UTC, datetime

    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class OrasPusher:
    """oras-py used the way its README shows, against one plain-HTTP registry."""

    def __init__(self, host: str, subject: dict[str, Any]) -> None:
        self.host = host
        self.client = oras.client.OrasClient(hostname=host, insecure=True)
        # The image's own descriptor (Subject.from_manifest would re-serialise JSON and get the digest wrong).
        self.subject = oras.oci.Subject(mediaType=subject["mediaType"], digest=subject["digest"], size=subject["size"])

    def push_with_config_type(self, tag: str, path: Path, artifact_type: str, workdir: Path) -> str:
        """``OrasClient.push``: the artifact type as ``config.mediaType`` (no ``artifactType`` possible)."""
        config = workdir / "config.json"
        config.write_text("{}")
        resp = self.client.push(
            target=f"{self.host}/{REPO}:{tag}",
            files=[str(path)],
            manifest_config=f"{config}:{artifact_type}",
            manifest_annotations={CREATED: _stamp()},
            subject=self.subject,
            disable_path_validation=True,
            quiet=True,
        )
        assert resp.status_code == 201
        return str(resp.headers["Docker-Content-Digest"])

    def push_with_artifact_type(self, tag: str, path: Path, artifact_type: str, workdir: Path) -> str:
        """Blobs through ``upload_blob``, then a hand-built OCI 1.1 manifest through ``upload_manifest``."""
        container = self.client.get_container(f"{self.host}/{REPO}:{tag}")
        layer = oras.oci.NewLayer(str(path), media_type=artifact_type)
        layer["annotations"] = {oras.defaults.annotation_title: path.name}
        assert self.client.upload_blob(str(path), container, layer).status_code in (200, 201)
        empty = workdir / "empty.json"
        empty.write_text("{}")
        config = {"mediaType": mt.OCI_EMPTY, "digest": oras.defaults.blank_config_hash, "size": 2}
        assert self.client.upload_blob(str(empty), container, config).status_code in (200, 201)
        manifest = {
            "schemaVersion": 2,
            "mediaType": mt.OCI_MANIFEST,
            "artifactType": artifact_type,
            "config": config,
            "layers": [layer],
            "subject": {"mediaType": self.subject.mediaType, "digest": self.subject.digest, "size": self.subject.size},
            "annotations": {CREATED: _stamp()},
        }
        resp = self.client.upload_manifest(manifest, container)
        assert resp.status_code == 201
        return str(resp.headers["Docker-Content-Digest"])


SHAPES = ("config-media-type", "artifact-type")


def _push_all(pusher: OrasPusher, files: dict[str, Path], shape: str, workdir: Path) -> dict[str, str]:
    push = pusher.push_with_config_type if shape == "config-media-type" else pusher.push_with_artifact_type
    return {name: push(f"{shape}-{name}", path, TYPES[name], workdir) for name, path in files.items()}


@pytest.mark.parametrize("shape", SHAPES)
def test_oras_py_pushes_are_found_through_the_referrers_api(
    shape: str,
    registry: RegistryProcess,
    referrers_proxy: ReferrersProxy,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    image = make_image(f"oras/api/{shape}")
    push_image(registry.url, REPO, f"api-{shape}", image)
    pusher = OrasPusher(referrers_proxy.host, image["descriptor"])
    pushed = _push_all(pusher, evidence_files(tmp_path / "ev", image["digest"]), shape, tmp_path)

    listed = {d["digest"]: d for d in referrers_proxy.referrers(REPO, image["digest"])}
    assert set(listed) == set(pushed.values())
    for name, digest in pushed.items():
        assert listed[digest]["artifactType"] == TYPES[name]
        raw = get_manifest(registry.url, REPO, digest).json()
        if shape == "config-media-type":
            assert "artifactType" not in raw and raw["config"]["mediaType"] == TYPES[name]
            assert raw["layers"][0]["mediaType"] == oras.defaults.default_blob_media_type
        else:
            assert raw["artifactType"] == TYPES[name] and raw["config"]["mediaType"] == mt.OCI_EMPTY

    config = write_config(tmp_path / "referee.yaml", [registry.host, referrers_proxy.host])
    code, verdict = verify(capsys, config, f"{referrers_proxy.host}/{REPO}:api-{shape}")
    assert code == 0, verdict["reason"]
    assert {n: succeeded(verdict)[n] for n in RULES} == {n: [pushed[n]] for n in RULES}
    assert verdict["notes"] == []


@pytest.mark.parametrize("shape", SHAPES)
def test_oras_py_pushes_without_referrers_api_need_the_tag_schema(
    shape: str, registry: RegistryProcess, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    image = make_image(f"oras/plain/{shape}")
    push_image(registry.url, REPO, f"plain-{shape}", image)
    pusher = OrasPusher(registry.host, image["descriptor"])
    pushed = _push_all(pusher, evidence_files(tmp_path / "ev", image["digest"]), shape, tmp_path)
    ref = f"{registry.host}/{REPO}:plain-{shape}"
    config = write_config(tmp_path / "referee.yaml", [registry.host])

    # Subject-only pushes: the manifests are in the registry, but nothing lists them.
    for digest in pushed.values():
        assert get_manifest(registry.url, REPO, digest).status == 200
    assert get_manifest(registry.url, REPO, fallback_tag(image["digest"]), accept=OCI_INDEX).status == 404
    code, denied = verify(capsys, config, ref)
    assert code == 1 and denied["allowed"] is False
    assert denied["artifacts"] == []
    for name in RULES:
        assert f"{name}: no matching artifact found" in denied["reason"]
    [note] = denied["notes"]
    assert "no referrers listed" in note and "referrers API" in note
    assert f"no fallback index {fallback_tag(image['digest'])[:19]}" in note
    code, out, _ = run_cli(capsys, "verify", "--config", str(config), ref)
    assert code == 1 and "note: no referrers listed" in out

    # referee attach --referrer writes the tag schema for each; then Referee finds and judges them.
    for name, digest in pushed.items():
        code, out, err = run_cli(
            capsys, "attach", "--config", str(config), "--output", "json", "--referrer", digest, ref
        )
        assert code == 0, err
        result = json.loads(out)
        assert result["discovery"] == "tag-schema" and result["artifactType"] == TYPES[name]
    index = get_manifest(registry.url, REPO, fallback_tag(image["digest"]), accept=OCI_INDEX).json()
    assert [m["digest"] for m in index["manifests"]] == list(pushed.values())
    assert [m["artifactType"] for m in index["manifests"]] == [TYPES[n] for n in pushed]
    assert all(CREATED in m["annotations"] for m in index["manifests"])

    code, verdict = verify(capsys, config, ref)
    assert code == 0, verdict["reason"]
    assert {n: succeeded(verdict)[n] for n in RULES} == {n: [pushed[n]] for n in RULES}
    assert verdict["notes"] == []


def test_referrer_mode_refuses_a_manifest_about_another_image(
    registry: RegistryProcess, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    image, other = make_image("oras/mine"), make_image("oras/other")
    push_image(registry.url, REPO, "mine", image)
    push_image(registry.url, REPO, "other", other)
    files = evidence_files(tmp_path / "ev", other["digest"])
    digest = OrasPusher(registry.host, other["descriptor"]).push_with_config_type(
        "about-other", files["sbom"], mt.SPDX_JSON, tmp_path
    )
    config = write_config(tmp_path / "referee.yaml", [registry.host])
    code, _, err = run_cli(
        capsys, "attach", "--config", str(config), "--referrer", digest, f"{registry.host}/{REPO}:mine"
    )
    assert code == 1 and "SUBJECT_MISMATCH" in err
    assert get_manifest(registry.url, REPO, fallback_tag(image["digest"]), accept=OCI_INDEX).status == 404


def test_oras_py_cannot_push_to_a_token_auth_registry(
    token_registry: RegistryProcess, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """oras-py's token backend keeps the first token it gets — pull-only, for the blob ``HEAD`` — and reuses it for
    the upload, which the registry refuses. ``referee attach`` asks for ``pull,push`` and succeeds on the same
    registry with the same credentials (``test_attach_with_the_credentials_verify_uses``)."""
    reg = token_registry
    assert reg.username is not None and reg.password is not None
    image = make_image("oras/token")
    push_image(reg.url, REPO, "token", image, BearerFlow(reg.username, reg.password))
    pusher = OrasPusher(reg.host, image["descriptor"])
    pusher.client.auth.set_basic_auth(reg.username, reg.password)
    files = evidence_files(tmp_path / "ev", image["digest"])
    with pytest.raises(ValueError, match="UNAUTHORIZED"):
        pusher.push_with_config_type("token-sbom", files["sbom"], mt.SPDX_JSON, tmp_path)
