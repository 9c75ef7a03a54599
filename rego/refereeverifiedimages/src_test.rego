package refereeverifiedimages_test

import data.refereeverifiedimages as t
import rego.v1

# -- fixtures -------------------------------------------------------------------------------------------------------

pod_spec(images) := {"containers": [{"name": sprintf("c%d", [i]), "image": image} | some i, image in images]}

pod(images) := {
  "kind": {"group": "", "version": "v1", "kind": "Pod"},
  "namespace": "default",
  "operation": "CREATE",
  "object": {
    "apiVersion": "v1",
    "kind": "Pod",
    "metadata": {"name": "app", "namespace": "default"},
    "spec": pod_spec(images),
  },
}

review(kind, object) := {"kind": {"kind": kind}, "namespace": "default", "operation": "CREATE", "object": object}

annotated(r, annotations) := object.union(r, {"object": {"metadata": {"annotations": annotations}}})

in_namespace(r, ns) := object.union(r, {"namespace": ns, "object": {"metadata": {"namespace": ns}}})

run(r, parameters) := {"review": r, "parameters": parameters}

msgs(violations) := {v.msg | some v in violations}

verdict(allowed) := {
  "schemaVersion": "referee.verdict/v1",
  "allowed": allowed,
  "succeeded": allowed,
  "reason": "signature does not verify",
}

signed(key) := false if contains(key, "unsigned") else := true

# A live Gatekeeper answer: each key's verdict is allowed unless the image name contains "unsigned".
answer(request) := {
  "responses": [[key, verdict(signed(key))] | some key in request.keys],
  "errors": [],
  "status_code": 200,
  "system_error": "",
}

# Every key served from Gatekeeper's cache: no HTTP call, status_code 0.
cache_hit(request) := object.union(answer(request), {"status_code": 0})

# Gatekeeper-side failure (provider unreachable, TLS failure, non-JSON body): both lists are null.
unreachable := {
  "responses": null,
  "errors": null,
  "status_code": 500,
  "system_error": "dial tcp 10.0.0.1:8443: connect: connection refused",
}

# The provider answered with only a systemError: both lists are empty.
provider_system_error := {"responses": [], "errors": [], "status_code": 200, "system_error": "2 of 2 keys not answered"}

no_answer(request) := x if {
  x := request
  false
}

only_exact_batch(request) := answer(request) if {
  request == {"provider": "referee-verify", "keys": ["reg/a:1", "reg/b:1"]}
} else := unreachable

answer_only_for_eu(request) := answer(request) if request.provider == "referee-verify-eu" else := unreachable

workload(kind, spec) := {"kind": kind, "metadata": {"name": "w", "namespace": "default"}, "spec": {"template": {
  "metadata": {"labels": {"app": "w"}},
  "spec": spec,
}}}

cronjob(spec) := {"kind": "CronJob", "metadata": {"name": "c"}, "spec": {
  "schedule": "* * * * *",
  "jobTemplate": {"spec": {"template": {"metadata": {}, "spec": spec}}},
}}

glass := {"referee.dev/break-glass": "INC-1234 registry outage"}

# -- verdicts -------------------------------------------------------------------------------------------------------

test_allowed_pod_is_admitted if {
  v := t.violation with input as run(pod(["reg/app:1", "reg/db:2"]), {}) with external_data as answer
  count(v) == 0
}

test_full_cache_hit_with_status_code_zero_is_admitted if {
  v := t.violation with input as run(pod(["reg/app:1"]), {}) with external_data as cache_hit
  count(v) == 0
}

test_denied_verdict_denies_with_its_reason if {
  v := t.violation with input as run(pod(["reg/app:1", "reg/unsigned:1"]), {}) with external_data as answer
  v == {{
    "msg": "image reg/unsigned:1 is not verified by Referee: signature does not verify",
    "details": {"image": "reg/unsigned:1"},
  }}
}

test_value_without_allowed_true_denies if {
  mock := {
    "responses": [
      ["reg/a:1", {"succeeded": true}],
      ["reg/b:1", "allowed"],
      ["reg/c:1", {"allowed": "true"}],
      ["reg/d:1", null],
    ],
    "errors": [], "status_code": 200, "system_error": "",
  }
  v := t.violation with input as run(pod(["reg/a:1", "reg/b:1", "reg/c:1", "reg/d:1"]), {}) with external_data as mock
  {x.details.image | some x in v} == {"reg/a:1", "reg/b:1", "reg/c:1", "reg/d:1"}
}

