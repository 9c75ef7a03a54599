package refereerequiredevidence_test

import data.refereerequiredevidence as t
import rego.v1

# -- fixtures -------------------------------------------------------------------------------------------------------

pod(images) := {
  "kind": {"group": "", "version": "v1", "kind": "Pod"},
  "namespace": "prod",
  "operation": "CREATE",
  "object": {
    "apiVersion": "v1",
    "kind": "Pod",
    "metadata": {"name": "app", "namespace": "prod"},
    "spec": {"containers": [{"name": sprintf("c%d", [i]), "image": image} | some i, image in images]},
  },
}

run(r, parameters) := {"review": r, "parameters": parameters}

msgs(violations) := {v.msg | some v in violations}

digest(n) := sprintf("sha256:%064d", [n])

reason(succeeded) := "ok" if succeeded else := "signature does not verify"

artifact(n, verifier, succeeded, details) := {
  "digest": digest(n),
  "artifactType": "application/vnd.test",
  "verifier": verifier,
  "verifierType": "test",
  "succeeded": succeeded,
  "reason": reason(succeeded),
  "details": details,
  "nested": [],
}

signature := artifact(1, "cosign-ci", true, {})

bad_signature := artifact(2, "cosign-ci", false, {})

qa := artifact(3, "attest-qa", true, {"predicateType": "https://example.com/qa/v1"})

unverified_qa := artifact(4, "attest-qa", false, {"predicateType": "https://example.com/qa/v1"})

provenance := artifact(5, "slsa", true, {
  "predicateType": "https://slsa.dev/provenance/v1",
  "builderId": "https://github.com/org/.github/workflows/build.yml@refs/heads/main",
})

scan(n, severity) := artifact(n, "vulns", true, {"highestSeverity": severity})

verdict(allowed, artifacts) := {"schemaVersion": "referee.verdict/v1", "allowed": allowed, "artifacts": artifacts}

one(artifacts) := one_for("reg/app:1", artifacts)

one_for(key, artifacts) := {
  "responses": [[key, verdict(true, artifacts)]],
  "errors": [],
  "status_code": 0,
  "system_error": "",
}

unreachable := {"responses": null, "errors": null, "status_code": 500, "system_error": "connection refused"}

app := pod(["reg/app:1"])

# -- required verifiers ---------------------------------------------------------------------------------------------

test_required_verifier_that_succeeded_is_enough if {
  v := t.violation with input as run(app, {"requiredVerifiers": ["cosign-ci"]})
    with external_data as one([bad_signature, signature])
  count(v) == 0
}

test_required_verifier_without_success_denies_with_reasons if {
  v := t.violation with input as run(app, {"requiredVerifiers": ["cosign-ci", "attest-qa"]})
    with external_data as one([bad_signature, qa])
  msgs(v) == {concat("", [
    "image reg/app:1: verifier cosign-ci has no successful artifact (",
    "sha256:000000000000: signature does not verify)",
  ])}
}

test_required_verifier_absent_denies if {
  v := t.violation with input as run(app, {"requiredVerifiers": ["notation-ci"]}) with external_data as one([signature])
  msgs(v) == {"image reg/app:1: verifier notation-ci has no successful artifact (no artifact was checked by it)"}
}

test_artifacts_with_an_error_are_not_evidence if {
  odd := object.union(signature, {"error": "INTERNAL_ERROR"})
  v := t.violation with input as run(app, {"requiredVerifiers": ["cosign-ci"]}) with external_data as one([odd])
  count(v) == 1
}

test_evidence_from_a_denied_verdict_does_not_count if {
  denied := object.union(verdict(false, [signature]), {"reason": "rule signed-scan: unsigned report"})
  mock := {"responses": [["reg/app:1", denied]], "errors": [], "status_code": 0, "system_error": ""}
  v := t.violation with input as run(app, {"requiredVerifiers": ["cosign-ci"]}) with external_data as mock
  msgs(v) == {concat("", [
    "image reg/app:1: Referee denied it (rule signed-scan: unsigned report); ",
    "evidence from a denied verdict does not count",
  ])}
}

test_require_allowed_can_be_turned_off if {
  mock := {
    "responses": [["reg/app:1", verdict(false, [signature])]],
    "errors": [], "status_code": 0, "system_error": "",
  }
  parameters := {"requiredVerifiers": ["cosign-ci"], "requireAllowed": false}
  v := t.violation with input as run(app, parameters) with external_data as mock
  count(v) == 0
}

