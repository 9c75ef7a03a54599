"""``referee trusted-root fetch`` (#20 item 5) against a TUF repository built here and served on 127.0.0.1.

The repository (``tests/support/tuf_repo.py``: python-tuf's Metadata API, Ed25519 keys) publishes real trusted
roots from the vectors; the command runs sigstore-python's TUF client against it, as the init container and the
sidecar of docs/sigstore.md do. Nothing here reaches the internet.
"""

from __future__ import annotations

import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import helm_python as helm
import kubernetes_validate  # type: ignore[import-untyped]
import pytest
import trustme
import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from provider.cli import _parser
from provider.config import load_config
from tests.integration.attach_support import run_cli
from tests.support.chart import CHART, materialize, merged, rebase, render_chart
from tests.support.paths import VECTORS
from tests.support.tuf_repo import TufRepository

REPO = Path(__file__).resolve().parents[2]
BUNDLES = VECTORS / "sigstore-bundle"
PUBLIC_GOOD = (BUNDLES / "trusted_root.public-good.json").read_bytes()
CUSTOM = (BUNDLES / "conformance" / "intoto-with-custom-trust-root" / "trusted_root.json").read_bytes()
TARGET = "trusted_root.json"


@pytest.fixture(autouse=True)
def _tuf_dirs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """sigstore-python keeps TUF metadata under the user's data and cache directories: a fresh pair per test."""
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg-data"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg-cache"))


@pytest.fixture
def repository(tmp_path: Path) -> Iterator[TufRepository]:
    with TufRepository(tmp_path / "tuf-repository") as repo:
        repo.publish(TARGET, PUBLIC_GOOD)
        yield repo


def fetch(capsys: pytest.CaptureFixture[str], repo: TufRepository, output: Path, *extra: str) -> tuple[int, str, str]:
    return run_cli(
        capsys, "trusted-root", "fetch", "--output", str(output), "--tuf-url", repo.url, "--root", str(repo.root_path),
        *extra,
    )  # fmt: skip


def _config(path: Path, trusted_root: Path) -> Path:
    identity = {"identity": "https://github.com/o/r/.github/workflows/w.yml@refs/heads/main", "issuer": "https://x"}
    doc = {
        "registries": {"allow": ["*"]},
        "verifiers": [{"name": "k", "type": "cosign", "trustedRoot": str(trusted_root), "identities": [identity]}],
        "policy": {"type": "required-verifiers", "required": ["k"]},
    }
    path.write_text(yaml.safe_dump(doc))
    return path


def test_fetch_then_refresh_when_the_repository_publishes_a_new_root(
    repository: TufRepository, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    output = tmp_path / "trust" / TARGET
    code, out, err = fetch(capsys, repository, output)
    assert code == 0, err
    assert output.read_bytes() == PUBLIC_GOOD and "updated" in out
    config = _config(tmp_path / "referee.yaml", output)
    first = load_config(config)
    assert first.verifiers[0].params.policy.trust.fulcio

    code, out, _ = fetch(capsys, repository, output)
    assert code == 0 and "unchanged" in out

    repository.publish(TARGET, CUSTOM)  # the instance rotated: new targets, snapshot and timestamp metadata
    code, out, _ = fetch(capsys, repository, output)
    assert code == 0 and "updated" in out
    assert output.read_bytes() == CUSTOM
    assert load_config(config).generation != first.generation  # what makes a running Referee reload it


def test_a_target_that_does_not_match_the_signed_metadata_is_refused_and_the_last_file_kept(
    repository: TufRepository, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    output = tmp_path / TARGET
    assert fetch(capsys, repository, output)[0] == 0
    repository.publish(TARGET, CUSTOM)
    repository.tamper(TARGET, CUSTOM + b" ")  # bytes the signed targets metadata does not describe
    code, _, err = fetch(capsys, repository, output)
    assert code == 1 and "Failed to download trusted key bundle" in err
    assert output.read_bytes() == PUBLIC_GOOD
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".trusted_root.")) == []