test_item_error_denies_with_the_error_text if {
  mock := {
    "responses": [["reg/app:1", verdict(true)]],
    "errors": [["ghcr.io/x/y:1", "REGISTRY_NOT_ALLOWED: ghcr.io is not in registries.allow"]],
    "status_code": 200, "system_error": "",
  }
  v := t.violation with input as run(pod(["reg/app:1", "ghcr.io/x/y:1"]), {}) with external_data as mock
  msgs(v) == {"image ghcr.io/x/y:1 denied by Referee: REGISTRY_NOT_ALLOWED: ghcr.io is not in registries.allow"}
}

test_system_error_with_empty_lists_denies if {
  v := t.violation with input as run(pod(["reg/app:1", "reg/db:1"]), {}) with external_data as provider_system_error
  msgs(v) == {"Referee verification unavailable: 2 of 2 keys not answered"}
}

test_unreachable_provider_with_null_lists_denies if {
  v := t.violation with input as run(pod(["reg/app:1"]), {}) with external_data as unreachable
  msgs(v) == {"Referee verification unavailable: dial tcp 10.0.0.1:8443: connect: connection refused"}
}

test_key_left_out_denies if {
  mock := {"responses": [["reg/app:1", verdict(true)]], "errors": [], "status_code": 200, "system_error": ""}
  v := t.violation with input as run(pod(["reg/app:1", "reg/db:1"]), {}) with external_data as mock
  msgs(v) == {"image reg/db:1: no verdict from Referee"}
}

test_partial_answer_with_system_error_denies if {
  mock := {
    "responses": [["reg/app:1", verdict(true)]],
    "errors": [], "status_code": 200,
    "system_error": "1 of 2 keys not answered, retry: reg/db:1: TIMEOUT",
  }
  v := t.violation with input as run(pod(["reg/app:1", "reg/db:1"]), {}) with external_data as mock
  msgs(v) == {"Referee verification unavailable: 1 of 2 keys not answered, retry: reg/db:1: TIMEOUT"}
}

test_response_that_is_not_an_object_denies if {
  v := t.violation with input as run(pod(["reg/app:1"]), {}) with external_data as "garbage"
  msgs(v) == {"Referee verification unavailable: external_data(referee-verify) returned no response"}
}

test_undefined_external_data_denies if {
  v := t.violation with input as run(pod(["reg/app:1"]), {}) with external_data as no_answer
  msgs(v) == {"Referee verification unavailable: external_data(referee-verify) returned no response"}
}

test_status_code_is_never_consulted if {
  mock := {"responses": [["reg/app:1", verdict(true)]], "errors": [], "status_code": 503, "system_error": ""}
  v := t.violation with input as run(pod(["reg/app:1"]), {}) with external_data as mock
  count(v) == 0
}

# -- keys -----------------------------------------------------------------------------------------------------------

test_keys_cover_every_container_list_deduplicated if {
  object := {"kind": "Pod", "metadata": {"name": "p"}, "spec": {
    "containers": [{"name": "a", "image": "reg/app:1"}, {"name": "b", "image": "reg/side:1"}],
    "initContainers": [{"name": "i", "image": "reg/app:1"}, {"name": "j", "image": "reg/init:1"}],
    "ephemeralContainers": [{"name": "e", "image": "reg/debug:1"}],
  }}
  keys := t.keys with input as run(review("Pod", object), {})
  keys == ["reg/app:1", "reg/debug:1", "reg/init:1", "reg/side:1"]
}

test_one_batched_call_with_the_deduplicated_keys if {
  object := {"kind": "Pod", "metadata": {"name": "p"}, "spec": {
    "containers": [{"name": "a", "image": "reg/b:1"}, {"name": "b", "image": "reg/a:1"}],
    "initContainers": [{"name": "i", "image": "reg/b:1"}],
  }}
  v := t.violation with input as run(review("Pod", object), {}) with external_data as only_exact_batch
  count(v) == 0
}

test_every_workload_kind_is_checked if {
  spec := {
    "containers": [{"name": "a", "image": "reg/unsigned-app:1"}],
    "initContainers": [{"name": "i", "image": "reg/init:1"}],
  }
  expected := {"image reg/unsigned-app:1 is not verified by Referee: signature does not verify"}
  every kind in ["Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job"] {
    keys := t.keys with input as run(review(kind, workload(kind, spec)), {})
    keys == ["reg/init:1", "reg/unsigned-app:1"]
    v := t.violation with input as run(review(kind, workload(kind, spec)), {}) with external_data as answer
    msgs(v) == expected
  }
  keys := t.keys with input as run(review("CronJob", cronjob(spec)), {})
  keys == ["reg/init:1", "reg/unsigned-app:1"]
  v := t.violation with input as run(review("CronJob", cronjob(spec)), {}) with external_data as answer
  msgs(v) == expected
}

