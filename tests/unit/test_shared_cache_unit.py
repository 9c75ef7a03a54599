"""``cache.shared`` configuration, the decision generation, the verdict's record round trip and the entry seals
(the redis-backed behaviour is in tests/integration/test_shared_cache.py)."""

from __future__ import annotations

import secrets
import time
from pathlib import Path
from typing import Any

import pytest
import trustme
import yaml

from provider.config import load_config_bytes
from provider.errors import ConfigError
from provider.sharedcache import RejectedEntryError, Sealer
from provider.verdict import ArtifactResult, Decision, Verdict


def _load(tmp_path: Path, doc: dict[str, Any]) -> Any:
    return load_config_bytes(yaml.safe_dump(doc).encode(), tmp_path)


def _problems(tmp_path: Path, doc: dict[str, Any]) -> list[str]:
    with pytest.raises(ConfigError) as exc:
        _load(tmp_path, doc)
    return exc.value.problems


@pytest.fixture
def key_file(tmp_path: Path) -> Path:
    path = tmp_path / "hmac.key"
    path.write_text(secrets.token_hex(32) + "\n")
    return path


def test_shared_cache_settings_parse(tmp_path: Path, key_file: Path) -> None:
    ca = trustme.CA()
    (tmp_path / "ca.pem").write_bytes(ca.cert_pem.bytes())
    (tmp_path / "password").write_text("s3cret\n")
    (tmp_path / "user").write_text("referee\n")
    config = _load(
        tmp_path,
        {
            "cache": {
                "shared": {
                    "url": "rediss://valkey.cache.svc:6380/2",
                    "usernameFile": "user",
                    "passwordFile": "password",
                    "hmacKeyFile": "hmac.key",
                    "caFile": "ca.pem",
                    "keyPrefix": "prod:",
                    "operationTimeout": "50ms",
                    "leaseTtl": "2s",
                }
            }
        },
    )
    shared = config.cache.shared
    assert shared is not None and shared.tls
    assert shared.username == "referee" and shared.password is not None and shared.password.reveal() == "s3cret"
    assert shared.hmac_key == key_file.read_text().strip().encode()
    assert shared.key_prefix == "prod:" and shared.operation_timeout == 0.05 and shared.lease_ttl == 2.0
    assert shared.ca_pem == ca.cert_pem.bytes()
    assert "s3cret" not in repr(shared) and key_file.read_text().strip() not in repr(shared)
    assert _load(tmp_path, {}).cache.shared is None


@pytest.mark.parametrize(
    ("shared", "expected"),
    [
        ({"url": "redis://:pw@cache:6379"}, "cache.shared.url: must not carry credentials"),
        ({"url": "rediss://cache?ssl_cert_reqs=none"}, "cache.shared.url: must not carry query options"),
        ({"url": "http://cache"}, "cache.shared.url: must start with redis:// or rediss://"),
        ({"url": "redis://cache/x"}, "cache.shared.url: the path may only be a database number"),
        ({"url": "redis://cache:99999"}, "cache.shared.url: not a valid URL"),
        ({"hmacKeyFile": None}, "cache.shared.hmacKeyFile: required"),
        ({"hmacKeyFile": "short.key"}, "short.key holds 5 bytes; at least 32 are needed"),
        ({"hmacKeyFile": "missing.key"}, "cache.shared.hmacKeyFile: cannot read missing.key"),
        ({"caFile": "short.key"}, "cache.shared.caFile: not a PEM CA certificate bundle"),
        ({"leaseTtl": "100ms"}, "cache.shared.leaseTtl: must be at least 0.3s"),
        ({"leaseTtl": "1s", "operationTimeout": "500ms"}, "cache.shared.leaseTtl: must be at least 3 times"),
        ({"certFile": "short.key"}, "cache.shared.certFile: certFile and keyFile go together"),
        ({"sharedSecret": "x"}, "cache.shared.sharedSecret: unknown key"),
    ],
)
def test_shared_cache_problems_are_located(
    tmp_path: Path, key_file: Path, shared: dict[str, Any], expected: str
) -> None:
    (tmp_path / "short.key").write_text("short")
    doc = {"url": "redis://cache:6379", "hmacKeyFile": str(key_file), **shared}
    problems = _problems(tmp_path, {"cache": {"shared": {k: v for k, v in doc.items() if v is not None}}})
    assert any(expected in p for p in problems), problems


def test_a_ca_needs_tls(tmp_path: Path, key_file: Path) -> None:
    (tmp_path / "ca.pem").write_bytes(trustme.CA().cert_pem.bytes())
    doc = {"url": "redis://cache", "hmacKeyFile": str(key_file), "caFile": "ca.pem"}
    assert "cache.shared.url: CA and client certificate need a rediss:// (TLS) url" in _problems(
        tmp_path, {"cache": {"shared": doc}}
    )


