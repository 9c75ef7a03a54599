"""Seed 003's CI flow as docs/cookbook.md shows it: build → sign → attach SBOM and scan (and sign them) →
``referee verify`` → push the release tag, on Debian's docker-registry (no referrers API). Signing uses cosign's
legacy tag format made with the test key (no cosign binary installs here); attaching and verifying run the real
``referee`` CLI. A build whose scan has a CRITICAL finding stops at ``referee verify`` and is never tagged."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography.hazmat.primitives.asymmetric import ec

from provider import mediatypes as mt
from tests.integration.attach_support import attach, run_cli, sarif, spdx
from tests.integration.conftest import public_pem
from tests.support.content import cosign_sign_legacy, get_manifest, make_image, push_image, push_manifest
from tests.support.registry import RegistryProcess

REPO = "ci/app"


def _config(tmp_path: Path, registry: RegistryProcess, key_file: Path) -> Path:
    """The referee.yaml of the cookbook's CI example, pointed at the test registry."""
    doc: dict[str, Any] = {
        "registries": {"allow": ["127.0.0.1:*"], "hosts": [{"host": registry.host, "plainHttp": True}]},
        "verifiers": [
            {"name": "cosign-ci", "type": "cosign", "keys": [str(key_file)]},
            {"name": "sbom", "type": "sbom"},
            {
                "name": "scan",
                "type": "vulnerability-report",
                "artifactTypes": [mt.SARIF_JSON],
                "maxSeverity": "HIGH",
                "maximumAge": "168h",
            },
        ],
        "limits": {"nestedArtifactTypes": [mt.SPDX_JSON, mt.SARIF_JSON]},
        "policy": {
            "type": "rules",
            "rules": [
                {"name": "signed-by-ci", "verifiers": ["cosign-ci"]},
                {"name": "sbom-signed", "verifiers": ["sbom"], "nested": {"verifiers": ["cosign-ci"]}},
                {"name": "scan-signed", "verifiers": ["scan"], "nested": {"verifiers": ["cosign-ci"]}},
            ],
        },
    }
    path = tmp_path / "referee.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def _pipeline(
    capsys: pytest.CaptureFixture[str],
    registry: RegistryProcess,
    key: ec.EllipticCurvePrivateKey,
    config: Path,
    work: Path,
    build: str,
    findings: list[tuple[str, str]],
) -> tuple[int, str, dict[str, Any]]:
    # 1. build: push the image by a build tag (any builder; CI keeps the digest it printed).
    image = make_image(f"ci/{build}")
    push_image(registry.url, REPO, build, image)
    pinned = f"{registry.host}/{REPO}@{image['digest']}"
    # 2. sign the digest.
    cosign_sign_legacy(registry.url, REPO, image["digest"], key)
    # 3. attach the SBOM and the scan with referee attach, and sign each attached artifact.
    work.mkdir()
    (work / "sbom.spdx.json").write_bytes(spdx(build))
    (work / "scan.sarif").write_bytes(sarif(findings))
    attached = {}
    for name, artifact_type, path in (
        ("sbom", mt.SPDX_JSON, work / "sbom.spdx.json"),
        ("scan", mt.SARIF_JSON, work / "scan.sarif"),
    ):
        result = attach(capsys, "--config", str(config), "--artifact-type", artifact_type, pinned, str(path))
        cosign_sign_legacy(registry.url, REPO, result["digest"], key)
        attached[name] = result
    # 4. verify as admission will.
    code, out, _ = run_cli(capsys, "verify", "--config", str(config), pinned)
    # 5. push the release tag, only after an allowed verdict.
    if code == 0:
        push_manifest(registry.url, REPO, f"release-{build}", image["manifest"], image["media_type"])
    return code, out, {"image": image, **attached}


def test_build_sign_attach_verify_push(
    registry: RegistryProcess, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    key_file = tmp_path / "ci.pub"
    key_file.write_bytes(public_pem(key))
    config = _config(tmp_path, registry, key_file)

    code, out, good = _pipeline(capsys, registry, key, config, tmp_path / "good", "b1", [("CVE-2024-1000", "MEDIUM")])
    assert code == 0, out
    assert out.startswith("ALLOWED ")
    assert "satisfied rules: signed-by-ci" in out and "sbom-signed" in out and "scan-signed" in out
    released = get_manifest(registry.url, REPO, "release-b1")
    assert released.status == 200 and released.header("Docker-Content-Digest") == good["image"]["digest"]
    assert good["sbom"]["discovery"] == "tag-schema" and good["scan"]["index"]["entries"] == 2

    code, out, _ = _pipeline(capsys, registry, key, config, tmp_path / "bad", "b2", [("CVE-2024-9999", "CRITICAL")])
    assert code == 1
    assert out.startswith("DENIED ")
    assert "CVE-2024-9999 (CRITICAL, openssl) exceeds the highest allowed severity HIGH" in out
    assert get_manifest(registry.url, REPO, "release-b2").status == 404
