"""SBOM reading and rules: the shared SBOM vectors, SPDX license expressions, versions, purls, package rules."""

from __future__ import annotations

import json
from typing import Any

import pytest

from provider.metadata.common import MetadataError
from provider.metadata.licenses import (
    LicenseDenyList,
    license_name,
    normalise_license_id,
    parse_license_expression,
)
from provider.metadata.purl import parse_purl, purl_matches
from provider.metadata.sbom import SbomPolicy, evaluate_sbom, parse_package_rule, parse_sbom
from provider.metadata.versions import compare_versions, parse_range
from tests.support.paths import VECTORS as SHARED_VECTORS

VECTORS = SHARED_VECTORS / "sbom"


def _load(name: str) -> Any:
    return json.loads((VECTORS / name).read_text())


# -- the shared vectors (vectors/sbom/README.md) -----------------------------------------------------------------


def test_syft_spdx_parses_with_its_sixteen_packages() -> None:
    doc = parse_sbom(_load("syft-0.76.0.spdx.json"))
    assert (doc.format, doc.spec_version, len(doc.packages)) == ("spdx", "SPDX-2.3", 16)
    assert doc.warnings == ()
    names = {p.name for p in doc.packages}
    assert {"busybox", "musl", "zlib", "apk-tools"} <= names
    busybox = next(p for p in doc.packages if p.purl and "/busybox@" in p.purl)
    assert busybox.version == "1.35.0-r29"
    assert doc.license_ref_names == {"licenseref-and": "AND"}


def test_syft_gpl_deny_list_fails_and_an_absent_license_passes() -> None:
    doc = parse_sbom(_load("syft-0.76.0.spdx.json"))
    denied = evaluate_sbom(doc, SbomPolicy.of(["GPL-2.0-only"]))
    assert not denied.passed
    assert {f.package for f in denied.findings} >= {"alpine-baselayout", "busybox", "apk-tools", "scanelf"}
    assert all(f.rule == "disallowed-license" and f.terms == ("GPL-2.0-only",) for f in denied.findings)
    assert "disallowed license GPL-2.0-only" in denied.summary()
    # Case-insensitive ids; licences the SBOM never mentions pass.
    assert not evaluate_sbom(doc, SbomPolicy.of(["gpl-2.0-ONLY"])).passed
    assert evaluate_sbom(doc, SbomPolicy.of(["AGPL-3.0-only", "SSPL-1.0"])).passed


def test_syft_mpl_is_judged_by_expression_semantics_not_by_whole_string() -> None:
    # The vector README expects MPL-2.0 to pass: that is Ratify's whole-string comparison of
    # "MPL-2.0 AND LicenseRef-AND AND MIT". Under SPDX semantics an AND is denied when any part is.
    doc = parse_sbom(_load("syft-0.76.0.spdx.json"))
    result = evaluate_sbom(doc, SbomPolicy.of(["MPL-2.0"]))
    [finding] = result.findings
    assert finding.package == "ca-certificates-bundle" and finding.terms == ("MPL-2.0",)
    assert not finding.malformed
    # Syft's LicenseRef-AND (an operator word turned into a licence) never matches a deny entry "AND".
    assert evaluate_sbom(doc, SbomPolicy.of(["AND"])).passed


def test_k8s_bom_parses() -> None:
    doc = parse_sbom(_load("k8s-bom-0.5.1.spdx.json"))
    assert (doc.format, len(doc.packages), doc.packages[0].name) == ("spdx", 1, "demo2")
    assert doc.packages[0].version is None and doc.packages[0].licenses == ()
    assert evaluate_sbom(doc, SbomPolicy.of(["GPL-2.0-only"], ["left-pad"])).passed


def test_invalid_bom_fails_with_its_reason() -> None:
    with pytest.raises(MetadataError, match="not a valid SPDX document: spdxVersion is missing"):
        parse_sbom(_load("invalid-bom.spdx.json"))


def test_trivy_cyclonedx_free_text_licenses_match_names() -> None:
    doc = parse_sbom(_load("trivy-centos-7.cyclonedx.json"))
    assert (doc.format, doc.spec_version, len(doc.packages)) == ("cyclonedx", "1.5", 3)
    bash = next(p for p in doc.packages if p.name == "bash")
    assert bash.purl == "pkg:rpm/centos/bash@4.2.46-31.el7?arch=x86_64&distro=centos-7.6.1810"
    result = evaluate_sbom(doc, SbomPolicy.of(["gplv3+"]))
    [finding] = result.findings
    assert finding.package == "bash" and finding.terms == ("GPLv3+",)
    assert not evaluate_sbom(doc, SbomPolicy.of(["OpenSSL+"])).passed
    # A name is matched whole: "GPLv3" is not "GPLv3+", and an SPDX id does not match the free text.
    assert evaluate_sbom(doc, SbomPolicy.of(["GPLv3", "GPL-3.0-or-later", "OpenSSL"])).passed


