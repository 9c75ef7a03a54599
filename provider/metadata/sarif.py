"""Vulnerability reports → one finding model: SARIF 2.1.0 (Trivy, Grype, others) and the in-toto vulnerability
predicates (``https://in-toto.io/attestation/vulns`` v0.1/v0.2 and cosign's ``…/attestation/vuln/v1``, whose
``scanner.result`` may itself be a v0.2 result list, a Trivy JSON report, a Grype JSON report or SARIF).

SARIF severity, per rule (the first source that decides wins; the order is configurable, and each finding
records its ``severity_source``):

1. ``tags`` — any element of ``properties.tags`` (rule, then result) that is a severity word (CRITICAL, HIGH,
   MEDIUM, LOW, NEGLIGIBLE, UNKNOWN, case-insensitive; MODERATE reads as MEDIUM), wherever it stands (Trivy
   puts it last, Trivy's template second); with several, the highest. An explicit UNKNOWN decides UNKNOWN.
2. ``security-severity`` — the CVSS score in ``properties["security-severity"]`` (rule, then result) mapped
   with the CVSS v3 qualitative bands: **9.0 and above CRITICAL** (CVSS counts 9.0 as critical; GitHub code
   scanning's "over 9.0" would put a 9.0 in HIGH, which under-reports), 7.0-8.9 HIGH, 4.0-6.9 MEDIUM,
   0.1-3.9 LOW. A score of 0.0 does not decide: Trivy writes 0.0 for UNKNOWN.
3. ``help-text`` — the regex ``Severity:\\s*(\\w+)`` on ``help.text``, ``help.markdown``, then the result's
   ``message.text`` (Ratify's only method; Grype's lower-case labels live here).

Nothing decided → UNKNOWN (``severity_source`` ``none``), which the policy treats as it is configured to.

Vulnerability id: a ``ruleId`` that is a CVE/GHSA id (Trivy); else a CVE/GHSA id inside it (Grype's
``CVE-…-<package>``, Trivy's template ``[HIGH] CVE-…``, old Grype's ``ANCHOREVULN_…``); else ``Vulnerability
<id>`` in the help text; else the ``ruleId`` itself. Only rules referenced by at least one result are
findings. A finding is keyed by (id, package, version); the highest severity of duplicates is kept.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from provider.metadata.common import MetadataError, items, mapping, parse_rfc3339, text, unwrap_statement

CRITICAL, HIGH, MEDIUM, LOW, NEGLIGIBLE = "CRITICAL", "HIGH", "MEDIUM", "LOW", "NEGLIGIBLE"
UNKNOWN, NONE = "UNKNOWN", "NONE"
SEVERITY_RANK = {NEGLIGIBLE: 0, LOW: 1, MEDIUM: 2, HIGH: 3, CRITICAL: 4}
SEVERITIES = (CRITICAL, HIGH, MEDIUM, LOW, NEGLIGIBLE, UNKNOWN)
_WORDS = {**{s: s for s in SEVERITIES}, "MODERATE": MEDIUM}
SEVERITY_SOURCES = ("tags", "security-severity", "help-text")
VULN_PREDICATE_PREFIXES = (
    "https://in-toto.io/attestation/vulns",
    "https://cosign.sigstore.dev/attestation/vuln/",
    "cosign.sigstore.dev/attestation/vuln/",
)
_ID_RE = re.compile(r"(CVE-\d{4}-\d{4,})|(GHSA(?:-[0-9a-z]{4}){3})", re.IGNORECASE)
_HELP_SEVERITY = re.compile(r"Severity:\s*(\w+)", re.IGNORECASE)
_HELP_ID = re.compile(r"Vulnerability\s+([A-Za-z0-9][\w.:-]*)")
_PACKAGE = re.compile(r"^\s*Package:\s*(\S+)", re.MULTILINE)
_INSTALLED = re.compile(r"^\s*(?:Installed )?Version:\s*(\S+)", re.MULTILINE)
_GRYPE_MESSAGE = re.compile(r"reports (\S+) at version (\S+)")
_MAX_FINDINGS = 100_000


def canonical_id(value: str) -> str:
    """Upper-case CVE ids, lower-case GHSA bodies (``GHSA-jfh8-c2jp-5v3q``); others unchanged but stripped."""
    raw = value.strip()
    if raw[:4].upper() == "CVE-":
        return raw.upper()
    if raw[:5].upper() == "GHSA-":
        return "GHSA-" + raw[5:].lower()
    return raw


def severity_word(value: object) -> str | None:
    """The severity a label names (``critical``, ``Moderate`` …), else None."""
    if isinstance(value, str):
        return _WORDS.get(value.strip().upper())
    return None


def score_of(value: object) -> float | None:
    """A CVSS score in (0, 10] from a number or numeric string, else None (0.0 is not a score: see above)."""
    try:
        score = float(value) if isinstance(value, (int, float, str)) and not isinstance(value, bool) else math.nan
    except ValueError:
        return None
    return score if math.isfinite(score) and 0.0 < score <= 10.0 else None


def severity_from_score(value: object) -> str | None:
    """CVSS v3 bands (9.0 → CRITICAL); None for 0.0, non-numbers and scores outside 0-10."""
    score = score_of(value)
    if score is None:
        return None
    if score >= 9.0:
        return CRITICAL
    if score >= 7.0:
        return HIGH
    if score >= 4.0:
        return MEDIUM
    return LOW


def highest(severities: Iterable[str]) -> str | None:
    """The highest known severity, UNKNOWN when only UNKNOWN was given, None for nothing."""
    given = list(severities)
    known = [s for s in given if s in SEVERITY_RANK]
    if known:
        return max(known, key=SEVERITY_RANK.__getitem__)
    return UNKNOWN if given else None


@dataclass(frozen=True, slots=True)
class Finding:
    """One vulnerability in one package, as any report format describes it."""

    id: str
    severity: str
    severity_source: str
    package: str | None = None
    version: str | None = None
    purl: str | None = None
    aliases: tuple[str, ...] = ()
    rule_id: str | None = None
    score: float | None = None
    kind: str = "vulnerability"

    def ids(self) -> frozenset[str]:
        """The id and aliases, case-folded, for matching deny-lists, exceptions and VEX."""
        return frozenset(canonical_id(i).casefold() for i in (self.id, *self.aliases) if i)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"id": self.id, "severity": self.severity, "severitySource": self.severity_source}
        for key, value in (("package", self.package), ("version", self.version), ("purl", self.purl)):
            if value:
                out[key] = value
        if self.aliases:
            out["aliases"] = list(self.aliases)
        if self.rule_id and self.rule_id != self.id:
            out["ruleId"] = self.rule_id
        if self.kind != "vulnerability":
            out["kind"] = self.kind
        return out


@dataclass(frozen=True, slots=True)
class VulnReport:
    """A parsed report. ``subjects`` are the digests it says it is about (in-toto subjects, SARIF
    ``repoDigests``); ``created`` is its own time, when it has one."""

    format: str
    scanner: str | None
    scanner_version: str | None
    created: datetime | None
    findings: tuple[Finding, ...]
    subjects: tuple[str, ...] = ()
    warnings: tuple[str, ...] = field(default_factory=tuple)


def parse_report(document: object, severity_order: tuple[str, ...] = SEVERITY_SOURCES) -> VulnReport:
    """Dispatch on the document: SARIF 2.1.0, an in-toto Statement with a vulnerability predicate, or a bare
    vulnerability predicate. Raises :class:`MetadataError` when it is none of them or is malformed."""
    predicate, subjects = unwrap_statement(document, VULN_PREDICATE_PREFIXES)
    doc = mapping(predicate)
    if not doc:
        raise MetadataError("not a vulnerability report: the document is not a JSON object")
    if "runs" in doc or ("version" in doc and "$schema" in doc):
        report = parse_sarif(doc, severity_order)
    elif "scanner" in doc or "scanners" in doc:
        report = parse_vuln_predicate(doc, severity_order)
    else:
        raise MetadataError("not a vulnerability report: neither SARIF (runs) nor a vulnerability predicate (scanner)")
    if subjects:
        report = dataclasses.replace(report, subjects=subjects)
    return report


# -- SARIF ----------------------------------------------------------------------------------------------------


def _properties(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    return mapping(obj.get("properties"))


def _from_tags(rule: Mapping[str, Any], result: Mapping[str, Any]) -> tuple[str, float | None] | None:
    for source in (rule, result):
        words = [w for t in items(_properties(source).get("tags")) if (w := severity_word(t))]
        if words:
            best = highest(words)
            assert best is not None
            return best, None
    return None


def _from_score(rule: Mapping[str, Any], result: Mapping[str, Any]) -> tuple[str, float | None] | None:
    for source in (rule, result):
        score = score_of(_properties(source).get("security-severity"))
        severity = severity_from_score(score)
        if score is not None and severity is not None:
            return severity, score
    return None


def _from_help(rule: Mapping[str, Any], result: Mapping[str, Any]) -> tuple[str, float | None] | None:
    help_ = mapping(rule.get("help"))
    for value in (help_.get("text"), help_.get("markdown"), mapping(result.get("message")).get("text")):
        if isinstance(value, str):
            for m in _HELP_SEVERITY.finditer(value):
                word = severity_word(m.group(1))
                if word:
                    return word, None
    return None


_SOURCES = {"tags": _from_tags, "security-severity": _from_score, "help-text": _from_help}


def sarif_severity(
    rule: Mapping[str, Any], result: Mapping[str, Any], order: tuple[str, ...] = SEVERITY_SOURCES
) -> tuple[str, str, float | None]:
    """``(severity, source, score)`` for one result of one rule (see the module docstring)."""
    for name in order:
        found = _SOURCES[name](rule, result)
        if found is not None:
            return found[0], name, found[1]
    return UNKNOWN, "none", None


def vulnerability_id(rule_id: str | None, rule: Mapping[str, Any]) -> str:
    """The vulnerability id of a SARIF rule (see the module docstring)."""
    if rule_id:
        m = _ID_RE.fullmatch(rule_id.strip())
        if m:
            return canonical_id(rule_id)
        m = _ID_RE.search(rule_id)
        if m:
            return canonical_id(m.group(0))
    help_text = mapping(rule.get("help")).get("text")
    if isinstance(help_text, str):
        m = _HELP_ID.search(help_text)
        if m:
            return canonical_id(m.group(1))
    return canonical_id(rule_id or str(rule.get("id") or "unknown"))


def _package(rule: Mapping[str, Any], result: Mapping[str, Any]) -> tuple[str | None, str | None, str | None]:
    props = {**_properties(rule), **_properties(result)}
    purl = text(props.get("purl"))
    message = str(mapping(result.get("message")).get("text") or "")
    help_text = str(mapping(rule.get("help")).get("text") or "")
    m = _GRYPE_MESSAGE.search(message)
    if m:
        return m.group(1), m.group(2), purl
    name = next((m.group(1) for t in (message, help_text) if (m := _PACKAGE.search(t))), None)
    version = next((m.group(1) for t in (message, help_text) if (m := _INSTALLED.search(t))), None)
    if name is None:
        for loc in items(result.get("locations")):
            loc_text = str(mapping(mapping(loc).get("message")).get("text") or "")
            _, _, tail = loc_text.rpartition(": ")
            pkg, sep, ver = tail.rpartition("@")
            if sep and pkg:
                return pkg, ver or None, purl
    return name, version, purl


def parse_sarif(document: object, severity_order: tuple[str, ...] = SEVERITY_SOURCES) -> VulnReport:
    """Read a SARIF 2.1.0 log (see the module docstring). Raises :class:`MetadataError` when malformed."""
    doc = mapping(document)
    if doc.get("version") != "2.1.0":
        raise MetadataError(f"not a SARIF 2.1.0 log: version is {doc.get('version')!r}")
    runs = doc.get("runs")
    if not isinstance(runs, list):
        raise MetadataError("not a SARIF 2.1.0 log: runs is not a list")
    found: dict[tuple[str, str | None, str | None], Finding] = {}
    scanners: list[tuple[str | None, str | None]] = []
    created: datetime | None = None
    subjects: list[str] = []
    warnings: list[str] = []
    for r, run in enumerate(runs):
        if not isinstance(run, Mapping):
            raise MetadataError(f"not a SARIF 2.1.0 log: runs[{r}] is not an object")
        driver = mapping(mapping(run.get("tool")).get("driver"))
        if text(driver.get("name")) is None:
            raise MetadataError(f"not a SARIF 2.1.0 log: runs[{r}].tool.driver.name is missing")
        scanners.append((text(driver.get("name")), text(driver.get("version"))))
        rules = [mapping(x) for x in items(driver.get("rules"))]
        for ext in items(mapping(run.get("tool")).get("extensions")):
            rules.extend(mapping(x) for x in items(mapping(ext).get("rules")))
        by_id = {str(x.get("id")): x for x in rules if text(x.get("id"))}
        results = run.get("results") or []
        if not isinstance(results, list):
            raise MetadataError(f"not a SARIF 2.1.0 log: runs[{r}].results is not a list")
        for invocation in items(run.get("invocations")):
            for key in ("endTimeUtc", "startTimeUtc"):
                moment = parse_rfc3339(mapping(invocation).get(key))
                if moment is not None:
                    created = moment if created is None else max(created, moment)
                    break
        for repo_digest in items(_properties(run).get("repoDigests")):
            if isinstance(repo_digest, str) and "@" in repo_digest:
                subjects.append(repo_digest.rpartition("@")[2].lower())
        for i, result in enumerate(results):
            if not isinstance(result, Mapping):
                raise MetadataError(f"not a SARIF 2.1.0 log: runs[{r}].results[{i}] is not an object")
            rule_ref = mapping(result.get("rule"))
            rule_id = text(result.get("ruleId")) or text(rule_ref.get("id"))
            index = result.get("ruleIndex", rule_ref.get("index"))
            rule: Mapping[str, Any] = {}
            if isinstance(index, int) and not isinstance(index, bool) and 0 <= index < len(rules):
                candidate = rules[index]
                if rule_id is None or candidate.get("id") == rule_id:
                    rule = candidate
            if not rule and rule_id is not None:
                rule = by_id.get(rule_id) or by_id.get(rule_id.split("/")[0]) or {}
            if not rule and rule_id is None:
                warnings.append(f"runs[{r}].results[{i}] names no rule")
                continue
            rule_id = rule_id or text(rule.get("id"))
            severity, source, score = sarif_severity(rule, result, severity_order)
            package, version, purl = _package(rule, result)
            tags = {str(t).casefold() for t in items(_properties(rule).get("tags"))}
            kind = next((k for k in ("misconfiguration", "secret", "license") if k in tags), "vulnerability")
            finding = Finding(
                vulnerability_id(rule_id, rule), severity, source, package, version, purl, (), rule_id, score, kind
            )
            _keep(found, finding)
            if len(found) > _MAX_FINDINGS:
                raise MetadataError(f"report has more than {_MAX_FINDINGS} findings")
    name, version = scanners[0] if scanners else (None, None)
    return VulnReport("sarif", name, version, created, tuple(found.values()), tuple(subjects), tuple(warnings))


def _keep(found: dict[tuple[str, str | None, str | None], Finding], finding: Finding) -> None:
    key = (finding.id.casefold(), finding.package, finding.version)
    old = found.get(key)
    if old is None or _rank(finding.severity) > _rank(old.severity):
        found[key] = finding


def _rank(severity: str) -> int:
    return SEVERITY_RANK.get(severity, 5 if severity == UNKNOWN else -1)


# -- in-toto / cosign vulnerability predicates ------------------------------------------------------------------


def _label_and_score(entries: object) -> tuple[str, str, float | None]:
    """Severity from a v0.2 ``severity`` list: labels (``{method: nvd, score: "medium"}``) first, then the
    highest numeric score; a bare string is a label."""
    if isinstance(entries, str):
        word = severity_word(entries)
        return (word, "label", None) if word else (UNKNOWN, "none", None)
    labels: list[str] = []
    scores: list[tuple[str, float]] = []
    for entry in items(entries) or ([entries] if isinstance(entries, Mapping) else []):
        raw = mapping(entry).get("score")
        word = severity_word(raw)
        if word:
            labels.append(word)
        elif (score := score_of(raw)) is not None and (sev := severity_from_score(score)) is not None:
            scores.append((sev, score))
    if labels:
        best = highest(labels)
        assert best is not None
        return best, "label", None
    if scores:
        sev, score = max(scores, key=lambda s: s[1])
        return sev, "score", score
    return UNKNOWN, "none", None


def _annotation(annotations: object, *keys: str) -> str | None:
    merged: dict[str, Any] = {}
    for entry in items(annotations) or [annotations]:
        merged.update(mapping(entry))
    folded = {k.casefold(): v for k, v in merged.items()}
    return next((v for k in keys if (v := text(folded.get(k.casefold()))) is not None), None)


def _v02_results(result: list[Any]) -> list[Finding]:
    findings: list[Finding] = []
    for entry in result:
        vuln = mapping(mapping(entry).get("vulnerability")) or mapping(entry)
        vuln_id = text(vuln.get("id"))
        if vuln_id is None:
            raise MetadataError("vulnerability predicate: a scanner.result entry has no id")
        severity, source, score = _label_and_score(vuln.get("severity"))
        ann = vuln.get("annotations")
        aliases = tuple(canonical_id(a) for a in items(vuln.get("aliases")) if isinstance(a, str))
        findings.append(
            Finding(
                canonical_id(vuln_id),
                severity,
                source,
                _annotation(ann, "package", "pkgName", "packageName", "name"),
                _annotation(ann, "version", "installedVersion"),
                _annotation(ann, "purl"),
                aliases,
                score=score,
            )
        )
    return findings


def _trivy_json(result: Mapping[str, Any]) -> list[Finding]:
    findings: list[Finding] = []
    for target in items(result.get("Results")):
        for vuln in items(mapping(target).get("Vulnerabilities")):
            v = mapping(vuln)
            vuln_id = text(v.get("VulnerabilityID"))
            if vuln_id is None:
                continue
            word = severity_word(v.get("Severity"))
            purl = text(mapping(v.get("PkgIdentifier")).get("PURL"))
            findings.append(
                Finding(
                    canonical_id(vuln_id),
                    word or UNKNOWN,
                    "label" if word else "none",
                    text(v.get("PkgName")),
                    text(v.get("InstalledVersion")),
                    purl,
                    tuple(canonical_id(a) for a in items(v.get("VendorIDs")) if isinstance(a, str)),
                )
            )
    return findings


def _grype_json(result: Mapping[str, Any]) -> list[Finding]:
    findings: list[Finding] = []
    for match in items(result.get("matches")):
        vuln, artifact = mapping(mapping(match).get("vulnerability")), mapping(mapping(match).get("artifact"))
        vuln_id = text(vuln.get("id"))
        if vuln_id is None:
            continue
        word = severity_word(vuln.get("severity"))
        aliases = tuple(
            canonical_id(str(mapping(r).get("id")))
            for r in items(mapping(match).get("relatedVulnerabilities"))
            if text(mapping(r).get("id"))
        )
        findings.append(
            Finding(
                canonical_id(vuln_id),
                word or UNKNOWN,
                "label" if word else "none",
                text(artifact.get("name")),
                text(artifact.get("version")),
                text(artifact.get("purl")),
                aliases,
            )
        )
    return findings


def parse_vuln_predicate(predicate: object, severity_order: tuple[str, ...] = SEVERITY_SOURCES) -> VulnReport:
    """Read an in-toto ``vulns`` v0.1/v0.2 or cosign ``vuln/v1`` predicate (``scanner`` or ``scanners[]``)."""
    doc = mapping(predicate)
    scanners = [mapping(s) for s in items(doc.get("scanners"))] or [mapping(doc.get("scanner"))]
    if not scanners or not any(scanners):
        raise MetadataError("vulnerability predicate: scanner is missing")
    found: dict[tuple[str, str | None, str | None], Finding] = {}
    for scanner in scanners:
        if "result" not in scanner:
            raise MetadataError("vulnerability predicate: scanner.result is missing")
        result = scanner.get("result")
        if result is None:
            result = []
        if isinstance(result, list):
            findings = _v02_results(result)
        elif isinstance(result, Mapping) and "runs" in result:
            findings = list(parse_sarif(result, severity_order).findings)
        elif isinstance(result, Mapping) and ("Results" in result or "SchemaVersion" in result):
            findings = _trivy_json(result)
        elif isinstance(result, Mapping) and "matches" in result:
            findings = _grype_json(result)
        elif isinstance(result, Mapping) and not result:
            findings = []
        else:
            raise MetadataError("vulnerability predicate: scanner.result is in a format Referee does not read")
        for finding in findings:
            _keep(found, finding)
    metadata = mapping(doc.get("metadata"))
    created = parse_rfc3339(metadata.get("scanFinishedOn")) or parse_rfc3339(metadata.get("scanStartedOn"))
    uri = text(scanners[0].get("uri"))
    return VulnReport("vuln-predicate", uri, text(scanners[0].get("version")), created, tuple(found.values()), (), ())
