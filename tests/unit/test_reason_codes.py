"""Decisions carry a bounded reason code, the verifiers that met the policy and the requirements that were not
met (the decision log and ``referee_decisions_total`` / ``referee_unmet_requirements_total`` use them)."""

from __future__ import annotations

from typing import Any

import pytest

from provider import verdict
from provider.oci import Descriptor
from provider.policies.required import DenyAllPolicy, RequiredParams, RequiredVerifiersPolicy
from provider.policies.rules import Rule, RulesParams, RulesPolicy
from provider.reference import parse_reference
from provider.verdict import ArtifactResult, Decision
from provider.verifiers.base import Subject

SIG = "application/vnd.dev.cosign.artifact.sig.v1+json"
SBOM = "application/spdx+json"
DIGEST = "sha256:" + "a" * 64


def _subject(repo: str = "ghcr.io/org/app") -> Subject:
    return Subject(
        parse_reference(f"{repo}@{DIGEST}"), Descriptor("application/vnd.oci.image.manifest.v1+json", DIGEST, 1)
    )


def _r(verifier: str, n: int, succeeded: bool = True, *, error: str | None = None, **kw: Any) -> ArtifactResult:
    return ArtifactResult(
        digest="sha256:" + f"{n:064x}",
        artifact_type=kw.pop("artifact_type", SIG),
        verifier=verifier,
        verifier_type="test",
        succeeded=succeeded,
        reason="ok" if succeeded else "does not verify",
        error=error,
        **kw,
    )


def _required(*names: str, results: list[ArtifactResult]) -> Decision:
    return RequiredVerifiersPolicy(RequiredParams(tuple(names))).decide(_subject(), results)


def _rules(*rules: Rule, results: list[ArtifactResult], repo: str = "ghcr.io/org/app") -> Decision:
    return RulesPolicy(RulesParams(rules)).decide(_subject(repo), results)


def _rule(name: str, *verifiers: str, **kw: Any) -> Rule:
    kw.setdefault("scopes", ("*",))
    return Rule(name=name, verifiers=verifiers, **kw)


# -- required-verifiers --------------------------------------------------------------------------------------------


def test_required_allowed_names_the_satisfying_verifiers() -> None:
    decision = _required("sig", "sbom", results=[_r("sig", 1), _r("sbom", 2), _r("other", 3)])
    assert decision.allowed
    assert (decision.reason_code, decision.verifiers, decision.unmet) == (verdict.POLICY_SATISFIED, ("sig", "sbom"), ())


@pytest.mark.parametrize(
    ("results", "code"),
    [
        ([], verdict.NO_EVIDENCE),
        ([_r("sig", 1, False)], verdict.EVIDENCE_REJECTED),
        ([_r("sig", 1, False, error="SUBJECT_MISMATCH")], verdict.EVIDENCE_ERROR),
        ([_r("sig", 1, False, error="MANIFEST_INVALID"), _r("sig", 2, False)], verdict.EVIDENCE_REJECTED),
        ([_r("other", 1)], verdict.NO_EVIDENCE),
    ],
)
def test_required_denied_codes(results: list[ArtifactResult], code: str) -> None:
    decision = _required("sig", results=results)
    assert not decision.allowed
    assert decision.reason_code == code
    assert decision.unmet == (("sig", code),)


def test_required_lists_every_unmet_requirement_and_the_met_ones() -> None:
    decision = _required("sig", "sbom", "vuln", results=[_r("sig", 1), _r("vuln", 2, False)])
    assert decision.unmet == (("sbom", verdict.NO_EVIDENCE), ("vuln", verdict.EVIDENCE_REJECTED))
    assert decision.reason_code == verdict.NO_EVIDENCE  # the first unmet requirement's
    assert decision.verifiers == ("sig",)


def test_policies_without_requirements() -> None:
    assert _required(results=[_r("sig", 1)]).reason_code == verdict.EMPTY_POLICY
    assert DenyAllPolicy().decide(_subject(), [_r("sig", 1)]).reason_code == verdict.NO_POLICY
    assert _rules(results=[]).reason_code == verdict.EMPTY_POLICY


def test_a_policy_that_sets_no_code_gets_a_generic_one() -> None:
    assert Decision(True, "ok").reason_code == verdict.POLICY_SATISFIED
    assert Decision(False, "no").reason_code == verdict.POLICY_DENIED


# -- rules ---------------------------------------------------------------------------------------------------------


def test_rules_allowed_names_counted_and_nested_verifiers() -> None:
    signed_sbom = _r("sbom", 2, artifact_type=SBOM, nested=(_r("sbom-sig", 3),))
    decision = _rules(
        _rule("signed", "cosign", "notation"),
        _rule("sbom", "sbom", artifact_types=frozenset({SBOM}), nested_verifiers=("sbom-sig",)),
        results=[_r("cosign", 1), _r("notation", 4, False), signed_sbom],
    )
    assert decision.allowed
    assert decision.reason_code == verdict.POLICY_SATISFIED
    assert decision.verifiers == ("cosign", "sbom", "sbom-sig")  # notation failed: it met nothing


def test_rules_denied_codes_per_rule() -> None:
    decision = _rules(
        _rule("signed", "cosign"),
        _rule("sbom", "sbom", artifact_types=frozenset({SBOM})),
        _rule("vex", "vex"),
        _rule("attested", "intoto"),
        results=[
            _r("cosign", 1),
            _r("sbom", 2, artifact_type=SIG),  # not of the rule's type: no evidence for it
            _r("vex", 3, False),
            _r("intoto", 4, False, error="VERIFICATION_ERROR"),
        ],
    )
    assert not decision.allowed
    assert decision.unmet == (
        ("sbom", verdict.NO_EVIDENCE),
        ("vex", verdict.EVIDENCE_REJECTED),
        ("attested", verdict.EVIDENCE_ERROR),
    )
    assert decision.reason_code == verdict.NO_EVIDENCE
    assert decision.verifiers == ("cosign",)


def test_rules_match_all_codes_the_verifier_that_fell_short() -> None:
    rule = _rule("both", "cosign", "notation", match="all")
    assert _rules(rule, results=[_r("cosign", 1)]).unmet == (("both", verdict.NO_EVIDENCE),)
    assert _rules(rule, results=[_r("cosign", 1), _r("notation", 2, False)]).unmet == (
        ("both", verdict.EVIDENCE_REJECTED),
    )


def test_rules_that_do_not_apply_or_require_nothing() -> None:
    scoped = _rule("ours", "cosign", scopes=("ghcr.io/ours/*",))
    assert _rules(scoped, results=[_r("cosign", 1)]).reason_code == verdict.NO_RULE_APPLIES
    nothing = _rule("none", "vex", match="every", min_count=0)
    assert _rules(nothing, results=[]).reason_code == verdict.NO_EVIDENCE_REQUIRED
