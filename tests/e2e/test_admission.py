"""Admission through the real chain: each case asserts on what ``kubectl`` returns (exit status and message).

Issue #11 item 3 and issue #22 items 1-4 and 6 (item 5 and the docs side of 4, 6 and 7: tests/integration/test_docs.py;
item 7 in the harness: the manager's ``--api-cache-dir``, without which the audit cases fail).
"""

from __future__ import annotations

import time
from typing import Any

from tests.e2e.conftest import (
    BREAK_GLASS,
    EXEMPT_NS,
    GATEKEEPER_CACHE_TTL,
    LEGACY_NS,
    OUTSIDER,
    RESPONDER,
    SHOP,
    Cluster,
    admitted,
    denied,
)
from tests.support.admission import RefereeInstall, sample
from tests.support.gatekeeper_chain import wait_until

VALIDATION = 'admission webhook "validation.gatekeeper.sh" denied the request'
UNAVAILABLE = "[verified-images] Referee verification unavailable: "
NOT_PINNED = "is not pinned to a digest: the referee-mutate Assigns could not resolve it (requireDigest)"


def pod(name: str, containers: list[dict[str, str]], **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": SHOP},
        "spec": {"containers": containers, "restartPolicy": "Never", **spec},
    }


def container(name: str, image: str) -> dict[str, str]:
    return {"name": name, "image": image}


# -- verdicts ---------------------------------------------------------------------------------------------------


def test_signed_image_by_tag_is_admitted_and_pinned_to_its_digest(cluster: Cluster) -> None:
    image = cluster.push("signed")
    result = admitted(cluster.run(image.ref, name="signed"))
    assert result.stdout.strip() == "pod/signed created"
    assert cluster.pod_images("signed") == {"signed": image.pinned}


def test_unsigned_image_is_denied_naming_the_tag_the_digest_and_the_reason(cluster: Cluster) -> None:
    image = cluster.push("unsigned", signed=False)
    message = denied(cluster.run(image.ref))
    fallback = "sha256-" + image.pinned.rsplit(":", 1)[1][:12]
    assert message.strip() == (
        f"Error from server (Forbidden): {VALIDATION}: [verified-images] image {image.pinned} "
        "is not verified by Referee: ci-cosign: no matching artifact found [no referrers listed: "
        f"{cluster.registry.host} has no referrers API and no fallback index {fallback}… exists (attach with a tool "
        "that writes it)]"
    )


def test_image_signed_with_an_untrusted_key_is_denied(cluster: Cluster) -> None:
    image = cluster.push("wrongkey", key=cluster.other_key)
    message = denied(cluster.run(image.ref))
    assert f"{VALIDATION}: [verified-images] image {image.pinned} is not verified by Referee: ci-cosign: " in message
    assert "no signature verified with the configured keys" in message


def test_image_from_a_registry_not_allowed_is_denied_with_referees_error(cluster: Cluster) -> None:
    ref = "docker.io/someone/uploader:latest"
    message = denied(cluster.run(ref))
    assert message.startswith(f"Error from server (Forbidden): {VALIDATION}: ")
    assert (
        f"[verified-images] image {ref} denied by Referee: REGISTRY_NOT_ALLOWED: docker.io/someone/uploader is not "
        "in registries.allow" in message
    )
    assert f"[verified-images] image {ref} {NOT_PINNED}" in message


def test_unsigned_images_hidden_in_init_containers_and_pod_templates_are_denied(cluster: Cluster) -> None:
    signed, unsigned = cluster.push("visible"), cluster.push("hidden", signed=False)
    init = pod("init", [container("app", signed.ref)], initContainers=[container("setup", unsigned.ref)])

    def template(restart: str) -> dict[str, Any]:
        spec = {"containers": [container("app", unsigned.ref)], "restartPolicy": restart}
        return {"metadata": {"labels": {"app": "x"}}, "spec": spec}

    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "hidden", "namespace": SHOP},
        "spec": {"selector": {"matchLabels": {"app": "x"}}, "template": template("Always")},
    }
    cronjob = {
        "apiVersion": "batch/v1",
        "kind": "CronJob",
        "metadata": {"name": "hidden", "namespace": SHOP},
        "spec": {"schedule": "0 3 * * *", "jobTemplate": {"spec": {"template": template("Never")}}},
    }
    for obj in (init, deployment, cronjob):
        message = denied(cluster.create([obj]))
        assert f"{VALIDATION}: [verified-images] image {unsigned.pinned} is not verified by Referee" in message, obj
        assert signed.ref not in message