test_objects_without_pod_specs_make_no_call if {
  service := review("Service", {"kind": "Service", "spec": {"ports": []}})
  v1 := t.violation with input as run(service, {}) with external_data as unreachable
  count(v1) == 0
  deleted := review("Pod", null)
  v2 := t.violation with input as run(deleted, {}) with external_data as unreachable
  count(v2) == 0
}

test_provider_parameter_names_the_provider if {
  eu := t.violation with input as run(pod(["reg/app:1"]), {"provider": "referee-verify-eu"})
    with external_data as answer_only_for_eu
  count(eu) == 0
  default_provider := t.violation with input as run(pod(["reg/app:1"]), {}) with external_data as answer_only_for_eu
  count(default_provider) == 1
}

# -- exemptions -----------------------------------------------------------------------------------------------------

test_exempt_images_are_not_sent if {
  parameters := {"exemptImages": ["docker.io/library/busybox:1.36", "quay.io/vendor/*"]}
  r := pod(["docker.io/library/busybox:1.36", "quay.io/vendor/agent:2", "reg/app:1"])
  keys := t.keys with input as run(r, parameters)
  keys == ["reg/app:1"]
}

test_exempt_image_patterns_are_exact_or_trailing_star if {
  parameters := {"exemptImages": ["docker.io/library/busybox:1.36", "quay.io/vendor/*"]}
  r := pod(["docker.io/library/busybox:1.37", "quay.io/vendor-evil/x:1", "quay.io/vendor/agent:2"])
  keys := t.keys with input as run(r, parameters)
  keys == ["docker.io/library/busybox:1.37", "quay.io/vendor-evil/x:1"]
}

test_only_exempt_images_make_no_call if {
  v := t.violation with input as run(pod(["quay.io/vendor/agent:2"]), {"exemptImages": ["quay.io/vendor/*"]})
    with external_data as unreachable
  count(v) == 0
}

test_exempt_namespaces_are_admitted if {
  parameters := {"exemptNamespaces": ["kube-*", "referee-system"]}
  unsigned := pod(["reg/unsigned:1"])
  kube := t.violation with input as run(in_namespace(unsigned, "kube-system"), parameters) with external_data as answer
  count(kube) == 0
  exact := t.violation with input as run(in_namespace(unsigned, "referee-system"), parameters)
    with external_data as unreachable
  count(exact) == 0
  near := t.violation with input as run(in_namespace(unsigned, "referee-system-2"), parameters)
    with external_data as answer
  count(near) == 1
  prod := t.violation with input as run(in_namespace(unsigned, "prod"), parameters) with external_data as answer
  count(prod) == 1
}

# -- break-glass ----------------------------------------------------------------------------------------------------

test_break_glass_is_off_by_default if {
  r := annotated(pod(["reg/unsigned:1"]), glass)
  unset := t.violation with input as run(r, {}) with external_data as answer
  count(unset) == 1
  disabled := t.violation with input as run(r, {"breakGlass": {"enabled": false}}) with external_data as answer
  count(disabled) == 1
}

test_break_glass_admits_when_enabled if {
  r := annotated(pod(["reg/unsigned:1"]), glass)
  denied := t.violation with input as run(r, {"breakGlass": {"enabled": true}}) with external_data as answer
  count(denied) == 0
  outage := t.violation with input as run(r, {"breakGlass": {"enabled": true}}) with external_data as unreachable
  count(outage) == 0
}

test_break_glass_needs_a_non_empty_reason if {
  r := annotated(pod(["reg/unsigned:1"]), {"referee.dev/break-glass": "  "})
  v := t.violation with input as run(r, {"breakGlass": {"enabled": true}}) with external_data as answer
  count(v) == 1
}

test_break_glass_annotation_name_is_a_parameter if {
  parameters := {"breakGlass": {"enabled": true, "annotation": "example.com/emergency"}}
  default_name := t.violation with input as run(annotated(pod(["reg/unsigned:1"]), glass), parameters)
    with external_data as answer
  count(default_name) == 1
  custom := annotated(pod(["reg/unsigned:1"]), {"example.com/emergency": "INC-9"})
  v := t.violation with input as run(custom, parameters) with external_data as answer
  count(v) == 0
}

test_break_glass_on_the_pod_template_counts_for_workloads if {
  spec := {"containers": [{"name": "a", "image": "reg/unsigned:1"}]}
  patch := [{"op": "add", "path": "/spec/template/metadata/annotations", "value": glass}]
  r := review("Deployment", json.patch(workload("Deployment", spec), patch))
  enabled := t.violation with input as run(r, {"breakGlass": {"enabled": true}}) with external_data as answer
  count(enabled) == 0
  disabled := t.violation with input as run(r, {}) with external_data as answer
  count(disabled) == 1
}