def test_an_unusable_trusted_root_or_an_unknown_repository_root_fails(
    repository: TufRepository, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    output = tmp_path / TARGET
    repository.publish(TARGET, b"[]")
    code, _, err = fetch(capsys, repository, output)
    assert code == 1 and "trusted_root.json is not usable: not a JSON object" in err
    assert not output.exists()
    with TufRepository(tmp_path / "other") as other:  # root metadata of another repository: nothing verifies
        other.publish(TARGET, PUBLIC_GOOD)
        code, _, err = run_cli(
            capsys, "trusted-root", "fetch", "--output", str(output), "--tuf-url", other.url,
            "--root", str(repository.root_path),
        )  # fmt: skip
    assert code == 1 and "Failed to refresh TUF metadata" in err and not output.exists()
    code, _, err = run_cli(capsys, "trusted-root", "fetch", "--output", str(output), "--every", "5s")
    assert code == 2 and "--every: '5s' is not a duration of at least 1m" in err


def _block(path: Path, first_line: str) -> str:
    text = path.read_text()
    for block in text.split("```yaml\n")[1:]:
        body = textwrap.dedent(block.split("```", 1)[0])
        if body.startswith(first_line):
            return body
    raise AssertionError(f"no yaml block {first_line!r} in {path}")


def test_the_documented_init_container_and_sidecar_run_and_render(
    repository: TufRepository, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    guide: dict[str, Any] = yaml.safe_load(_block(REPO / "docs" / "deploy.md", "# referee-values.yaml"))
    refresh_block = _block(REPO / "docs" / "sigstore.md", "# values-trusted-root-refresh.yaml")
    refresh: dict[str, Any] = yaml.safe_load(refresh_block)
    digest = "sha256:" + "0" * 64
    guide["image"]["digest"] = digest
    key = ec.generate_private_key(ec.SECP256R1()).public_key()
    guide["trust"][0]["files"]["cosign.pub"] = key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode()
    for container in (*refresh["extraInitContainers"], *refresh["extraContainers"]):
        assert container["image"].endswith("@sha256:<digest of the image you pushed>")
        container["image"] = f"{guide['image']['repository']}@{digest}"
    values = merged(guide, refresh)
    with helm.Chart.load(CHART) as chart:
        rendered = render_chart(chart, values, release="referee", namespace="gatekeeper-system")
    for doc in rendered.docs:
        try:
            kubernetes_validate.validate(doc, "1.30.0", strict=True)
        except kubernetes_validate.SchemaNotFoundError:
            assert doc["kind"] in ("Provider",)
    pod = rendered.pod()
    [init] = pod["initContainers"]
    referee, sidecar = pod["containers"]
    assert referee["name"] == "referee" and sidecar["name"] == "trusted-root-refresh"
    assert sidecar["image"] == init["image"] == f"{guide['image']['repository']}@{digest}"
    assert sidecar["volumeMounts"] == init["volumeMounts"]
    assert {"name": "sigstore-trust", "mountPath": "/var/run/referee/sigstore", "readOnly": True} in referee[
        "volumeMounts"
    ]
    parsed = _parser().parse_args(sidecar["args"])
    assert parsed.every == "24h" and parsed.output == "/var/run/referee/sigstore/trusted_root.json"

    # the pod's filesystem, with the init container's command run into its emptyDir (against the local repository)
    gatekeeper_ca = trustme.CA(key_type=trustme.KeyType.RSA).cert_pem.bytes()
    cluster = {
        ("Secret", "gatekeeper-webhook-server-cert"): {"ca.crt": gatekeeper_ca},
        ("Secret", "ghcr-pull"): {"password": b"token"},
    }
    mounts = materialize(rendered, tmp_path / "pod", cluster)
    init_args = [rebase(a, mounts) for a in init["args"]]
    code, _, err = run_cli(capsys, *init_args, "--tuf-url", repository.url, "--root", str(repository.root_path))
    assert code == 0, err
    written = mounts["/var/run/referee/sigstore"] / TARGET
    assert written.read_bytes() == PUBLIC_GOOD
    checked = tmp_path / "referee.yaml"
    checked.write_text(yaml.safe_dump(rebase(rendered.config(), mounts)))
    config = load_config(checked)
    assert config.verifiers[0].params.policy.trust.fulcio
