"""The required-verifiers and deny-all policies, and the verdict document (architecture.md)."""

from __future__ import annotations

import json

import pytest

from provider.oci import Descriptor
from provider.policies.base import PolicySpec, policy_types
from provider.policies.required import DenyAllPolicy, RequiredParams, RequiredVerifiersPolicy
from provider.reference import parse_reference
from provider.registrations import load
from provider.verdict import ArtifactResult, Decision, Verdict, iter_results
from provider.verifiers.base import Subject

DIGEST = "sha256:" + "1" * 64
SUBJECT = Subject(
    ref=parse_reference(f"ghcr.io/org/app@{DIGEST}"),
    descriptor=Descriptor("application/vnd.oci.image.manifest.v1+json", DIGEST, 100),
)


def _result(
    verifier: str, succeeded: bool, n: int = 0, reason: str | None = None, error: str | None = None
) -> ArtifactResult:
    return ArtifactResult(
        digest="sha256:" + f"{n:x}" * 64 if n < 16 else "sha256:" + "f" * 64,
        artifact_type="application/vnd.dev.cosign.artifact.sig.v1+json",
        verifier=verifier,
        verifier_type="cosign",
        succeeded=succeeded,
        reason=reason or ("ok" if succeeded else "bad signature"),
        error=error,
    )


def _policy(*required: str) -> RequiredVerifiersPolicy:
    return RequiredVerifiersPolicy(RequiredParams(required=tuple(required)))


# -- required-verifiers --------------------------------------------------------------------------------------------


def test_single_required_verifier_success() -> None:
    decision = _policy("sig").decide(SUBJECT, [_result("sig", True)])
    assert decision.allowed is True


def test_one_success_among_failures_is_enough() -> None:
    results = [_result("sig", False, 1), _result("sig", True, 2), _result("sig", False, 3)]
    assert _policy("sig").decide(SUBJECT, results).allowed


def test_every_required_verifier_needs_a_success() -> None:
    results = [_result("sig", True, 1), _result("sbom", False, 2)]
    decision = _policy("sig", "sbom").decide(SUBJECT, results)
    assert decision.allowed is False
    assert "sbom" in decision.reason
    both = [*results, _result("sbom", True, 3)]
    assert _policy("sig", "sbom").decide(SUBJECT, both).allowed


def test_success_of_another_verifier_does_not_count() -> None:
    decision = _policy("sig").decide(SUBJECT, [_result("other", True)])
    assert decision.allowed is False
    assert "sig" in decision.reason


def test_empty_required_list_denies() -> None:
    decision = _policy().decide(SUBJECT, [_result("sig", True)])
    assert decision.allowed is False
    assert decision.reason


def test_no_results_denies_naming_the_verifier() -> None:
    decision = _policy("cosign-keys").decide(SUBJECT, [])
    assert decision.allowed is False
    assert "cosign-keys" in decision.reason


def test_no_results_names_every_missing_verifier() -> None:
    decision = _policy("alpha", "beta").decide(SUBJECT, [])
    assert not decision.allowed
    assert "alpha" in decision.reason
    assert "beta" in decision.reason


def test_failure_reason_is_carried() -> None:
    decision = _policy("sig").decide(SUBJECT, [_result("sig", False, reason="signature does not verify")])
    assert not decision.allowed
    assert "signature does not verify" in decision.reason


def test_error_results_count_as_failures() -> None:
    errored = _result("sig", False, reason="could not verify: DIGEST_MISMATCH: x", error="DIGEST_MISMATCH")
    decision = _policy("sig").decide(SUBJECT, [errored])
    assert decision.allowed is False


def test_nested_results_do_not_satisfy_top_level_requirement() -> None:
    nested_ok = _result("sbom-sig", True, 5)
    parent = ArtifactResult(
        digest="sha256:" + "6" * 64,
        artifact_type="application/spdx+json",
        verifier="sbom",
        verifier_type="sbom",
        succeeded=False,
        reason="bad",
        nested=(nested_ok,),
    )
    assert not _policy("sbom").decide(SUBJECT, [parent]).allowed


