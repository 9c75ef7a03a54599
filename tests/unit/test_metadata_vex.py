"""OpenVEX: parsing, product and subcomponent matching, aliases, newest-wins, and which statuses suppress."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from provider.metadata.common import MetadataError
from provider.metadata.sarif import CRITICAL, HIGH, Finding, VulnReport
from provider.metadata.vex import VexIndex, parse_openvex
from provider.metadata.vulnpolicy import ReportPolicy, evaluate_report

HEX = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
DIGEST = f"sha256:{HEX}"
IMAGE = f"pkg:oci/app@sha256%3A{HEX}?repository_url=registry.example/team/app"
OTHER = "pkg:oci/app@sha256%3A" + "0" * 64
NOW = datetime(2026, 6, 1, tzinfo=UTC)


def _doc(*statements: dict[str, Any], timestamp: str = "2026-01-01T00:00:00Z") -> dict[str, Any]:
    return {
        "@context": "https://openvex.dev/ns/v0.2.0",
        "@id": "https://openvex.dev/docs/example/vex-1",
        "author": "Security Team <sec@example.com>",
        "timestamp": timestamp,
        "version": 1,
        "statements": list(statements),
    }


def _st(status: str, vuln: Any = "CVE-2023-1", product: Any = IMAGE, **extra: Any) -> dict[str, Any]:
    statement: dict[str, Any] = {
        "vulnerability": {"name": vuln} if isinstance(vuln, str) else vuln,
        "products": [{"@id": product}] if isinstance(product, str) else product,
        "status": status,
    }
    if status == "not_affected" and "justification" not in extra and "impact_statement" not in extra:
        extra["justification"] = "vulnerable_code_not_in_execute_path"
    statement.update(extra)
    return statement


def _decide(finding: Finding, *docs: dict[str, Any]) -> tuple[bool, str | None]:
    index = VexIndex([parse_openvex(d, source=f"vex{i}") for i, d in enumerate(docs)], DIGEST)
    decision = index.decide(finding)
    return (decision.suppressed, decision.statement.status) if decision else (False, None)


FINDING = Finding("CVE-2023-1", HIGH, "tags", "openssl", "3.0.7-r0", "pkg:apk/alpine/openssl@3.0.7-r0")


@pytest.mark.parametrize(
    ("statement", "suppressed", "status"),
    [
        (_st("not_affected"), True, "not_affected"),
        (_st("not_affected", justification=None, impact_statement="only used at build time"), True, "not_affected"),
        (_st("fixed"), True, "fixed"),
        (_st("under_investigation"), False, "under_investigation"),
        (_st("affected", action_statement="upgrade"), False, "affected"),
        (_st("not_affected", justification="trust_me"), False, "not_affected"),  # unknown label, no impact
        (_st("not_affected", product=OTHER), False, None),  # another image
        (_st("not_affected", product="pkg:oci/app?repository_url=r/app"), False, None),  # no digest: never matches
        (_st("not_affected", vuln="CVE-2023-2"), False, None),
    ],
)
def test_status_and_product(statement: dict[str, Any], suppressed: bool, status: str | None) -> None:
    if statement.get("justification") is None:
        statement.pop("justification", None)
    assert _decide(FINDING, _doc(statement)) == (suppressed, status)


@pytest.mark.parametrize(
    "product",
    [
        [{"@id": "urn:x", "hashes": {"sha-256": HEX}}],
        [{"@id": "urn:x", "identifiers": {"purl": IMAGE}}],
        [{"@id": f"registry.example/team/app@{DIGEST}"}],
        [{"@id": f"pkg:docker/team/app@{DIGEST}"}],
    ],
)
def test_product_forms(product: list[dict[str, Any]]) -> None:
    assert _decide(FINDING, _doc(_st("not_affected", product=product))) == (True, "not_affected")


def test_aliases_match_both_ways() -> None:
    ghsa = Finding("GHSA-jfh8-c2jp-5v3q", CRITICAL, "tags", aliases=("CVE-2021-44228",))
    cve_only = Finding("CVE-2021-44228", CRITICAL, "tags")
    statement = _st("not_affected", vuln={"name": "CVE-2021-44228", "aliases": ["GHSA-JFH8-C2JP-5V3Q"]})
    assert _decide(ghsa, _doc(statement))[0]
    assert _decide(cve_only, _doc(statement))[0]
    by_alias = _st("not_affected", vuln={"name": "GHSA-jfh8-c2jp-5v3q", "aliases": ["CVE-2021-44228"]})
    assert _decide(cve_only, _doc(by_alias))[0]


def test_newest_statement_wins_across_documents_and_ties_do_not_suppress() -> None:
    old_fixed = _doc(_st("not_affected"), timestamp="2026-01-01T00:00:00Z")
    new_affected = _doc(_st("affected", action_statement="upgrade"), timestamp="2026-02-01T00:00:00Z")
    assert _decide(FINDING, old_fixed, new_affected) == (False, "affected")
    newer_again = _doc(_st("fixed", timestamp="2026-03-01T00:00:00Z"), timestamp="2025-01-01T00:00:00Z")
    assert _decide(FINDING, old_fixed, new_affected, newer_again) == (True, "fixed")
    # Within one document: the statement's own timestamp overrides the document's; last_updated counts.
    within = _doc(
        _st("under_investigation", timestamp="2026-01-05T00:00:00Z"),
        _st("not_affected", timestamp="2026-01-01T00:00:00Z", last_updated="2026-01-06T00:00:00Z"),
    )
    assert _decide(FINDING, within) == (True, "not_affected")
    tie = _doc(_st("not_affected"), _st("under_investigation"))
    assert _decide(FINDING, tie) == (False, "under_investigation")


def test_under_investigation_never_suppresses_even_when_newest_and_alone() -> None:
    doc = _doc(_st("under_investigation", timestamp="2030-01-01T00:00:00Z"))
    report = VulnReport("sarif", None, None, None, (FINDING,))
    index = VexIndex([parse_openvex(doc, source="v")], DIGEST)
    evaluation = evaluate_report(report, ReportPolicy.of("MEDIUM"), now=NOW, vex=index)
    assert not evaluation.passed and evaluation.suppressed == ()
    assert evaluation.details()["vexNotSuppressing"][0]["status"] == "under_investigation"


def test_subcomponents_restrict_the_statement_to_a_package() -> None:
    with_sub = [{"@id": IMAGE, "subcomponents": [{"@id": "pkg:apk/alpine/openssl@3.0.7-r0"}]}]
    assert _decide(FINDING, _doc(_st("not_affected", product=with_sub)))[0]
    other_pkg = [{"@id": IMAGE, "subcomponents": [{"@id": "pkg:apk/alpine/busybox"}]}]
    assert not _decide(FINDING, _doc(_st("not_affected", product=other_pkg)))[0]
    other_version = [{"@id": IMAGE, "subcomponents": [{"identifiers": {"purl": "pkg:apk/alpine/openssl@3.0.8-r0"}}]}]
    assert not _decide(FINDING, _doc(_st("not_affected", product=other_version)))[0]
    # A finding known only by name (SARIF) matches a subcomponent purl of that name.
    by_name = Finding("CVE-2023-1", HIGH, "tags", "openssl", "3.0.7-r0")
    assert _decide(by_name, _doc(_st("not_affected", product=with_sub)))[0]
    unnamed = Finding("CVE-2023-1", HIGH, "tags")
    assert not _decide(unnamed, _doc(_st("not_affected", product=with_sub)))[0]


def test_openvex_v001_string_forms_and_statement_subcomponents() -> None:
    doc = {
        "@context": "https://openvex.dev/ns",
        "@id": "https://openvex.dev/docs/public/vex-1",
        "author": "a",
        "timestamp": "2023-01-08T18:02:03.647787998-06:00",
        "version": "1",
        "statements": [
            {
                "vulnerability": "CVE-2023-1",
                "products": [IMAGE],
                "subcomponents": ["pkg:apk/alpine/openssl"],
                "status": "not_affected",
                "justification": "component_not_present",
            }
        ],
    }
    parsed = parse_openvex(doc)
    assert parsed.problems == ("version is missing or not an integer",)
    assert _decide(FINDING, doc) == (True, "not_affected")


def test_in_toto_wrapped_vex_inherits_subjects_as_products() -> None:
    statement = {
        "_type": "https://in-toto.io/Statement/v1",
        "subject": [{"name": "app", "digest": {"sha256": HEX}}],
        "predicateType": "https://openvex.dev/ns/v0.2.0",
        "predicate": _doc({"vulnerability": {"name": "CVE-2023-1"}, "status": "fixed"}),
    }
    assert _decide(FINDING, statement) == (True, "fixed")
    bare = _doc({"vulnerability": {"name": "CVE-2023-1"}, "status": "fixed"})
    assert parse_openvex(bare).statement_problems() == ["statements[0]: names no product"]
    assert _decide(FINDING, bare) == (False, None)


def test_statement_problems_and_non_vex() -> None:
    doc = _doc(
        {"vulnerability": {}, "products": [{"@id": IMAGE}], "status": "maybe"},
        _st("affected"),
        _st("not_affected", justification="nope"),
    )
    problems = parse_openvex(doc).statement_problems()
    assert "statements[0]: vulnerability name is missing" in problems
    assert any("status 'maybe' is not one of" in p for p in problems)
    assert "statements[1]: affected without an action_statement" in problems
    assert "statements[2]: not_affected without a justification or impact_statement" in problems
    no_time = _doc(_st("fixed"))
    del no_time["timestamp"]
    parsed = parse_openvex(no_time)
    assert "timestamp is missing or not an RFC 3339 date-time" in parsed.problems
    assert _decide(FINDING, no_time) == (False, None)  # unordered statements are ignored
    with pytest.raises(MetadataError, match="not an OpenVEX document"):
        parse_openvex({"bomFormat": "CycloneDX"})


def test_suppression_details_name_the_statement_and_deny_list_is_absolute() -> None:
    report = VulnReport("sarif", None, None, None, (FINDING, Finding("CVE-2023-9", CRITICAL, "tags")))
    doc = _doc(_st("not_affected"), _st("fixed", vuln="CVE-2023-9"))
    index = VexIndex([parse_openvex(doc, source="sha256:vexdigest")], DIGEST)
    evaluation = evaluate_report(report, ReportPolicy.of("MEDIUM"), now=NOW, vex=index)
    assert evaluation.passed and evaluation.highest_severity == "NONE"
    first = evaluation.details()["suppressions"][0]
    assert first["id"] == "CVE-2023-1" and first["status"] == "not_affected"
    assert first["vexSource"] == "sha256:vexdigest" and first["statement"] == 0
    assert first["justification"] == "vulnerable_code_not_in_execute_path"
    denied = evaluate_report(report, ReportPolicy.of("MEDIUM", denied=["CVE-2023-9"]), now=NOW, vex=index)
    assert not denied.passed and denied.reason == "CVE-2023-9 (CRITICAL) is on the deny-list"
