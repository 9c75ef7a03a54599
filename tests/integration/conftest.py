"""Shared integration fixtures: PKI, cosign keys, and a set of signed/unsigned images in the real registry."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from tests.support.content import cosign_payload, cosign_sign_legacy, make_image, push_image
from tests.support.referee import Pki
from tests.support.registry import RegistryProcess


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return Pki.create(tmp_path_factory.mktemp("pki"))


def public_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


@dataclass
class SignedSet:
    """Images in ``repo`` of the plain registry: one per verdict case."""

    registry: RegistryProcess
    repo: str
    key: ec.EllipticCurvePrivateKey
    other_key: ec.EllipticCurvePrivateKey
    key_file: Path
    other_key_file: Path
    images: dict[str, dict[str, Any]]

    def ref(self, tag: str, host: str | None = None) -> str:
        return f"{host or self.registry.host}/{self.repo}:{tag}"

    def pinned(self, tag: str, host: str | None = None) -> str:
        return f"{host or self.registry.host}/{self.repo}@{self.images[tag]['digest']}"

    def digest(self, tag: str) -> str:
        return str(self.images[tag]["digest"])


def build_signed_set(registry: RegistryProcess, repo: str, directory: Path) -> SignedSet:
    key = ec.generate_private_key(ec.SECP256R1())
    other = ec.generate_private_key(ec.SECP384R1())
    key_file, other_file = directory / "cosign.pub", directory / "other.pub"
    key_file.write_bytes(public_pem(key))
    other_file.write_bytes(public_pem(other))
    images = {tag: make_image(f"{repo}/{tag}") for tag in ("signed", "unsigned", "wrongkey", "tampered", "copied")}
    for tag, image in images.items():
        push_image(registry.url, repo, tag, image)
    cosign_sign_legacy(registry.url, repo, images["signed"]["digest"], key)
    cosign_sign_legacy(registry.url, repo, images["wrongkey"]["digest"], other)
    genuine = cosign_payload(f"{registry.host}/{repo}", images["tampered"]["digest"])
    tampered = genuine.replace(b'"optional":null', b'"optional":{"x":1}')
    assert tampered != genuine
    cosign_sign_legacy(registry.url, repo, images["tampered"]["digest"], key, payload_override=tampered)
    # A genuine signature over the "signed" image's digest, copied onto the "copied" image.
    cosign_sign_legacy(
        registry.url, repo, images["copied"]["digest"], key, digest_in_payload=images["signed"]["digest"]
    )
    return SignedSet(registry, repo, key, other, key_file, other_file, images)


@pytest.fixture(scope="session")
def signed_set(registry: RegistryProcess, tmp_path_factory: pytest.TempPathFactory) -> SignedSet:
    return build_signed_set(registry, "e2e/app", tmp_path_factory.mktemp("keys"))


def cosign_config(signed: SignedSet, server: dict[str, Any], **extra: Any) -> dict[str, Any]:
    config: dict[str, Any] = {
        "registries": {
            "allow": ["127.0.0.1:*"],
            "hosts": [{"host": signed.registry.host, "plainHttp": True}],
        },
        "verifiers": [{"name": "cosign-ci", "type": "cosign", "keys": [str(signed.key_file)]}],
        "policy": {"type": "required-verifiers", "required": ["cosign-ci"]},
        "server": server,
    }
    config.update(extra)
    return config


@pytest.fixture
def clean_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("DOCKER_CONFIG", raising=False)
    return tmp_path
