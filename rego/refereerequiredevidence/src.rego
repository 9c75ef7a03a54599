# RefereeRequiredEvidence: require facts from Referee's verdict (see docs/verdict.md, "Fields used by the
# templates"): named verifiers that succeeded, attestation predicate types, the highest vulnerability severity,
# and the SLSA builder id. Only artifacts Referee verified (succeeded == true, no error) are evidence.
#
# Rego v1 syntax with explicit future.keywords imports (see refereeverifiedimages). Fails closed like it:
# provider errors, system_error, missing keys and `null` lists deny; status_code is never consulted.
package refereerequiredevidence

import future.keywords.contains
import future.keywords.if
import future.keywords.in

# --- referee common: begin (identical in every Referee template; scripts/gen_gatekeeper.py checks it) ---

param(name, fallback) := value if {
  value := input.parameters[name]
  value != null
} else := fallback

provider := name if {
  name := param("provider", "")
  is_string(name)
  name != ""
} else := "referee-verify"

obj := input.review.object

kind := k if {
  k := input.review.kind.kind
  is_string(k)
} else := object.get(obj, "kind", "")

namespace := ns if {
  ns := input.review.namespace
  is_string(ns)
  ns != ""
} else := object.get(object.get(obj, "metadata", {}), "namespace", "")

object_name := name if {
  name := obj.metadata.name
  is_string(name)
  name != ""
} else := sprintf("%v*", [obj.metadata.generateName]) if {
  is_string(obj.metadata.generateName)
} else := "(unnamed)"

