"""registries.pullSecrets and registries.credentialProviders: what parses, and every problem with its path."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from provider.config import Config, load_config
from provider.errors import ConfigError
from tests.support.credential_plugin import CONTROL_ENV

V1 = "credentialprovider.kubelet.k8s.io/v1"


def _plugin(bin_dir: Path, name: str = "fake-provider") -> Path:
    bin_dir.mkdir(parents=True, exist_ok=True)
    path = bin_dir / name
    path.write_text("#!/bin/sh\nexit 1\n")
    path.chmod(0o755)
    return path


def _provider(**overrides: Any) -> dict[str, Any]:
    provider: dict[str, Any] = {
        "name": "fake-provider",
        "matchImages": ["*.dkr.ecr.*.amazonaws.com", "registry.example:5000/team"],
        "defaultCacheDuration": "12h",
        "apiVersion": V1,
        "args": ["get-credentials"],
        "env": [{"name": CONTROL_ENV, "value": "/nonexistent"}],
    }
    provider.update(overrides)
    return {k: v for k, v in provider.items() if v is not None}


def _kubelet_config(path: Path, *providers: dict[str, Any], api_version: str = "kubelet.config.k8s.io/v1") -> Path:
    path.write_text(
        yaml.safe_dump({"apiVersion": api_version, "kind": "CredentialProviderConfig", "providers": list(providers)})
    )
    return path


def _load(tmp_path: Path, registries: dict[str, Any]) -> Config:
    path = tmp_path / "referee.yaml"
    path.write_text(yaml.safe_dump({"registries": registries}))
    return load_config(path)


def _problems(tmp_path: Path, registries: dict[str, Any]) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        _load(tmp_path, registries)
    return caught.value.problems


def test_credential_provider_config_parses(tmp_path: Path) -> None:
    _plugin(tmp_path / "bin")
    _kubelet_config(tmp_path / "providers.yaml", _provider())
    config = _load(
        tmp_path, {"credentialProviders": {"config": "providers.yaml", "binDir": "bin", "execTimeout": "3s"}}
    )
    section = config.registries.credential_providers
    assert section is not None
    assert section.exec_timeout == 3.0
    assert section.max_output_bytes == 1024 * 1024
    (spec,) = section.providers
    assert spec.name == "fake-provider"
    assert spec.executable == str(tmp_path / "bin" / "fake-provider")
    assert [p.text for p in spec.match_images] == ["*.dkr.ecr.*.amazonaws.com", "registry.example:5000/team"]
    assert spec.default_cache_duration == 43200.0
    assert spec.api_version == V1
    assert spec.args == ("get-credentials",)
    assert spec.env == ((CONTROL_ENV, "/nonexistent"),)
    assert spec.token_attributes is None
    assert config.registries.credential_entries == ()


def test_v1beta1_and_a_directory_of_configs(tmp_path: Path) -> None:
    _plugin(tmp_path / "bin", "a")
    _plugin(tmp_path / "bin", "b")
    (tmp_path / "conf.d").mkdir()
    _kubelet_config(
        tmp_path / "conf.d" / "20-b.yaml",
        _provider(name="b", apiVersion="credentialprovider.kubelet.k8s.io/v1beta1"),
        api_version="kubelet.config.k8s.io/v1beta1",
    )
    (tmp_path / "conf.d" / "10-a.json").write_text(
        json.dumps(
            {
                "apiVersion": "kubelet.config.k8s.io/v1",
                "kind": "CredentialProviderConfig",
                "providers": [_provider(name="a")],
            }
        )
    )
    (tmp_path / "conf.d" / "README.txt").write_text("ignored")
    config = _load(tmp_path, {"credentialProviders": {"config": "conf.d", "binDir": "bin"}})
    assert config.registries.credential_providers is not None
    assert [p.name for p in config.registries.credential_providers.providers] == ["a", "b"]


@pytest.mark.parametrize(
    ("provider", "expected"),
    [
        (_provider(name=None), "providers[0].name: required"),
        (_provider(name="../x"), "providers[0].name: must be a file name"),
        (_provider(name="missing"), "providers[0].name: no executable missing in"),
        (_provider(matchImages=[]), "providers[0].matchImages: at least one pattern is required"),
        (_provider(matchImages=["ok.io", "bad.io/team/*"]), "providers[0].matchImages[1]: invalid pattern"),
        (_provider(defaultCacheDuration=None), "providers[0].defaultCacheDuration: required"),
        (_provider(defaultCacheDuration="12 hours"), "providers[0].defaultCacheDuration: invalid duration"),
        (_provider(apiVersion="credentialprovider.kubelet.k8s.io/v2"), "providers[0]: unsupported apiVersion"),
        (_provider(apiVersion=None), "providers[0].apiVersion: required"),
        (_provider(matchimages=["x.io"]), "providers[0].matchimages: unknown key"),
        (
            _provider(tokenAttributes={"serviceAccountTokenAudience": "a", "requireServiceAccount": True}),
            "providers[0].tokenAttributes.cacheType: required",
        ),
        (
            _provider(
                apiVersion="credentialprovider.kubelet.k8s.io/v1beta1",
                tokenAttributes={
                    "serviceAccountTokenAudience": "a",
                    "requireServiceAccount": False,
                    "cacheType": "Token",
                },
            ),
            "providers[0].tokenAttributes: tokenAttributes needs apiVersion",
        ),
        (
            _provider(
                tokenAttributes={
                    "serviceAccountTokenAudience": "a",
                    "requireServiceAccount": False,
                    "cacheType": "Token",
                    "requiredServiceAccountAnnotationKeys": ["x.io/y"],
                }
            ),
            "requireServiceAccount cannot be false",
        ),
        (
            _provider(
                tokenAttributes={
                    "serviceAccountTokenAudience": "aud",
                    "requireServiceAccount": True,
                    "cacheType": "Token",
                }
            ),
            "requires a service account token for audience 'aud'",
        ),
    ],
)
def test_provider_problems_name_file_and_field(tmp_path: Path, provider: dict[str, Any], expected: str) -> None:
    _plugin(tmp_path / "bin")
    config_file = _kubelet_config(tmp_path / "providers.yaml", provider)
    problems = _problems(tmp_path, {"credentialProviders": {"config": "providers.yaml", "binDir": "bin"}})
    assert any(
        p.startswith(f"registries.credentialProviders.config: {config_file}: ") and expected in p for p in problems
    ), problems


def test_section_problems(tmp_path: Path) -> None:
    problems = _problems(tmp_path, {"credentialProviders": {"binDir": "nowhere", "execTimeout": "soon", "extra": 1}})
    assert "registries.credentialProviders.config: required" in problems
    assert any(p.startswith("registries.credentialProviders.binDir: nowhere does not exist") for p in problems)
    assert any(p.startswith("registries.credentialProviders.execTimeout: invalid duration") for p in problems)
    assert "registries.credentialProviders.extra: unknown key" in problems


def test_not_a_credential_provider_config(tmp_path: Path) -> None:
    _plugin(tmp_path / "bin")
    (tmp_path / "p.yaml").write_text("apiVersion: v1\nkind: ConfigMap\n")
    problems = _problems(tmp_path, {"credentialProviders": {"config": "p.yaml", "binDir": "bin"}})
    assert any("unsupported apiVersion 'v1'" in p for p in problems)
    assert any("kind: kind must be CredentialProviderConfig" in p for p in problems)


def test_service_account_token_mode(tmp_path: Path) -> None:
    _plugin(tmp_path / "bin")
    (tmp_path / "token").write_text("eyJ.token\n")
    attributes = {
        "serviceAccountTokenAudience": "sts.amazonaws.com",
        "requireServiceAccount": True,
        "cacheType": "ServiceAccount",
        "requiredServiceAccountAnnotationKeys": ["eks.amazonaws.com/role-arn"],
        "optionalServiceAccountAnnotationKeys": ["eks.amazonaws.com/ecr-role-arn", "absent.example/key"],
    }
    _kubelet_config(tmp_path / "providers.yaml", _provider(tokenAttributes=attributes))
    section = {
        "config": "providers.yaml",
        "binDir": "bin",
        "serviceAccountTokens": [{"audience": "sts.amazonaws.com", "path": "token"}],
        "serviceAccountAnnotations": {
            "eks.amazonaws.com/role-arn": "arn:aws:iam::111122223333:role/referee",
            "eks.amazonaws.com/ecr-role-arn": "arn:aws:iam::111122223333:role/ecr",
            "unrelated.example/annotation": "not passed",
        },
    }
    config = _load(tmp_path, {"credentialProviders": section})
    assert config.registries.credential_providers is not None
    (spec,) = config.registries.credential_providers.providers
    assert spec.token_attributes is not None and spec.token_attributes.cache_type == "ServiceAccount"
    assert spec.token_file == str(tmp_path / "token")
    assert dict(spec.service_account_annotations) == {
        "eks.amazonaws.com/role-arn": "arn:aws:iam::111122223333:role/referee",
        "eks.amazonaws.com/ecr-role-arn": "arn:aws:iam::111122223333:role/ecr",
    }
    del section["serviceAccountAnnotations"]["eks.amazonaws.com/role-arn"]  # type: ignore[attr-defined]
    problems = _problems(tmp_path, {"credentialProviders": section})
    assert any("requires the service account annotations eks.amazonaws.com/role-arn" in p for p in problems)


def test_credential_provider_config_is_part_of_the_generation(tmp_path: Path) -> None:
    _plugin(tmp_path / "bin")
    _kubelet_config(tmp_path / "providers.yaml", _provider())
    registries = {"credentialProviders": {"config": "providers.yaml", "binDir": "bin"}}
    first = _load(tmp_path, registries).generation
    _kubelet_config(tmp_path / "providers.yaml", _provider(defaultCacheDuration="1h"))
    assert _load(tmp_path, registries).generation != first


# -- pull secrets ---------------------------------------------------------------------------------------------


def _secret(path: Path, auths: dict[str, str]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    doc = {"auths": {k: {"auth": base64.b64encode(v.encode()).decode()} for k, v in auths.items()}}
    path.write_text(json.dumps(doc))
    return path


def test_pull_secrets_files_and_mount_directories_keep_order_and_paths(tmp_path: Path) -> None:
    _secret(
        tmp_path / "a" / ".dockerconfigjson", {"registry.example/team": "a:pa", "https://index.docker.io/v1/": "h:ph"}
    )
    _secret(tmp_path / "b.json", {"registry.example": "b:pb"})
    _secret(tmp_path / "docker.json", {"registry.example": "d:pd"})
    config = _load(tmp_path, {"pullSecrets": ["a", "b.json"], "dockerConfig": "docker.json"})
    entries = config.registries.credential_entries
    assert [(e.pattern.text, e.credentials.username, e.source) for e in entries] == [
        ("registry.example/team", "a", "registries.pullSecrets[0]"),
        ("https://index.docker.io/v1/", "h", "registries.pullSecrets[0]"),
        ("registry.example", "b", "registries.pullSecrets[1]"),
        ("registry.example", "d", "registries.dockerConfig"),
    ]
    assert entries[0].pattern.path == ("team",)
    assert entries[1].pattern.labels == ("docker", "io") and entries[1].pattern.path == ()


def test_pull_secret_problems(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    (tmp_path / "bad.json").write_text("{nope")
    _secret(tmp_path / "badkey.json", {"reg.io/team/*": "u:p"})
    problems = _problems(tmp_path, {"pullSecrets": ["missing.json", "empty", "bad.json", "badkey.json"]})
    assert len(problems) == 4, problems
    assert problems[0].startswith("registries.pullSecrets[0]: cannot read missing.json")
    assert problems[1].startswith("registries.pullSecrets[1]: empty is a directory without .dockerconfigjson")
    assert problems[2].startswith("registries.pullSecrets[2]: bad.json is not JSON")
    assert problems[3].startswith("registries.pullSecrets[3]: badkey.json: auths key 'reg.io/team/*': glob in path")


def test_pull_secrets_are_part_of_the_generation(tmp_path: Path) -> None:
    _secret(tmp_path / "s.json", {"registry.example": "u:one"})
    first = _load(tmp_path, {"pullSecrets": ["s.json"]}).generation
    _secret(tmp_path / "s.json", {"registry.example": "u:two"})
    assert _load(tmp_path, {"pullSecrets": ["s.json"]}).generation != first


def test_secrets_from_pull_secrets_never_show(tmp_path: Path) -> None:
    _secret(tmp_path / "s.json", {"registry.example": "user:pull-secret-password-value"})
    config = _load(tmp_path, {"pullSecrets": ["s.json"]})
    assert "pull-secret-password-value" not in repr(config) + str(config)
