"""Configuration: frozen objects, camelCase keys, every problem with its path, generation, docker config, CLI."""

from __future__ import annotations

import base64
import dataclasses
import json
import os
import shutil
import textwrap
from pathlib import Path

import pytest

from provider.cli import main
from provider.config import (
    Config,
    Credentials,
    RegistriesConfig,
    load_config,
    load_config_bytes,
    matches_any,
    normalise_registry_key,
)
from provider.confignode import Secret
from provider.errors import ConfigError
from tests.support.paths import VECTORS as SHARED_VECTORS

KEYS = SHARED_VECTORS / "cosign" / "keys"

FULL = """\
apiVersion: referee.dev/v1alpha1
registries:
  allow: ["ghcr.io", "localhost:5000", "docker.io/library/*"]
  maxConcurrency: 8
  requestTimeout: 2s
  maxAttempts: 2
  referrersApiMemory: 10m
  cosignLegacyTags: false
  hosts:
    - host: localhost:5000
      plainHttp: true
      referrersApi: never
      maxConcurrency: 4
    - host: ghcr.io
      username: robot
      password: hunter2-inline-secret
verifiers:
  - name: sig
    type: cosign
    keys: [cosign.pub]
    scopes: ["ghcr.io/org/*"]
policy:
  type: required-verifiers
  required: [sig]
server:
  port: 9443
  healthPort: 9080
  providerTimeout: 2s
  deadlineMargin: 150ms
  mutateProviderTimeout: 1s
  mutateDeadlineMargin: 50ms
  mutateKeepTag: true
  maxKeys: 50
  maxBodyBytes: 2MiB
  reloadInterval: 1s
  tls:
    clientAuth: require
    allowedClientNames: [gatekeeper-webhook-service.gatekeeper-system.svc]
cache:
  verdictTtl: 5m
  verdictMaxEntries: 100
  tagTtl: 1h
  contentMaxBytes: 1GB
limits:
  maxManifestBytes: 1MiB
  maxBlobBytes: 512KiB
  maxReferrers: 10
  maxNestedDepth: 2
  nestedArtifactTypes: [application/spdx+json]
  verificationTimeout: 250ms
"""


