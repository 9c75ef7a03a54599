"""Why "no matching artifact found": the denial says which of the cases of #20 item 4 it is.

Real registry (Debian's docker-registry, no referrers API: tag-schema fallback) and, for the referrers API, the
spec-following test double in front of it (``tests/support/referrers_proxy.py``). Each case pushes what a pusher
would and reads the verdict ``referee verify`` prints.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from provider import mediatypes as mt
from tests.integration.attach_support import spdx, verify
from tests.support.content import (
    fallback_tag,
    make_artifact_manifest,
    make_image,
    push_artifact,
    push_fallback_index,
    push_image,
)
from tests.support.referrers_proxy import ReferrersProxy
from tests.support.registry import RegistryProcess

REPO = "reasons/app"
COSIGN_TYPES = "application/vnd.dev.cosign.artifact.sig.v1+json, cosign's sha256-<digest>.sig tag"


def _config(path: Path, hosts: list[str], *, required: list[str], **extra: Any) -> Path:
    key = ec.generate_private_key(ec.SECP256R1()).public_key()
    pem = key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    doc: dict[str, Any] = {
        "registries": {"allow": ["127.0.0.1:*"], "hosts": [{"host": h, "plainHttp": True} for h in hosts]},
        "verifiers": [
            {"name": "ci-cosign", "type": "cosign", "keys": [pem]},
            {"name": "sbom", "type": "sbom", "disallowedLicenses": ["Apache-2.0"]},
        ],
        "policy": {"type": "required-verifiers", "required": required},
        "cache": {"verdictTtl": 0},
        **extra,
    }
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def _image_with_sboms(
    registry: RegistryProcess, tag: str, count: int, *, fallback: bool, via: str | None = None
) -> tuple[str, list[str]]:
    """An image and ``count`` SBOMs naming it; pushed ``via`` the referrers-API double when given (it indexes what
    passes through it), with the tag-schema index when ``fallback``."""
    url = via or registry.url
    image = make_image(f"reasons/{tag}")
    push_image(url, REPO, tag, image)
    pushed = []
    for i in range(count):
        manifest, blobs = make_artifact_manifest(
            image["descriptor"], mt.SPDX_JSON, [(mt.SPDX_JSON, spdx(f"{tag}-{i}"), None)]
        )
        push_artifact(url, REPO, manifest, blobs)
        pushed.append(manifest)
    if fallback and pushed:
        push_fallback_index(registry.url, REPO, image["digest"], pushed)
    return image["digest"], [m.decode() for m in pushed]


def test_referrers_of_other_types_only_tag_schema(
    registry: RegistryProcess, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    digest, _ = _image_with_sboms(registry, "sbom-only", 1, fallback=True)
    config = _config(tmp_path / "referee.yaml", [registry.host], required=["ci-cosign"])
    code, verdict = verify(capsys, config, f"{registry.host}/{REPO}:sbom-only")
    assert code == 1 and verdict["allowed"] is False
    note = (
        f"ci-cosign: none of the 1 referrers listed is of a type it verifies ({COSIGN_TYPES}); "
        f"listed: {mt.SPDX_JSON} (1)"
    )
    assert verdict["notes"] == [note]
    assert verdict["reason"] == f"ci-cosign: no matching artifact found [{note}]"
    assert verdict["digest"] == digest


def test_referrers_of_other_types_only_referrers_api(
    registry: RegistryProcess,
    referrers_proxy: ReferrersProxy,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """cosign's one OCI type is sent as a filter, which the registry applies; the listing is empty, so Referee asks
    once more, unfiltered, to say what else is attached."""
    _image_with_sboms(registry, "api-sbom-only", 2, fallback=False, via=referrers_proxy.url)
    config = _config(tmp_path / "referee.yaml", [referrers_proxy.host], required=["ci-cosign"])
    code, verdict = verify(capsys, config, f"{referrers_proxy.host}/{REPO}:api-sbom-only")
    assert code == 1
    assert verdict["notes"] == [
        f"ci-cosign: none of the 2 referrers listed is of a type it verifies ({COSIGN_TYPES}); "
        f"listed: {mt.SPDX_JSON} (2)"
    ]
    assert "ci-cosign: no matching artifact found [ci-cosign: none of the 2 referrers" in verdict["reason"]


def test_nothing_attached_to_the_digest_referrers_api(
    registry: RegistryProcess,
    referrers_proxy: ReferrersProxy,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    digest, _ = _image_with_sboms(registry, "api-bare", 0, fallback=False, via=referrers_proxy.url)
    config = _config(tmp_path / "referee.yaml", [referrers_proxy.host], required=["ci-cosign"])
    code, verdict = verify(capsys, config, f"{referrers_proxy.host}/{REPO}:api-bare")
    assert code == 1
    assert verdict["notes"] == [
        f"no referrers listed for {digest[:19]}…: nothing is attached to this digest (a tag's index and each of "
        "its platform manifests have their own digests)"
    ]


def test_no_referrers_api_and_no_fallback_index(
    registry: RegistryProcess, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """SBOMs pushed with a subject but no tag-schema index: invisible on a registry without the referrers API."""
    digest, _ = _image_with_sboms(registry, "no-index", 1, fallback=False)
    config = _config(tmp_path / "referee.yaml", [registry.host], required=["ci-cosign"])
    code, verdict = verify(capsys, config, f"{registry.host}/{REPO}:no-index")
    assert code == 1
    note = (
        f"no referrers listed: {registry.host} has no referrers API and no fallback index "
        f"{fallback_tag(digest)[:19]}… exists (attach with a tool that writes it)"
    )
    assert verdict["notes"] == [note]
    assert verdict["reason"] == f"ci-cosign: no matching artifact found [{note}]"


def test_a_capped_type_is_named_in_the_denial(
    registry: RegistryProcess, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _image_with_sboms(registry, "capped", 2, fallback=True)
    config = _config(tmp_path / "referee.yaml", [registry.host], required=["sbom"], limits={"maxReferrers": 1})
    code, verdict = verify(capsys, config, f"{registry.host}/{REPO}:capped")
    assert code == 1
    capped = [a for a in verdict["artifacts"] if a.get("error") == "REFERRERS_CAPPED"]
    assert len(capped) == 1
    assert capped[0]["reason"] == f"1 further referrers of type {mt.SPDX_JSON} were not examined (maxReferrers)"
    assert verdict["complete"] is False
    assert f"1 referrers of type {mt.SPDX_JSON} were not examined (limits.maxReferrers 1)" in verdict["notes"]
    assert "were not examined (maxReferrers)" in verdict["reason"]
    assert "(limits.maxReferrers 1)]" in verdict["reason"]


def test_no_note_about_missing_referrers_when_cosign_tags_hold_the_evidence(
    registry: RegistryProcess, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A legacy ``.sig`` tag is evidence found after all: the "no referrers listed" note would only confuse."""
    from tests.support.content import cosign_sign_legacy

    digest, _ = _image_with_sboms(registry, "legacy-only", 0, fallback=False)
    cosign_sign_legacy(registry.url, REPO, digest, ec.generate_private_key(ec.SECP256R1()))
    config = _config(tmp_path / "referee.yaml", [registry.host], required=["ci-cosign"])
    code, verdict = verify(capsys, config, f"{registry.host}/{REPO}:legacy-only")
    assert code == 1  # signed with a key the configuration does not trust
    assert [a["artifactType"] for a in verdict["artifacts"]] == [mt.COSIGN_LEGACY_SIGNATURES]
    assert not any(n.startswith("no referrers listed") for n in verdict["notes"]), verdict["notes"]