# -- structural checks --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("document", "reason"),
    [
        ([], "not a JSON object"),
        ({"hello": 1}, "neither SPDX 2.x JSON"),
        ({"spdxVersion": "SPDX-3.0", "SPDXID": "SPDXRef-DOCUMENT"}, "is not SPDX-2.x"),
        ({"spdxVersion": "SPDX-2.3", "SPDXID": "x"}, "SPDXID is 'x'"),
        ({"spdxVersion": "SPDX-2.3", "SPDXID": "SPDXRef-DOCUMENT", "packages": {}}, "packages is not a list"),
        ({"spdxVersion": "SPDX-2.2", "SPDXID": "SPDXRef-DOCUMENT", "packages": [{"SPDXID": "a"}]}, "has no name"),
        ({"bomFormat": "CycloneDX", "specVersion": "1.3"}, "specVersion '1.3' is not one of 1.4, 1.5, 1.6"),
        ({"bomFormat": "SPDX", "specVersion": "1.5"}, "bomFormat is 'SPDX'"),
        ({"bomFormat": "CycloneDX", "specVersion": "1.6", "version": 0}, "not a positive integer"),
        ({"bomFormat": "CycloneDX", "specVersion": "1.4", "components": [{"type": "library"}]}, "has no name"),
    ],
)
def test_structurally_invalid_documents_are_rejected(document: object, reason: str) -> None:
    with pytest.raises(MetadataError, match=reason.replace("(", r"\(").replace("+", r"\+")):
        parse_sbom(document)


def test_cyclonedx_nested_components_expressions_and_in_toto_wrapping() -> None:
    bom = {
        "bomFormat": "CycloneDX",
        "specVersion": "1.6",
        "components": [
            {
                "type": "library",
                "name": "outer",
                "licenses": [{"expression": "(MIT OR Apache-2.0) AND BSD-3-Clause"}],
                "components": [{"type": "library", "name": "inner", "licenses": [{"license": {"id": "GPL-2.0+"}}]}],
            }
        ],
    }
    doc = parse_sbom(bom)
    assert [p.name for p in doc.packages] == ["outer", "inner"]
    result = evaluate_sbom(doc, SbomPolicy.of(["GPL-2.0-or-later", "MIT"]))
    assert [(f.package, f.terms) for f in result.findings] == [("inner", ("GPL-2.0+",))]
    statement = {
        "_type": "https://in-toto.io/Statement/v1",
        "subject": [{"name": "img", "digest": {"sha256": "AB" * 32}}],
        "predicateType": "https://cyclonedx.org/bom",
        "predicate": bom,
    }
    wrapped = parse_sbom(statement)
    assert wrapped.subjects == ("sha256:" + "ab" * 32,) and len(wrapped.packages) == 2


# -- license expressions ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expression", "deny", "denied"),
    [
        ("MIT OR GPL-3.0-only", ["GPL-3.0-only"], False),  # an allowed alternative remains
        ("MIT OR GPL-3.0-only", ["GPL-3.0-only", "mit"], True),  # every alternative denied
        ("MIT AND GPL-3.0-only", ["GPL-3.0-only"], True),  # any conjunct denied
        ("(MIT OR GPL-3.0-only) AND Apache-2.0", ["GPL-3.0-only"], False),
        ("MIT OR (GPL-3.0-only AND Apache-2.0)", ["Apache-2.0"], False),
        ("(MIT AND GPL-3.0-only) OR (BSD-3-Clause AND GPL-2.0-only)", ["GPL-3.0-only", "GPL-2.0-only"], True),
        ("MIT or GPL-3.0-only", ["GPL-3.0-only"], False),  # lower-case operators
        ("GPL-2.0-only WITH Classpath-exception-2.0", ["GPL-2.0-only"], True),
        ("GPL-2.0-only WITH Classpath-exception-2.0", ["GPL-2.0-only WITH Classpath-exception-2.0"], True),
        ("GPL-2.0-only WITH Classpath-exception-2.0", ["Classpath-exception-2.0"], False),
        ("GPL-2.0", ["GPL-2.0-only"], True),  # deprecated id = -only
        ("GPL-2.0+", ["GPL-2.0-or-later"], True),
        ("GPL-2.0-or-later", ["GPL-2.0-only"], False),  # or-later is denied only by name ...
        ("GPL-2.0-or-later", ["GPL-2.0"], True),  # ... or by the bare deprecated id, which means every form
        ("GPL-3.0+", ["gpl-3.0"], True),
        ("GPL-3.0-only", ["GPL-3.0"], True),
        ("LGPL-2.1-or-later WITH Classpath-exception-2.0", ["LGPL-2.1 WITH Classpath-exception-2.0"], True),
        ("GPL-3.0-or-later", ["GPL-2.0"], False),
        ("GPL-2.0-only WITH Classpath-exception-2.0", ["gpl-2.0 with classpath-exception-2.0"], True),
        ("LicenseRef-Proprietary", ["licenseref-proprietary"], True),
        ("NOASSERTION", ["GPL-2.0-only"], False),
        ("NOASSERTION", ["NOASSERTION"], True),
        ("NONE AND MIT", ["none"], True),
    ],
)
def test_expression_semantics(expression: str, deny: list[str], denied: bool) -> None:
    parsed = parse_license_expression(expression)
    assert not parsed.malformed
    assert LicenseDenyList.of(deny).judge(parsed)[0] is denied