def _write(tmp_path: Path, text: str, name: str = "config.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


@pytest.fixture
def keydir(tmp_path: Path) -> Path:
    shutil.copy(KEYS / "cosign.pub", tmp_path / "cosign.pub")
    shutil.copy(KEYS / "cosign2.pub", tmp_path / "cosign2.pub")
    return tmp_path


def _problems(path: Path) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert info.value.code == "CONFIG_INVALID"
    return info.value.problems


def _problems_text(tmp_path: Path, text: str) -> list[str]:
    return _problems(_write(tmp_path, text))


# -- a full valid configuration ------------------------------------------------------------------------------------


def test_full_config_parses_to_snake_case_fields(keydir: Path) -> None:
    config = load_config(_write(keydir, FULL))
    r = config.registries
    assert r.allow == ("ghcr.io", "localhost:5000", "docker.io/library/*")
    assert r.max_concurrency == 8
    assert r.request_timeout == pytest.approx(2.0)
    assert r.max_attempts == 2
    assert r.referrers_api_memory == pytest.approx(600.0)
    assert r.cosign_legacy_tags is False
    local = r.host_config("localhost:5000")
    assert local.plain_http is True
    assert local.referrers_api == "never"
    assert local.max_concurrency == 4
    ghcr = r.host_config("ghcr.io")
    assert ghcr.credentials is not None
    assert ghcr.credentials.username == "robot"
    assert ghcr.credentials.password == Secret("hunter2-inline-secret")
    assert ghcr.credentials.password.reveal() == "hunter2-inline-secret"
    # an unlisted host gets defaults
    assert r.host_config("quay.io").plain_http is False

    (verifier,) = config.verifiers
    assert (verifier.name, verifier.type, verifier.scopes) == ("sig", "cosign", ("ghcr.io/org/*",))
    assert len(verifier.params.keys) == 1
    assert config.verifier("sig") is verifier
    assert config.verifier("nope") is None
    assert config.policy.type == "required-verifiers"
    assert config.policy.params.required == ("sig",)
    # no stores: the registry store is the default
    assert [(s.name, s.type) for s in config.stores] == [("registry", "registry")]

    s = config.server
    assert (s.port, s.health_port) == (9443, 9080)
    assert s.provider_timeout == pytest.approx(2.0)
    assert s.deadline_margin == pytest.approx(0.15)
    assert s.verify_deadline == pytest.approx(1.85)
    assert s.mutate_provider_timeout == pytest.approx(1.0)
    assert s.mutate_deadline_margin == pytest.approx(0.05)
    assert s.mutate_keep_tag is True
    assert s.max_keys == 50
    assert s.max_body_bytes == 2 * 1024 * 1024
    assert s.reload_interval == pytest.approx(1.0)
    assert s.tls.client_auth == "require"
    assert s.tls.allowed_client_names == ("gatekeeper-webhook-service.gatekeeper-system.svc",)

    c = config.cache
    assert c.verdict_ttl == pytest.approx(300.0)
    assert c.verdict_max_entries == 100
    assert c.tag_ttl == pytest.approx(3600.0)
    assert c.content_max_bytes == 1_000_000_000

    lim = config.limits
    assert lim.max_manifest_bytes == 1024 * 1024
    assert lim.max_blob_bytes == 512 * 1024
    assert lim.max_referrers == 10
    assert lim.max_nested_depth == 2
    assert lim.nested_artifact_types == frozenset({"application/spdx+json"})
    assert lim.verification_timeout == pytest.approx(0.25)
    assert config.source is not None
    assert len(config.generation) > 0


def test_config_objects_are_frozen(keydir: Path) -> None:
    config = load_config(_write(keydir, FULL))
    for obj, attr in [
        (config, "generation"),
        (config.server, "port"),
        (config.server.tls, "client_auth"),
        (config.registries, "allow"),
        (config.registries.hosts[0], "plain_http"),
        (config.cache, "verdict_ttl"),
        (config.limits, "max_blob_bytes"),
        (config.policy, "type"),
        (config.verifiers[0], "name"),
    ]:
        with pytest.raises(dataclasses.FrozenInstanceError):
            setattr(obj, attr, getattr(obj, attr))
    assert isinstance(config.registries.allow, tuple)
    assert isinstance(config.verifiers, tuple)


def test_an_empty_file_is_refused_and_an_empty_mapping_gives_defaults_and_deny_all(tmp_path: Path) -> None:
    """Issue #19 item 9: an empty document is what a file caught mid-write looks like; it is never applied."""
    for text in ("", "\n", "# nothing yet\n", "---\n"):
        [problem] = _problems_text(tmp_path, text)
        assert problem.endswith("is empty (no YAML document); refusing to apply it")
    config = load_config(_write(tmp_path, "{}\n"))
    assert config.policy.type == "deny-all"
    assert config.verifiers == ()
    assert config.registries.allow == ()


def test_unusable_files_give_located_errors_not_tracebacks(tmp_path: Path) -> None:
    """Issue #19 items 7 and 8: a FIFO never blocks; deep nesting, giant integers, duplicate keys and a non-ASCII CA
    file are configuration problems."""
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    assert _problems(fifo) == [f"cannot read {fifo}: not a regular file (a FIFO)"]
    [key_problem] = _problems_text(tmp_path, f"verifiers:\n  - {{name: c, type: cosign, keys: [{fifo}]}}\n")
    assert key_problem == f"verifiers[0].keys[0]: cannot read {fifo}: not a regular file (a FIFO)"
    assert _problems_text(tmp_path, "a: " + "[" * 5000 + "]" * 5000 + "\n") == ["not usable YAML: nested too deeply"]
    [digits] = _problems_text(tmp_path, "server:\n  port: " + "1" * 4400 + "\n")
    assert digits.startswith("not usable YAML: Exceeds the limit (4300 digits)")
    [duplicate] = _problems_text(tmp_path, "cache:\n  tagTtl: 1s\ncache:\n  tagTtl: 2s\n")
    assert duplicate == "not valid YAML at line 3, column 1: duplicate key 'cache' (line 3)"
    ca = tmp_path / "ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\nMIIé\n-----END CERTIFICATE-----\n", encoding="utf-8")
    text = f"registries:\n  hosts:\n    - {{host: r.example, caFile: {ca}}}\n"
    assert _problems_text(tmp_path, text) == ["registries.hosts[0].caFile: not a PEM CA certificate bundle"]


