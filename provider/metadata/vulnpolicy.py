"""Judging a vulnerability report: severity threshold, CVE deny-list, CVE exceptions with expiry, VEX, age.

Per finding, in this order:

1. a finding whose id or alias is on the **deny-list** is a violation, whatever VEX or exceptions say (the list
   names what must never ship);
2. a finding that a **VEX** statement suppresses (:mod:`provider.metadata.vex`) is set aside and reported;
3. a finding covered by an unexpired **exception** is set aside and reported (an expired one is reported too);
4. every remaining finding is *counted*: a severity above ``max_severity`` is a violation, and so is UNKNOWN
   unless ``unknown_severity`` is ``allow``.

``highest_severity`` is the highest severity among counted findings, as the Rego templates read it: CRITICAL,
HIGH, MEDIUM, LOW (NEGLIGIBLE is reported as LOW), NONE (no counted finding), or UNKNOWN when counted findings
exist and none has a known severity.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from provider.metadata.common import MetadataError, iso, parse_expiry
from provider.metadata.sarif import (
    LOW,
    NEGLIGIBLE,
    NONE,
    SEVERITY_RANK,
    UNKNOWN,
    Finding,
    VulnReport,
    canonical_id,
    highest,
    severity_word,
)
from provider.metadata.vex import VexDecision, VexIndex

MAX_LISTED = 50


@dataclass(frozen=True, slots=True)
class CveException:
    id: str
    expires: datetime | None
    reason: str | None = None

    def active(self, now: datetime) -> bool:
        return self.expires is None or now < self.expires


def parse_exception(entry: object) -> CveException:
    """``"CVE-…"`` (no expiry) or ``{id, expires: 2026-12-31 | RFC 3339, reason}``; a date lasts the whole day."""
    if isinstance(entry, str) and entry.strip():
        return CveException(canonical_id(entry), None)
    if isinstance(entry, Mapping):
        unknown = set(entry) - {"id", "expires", "reason"}
        if unknown:
            raise MetadataError(f"unknown keys {', '.join(sorted(map(str, unknown)))} (use id, expires, reason)")
        vuln_id = entry.get("id")
        if not isinstance(vuln_id, str) or not vuln_id.strip():
            raise MetadataError("id is required")
        expires = None
        if entry.get("expires") is not None:
            expires = parse_expiry(entry["expires"])
            if expires is None:
                raise MetadataError(f"expires {entry['expires']!r} is not a date (YYYY-MM-DD) or RFC 3339 date-time")
        reason = entry.get("reason")
        return CveException(canonical_id(vuln_id), expires, reason if isinstance(reason, str) else None)
    raise MetadataError("expected a vulnerability id or a mapping with id and expires")


@dataclass(frozen=True, slots=True)
class ReportPolicy:
    """``max_severity`` is the highest severity allowed (None: no threshold)."""

    max_severity: str | None = None
    unknown_severity: str = "deny"
    denied: frozenset[str] = frozenset()
    exceptions: tuple[CveException, ...] = ()

    @classmethod
    def of(
        cls,
        max_severity: str | None = None,
        *,
        unknown_severity: str = "deny",
        denied: Iterable[str] = (),
        exceptions: Iterable[object] = (),
    ) -> ReportPolicy:
        """Build from plain values; raises :class:`MetadataError` on an invalid entry."""
        level = None
        if max_severity is not None:
            level = severity_word(max_severity)
            if level is None or level == UNKNOWN:
                raise MetadataError(f"unknown severity {max_severity!r}")
        if unknown_severity not in ("deny", "allow"):
            raise MetadataError("unknown_severity must be deny or allow")
        parsed = tuple(parse_exception(e) for e in exceptions)
        deny = frozenset(canonical_id(d).casefold() for d in denied)
        clash = sorted(e.id for e in parsed if e.id.casefold() in deny)
        if clash:
            raise MetadataError(f"{', '.join(clash)} is both denied and excepted")
        return cls(level, unknown_severity, deny, parsed)


@dataclass(frozen=True, slots=True)
class ReportEvaluation:
    passed: bool
    reason: str
    counted: tuple[Finding, ...]
    violations: tuple[tuple[Finding, str], ...]
    suppressed: tuple[tuple[Finding, VexDecision], ...]
    excepted: tuple[tuple[Finding, CveException], ...]
    expired: tuple[tuple[Finding, CveException], ...]
    vex_kept: tuple[tuple[Finding, VexDecision], ...]
    highest_severity: str
    severity_counts: Mapping[str, int] = field(default_factory=dict)

    def details(self, limit: int = MAX_LISTED) -> dict[str, Any]:
        """The verdict ``details`` fields (bounded lists; ``…Count`` fields give the full numbers)."""
        return {
            "highestSeverity": self.highest_severity,
            "severityCounts": dict(self.severity_counts),
            "findingCount": len(self.counted),
            "findings": [f.to_json() for f in self.counted[:limit]],
            "findingsTruncated": len(self.counted) > limit,
            "violations": [{**f.to_json(), "why": why} for f, why in self.violations[:limit]],
            "suppressions": [{**f.to_json(), **d.to_json()} for f, d in self.suppressed[:limit]],
            "suppressionCount": len(self.suppressed),
            "vexNotSuppressing": [{**f.to_json(), **d.to_json()} for f, d in self.vex_kept[:limit]],
            "exceptionsApplied": [
                {**f.to_json(), "expires": iso(e.expires), "exceptionReason": e.reason}
                for f, e in self.excepted[:limit]
            ],
            "exceptionsExpired": [{**f.to_json(), "expired": iso(e.expires)} for f, e in self.expired[:limit]],
        }


def _label(finding: Finding) -> str:
    where = f", {finding.package}" if finding.package else ""
    return f"{finding.id} ({finding.severity}{where})"


def report_highest(findings: Iterable[Finding]) -> str:
    """CRITICAL/HIGH/MEDIUM/LOW/NONE/UNKNOWN over ``findings`` (see the module docstring)."""
    found = highest([f.severity for f in findings])
    if found is None:
        return NONE
    return LOW if found == NEGLIGIBLE else found


def evaluate_report(
    report: VulnReport, policy: ReportPolicy, *, now: datetime, vex: VexIndex | None = None
) -> ReportEvaluation:
    """Judge every finding of ``report`` (see the module docstring)."""
    violations: list[tuple[Finding, str]] = []
    suppressed: list[tuple[Finding, VexDecision]] = []
    kept: list[tuple[Finding, VexDecision]] = []
    excepted: list[tuple[Finding, CveException]] = []
    expired: list[tuple[Finding, CveException]] = []
    counted: list[Finding] = []
    limit_rank = SEVERITY_RANK[policy.max_severity] if policy.max_severity else None
    for finding in report.findings:
        ids = finding.ids()
        denied = bool(ids & policy.denied)
        decision = vex.decide(finding) if vex is not None else None
        if not denied and decision is not None and decision.suppressed:
            suppressed.append((finding, decision))
            continue
        if decision is not None and not decision.suppressed:
            kept.append((finding, decision))
        exception = next((e for e in policy.exceptions if e.id.casefold() in ids), None)
        if not denied and exception is not None:
            if exception.active(now):
                excepted.append((finding, exception))
                continue
            expired.append((finding, exception))
        counted.append(finding)
        if denied:
            violations.append((finding, f"{_label(finding)} is on the deny-list"))
        elif finding.severity == UNKNOWN:
            if policy.unknown_severity == "deny" and limit_rank is not None:
                violations.append((finding, f"{_label(finding)} has no known severity"))
        elif limit_rank is not None and SEVERITY_RANK[finding.severity] > limit_rank:
            why = f"{_label(finding)} exceeds the highest allowed severity {policy.max_severity}"
            violations.append((finding, why))
    counts: dict[str, int] = {}
    for finding in counted:
        counts[finding.severity] = counts.get(finding.severity, 0) + 1
    highest_severity = report_highest(counted)
    if violations:
        more = f" (+{len(violations) - 1} more)" if len(violations) > 1 else ""
        reason = violations[0][1] + more
    else:
        extra = [f"{len(suppressed)} suppressed by VEX"] if suppressed else []
        extra += [f"{len(excepted)} excepted"] if excepted else []
        reason = f"{len(counted)} findings within policy, highest {highest_severity}" + (
            f" ({', '.join(extra)})" if extra else ""
        )
    return ReportEvaluation(
        not violations,
        reason,
        tuple(counted),
        tuple(violations),
        tuple(suppressed),
        tuple(excepted),
        tuple(expired),
        tuple(kept),
        highest_severity,
        counts,
    )


def check_age(
    created: datetime | None, now: datetime, max_age: float | None, future_skew: float
) -> tuple[str | None, float | None]:
    """``(problem, age in seconds)`` for a report created at ``created`` (None: unknown). ``max_age`` None
    disables the age rule; a creation time more than ``future_skew`` seconds ahead of ``now`` is a problem."""
    if created is None:
        return (None if max_age is None else "report creation time is unknown"), None
    age = (now - created).total_seconds()
    if age < -future_skew:
        return f"report is dated {iso(created)}, {-age:.0f}s in the future (allowed skew {future_skew:.0f}s)", age
    if max_age is not None and age > max_age:
        return f"report is {_human(age)} old (created {iso(created)}), older than the maximum {_human(max_age)}", age
    return None, age


def _human(seconds: float) -> str:
    value = timedelta(seconds=round(max(seconds, 0.0)))
    if value.days >= 2:
        return f"{value.days}d{value.seconds // 3600}h"
    hours, rest = divmod(int(value.total_seconds()), 3600)
    return f"{hours}h{rest // 60:02d}m" if hours else f"{rest // 60}m{rest % 60:02d}s"