def test_malformed_expressions_are_judged_as_the_and_of_their_words() -> None:
    for text in ("MIT AND", "(GPL-3.0-only OR MIT", "MIT GPL-3.0-only", "AND"):
        parsed = parse_license_expression(text)
        assert parsed.malformed, text
    denied, terms = LicenseDenyList.of(["GPL-3.0-only"]).judge(parse_license_expression("(GPL-3.0-only OR MIT"))
    assert denied and terms == ("GPL-3.0-only",)
    assert LicenseDenyList.of(["GPL-3.0-only"]).judge(parse_license_expression("MIT AND"))[0] is False


def test_license_ref_is_denied_through_its_extracted_name() -> None:
    parsed = parse_license_expression("MIT AND LicenseRef-1")
    deny = LicenseDenyList.of(["Commons Clause"])
    assert deny.judge(parsed, {"licenseref-1": "Commons Clause"})[0]
    assert not deny.judge(parsed, {})[0]


def test_gnu_normalisation() -> None:
    assert normalise_license_id("LGPL-2.1+") == "lgpl-2.1-or-later"
    assert normalise_license_id("AGPL-3.0") == "agpl-3.0-only"
    assert normalise_license_id("Apache-2.0") == "apache-2.0"


# -- versions and purls -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("older", "newer"),
    [
        ("1.2.3", "1.2.10"),
        ("1.0.0-rc.1", "1.0.0"),
        ("1.0a1", "1.0"),
        ("1.0", "1.0.post1"),
        ("3.1_rc2", "3.1"),
        ("1.2.3", "1.2.3-r1"),
        ("1.0.2", "1.0.2k"),
        ("1.0.1", "1.0.1b"),  # OpenSSL letter releases are newer
        ("1.0~rc1", "1.0"),
        ("9:1.0", "10:0.1"),
        ("1.0.0-alpha", "1.0.0-beta"),
        ("1.0.0-beta.2", "1.0.0-rc.1"),
        ("2.0.0-dev", "2.0.0-alpha"),
        ("1.0.2k-16.el7", "1:1.0.2k-16.el7"),
    ],
)
def test_version_order(older: str, newer: str) -> None:
    assert compare_versions(older, newer) == -1
    assert compare_versions(newer, older) == 1
    assert compare_versions(newer, newer) == 0


def test_version_ranges() -> None:
    r = parse_range(">=1.0,<1.2.5 || ==2.0.0")
    assert [r.contains(v) for v in ("0.9", "1.0", "1.2.4", "1.2.5", "2.0.0", "2.0.1")] == [
        False,
        True,
        True,
        False,
        True,
        False,
    ]
    assert parse_range("*").contains("anything") and parse_range("<1").contains(None)
    assert not parse_range("!=1.0").contains(None)
    with pytest.raises(MetadataError, match="invalid version constraint"):
        parse_range(">=,<2")


