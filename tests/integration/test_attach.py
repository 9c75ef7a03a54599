"""``referee attach`` then ``referee verify``, on the three places evidence lives: Debian's docker-registry (no
referrers API: attach writes the tag-schema index), the referrers API test double in front of it (the registry
answers ``OCI-Subject``, no index is written), and an OCI layout. Plus the tag-schema index rules a pusher must keep
(other pushers' entries, unknown entries, no internal types) and a deterministic lost-update race."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import pytest

from provider import mediatypes as mt
from provider.attach.registry import RegistryTagIndex
from provider.attach.session import open_session
from provider.attach.tagindex import TagIndex, add_referrer
from provider.config import load_config
from provider.reference import parse_reference
from tests.integration.attach_support import (
    RULES,
    TYPES,
    attach,
    evidence_files,
    run_cli,
    succeeded,
    verify,
    write_config,
)
from tests.support.content import (
    OCI_INDEX,
    OCI_MANIFEST,
    BearerFlow,
    fallback_tag,
    get_manifest,
    http_request,
    make_artifact_manifest,
    make_image,
    push_artifact,
    push_fallback_index,
    push_image,
    referrer_descriptor,
)
from tests.support.referee import write_layout
from tests.support.referrers_proxy import ReferrersProxy
from tests.support.registry import RegistryProcess

REPO = "attach/app"


def _image(registry: RegistryProcess, tag: str) -> dict[str, Any]:
    image = make_image(f"attach/{tag}")
    push_image(registry.url, REPO, tag, image)
    return image


def _tag_index(registry: RegistryProcess, digest: str) -> dict[str, Any] | None:
    result = get_manifest(registry.url, REPO, fallback_tag(digest), accept=OCI_INDEX)
    if result.status == 404:
        return None
    assert result.status == 200
    doc: dict[str, Any] = result.json()
    return doc


def _attach_all(capsys: pytest.CaptureFixture[str], files: dict[str, Path], *prefix: str) -> dict[str, dict[str, Any]]:
    return {name: attach(capsys, *prefix, "--artifact-type", TYPES[name], str(path)) for name, path in files.items()}


def test_round_trip_on_registry_without_referrers_api(
    registry: RegistryProcess, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    image = _image(registry, "plain")
    config = write_config(tmp_path / "referee.yaml", [registry.host])
    ref = f"{registry.host}/{REPO}:plain"
    code, before = verify(capsys, config, ref)
    assert code == 1 and not before["allowed"]

    results = _attach_all(capsys, evidence_files(tmp_path / "ev", image["digest"]), "--config", str(config), ref)
    for name, result in results.items():
        assert result["discovery"] == "tag-schema"
        assert result["subject"] == f"{registry.host}/{REPO}@{image['digest']}"
        assert result["artifactType"] == TYPES[name]
        assert result["index"]["written"] is True
    index = _tag_index(registry, image["digest"])
    assert index is not None and index["mediaType"] == OCI_INDEX
    listed = {m["digest"]: m for m in index["manifests"]}
    assert set(listed) == {r["digest"] for r in results.values()}
    for name, result in results.items():
        entry = listed[result["digest"]]
        assert entry["artifactType"] == TYPES[name]
        assert mt.ANNOTATION_CREATED in entry["annotations"]

    code, after = verify(capsys, config, ref)
    assert code == 0, after["reason"]
    accepted = succeeded(after)
    assert {n: accepted[n] for n in RULES} == {n: [results[n]["digest"]] for n in RULES}
    scan = next(a for a in after["artifacts"] if a["verifier"] == "scan")
    assert scan["details"]["reportCreatedSource"] == "manifest-annotation"

    # Attaching the same manifest again changes nothing (same bytes only with the same created stamp).
    artifact = results["sbom"]["digest"]
    code, out, err = run_cli(capsys, "attach", "--config", str(config), "--referrer", artifact, ref)
    assert code == 0, err
    assert "already listed it (3 entries)" in out


def test_round_trip_on_registry_with_referrers_api(
    registry: RegistryProcess, referrers_proxy: ReferrersProxy, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    image = _image(registry, "api")
    config = write_config(tmp_path / "referee.yaml", [registry.host, referrers_proxy.host])
    ref = f"{referrers_proxy.host}/{REPO}:api"
    results = _attach_all(capsys, evidence_files(tmp_path / "ev", image["digest"]), "--config", str(config), ref)
    assert {r["discovery"] for r in results.values()} == {"referrers-api"}
    assert "index" not in results["sbom"]
    listed = {d["digest"]: d for d in referrers_proxy.referrers(REPO, image["digest"])}
    assert set(listed) == {r["digest"] for r in results.values()}
    assert _tag_index(registry, image["digest"]) is None, "no tag-schema index on a registry with the API"

    code, after = verify(capsys, config, ref)
    assert code == 0, after["reason"]
    assert {n: succeeded(after)[n] for n in RULES} == {n: [results[n]["digest"]] for n in RULES}
    assert referrers_proxy.count("referrers", "GET") >= 1


def test_round_trip_on_oci_layout(
    registry: RegistryProcess, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    image = make_image("attach/layout")
    layout = write_layout(
        tmp_path / "layout", [(image["manifest"], OCI_MANIFEST, "v1")], [image["config"], *image["layers"]]
    )
    config = write_config(tmp_path / "referee.yaml", [registry.host])
    ref = f"{registry.host}/{REPO}:v1"
    results = _attach_all(
        capsys, evidence_files(tmp_path / "ev", image["digest"]), "--config", str(config), "--layout", str(layout), ref
    )
    assert {r["discovery"] for r in results.values()} == {"layout"}
    index = json.loads((layout / "index.json").read_text())
    assert [m.get("artifactType") for m in index["manifests"]] == [None, *(TYPES[n] for n in results)]
    code, after = verify(capsys, config, ref, "--layout", str(layout))
    assert code == 0, after["reason"]
    assert {n: succeeded(after)[n] for n in RULES} == {n: [results[n]["digest"]] for n in RULES}
    # The artifacts really are in the layout: nothing was pushed to the registry.
    assert get_manifest(registry.url, REPO, results["sbom"]["digest"]).status == 404


def _pushed_entry(registry: RegistryProcess, image: dict[str, Any], artifact_type: str) -> dict[str, Any]:
    manifest, blobs = make_artifact_manifest(image["descriptor"], artifact_type, [])
    push_artifact(registry.url, REPO, manifest, blobs)
    return referrer_descriptor(manifest)


def _attach_sbom(
    capsys: pytest.CaptureFixture[str], registry: RegistryProcess, tmp_path: Path, tag: str, digest: str
) -> dict[str, Any]:
    config = write_config(tmp_path / "referee.yaml", [registry.host])
    files = evidence_files(tmp_path / "ev", digest)
    return attach(
        capsys,
        "--config",
        str(config),
        "--artifact-type",
        mt.SPDX_JSON,
        f"{registry.host}/{REPO}:{tag}",
        str(files["sbom"]),
    )


def test_index_keeps_other_pushers_entries_and_drops_internal_types(
    registry: RegistryProcess, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    image = _image(registry, "shared-index")
    unknown = {
        **_pushed_entry(registry, image, "application/vnd.example.unknown+json"),
        "x-vendor-field": {"kept": True},
        "platform": {"os": "linux", "architecture": "arm64"},
    }
    plain = _pushed_entry(registry, image, "application/vnd.example.other+json")
    plain["annotations"] = {"org.example.note": "written by another tool"}
    forged = {**_pushed_entry(registry, image, "application/vnd.example.forged+json")}
    forged["artifactType"] = mt.COSIGN_LEGACY_SIGNATURES
    push_fallback_index(registry.url, REPO, image["digest"], [unknown, forged, plain], merge=False)

    result = _attach_sbom(capsys, registry, tmp_path, "shared-index", image["digest"])
    assert result["index"]["droppedInternalEntries"] == [forged["digest"]]
    index = _tag_index(registry, image["digest"])
    assert index is not None
    assert index["manifests"][:2] == [unknown, plain], "other pushers' entries are kept verbatim, in order"
    assert [m["digest"] for m in index["manifests"][2:]] == [result["digest"]]
    assert all(m.get("artifactType") not in mt.COSIGN_LEGACY_TYPES for m in index["manifests"])


def test_entries_of_deleted_referrers_are_pruned(
    registry: RegistryProcess, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """distribution refuses an index listing a manifest it no longer holds (MANIFEST_BLOB_UNKNOWN): after a
    referrer was deleted, the index can only be rewritten without it."""
    image = _image(registry, "deleted-referrer")
    kept = _pushed_entry(registry, image, "application/vnd.example.kept+json")
    deleted = _pushed_entry(registry, image, "application/vnd.example.deleted+json")
    push_fallback_index(registry.url, REPO, image["digest"], [kept, deleted], merge=False)
    gone = http_request("DELETE", f"{registry.url}/v2/{REPO}/manifests/{deleted['digest']}")
    assert gone.status == 202

    result = _attach_sbom(capsys, registry, tmp_path, "deleted-referrer", image["digest"])
    assert result["index"]["prunedMissingEntries"] == [deleted["digest"]]
    index = _tag_index(registry, image["digest"])
    assert index is not None
    assert [m["digest"] for m in index["manifests"]] == [kept["digest"], result["digest"]]


def test_index_holding_something_else_is_left_alone(
    registry: RegistryProcess, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    image = _image(registry, "squatted")
    squatter = make_image("attach/squatter")
    push_image(registry.url, REPO, fallback_tag(image["digest"]), squatter)
    config = write_config(tmp_path / "referee.yaml", [registry.host])
    files = evidence_files(tmp_path / "ev", image["digest"])
    code, _, err = run_cli(
        capsys,
        "attach",
        "--config",
        str(config),
        "--artifact-type",
        mt.SPDX_JSON,
        f"{registry.host}/{REPO}:squatted",
        str(files["sbom"]),
    )
    assert code == 1
    assert "REFERRERS_INDEX_INVALID" in err and "not an OCI image index; it is left alone" in err
    tagged = get_manifest(registry.url, REPO, fallback_tag(image["digest"]))
    assert tagged.body == squatter["manifest"]


def test_attach_refuses_what_the_configuration_does_not_allow(
    registry: RegistryProcess, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    image = _image(registry, "not-allowed")
    files = evidence_files(tmp_path / "ev", image["digest"])
    config = tmp_path / "other.yaml"
    config.write_text(
        f"registries:\n  allow: ['registry.example.com']\n  hosts: [{{host: '{registry.host}', plainHttp: true}}]\n"
    )
    code, _, err = run_cli(
        capsys,
        "attach",
        "--config",
        str(config),
        "--artifact-type",
        mt.SPDX_JSON,
        f"{registry.host}/{REPO}:not-allowed",
        str(files["sbom"]),
    )
    assert code == 1 and "REGISTRY_NOT_ALLOWED" in err
    # Without --config only the registry named in IMAGE is contacted, and only over verified TLS.
    code, _, err = run_cli(
        capsys, "attach", "--artifact-type", mt.SPDX_JSON, f"{registry.host}/{REPO}:not-allowed", str(files["sbom"])
    )
    assert code == 1 and ("REGISTRY_UNAVAILABLE" in err or "REGISTRY_ERROR" in err), err
    # Without plainHttp for the host, TLS is required, and a plain-HTTP registry fails instead of being downgraded.
    config.write_text(f"registries:\n  allow: ['{registry.host}']\n  maxAttempts: 1\n")
    code, _, err = run_cli(
        capsys,
        "attach",
        "--config",
        str(config),
        "--artifact-type",
        mt.SPDX_JSON,
        f"{registry.host}/{REPO}:not-allowed",
        str(files["sbom"]),
    )
    assert code == 1 and ("REGISTRY_UNAVAILABLE" in err or "REGISTRY_ERROR" in err)
    assert _tag_index(registry, image["digest"]) is None
    code, _, err = run_cli(
        capsys,
        "attach",
        "--config",
        str(config),
        "--artifact-type",
        mt.COSIGN_LEGACY_SIGNATURES,
        f"{registry.host}/{REPO}:not-allowed",
        str(files["sbom"]),
    )
    assert code == 2 and "internal type" in err


class _Ordered(RegistryTagIndex):
    """The real tag index, with hooks around ``write`` so two writers can be interleaved deterministically."""

    def __init__(self, *args: Any, before: Any = None, after: Any = None) -> None:
        super().__init__(*args)
        self.before, self.after = before, after

    def write(self, body: bytes, previous: TagIndex | None) -> bool:
        if self.before:
            self.before()
            self.before = None
        ok = super().write(body, previous)
        if self.after:
            self.after()
            self.after = None
        return ok


def test_lost_update_is_detected_and_retried(registry: RegistryProcess, tmp_path: Path) -> None:
    """Writer B reads the index, then stalls; writer A writes; B's stale write removes A's entry. A reads back,
    sees its entry gone, and writes again on top of B's index: both entries end up listed."""
    image = _image(registry, "race")
    entries = []
    for name in ("a", "b"):
        manifest, blobs = make_artifact_manifest(image["descriptor"], f"application/vnd.example.{name}+json", [])
        push_artifact(registry.url, REPO, manifest, blobs)
        entries.append(referrer_descriptor(manifest))
    entry_a, entry_b = entries
    config = load_config(write_config(tmp_path / "referee.yaml", [registry.host]))
    ref = parse_reference(f"{registry.host}/{REPO}:race")
    b_waiting, a_written, b_written = threading.Event(), threading.Event(), threading.Event()
    outcome: dict[str, Any] = {}

    def writer_b() -> None:
        with open_session(ref, config.registries, max_manifest_bytes=1 << 22) as session:
            io = _Ordered(
                session, image["digest"], before=lambda: (b_waiting.set(), a_written.wait(30)), after=b_written.set
            )
            outcome["b"] = add_referrer(io, entry_b, what="b", max_bytes=1 << 22, sleep=lambda _: None)

    thread = threading.Thread(target=writer_b)
    thread.start()
    assert b_waiting.wait(30)
    with open_session(ref, config.registries, max_manifest_bytes=1 << 22) as session:
        io = _Ordered(session, image["digest"], after=lambda: (a_written.set(), b_written.wait(30)))
        outcome["a"] = add_referrer(io, entry_a, what="a", max_bytes=1 << 22, sleep=lambda _: None)
    thread.join(30)
    assert outcome["a"].attempts == 2, "A noticed that B's stale write removed its entry"
    assert outcome["b"].attempts == 1
    index = _tag_index(registry, image["digest"])
    assert index is not None
    assert [m["digest"] for m in index["manifests"]] == [entry_b["digest"], entry_a["digest"]]