def test_required_policy_through_plugin_registry() -> None:
    load()
    plugin = policy_types.get("required-verifiers")
    assert plugin is not None
    enforcer = plugin.create(PolicySpec(type="required-verifiers", params=RequiredParams(required=("sig",))))
    assert enforcer.decide(SUBJECT, [_result("sig", True)]).allowed
    assert not enforcer.decide(SUBJECT, []).allowed


# -- deny-all ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "results",
    [[], [_result("sig", True)], [_result("sig", True, 1), _result("x", True, 2)]],
    ids=["none", "one", "two"],
)
def test_deny_all_denies_everything(results: list[ArtifactResult]) -> None:
    decision = DenyAllPolicy().decide(SUBJECT, results)
    assert decision.allowed is False
    assert decision.reason


def test_deny_all_through_plugin_registry() -> None:
    load()
    plugin = policy_types.get("deny-all")
    assert plugin is not None
    assert not plugin.create(PolicySpec(type="deny-all", params=None)).decide(SUBJECT, [_result("a", True)]).allowed


# -- the verdict document ------------------------------------------------------------------------------------------


def _verdict(allowed: bool) -> Verdict:
    nested = ArtifactResult(
        digest="sha256:" + "3" * 64,
        artifact_type="application/vnd.dev.cosign.artifact.sig.v1+json",
        verifier="sbom-sig",
        verifier_type="cosign",
        succeeded=True,
        reason="signature verified",
        details={"keyFingerprint": "sha256:" + "4" * 64},
    )
    top = ArtifactResult(
        digest="sha256:" + "5" * 64,
        artifact_type="application/spdx+json",
        verifier="sbom",
        verifier_type="sbom",
        succeeded=allowed,
        reason="sbom ok" if allowed else "sbom bad",
        nested=(nested,),
    )
    errored = ArtifactResult(
        digest="sha256:" + "6" * 64,
        artifact_type="application/vnd.cncf.notary.signature",
        verifier="sig",
        verifier_type="cosign",
        succeeded=False,
        reason="could not verify",
        error="DIGEST_MISMATCH",
    )
    return Verdict(
        subject=f"ghcr.io/org/app@{DIGEST}",
        digest=DIGEST,
        media_type="application/vnd.oci.image.manifest.v1+json",
        decision=Decision(allowed, "verified by sbom" if allowed else "sbom: no artifact verified", {"type": "x"}),
        artifacts=(top, errored),
        verified_at="2026-01-02T03:04:05Z",
        config_generation="abc123",
    )


@pytest.mark.parametrize("allowed", [True, False])
def test_verdict_to_json(allowed: bool) -> None:
    doc = _verdict(allowed).to_json()
    assert isinstance(doc["schemaVersion"], str)
    assert doc["schemaVersion"]
    assert doc["subject"] == f"ghcr.io/org/app@{DIGEST}"
    assert doc["digest"] == DIGEST
    # Rego tests `succeeded == true` positively (gatekeeper-protocol.md §4): it must mirror `allowed` exactly
    assert doc["allowed"] is allowed
    assert doc["succeeded"] is allowed
    assert doc["reason"] == ("verified by sbom" if allowed else "sbom: no artifact verified")
    top, errored = doc["artifacts"]
    assert top["digest"] == "sha256:" + "5" * 64
    assert top["artifactType"] == "application/spdx+json"
    assert top["verifier"] == "sbom"
    assert top["succeeded"] is allowed
    (nested,) = top["nested"]
    assert nested["verifier"] == "sbom-sig"
    assert nested["succeeded"] is True
    assert nested["details"] == {"keyFingerprint": "sha256:" + "4" * 64}
    assert nested["nested"] == []
    assert errored["error"] == "DIGEST_MISMATCH"
    assert errored["succeeded"] is False
    assert "error" not in top
    # plain JSON, round-trips
    assert json.loads(json.dumps(doc)) == doc


def test_verdict_allowed_property() -> None:
    assert _verdict(True).allowed is True
    assert _verdict(False).allowed is False


def test_iter_results_depth_first() -> None:
    verdict = _verdict(True)
    flat = iter_results(list(verdict.artifacts))
    assert [r.verifier for r in flat] == ["sbom", "sbom-sig", "sig"]