# -- fail closed ------------------------------------------------------------------------------------------------


def test_referee_stopped_denies_and_only_a_digest_verified_moments_ago_is_admitted(
    cluster: Cluster, running_referee: RefereeInstall
) -> None:
    cached, fresh, by_digest = cluster.push("cached"), cluster.push("fresh"), cluster.push("by-digest")
    admitted(cluster.run(cached.ref))
    running_referee.stop()
    # Already pinned by the user, so requireDigest has nothing to say: only the template's system_error rule denies.
    message = denied(cluster.run(by_digest.pinned))
    assert f"{VALIDATION}: {UNAVAILABLE}" in message and NOT_PINNED not in message
    message = denied(cluster.run(fresh.ref))
    assert f"{VALIDATION}: {UNAVAILABLE}" in message
    assert f"[verified-images] image {fresh.ref} {NOT_PINNED}" in message
    # Gatekeeper's response cache (issue #22 item 6): the pinned reference verified a moment ago is answered from
    # it without Referee; the tag alone is not (the Assigns cannot pin it, and requireDigest denies it).
    admitted(cluster.run(cached.pinned))
    assert f"image {cached.ref} {NOT_PINNED}" in denied(cluster.run(cached.ref))


def test_registry_stopped_denies_a_cold_tag_and_caches_keep_a_warm_one(cluster: Cluster) -> None:
    warm = cluster.push("warm", registry=cluster.outage_registry)
    cold = cluster.push("cold", registry=cluster.outage_registry)
    admitted(cluster.run(warm.ref))
    cluster.outage_registry.stop()
    message = denied(cluster.run(cold.ref))
    assert f"{VALIDATION}: {UNAVAILABLE}1 of 1 keys not answered, retry: {cold.ref}: " in message
    # Referee's tag cache pins the warm tag and the verdict comes from the caches: admitted while the registry is
    # down (issue #22 item 6; docs/cookbook.md states it).
    admitted(cluster.run(warm.ref))


def test_referee_slower_than_the_provider_timeout_denies_and_the_failure_is_not_cached(
    cluster: Cluster, running_referee: RefereeInstall
) -> None:
    image = cluster.push("slow")
    running_referee.pause()
    try:
        message = denied(cluster.run(image.ref))
    finally:
        running_referee.resume()
    assert f"{VALIDATION}: {UNAVAILABLE}" in message
    assert "context deadline exceeded" in message or "Client.Timeout" in message
    # Gatekeeper never caches a failed call or a systemError: the next request asks Referee again, at once.
    admitted(cluster.run(image.ref))


# -- exemptions and break-glass ---------------------------------------------------------------------------------


def test_exempt_namespace_and_exempt_image_pass_both_webhooks(cluster: Cluster) -> None:
    unsigned = cluster.push("exempt-ns", signed=False)
    admitted(cluster.run(unsigned.ref, namespace=EXEMPT_NS, name="anything"))
    assert cluster.pod_images("anything", EXEMPT_NS) == {"anything": unsigned.ref}
    # The sample example_allowed_exempt.yaml, its app image replaced by one this registry holds: the pause image is
    # exempt by reference, which Referee may not even resolve (registry.k8s.io is not in registries.allow).
    signed = cluster.push("with-pause")
    [deployment] = sample("refereeverifiedimages", "example_allowed_exempt.yaml")
    deployment["spec"]["template"]["spec"]["containers"][0]["image"] = signed.ref
    admitted(cluster.create([deployment]))
    created = cluster.chain.k.get_json("deployment", deployment["metadata"]["name"], "-n", SHOP)
    spec = created["spec"]["template"]["spec"]
    assert spec["initContainers"][0]["image"] == "registry.k8s.io/pause:3.10"
    assert spec["containers"][0]["image"] == signed.pinned