def test_durations_accept_days_and_compound_forms(tmp_path: Path) -> None:
    """Issue #20 item 7: Referee prints ages as ``7d0h``; the configuration reads them back."""
    config = load_config(
        _write(tmp_path, "cache:\n  verdictTtl: 1d12h\n  tagTtl: 1m30s\nlimits:\n  verificationTimeout: 7d\n")
    )
    assert config.cache.verdict_ttl == 129600 and config.cache.tag_ttl == 90
    assert config.limits.verification_timeout == 7 * 86400
    for bad in ("30m1h", "1d 2h", "1x", "d"):
        assert _problems_text(tmp_path, f"cache:\n  tagTtl: {bad}\n")[0].startswith("cache.tagTtl: invalid duration")


def test_missing_policy_is_deny_all(keydir: Path) -> None:
    config = load_config(_write(keydir, "verifiers:\n  - {name: sig, type: cosign, keys: [cosign.pub]}\n"))
    assert config.policy.type == "deny-all"


def test_empty_policy_mapping_is_deny_all(tmp_path: Path) -> None:
    assert load_config(_write(tmp_path, "policy: {}\n")).policy.type == "deny-all"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("250ms", 0.25),
        ("3s", 3.0),
        ("5m", 300.0),
        ("1h", 3600.0),
        ("1.5s", 1.5),
        ("7", 7.0),
    ],
)
def test_durations(tmp_path: Path, text: str, expected: float) -> None:
    config = load_config(_write(tmp_path, f"cache:\n  verdictTtl: {text}\n"))
    assert config.cache.verdict_ttl == pytest.approx(expected)


@pytest.mark.parametrize(
    ("text", "expected"),
    [("2048", 2048), ("4KiB", 4096), ("4MiB", 4 * 1024**2), ("1GiB", 1024**3), ("5KB", 5000), ("3MB", 3_000_000)],
)
def test_sizes(tmp_path: Path, text: str, expected: int) -> None:
    config = load_config(_write(tmp_path, f"limits:\n  maxBlobBytes: {text}\n"))
    assert config.limits.max_blob_bytes == expected


# -- problems carry their path -------------------------------------------------------------------------------------


def test_unknown_keys_at_several_depths(keydir: Path) -> None:
    problems = _problems_text(
        keydir,
        """\
        verifers: []
        registries:
          alow: [ghcr.io]
          hosts:
            - host: localhost:5000
              plain_http: true
        verifiers:
          - name: sig
            type: cosign
            keys: [cosign.pub]
            key: cosign.pub
        policy:
          type: required-verifiers
          requried: [sig]
        server:
          tls:
            cert_file: /x
        limits:
          maxBlob: 1
        """,
    )
    assert "verifers: unknown key" in problems
    assert "registries.alow: unknown key" in problems
    assert "registries.hosts[0].plain_http: unknown key (keys are camelCase: plainHttp)" in problems
    assert "verifiers[0].key: key is a cosign CLI flag; here: keys: [<PEM text, file path or KMS URI>] (a list)" in (
        problems
    )
    assert "policy.requried: unknown key" in problems
    assert "server.tls.cert_file: unknown key (keys are camelCase: certFile)" in problems
    assert "limits.maxBlob: unknown key" in problems


def test_snake_case_top_level_key_gets_camel_hint(tmp_path: Path) -> None:
    problems = _problems_text(tmp_path, "api_version: referee.dev/v1alpha1\n")
    assert problems == ["api_version: unknown key (keys are camelCase: apiVersion)"]


def test_snake_case_key_in_cache_gets_camel_hint(tmp_path: Path) -> None:
    problems = _problems_text(tmp_path, "cache:\n  verdict_ttl: 5m\n")
    assert problems == ["cache.verdict_ttl: unknown key (keys are camelCase: verdictTtl)"]


def test_not_a_pem_key_exact_message(keydir: Path) -> None:
    (keydir / "garbage.pub").write_text("this is not a key\n")
    problems = _problems_text(
        keydir,
        """\
        verifiers:
          - name: a
            type: cosign
            keys: [cosign.pub]
          - name: b
            type: cosign
            keys: [garbage.pub]
        """,
    )
    assert problems == ["verifiers[1].keys[0]: not a PEM public key"]


def test_inline_pem_with_bad_body_is_not_a_pem_key(tmp_path: Path) -> None:
    problems = _problems_text(
        tmp_path,
        """\
        verifiers:
          - name: a
            type: cosign
            keys:
              - |
                -----BEGIN PUBLIC KEY-----
                bm90IGEga2V5
                -----END PUBLIC KEY-----
        """,
    )
    assert problems == ["verifiers[0].keys[0]: not a PEM public key"]