template_kinds := {"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "ReplicationController", "Job"}

pod_specs_of(o) := {spec | kind == "Pod"; spec := o.spec} | {spec |
  kind in template_kinds
  spec := o.spec.template.spec
} | {spec | kind == "CronJob"; spec := o.spec.jobTemplate.spec.template.spec}

override_metadata contains obj.metadata

override_metadata contains obj.spec.template.metadata if kind in template_kinds

override_metadata contains obj.spec.jobTemplate.spec.template.metadata if kind == "CronJob"

images_of(o) := {image |
  some spec in pod_specs_of(o)
  some field in ["containers", "initContainers", "ephemeralContainers"]
  some container in object.get(spec, field, [])
  image := container.image
  is_string(image)
}

images := images_of(obj)

# On UPDATE only the images the update brings in are checked. The others were checked when they came in (or
# predate the constraint, and audit reports them), so updates that leave images alone (labels, a controller
# removing a finalizer while the object is deleted) never depend on Referee being reachable.
previous_images := images_of(input.review.oldObject) if {
  input.review.operation == "UPDATE"
} else := set()

# An exact value, or a prefix when the pattern ends in `*` (gatekeeper-library's exemptImages semantics).
pattern_matches(value, pattern) if {
  not endswith(pattern, "*")
  value == pattern
}

pattern_matches(value, pattern) if {
  endswith(pattern, "*")
  startswith(value, trim_suffix(pattern, "*"))
}

image_exempt(image) if {
  some pattern in param("exemptImages", [])
  pattern_matches(image, pattern)
}

namespace_exempt if {
  some pattern in param("exemptNamespaces", [])
  pattern_matches(namespace, pattern)
}

break_glass := param("breakGlass", {})

break_glass_annotation := name if {
  name := break_glass.annotation
  is_string(name)
  name != ""
} else := "referee.dev/break-glass"

break_glass_reasons contains reason if {
  break_glass.enabled == true
  some metadata in override_metadata
  reason := metadata.annotations[break_glass_annotation]
  is_string(reason)
  trim_space(reason) != ""
}

break_glass_active if count(break_glass_reasons) > 0

report_mode if break_glass.report == true

# An object being deleted only waits for its finalizers to go: nothing it does then is checked, so controllers
# can always finish a delete (the Assigns may still rewrite its images on that update; that starts nothing).
deleting if {
  input.review.operation == "UPDATE"
  obj.metadata.deletionTimestamp
}

checked_images contains image if {
  not deleting
  some image in images
  not image in previous_images
  not image_exempt(image)
}

# With the Assigns (gatekeeper/mutation) every tag is pinned before validation; requireDigest denies an image
# they left unpinned (the Assigns use failurePolicy Ignore, so Referee outages and exemptions pass them).
pinned(image) if regex.match(`@sha256:[a-f0-9]{64}$`, image)

pinned(image) if regex.match(`@sha512:[a-f0-9]{128}$`, image)

problems contains {"image": image, "msg": msg} if {
  param("requireDigest", false) == true
  some image in checked_images
  not pinned(image)
  msg := sprintf("image %v is not pinned to a digest: the referee-mutate Assigns could not resolve it (requireDigest)", [
    image,
  ])
}

keys := [image | some image in checked_images]

response := external_data({"provider": provider, "keys": keys}) if count(keys) > 0

response_is_object if is_object(response)

system_error := text if {
  text := response.system_error
  is_string(text)
} else := "" if {
  not response.system_error
} else := sprintf("%v", [response.system_error])

answered contains key if some [key, _] in response.responses

answered contains key if some [key, _] in response.errors

verdicts contains [key, verdict] if some [key, verdict] in response.responses

problems contains {"image": "", "msg": msg} if {
  count(keys) > 0
  not response_is_object
  msg := sprintf("Referee verification unavailable: external_data(%v) returned no response", [provider])
}

problems contains {"image": "", "msg": msg} if {
  system_error != ""
  msg := sprintf("Referee verification unavailable: %v", [system_error])
}

problems contains {"image": key, "msg": msg} if {
  some [key, error] in response.errors
  msg := sprintf("image %v denied by Referee: %v", [key, error])
}

problems contains {"image": key, "msg": msg} if {
  response_is_object
  system_error == ""
  some key in keys
  not key in answered
  msg := sprintf("image %v: no verdict from Referee", [key])
}

enforcing if {
  not report_mode
  not namespace_exempt
  not break_glass_active
}

violation contains {"msg": problem.msg, "details": {"image": problem.image}} if {
  enforcing
  some problem in problems
}

overridden := "nothing (every image passed)" if {
  count(problems) == 0
} else := concat("; ", sort([problem.msg | some problem in problems]))

violation contains {"msg": msg, "details": details} if {
  report_mode
  break_glass_active
  not namespace_exempt
  reasons := concat(", ", sort([reason | some reason in break_glass_reasons]))
  msg := sprintf("break-glass override %v=%q admitted %v %v; overridden: %v", [
    break_glass_annotation, reasons, kind, object_name, overridden,
  ])
  details := {"annotation": break_glass_annotation, "reason": reasons, "images": keys}
}

# --- referee common: end ---

severity_rank := {"NONE": 0, "LOW": 1, "MEDIUM": 2, "HIGH": 3, "CRITICAL": 4}

severity_names := "NONE, LOW, MEDIUM, HIGH, CRITICAL"

valid_severity(severity) if upper(severity) in object.keys(severity_rank)

# UNKNOWN ranks as `unknownSeverityAs` (HIGH by default); anything unrecognised ranks above CRITICAL.
rank(severity) := severity_rank[upper(severity)] if {
  is_string(severity)
  valid_severity(severity)
} else := severity_rank[upper(param("unknownSeverityAs", "HIGH"))] if {
  is_string(severity)
  upper(severity) == "UNKNOWN"
} else := 5

required_verifiers := param("requiredVerifiers", [])

required_predicate_types := param("requiredPredicateTypes", [])

max_severity := param("maxSeverity", "")

allowed_builder_ids := param("allowedBuilderIds", [])

# Evidence counts only from a verdict Referee allowed (its policy may require signed reports, signed VEX, …).
require_allowed := param("requireAllowed", true)

# Optionally: an artifact counts only when one of its nested results (its own signature) succeeded with one of these.
require_nested_verifiers := param("requireNestedVerifiers", [])

has_requirement if count(required_verifiers) > 0

has_requirement if count(required_predicate_types) > 0

has_requirement if max_severity != ""

has_requirement if count(allowed_builder_ids) > 0

artifacts(verdict) := list if {
  list := verdict.artifacts
  is_array(list)
} else := []

has_error(artifact) if {
  error := artifact.error
  error != null
  error != ""
}

nested_ok(artifact) if count(require_nested_verifiers) == 0

nested_ok(artifact) if {
  some nested in object.get(artifact, "nested", [])
  nested.succeeded == true
  not has_error(nested)
  nested.verifier in require_nested_verifiers
}

evidence(verdict) := [artifact |
  some artifact in artifacts(verdict)
  artifact.succeeded == true
  not has_error(artifact)
  nested_ok(artifact)
]

verdict_allowed(verdict) if verdict.allowed == true

problems contains {"image": key, "msg": msg} if {
  require_allowed == true
  some [key, verdict] in verdicts
  not verdict_allowed(verdict)
  msg := sprintf("image %v: Referee denied it (%v); evidence from a denied verdict does not count", [
    key, object.get(verdict, "reason", "no reason"),
  ])
}

short(artifact) := substring(artifact.digest, 0, 19) if is_string(artifact.digest) else := "(no digest)"

failed_by(verdict, name) := [sprintf("%v: %v", [short(artifact), object.get(artifact, "reason", "no reason")]) |
  some artifact in artifacts(verdict)
  artifact.verifier == name
  not artifact in evidence(verdict)
]

why_missing(verdict, name) := "no artifact was checked by it" if {
  count(failed_by(verdict, name)) == 0
} else := concat("; ", array.slice(failed_by(verdict, name), 0, 3))

problems contains {"image": "", "msg": msg} if {
  count(keys) > 0
  not has_requirement
  msg := concat("", [
    "RefereeRequiredEvidence constraint lists no requirement ",
    "(set requiredVerifiers, requiredPredicateTypes, maxSeverity or allowedBuilderIds)",
  ])
}

problems contains {"image": "", "msg": msg} if {
  max_severity != ""
  not valid_severity(max_severity)
  msg := sprintf("RefereeRequiredEvidence maxSeverity %q is not one of %v", [max_severity, severity_names])
}

verifier_succeeded(verdict, name) if {
  some artifact in evidence(verdict)
  artifact.verifier == name
}

problems contains {"image": key, "msg": msg} if {
  some [key, verdict] in verdicts
  some name in required_verifiers
  not verifier_succeeded(verdict, name)
  msg := sprintf("image %v: verifier %v has no successful artifact (%v)", [key, name, why_missing(verdict, name)])
}

predicate_present(verdict, predicate_type) if {
  some artifact in evidence(verdict)
  artifact.details.predicateType == predicate_type
}

problems contains {"image": key, "msg": msg} if {
  some [key, verdict] in verdicts
  some predicate_type in required_predicate_types
  not predicate_present(verdict, predicate_type)
  msg := sprintf("image %v: no verified attestation with predicate type %v", [key, predicate_type])
}

severity_reports(verdict) := [artifact |
  some artifact in evidence(verdict)
  artifact.details.highestSeverity
]

rejected_reports(verdict) := [sprintf("%v: %v", [short(artifact), object.get(artifact, "reason", "no reason")]) |
  some artifact in artifacts(verdict)
  artifact.details.highestSeverity
  not artifact in evidence(verdict)
]

why_no_report(verdict) := "" if {
  count(rejected_reports(verdict)) == 0
} else := sprintf("; rejected: %v", [concat("; ", array.slice(rejected_reports(verdict), 0, 3))])

problems contains {"image": key, "msg": msg} if {
  max_severity != ""
  some [key, verdict] in verdicts
  count(severity_reports(verdict)) == 0
  msg := sprintf("image %v: no verified vulnerability report (maxSeverity %v%v)", [
    key, max_severity, why_no_report(verdict),
  ])
}

# highestSeverity names the highest *known* severity; findings without a rating are counted separately.
unknown_findings(report) := n if {
  n := report.details.severityCounts.UNKNOWN
  is_number(n)
} else := 0

report_rank(report) := max({rank(report.details.highestSeverity), rank("UNKNOWN")}) if {
  unknown_findings(report) > 0
} else := rank(report.details.highestSeverity)

problems contains {"image": key, "msg": msg} if {
  max_severity != ""
  some [key, verdict] in verdicts
  some report in severity_reports(verdict)
  report_rank(report) > rank(max_severity)
  msg := sprintf("image %v: vulnerability report %v has highest severity %v (%v without a rating), above the allowed %v", [
    key, short(report), report.details.highestSeverity, unknown_findings(report), max_severity,
  ])
}

builder_allowed(verdict) if {
  some artifact in evidence(verdict)
  builder := artifact.details.builderId
  is_string(builder)
  some pattern in allowed_builder_ids
  pattern_matches(builder, pattern)
}

problems contains {"image": key, "msg": msg} if {
  count(allowed_builder_ids) > 0
  some [key, verdict] in verdicts
  not builder_allowed(verdict)
  found := sort({builder | some artifact in evidence(verdict); builder := artifact.details.builderId})
  msg := sprintf("image %v: no verified provenance from an allowed builder (found: %v)", [key, found])
}
