"""The constraints ``referee import binauthz`` generates are valid Gatekeeper constraints for the real
``RefereeRequiredEvidence`` template (CRD schema and the template's parameter schema, strictly), and the
template's Rego (under the real OPA engine) enforces them as the Binary Authorization rules meant."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from cryptography.hazmat.primitives.asymmetric import ec

from provider.cli import main
from tests.integration.test_rego import EVIDENCE, _constraint_schema, _evaluate, _template_schemas
from tests.support.attestor_fixtures import Keys
from tests.support.binauthz import CLUSTER_POLICY, REQUIRE_POLICY, pgp_attestor, pkix_attestor


def _import(tmp_path: Path, policy: dict[str, Any], keyring: Keys) -> Path:
    (tmp_path / "policy.yaml").write_text(yaml.safe_dump(policy))
    attestors = [
        pgp_attestor("built-by-ci", keyring.public["alice"].decode(), keyring.fpr["alice"]),
        pkix_attestor("qa", ec.generate_private_key(ec.SECP256R1())),
    ]
    (tmp_path / "attestors.yaml").write_text(yaml.safe_dump_all(attestors))
    out = tmp_path / "out"
    argv = ["import", "binauthz", str(tmp_path / "policy.yaml"), "--attestor", str(tmp_path / "attestors.yaml")]
    assert main([*argv, "--out", str(out)]) == 0
    return out


def _constraints(out: Path) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {}
    for path in sorted((out / "constraints").glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc is not None:
                found[doc["metadata"]["name"]] = doc
    return found


def _pod(image: str, namespace: str = "team-a") -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "app", "namespace": namespace},
        "spec": {"containers": [{"name": "c", "image": image}]},
    }


def _verdict(*verified: str, allowed: bool = False) -> dict[str, Any]:
    artifacts = [{"digest": "sha256:" + "1" * 64, "verifier": v, "succeeded": True, "reason": "ok"} for v in verified]
    return {"value": {"allowed": allowed, "reason": "deny-all", "artifacts": artifacts}}


@pytest.fixture
def cluster_constraints(tmp_path: Path, keyring: Keys) -> dict[str, dict[str, Any]]:
    return _constraints(_import(tmp_path, CLUSTER_POLICY, keyring))


def test_generated_constraints_validate_strictly(cluster_constraints: dict[str, dict[str, Any]]) -> None:
    schema = _constraint_schema(_template_schemas()["RefereeRequiredEvidence"])
    assert set(cluster_constraints) == {
        "binauthz-default",
        "binauthz-cluster-us-east1-a.prod-cluster",
        "binauthz-cluster-us-central1.staging-cluster",
    }
    for constraint in cluster_constraints.values():
        jsonschema.validate(constraint, schema)


def _violations(constraint: dict[str, Any], image: str, answers: dict[str, Any], namespace: str = "team-a") -> Any:
    return _evaluate(EVIDENCE, _pod(image, namespace), constraint["spec"]["parameters"], answers)


def test_prod_cluster_requires_every_attestor(cluster_constraints: dict[str, dict[str, Any]]) -> None:
    prod = cluster_constraints["binauthz-cluster-us-east1-a.prod-cluster"]
    image = "registry.example.com/app/api:1"
    assert _violations(prod, image, {image: _verdict("built-by-ci", "qa")}) == []
    [missing] = _violations(prod, image, {image: _verdict("built-by-ci")})
    assert missing["msg"] == f"image {image}: verifier qa has no successful artifact (no artifact was checked by it)"
    assert len(_violations(prod, image, {image: {"error": "STORE_UNAVAILABLE: grafeas down"}})) == 1


def test_allowlisted_images_are_exempt_and_the_default_denies_the_rest(
    cluster_constraints: dict[str, dict[str, Any]],
) -> None:
    default = cluster_constraints["binauthz-default"]
    for exempt in ("registry.example.com/base/runtime:3", "registry.example.com/tools/debug"):
        assert _violations(default, exempt, {}) == []
    [denied] = _violations(default, "registry.example.com/tools/debug:2", {})
    assert "verifier binauthz:ALWAYS_DENY has no successful artifact" in denied["msg"]
    evidence = {"registry.example.com/app/api:1": _verdict("built-by-ci", "qa", allowed=True)}
    assert len(_violations(default, "registry.example.com/app/api:1", evidence)) == 1


def test_namespace_rule_constraint(tmp_path: Path, keyring: Keys) -> None:
    policy = {
        **REQUIRE_POLICY,
        "kubernetesNamespaceAdmissionRules": {
            "payments": {
                "evaluationMode": "REQUIRE_ATTESTATION",
                "requireAttestationsBy": [
                    "projects/example-project/attestors/built-by-ci",
                    "projects/example-project/attestors/qa",
                ],
            }
        },
    }
    found = _constraints(_import(tmp_path, policy, keyring))
    schema = _constraint_schema(_template_schemas()["RefereeRequiredEvidence"])
    for constraint in found.values():
        jsonschema.validate(constraint, schema)
    payments = found["binauthz-default-ns-payments"]
    image = "gcr.io/example-project/pay:1"
    assert payments["spec"]["match"]["namespaces"] == ["payments"]
    assert len(_violations(payments, image, {image: _verdict("built-by-ci")}, "payments")) == 1
    assert _violations(payments, image, {image: _verdict("built-by-ci", "qa")}, "payments") == []
    assert "payments" in found["binauthz-default"]["spec"]["match"]["excludedNamespaces"]