def test_inline_pem_key_is_accepted(tmp_path: Path) -> None:
    pem = (KEYS / "cosign.pub").read_text()
    doc = {"verifiers": [{"name": "a", "type": "cosign", "keys": [pem]}]}
    config = load_config(_write(tmp_path, json.dumps(doc)))
    assert config.verifiers[0].params.keys[0].source == "inline"


def test_unreadable_key_file(tmp_path: Path) -> None:
    missing = tmp_path / "absent.pub"
    problems = _problems_text(tmp_path, f"verifiers:\n  - {{name: a, type: cosign, keys: [{missing}]}}\n")
    assert len(problems) == 1
    assert problems[0].startswith("verifiers[0].keys[0]: ")
    assert str(missing) in problems[0]


def test_relative_key_paths_resolve_against_the_config_directory(keydir: Path, tmp_path: Path) -> None:
    sub = tmp_path / "conf"
    sub.mkdir()
    shutil.copy(keydir / "cosign.pub", sub / "k.pub")
    config = load_config(_write(sub, "verifiers:\n  - {name: a, type: cosign, keys: [k.pub]}\n"))
    assert len(config.verifiers[0].params.keys) == 1


def test_cosign_verifier_without_keys(tmp_path: Path) -> None:
    problems = _problems_text(tmp_path, "verifiers:\n  - {name: a, type: cosign}\n")
    assert len(problems) == 1
    assert problems[0].startswith("verifiers[0].keys: ")


def test_unknown_verifier_type(tmp_path: Path) -> None:
    problems = _problems_text(tmp_path, "verifiers:\n  - {name: a, type: frobnicate, extra: 1}\n")
    assert len(problems) == 1
    assert problems[0].startswith("verifiers[0].type: ")
    assert "frobnicate" in problems[0]
    assert "cosign" in problems[0]  # lists the known types


def test_duplicate_verifier_names(keydir: Path) -> None:
    problems = _problems_text(
        keydir,
        """\
        verifiers:
          - {name: sig, type: cosign, keys: [cosign.pub]}
          - {name: sig, type: cosign, keys: [cosign2.pub]}
        """,
    )
    assert len(problems) == 1
    assert problems[0].startswith("verifiers[1].name: ")
    assert "sig" in problems[0]


def test_policy_naming_an_unknown_verifier(keydir: Path) -> None:
    problems = _problems_text(
        keydir,
        """\
        verifiers:
          - {name: sig, type: cosign, keys: [cosign.pub]}
        policy:
          type: required-verifiers
          required: [sig, ghost]
        """,
    )
    assert len(problems) == 1
    assert problems[0].startswith("policy.required[1]: ")
    assert "ghost" in problems[0]


def test_unknown_policy_type(tmp_path: Path) -> None:
    problems = _problems_text(tmp_path, "policy:\n  type: allow-everything\n  required: [x]\n")
    assert len(problems) == 1
    assert problems[0].startswith("policy.type: ")
    assert "allow-everything" in problems[0]


@pytest.mark.parametrize(
    ("yaml_text", "path"),
    [
        ("server:\n  providerTimeout: soon\n", "server.providerTimeout"),
        ("server:\n  providerTimeout: 3 days\n", "server.providerTimeout"),
        ("server:\n  providerTimeout: true\n", "server.providerTimeout"),
        ("server:\n  providerTimeout: -1s\n", "server.providerTimeout"),
        ("server:\n  providerTimeout: 10ms\n  deadlineMargin: 1ms\n", "server.providerTimeout"),
        ("cache:\n  verdictTtl: [1]\n", "cache.verdictTtl"),
        ("registries:\n  requestTimeout: 1y\n", "registries.requestTimeout"),
        ("limits:\n  maxBlobBytes: 4XB\n", "limits.maxBlobBytes"),
        ("limits:\n  maxBlobBytes: -5\n", "limits.maxBlobBytes"),
        ("limits:\n  maxBlobBytes: 1.5MiB\n", "limits.maxBlobBytes"),
        ("limits:\n  maxBlobBytes: 10\n", "limits.maxBlobBytes"),
        ("server:\n  maxBodyBytes: lots\n", "server.maxBodyBytes"),
        ("cache:\n  contentMaxBytes: true\n", "cache.contentMaxBytes"),
        ("server:\n  port: 70000\n", "server.port"),
        ("server:\n  port: http\n", "server.port"),
        ("server:\n  maxKeys: true\n", "server.maxKeys"),
        ("server:\n  tls:\n    clientAuth: optional\n", "server.tls.clientAuth"),
        ("registries:\n  hosts:\n    - {host: a, referrersApi: sometimes}\n", "registries.hosts[0].referrersApi"),
        ("registries:\n  allow: [ghcr.io, 3]\n", "registries.allow[1]"),
    ],
)
def test_bad_values_name_their_path(tmp_path: Path, yaml_text: str, path: str) -> None:
    problems = _problems_text(tmp_path, yaml_text)
    assert len(problems) == 1, problems
    assert problems[0].startswith(f"{path}: "), problems