def test_break_glass_admits_with_a_warning_and_only_for_the_allowed_group(cluster: Cluster) -> None:
    unsigned = cluster.push("glass", signed=False)
    reason = "INC-4711 CI down"
    result = admitted(
        cluster.run(unsigned.ref, f"--annotations={BREAK_GLASS}={reason}", *RESPONDER, name="break-glass")
    )
    assert (
        f'Warning: [verified-images-break-glass-report] break-glass override {BREAK_GLASS}="{reason}" admitted '
        f"Pod break-glass; overridden: image {unsigned.pinned} is not verified by Referee: "
    ) in result.stderr
    # An image Referee cannot even resolve passes the Assigns too (issue #22 item 3).
    admitted(cluster.run("docker.io/someone/uploader:latest", f"--annotations={BREAK_GLASS}={reason}", *RESPONDER))
    message = denied(cluster.run(unsigned.ref, f"--annotations={BREAK_GLASS}={reason}", *OUTSIDER))
    assert "ValidatingAdmissionPolicy 'referee-break-glass-restriction'" in message
    assert f"only members of the group referee-break-glass may set the {BREAK_GLASS} annotation (mallory may not)" in (
        message
    )


# -- audit ------------------------------------------------------------------------------------------------------


def _violations(cluster: Cluster, name: str) -> list[dict[str, Any]]:
    status = cluster.constraint("RefereeVerifiedImages", name).get("status") or {}
    found: list[dict[str, Any]] = status.get("violations") or []
    return found


def test_audit_reports_a_pod_that_predates_the_constraint(cluster: Cluster) -> None:
    legacy = cluster.legacy_image
    assert legacy is not None

    prefix = f"image {legacy.ref} is not verified by Referee: ci-cosign: no matching artifact found [no referrers"

    def reported() -> set[str] | None:
        # An audit pass that ran before Referee was reachable reports "verification unavailable" (fail closed):
        # wait for a pass that got Referee's verdict.
        hits = [v for v in _violations(cluster, "verified-images") if v.get("namespace") == LEGACY_NS]
        messages = {v["message"] for v in hits if v["name"] == cluster.legacy_pod and v["kind"] == "Pod"}
        return messages if any(m.startswith(prefix) for m in messages) else None

    messages = wait_until("audit to report the legacy Pod with Referee's verdict", reported, 120, 0.5)
    assert f"image {legacy.ref} {NOT_PINNED}" in messages


def test_audit_lists_objects_running_under_break_glass(cluster: Cluster) -> None:
    unsigned = cluster.push("audited", signed=False)
    admitted(cluster.run(unsigned.ref, f"--annotations={BREAK_GLASS}=INC-9", *RESPONDER, name="audited"))

    def reported() -> list[dict[str, Any]] | None:
        hits = [v for v in _violations(cluster, "verified-images-break-glass-report") if v.get("name") == "audited"]
        return hits or None

    [hit] = wait_until("audit to list the break-glass Pod", reported, 120, 0.5)
    assert hit["enforcementAction"] == "warn"
    assert hit["message"].startswith(f'break-glass override {BREAK_GLASS}="INC-9" admitted Pod audited; overridden: ')


# -- Gatekeeper's response cache --------------------------------------------------------------------------------


def test_a_re_signed_image_is_admitted_once_the_response_cache_expired_and_not_before(cluster: Cluster) -> None:
    image = cluster.push("resign", signed=False)
    first_denial = time.monotonic()  # the answer is cached after this instant
    denied(cluster.run(image.ref))
    asked = len([line for line in cluster.referee.answered() if line["key"] == image.pinned])
    cluster.sign(image)
    message = denied(cluster.run(image.ref))
    elapsed = time.monotonic() - first_denial
    assert "ci-cosign: no matching artifact found" in message
    assert elapsed < GATEKEEPER_CACHE_TTL, f"the second admission took {elapsed:.1f} s, past the cache TTL"
    # The denial came from Gatekeeper's cache: Referee was not asked about the key again.
    assert len([line for line in cluster.referee.answered() if line["key"] == image.pinned]) == asked

    def admitted_now() -> bool:
        return cluster.run(image.ref).ok

    wait_until("the re-signed image to be admitted", admitted_now, GATEKEEPER_CACHE_TTL * 3, 1.0)
    # Gatekeeper keeps the receive time in whole seconds, so an entry may expire up to a second early.
    assert time.monotonic() - first_denial >= GATEKEEPER_CACHE_TTL - 1


