"""Seed 002's policy end to end on the real registry, through POST /verify: every image carries an SBOM and a fresh
vulnerability report, no HIGH+ finding unless VEX says not affected, and the metadata is signed (cosign legacy
``.sig`` tags on each artifact manifest, verified as nested results). Referrers travel in the ``sha256-<hex>``
fallback index of the plain registry."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography.hazmat.primitives.asymmetric import ec

from provider import mediatypes as mt
from tests.integration.conftest import public_pem
from tests.support.content import (
    cosign_payload,
    cosign_sign_legacy,
    cosign_sign_payload,
    make_artifact_manifest,
    make_image,
    push_artifact,
    push_fallback_index,
    push_image,
    sha256_digest,
)
from tests.support.referee import Pki, items_by_key, running_referee, server_section, write_config
from tests.support.referrers_proxy import ReferrersProxy
from tests.support.registry import RegistryProcess

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
REPO = "meta/app"
NESTED = [mt.SPDX_JSON, mt.SARIF_JSON, mt.OPENVEX_JSON]


def _stamp(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def _spdx(name: str, license_id: str = "Apache-2.0") -> bytes:
    return json.dumps(
        {
            "spdxVersion": "SPDX-2.3",
            "dataLicense": "CC0-1.0",
            "SPDXID": "SPDXRef-DOCUMENT",
            "name": name,
            "documentNamespace": f"https://example.com/spdx/{name}",
            "creationInfo": {"created": "2026-06-01T10:00:00Z", "creators": ["Tool: test"]},
            "packages": [
                {
                    "name": "openssl",
                    "SPDXID": "SPDXRef-Package-openssl",
                    "versionInfo": "3.0.7-r0",
                    "downloadLocation": "NOASSERTION",
                    "licenseConcluded": license_id,
                    "externalRefs": [
                        {
                            "referenceCategory": "PACKAGE-MANAGER",
                            "referenceType": "purl",
                            "referenceLocator": "pkg:apk/alpine/openssl@3.0.7-r0?arch=x86_64",
                        }
                    ],
                }
            ],
        }
    ).encode()


def _sarif(findings: list[tuple[str, str]]) -> bytes:
    """Trivy-shaped SARIF: one rule and one result per (CVE, severity), all in package openssl."""
    rules = [
        {
            "id": cve,
            "name": "OsPackageVulnerability",
            "help": {"text": f"Vulnerability {cve}\nSeverity: {severity}\nPackage: openssl"},
            "properties": {"tags": ["vulnerability", "security", severity], "security-severity": "5.0"},
        }
        for cve, severity in findings
    ]
    results = [
        {
            "ruleId": cve,
            "ruleIndex": i,
            "level": "error",
            "message": {"text": f"Package: openssl\nInstalled Version: 3.0.7-r0\nVulnerability {cve}"},
        }
        for i, (cve, _) in enumerate(findings)
    ]
    run = {"tool": {"driver": {"name": "Trivy", "version": "0.50.0", "rules": rules}}, "results": results}
    return json.dumps({"version": "2.1.0", "runs": [run]}).encode()


def _openvex(image_digest: str, cve: str, status: str = "not_affected") -> bytes:
    hex_value = image_digest.split(":")[1]
    statement: dict[str, Any] = {
        "vulnerability": {"name": cve},
        "products": [{"@id": f"pkg:oci/app@sha256%3A{hex_value}?repository_url=registry.example/meta/app"}],
        "status": status,
    }
    if status == "not_affected":
        statement["justification"] = "vulnerable_code_not_in_execute_path"
    return json.dumps(
        {
            "@context": "https://openvex.dev/ns/v0.2.0",
            "@id": f"https://example.com/vex/{cve}",
            "author": "Security Team",
            "timestamp": "2026-05-30T00:00:00Z",
            "version": 1,
            "statements": [statement],
        }
    ).encode()


@dataclass
class Scenario:
    """One image in ``REPO`` and the artifacts attached to it."""

    registry: RegistryProcess
    key: ec.EllipticCurvePrivateKey
    tag: str
    image: dict[str, Any] = field(default_factory=dict)
    attached: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.image = make_image(f"metadata-e2e/{self.tag}")
        push_image(self.registry.url, REPO, self.tag, self.image)

    @property
    def key_ref(self) -> str:
        return f"{self.registry.host}/{REPO}:{self.tag}"

    def attach(self, name: str, artifact_type: str, body: bytes, created: datetime, *, sign: bool = True) -> str:
        manifest, blobs = make_artifact_manifest(
            self.image["descriptor"],
            artifact_type,
            [(artifact_type, body, None)],
            annotations={mt.ANNOTATION_CREATED: _stamp(created)},
        )
        push_artifact(self.registry.url, REPO, manifest, blobs)
        digest = sha256_digest(manifest)
        if sign:
            cosign_sign_legacy(self.registry.url, REPO, digest, self.key)
        push_fallback_index(self.registry.url, REPO, self.image["digest"], [manifest])
        self.attached[name] = digest
        return digest


@pytest.fixture(scope="module")
def key_and_file(tmp_path_factory: pytest.TempPathFactory) -> tuple[ec.EllipticCurvePrivateKey, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    path = tmp_path_factory.mktemp("metadata-keys") / "cosign.pub"
    path.write_bytes(public_pem(key))
    return key, path


def _config(tmp_path: Path, registry: RegistryProcess, key_file: Path, pki: Pki) -> Path:
    doc: dict[str, Any] = {
        "registries": {"allow": ["127.0.0.1:*"], "hosts": [{"host": registry.host, "plainHttp": True}]},
        "verifiers": [
            {"name": "cosign-ci", "type": "cosign", "keys": [str(key_file)]},
            {"name": "sbom", "type": "sbom", "disallowedLicenses": ["AGPL-3.0-only", "SSPL-1.0"]},
            {
                "name": "vuln",
                "type": "vulnerability-report",
                "maxSeverity": "MEDIUM",
                "maximumAge": "168h",
                "vex": {"enabled": True},
            },
            {"name": "vex", "type": "vex"},
        ],
        "policy": {
            "type": "rules",
            "rules": [
                {"name": "sbom-signed", "verifiers": ["sbom"], "nested": {"verifiers": ["cosign-ci"]}},
                {
                    "name": "report-signed",
                    "verifiers": ["vuln"],
                    "match": "any",
                    "nested": {"verifiers": ["cosign-ci"]},
                },
                {
                    "name": "vex-signed",
                    "verifiers": ["vex"],
                    "match": "every",
                    "minCount": 0,
                    "nested": {"verifiers": ["cosign-ci"]},
                },
            ],
        },
        "limits": {"maxNestedDepth": 1, "nestedArtifactTypes": NESTED},
        "cache": {"verdictTtl": 0},
        "server": server_section(pki),
    }
    return write_config(tmp_path / "referee.yaml", doc)


def _by_verifier(verdict: dict[str, Any], name: str) -> list[dict[str, Any]]:
    return [a for a in verdict["artifacts"] if a["verifier"] == name]


async def test_seed_002_policy_end_to_end(
    registry: RegistryProcess,
    pki: Pki,
    tmp_path: Path,
    key_and_file: tuple[ec.EllipticCurvePrivateKey, Path],
) -> None:
    key, key_file = key_and_file
    fresh, old = NOW - timedelta(hours=1), NOW - timedelta(days=10)
    make: Callable[[str], Scenario] = lambda tag: Scenario(registry, key, tag)  # noqa: E731

    good = make("good")
    good.attach("sbom", mt.SPDX_JSON, _spdx("good"), fresh)
    good.attach("report", mt.SARIF_JSON, _sarif([("CVE-2024-1000", "MEDIUM")]), fresh)

    no_sbom = make("no-sbom")
    no_sbom.attach("report", mt.SARIF_JSON, _sarif([("CVE-2024-1000", "MEDIUM")]), fresh)

    aged = make("aged")
    aged.attach("sbom", mt.SPDX_JSON, _spdx("aged"), fresh)
    aged.attach("report", mt.SARIF_JSON, _sarif([("CVE-2024-1000", "MEDIUM")]), old)

    critical = make("critical")
    critical.attach("sbom", mt.SPDX_JSON, _spdx("critical"), fresh)
    critical.attach(
        "report", mt.SARIF_JSON, _sarif([("CVE-2024-1000", "MEDIUM"), ("CVE-2024-9999", "CRITICAL")]), fresh
    )

    unsigned = make("unsigned-sbom")
    unsigned.attach("sbom", mt.SPDX_JSON, _spdx("unsigned"), fresh, sign=False)
    unsigned.attach("report", mt.SARIF_JSON, _sarif([]), fresh)

    superseded = make("two-reports")
    superseded.attach("sbom", mt.SPDX_JSON, _spdx("two-reports"), fresh)
    superseded.attach("old-report", mt.SARIF_JSON, _sarif([("CVE-2024-9999", "CRITICAL")]), NOW - timedelta(days=2))
    superseded.attach("new-report", mt.SARIF_JSON, _sarif([("CVE-2024-1000", "LOW")]), fresh)

    config = _config(tmp_path, registry, key_file, pki)
    scenarios = [good, no_sbom, aged, critical, unsigned, superseded]
    async with running_referee(config, pki, clock=lambda: NOW) as referee:
        items = items_by_key(await referee.verify([s.key_ref for s in scenarios]))
        verdicts = {s.tag: items[s.key_ref]["value"] for s in scenarios}

        ok = verdicts["good"]
        assert ok["allowed"] is True, ok["reason"]
        assert ok["reason"].startswith("satisfied rules: sbom-signed (")
        [sbom] = _by_verifier(ok, "sbom")
        assert sbom["succeeded"] and sbom["details"]["format"] == "spdx" and sbom["details"]["packageCount"] == 1
        [nested] = sbom["nested"]
        assert nested["verifier"] == "cosign-ci" and nested["succeeded"]
        assert nested["details"]["signedDigest"] == good.attached["sbom"]
        [report] = _by_verifier(ok, "vuln")
        assert report["succeeded"] and report["details"]["highestSeverity"] == "MEDIUM"
        assert report["details"]["reportCreated"] == _stamp(fresh)
        assert report["details"]["reportCreatedSource"] == "manifest-annotation"
        assert [n["verifier"] for n in report["nested"] if n["succeeded"]] == ["cosign-ci"]

        missing = verdicts["no-sbom"]
        assert missing["allowed"] is False
        expected = "rule sbom-signed: 0 of 1 verified artifacts from sbom (sbom: no matching artifact found)"
        assert expected in missing["reason"]
        assert "report-signed" not in missing["reason"]

        stale = verdicts["aged"]
        assert stale["allowed"] is False
        assert "rule report-signed" in stale["reason"] and "older than the maximum 7d0h" in stale["reason"]
        [report] = _by_verifier(stale, "vuln")
        assert report["details"]["ageSeconds"] == 10 * 86400

        crit = verdicts["critical"]
        assert crit["allowed"] is False
        assert "CVE-2024-9999 (CRITICAL, openssl) exceeds the highest allowed severity MEDIUM" in crit["reason"]
        [report] = _by_verifier(crit, "vuln")
        assert report["details"]["highestSeverity"] == "CRITICAL"

        bare = verdicts["unsigned-sbom"]
        assert bare["allowed"] is False
        assert f"{unsigned.attached['sbom'][:19]}: not verified by cosign-ci (no nested artifact)" in bare["reason"]
        [sbom] = _by_verifier(bare, "sbom")
        assert sbom["succeeded"] and sbom["nested"] == []

        two = verdicts["two-reports"]
        assert two["allowed"] is True, two["reason"]
        by_digest = {a["digest"]: a for a in _by_verifier(two, "vuln")}
        old_result = by_digest[superseded.attached["old-report"]]
        assert old_result["succeeded"] is False and old_result["details"]["superseded"] is True
        assert old_result["details"]["supersededBy"] == superseded.attached["new-report"]
        assert old_result["reason"] == "CVE-2024-9999 (CRITICAL, openssl) exceeds the highest allowed severity MEDIUM"
        assert by_digest[superseded.attached["new-report"]]["details"]["highestSeverity"] == "LOW"

        # The VEX statement turns the CRITICAL image's deny into an allow (the verdict cache is off).
        vex_digest = critical.attach("vex", mt.OPENVEX_JSON, _openvex(critical.image["digest"], "CVE-2024-9999"), fresh)
        after = items_by_key(await referee.verify([critical.key_ref]))[critical.key_ref]["value"]
        assert after["allowed"] is True, after["reason"]
        [report] = _by_verifier(after, "vuln")
        details = report["details"]
        assert details["highestSeverity"] == "MEDIUM" and details["vexDocuments"] == [vex_digest]
        [suppression] = details["suppressions"]
        assert suppression["id"] == "CVE-2024-9999" and suppression["status"] == "not_affected"
        assert suppression["vexSource"] == vex_digest and suppression["statement"] == 0
        assert suppression["justification"] == "vulnerable_code_not_in_execute_path"
        [vex] = _by_verifier(after, "vex")
        assert vex["succeeded"] and vex["details"]["statementsAboutSubject"] == [0]
        assert [n["verifier"] for n in vex["nested"] if n["succeeded"]] == ["cosign-ci"]


async def test_under_investigation_vex_does_not_turn_a_deny_into_an_allow(
    registry: RegistryProcess,
    pki: Pki,
    tmp_path: Path,
    key_and_file: tuple[ec.EllipticCurvePrivateKey, Path],
) -> None:
    key, key_file = key_and_file
    fresh = NOW - timedelta(hours=1)
    scenario = Scenario(registry, key, "investigating")
    scenario.attach("sbom", mt.SPDX_JSON, _spdx("investigating"), fresh)
    scenario.attach("report", mt.SARIF_JSON, _sarif([("CVE-2024-9999", "HIGH")]), fresh)
    scenario.attach(
        "vex", mt.OPENVEX_JSON, _openvex(scenario.image["digest"], "CVE-2024-9999", "under_investigation"), fresh
    )
    config = _config(tmp_path, registry, key_file, pki)
    async with running_referee(config, pki, clock=lambda: NOW) as referee:
        verdict = items_by_key(await referee.verify([scenario.key_ref]))[scenario.key_ref]["value"]
    assert verdict["allowed"] is False
    assert "CVE-2024-9999 (HIGH, openssl) exceeds the highest allowed severity MEDIUM" in verdict["reason"]
    [report] = _by_verifier(verdict, "vuln")
    assert report["details"]["suppressions"] == []
    assert report["details"]["vexNotSuppressing"][0]["status"] == "under_investigation"


async def test_unsigned_vex_cannot_turn_a_deny_into_an_allow(
    registry: RegistryProcess,
    pki: Pki,
    tmp_path: Path,
    key_and_file: tuple[ec.EllipticCurvePrivateKey, Path],
) -> None:
    key, key_file = key_and_file
    fresh = NOW - timedelta(hours=1)
    scenario = Scenario(registry, key, "unsigned-vex")
    scenario.attach("sbom", mt.SPDX_JSON, _spdx("unsigned-vex"), fresh)
    scenario.attach("report", mt.SARIF_JSON, _sarif([("CVE-2024-9999", "CRITICAL")]), fresh)
    vex = scenario.attach(
        "vex", mt.OPENVEX_JSON, _openvex(scenario.image["digest"], "CVE-2024-9999"), fresh, sign=False
    )
    config = _config(tmp_path, registry, key_file, pki)
    async with running_referee(config, pki, clock=lambda: NOW) as referee:
        verdict = items_by_key(await referee.verify([scenario.key_ref]))[scenario.key_ref]["value"]
    assert verdict["allowed"] is False
    assert "rule vex-signed: 1 of 1 artifacts from vex do not count" in verdict["reason"]
    assert f"{vex[:19]}: not verified by cosign-ci" in verdict["reason"]
    assert "CVE-2024-9999 (CRITICAL, openssl) exceeds the highest allowed severity MEDIUM" in verdict["reason"]
    [report] = _by_verifier(verdict, "vuln")
    assert report["details"]["vexDocuments"] == [] and report["details"]["suppressions"] == []
    assert report["details"]["vexErrors"] == [
        f"{vex[:19]}: not used: not verified with the signatures the policy requires"
    ]


def _signed_referrer(
    proxy: ReferrersProxy, key: ec.EllipticCurvePrivateKey, subject: dict[str, Any], artifact_type: str, body: bytes
) -> str:
    """Push an OCI 1.1 referrer of ``subject`` and a cosign OCI 1.1 signature referrer of that artifact."""
    manifest, blobs = make_artifact_manifest(
        subject, artifact_type, [(artifact_type, body, None)], annotations={mt.ANNOTATION_CREATED: _stamp(NOW)}
    )
    push_artifact(proxy.url, REPO, manifest, blobs)
    artifact = {"mediaType": mt.OCI_MANIFEST, "digest": sha256_digest(manifest), "size": len(manifest)}
    payload = cosign_payload(f"{proxy.host}/{REPO}", artifact["digest"])
    signature = cosign_sign_payload(key, payload)
    sig_manifest, sig_blobs = make_artifact_manifest(
        artifact,
        mt.COSIGN_OCI11_SIGNATURE,
        [(mt.COSIGN_SIMPLESIGNING, payload, {mt.ANNOTATION_COSIGN_SIGNATURE: signature})],
    )
    push_artifact(proxy.url, REPO, sig_manifest, sig_blobs)
    return str(artifact["digest"])


async def test_oci11_referrers_with_cosign_referrer_signatures(
    referrers_proxy: ReferrersProxy,
    registry: RegistryProcess,
    pki: Pki,
    tmp_path: Path,
    key_and_file: tuple[ec.EllipticCurvePrivateKey, Path],
) -> None:
    key, key_file = key_and_file
    proxy = referrers_proxy
    image = make_image("metadata-e2e/oci11")
    push_image(proxy.url, REPO, "oci11", image)
    sbom = _signed_referrer(proxy, key, image["descriptor"], mt.SPDX_JSON, _spdx("oci11"))
    report = _signed_referrer(proxy, key, image["descriptor"], mt.SARIF_JSON, _sarif([("CVE-2024-7", "CRITICAL")]))
    vex = _signed_referrer(proxy, key, image["descriptor"], mt.OPENVEX_JSON, _openvex(image["digest"], "CVE-2024-7"))
    doc = yaml.safe_load(_config(tmp_path, registry, key_file, pki).read_text())
    doc["registries"]["hosts"] = [{"host": proxy.host, "plainHttp": True, "referrersApi": "always"}]
    config = write_config(tmp_path / "oci11.yaml", doc)
    key_ref = f"{proxy.host}/{REPO}:oci11"
    async with running_referee(config, pki, clock=lambda: NOW) as referee:
        verdict = items_by_key(await referee.verify([key_ref]))[key_ref]["value"]
    assert verdict["allowed"] is True, verdict["reason"]
    assert {a["digest"] for a in verdict["artifacts"]} == {sbom, report, vex}
    for artifact in verdict["artifacts"]:
        [nested] = artifact["nested"]
        assert nested["artifactType"] == mt.COSIGN_OCI11_SIGNATURE and nested["succeeded"], nested["reason"]
        assert nested["details"]["signedDigest"] == artifact["digest"]
    [result] = _by_verifier(verdict, "vuln")
    assert [s["id"] for s in result["details"]["suppressions"]] == ["CVE-2024-7"]
    assert proxy.count("referrers") >= 4  # the image and each of its three artifacts