def _credentials_case(
    request: pytest.FixtureRequest, kind: str
) -> tuple[RegistryProcess, list[dict[str, Any]], Any, Any]:
    """(registry, registries.hosts entries, push auth for fixtures, ssl context) for a registry that needs auth."""
    if kind == "tls-basic":
        reg: RegistryProcess = request.getfixturevalue("tls_registry")
        host = {"host": reg.host, "caFile": str(reg.ca_pem_path), "username": reg.username, "password": reg.password}
        return reg, [host], ("basic", reg.username, reg.password), reg.ssl_context()
    reg = request.getfixturevalue("token_registry")
    assert reg.token_server is not None
    realm_host = reg.token_server.url.split("//")[1].split("/")[0]
    hosts = [
        {
            "host": reg.host,
            "plainHttp": True,
            "username": reg.username,
            "password": reg.password,
            "tokenRealms": [realm_host],
        },
        {"host": realm_host, "plainHttp": True},
    ]
    return reg, hosts, BearerFlow(reg.username, reg.password), None


@pytest.mark.parametrize("kind", ["tls-basic", "token"])
def test_attach_with_the_credentials_verify_uses(
    kind: str, request: pytest.FixtureRequest, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """TLS with a private CA and Basic auth, and the bearer-token flow (a pull,push token; oras-py's own backend
    keeps a pull-only token and cannot push there), from the same ``registries.hosts`` entries verify reads."""
    reg, hosts, auth, ssl_ctx = _credentials_case(request, kind)
    image = make_image(f"attach/auth/{kind}")
    push_image(reg.url, REPO, kind, image, auth, ssl_ctx)
    config = write_config(tmp_path / "referee.yaml", [], hosts=hosts)
    files = evidence_files(tmp_path / "ev", image["digest"])
    ref = f"{reg.host}/{REPO}:{kind}"
    results = _attach_all(capsys, files, "--config", str(config), ref)
    assert {r["discovery"] for r in results.values()} == {"tag-schema"}
    code, verdict = verify(capsys, config, ref)
    assert code == 0, verdict["reason"]
    assert {n: succeeded(verdict)[n] for n in RULES} == {n: [results[n]["digest"]] for n in RULES}

    wrong = write_config(tmp_path / "wrong.yaml", [], hosts=[{**hosts[0], "password": "not-the-password"}, *hosts[1:]])
    code, _, err = run_cli(
        capsys, "attach", "--config", str(wrong), "--artifact-type", mt.SPDX_JSON, ref, str(files["sbom"])
    )
    assert code == 1 and "AUTH_DENIED" in err and "not-the-password" not in err


def test_layout_referrer_mode_lists_a_manifest_another_tool_wrote(
    registry: RegistryProcess, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A layout holding an SBOM manifest that nothing lists (as a copy without index entries leaves it): verify
    finds nothing; ``attach --layout --referrer`` lists it; verify finds it."""
    image = make_image("attach/layout-referrer")
    files = evidence_files(tmp_path / "ev", image["digest"])
    sbom = files["sbom"].read_bytes()
    manifest, blobs = make_artifact_manifest(image["descriptor"], mt.SPDX_JSON, [(mt.SPDX_JSON, sbom, None)])
    layout = write_layout(
        tmp_path / "layout",
        [(image["manifest"], OCI_MANIFEST, "v1")],
        [image["config"], *image["layers"], *blobs.values(), manifest],
    )
    config = write_config(tmp_path / "referee.yaml", [registry.host])
    ref = f"{registry.host}/{REPO}:v1"
    code, before = verify(capsys, config, ref, "--layout", str(layout))
    assert code == 1 and "sbom: no matching artifact found" in before["reason"]

    digest = referrer_descriptor(manifest)["digest"]
    code, _, err = run_cli(
        capsys, "attach", "--layout", str(layout), "--referrer", digest, "--artifact-type", mt.SPDX_JSON, ref
    )
    assert code == 2 and "--referrer lists an existing manifest" in err
    result = attach(capsys, "--layout", str(layout), "--referrer", digest, ref)
    assert result == {
        "subject": f"{registry.host}/{REPO}@{image['digest']}",
        "digest": digest,
        "artifactType": mt.SPDX_JSON,
        "discovery": "layout",
    }
    code, after = verify(capsys, config, ref, "--layout", str(layout))
    assert succeeded(after)["sbom"] == [digest]
    # Listing it again leaves index.json as it is.
    before_bytes = (layout / "index.json").read_bytes()
    attach(capsys, "--layout", str(layout), "--referrer", digest, ref)
    assert (layout / "index.json").read_bytes() == before_bytes


def test_index_writes_are_conditional_on_what_was_read(
    registry: RegistryProcess, referrers_proxy: ReferrersProxy, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The spec's optional conditional push: ``If-None-Match: *`` when creating the tag, ``If-Match`` with the
    ETag the registry sent when replacing it (the proxy, in front of distribution, models a registry without the
    referrers API)."""
    referrers_proxy.mode = "404"
    referrers_proxy.send_oci_subject = False
    image = _image(registry, "conditional")
    config = write_config(tmp_path / "referee.yaml", [registry.host, referrers_proxy.host])
    files = evidence_files(tmp_path / "ev", image["digest"])
    ref = f"{referrers_proxy.host}/{REPO}:conditional"
    tag_path = f"/v2/{REPO}/manifests/{fallback_tag(image['digest'])}"
    written = []
    for name in ("sbom", "scan"):
        result = attach(capsys, "--config", str(config), "--artifact-type", TYPES[name], ref, str(files[name]))
        assert result["discovery"] == "tag-schema"
        index = get_manifest(registry.url, REPO, fallback_tag(image["digest"]), accept=OCI_INDEX)
        written.append(index.header("Docker-Content-Digest"))
    log = zip(referrers_proxy.log, referrers_proxy.request_headers, strict=True)
    puts = [headers for (method, path), headers in log if (method, path) == ("PUT", tag_path)]
    assert len(puts) == 2
    assert puts[0].get("If-None-Match") == "*" and "If-Match" not in puts[0]
    assert puts[1].get("If-Match") == f'"{written[0]}"' and "If-None-Match" not in puts[1]
