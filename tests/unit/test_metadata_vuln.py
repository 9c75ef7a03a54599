"""Vulnerability reports: the shared SARIF vector, Trivy- and Grype-shaped SARIF, in-toto predicates, the report
policy (threshold, deny-list, exceptions), age and RFC 3339 parsing."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest

from provider.metadata.common import MetadataError, parse_expiry, parse_rfc3339
from provider.metadata.sarif import (
    CRITICAL,
    HIGH,
    LOW,
    MEDIUM,
    UNKNOWN,
    Finding,
    VulnReport,
    parse_report,
    parse_sarif,
    severity_from_score,
)
from provider.metadata.vulnpolicy import ReportPolicy, check_age, evaluate_report
from provider.verifiers.schema import build_validator, builtin_schema, validation_errors
from tests.support.paths import VECTORS as SHARED_VECTORS

VECTORS = SHARED_VECTORS / "vuln"
NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)


def _trivy() -> Any:
    return json.loads((VECTORS / "trivy-scan-report.sarif.json").read_text())


# -- the shared vector (vectors/vuln/README.md) ------------------------------------------------------------------


def test_trivy_vector_is_schema_valid_against_the_shipped_schema() -> None:
    shipped = json.loads(builtin_schema("sarif-2.1.0"))
    assert shipped == json.loads((VECTORS / "sarif-2.1.0-rtm.5.schema.json").read_text())
    validator = build_validator(shipped)
    assert validation_errors(validator, _trivy(), 5) == []
    assert validation_errors(validator, {"version": "2.1.0"}, 5) == ["(root): 'runs' is a required property"]


def test_trivy_vector_severities_come_from_tags() -> None:
    report = parse_report(_trivy())
    assert (report.format, report.scanner, report.scanner_version) == ("sarif", "Trivy", "0.35.0")
    assert len(report.findings) == 45 and len({f.id for f in report.findings}) == 24
    assert {f.severity_source for f in report.findings} == {"tags"}
    by_id = {f.id: f for f in report.findings}
    first = by_id["CVE-2021-36159"]
    assert (first.severity, first.package, first.version) == (CRITICAL, "apk-tools", "2.10.4-r3")
    counts: dict[str, int] = {}
    for f in report.findings:
        counts[f.severity] = counts.get(f.severity, 0) + 1
    assert counts == {CRITICAL: 4, HIGH: 29, MEDIUM: 10, LOW: 2}


def test_trivy_vector_policy_outcomes() -> None:
    report = parse_report(_trivy())
    deny_critical = evaluate_report(report, ReportPolicy.of("HIGH"), now=NOW)
    assert not deny_critical.passed and deny_critical.highest_severity == CRITICAL
    assert "exceeds the highest allowed severity HIGH" in deny_critical.reason
    assert {f.severity for f, _ in deny_critical.violations} == {CRITICAL}
    assert evaluate_report(report, ReportPolicy.of("CRITICAL"), now=NOW).passed
    denied = evaluate_report(report, ReportPolicy.of("CRITICAL", denied=["cve-2021-36159"]), now=NOW)
    assert not denied.passed and denied.reason.startswith("CVE-2021-36159 (CRITICAL, apk-tools) is on the deny-list")
    # Excepting every CRITICAL finding leaves HIGH as the highest.
    criticals = sorted({f.id for f in report.findings if f.severity == CRITICAL})
    excepted = evaluate_report(
        report, ReportPolicy.of("HIGH", exceptions=[{"id": i, "expires": "2026-06-30"} for i in criticals]), now=NOW
    )
    assert excepted.passed and excepted.highest_severity == HIGH and len(excepted.excepted) == 4
    expired = evaluate_report(
        report, ReportPolicy.of("HIGH", exceptions=[{"id": i, "expires": "2026-05-31"} for i in criticals]), now=NOW
    )
    assert not expired.passed and len(expired.expired) == 4
    assert expired.details()["exceptionsExpired"][0]["expired"] == "2026-06-01T00:00:00Z"


# -- SARIF shapes ------------------------------------------------------------------------------------------------


def _sarif(driver: str, rules: list[dict[str, Any]], results: list[dict[str, Any]], **run: Any) -> dict[str, Any]:
    return {
        "version": "2.1.0",
        "runs": [{"tool": {"driver": {"name": driver, "rules": rules}}, "results": results, **run}],
    }


def _grype_rule(rule_id: str, label: str, score: str | None) -> dict[str, Any]:
    rule: dict[str, Any] = {
        "id": rule_id,
        "shortDescription": {"text": f"{rule_id[:13]} {label} vulnerability for package-1 package"},
        "help": {"text": f"Vulnerability {rule_id[:13]}\nSeverity: {label}\nPackage: package-1\nVersion: 1.1.1"},
    }
    if score is not None:
        rule["properties"] = {"security-severity": score}
    return rule


def _grype_result(rule_id: str) -> dict[str, Any]:
    return {
        "ruleId": rule_id,
        "message": {"text": "The path f.txt reports package-1 at version 1.1.1  which is a vulnerable (rpm) package"},
    }


def test_grype_shape_uses_the_score_before_the_help_text_and_records_the_source() -> None:
    rules = [
        _grype_rule("CVE-1999-0001-package-1", "low", "4.0"),
        _grype_rule("CVE-1999-0002-package-1", "critical", "1.0"),  # Grype's golden fixture: they disagree
        _grype_rule("CVE-1999-0003-package-1", "high", None),
        _grype_rule("GHSA-ABCD-efgh-2345-package-1", "medium", None),
        _grype_rule("CVE-1999-0009-package-1", "critical", "9.9"),  # no result: not a finding
    ]
    results = [_grype_result(r["id"]) for r in rules[:4]]
    report = parse_sarif(_sarif("grype", rules, results))
    got = {f.id: (f.severity, f.severity_source, f.package, f.version) for f in report.findings}
    assert got == {
        "CVE-1999-0001": (MEDIUM, "security-severity", "package-1", "1.1.1"),
        "CVE-1999-0002": (LOW, "security-severity", "package-1", "1.1.1"),
        "CVE-1999-0003": (HIGH, "help-text", "package-1", "1.1.1"),
        "GHSA-abcd-efgh-2345": (MEDIUM, "help-text", "package-1", "1.1.1"),
    }
    labels_first = parse_sarif(_sarif("grype", rules, results), ("help-text", "security-severity"))
    assert {f.id: f.severity for f in labels_first.findings}["CVE-1999-0002"] == CRITICAL


def test_trivy_template_and_tag_position_independence() -> None:
    rules = [
        {"id": "[HIGH] CVE-2020-1234", "properties": {"tags": ["vulnerability", "HIGH", "openssl"]}},
        {
            "id": "CVE-2020-9999",
            "properties": {"tags": ["Critical issue", "security", "low"], "security-severity": "9.8"},
        },
        {
            "id": "CVE-2020-0001",
            "properties": {"tags": ["vulnerability", "security", "UNKNOWN"], "security-severity": "0.0"},
        },
        {"id": "CVE-2020-0002", "properties": {"security-severity": "9.0"}},
        {"id": "CVE-2020-0003", "properties": {"security-severity": "8.9"}},
        {"id": "RULE-1", "help": {"text": "Vulnerability ALAS-2023-1\nSeverity: Moderate"}},
        {"id": "RULE-2"},
    ]
    results = [{"ruleId": r["id"], "ruleIndex": i, "message": {"text": "x"}} for i, r in enumerate(rules)]
    report = parse_sarif(_sarif("Trivy", rules, results))
    got = {f.id: (f.severity, f.severity_source) for f in report.findings}
    assert got == {
        "CVE-2020-1234": (HIGH, "tags"),
        "CVE-2020-9999": (LOW, "tags"),  # a tag decides before the score
        "CVE-2020-0001": (UNKNOWN, "tags"),  # an explicit UNKNOWN is not overridden by Trivy's 0.0
        "CVE-2020-0002": (CRITICAL, "security-severity"),  # 9.0 is CRITICAL (CVSS v3 bands)
        "CVE-2020-0003": (HIGH, "security-severity"),
        "ALAS-2023-1": (MEDIUM, "help-text"),
        "RULE-2": (UNKNOWN, "none"),
    }


def test_score_bands() -> None:
    assert [severity_from_score(s) for s in ("10", 9.0, "8.99", 7, "6.9", 4.0, "3.9", "0.1")] == [
        CRITICAL,
        CRITICAL,
        HIGH,
        HIGH,
        MEDIUM,
        MEDIUM,
        LOW,
        LOW,
    ]
    assert [severity_from_score(s) for s in ("0.0", "11", "nan", "high", None, True)] == [None] * 6


def test_sarif_structure_errors_and_subject_hints() -> None:
    with pytest.raises(MetadataError, match=r"version is '2\.0\.0'"):
        parse_sarif({"version": "2.0.0", "runs": []})
    with pytest.raises(MetadataError, match="runs is not a list"):
        parse_sarif({"version": "2.1.0"})
    with pytest.raises(MetadataError, match=r"driver\.name is missing"):
        parse_sarif({"version": "2.1.0", "runs": [{"tool": {}}]})
    doc = _sarif(
        "Trivy",
        [],
        [],
        properties={"repoDigests": ["r.io/app@sha256:" + "AA" * 32]},
        invocations=[{"endTimeUtc": "2026-01-02T03:04:05.123456789Z"}],
    )
    report = parse_sarif(doc)
    assert report.findings == () and report.subjects == ("sha256:" + "aa" * 32,)
    assert report.created == datetime(2026, 1, 2, 3, 4, 5, 123456, tzinfo=UTC)


# -- in-toto / cosign predicates ---------------------------------------------------------------------------------


def test_in_toto_vulns_v02_statement() -> None:
    statement = {
        "_type": "https://in-toto.io/Statement/v1",
        "subject": [{"name": "img", "digest": {"sha256": "ab" * 32}}],
        "predicateType": "https://in-toto.io/attestation/vulns/v0.2",
        "predicate": {
            "scanner": {
                "uri": "pkg:github/aquasecurity/trivy@244fd47e07d1004f0aed9",
                "result": [
                    {
                        "id": "CVE-123",
                        "severity": [{"method": "nvd", "score": "medium"}, {"method": "cvss", "score": "9.8"}],
                    },
                    {"id": "CVE-456", "severity": [{"method": "cvss_score", "score": "7.5"}]},
                    {"id": "GHSA-fxph-q3j8-mv87", "severity": []},
                ],
            },
            "metadata": {"scanStartedOn": "2021-08-06T17:45:50.52Z", "scanFinishedOn": "2021-08-06T17:50:50.52Z"},
        },
    }
    report = parse_report(statement)
    assert report.subjects == ("sha256:" + "ab" * 32,)
    assert report.created == datetime(2021, 8, 6, 17, 50, 50, 520000, tzinfo=UTC)
    got = {f.id: (f.severity, f.severity_source) for f in report.findings}
    assert got == {"CVE-123": (MEDIUM, "label"), "CVE-456": (HIGH, "score"), "GHSA-fxph-q3j8-mv87": (UNKNOWN, "none")}


def test_cosign_vuln_predicate_with_trivy_and_grype_json() -> None:
    trivy = {
        "scanner": {
            "uri": "pkg:github/aquasecurity/trivy",
            "result": {
                "SchemaVersion": 2,
                "Results": [
                    {
                        "Vulnerabilities": [
                            {"VulnerabilityID": "CVE-2021-28831", "PkgName": "busybox", "Severity": "HIGH"}
                        ]
                    }
                ],
            },
        },
        "metadata": {"scanFinishedOn": "2022-01-01T00:00:00Z"},
    }
    [finding] = parse_report(trivy).findings
    assert (finding.id, finding.severity, finding.package) == ("CVE-2021-28831", HIGH, "busybox")
    grype = {
        "scanners": [
            {
                "uri": "pkg:github/anchore/grype",
                "result": {
                    "matches": [
                        {
                            "vulnerability": {"id": "GHSA-jfh8-c2jp-5v3q", "severity": "Critical"},
                            "relatedVulnerabilities": [{"id": "CVE-2021-44228"}],
                            "artifact": {
                                "name": "log4j-core",
                                "version": "2.14.1",
                                "purl": "pkg:maven/x/log4j-core@2.14.1",
                            },
                        }
                    ]
                },
            }
        ]
    }
    [finding] = parse_report(grype).findings
    assert finding.severity == CRITICAL and finding.aliases == ("CVE-2021-44228",)
    assert finding.ids() == {"ghsa-jfh8-c2jp-5v3q", "cve-2021-44228"}
    with pytest.raises(MetadataError, match=r"scanner\.result is missing"):
        parse_report({"scanner": {"uri": "x"}})
    with pytest.raises(MetadataError, match="neither SARIF"):
        parse_report({"bomFormat": "CycloneDX"})


# -- policy details, age, time ----------------------------------------------------------------------------------


def test_unknown_severity_fails_closed_unless_allowed() -> None:
    report = VulnReport("sarif", None, None, None, (Finding("CVE-1", UNKNOWN, "none"), Finding("CVE-2", LOW, "tags")))
    closed = evaluate_report(report, ReportPolicy.of("HIGH"), now=NOW)
    assert not closed.passed and closed.reason == "CVE-1 (UNKNOWN) has no known severity"
    assert closed.highest_severity == LOW and closed.severity_counts == {UNKNOWN: 1, LOW: 1}
    assert evaluate_report(report, ReportPolicy.of("HIGH", unknown_severity="allow"), now=NOW).passed
    only_unknown = VulnReport("sarif", None, None, None, (Finding("CVE-1", UNKNOWN, "none"),))
    assert evaluate_report(only_unknown, ReportPolicy.of(None), now=NOW).highest_severity == UNKNOWN
    empty = evaluate_report(VulnReport("sarif", None, None, None, ()), ReportPolicy.of("LOW"), now=NOW)
    assert empty.passed and empty.highest_severity == "NONE"
    with pytest.raises(MetadataError, match="both denied and excepted"):
        ReportPolicy.of("LOW", denied=["CVE-1"], exceptions=["cve-1"])


def test_age_and_future_skew() -> None:
    hour = 3600.0
    assert check_age(NOW - timedelta(hours=2), NOW, 24 * hour, 300) == (None, 7200.0)
    problem, _ = check_age(NOW - timedelta(days=3), NOW, 24 * hour, 300)
    assert problem is not None and "older than the maximum 24h00m" in problem
    assert check_age(NOW + timedelta(seconds=200), NOW, None, 300)[0] is None
    problem, _ = check_age(NOW + timedelta(hours=1), NOW, None, 300)
    assert problem is not None and "in the future" in problem
    assert check_age(None, NOW, hour, 300)[0] == "report creation time is unknown"
    assert check_age(None, NOW, None, 300)[0] is None


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-01-01T00:00:00Z", datetime(2026, 1, 1, tzinfo=UTC)),
        ("2026-01-01t00:00:00z", datetime(2026, 1, 1, tzinfo=UTC)),
        ("2023-01-08T18:02:03.647787998-06:00", datetime(2023, 1, 9, 0, 2, 3, 647787, tzinfo=UTC)),
        ("2026-01-01T01:30:00+0130", datetime(2026, 1, 1, tzinfo=UTC)),
        ("2016-12-31T23:59:60Z", datetime(2017, 1, 1, tzinfo=UTC)),
        ("2026-01-01T00:00:00", None),
        ("2026-01-01", None),
        ("2026-13-01T00:00:00Z", None),
        ("yesterday", None),
    ],
)
def test_rfc3339(text: str, expected: datetime | None) -> None:
    assert parse_rfc3339(text) == expected


def test_expiry_forms() -> None:
    assert parse_expiry("2026-06-30") == datetime(2026, 7, 1, tzinfo=UTC)
    assert parse_expiry(date(2026, 6, 30)) == datetime(2026, 7, 1, tzinfo=UTC)
    assert parse_expiry("2026-06-30T10:00:00+02:00") == datetime(2026, 6, 30, 8, tzinfo=UTC)
    assert parse_expiry("soon") is None