@pytest.mark.parametrize(
    ("yaml_text", "path"),
    [
        ("server:\n  providerTimeout: .nan\n", "server.providerTimeout"),
        ("server:\n  deadlineMargin: .nan\n", "server.deadlineMargin"),
        ("cache:\n  verdictTtl: .nan\n", "cache.verdictTtl"),
        ("server:\n  providerTimeout: .inf\n", "server.providerTimeout"),
    ],
)
def test_non_finite_durations_are_rejected(tmp_path: Path, yaml_text: str, path: str) -> None:
    # NaN compares false with every bound, so it slips past "must be at least" and the margin check;
    # an infinite provider timeout cannot be below Gatekeeper's integer Provider timeout
    problems = _problems_text(tmp_path, yaml_text)
    assert any(p.startswith(f"{path}: ") for p in problems), problems


def test_deadline_margin_must_be_below_provider_timeout(tmp_path: Path) -> None:
    problems = _problems_text(tmp_path, "server:\n  providerTimeout: 1s\n  deadlineMargin: 1s\n")
    assert len(problems) == 1
    assert problems[0].startswith("server.deadlineMargin: ")
    assert "providerTimeout" in problems[0]
    problems = _problems_text(tmp_path, "server:\n  providerTimeout: 1s\n  deadlineMargin: 2s\n")
    assert problems[0].startswith("server.deadlineMargin: ")


def test_mutate_deadline_margin_must_be_below_mutate_timeout(tmp_path: Path) -> None:
    problems = _problems_text(tmp_path, "server:\n  mutateProviderTimeout: 500ms\n  mutateDeadlineMargin: 500ms\n")
    assert len(problems) == 1
    assert problems[0].startswith("server.mutateDeadlineMargin: ")


def test_yaml_syntax_error_reports_line(tmp_path: Path) -> None:
    # line 3 holds a second ':' in a plain scalar: "mapping values are not allowed here"
    problems = _problems_text(tmp_path, "server:\n  port: 8443\n  address: a: b\n")
    assert len(problems) == 1
    assert "line 3" in problems[0]


@pytest.mark.parametrize(("text", "kind"), [("- a\n- b\n", "list"), ("just a string\n", "string"), ("42\n", "number")])
def test_non_mapping_root(tmp_path: Path, text: str, kind: str) -> None:
    problems = _problems_text(tmp_path, text)
    assert len(problems) == 1
    assert "mapping" in problems[0]
    assert kind in problems[0]


def test_non_mapping_section_names_it(tmp_path: Path) -> None:
    problems = _problems_text(tmp_path, "server: 5\nregistries: [a]\n")
    assert sorted(p.split(":", 1)[0] for p in problems) == ["registries", "server"]


def test_wrong_api_version(tmp_path: Path) -> None:
    problems = _problems_text(tmp_path, "apiVersion: referee.dev/v9\n")
    assert len(problems) == 1
    assert problems[0].startswith("apiVersion: ")


def test_multiple_problems_reported_together(keydir: Path) -> None:
    problems = _problems_text(
        keydir,
        """\
        registries:
          alow: []
        verifiers:
          - {name: sig, type: cosign, keys: [nope.pub]}
          - {name: other, type: nonsense}
        policy: {type: required-verifiers, required: [missing]}
        server: {providerTimeout: 1s, deadlineMargin: 5s}
        limits: {maxBlobBytes: huge}
        """,
    )
    prefixes = {p.split(": ", 1)[0] for p in problems}
    assert {
        "registries.alow",
        "verifiers[0].keys[0]",
        "verifiers[1].type",
        "policy.required[0]",
        "server.deadlineMargin",
        "limits.maxBlobBytes",
    } <= prefixes
    # the exception message carries them all too
    with pytest.raises(ConfigError) as info:
        load_config(keydir / "config.yaml")
    for problem in problems:
        assert problem in str(info.value)


