"""Multi-platform images (#20 item 6) against the real registry: today's behaviour and the two opt-ins.

An index ``app:v1`` lists an amd64 and an arm64 manifest. The index is signed (``cosign sign`` of the tag signs
the index digest, without ``--recursive`` nothing else); an SBOM is attached to the amd64 manifest only. A second,
unsigned index ``app:rogue`` lists the same amd64 manifest beside a manifest of the attacker's.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from provider import mediatypes as mt
from provider.config import load_config
from provider.errors import ConfigError
from provider.executor import Engine
from provider.verdict import Verdict
from tests.integration.attach_support import spdx
from tests.support.content import (
    OCI_INDEX,
    cosign_sign_legacy,
    make_artifact_manifest,
    make_image,
    make_index,
    push_artifact,
    push_fallback_index,
    push_image,
    push_manifest,
)
from tests.support.registry import RegistryProcess

REPO = "multiarch/app"


class World:
    def __init__(self, registry: RegistryProcess) -> None:
        self.registry = registry
        self.key = ec.generate_private_key(ec.SECP256R1())
        self.amd64 = make_image("multiarch/amd64", architecture="amd64")
        self.arm64 = make_image("multiarch/arm64", architecture="arm64")
        self.evil = make_image("multiarch/evil", architecture="arm64")
        for image in (self.amd64, self.arm64, self.evil):
            push_image(registry.url, REPO, None, image)
        linux = {"os": "linux"}
        body, self.index = make_index(
            [(self.amd64, {**linux, "architecture": "amd64"}), (self.arm64, {**linux, "architecture": "arm64"})]
        )
        push_manifest(registry.url, REPO, "v1", body, OCI_INDEX)
        rogue, self.rogue = make_index(
            [(self.amd64, {**linux, "architecture": "amd64"}), (self.evil, {**linux, "architecture": "arm64"})]
        )
        push_manifest(registry.url, REPO, "rogue", rogue, OCI_INDEX)
        push_image(registry.url, REPO, "lone", make_image("multiarch/lone"))
        cosign_sign_legacy(registry.url, REPO, self.index, self.key, docker_reference=f"{registry.host}/{REPO}")
        sbom_layer = [(mt.SPDX_JSON, spdx("amd"), None)]
        sbom, blobs = make_artifact_manifest(self.amd64["descriptor"], mt.SPDX_JSON, sbom_layer)
        push_artifact(registry.url, REPO, sbom, blobs)
        push_fallback_index(registry.url, REPO, self.amd64["digest"], [sbom])
        self.sbom = json.loads(sbom)

    def config(self, path: Path, *, required: list[str], multi_arch: dict[str, Any] | None = None) -> Path:
        pem = self.key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        doc: dict[str, Any] = {
            "registries": {"allow": [self.registry.host], "hosts": [{"host": self.registry.host, "plainHttp": True}]},
            "verifiers": [
                {"name": "release", "type": "cosign", "keys": [pem.decode()]},
                {"name": "sbom", "type": "sbom"},
            ],
            "policy": {"type": "required-verifiers", "required": required},
        }
        if multi_arch is not None:
            doc["multiArch"] = multi_arch
        path.write_text(yaml.safe_dump(doc))
        return path

    def ref(self, tag: str | None, digest: str | None) -> str:
        out = f"{self.registry.host}/{REPO}"
        if tag:
            out += f":{tag}"
        if digest:
            out += f"@{digest}"
        return out


@pytest.fixture(scope="module")
def world(registry: RegistryProcess) -> World:
    return World(registry)


def verdicts(config: Path, *keys: str) -> list[Verdict]:
    """Keys verified in order by one engine (shared caches, as in the server)."""

    async def run() -> list[Verdict]:
        engine = Engine(load_config(config))
        try:
            out = []
            for key in keys:
                outcome = await engine.verify_key(key)
                assert outcome.verdict is not None, (key, outcome.error)
                out.append(outcome.verdict)
            return out
        finally:
            await engine.close()

    return asyncio.run(run())


def test_today_evidence_on_the_index_decides_and_a_platform_digest_needs_its_own(world: World, tmp_path: Path) -> None:
    config = world.config(tmp_path / "r.yaml", required=["release"])
    by_tag, platform, platform_with_tag = verdicts(
        config, world.ref("v1", None), world.ref(None, world.amd64["digest"]), world.ref("v1", world.amd64["digest"])
    )
    assert by_tag.allowed and by_tag.digest == world.index and by_tag.media_type == OCI_INDEX
    assert not platform.allowed and not platform_with_tag.allowed
    assert "release: no matching artifact found" in platform.decision.reason


def test_index_covers_the_platforms_it_lists(world: World, tmp_path: Path) -> None:
    config = world.config(tmp_path / "r.yaml", required=["release"], multi_arch={"indexCoversPlatforms": True})
    bare, covered, arm, not_listed, rogue, rogue_evil, again = verdicts(
        config,
        world.ref(None, world.amd64["digest"]),  # no tag: nothing leads to an index
        world.ref("v1", world.amd64["digest"]),
        world.ref("v1", world.arm64["digest"]),
        world.ref("v1", world.evil["digest"]),  # the signed index does not list it
        world.ref("rogue", world.amd64["digest"]),  # an unsigned index listing a good platform
        world.ref("rogue", world.evil["digest"]),
        world.ref(None, world.amd64["digest"]),  # still denied after the tagged key was allowed (own cache entry)
    )
    assert not bare.allowed and not again.allowed
    assert covered.allowed and arm.allowed
    assert covered.digest == world.amd64["digest"]
    assert covered.decision.reason.startswith(f"covered by the index {world.index[:19]}… that v1 names")
    assert covered.decision.details["index"] == world.index
    assert [a.verifier for a in covered.artifacts] == ["release"]
    assert not not_listed.allowed
    assert f"multiArch: the index {world.index[:19]}… that v1 names does not list {world.evil['digest'][:19]}…" in (
        not_listed.notes
    )
    assert not rogue.allowed and not rogue_evil.allowed
    assert f"multiArch: the index {world.rogue[:19]}… that rogue names is not allowed either" in rogue.notes
    lone = verdicts(config, world.ref("lone", world.amd64["digest"]))[0]
    assert not lone.allowed and any("the tag lone names no index" in n for n in lone.notes)


def test_platform_level_sboms_count_for_the_index_only_when_asked(world: World, tmp_path: Path) -> None:
    required = ["release", "sbom"]
    default = verdicts(world.config(tmp_path / "a.yaml", required=required), world.ref("v1", None))[0]
    assert not default.allowed and "sbom: no matching artifact found" in default.decision.reason
    config = world.config(tmp_path / "b.yaml", required=required, multi_arch={"platformArtifactTypes": [mt.SPDX_JSON]})
    allowed = verdicts(config, world.ref("v1", None))[0]
    assert allowed.allowed, allowed.decision.reason
    [sbom] = [a for a in allowed.artifacts if a.verifier == "sbom"]
    assert sbom.subject == world.amd64["digest"] and sbom.succeeded
    assert sbom.to_json()["subject"] == world.amd64["digest"]
    assert all(a.subject is None for a in allowed.artifacts if a.verifier == "release")
    # the platform's SBOM is evidence only for an index that lists it: the unsigned rogue index stays denied
    rogue = verdicts(config, world.ref("rogue", None))[0]
    assert not rogue.allowed and "release: no matching artifact found" in rogue.decision.reason


def test_platform_signature_types_are_refused(world: World, tmp_path: Path) -> None:
    config = world.config(
        tmp_path / "c.yaml",
        required=["release"],
        multi_arch={"platformArtifactTypes": [mt.SPDX_JSON, mt.COSIGN_OCI11_SIGNATURE], "maxPlatforms": 0},
    )
    with pytest.raises(ConfigError) as exc:
        load_config(config)
    assert exc.value.problems == [
        f"multiArch.platformArtifactTypes[1]: {mt.COSIGN_OCI11_SIGNATURE} is a signature type: a signature on a "
        "platform manifest does not cover an index that lists it (sign the index; cosign sign --recursive signs both)",
        "multiArch.maxPlatforms: must be at least 1",
    ]
