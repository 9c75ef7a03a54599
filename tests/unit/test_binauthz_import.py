"""``referee import binauthz`` on the policy shapes of Binary Authorization's documentation: what it converts,
how, and what it lists instead of dropping; the output passes ``referee config check``."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography.hazmat.primitives.asymmetric import ec

from provider.cli import main
from provider.config import load_config
from tests.support.attestor_fixtures import Keys
from tests.support.binauthz import CLUSTER_POLICY, DEFAULT_POLICY, PROJECT, REQUIRE_POLICY, pgp_attestor, pkix_attestor

KEY = ec.generate_private_key(ec.SECP256R1())


def _write(path: Path, *docs: Any) -> str:
    path.write_text(yaml.safe_dump_all(list(docs), sort_keys=False))
    return str(path)


def run_import(tmp_path: Path, policy: dict[str, Any], *attestors: dict[str, Any], extra: tuple[str, ...] = ()) -> Path:
    out = tmp_path / "out"
    argv = ["import", "binauthz", _write(tmp_path / "policy.yaml", policy), "--out", str(out), *extra]
    for i, attestor in enumerate(attestors):
        argv += ["--attestor", _write(tmp_path / f"attestor{i}.yaml", attestor)]
    assert main(argv) == 0
    return out


def constraints(out: Path, name: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all((out / "constraints" / name).read_text()) if d is not None]


def test_default_gke_policy(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = run_import(tmp_path, DEFAULT_POLICY)
    assert constraints(out, "default.yaml") == []
    report = (out / "IMPORT-REPORT.txt").read_text()
    assert "default.yaml: every rule is ALWAYS_ALLOW; no constraint needed there" in report
    assert "'gcr.io/google_containers/*' matches one path segment only" in report
    assert "globalPolicyEvaluationMode ENABLE" in report
    assert report.splitlines()[1] in capsys.readouterr().out
    config = load_config(out / "referee.yaml")
    assert config.policy.type == "deny-all"
    assert main(["config", "check", str(out / "referee.yaml")]) == 0


def test_require_attestation_policy(tmp_path: Path, keyring: Keys) -> None:
    attestor = pgp_attestor("built-by-ci", keyring.public["alice"].decode(), keyring.fpr["alice"])
    out = run_import(tmp_path, REQUIRE_POLICY, attestor)
    [constraint] = constraints(out, "default.yaml")
    assert constraint["kind"] == "RefereeRequiredEvidence"
    assert constraint["metadata"]["name"] == "binauthz-default"
    assert constraint["spec"]["enforcementAction"] == "deny"
    assert constraint["spec"]["parameters"] == {
        "requiredVerifiers": ["built-by-ci"],
        "requireAllowed": False,
        "exemptImages": ["k8s.gcr.io/*"],
    }
    assert constraint["spec"]["match"]["excludedNamespaces"] == ["kube-system", "gatekeeper-system", "referee-system"]
    config = load_config(out / "referee.yaml")
    [attestor_spec] = config.verifiers
    assert (attestor_spec.name, attestor_spec.type) == ("built-by-ci", "attestor")
    assert attestor_spec.params.note == f"projects/{PROJECT}/notes/built-by-ci"
    assert attestor_spec.params.pgp_keys[0].fingerprint == keyring.fpr["alice"]
    [store] = config.stores
    assert store.type == "grafeas" and store.params.projects == (PROJECT,)
    assert store.params.notes == frozenset({f"projects/{PROJECT}/notes/built-by-ci"})
    assert config.policy.params.rules[0].verifiers == ("built-by-ci",)
    assert config.policy.params.rules[0].match == "all"
    assert "-----BEGIN PGP PUBLIC KEY BLOCK-----\n" in (out / "referee.yaml").read_text()  # literal block, readable


def test_cluster_rules_become_cluster_files(tmp_path: Path, keyring: Keys) -> None:
    out = run_import(
        tmp_path,
        CLUSTER_POLICY,
        pgp_attestor("built-by-ci", keyring.public["alice"].decode(), keyring.fpr["alice"]),
        pkix_attestor("qa", KEY),
        extra=("--attestation-project", "attestations", "--allow", "registry.example.com"),
    )
    files = sorted(p.name for p in (out / "constraints").iterdir())
    assert files == [
        "cluster-europe-west1-b.dev-cluster.yaml",
        "cluster-us-central1.staging-cluster.yaml",
        "cluster-us-east1-a.prod-cluster.yaml",
        "default.yaml",
    ]
    default, sandbox_default = constraints(out, "default.yaml"), None
    assert [c["metadata"]["name"] for c in default] == ["binauthz-default"]
    assert default[0]["spec"]["parameters"]["requiredVerifiers"] == ["binauthz:ALWAYS_DENY"]
    assert default[0]["spec"]["parameters"]["exemptImages"] == [
        "registry.example.com/base/*",
        "registry.example.com/tools/debug",
    ]
    assert default[0]["spec"]["match"]["excludedNamespaces"] == ["gatekeeper-system", "referee-system", "sandbox"]
    assert sandbox_default is None  # ALWAYS_ALLOW namespace: excluded, no constraint of its own
    [prod] = constraints(out, "cluster-us-east1-a.prod-cluster.yaml")
    assert prod["spec"]["parameters"]["requiredVerifiers"] == ["built-by-ci", "qa"]
    assert prod["spec"]["enforcementAction"] == "deny"
    [staging] = constraints(out, "cluster-us-central1.staging-cluster.yaml")
    assert staging["spec"]["enforcementAction"] == "dryrun"
    assert constraints(out, "cluster-europe-west1-b.dev-cluster.yaml") == []
    report = (out / "IMPORT-REPORT.txt").read_text()
    assert "kubernetesServiceAccountAdmissionRules[payments:deployer]" in report and "NOT converted" in report
    config = load_config(out / "referee.yaml")
    assert [v.name for v in config.verifiers] == ["built-by-ci", "qa"]
    assert config.stores[0].params.projects == ("attestations",)
    assert config.registries.allow == ("registry.example.com",)
    assert config.verifiers[1].params.pkix_keys[0].algorithm_name == "ECDSA_P256_SHA256"


def test_namespace_rule_gets_its_own_constraint(tmp_path: Path, keyring: Keys) -> None:
    policy = copy.deepcopy(REQUIRE_POLICY)
    policy["kubernetesNamespaceAdmissionRules"] = {
        "payments": {"evaluationMode": "ALWAYS_DENY", "enforcementMode": "DRYRUN_AUDIT_LOG_ONLY"}
    }
    out = run_import(tmp_path, policy, pgp_attestor("built-by-ci", keyring.public["alice"].decode(), "x"))
    base, payments = constraints(out, "default.yaml")
    assert "payments" in base["spec"]["match"]["excludedNamespaces"]
    assert payments["spec"]["match"]["namespaces"] == ["payments"]
    assert payments["spec"]["enforcementAction"] == "dryrun"
    assert payments["metadata"]["name"] == "binauthz-default-ns-payments"


def test_unconvertible_inputs_exit_2_with_the_reason(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    policy = _write(tmp_path / "p.yaml", REQUIRE_POLICY)
    assert main(["import", "binauthz", policy, "--out", str(tmp_path / "o")]) == 2
    assert f"attestor projects/{PROJECT}/attestors/built-by-ci was not given" in capsys.readouterr().err
    assert main(["import", "binauthz", _write(tmp_path / "q.yaml", {"x": 1}), "--out", str(tmp_path / "o")]) == 2
    assert "neither a policy nor an attestor" in capsys.readouterr().err
    bad = copy.deepcopy(REQUIRE_POLICY)
    del bad["defaultAdmissionRule"]["requireAttestationsBy"]
    assert main(["import", "binauthz", _write(tmp_path / "r.yaml", bad), "--out", str(tmp_path / "o")]) == 2
    assert "REQUIRE_ATTESTATION without requireAttestationsBy" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_unknown_fields_and_modes_are_listed_and_fail_closed(tmp_path: Path) -> None:
    policy = copy.deepcopy(DEFAULT_POLICY)
    policy["defaultAdmissionRule"] = {"evaluationMode": "CHECK_BASED", "somethingNew": True}
    policy["platformPolicies"] = []
    out = run_import(tmp_path, policy)
    [constraint] = constraints(out, "default.yaml")
    assert constraint["spec"]["parameters"]["requiredVerifiers"] == ["binauthz:ALWAYS_DENY"]
    report = (out / "IMPORT-REPORT.txt").read_text()
    assert "'CHECK_BASED' has no Referee equivalent: converted to ALWAYS_DENY" in report
    assert "defaultAdmissionRule.somethingNew: not understood" in report
    assert "policy.platformPolicies: not understood" in report