def test_unreadable_config_file(tmp_path: Path) -> None:
    problems = _problems(tmp_path / "nope.yaml")
    assert len(problems) == 1
    assert "nope.yaml" in problems[0]


def test_host_username_without_password(tmp_path: Path) -> None:
    problems = _problems_text(tmp_path, "registries:\n  hosts:\n    - {host: a.example, username: bob}\n")
    assert len(problems) == 1
    assert problems[0].startswith("registries.hosts[0].")


def test_host_listed_twice(tmp_path: Path) -> None:
    problems = _problems_text(tmp_path, "registries:\n  hosts:\n    - {host: a.example}\n    - {host: a.example}\n")
    assert len(problems) == 1
    assert problems[0].startswith("registries.hosts[1].host: ")


def test_host_ca_not_pem(tmp_path: Path) -> None:
    (tmp_path / "ca.pem").write_text("not a cert\n")
    problems = _problems_text(tmp_path, "registries:\n  hosts:\n    - {host: a.example, caFile: ca.pem}\n")
    assert len(problems) == 1
    assert problems[0].startswith("registries.hosts[0].caFile: ")


def test_password_file(tmp_path: Path) -> None:
    (tmp_path / "pw").write_text("s3cret-from-file\n")
    config = load_config(
        _write(tmp_path, "registries:\n  hosts:\n    - {host: a.example, username: u, passwordFile: pw}\n")
    )
    creds = config.registries.host_config("a.example").credentials
    assert creds is not None
    assert creds.password is not None
    assert creds.password.reveal() == "s3cret-from-file"


def test_password_and_password_file_conflict(tmp_path: Path) -> None:
    (tmp_path / "pw").write_text("x")
    problems = _problems_text(
        tmp_path, "registries:\n  hosts:\n    - {host: a.example, username: u, password: y, passwordFile: pw}\n"
    )
    assert any(p.startswith("registries.hosts[0].password: ") for p in problems), problems


# -- generation ----------------------------------------------------------------------------------------------------


def test_generation_stable_for_identical_inputs(keydir: Path) -> None:
    path = _write(keydir, FULL)
    assert load_config(path).generation == load_config(path).generation


def test_generation_changes_with_key_file_content(keydir: Path) -> None:
    path = _write(keydir, FULL)
    first = load_config(path).generation
    yaml_before = path.read_bytes()
    (keydir / "cosign.pub").write_bytes((KEYS / "cosign2.pub").read_bytes())
    assert path.read_bytes() == yaml_before
    second = load_config(path).generation
    assert second != first
    (keydir / "cosign.pub").write_bytes((KEYS / "cosign.pub").read_bytes())
    assert load_config(path).generation == first


def test_generation_changes_with_yaml(keydir: Path) -> None:
    first = load_config(_write(keydir, FULL)).generation
    second = load_config(_write(keydir, FULL.replace("maxKeys: 50", "maxKeys: 51"))).generation
    assert first != second


def test_generation_changes_with_password_file_content(tmp_path: Path) -> None:
    (tmp_path / "pw").write_text("one")
    path = _write(tmp_path, "registries:\n  hosts:\n    - {host: a.example, username: u, passwordFile: pw}\n")
    first = load_config(path).generation
    (tmp_path / "pw").write_text("two")
    assert load_config(path).generation != first


# -- docker config.json --------------------------------------------------------------------------------------------


def _docker_config(tmp_path: Path, doc: object) -> RegistriesConfig:
    (tmp_path / "config.json").write_text(json.dumps(doc))
    return load_config(_write(tmp_path, "registries:\n  dockerConfig: config.json\n")).registries


def test_docker_config_auths(tmp_path: Path) -> None:
    doc = {
        "auths": {
            "registry.example:5000": {"auth": base64.b64encode(b"alice:pa:ss").decode()},
            "https://index.docker.io/v1/": {"identitytoken": "refresh-token-value"},
            "https://other.example/v2/": {"username": "bob", "password": "pw-bob"},
            "tok.example": {"registrytoken": "bearer-value"},
        }
    }
    creds = _docker_config(tmp_path, doc).docker_credentials
    assert set(creds) == {"registry.example:5000", "docker.io", "other.example", "tok.example"}
    alice = creds["registry.example:5000"]
    assert alice.username == "alice"
    assert alice.password is not None
    assert alice.password.reveal() == "pa:ss"  # split on the first ':'
    hub = creds["docker.io"]
    assert hub.identity_token is not None
    assert hub.identity_token.reveal() == "refresh-token-value"
    assert hub.username is None
    bob = creds["other.example"]
    assert bob.username == "bob"
    assert bob.password is not None
    assert bob.password.reveal() == "pw-bob"
    tok = creds["tok.example"]
    assert tok.registry_token is not None
    assert tok.registry_token.reveal() == "bearer-value"


