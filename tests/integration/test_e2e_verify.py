"""End to end on the real registry: POST /verify over mTLS, `referee verify`, `--layout`, and /mutate."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from provider.cli import main
from tests.integration.conftest import SignedSet, cosign_config
from tests.support.content import get_blob, get_manifest
from tests.support.referee import Pki, items_by_key, running_referee, server_section, write_config, write_layout


@pytest.fixture
def config_file(tmp_path: Path, signed_set: SignedSet, pki: Pki) -> Path:
    return write_config(tmp_path / "referee.yaml", cosign_config(signed_set, server_section(pki)))


async def test_verify_endpoint_gives_one_verdict_per_key(config_file: Path, pki: Pki, signed_set: SignedSet) -> None:
    s = signed_set
    keys = [
        s.ref("signed"),
        s.ref("unsigned"),
        s.ref("wrongkey"),
        s.ref("tampered"),
        s.ref("copied"),
        s.pinned("signed"),
        "Not A Reference",
        "ghcr.io/elsewhere/app:1",
        s.ref("signed"),
    ]
    async with running_referee(config_file, pki) as referee:
        response = await referee.verify(keys)
    body = response["response"]
    assert response["kind"] == "ProviderResponse"
    assert body["idempotent"] is True
    assert "systemError" not in body
    assert [item["key"] for item in body["items"]] == keys
    items = items_by_key(response)

    signed = items[s.ref("signed")]["value"]
    assert signed["allowed"] is True and signed["succeeded"] is True
    assert signed["schemaVersion"] == "referee.verdict/v1"
    assert signed["digest"] == s.digest("signed")
    assert signed["subject"] == s.pinned("signed")
    [artifact] = signed["artifacts"]
    assert artifact["verifier"] == "cosign-ci" and artifact["succeeded"] is True
    assert artifact["details"]["signedDigest"] == s.digest("signed")
    assert items[s.pinned("signed")]["value"]["allowed"] is True

    unsigned = items[s.ref("unsigned")]["value"]
    assert unsigned["allowed"] is False
    assert unsigned["artifacts"] == []
    assert "cosign-ci: no matching artifact found" in unsigned["reason"]

    wrong = items[s.ref("wrongkey")]["value"]
    assert wrong["allowed"] is False
    assert "does not verify with any of 1 configured keys" in wrong["reason"]

    tampered = items[s.ref("tampered")]["value"]
    assert tampered["allowed"] is False
    assert "does not verify" in tampered["reason"]

    copied = items[s.ref("copied")]["value"]
    assert copied["allowed"] is False
    assert f"payload signs {s.digest('signed')}, not {s.digest('copied')}" in copied["reason"]

    assert items["Not A Reference"]["error"].startswith("REFERENCE_INVALID: ")
    assert "value" not in items["Not A Reference"]
    assert items["ghcr.io/elsewhere/app:1"]["error"].startswith("REGISTRY_NOT_ALLOWED: ")


def test_cli_verify_gives_the_same_verdicts(
    config_file: Path, signed_set: SignedSet, capsys: pytest.CaptureFixture[str]
) -> None:
    s = signed_set
    assert main(["verify", "--config", str(config_file), s.ref("signed")]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"ALLOWED {s.ref('signed')}")

    code = main(["verify", "--config", str(config_file), "--output", "json", s.ref("signed"), s.ref("wrongkey")])
    assert code == 1
    doc = json.loads(capsys.readouterr().out)
    assert [d["value"]["allowed"] for d in doc] == [True, False]
    assert "does not verify" in doc[1]["value"]["reason"]

    assert main(["verify", "--config", str(config_file), s.ref("tampered")]) == 1
    assert "DENIED" in capsys.readouterr().out
    assert main(["verify", "--config", str(config_file), "127.0.0.1:5000/UPPER/case"]) == 1
    assert "REFERENCE_INVALID" in capsys.readouterr().out


def test_cli_usage_and_config_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["verify"])
    assert exc.value.code == 2
    bad = tmp_path / "bad.yaml"
    bad.write_text("verifiers:\n  - name: x\n    type: cosign\n    keys: ['-----BEGIN PUBLIC KEY-----\\nAA\\n']\n")
    assert main(["verify", "--config", str(bad), "nginx"]) == 2
    assert "verifiers[0].keys[0]: not a PEM public key" in capsys.readouterr().err


def _export_layout(signed_set: SignedSet, tag: str, directory: Path, *, with_signature: bool = True) -> Path:
    """Copy one image and (optionally) its cosign .sig manifest from the registry into an OCI layout."""
    s = signed_set
    image = s.images[tag]
    manifests = [(image["manifest"], image["media_type"], tag)]
    blobs = [image["config"], *image["layers"]]
    if with_signature:
        sig_tag = image["digest"].replace(":", "-") + ".sig"
        sig = get_manifest(s.registry.url, s.repo, sig_tag, accept="application/vnd.oci.image.manifest.v1+json")
        assert sig.status == 200
        manifests.append((sig.body, "application/vnd.oci.image.manifest.v1+json", sig_tag))
        doc = json.loads(sig.body)
        for desc in [doc["config"], *doc["layers"]]:
            blob = get_blob(s.registry.url, s.repo, desc["digest"])
            assert hashlib.sha256(blob.body).hexdigest() == desc["digest"].split(":")[1]
            blobs.append(blob.body)
    return write_layout(directory, manifests, blobs)


def test_layout_gives_the_same_verdicts(
    config_file: Path, signed_set: SignedSet, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    s = signed_set
    for tag, expected_code, expected in (
        ("signed", 0, "ALLOWED"),
        ("wrongkey", 1, "does not verify"),
        ("tampered", 1, "does not verify"),
        ("copied", 1, "payload signs"),
    ):
        layout = _export_layout(s, tag, tmp_path / tag)
        code = main(["verify", "--config", str(config_file), "--layout", str(layout), s.ref(tag)])
        out = capsys.readouterr().out
        assert code == expected_code, out
        assert expected in out
    unsigned = _export_layout(s, "signed", tmp_path / "unsigned-copy", with_signature=False)
    assert main(["verify", "--config", str(config_file), "--layout", str(unsigned), s.ref("signed")]) == 1
    assert "no matching artifact found" in capsys.readouterr().out


async def test_mutate_pins_tags_idempotently(tmp_path: Path, signed_set: SignedSet, pki: Pki) -> None:
    s = signed_set
    config = write_config(tmp_path / "c.yaml", cosign_config(s, server_section(pki)))
    short = f"{s.registry.host}/{s.repo}:unsigned"
    async with running_referee(config, pki) as referee:
        first = await referee.mutate([short, "bad ref", "docker.io/library/nginx:1"])
        body = first["response"]
        assert body["idempotent"] is True and "systemError" not in body
        items = items_by_key(first)
        pinned = items[short]["value"]
        assert pinned == f"{s.registry.host}/{s.repo}@{s.digest('unsigned')}"
        assert items["bad ref"]["error"].startswith("REFERENCE_INVALID")
        assert items["docker.io/library/nginx:1"]["error"].startswith("REGISTRY_NOT_ALLOWED")
        again = items_by_key(await referee.mutate([pinned]))
        assert again[pinned]["value"] == pinned

    keep = write_config(tmp_path / "keep.yaml", cosign_config(s, server_section(pki, mutateKeepTag=True)))
    async with running_referee(keep, pki) as referee:
        kept = items_by_key(await referee.mutate([short]))[short]["value"]
        assert kept == f"{short}@{s.digest('unsigned')}"
        assert items_by_key(await referee.mutate([kept]))[kept]["value"] == kept
