"""The ``rules`` policy: parsing with paths, applicability by scope, any/all, minCount, artifact types, nesting."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from provider.config import Config, load_config_bytes
from provider.errors import ConfigError
from provider.oci import Descriptor
from provider.policies.base import policy_types
from provider.policies.rules import Rule, RulesParams, RulesPolicy
from provider.reference import parse_reference
from provider.registrations import load
from provider.verdict import ArtifactResult, Decision, Verdict
from provider.verifiers.base import Subject

SIG = "application/vnd.dev.cosign.artifact.sig.v1+json"
NOTATION = "application/vnd.cncf.notary.signature"
SBOM = "application/spdx+json"
IMAGE = "application/vnd.oci.image.manifest.v1+json"


def _subject(ref: str = "ghcr.io/org/app") -> Subject:
    digest = "sha256:" + "a" * 64
    return Subject(ref=parse_reference(f"{ref}@{digest}"), descriptor=Descriptor(IMAGE, digest, 100))


def _digest(n: int) -> str:
    return "sha256:" + f"{n:064x}"


def _r(
    verifier: str,
    n: int,
    succeeded: bool = True,
    *,
    artifact_type: str = SIG,
    reason: str | None = None,
    error: str | None = None,
    nested: tuple[ArtifactResult, ...] = (),
) -> ArtifactResult:
    return ArtifactResult(
        digest=_digest(n),
        artifact_type=artifact_type,
        verifier=verifier,
        verifier_type="test",
        succeeded=succeeded,
        reason=reason or ("ok" if succeeded else "signature does not verify"),
        nested=nested,
        error=error,
    )


def _rule(name: str = "r", verifiers: tuple[str, ...] = ("cosign-ci",), **kw: Any) -> Rule:
    kw.setdefault("scopes", ("*",))
    return Rule(name=name, verifiers=verifiers, **kw)


def _decide(rules: list[Rule], results: list[ArtifactResult], ref: str = "ghcr.io/org/app") -> Decision:
    return RulesPolicy(RulesParams(tuple(rules))).decide(_subject(ref), results)


# -- decisions -----------------------------------------------------------------------------------------------------


def test_one_successful_artifact_satisfies_the_default_rule() -> None:
    decision = _decide([_rule("signed-by-ci")], [_r("cosign-ci", 1, False), _r("cosign-ci", 2)])
    assert decision.allowed is True
    assert "signed-by-ci" in decision.reason
    assert decision.details["satisfied"] == {"signed-by-ci": [_digest(2)]}
    assert decision.details["unsatisfied"] == {}


def test_empty_rules_deny() -> None:
    decision = _decide([], [_r("cosign-ci", 1)])
    assert decision.allowed is False
    assert "no rules" in decision.reason


def test_no_applicable_rule_denies_naming_the_repository() -> None:
    decision = _decide([_rule(scopes=("ghcr.io/org/*",))], [_r("cosign-ci", 1)], ref="docker.io/library/nginx")
    assert decision.allowed is False
    assert "docker.io/library/nginx" in decision.reason


def test_scope_globs_follow_matches_any() -> None:
    rules = [_rule("org", scopes=("ghcr.io/org/*",)), _rule("registry-wide", scopes=("quay.io",))]
    assert _decide(rules, [_r("cosign-ci", 1)], ref="ghcr.io/org/app").allowed
    assert _decide(rules, [_r("cosign-ci", 1)], ref="quay.io/any/thing").allowed
    assert not _decide(rules, [_r("cosign-ci", 1)], ref="ghcr.io/other/app").allowed


def test_every_applicable_rule_must_hold_and_inapplicable_ones_are_ignored() -> None:
    rules = [
        _rule("signed", ("cosign-ci",)),
        _rule("sbom", ("sbom-check",), scopes=("ghcr.io/org/prod-*",)),
    ]
    signed_only = [_r("cosign-ci", 1)]
    assert _decide(rules, signed_only, ref="ghcr.io/org/dev-app").allowed
    decision = _decide(rules, signed_only, ref="ghcr.io/org/prod-app")
    assert decision.allowed is False
    assert decision.reason.startswith("rule sbom:")
    assert "sbom-check: no matching artifact found" in decision.reason
    assert set(decision.details["satisfied"]) == {"signed"}
    assert set(decision.details["unsatisfied"]) == {"sbom"}
    both = [*signed_only, _r("sbom-check", 2, artifact_type=SBOM)]
    assert _decide(rules, both, ref="ghcr.io/org/prod-app").allowed


def test_match_any_counts_distinct_digests_across_verifiers() -> None:
    rule = _rule(verifiers=("cosign-ci", "notation-ci"), min_count=2)
    assert not _decide([rule], [_r("cosign-ci", 1)]).allowed
    assert _decide([rule], [_r("cosign-ci", 1), _r("notation-ci", 2, artifact_type=NOTATION)]).allowed
    # The same artifact judged twice is still one artifact.
    same = [_r("cosign-ci", 1), _r("notation-ci", 1)]
    decision = _decide([rule], same)
    assert decision.allowed is False
    assert "1 of 2 verified artifacts from cosign-ci or notation-ci" in decision.reason


def test_match_all_needs_each_listed_verifier() -> None:
    rule = _rule("dual", ("cosign-ci", "notation-ci"), match="all")
    decision = _decide([rule], [_r("cosign-ci", 1), _r("notation-ci", 2, False, reason="untrusted signer CN=x")])
    assert decision.allowed is False
    assert "notation-ci: 0 of 1 required" in decision.reason
    assert "untrusted signer CN=x" in decision.reason
    assert "cosign-ci:" not in decision.reason
    assert _decide([rule], [_r("cosign-ci", 1), _r("notation-ci", 2)]).allowed


def test_match_all_applies_min_count_per_verifier() -> None:
    rule = _rule(verifiers=("cosign-ci", "notation-ci"), match="all", min_count=2)
    results = [_r("cosign-ci", 1), _r("cosign-ci", 2), _r("notation-ci", 3)]
    decision = _decide([rule], results)
    assert decision.allowed is False
    assert "notation-ci: 1 of 2 required" in decision.reason
    assert _decide([rule], [*results, _r("notation-ci", 4)]).allowed


def test_min_count_of_valid_signatures() -> None:
    rule = _rule(min_count=3)
    results = [_r("cosign-ci", 1), _r("cosign-ci", 2), _r("cosign-ci", 3, False)]
    decision = _decide([rule], results)
    assert decision.allowed is False
    assert "2 of 3" in decision.reason
    assert "2 verified" in decision.reason
    assert _decide([rule], [*results, _r("cosign-ci", 4)]).allowed


def test_error_results_never_count_even_if_marked_succeeded() -> None:
    odd = _r("cosign-ci", 1, True, error="INTERNAL_ERROR", reason="verifier failed: ValueError")
    decision = _decide([_rule()], [odd])
    assert decision.allowed is False
    assert "INTERNAL_ERROR" in decision.reason


def test_artifact_types_filter_results() -> None:
    rule = _rule(artifact_types=frozenset({NOTATION}))
    decision = _decide([rule], [_r("cosign-ci", 1, artifact_type=SIG)])
    assert decision.allowed is False
    assert f"no artifact of type {NOTATION} (found {SIG})" in decision.reason
    assert _decide([rule], [_r("cosign-ci", 2, artifact_type=NOTATION)]).allowed


def test_nested_results_count_only_through_nested() -> None:
    nested_sig = _r("notation-ci", 9, artifact_type=NOTATION)
    sbom = _r("sbom-check", 5, artifact_type=SBOM, nested=(nested_sig,))
    # A nested success is not a top-level artifact for the rule.
    assert not _decide([_rule(verifiers=("notation-ci",))], [sbom]).allowed
    signed_sbom = _rule("signed-sbom", ("sbom-check",), nested_verifiers=("notation-ci",))
    assert _decide([signed_sbom], [sbom]).allowed
    bad_nested = _r("notation-ci", 9, False, artifact_type=NOTATION, reason="bad signature on sbom")
    decision = _decide([signed_sbom], [_r("sbom-check", 5, artifact_type=SBOM, nested=(bad_nested,))])
    assert decision.allowed is False
    assert "not verified by notation-ci (bad signature on sbom)" in decision.reason
    unsigned = _decide([signed_sbom], [_r("sbom-check", 5, artifact_type=SBOM)])
    assert not unsigned.allowed
    assert "no nested artifact" in unsigned.reason


def test_nested_error_results_do_not_count() -> None:
    nested = _r("notation-ci", 9, True, artifact_type=NOTATION, error="FETCH_FAILED")
    rule = _rule(verifiers=("sbom-check",), nested_verifiers=("notation-ci",))
    assert not _decide([rule], [_r("sbom-check", 5, artifact_type=SBOM, nested=(nested,))]).allowed


def test_reason_names_every_unsatisfied_rule_and_abbreviates_long_lists() -> None:
    rules = [_rule("a", ("cosign-ci",)), _rule("b", ("notation-ci",))]
    results = [_r("cosign-ci", n, False, reason=f"failure {n} " + "x" * 300) for n in range(1, 6)]
    decision = _decide(rules, results)
    assert decision.allowed is False
    assert "rule a:" in decision.reason and "rule b:" in decision.reason
    assert "(+2 more)" in decision.reason
    assert "x" * 300 not in decision.reason
    assert "failure 4" not in decision.reason


def test_verdict_document_carries_the_rules_details() -> None:
    decision = _decide([_rule("signed")], [_r("cosign-ci", 1)])
    verdict = Verdict("ghcr.io/org/app@x", "x", IMAGE, decision, [_r("cosign-ci", 1)], "now", "gen")
    doc = verdict.to_json()
    assert doc["allowed"] is doc["succeeded"] is True
    assert doc["policy"] == {"type": "rules", "satisfied": {"signed": [_digest(1)]}, "unsatisfied": {}}


# -- configuration -------------------------------------------------------------------------------------------------


@pytest.fixture
def key_file(tmp_path: Path) -> Path:
    key = ec.generate_private_key(ec.SECP256R1()).public_key()
    path = tmp_path / "cosign.pub"
    path.write_bytes(key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    return path


def _config(tmp_path: Path, policy: str) -> Config:
    verifiers = [{"name": name, "type": "cosign", "keys": ["cosign.pub"]} for name in ("cosign-ci", "notation-ci")]
    document = {"verifiers": verifiers, "policy": yaml.safe_load(textwrap.dedent(policy))}
    return load_config_bytes(yaml.safe_dump(document).encode(), tmp_path)


def _problems(tmp_path: Path, policy: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        _config(tmp_path, policy)
    return info.value.problems


def test_the_documented_schema_parses(key_file: Path, tmp_path: Path) -> None:
    config = _config(
        tmp_path,
        """\
        type: rules
        rules:
          - name: signed-by-ci
            scopes: ["ghcr.io/org/*"]
            verifiers: [cosign-ci, notation-ci]
            artifactTypes: [application/vnd.cncf.notary.signature]
            match: all
            minCount: 2
            nested:
              verifiers: [notation-ci]
          - verifiers: [cosign-ci]
        """,
    )
    assert config.policy.type == "rules"
    first, second = config.policy.params.rules
    assert first == Rule(
        name="signed-by-ci",
        scopes=("ghcr.io/org/*",),
        verifiers=("cosign-ci", "notation-ci"),
        artifact_types=frozenset({NOTATION}),
        match="all",
        min_count=2,
        nested_verifiers=("notation-ci",),
    )
    assert second == Rule(name="rules[1]", scopes=("*",), verifiers=("cosign-ci",))


def test_rules_is_registered_as_a_builtin() -> None:
    load()
    assert policy_types.get("rules") is not None


def test_empty_rules_parse_and_deny(key_file: Path, tmp_path: Path) -> None:
    config = _config(tmp_path, "type: rules\nrules: []\n")
    plugin = policy_types.get("rules")
    assert plugin is not None
    assert plugin.create(config.policy).decide(_subject(), [_r("cosign-ci", 1)]).allowed is False


def test_unknown_verifier_is_reported_with_its_path(key_file: Path, tmp_path: Path) -> None:
    problems = _problems(
        tmp_path,
        """\
        type: rules
        rules:
          - verifiers: [cosign-ci]
          - verifiers: [x]
            nested: {verifiers: [cosign-ci, y]}
        """,
    )
    assert "policy.rules[1].verifiers[0]: no verifier named 'x'" in problems
    assert "policy.rules[1].nested.verifiers[1]: no verifier named 'y'" in problems


def test_every_problem_is_reported_with_its_path(key_file: Path, tmp_path: Path) -> None:
    problems = _problems(
        tmp_path,
        """\
        type: rules
        rules:
          - name: a
            verifiers: []
            match: most
            minCount: 0
            scopes: []
            min_count: 2
          - name: a
            verifiers: [cosign-ci]
            nested: {verifier: [cosign-ci]}
          - scopes: ["*"]
          - just-a-string
        """,
    )
    expected = {
        "policy.rules[0].verifiers: must name at least one verifier",
        "policy.rules[0].match: must be one of any, all, every; got 'most'",
        "policy.rules[0].minCount: 0 is allowed only with match: every (a rule that asks for nothing would allow "
        "anything)",
        "policy.rules[0].scopes: must list at least one pattern (omit it to match every repository)",
        "policy.rules[0].min_count: unknown key (keys are camelCase: minCount)",
        "policy.rules[1].name: duplicate rule name 'a'",
        "policy.rules[1].nested.verifiers: required",
        "policy.rules[1].nested.verifier: unknown key",
        "policy.rules[2].verifiers: required",
        "policy.rules[3]: expected a mapping, got a string",
    }
    assert expected <= set(problems), sorted(set(problems) - expected)


def test_match_every_requires_each_judged_artifact_to_count() -> None:
    """Every VEX document must carry a valid signature; with minCount 0, having none is fine."""
    sig_ok = _r("cosign-ci", 90, artifact_type="application/vnd.dev.referee.cosign-legacy.sig")
    signed = _r("vex", 1, artifact_type="application/vnd.openvex+json", nested=(sig_ok,))
    unsigned = _r("vex", 2, artifact_type="application/vnd.openvex+json")
    rule = _rule("vex-signed", ("vex",), match="every", min_count=0, nested_verifiers=("cosign-ci",))
    image_signed = _rule("signed", ("cosign-ci",))
    signature = _r("cosign-ci", 91)
    assert _decide([image_signed, rule], [signature]).allowed is True
    assert _decide([image_signed, rule], [signature, signed]).allowed is True
    only_zero = _decide([rule], [])
    assert only_zero.allowed is False
    assert "require no evidence (minCount 0)" in only_zero.reason
    mixed = _decide([image_signed, rule], [signature, signed, unsigned])
    assert mixed.allowed is False
    assert "rule vex-signed: 1 of 2 artifacts from vex do not count" in mixed.reason
    assert "not verified by cosign-ci" in mixed.reason
    failed = _decide([rule], [_r("vex", 3, False, artifact_type="application/vnd.openvex+json", nested=(sig_ok,))])
    assert failed.allowed is False
    at_least_one = _rule("vex-signed", ("vex",), match="every", min_count=1, nested_verifiers=("cosign-ci",))
    assert _decide([at_least_one], []).allowed is False