test_break_glass_report_names_the_override if {
  r := annotated(pod(["reg/unsigned:1", "reg/app:1"]), glass)
  v := t.violation with input as run(r, {"breakGlass": {"enabled": true, "report": true}}) with external_data as answer
  v == {{
    "msg": concat("", [
      "break-glass override referee.dev/break-glass=\"INC-1234 registry outage\" admitted Pod app; ",
      "overridden: image reg/unsigned:1 is not verified by Referee: signature does not verify",
    ]),
    "details": {
      "annotation": "referee.dev/break-glass",
      "reason": "INC-1234 registry outage",
      "images": ["reg/app:1", "reg/unsigned:1"],
    },
  }}
}

test_break_glass_report_is_silent_without_the_annotation if {
  parameters := {"breakGlass": {"enabled": true, "report": true}}
  denied := t.violation with input as run(pod(["reg/unsigned:1"]), parameters) with external_data as answer
  count(denied) == 0
  outage := t.violation with input as run(pod(["reg/unsigned:1"]), parameters) with external_data as unreachable
  count(outage) == 0
}

test_break_glass_report_when_nothing_was_overridden if {
  r := annotated(pod(["reg/app:1"]), glass)
  v := t.violation with input as run(r, {"breakGlass": {"enabled": true, "report": true}}) with external_data as answer
  [msg] := [x.msg | some x in v]
  endswith(msg, "overridden: nothing (every image passed)")
}

# -- UPDATE and requireDigest ---------------------------------------------------------------------------------------

updated(old_images, new_images) := object.union(pod(new_images), {
  "operation": "UPDATE",
  "oldObject": pod(old_images).object,
})

only_unsigned_keys(request) := answer(request) if {
  every key in request.keys {
    contains(key, "unsigned-new")
  }
} else := unreachable

test_update_that_keeps_the_images_makes_no_call if {
  r := updated(["reg/unsigned:1", "reg/app:1"], ["reg/unsigned:1", "reg/app:1"])
  v := t.violation with input as run(r, {"requireDigest": true}) with external_data as unreachable
  count(v) == 0
}

test_update_checks_only_the_images_it_brings_in if {
  r := updated(["reg/app:1"], ["reg/app:1", "reg/unsigned-new:2"])
  v := t.violation with input as run(r, {}) with external_data as only_unsigned_keys
  msgs(v) == {"image reg/unsigned-new:2 is not verified by Referee: signature does not verify"}
}

test_update_without_old_object_checks_every_image if {
  r := object.union(pod(["reg/app:1"]), {"operation": "UPDATE"})
  v := t.violation with input as run(r, {}) with external_data as unreachable
  count(v) == 1
}

test_create_ignores_an_old_object if {
  r := object.union(pod(["reg/unsigned:1"]), {"oldObject": pod(["reg/unsigned:1"]).object})
  v := t.violation with input as run(r, {}) with external_data as answer
  count(v) == 1
}

test_require_digest_denies_tags_only_when_set if {
  digest := concat("", ["reg/app:1@sha256:", concat("", [hex | some _ in numbers.range(1, 32); hex := "ab"])])
  mixed := pod(["reg/app:1", digest])
  off := t.violation with input as run(mixed, {}) with external_data as answer
  count(off) == 0
  on := t.violation with input as run(mixed, {"requireDigest": true}) with external_data as answer
  msgs(on) == {
    "image reg/app:1 is not pinned to a digest: the referee-mutate Assigns could not resolve it (requireDigest)",
  }
}

test_require_digest_spares_exempt_images_and_break_glass if {
  parameters := {"requireDigest": true, "exemptImages": ["registry.k8s.io/pause:*"], "breakGlass": {"enabled": true}}
  exempt := t.violation with input as run(pod(["registry.k8s.io/pause:3.10"]), parameters) with external_data as answer
  count(exempt) == 0
  glassed := annotated(pod(["reg/app:1"]), glass)
  v := t.violation with input as run(glassed, parameters) with external_data as unreachable
  count(v) == 0
}

test_updates_of_an_object_being_deleted_are_not_checked if {
  r := updated(["reg/app:1"], ["reg/app:1@sha256:0000000000000000000000000000000000000000000000000000000000000000"])
  deleting := json.patch(r, [{"op": "add", "path": "/object/metadata/deletionTimestamp", "value": "2026-01-01T00:00:00Z"}])
  v := t.violation with input as run(deleting, {"requireDigest": true}) with external_data as unreachable
  count(v) == 0
  live := t.violation with input as run(r, {"requireDigest": true}) with external_data as unreachable
  count(live) == 1
}
