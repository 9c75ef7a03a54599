# RefereeVerifiedImages: deny a workload unless Referee allowed every image it runs.
#
# Rego v1 syntax with explicit future.keywords imports, so the same text is accepted by Gatekeeper's legacy
# `rego:` field and under `code[].source.version: "v1"` (Gatekeeper rejects `import rego.v1` in templates).
# Fails closed: provider errors, system_error, keys without an answer, `null` lists and verdicts without
# `allowed == true` all deny; status_code is never consulted (it is 0 on a full cache hit).
package refereeverifiedimages

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

verdict_allowed(verdict) if verdict.allowed == true

reason_of(verdict) := reason if {
  reason := verdict.reason
  is_string(reason)
} else := "the verdict has no reason"

problems contains {"image": key, "msg": msg} if {
  some [key, verdict] in verdicts
  not verdict_allowed(verdict)
  msg := sprintf("image %v is not verified by Referee: %v", [key, reason_of(verdict)])
}