def test_purl_parsing_and_matching() -> None:
    purl = parse_purl("pkg:oci/app@sha256%3Aabcdef0123456789abcdef0123456789?repository_url=r.io/app#sub/./x")
    assert purl is not None
    assert (purl.type, purl.name, purl.version, purl.qualifiers) == (
        "oci",
        "app",
        "sha256:abcdef0123456789abcdef0123456789",
        {"repository_url": "r.io/app"},
    )
    assert purl.subpath == "sub/x"
    npm = parse_purl("pkg:npm/%40babel/core@7.0.0")
    assert npm is not None and (npm.namespace, npm.name) == ("@babel", "core")
    pypi = parse_purl("pkg:PyPI/Django_Rest@1.0")
    assert pypi is not None and (pypi.type, pypi.name) == ("pypi", "django-rest")
    assert parse_purl("not-a-purl") is None and parse_purl("pkg:") is None
    pattern = parse_purl("pkg:apk/alpine/busybox?arch=x86_64")
    candidate = parse_purl("pkg:apk/alpine/busybox@1.35.0-r29?arch=x86_64&distro=alpine-3.17.1")
    other_arch = parse_purl("pkg:apk/alpine/busybox@1.35.0-r29?arch=aarch64")
    assert pattern and candidate and other_arch
    assert purl_matches(pattern, candidate) and not purl_matches(pattern, other_arch)


def test_package_rules_by_name_purl_and_range() -> None:
    doc = parse_sbom(_load("syft-0.76.0.spdx.json"))

    def denied(*entries: object) -> list[str]:
        return [f"{f.package}@{f.version}" for f in evaluate_sbom(doc, SbomPolicy.of([], entries)).findings]

    assert denied("zlib") == ["zlib@1.2.13-r0"]
    assert denied("ZLIB@<1.2.13") == []
    assert denied("zlib@<1.2.13-r1") == ["zlib@1.2.13-r0"]
    assert denied("pkg:apk/alpine/musl@1.2.3-r4") == ["musl@1.2.3-r4"]
    assert denied("pkg:apk/alpine/musl@1.2.3-r5") == []
    # The binary busybox package has no purl: a purl rule falls back to its name (a deny-list errs on denying).
    both = ["busybox@1.35.0", "busybox@1.35.0-r29"]
    assert denied({"purl": "pkg:apk/alpine/busybox", "versions": ">=1.35.0,<1.36"}) == both
    assert denied({"purl": "pkg:apk/alpine/busybox", "versions": ">1.35.0"}) == ["busybox@1.35.0-r29"]
    assert denied({"name": "busybox"}) == both
    assert denied("pkg:npm/zlib") == []  # another ecosystem
    with pytest.raises(MetadataError, match="exactly one of name or purl"):
        parse_package_rule({"name": "a", "purl": "pkg:npm/a"})
    with pytest.raises(MetadataError, match="unknown keys"):
        parse_package_rule({"name": "a", "version": "1"})


def test_free_text_names_match_deny_entries_as_written() -> None:
    """A CycloneDX ``license.name`` is compared with each deny entry as written (case and spacing aside),
    including entries that look like expressions."""
    deny = LicenseDenyList.of(["GPL-2.0 WITH Classpath-exception-2.0", "GPLv3+"])
    assert deny.judge(license_name("gpl-2.0  with classpath-exception-2.0"))[0] is True
    assert deny.judge(license_name("GPLV3+"))[0] is True
    assert deny.judge(license_name("GPLv3"))[0] is False


# -- versions per ecosystem (univers) ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("scheme", "older", "newer"),
    [
        ("golang", "v0.10.0", "v0.15.0"),
        ("golang", "0.10.0", "v0.15.0"),  # a bound written without Go's "v"
        ("golang", "v0.15.0", "0.17.0"),
        ("golang", "0.1.0", "v0.15.0"),
        ("golang", "v0.0.0-20210101000000-abcdef123456", "v0.0.1"),  # a pseudo-version
        ("golang", "v2.0.0-rc.1", "v2.0.0"),
        ("maven", "2.0.0-M1", "2.0.0"),
        ("maven", "2.0.0-alpha-1", "2.0.0-M1"),
        ("maven", "1.0-SNAPSHOT", "1.0"),
        ("maven", "1.0", "1.0-sp1"),
        ("maven", "2.14.1", "2.17.0"),
        ("pypi", "1.0a1", "1.0"),
        ("pypi", "1.0", "1.0.post1"),
        ("pypi", "2.0", "1!0.1"),
        ("npm", "1.2.3-beta.1", "1.2.3"),
        ("deb", "1.0~rc1", "1.0"),
        ("deb", "2.0-1", "1:1.0-1"),
        ("rpm", "1.0.2k-16.el7", "1:1.0.2k-16.el7"),
        ("apk", "1.36.1-r2", "1.36.1-r10"),
        ("gem", "1.0.0.pre", "1.0.0"),
        ("nuget", "1.0.0-beta", "1.0.0"),
        ("cargo", "1.0.0-alpha", "1.0.0"),
    ],
)
def test_version_order_per_ecosystem(scheme: str, older: str, newer: str) -> None:
    assert compare_versions(older, newer, scheme) == -1
    assert compare_versions(newer, older, scheme) == 1


