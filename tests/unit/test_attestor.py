"""``attestors``: a named set of OpenPGP and PKIX keys plus a note, usable by policies like a verifier."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from provider.config import Config, load_config_bytes
from provider.errors import ConfigError
from provider.oci import Descriptor
from provider.policies.base import policy_types
from provider.reference import parse_reference
from provider.verdict import ArtifactResult
from provider.verifiers.base import Subject, verifier_types
from provider.verifiers.pkix import default_key_id
from tests.support.attestor_fixtures import Keys
from tests.support.attestors import (
    DIGEST,
    IMAGE,
    NOTE,
    OTHER_NOTE,
    binauthz_payload,
    grafeas_request,
    lookaside_request,
    pkix_sign,
    v1_occurrence,
)

KEY = ec.generate_private_key(ec.SECP256R1())
PEM = (
    KEY.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()
)
PAYLOAD = binauthz_payload(IMAGE, DIGEST)


def config(document: dict[str, Any], base: Path = Path("/")) -> Config:
    return load_config_bytes(json.dumps(document).encode(), base)


def attestor_entry(keyring: Keys, **extra: Any) -> dict[str, Any]:
    return {
        "name": "built-by-ci",
        "note": NOTE,
        "pgpKeys": [keyring.public["alice"].decode()],
        "pkixKeys": [{"key": PEM, "signatureAlgorithm": "ECDSA_P256_SHA256"}],
        **extra,
    }


def build(cfg: Config, name: str) -> Any:
    spec = next(v for v in cfg.verifiers if v.name == name)
    plugin = verifier_types.get(spec.type)
    assert plugin is not None
    return plugin.create(spec)


def test_attestors_are_verifiers_named_by_policies(keyring: Keys) -> None:
    cfg = config(
        {
            "attestors": [attestor_entry(keyring)],
            "policy": {"type": "rules", "rules": [{"name": "attested", "verifiers": ["built-by-ci"], "match": "all"}]},
        }
    )
    [spec] = cfg.verifiers
    assert (spec.name, spec.type) == ("built-by-ci", "attestor")
    assert spec.params.note == NOTE
    required = config(
        {"attestors": [attestor_entry(keyring)], "policy": {"type": "required-verifiers", "required": ["built-by-ci"]}}
    )
    assert required.policy.params.required == ("built-by-ci",)


async def test_attestor_accepts_pkix_and_pgp_attestations_under_its_note(keyring: Keys) -> None:
    attestor = build(config({"attestors": [attestor_entry(keyring)]}), "built-by-ci")
    pkix_occurrence = v1_occurrence(
        PAYLOAD, [(pkix_sign(KEY, "ECDSA_P256_SHA256", PAYLOAD), default_key_id(KEY.public_key()))]
    )
    pgp_occurrence = v1_occurrence(PAYLOAD, [(keyring.sign("alice", PAYLOAD), keyring.fpr["alice"])])
    for occurrence in (pkix_occurrence, pgp_occurrence):
        result = await attestor.verify(grafeas_request(occurrence))
        assert result.succeeded, result.reason
        assert result.details["note"] == NOTE
    assert (await attestor.verify(grafeas_request(pkix_occurrence))).details["keyId"].startswith("ni:///")
    assert (await attestor.verify(grafeas_request(pgp_occurrence))).details["keyFingerprint"] == keyring.fpr["alice"]


async def test_attestor_rejects_another_note_the_wrong_key_and_notless_evidence(keyring: Keys) -> None:
    attestor = build(config({"attestors": [attestor_entry(keyring)]}), "built-by-ci")
    elsewhere = v1_occurrence(PAYLOAD, [(keyring.sign("alice", PAYLOAD), "x")], note=OTHER_NOTE)
    result = await attestor.verify(grafeas_request(elsewhere))
    assert result.reason == f"attestation is under note {OTHER_NOTE}; built-by-ci accepts only {NOTE}"
    wrong = v1_occurrence(PAYLOAD, [(keyring.sign("bob", PAYLOAD), keyring.fpr["bob"])])
    assert "which is not a configured key" in (await attestor.verify(grafeas_request(wrong))).reason
    lookaside = await attestor.verify(lookaside_request(keyring.sign("alice", PAYLOAD)))
    assert lookaside.reason == f"attestation is not attached to a Grafeas note; built-by-ci accepts only {NOTE}"
    noteless = build(config({"attestors": [attestor_entry(keyring, note=None)]}), "built-by-ci")
    assert (await noteless.verify(lookaside_request(keyring.sign("alice", PAYLOAD)))).succeeded


async def test_attestor_policy_decision_on_results(keyring: Keys) -> None:
    cfg = config(
        {
            "attestors": [attestor_entry(keyring), {**attestor_entry(keyring), "name": "qa", "note": OTHER_NOTE}],
            "policy": {"type": "required-verifiers", "required": ["built-by-ci", "qa"]},
        }
    )
    plugin = policy_types.get(cfg.policy.type)
    assert plugin is not None
    policy = plugin.create(cfg.policy)
    subject = Subject(parse_reference(f"{IMAGE}@{DIGEST}"), Descriptor("application/x", DIGEST, 1))
    ok = ArtifactResult("sha256:" + "1" * 64, "t", "built-by-ci", "attestor", True, "ok")
    assert not policy.decide(subject, [ok]).allowed
    assert "qa: no matching artifact found" in policy.decide(subject, [ok]).reason
    assert policy.decide(subject, [ok, ArtifactResult("sha256:" + "2" * 64, "t", "qa", "attestor", True, "ok")]).allowed


def test_attestor_config_errors(keyring: Keys) -> None:
    with pytest.raises(ConfigError) as info:
        config(
            {
                "verifiers": [{"name": "built-by-ci", "type": "pgp", "keys": [keyring.public["alice"].decode()]}],
                "attestors": [
                    attestor_entry(keyring),
                    {"name": "empty", "note": "notes/x"},
                    {
                        "name": "typo",
                        "pgpKey": "x",
                        "pkixKeys": [{"key": PEM, "signatureAlgorithm": "ECDSA_P256_SHA256"}],
                    },
                ],
                "policy": {"type": "required-verifiers", "required": ["nobody"]},
            }
        )
    assert info.value.problems == [
        "attestors[0].name: duplicate name 'built-by-ci' (attestors and verifiers share one namespace)",
        "attestors[1].note: 'notes/x' is not a note name (projects/<project>/notes/<note>)",
        "attestors[1].pgpKeys: an attestor needs at least one key in pgpKeys or pkixKeys",
        "attestors[2].pgpKey: unknown key",
        "policy.required[0]: no verifier named 'nobody'",
    ]