# -- issue #22: ephemeral containers, UPDATE, deletes -----------------------------------------------------------


def test_debug_containers_are_pinned_and_verified_and_the_pod_stays_updatable(cluster: Cluster) -> None:
    app, debug, unsigned = cluster.push("debugged"), cluster.push("debugger"), cluster.push("debug-bad", signed=False)
    admitted(cluster.run(app.ref, name="debugged"))
    admitted(cluster.kubectl("debug", "-n", SHOP, "debugged", f"--image={debug.ref}", "--container=dbg"))
    assert cluster.pod_images("debugged")["dbg"] == debug.pinned
    message = denied(cluster.kubectl("debug", "-n", SHOP, "debugged", f"--image={unsigned.ref}", "--container=bad"))
    assert f"image {unsigned.pinned} is not verified by Referee" in message
    admitted(cluster.kubectl("label", "-n", SHOP, "pod", "debugged", "touched=yes"))
    assert cluster.pod_images("debugged") == {"debugged": app.pinned, "dbg": debug.pinned}


def test_updates_that_keep_the_images_never_depend_on_referee(
    cluster: Cluster, running_referee: RefereeInstall
) -> None:
    image = cluster.push("held")
    held = pod("held", [container("app", image.ref)])
    held["metadata"]["finalizers"] = ["e2e.referee.dev/hold"]
    admitted(cluster.create([held]))
    running_referee.stop()
    admitted(cluster.kubectl("label", "-n", SHOP, "pod", "held", "during-outage=yes"))
    admitted(cluster.kubectl("delete", "-n", SHOP, "pod", "held", "--wait=false"))
    # A controller finishing the delete: removing the finalizer is an UPDATE of a Pod being deleted.
    unhold = '[{"op": "remove", "path": "/metadata/finalizers"}]'
    admitted(cluster.kubectl("patch", "-n", SHOP, "pod", "held", "--type=json", "-p", unhold))
    assert "NotFound" in cluster.kubectl("get", "-n", SHOP, "pod", "held").stderr
    # A new image is still checked on UPDATE: with Referee down, that fails closed.
    other = cluster.push("swap")
    message = denied(cluster.kubectl("set", "image", "-n", LEGACY_NS, f"pod/{cluster.legacy_pod}", f"*={other.ref}"))
    assert f"{VALIDATION}: {UNAVAILABLE}" in message


def test_pods_created_by_tag_before_the_assigns_are_pinned_on_update_and_can_always_be_deleted(
    cluster: Cluster,
) -> None:
    legacy, signed = cluster.legacy_image, cluster.legacy_signed
    assert legacy is not None and signed is not None
    assert cluster.pod_images("legacy-signed", LEGACY_NS) == {"legacy-signed": signed.ref}
    # Gatekeeper 3.21's Assigns cannot be limited to CREATE: an update pins the tag (docs/deploy.md says so), and
    # the pinned image is then checked like any image an update brings in.
    admitted(cluster.kubectl("label", "-n", LEGACY_NS, "pod", "legacy-signed", "relabelled=yes"))
    assert cluster.pod_images("legacy-signed", LEGACY_NS) == {"legacy-signed": signed.pinned}
    message = denied(cluster.kubectl("label", "-n", LEGACY_NS, "pod", cluster.legacy_pod, "relabelled=yes"))
    assert f"{VALIDATION}: [verified-images] image {legacy.pinned} is not verified by Referee" in message
    # Deleting is never blocked: the finalizer's removal is an update of an object being deleted.
    admitted(cluster.kubectl("delete", "-n", LEGACY_NS, "pod", "legacy-held", "--wait=false"))
    unhold = '[{"op": "remove", "path": "/metadata/finalizers"}]'
    admitted(cluster.kubectl("patch", "-n", LEGACY_NS, "pod", "legacy-held", "--type=json", "-p", unhold))
    assert "NotFound" in cluster.kubectl("get", "-n", LEGACY_NS, "pod", "legacy-held").stderr