test_required_nested_signature if {
  signed_scan := object.union(scan(6, "LOW"), {"nested": [artifact(9, "cosign-scanner", true, {})]})
  parameters := {"maxSeverity": "HIGH", "requireNestedVerifiers": ["cosign-scanner"]}
  ok := t.violation with input as run(app, parameters) with external_data as one([signed_scan])
  count(ok) == 0
  unsigned := t.violation with input as run(app, parameters) with external_data as one([scan(6, "LOW")])
  msgs(unsigned) == {"image reg/app:1: no verified vulnerability report (maxSeverity HIGH; rejected: sha256:000000000000: ok)"}
}

test_unknown_findings_are_not_hidden_by_a_known_severity if {
  mixed := artifact(6, "vulns", true, {"highestSeverity": "LOW", "severityCounts": {"LOW": 1, "UNKNOWN": 2}})
  v := t.violation with input as run(app, {"maxSeverity": "LOW"}) with external_data as one([mixed])
  msgs(v) == {concat("", [
    "image reg/app:1: vulnerability report sha256:000000000000 has highest severity LOW ",
    "(2 without a rating), above the allowed LOW",
  ])}
  relaxed := t.violation with input as run(app, {"maxSeverity": "LOW", "unknownSeverityAs": "LOW"})
    with external_data as one([mixed])
  count(relaxed) == 0
}

# -- attestation predicate types ------------------------------------------------------------------------------------

test_required_predicate_type_present if {
  parameters := {"requiredPredicateTypes": ["https://example.com/qa/v1", "https://slsa.dev/provenance/v1"]}
  v := t.violation with input as run(app, parameters) with external_data as one([qa, provenance])
  count(v) == 0
}

test_predicate_type_only_on_an_unverified_attestation_denies if {
  parameters := {"requiredPredicateTypes": ["https://example.com/qa/v1"]}
  v := t.violation with input as run(app, parameters) with external_data as one([unverified_qa, signature])
  msgs(v) == {"image reg/app:1: no verified attestation with predicate type https://example.com/qa/v1"}
}

# -- vulnerability severity -----------------------------------------------------------------------------------------

test_severity_at_the_maximum_is_admitted if {
  v := t.violation with input as run(app, {"maxSeverity": "HIGH"}) with external_data as one([scan(6, "HIGH")])
  count(v) == 0
}

test_severity_above_the_maximum_denies if {
  v := t.violation with input as run(app, {"maxSeverity": "HIGH"})
    with external_data as one([scan(6, "LOW"), scan(7, "CRITICAL")])
  msgs(v) == {concat("", [
    "image reg/app:1: vulnerability report sha256:000000000000 has highest severity CRITICAL ",
    "(0 without a rating), above the allowed HIGH",
  ])}
}

test_severity_names_are_case_insensitive if {
  v := t.violation with input as run(app, {"maxSeverity": "medium"}) with external_data as one([scan(6, "low")])
  count(v) == 0
}

test_no_vulnerability_report_denies if {
  v := t.violation with input as run(app, {"maxSeverity": "CRITICAL"}) with external_data as one([signature])
  msgs(v) == {"image reg/app:1: no verified vulnerability report (maxSeverity CRITICAL)"}
}

test_unverified_report_is_not_evidence if {
  failed := object.union(scan(6, "NONE"), {"succeeded": false, "reason": "CVE-2026-1 is on the deny-list"})
  v := t.violation with input as run(app, {"maxSeverity": "CRITICAL"}) with external_data as one([failed])
  msgs(v) == {concat("", [
    "image reg/app:1: no verified vulnerability report (maxSeverity CRITICAL; ",
    "rejected: sha256:000000000000: CVE-2026-1 is on the deny-list)",
  ])}
}

test_unknown_severity_ranks_as_high_by_default if {
  high := t.violation with input as run(app, {"maxSeverity": "HIGH"}) with external_data as one([scan(6, "UNKNOWN")])
  count(high) == 0
  medium := t.violation with input as run(app, {"maxSeverity": "MEDIUM"})
    with external_data as one([scan(6, "UNKNOWN")])
  count(medium) == 1
  strict := t.violation with input as run(app, {"maxSeverity": "HIGH", "unknownSeverityAs": "CRITICAL"})
    with external_data as one([scan(6, "UNKNOWN")])
  count(strict) == 1
}