def test_the_decision_generation_ignores_what_decides_no_verdict(tmp_path: Path, key_file: Path) -> None:
    """Replicas whose files differ in server or cache settings share verdicts; verifier keys (inline or by file
    content) and policy decide them. Where a file is mounted does not matter, its content does."""
    keys = tmp_path / "a"
    keys.mkdir()
    (keys / "k.pub").write_text("not read as a key here")
    base = {"policy": {"type": "deny-all"}, "server": {"port": 1}}
    one = _load(tmp_path, base)
    assert _load(tmp_path, {**base, "server": {"port": 2}}).decision_generation == one.decision_generation
    assert _load(tmp_path, {**base, "server": {"port": 2}}).generation != one.generation
    shared = {"url": "redis://c", "hmacKeyFile": str(key_file)}
    assert _load(tmp_path, {**base, "cache": {"verdictTtl": 5, "shared": shared}}).decision_generation == (
        one.decision_generation
    )
    assert _load(tmp_path, {**base, "limits": {"maxReferrers": 3}}).decision_generation != one.decision_generation
    assert _load(tmp_path, {"policy": {"type": "deny-all"}}).decision_generation == one.decision_generation

    def with_key(directory: Path, text: str) -> str:
        directory.mkdir(exist_ok=True)
        (directory / "ca.pem").write_text(text)
        doc = {"registries": {"hosts": [{"host": "r.example", "caFile": "ca.pem"}]}}
        return str(load_config_bytes(yaml.safe_dump(doc).encode(), directory).decision_generation)

    pem = trustme.CA().cert_pem.bytes().decode()
    assert with_key(tmp_path / "x", pem) == with_key(tmp_path / "y", pem)
    assert with_key(tmp_path / "x", pem) != with_key(tmp_path / "z", trustme.CA().cert_pem.bytes().decode())


def _verdict(*, complete: bool = True) -> Verdict:
    nested = ArtifactResult("sha256:" + "c" * 64, "application/sbom", "sbom", "sbom", False, "bad", {"n": [1, 2]})
    return Verdict(
        subject="r.example/app@sha256:" + "a" * 64,
        digest="sha256:" + "a" * 64,
        media_type="application/vnd.oci.image.manifest.v1+json",
        decision=Decision(
            allowed=False,
            reason="required verifier sbom failed",
            details={"type": "rules", "rules": [{"name": "r", "met": False}]},
            code="EVIDENCE_REJECTED",
            verifiers=("cosign",),
            unmet=(("sbom", "EVIDENCE_REJECTED"), ("r", "NO_EVIDENCE")),
        ),
        artifacts=(
            ArtifactResult(
                "sha256:" + "b" * 64,
                "application/vnd.dev.cosign.simplesigning.v1+json",
                "cosign",
                "cosign",
                True,
                "ok",
                {"keyId": "k", "claims": {"x": None, "y": 1.5}},
                (nested,),
            ),
            ArtifactResult("sha256:" + "d" * 64, "t", "v", "vt", False, "err", {}, (), error="VERIFICATION_ERROR"),
        ),
        verified_at="2026-01-01T00:00:00Z",
        config_generation="0123456789abcdef",
        notes=("one note",),
        complete=complete,
    )


@pytest.mark.parametrize("complete", [True, False])
def test_a_verdict_survives_its_record_round_trip(complete: bool) -> None:
    import json

    original = _verdict(complete=complete)
    record = json.loads(json.dumps(original.to_record()))
    again = Verdict.from_record(record)
    assert again.encoded() == original.encoded()
    assert again.decision == original.decision
    assert again == original
    assert Verdict.from_json(json.loads(original.encoded())).to_json() == original.to_json()


@pytest.mark.parametrize(
    "damage",
    [
        lambda r: r["verdict"].update(schemaVersion="referee.verdict/v0"),
        lambda r: r["verdict"].update(allowed="yes"),
        lambda r: r["verdict"].update(succeeded=True),
        lambda r: r["verdict"]["artifacts"][0].update(nested={}),
        lambda r: r.update(unmet=[["only-one"]]),
        lambda r: r.update(verifiers=[1]),
        lambda r: r.pop("verdict"),
    ],
)
def test_a_damaged_record_is_refused(damage: Any) -> None:
    record = _verdict().to_record()
    damage(record)
    with pytest.raises(ValueError):
        Verdict.from_record(record)


def test_seals_bind_key_name_and_content() -> None:
    key = secrets.token_bytes(32)
    sealer = Sealer(key)
    blob = sealer.seal(b"p:v1:verdict:1", b'{"a":1}')
    assert sealer.open(b"p:v1:verdict:1", blob) == b'{"a":1}'
    for name, data, reason in [
        (b"p:v1:verdict:2", blob, "signature"),  # replayed under another key
        (b"p:v1:verdict:1", blob[:-1] + b"2", "signature"),  # altered
        (b"p:v1:verdict:1", Sealer(secrets.token_bytes(32)).seal(b"p:v1:verdict:1", b'{"a":1}'), "signature"),
        (b"p:v1:verdict:1", b"RF1short", "malformed"),
        (b"p:v1:verdict:1", b"XX9" + blob[3:], "malformed"),
    ]:
        with pytest.raises(RejectedEntryError) as exc:
            sealer.open(name, data)
        assert exc.value.reason == reason
    now = time.time()
    token = sealer.lease_token(b"p:v1:lease:1", now + 10)
    sealer.check_lease(b"p:v1:lease:1", token.encode(), now)
    for name, value, at, reason in [
        (b"p:v1:lease:1", token.encode(), now + 11, "expired"),
        (b"p:v1:lease:2", token.encode(), now, "signature"),
        (b"p:v1:lease:1", b"a.1.zz", now, "malformed"),
    ]:
        with pytest.raises(RejectedEntryError) as exc:
            sealer.check_lease(name, value, at)
        assert exc.value.reason == reason