def test_docker_config_cred_helpers_recorded(tmp_path: Path) -> None:
    doc = {"auths": {}, "credHelpers": {"123456789.dkr.ecr.eu-west-1.amazonaws.com": "ecr-login"}}
    registries = _docker_config(tmp_path, doc)
    assert "123456789.dkr.ecr.eu-west-1.amazonaws.com" in registries.credential_helpers


def test_docker_config_creds_store_recorded(tmp_path: Path) -> None:
    registries = _docker_config(tmp_path, {"auths": {}, "credsStore": "desktop"})
    assert registries.credential_helpers  # something marks the external store


def test_docker_config_without_helpers(tmp_path: Path) -> None:
    assert _docker_config(tmp_path, {"auths": {}}).credential_helpers == frozenset()


def test_docker_config_bad_auth_value(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text(json.dumps({"auths": {"a.example": {"auth": "%%%not base64"}}}))
    problems = _problems_text(tmp_path, "registries:\n  dockerConfig: config.json\n")
    assert len(problems) == 1
    assert problems[0].startswith("registries.dockerConfig: ")


def test_docker_config_not_json(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text("{nope")
    problems = _problems_text(tmp_path, "registries:\n  dockerConfig: config.json\n")
    assert len(problems) == 1
    assert problems[0].startswith("registries.dockerConfig: ")


def test_docker_config_missing(tmp_path: Path) -> None:
    problems = _problems_text(tmp_path, "registries:\n  dockerConfig: absent.json\n")
    assert len(problems) == 1
    assert problems[0].startswith("registries.dockerConfig: ")


def test_legacy_dockercfg_is_a_bare_auths_map(tmp_path: Path) -> None:
    # kubernetes.io/dockercfg: the file (key .dockercfg) is the auths map itself, without "auths"
    (tmp_path / ".dockercfg").write_text(
        json.dumps({"reg.example:5000": {"auth": base64.b64encode(b"carol:pw-carol").decode()}})
    )
    registries = load_config(_write(tmp_path, "registries:\n  dockerConfig: .dockercfg\n")).registries
    carol = registries.docker_credentials["reg.example:5000"]
    assert carol.username == "carol"
    assert carol.password is not None
    assert carol.password.reveal() == "pw-carol"


def test_docker_config_with_unexpected_dockerconfigjson_value_is_a_config_problem(tmp_path: Path) -> None:
    # A file shaped like a Secret's data (".dockerconfigjson" holding a base64 string) is not a docker config:
    # it must be reported as a problem at registries.dockerConfig, not crash the parser.
    (tmp_path / "config.json").write_text(json.dumps({".dockerconfigjson": "eyJhdXRocyI6e319"}))
    problems = _problems_text(tmp_path, "registries:\n  dockerConfig: config.json\n")
    assert len(problems) == 1
    assert problems[0].startswith("registries.dockerConfig: ")


@pytest.mark.parametrize(
    ("key", "host"),
    [
        ("https://index.docker.io/v1/", "docker.io"),
        ("index.docker.io", "docker.io"),
        ("registry-1.docker.io", "docker.io"),
        ("http://host.example:5000/x/y", "host.example:5000"),
        ("registry.example:5000", "registry.example:5000"),
        ("ghcr.io", "ghcr.io"),
    ],
)
def test_normalise_registry_key(key: str, host: str) -> None:
    assert normalise_registry_key(key) == host


# -- secrets never show --------------------------------------------------------------------------------------------


def test_secret_repr_and_str_hide_value() -> None:
    secret = Secret("hunter2-value")
    assert "hunter2-value" not in repr(secret)
    assert "hunter2-value" not in str(secret)
    assert "hunter2-value" not in f"{secret}"
    creds = Credentials(username="u", password=secret, identity_token=Secret("idtok-value"))
    assert "hunter2-value" not in repr(creds)
    assert "idtok-value" not in repr(creds)
    assert "hunter2-value" not in str(creds)


def test_secrets_absent_from_config_repr(keydir: Path) -> None:
    (keydir / "config.json").write_text(
        json.dumps(
            {
                "auths": {
                    "a.example": {"auth": base64.b64encode(b"user:dockerpw-value").decode()},
                    "b.example": {"identitytoken": "identity-value"},
                }
            }
        )
    )
    text = FULL.replace("  maxConcurrency: 8\n", "  maxConcurrency: 8\n  dockerConfig: config.json\n", 1)
    config = load_config(_write(keydir, text))
    dump = repr(config) + str(config)
    for value in ("hunter2-inline-secret", "dockerpw-value", "identity-value"):
        assert value not in dump


# -- registries.allow ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("patterns", "registry", "repository", "allowed"),
    [
        # a pattern without '/' is a host pattern: any repository on that host
        (("ghcr.io",), "ghcr.io", "org/app", True),
        (("ghcr.io",), "ghcr.io.evil.example", "org/app", False),
        (("ghcr.io",), "evilghcr.io", "org/app", False),
        (("*.example.com",), "reg.example.com", "a", True),
        (("*.example.com",), "example.com", "a", False),
        (("localhost:5000",), "localhost:5000", "app", True),
        (("localhost:5000",), "localhost:5001", "app", False),
        (("localhost:*",), "localhost:5001", "app", True),
        # a pattern with '/' is matched against host/repository
        (("docker.io/library/*",), "docker.io", "library/nginx", True),
        (("docker.io/library/*",), "docker.io", "bitnami/redis", False),
        (("ghcr.io/org/app",), "ghcr.io", "org/app", True),
        (("ghcr.io/org/app",), "ghcr.io", "org/app2", False),
        (("ghcr.io/org/app",), "ghcr.io", "org/other", False),
        # a host/repo pattern does not allow the whole host
        (("ghcr.io/org/*",), "ghcr.io", "other/app", False),
        # several patterns: any may match
        (("quay.io", "ghcr.io/org/*"), "ghcr.io", "org/x", True),
        (("quay.io", "ghcr.io/org/*"), "docker.io", "library/x", False),
        # nothing listed: nothing allowed
        ((), "ghcr.io", "org/app", False),
        (("*",), "anything.example", "x/y", True),
    ],
)
def test_matches_any(patterns: tuple[str, ...], registry: str, repository: str, allowed: bool) -> None:
    assert matches_any(patterns, registry, repository) is allowed
    assert RegistriesConfig(allow=patterns).is_allowed(registry, repository) is allowed


# -- the CLI -------------------------------------------------------------------------------------------------------


def test_cli_config_check_ok(keydir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _write(keydir, FULL)
    assert main(["config", "check", str(path)]) == 0
    out = capsys.readouterr()
    assert str(path) in out.out
    assert "OK" in out.out


def test_cli_config_check_bad(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _write(tmp_path, "server:\n  providerTimeout: 1s\n  deadlineMargin: 2s\ncache:\n  verdict_ttl: 1s\n")
    assert main(["config", "check", str(path)]) == 2
    out = capsys.readouterr()
    lines = out.err.strip().splitlines()
    assert any(line.startswith("server.deadlineMargin: ") for line in lines)
    assert "cache.verdict_ttl: unknown key (keys are camelCase: verdictTtl)" in lines
    assert "OK" not in out.out


def test_cli_config_check_missing_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["config", "check", str(tmp_path / "absent.yaml")]) == 2
    assert "absent.yaml" in capsys.readouterr().err


def test_cli_usage_error_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["config", "check"])
    assert info.value.code == 2


def test_load_config_bytes_matches_file(keydir: Path) -> None:
    path = _write(keydir, FULL)
    from_file = load_config(path)
    from_bytes = load_config_bytes(path.read_bytes(), keydir)
    assert isinstance(from_bytes, Config)
    assert from_bytes.generation == from_file.generation


def test_allowed_client_names_need_client_certificates(tmp_path: Path) -> None:
    bad = "server:\n  tls:\n    clientAuth: disabled\n    allowedClientNames: [gk]\n"
    with pytest.raises(ConfigError) as exc:
        load_config_bytes(bad.encode(), tmp_path)
    assert exc.value.problems == [
        "server.tls.allowedClientNames: needs client certificates: it cannot be used with clientAuth: disabled"
    ]