@pytest.mark.parametrize(
    ("scheme", "a", "b"),
    [
        ("maven", "1.0.Final", "1.0"),
        ("maven", "1.0", "1.0.0"),
        ("golang", "v0.15.0", "0.15.0"),
        ("pypi", "1.0", "1.0.0"),
    ],
)
def test_version_equality_per_ecosystem(scheme: str, a: str, b: str) -> None:
    assert compare_versions(a, b, scheme) == 0


def test_unknown_types_and_invalid_versions_keep_the_generic_order() -> None:
    for scheme in (None, "generic", "github", "oci", "no-such-type"):
        assert compare_versions("v0.15.0", "0.10.0", scheme) == -1  # letters before digits, as before
        assert compare_versions("2.0.0-M1", "2.0.0", scheme) == 1
    # not a Go module version: the generic order decides, as it did before
    assert compare_versions("go1.21.0", "1.0", "golang") == compare_versions("go1.21.0", "1.0") == -1


def _bom(*purls: str) -> Any:
    """A CycloneDX document with one component per purl, named by its module path (as Syft and Trivy write it)."""
    components = []
    for purl in purls:
        parsed = parse_purl(purl)
        assert parsed is not None and parsed.version is not None
        name = f"{parsed.namespace}/{parsed.name}" if parsed.type == "golang" else parsed.name
        components.append({"type": "library", "name": name, "version": parsed.version, "purl": purl})
    return parse_sbom({"bomFormat": "CycloneDX", "specVersion": "1.5", "components": components})


def test_go_and_maven_deny_rules_compare_by_ecosystem() -> None:
    """The cases of issue #19 item 14: a Go module version with its "v" is inside >=0.10.0,<0.17.0 and not below
    0.1.0; Maven's milestone 2.0.0-M1 is before 2.0.0 and 1.0.Final is 1.0."""
    doc = _bom(
        "pkg:golang/golang.org/x/net@v0.15.0",
        "pkg:maven/org.example/lib@2.0.0-M1",
        "pkg:maven/org.example/final@1.0.Final",
    )

    def denied(*entries: object) -> list[str]:
        return [f"{f.package}@{f.version}" for f in evaluate_sbom(doc, SbomPolicy.of([], entries)).findings]

    net = ["golang.org/x/net@v0.15.0"]
    assert denied({"purl": "pkg:golang/golang.org/x/net", "versions": ">=0.10.0,<0.17.0"}) == net
    assert denied({"purl": "pkg:golang/golang.org/x/net", "versions": "<0.1.0"}) == []
    assert denied("golang.org/x/net@>=v0.10.0,<v0.17.0") == net  # a name rule compares by the package's purl type
    assert denied("pkg:golang/golang.org/x/net@0.15.0") == net  # an exact purl version, equal as Go reads it
    assert denied({"purl": "pkg:maven/org.example/lib", "versions": "<2.0.0"}) == ["lib@2.0.0-M1"]
    assert denied({"purl": "pkg:maven/org.example/lib", "versions": ">=2.0.0"}) == []
    assert denied({"purl": "pkg:maven/org.example/final", "versions": ">1.0"}) == []
    assert denied({"purl": "pkg:maven/org.example/final", "versions": "<=1.0"}) == ["final@1.0.Final"]
    assert denied("pkg:maven/org.example/final@1.0") == ["final@1.0.Final"]


def test_a_range_bound_that_is_not_a_version_of_the_purl_type_is_refused() -> None:
    with pytest.raises(MetadataError, match=r"'go1\.21' in '>=go1\.21' is not a valid golang version"):
        parse_package_rule({"purl": "pkg:golang/golang.org/x/net", "versions": ">=go1.21"})
    with pytest.raises(MetadataError, match="is not a valid pypi version"):
        parse_package_rule({"purl": "pkg:pypi/django", "versions": "<not-a-version"})
    assert parse_package_rule("net@>=go1.21").versions is not None  # name rules: any ecosystem, generic bounds
    assert parse_package_rule({"purl": "pkg:generic/tool", "versions": ">=build-7"}).versions is not None