test_unrecognised_severity_denies if {
  v := t.violation with input as run(app, {"maxSeverity": "CRITICAL"}) with external_data as one([scan(6, "SEVERE")])
  count(v) == 1
  n := t.violation with input as run(app, {"maxSeverity": "CRITICAL"}) with external_data as one([scan(6, 3)])
  count(n) == 1
}

test_invalid_max_severity_denies if {
  v := t.violation with input as run(app, {"maxSeverity": "LOWISH"}) with external_data as one([scan(6, "NONE")])
  "RefereeRequiredEvidence maxSeverity \"LOWISH\" is not one of NONE, LOW, MEDIUM, HIGH, CRITICAL" in msgs(v)
}

# -- SLSA builder ---------------------------------------------------------------------------------------------------

test_allowed_builder_exact_or_prefix if {
  exact := {"allowedBuilderIds": ["https://github.com/org/.github/workflows/build.yml@refs/heads/main"]}
  v1 := t.violation with input as run(app, exact) with external_data as one([provenance])
  count(v1) == 0
  prefix := {"allowedBuilderIds": ["https://github.com/org/.github/workflows/build.yml@*"]}
  v2 := t.violation with input as run(app, prefix) with external_data as one([provenance])
  count(v2) == 0
}

test_other_builder_denies_naming_what_was_found if {
  parameters := {"allowedBuilderIds": ["https://github.com/org/.github/workflows/release.yml@*"]}
  v := t.violation with input as run(app, parameters) with external_data as one([provenance])
  msgs(v) == {concat("", [
    "image reg/app:1: no verified provenance from an allowed builder (found: ",
    "[\"https://github.com/org/.github/workflows/build.yml@refs/heads/main\"])",
  ])}
}

# -- configuration and provider failures ----------------------------------------------------------------------------

test_a_constraint_without_requirements_denies if {
  v := t.violation with input as run(app, {}) with external_data as one([signature])
  count(v) == 1
}

test_every_requirement_is_checked_per_image if {
  mock := {
    "responses": [
      ["reg/app:1", verdict(true, [signature, qa, scan(6, "LOW"), provenance])],
      ["reg/db:1", verdict(true, [signature])],
    ],
    "errors": [], "status_code": 200, "system_error": "",
  }
  parameters := {
    "requiredVerifiers": ["cosign-ci"],
    "requiredPredicateTypes": ["https://example.com/qa/v1"],
    "maxSeverity": "HIGH",
    "allowedBuilderIds": ["https://github.com/org/*"],
  }
  v := t.violation with input as run(pod(["reg/app:1", "reg/db:1"]), parameters) with external_data as mock
  {x.details.image | some x in v} == {"reg/db:1"}
  count(v) == 3
}

test_provider_failures_deny if {
  parameters := {"requiredVerifiers": ["cosign-ci"]}
  down := t.violation with input as run(app, parameters) with external_data as unreachable
  msgs(down) == {"Referee verification unavailable: connection refused"}
  errors := {"responses": [], "errors": [["reg/app:1", "REFERENCE_INVALID: bad"]], "status_code": 200}
  item := t.violation with input as run(app, parameters) with external_data as errors
  msgs(item) == {"image reg/app:1 denied by Referee: REFERENCE_INVALID: bad"}
  missing := {"responses": [], "errors": [], "status_code": 200, "system_error": ""}
  left_out := t.violation with input as run(app, parameters) with external_data as missing
  msgs(left_out) == {"image reg/app:1: no verdict from Referee"}
}

test_exemptions_and_break_glass_apply if {
  parameters := {
    "requiredVerifiers": ["notation-ci"],
    "exemptImages": ["reg/app:*"],
    "exemptNamespaces": ["dev-*"],
    "breakGlass": {"enabled": true},
  }
  exempt := t.violation with input as run(app, parameters) with external_data as unreachable
  count(exempt) == 0
  other := pod(["reg/db:1"])
  denied := t.violation with input as run(other, parameters) with external_data as one_for("reg/db:1", [signature])
  msgs(denied) == {"image reg/db:1: verifier notation-ci has no successful artifact (no artifact was checked by it)"}
  dev := object.union(other, {"namespace": "dev-alice"})
  in_dev := t.violation with input as run(dev, parameters) with external_data as unreachable
  count(in_dev) == 0
  glass := object.union(other, {"object": {"metadata": {"annotations": {"referee.dev/break-glass": "INC-7"}}}})
  broken := t.violation with input as run(glass, parameters) with external_data as unreachable
  count(broken) == 0
}
