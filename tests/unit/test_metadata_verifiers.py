"""The metadata verifiers on in-memory content: configuration checks, document loading, the newest-report rule,
VEX read as siblings, the schema and vex verifiers."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from provider import mediatypes as mt
from provider.config import load_config
from provider.errors import ConfigError, NotFoundError
from provider.oci import Descriptor, Manifest, parse_manifest
from provider.policies.base import Signature
from provider.reference import parse_reference
from provider.verdict import ArtifactResult
from provider.verifiers.base import Subject, VerificationRequest, Verifier, VerifierResult
from provider.verifiers.base import verifier_types as registry
from tests.support.content import make_artifact_manifest, make_image, sha256_digest
from tests.support.paths import VECTORS as SHARED_VECTORS

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
IMAGE = make_image("metadata-verifiers")
SUBJECT = Subject(
    parse_reference(f"registry.example/app@{IMAGE['digest']}"),
    Descriptor(mt.OCI_MANIFEST, IMAGE["digest"], IMAGE["size"]),
)


class Store:
    """Manifests and blobs by digest, as a ContentSource."""

    def __init__(self) -> None:
        self.data: dict[str, bytes] = {}

    async def fetch_manifest(self, descriptor: Descriptor) -> Manifest:
        if descriptor.digest not in self.data:
            raise NotFoundError(f"{descriptor.digest} not found")
        return parse_manifest(self.data[descriptor.digest], descriptor.digest, descriptor.media_type)

    async def fetch_blob(self, descriptor: Descriptor, max_bytes: int | None = None) -> bytes:
        return self.data[descriptor.digest]

    def add(self, artifact_type: str, body: bytes, created: str | None = None) -> Descriptor:
        annotations = {mt.ANNOTATION_CREATED: created} if created else None
        manifest, blobs = make_artifact_manifest(
            IMAGE["descriptor"], artifact_type, [(artifact_type, body, None)], annotations
        )
        self.data.update(blobs)
        self.data[sha256_digest(manifest)] = manifest
        return Descriptor(mt.OCI_MANIFEST, sha256_digest(manifest), len(manifest), artifact_type, annotations or {})


COSIGN_KEY = (
    ec.generate_private_key(ec.SECP256R1())
    .public_key()
    .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    .decode()
)
# Reading VEX needs a policy that requires every VEX document to be signed (checked at configuration time).
VEX_SIGNED = {
    "extra_verifiers": [{"name": "sig", "type": "cosign", "keys": [COSIGN_KEY]}, {"name": "vexdocs", "type": "vex"}],
    "policy": {
        "type": "rules",
        "rules": [
            {"name": "report", "verifiers": ["v"]},
            {"name": "vex-signed", "verifiers": ["vexdocs"], "match": "every", "minCount": 0,
             "nested": {"verifiers": ["sig"]}},
        ],
    },
}  # fmt: skip


def _verifier(tmp_path: Path, spec: dict[str, Any], with_vex_policy: bool = False) -> Verifier:
    path = tmp_path / "referee.yaml"
    doc: dict[str, Any] = {"verifiers": [{"name": "v", **spec}]}
    if with_vex_policy:
        doc["verifiers"] += VEX_SIGNED["extra_verifiers"]
        doc["policy"] = VEX_SIGNED["policy"]
    path.write_text(json.dumps(doc))
    vspec = load_config(path).verifiers[0]
    plugin = registry.get(vspec.type)
    assert plugin is not None
    return plugin.create(vspec)


async def _run(
    verifier: Verifier,
    store: Store,
    artifact: Descriptor,
    siblings: list[Descriptor],
    accepted: frozenset[str] = frozenset(),
) -> VerifierResult:
    manifest = await store.fetch_manifest(artifact)
    request = VerificationRequest(SUBJECT, artifact, manifest, store, NOW, tuple(siblings), accepted)
    assert verifier.can_verify(artifact)
    return await verifier.verify(request)


def _sarif(cve: str, severity: str, **run: Any) -> bytes:
    rule = {"id": cve, "properties": {"tags": ["vulnerability", "security", severity]}}
    body = {"tool": {"driver": {"name": "Trivy", "rules": [rule]}}, "results": [{"ruleId": cve}], **run}
    return json.dumps({"version": "2.1.0", "runs": [body]}).encode()


def _stamp(delta: timedelta) -> str:
    return (NOW - delta).isoformat().replace("+00:00", "Z")


def _config_problems(tmp_path: Path, spec: dict[str, Any]) -> str:
    path = tmp_path / "bad.yaml"
    path.write_text(json.dumps({"verifiers": [{"name": "v", **spec}]}))
    with pytest.raises(ConfigError) as exc:
        load_config(path)
    return str(exc.value)


def test_configuration_problems_are_reported_with_paths(tmp_path: Path) -> None:
    problems = _config_problems(
        tmp_path,
        {
            "type": "vulnerability-report",
            "artifactTypes": [mt.SARIF_JSON],
            "maxSeverity": "SEVERE",
            "deniedVulnerabilities": ["CVE-2024-1"],
            "exceptions": [{"id": "cve-2024-1", "expires": "2026-01-01"}, {"id": "CVE-2", "expires": "soon"}],
            "severitySources": ["tags", "vibes"],
            "vex": {"enabled": True},
        },
    )
    assert "verifiers[0].maxSeverity: must be one of CRITICAL, HIGH" in problems
    assert "verifiers[0].exceptions: CVE-2024-1 is both denied and excepted" in problems
    assert "verifiers[0].exceptions[1]: expires 'soon' is not a date" in problems
    assert "unknown severity source 'vibes'" in problems
    assert "verifiers[0].artifactTypes: must also list the VEX artifact types" in problems
    sbom = _config_problems(tmp_path, {"type": "sbom", "disallowedPackages": ["pkg:", {"name": "x", "v": 1}]})
    assert "verifiers[0].disallowedPackages[0]: invalid package URL 'pkg:'" in sbom
    assert "verifiers[0].disallowedPackages[1]: unknown keys v" in sbom
    schema = _config_problems(tmp_path, {"type": "schema", "schema": "nope"})
    assert "verifiers[0].artifactTypes: required" in schema and "unknown schema 'nope'" in schema
    broken = tmp_path / "broken.json"
    broken.write_text(json.dumps({"type": 12}))
    invalid = _config_problems(tmp_path, {"type": "schema", "schemaFile": str(broken), "artifactTypes": ["x"]})
    assert "verifiers[0].schemaFile: not a valid JSON Schema: 12 is not valid" in invalid


def _result(artifact: Descriptor, outcome: VerifierResult, verifier: str = "v") -> ArtifactResult:
    return ArtifactResult(
        artifact.digest, artifact.artifact_type or "", verifier, "vulnerability-report", outcome.succeeded,
        outcome.reason, outcome.details,
    )  # fmt: skip


async def _judged(verifier: Verifier, store: Store, artifacts: list[Descriptor]) -> list[ArtifactResult]:
    return [_result(a, await _run(verifier, store, a, artifacts)) for a in artifacts]


def _reconcile(verifier: Verifier, results: list[ArtifactResult], signed: Any = None, complete: bool = True) -> Any:
    reconcile = verifier.reconcile  # type: ignore[attr-defined]
    return reconcile(results, signed or (lambda r: Signature.NOT_REQUIRED), complete)


async def test_newest_report_decides_and_older_ones_are_superseded(tmp_path: Path) -> None:
    verifier = _verifier(tmp_path, {"type": "vulnerability-report", "maxSeverity": "HIGH", "maximumAge": "24h"})
    store = Store()
    old = store.add(mt.SARIF_JSON, _sarif("CVE-1", "LOW"), _stamp(timedelta(hours=5)))
    new = store.add(mt.SARIF_JSON, _sarif("CVE-2", "LOW"), _stamp(timedelta(hours=1)))
    # No annotation on the manifest: its own SARIF time (3h ago) places it in the middle.
    own_time = store.add(
        mt.SARIF_JSON, _sarif("CVE-3", "CRITICAL", invocations=[{"endTimeUtc": _stamp(timedelta(hours=3))}])
    )
    judged = await _judged(verifier, store, [old, new, own_time])
    assert [r.succeeded for r in judged] == [True, True, False]
    old_result, newest, middle = _reconcile(verifier, judged)
    assert (old_result.succeeded, old_result.reason) == (False, f"superseded by {new.digest}")
    assert old_result.details["superseded"] is True and old_result.details["supersededBy"] == new.digest
    assert newest.succeeded and newest.details["highestSeverity"] == "LOW" and not newest.details["superseded"]
    # A report that failed on its own keeps its reason, and is marked superseded.
    assert middle.reason == "CVE-3 (CRITICAL) exceeds the highest allowed severity HIGH"
    assert middle.details["superseded"] is True
    [alone] = _reconcile(verifier, await _judged(verifier, store, [own_time]))
    assert not alone.succeeded and alone.details["reportCreatedSource"] == "report"
    assert "CVE-3 (CRITICAL) exceeds the highest allowed severity HIGH" in alone.reason


async def test_only_eligible_reports_compete_and_an_unknown_newest_fails_closed(tmp_path: Path) -> None:
    """Unsigned or unreadable reports cannot outrank signed ones; when the newest signed report cannot be
    established (no usable time, a tie, a capped listing) no report counts."""
    verifier = _verifier(tmp_path, {"type": "vulnerability-report", "maxSeverity": "HIGH"})
    store = Store()
    clean = store.add(mt.SARIF_JSON, _sarif("CVE-1", "LOW"), _stamp(timedelta(days=3)))
    critical = store.add(mt.SARIF_JSON, _sarif("CVE-2", "CRITICAL"), _stamp(timedelta(hours=1)))
    junk = [store.add(mt.SARIF_JSON, _sarif("CVE-3", "LOW"), f"9999-junk-{i:02}") for i in range(3)]
    unreadable = store.add(mt.SARIF_JSON, b"{not json", _stamp(timedelta(minutes=1)))
    signed_digests = {clean.digest, critical.digest}

    def signed(result: ArtifactResult) -> Signature:
        return Signature.PRESENT if result.digest in signed_digests else Signature.MISSING

    judged = await _judged(verifier, store, [*junk, clean, unreadable, critical])
    assert all(r.succeeded for r in judged[:3]), "junk reports pass on their own (no maximumAge)"
    reconciled = {r.digest: r for r in _reconcile(verifier, judged, signed)}
    assert not any(r.succeeded for r in reconciled.values())
    assert reconciled[clean.digest].reason == f"superseded by {critical.digest}"
    assert reconciled[critical.digest].reason == "CVE-2 (CRITICAL) exceeds the highest allowed severity HIGH"
    assert all(reconciled[j.digest].reason == f"superseded by {critical.digest}" for j in junk)

    # Without the critical report the signed clean one decides, whatever the junk claims.
    judged = await _judged(verifier, store, [*junk, clean])
    reconciled = {r.digest: r for r in _reconcile(verifier, judged, signed)}
    assert reconciled[clean.digest].succeeded and not any(reconciled[j.digest].succeeded for j in junk)

    # Signed reports whose order cannot be established: none counts.
    undated = store.add(mt.SARIF_JSON, _sarif("CVE-4", "LOW"))
    signed_digests.add(undated.digest)
    results = _reconcile(verifier, await _judged(verifier, store, [clean, undated]), signed)
    assert not any(r.succeeded for r in results)
    assert "has no usable creation time" in results[0].reason and results[0].details["newestUnknown"] is True
    twin = store.add(mt.SARIF_JSON, _sarif("CVE-5", "LOW"), _stamp(timedelta(days=3)))
    signed_digests.add(twin.digest)
    results = _reconcile(verifier, await _judged(verifier, store, [clean, twin]), signed)
    assert not any(r.succeeded for r in results)
    assert all("2 reports share the newest creation time" in r.reason for r in results)
    [capped] = _reconcile(verifier, await _judged(verifier, store, [clean]), signed, complete=False)
    assert not capped.succeeded and "not every listed report was examined" in capped.reason

    # A report whose signatures could not all be examined may be the signed newest one: nothing counts.
    def unknown_critical(result: ArtifactResult) -> Signature:
        return Signature.UNKNOWN if result.digest == critical.digest else signed(result)

    results = _reconcile(verifier, await _judged(verifier, store, [clean, critical]), unknown_critical)
    assert not any(r.succeeded for r in results)
    assert all("could not all be examined" in r.reason for r in results if r.digest == clean.digest)

    # When the policy requires signatures on some reports, an unsigned report of a type no rule covers
    # (NOT_REQUIRED) does not compete with them.
    def uncovered_junk(result: ArtifactResult) -> Signature:
        return Signature.NOT_REQUIRED if result.digest == junk[0].digest else signed(result)

    judged = await _judged(verifier, store, [clean, junk[0]])
    reconciled = {r.digest: r for r in _reconcile(verifier, judged, uncovered_junk)}
    assert reconciled[clean.digest].succeeded


async def test_creation_time_fails_closed_unless_configured(tmp_path: Path) -> None:
    store = Store()
    undated = store.add(mt.SARIF_JSON, _sarif("CVE-1", "LOW"))
    garbled = store.add(mt.SARIF_JSON, _sarif("CVE-1", "LOW"), "last tuesday")
    future = store.add(mt.SARIF_JSON, _sarif("CVE-1", "LOW"), (NOW + timedelta(hours=2)).isoformat())
    strict = _verifier(tmp_path, {"type": "vulnerability-report", "maximumAge": "24h"})
    assert (await _run(strict, store, undated, [undated])).reason == "report creation time is unknown"
    result = await _run(strict, store, garbled, [garbled])
    assert result.reason == "org.opencontainers.image.created annotation 'last tuesday' is not an RFC 3339 date-time"
    assert "in the future (allowed skew 300s)" in (await _run(strict, store, future, [future])).reason
    lenient = _verifier(tmp_path, {"type": "vulnerability-report", "maximumAge": "24h", "requireCreationTime": False})
    assert (await _run(lenient, store, undated, [undated])).succeeded
    assert (await _run(lenient, store, garbled, [garbled])).succeeded
    no_age = _verifier(tmp_path, {"type": "vulnerability-report"})
    assert (await _run(no_age, store, garbled, [garbled])).succeeded


async def test_report_for_another_image_and_unreadable_documents(tmp_path: Path) -> None:
    verifier = _verifier(tmp_path, {"type": "vulnerability-report"})
    store = Store()
    other = store.add(mt.SARIF_JSON, _sarif("CVE-1", "LOW", properties={"repoDigests": ["x@sha256:" + "1" * 64]}))
    result = await _run(verifier, store, other, [other])
    assert result.reason == f"the report is about sha256:{'1' * 64}, not {IMAGE['digest']}"
    same = store.add(mt.SARIF_JSON, _sarif("CVE-1", "LOW", properties={"repoDigests": [f"x@{IMAGE['digest']}"]}))
    assert (await _run(verifier, store, same, [same])).succeeded
    broken = store.add(mt.SARIF_JSON, b"{not json")
    result = await _run(verifier, store, broken, [broken])
    assert result.reason.startswith("unreadable report: the report is not JSON")


async def test_vex_siblings_are_read_but_not_claimed(tmp_path: Path) -> None:
    verifier = _verifier(
        tmp_path, {"type": "vulnerability-report", "maxSeverity": "MEDIUM", "vex": {"enabled": True}}, True
    )
    store = Store()
    report = store.add(mt.SARIF_JSON, _sarif("CVE-2024-7", "CRITICAL"))
    statement = {
        "vulnerability": {"name": "CVE-2024-7"},
        "products": [{"@id": "x", "hashes": {"sha-256": IMAGE["digest"].split(":")[1]}}],
        "status": "fixed",
    }
    vex_doc = {
        "@context": "https://openvex.dev/ns/v0.2.0",
        "@id": "https://example.com/vex",
        "author": "a",
        "timestamp": "2026-01-01T00:00:00Z",
        "version": 1,
        "statements": [statement],
    }
    vex = store.add(mt.OPENVEX_JSON_SHORT, json.dumps(vex_doc).encode())
    broken_vex = store.add(mt.OPENVEX_JSON, b"[]")
    assert not verifier.can_verify(vex)
    # Only documents the executor accepted (verified, and signed as the policy requires) are read.
    refused = await _run(verifier, store, report, [report, vex, broken_vex])
    assert not refused.succeeded and refused.details["vexDocuments"] == []
    assert refused.details["vexErrors"] == [
        f"{d.digest[:19]}: not used: not verified with the signatures the policy requires" for d in (vex, broken_vex)
    ]
    result = await _run(verifier, store, report, [report, vex, broken_vex], frozenset({vex.digest, broken_vex.digest}))
    assert result.succeeded, result.reason
    assert result.details["vexDocuments"] == [vex.digest]
    assert result.details["suppressions"][0]["status"] == "fixed"
    assert result.details["vexErrors"] == [f"{broken_vex.digest[:19]}: not an OpenVEX document: @context is None"]
    without = _verifier(tmp_path, {"type": "vulnerability-report", "maxSeverity": "MEDIUM", "vex": {"enabled": False}})
    assert not (await _run(without, store, report, [report, vex], frozenset({vex.digest}))).succeeded

    standalone = _verifier(tmp_path, {"type": "vex", "requireSubjectProduct": True})
    ok = await _run(standalone, store, vex, [vex])
    assert ok.succeeded and ok.details["statementsAboutSubject"] == [0]
    statement["status"] = "not_affected"
    bad = store.add(mt.OPENVEX_JSON, json.dumps(vex_doc).encode())
    result = await _run(standalone, store, bad, [bad])
    assert (
        result.reason
        == "invalid OpenVEX document: statements[0]: not_affected without a justification or impact_statement"
    )


async def test_sbom_verifier_results(tmp_path: Path) -> None:
    verifier = _verifier(tmp_path, {"type": "sbom", "disallowedLicenses": ["GPL-2.0-only"]})
    store = Store()
    vectors = SHARED_VECTORS / "sbom"
    syft = store.add(mt.SPDX_JSON, (vectors / "syft-0.76.0.spdx.json").read_bytes())
    result = await _run(verifier, store, syft, [syft])
    assert not result.succeeded and result.details["packageCount"] == 16 and result.details["findingCount"] == 7
    assert result.reason.startswith("spdx SPDX-2.3 SBOM (16 packages): package alpine-baselayout@3.4.0-r0 has")
    invalid = store.add(mt.SPDX_JSON, (vectors / "invalid-bom.spdx.json").read_bytes())
    result = await _run(verifier, store, invalid, [invalid])
    assert result.reason == "not a valid SPDX document: spdxVersion is missing"
    cdx = store.add(mt.CYCLONEDX_JSON, (vectors / "trivy-centos-7.cyclonedx.json").read_bytes())
    result = await _run(verifier, store, cdx, [cdx])
    assert result.succeeded and result.details["format"] == "cyclonedx" and result.details["specVersion"] == "1.5"


async def test_schema_verifier(tmp_path: Path) -> None:
    verifier = _verifier(tmp_path, {"type": "schema", "schema": "sarif-2.1.0", "artifactTypes": [mt.SARIF_JSON]})
    store = Store()
    vector = SHARED_VECTORS / "vuln" / "trivy-scan-report.sarif.json"
    good = store.add(mt.SARIF_JSON, vector.read_bytes())
    assert (await _run(verifier, store, good, [good])).succeeded
    bad = store.add(mt.SARIF_JSON, json.dumps({"version": "2.1.0", "runs": [{"tool": {}}]}).encode())
    result = await _run(verifier, store, bad, [bad])
    assert result.reason == "does not match schema sarif-2.1.0: runs/0/tool: 'driver' is a required property"
    remote = tmp_path / "remote.json"
    remote.write_text(json.dumps({"$ref": "https://example.com/schema.json"}))
    by_file = _verifier(tmp_path, {"type": "schema", "schemaFile": str(remote), "artifactTypes": [mt.SARIF_JSON]})
    result = await _run(by_file, store, good, [good])
    assert "https://example.com/schema.json" in result.reason and "not available offline" in result.reason


def test_the_documented_configuration_loads(tmp_path: Path) -> None:
    docs = Path(__file__).resolve().parents[2] / "docs" / "metadata.md"
    block = re.search(r"```yaml\n(registries:.*?)```", docs.read_text(), re.DOTALL)
    assert block is not None
    document = yaml.safe_load(block.group(1))
    key = ec.generate_private_key(ec.SECP256R1()).public_key()
    key_file = tmp_path / "cosign.pub"
    key_file.write_bytes(key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    document["verifiers"][0]["keys"] = [str(key_file)]
    document["registries"]["hosts"][0].pop("caFile")
    document.pop("server")
    path = tmp_path / "referee.yaml"
    path.write_text(yaml.safe_dump(document))
    config = load_config(path)
    assert [v.type for v in config.verifiers] == ["cosign", "sbom", "vulnerability-report", "vex"]
    assert config.policy.type == "rules" and mt.SARIF_JSON in config.limits.nested_artifact_types
    vulns = config.verifiers[2].params
    assert vulns.policy.max_severity == "MEDIUM" and vulns.maximum_age == 168 * 3600
    assert vulns.policy.exceptions[0].expires == datetime(2026, 10, 1, tzinfo=UTC)


def test_vex_needs_a_policy_that_requires_signed_vex(tmp_path: Path) -> None:
    path = tmp_path / "referee.yaml"
    vuln = {"name": "v", "type": "vulnerability-report", "vex": {"enabled": True}}
    path.write_text(json.dumps({"verifiers": [vuln], "policy": {"type": "required-verifiers", "required": ["v"]}}))
    with pytest.raises(ConfigError) as exc:
        load_config(path)
    assert exc.value.problems == [
        "verifiers[0]: vex.enabled: VEX documents suppress findings, so each must be signed: configure a `vex` "
        "verifier for application/openvex+json, application/vnd.openvex+json and a rules-policy rule over it with "
        "match: every and nested verifiers, covering every VEX artifact type and every scope of this verifier "
        "(docs/metadata.md), or set vex.enabled: false"
    ]
    assert _verifier(tmp_path, {"type": "vulnerability-report", "vex": {"enabled": True}}, True) is not None


def test_vex_rule_must_cover_every_vex_type_and_scope_the_report_verifier_reads(tmp_path: Path) -> None:
    """Attack A4's configuration (issue #21): the vex-signed rule names only one VEX type; reading the other type
    unsigned must not pass `referee config check`. Scopes likewise."""

    def problems(rule_extra: dict[str, Any], vex_extra: dict[str, Any], vuln_extra: dict[str, Any]) -> list[str]:
        doc: dict[str, Any] = {
            "verifiers": [
                {"name": "v", "type": "vulnerability-report", "vex": {"enabled": True}, **vuln_extra},
                {"name": "sig", "type": "cosign", "keys": [COSIGN_KEY]},
                {"name": "vexdocs", "type": "vex", **vex_extra},
            ],
            "policy": {"type": "rules", "rules": [
                {"name": "report", "verifiers": ["v"]},
                {"name": "vex-signed", "verifiers": ["vexdocs"], "match": "every", "minCount": 0,
                 "nested": {"verifiers": ["sig"]}, **rule_extra},
            ]},
        }  # fmt: skip
        path = tmp_path / "referee.yaml"
        path.write_text(json.dumps(doc))
        try:
            load_config(path)
        except ConfigError as exc:
            return exc.problems
        return []

    assert problems({}, {}, {}) == []
    assert problems({"artifactTypes": [mt.OPENVEX_JSON, mt.OPENVEX_JSON_SHORT]}, {}, {}) == []
    [one_type] = problems({"artifactTypes": [mt.OPENVEX_JSON]}, {}, {})
    assert one_type.startswith("verifiers[0]: vex.enabled: VEX documents suppress findings")
    assert problems({"scopes": ["registry.example/team/*"]}, {}, {})
    assert problems({}, {"scopes": ["registry.example/team/*"]}, {})
    assert problems({"scopes": ["registry.example/*"]}, {}, {"scopes": ["registry.example/team/*"]}) == []
    assert problems({"scopes": ["registry.example"]}, {}, {"scopes": ["registry.example/team/*"]}) == []


# -- review findings: each asserts the fixed behaviour ----------------------------------------------------------


def test_dates_at_the_edges_of_the_calendar_are_unreadable_not_crashes() -> None:
    from provider.metadata.common import parse_expiry, parse_rfc3339

    for value in ("9999-12-31T23:59:59-01:00", "0001-01-01T00:30:00+01:00", "9999-12-31T23:59:60Z"):
        assert parse_rfc3339(value) is None
    assert parse_expiry("9999-12-31") is None


def test_exact_purl_version_matches_the_packages_own_version() -> None:
    from provider.metadata.sbom import SbomPolicy, evaluate_sbom, parse_sbom

    policy = SbomPolicy.of(packages=["pkg:npm/event-stream@3.3.6"])
    ref = {"referenceCategory": "PACKAGE-MANAGER", "referenceType": "purl", "referenceLocator": "pkg:npm/event-stream"}
    doc = {"spdxVersion": "SPDX-2.3", "SPDXID": "SPDXRef-DOCUMENT"}
    bad = parse_sbom({**doc, "packages": [{"name": "event-stream", "versionInfo": "3.3.6", "externalRefs": [ref]}]})
    assert not evaluate_sbom(bad, policy).passed
    fine = parse_sbom({**doc, "packages": [{"name": "event-stream", "versionInfo": "3.3.7", "externalRefs": [ref]}]})
    assert evaluate_sbom(fine, policy).passed


async def test_future_dated_and_invalid_vex_documents_are_not_used(tmp_path: Path) -> None:
    spec = {"type": "vulnerability-report", "maxSeverity": "MEDIUM", "vex": {"enabled": True}}
    verifier = _verifier(tmp_path, spec, True)
    store = Store()
    report = store.add(mt.SARIF_JSON, _sarif("CVE-2024-9999", "CRITICAL"), _stamp(timedelta(hours=1)))
    product = [{"@id": IMAGE["digest"]}]
    base = {"@context": "https://openvex.dev/ns/v0.2.0", "@id": "x", "author": "a", "version": 1}
    future = {**base, "timestamp": "2099-01-01T00:00:00Z", "statements": [{"vulnerability": {"name": "CVE-2024-9999"},
              "products": product, "status": "not_affected", "justification": "component_not_present"}]}  # fmt: skip
    invalid = {"@context": "https://openvex.dev/ns/v0.2.0", "statements": [{"vulnerability": {"name": "CVE-2024-9999"},
               "products": product, "status": "fixed"}]}  # fmt: skip
    overflow = {**base, "timestamp": "9999-12-31T23:59:59-01:00", "statements": []}
    docs = [store.add(mt.OPENVEX_JSON, json.dumps(d).encode()) for d in (future, invalid, overflow)]
    result = await _run(verifier, store, report, [report, *docs], frozenset(d.digest for d in docs))
    assert not result.succeeded
    assert result.details["suppressions"] == []
    errors = " ".join(result.details["vexErrors"])
    assert "in the future" in errors
    assert "not used" in errors


async def test_vex_that_cannot_all_be_read_stops_the_report_from_counting(tmp_path: Path) -> None:
    """A VEX document whose signatures could not all be examined, or more signed VEX documents than Referee reads,
    could hide a newer statement revoking a suppression: the report fails instead of dropping them silently."""
    verifier = _verifier(
        tmp_path, {"type": "vulnerability-report", "maxSeverity": "MEDIUM", "vex": {"enabled": True}}, True
    )
    store = Store()
    report = store.add(mt.SARIF_JSON, _sarif("CVE-2024-7", "CRITICAL"))
    statement = {"vulnerability": {"name": "CVE-2024-7"}, "products": [{"@id": f"x@{IMAGE['digest']}"}],
                 "status": "fixed"}  # fmt: skip
    base = {"@context": "https://openvex.dev/ns/v0.2.0", "author": "a", "timestamp": "2026-01-01T00:00:00Z",
            "version": 1}  # fmt: skip
    suppressing = store.add(mt.OPENVEX_JSON, json.dumps({**base, "@id": "s", "statements": [statement]}).encode())
    siblings = [report, suppressing]
    assert (await _run(verifier, store, report, siblings, frozenset({suppressing.digest}))).succeeded
    unsettled = store.add(mt.OPENVEX_JSON, json.dumps({**base, "@id": "u", "statements": []}).encode())
    manifest = await store.fetch_manifest(report)
    request = VerificationRequest(
        SUBJECT, report, manifest, store, NOW, (report, suppressing, unsettled),
        frozenset({suppressing.digest}), frozenset({unsettled.digest}),
    )  # fmt: skip
    result = await verifier.verify(request)
    assert not result.succeeded
    assert f"cannot judge the report: VEX document {unsettled.digest[:19]}: its signatures" in result.reason
    many = [
        store.add(mt.OPENVEX_JSON, json.dumps({**base, "@id": f"m{i}", "statements": []}).encode()) for i in range(64)
    ]
    everything = [report, suppressing, *many]
    crowded = await _run(verifier, store, report, everything, frozenset(d.digest for d in everything[1:]))
    assert not crowded.succeeded
    assert "65 signed VEX documents, more than the 64 Referee reads" in crowded.reason


def test_a_signing_rule_must_cover_every_report_type_the_verifier_reads(tmp_path: Path) -> None:
    path = tmp_path / "referee.yaml"
    doc = {
        "verifiers": [
            {"name": "v", "type": "vulnerability-report", "artifactTypes": [mt.SARIF_JSON, "application/x-report"]},
            {"name": "sig", "type": "cosign", "keys": [COSIGN_KEY]},
        ],
        "policy": {"type": "rules", "rules": [
            {"name": "signed", "verifiers": ["v"], "artifactTypes": [mt.SARIF_JSON], "nested": {"verifiers": ["sig"]}},
        ]},
    }  # fmt: skip
    path.write_text(json.dumps(doc))
    with pytest.raises(ConfigError) as exc:
        load_config(path)
    assert exc.value.problems == [
        "verifiers[0]: policy rule 'signed' requires signatures on reports of application/sarif+json only, but this "
        "verifier also reads application/x-report: list every report type in the rule's artifactTypes or narrow this "
        "verifier's artifactTypes"
    ]
