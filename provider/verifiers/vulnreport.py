"""The ``vulnerability-report`` verifier: SARIF 2.1.0 reports (and bare vulnerability predicates) as referrers.

Judgement (:mod:`provider.metadata.vulnpolicy`): highest allowed severity, CVE deny-list, CVE exceptions with
expiry, and VEX suppression by sibling OpenVEX documents. Freshness: the report's creation time comes only from
content covered by the report's digest — the ``org.opencontainers.image.created`` annotation of its fetched manifest
(a signature on the report signs that manifest's digest), else the report's own time (SARIF
``invocations[].endTimeUtc``, predicate ``metadata.scanFinishedOn``) — never from a listing (any pusher can rewrite
the tag-schema index). An annotation that is present but not RFC 3339 is a problem, not a fallback. With
``maximumAge`` set, an unknown time fails (``requireCreationTime``).

Several reports for one image: once every report and its signatures are judged, the newest *eligible* report
decides (:meth:`VulnReportVerifier.reconcile`): eligible are the readable reports that carry every signature the
policy requires on them. Unsigned, unreadable or unfetchable entries can neither displace nor outrank them. Every
other report fails with ``superseded by <digest>``, so the policy must accept *any* successful report
(``required-verifiers``, or a ``rules`` rule with ``match: any``). When the newest cannot be established — eligible
reports without a usable time, a tie, or a listing that stopped at a limit — no report counts (fail closed).

VEX documents are listed because their types are among this verifier's artifact types, but they are not claimed
(``can_verify`` is false for them): they are judged first by the ``vex`` verifier, and a document is read only when
its own result passed with every signature the policy requires on it (``VerificationRequest.accepted``).
"""

from __future__ import annotations

import asyncio
import dataclasses
import fnmatch
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import structlog

from provider import mediatypes as mt
from provider.confignode import Node
from provider.errors import ProviderError
from provider.metadata.common import MetadataError, iso, parse_rfc3339
from provider.metadata.sarif import SEVERITY_SOURCES, UNKNOWN, VulnReport, canonical_id, parse_report, severity_word
from provider.metadata.vex import VexDocument, VexIndex, VexStatement, parse_openvex
from provider.metadata.vulnpolicy import CveException, ReportPolicy, check_age, evaluate_report, parse_exception
from provider.oci import Descriptor, Manifest
from provider.policies.base import PolicySpec, Signature
from provider.verdict import ArtifactResult
from provider.verifiers.base import (
    SignedUnderPolicy,
    VerificationRequest,
    VerifierResult,
    VerifierSpec,
    verifier_types,
)
from provider.verifiers.sbom import load_document

log = structlog.get_logger("referee.vulnreport")

DEFAULT_VEX_TYPES = (mt.OPENVEX_JSON, mt.OPENVEX_JSON_SHORT)
MAX_VEX_DOCUMENTS = 64
_THREAD_THRESHOLD = 256 * 1024


@dataclass(frozen=True, slots=True)
class VulnReportParams:
    policy: ReportPolicy
    maximum_age: float | None
    future_skew: float
    created_annotation: str
    require_creation_time: bool
    severity_sources: tuple[str, ...]
    check_subject: bool
    vex_enabled: bool
    vex_types: frozenset[str]


@dataclass(frozen=True, slots=True)
class _Created:
    moment: datetime | None
    source: str
    problem: str | None = None


class VulnReportVerifier:
    type = "vulnerability-report"

    def __init__(self, spec: VerifierSpec) -> None:
        self.name = spec.name
        self.params: VulnReportParams = spec.params
        self.vex_types = self.params.vex_types if self.params.vex_enabled else frozenset()
        self.consumes: frozenset[str] = self.vex_types
        self.artifact_types = spec.artifact_types - self.params.vex_types

    def can_verify(self, artifact: Descriptor) -> bool:
        return artifact.artifact_type in self.artifact_types

    # -- reading ------------------------------------------------------------------------------------------------

    async def _report(self, request: VerificationRequest, manifest: Manifest) -> tuple[VulnReport, str]:
        raw, layer = await load_document(request, manifest, self.artifact_types, "the report")
        order = self.params.severity_sources
        if layer.size > _THREAD_THRESHOLD:
            return await asyncio.to_thread(parse_report, raw, order), layer.digest
        return parse_report(raw, order), layer.digest

    def _created(self, manifest: Manifest, report: VulnReport | None) -> _Created:
        key = self.params.created_annotation
        value = manifest.annotations.get(key)
        if value is not None:
            moment = parse_rfc3339(value)
            if moment is None:
                return _Created(
                    None, "manifest-annotation", f"{key} annotation {value[:64]!r} is not an RFC 3339 date-time"
                )
            return _Created(moment, "manifest-annotation")
        return _Created(report.created if report else None, "report")

    async def _vex(self, request: VerificationRequest) -> tuple[list[VexDocument], list[str], str | None]:
        """The accepted VEX documents beside the report, the problems of the others, and why the report cannot be
        judged at all (a VEX document whose signatures could not all be examined, or too many to read them all:
        either could hide a newer statement that revokes a suppression)."""
        documents: list[VexDocument] = []
        errors: list[str] = []
        listed = [d for d in request.referrers if d.artifact_type in self.vex_types]
        unsettled = [d for d in listed if d.digest in request.unsettled]
        if unsettled:
            return [], [], f"VEX document {unsettled[0].digest[:19]}: its signatures could not all be examined"
        refused = [d for d in listed if d.digest not in request.accepted]
        for descriptor in refused[:MAX_VEX_DOCUMENTS]:
            errors.append(f"{descriptor.digest[:19]}: not used: not verified with the signatures the policy requires")
        listed = [d for d in listed if d.digest in request.accepted]
        if len(listed) > MAX_VEX_DOCUMENTS:
            return [], errors, f"{len(listed)} signed VEX documents, more than the {MAX_VEX_DOCUMENTS} Referee reads"
        for descriptor in listed:
            try:
                manifest = await request.content.fetch_manifest(descriptor)
                raw, _ = await load_document(request, manifest, self.vex_types, "the VEX document")
                document = parse_openvex(raw, source=descriptor.digest)
                if document.problems:
                    errors.append(f"{descriptor.digest[:19]}: not used: {'; '.join(document.problems)}")
                    continue
                documents.append(self._present(document, request.now, errors))
            except ProviderError as exc:
                if exc.transient:
                    raise
                errors.append(f"{descriptor.digest[:19]}: {exc}")
            except MetadataError as exc:
                errors.append(f"{descriptor.digest[:19]}: {exc}")
        if errors:
            log.info("vex_documents_skipped", artifact=request.artifact.digest, errors=errors[:5])
        return documents, errors, None

    def _present(self, document: VexDocument, now: datetime, errors: list[str]) -> VexDocument:
        """Statements dated in the future (beyond ``futureSkew``) would outrank every real one: drop them."""
        limit = now + timedelta(seconds=self.params.future_skew)
        if document.timestamp is not None and document.timestamp > limit:
            errors.append(f"{str(document.source)[:19]}: not used: dated {iso(document.timestamp)}, in the future")
            return dataclasses.replace(document, statements=())
        kept: list[VexStatement] = []
        for statement in document.statements:
            if statement.timestamp is not None and statement.timestamp > limit:
                errors.append(f"{str(document.source)[:19]}: statements[{statement.index}] dated in the future")
            else:
                kept.append(statement)
        return dataclasses.replace(document, statements=tuple(kept))

    # -- judging ------------------------------------------------------------------------------------------------

    async def verify(self, request: VerificationRequest) -> VerifierResult:
        try:
            report, document_digest = await self._report(request, request.manifest)
        except MetadataError as exc:
            created = self._created(request.manifest, None)
            unreadable = {"error": str(exc), "superseded": False, "reportCreated": iso(created.moment)}
            return VerifierResult(False, f"unreadable report: {exc}", unreadable)
        created = self._created(request.manifest, report)
        problems: list[str] = []
        strict = self.params.require_creation_time and self.params.maximum_age is not None
        if created.problem and strict:
            problems.append(created.problem)
        age_problem, age = check_age(created.moment, request.now, self.params.maximum_age, self.params.future_skew)
        if age_problem is not None and (created.moment is not None or (strict and not created.problem)):
            problems.append(age_problem)
        digest = request.subject.descriptor.digest
        if self.params.check_subject and report.subjects and digest not in report.subjects:
            problems.append(f"the report is about {', '.join(report.subjects[:3])}, not {digest}")
        documents, vex_errors, vex_blocker = await self._vex(request) if self.vex_types else ([], [], None)
        if vex_blocker is not None:
            problems.append(f"cannot judge the report: {vex_blocker}")
        vex = VexIndex(documents, digest) if documents else None
        evaluation = evaluate_report(report, self.params.policy, now=request.now, vex=vex)
        if not evaluation.passed:
            problems.append(evaluation.reason)
        details: dict[str, Any] = {
            "format": report.format,
            "scanner": report.scanner,
            "scannerVersion": report.scanner_version,
            "reportCreated": iso(created.moment),
            "reportCreatedSource": created.source,
            "reportCreatedProblem": created.problem,
            "ageSeconds": None if age is None else round(age),
            "documentDigest": document_digest,
            "superseded": False,
            "vexDocuments": [d.source for d in documents],
            "vexErrors": vex_errors,
            **evaluation.details(),
        }
        if problems:
            return VerifierResult(False, "; ".join(problems), details)
        log.debug("report_accepted", artifact=request.artifact.digest, highest=evaluation.highest_severity)
        return VerifierResult(True, f"report {evaluation.reason}", details)

    # -- several reports ----------------------------------------------------------------------------------------

    def reconcile(
        self, results: Sequence[ArtifactResult], signed: SignedUnderPolicy, complete: bool
    ) -> list[ArtifactResult]:
        """Only the newest eligible report may count; see the module docstring."""
        readable = [r for r in results if r.error is None and "documentDigest" in r.details]
        status = {r.digest: signed(r) for r in readable}
        unknown = [r.digest for r in readable if status[r.digest] is Signature.UNKNOWN]
        if unknown:
            why = f"the signatures of report {unknown[0][:19]} could not all be examined"
            return [_undecided(r, why) for r in results]
        # When the policy requires a signature on some of this verifier's reports, an unsigned report of a type no
        # rule covers must not compete with them either.
        required = any(s is not Signature.NOT_REQUIRED for s in status.values())
        eligible = [
            r
            for r in readable
            if status[r.digest] is Signature.PRESENT or (status[r.digest] is Signature.NOT_REQUIRED and not required)
        ]
        if not eligible or (len(results) == 1 and complete):
            return list(results)
        if not complete:
            return [_undecided(r, "not every listed report was examined (limits.maxReferrers)") for r in results]
        times = {r.digest: parse_rfc3339(r.details.get("reportCreated")) for r in eligible}
        undated = [r.digest for r in eligible if times[r.digest] is None]
        if undated and len(eligible) > 1:
            why = f"{len(eligible)} reports are eligible and {undated[0][:19]} has no usable creation time"
            return [_undecided(r, why) for r in results]
        newest_time = max(t for t in times.values() if t is not None) if not undated else None
        tied = [r for r in eligible if times[r.digest] == newest_time]
        if len(tied) > 1:
            why = f"{len(tied)} reports share the newest creation time {iso(newest_time)}"
            return [_undecided(r, why) for r in results]
        newest = tied[0]
        return [r if r.digest == newest.digest else _superseded(r, newest.digest) for r in results]


def _superseded(result: ArtifactResult, newest: str) -> ArtifactResult:
    details = {**result.details, "superseded": True, "supersededBy": newest}
    reason = f"superseded by {newest}" if result.succeeded else result.reason
    return dataclasses.replace(result, succeeded=False, reason=reason, details=details)


def _undecided(result: ArtifactResult, why: str) -> ArtifactResult:
    if not result.succeeded:
        return result
    details = {**result.details, "newestUnknown": True}
    reason = f"the newest report cannot be established: {why}"
    return dataclasses.replace(result, succeeded=False, reason=reason, details=details)


def _parse_exceptions(node: Node) -> tuple[CveException, ...]:
    def one(value: object, path: str) -> CveException | None:
        try:
            return parse_exception(value)
        except MetadataError as exc:
            node.problems.add(path, str(exc))
            return None

    return node.parse_each("exceptions", one)


@verifier_types.register("vulnerability-report")
class VulnReportPlugin:
    default_artifact_types = frozenset({mt.SARIF_JSON, *DEFAULT_VEX_TYPES})

    def parse_params(self, node: Node) -> VulnReportParams:
        max_severity = None
        raw_severity = node.string("max_severity", None)
        if raw_severity is not None:
            max_severity = severity_word(raw_severity)
            if max_severity is None or max_severity == UNKNOWN:
                node.error("must be one of CRITICAL, HIGH, MEDIUM, LOW, NEGLIGIBLE", "max_severity")
                max_severity = None
        unknown = node.string("unknown_severity", "deny", choices=("deny", "allow"))
        denied = frozenset(canonical_id(d).casefold() for d in node.str_list("denied_vulnerabilities"))
        exceptions = _parse_exceptions(node)
        for e in exceptions:
            if e.id.casefold() in denied:
                node.error(f"{e.id} is both denied and excepted", "exceptions")
        sources = node.str_list("severity_sources", SEVERITY_SOURCES)
        for s in sources:
            if s not in SEVERITY_SOURCES:
                node.error(f"unknown severity source {s!r}; known: {', '.join(SEVERITY_SOURCES)}", "severity_sources")
        maximum_age = node.duration("maximum_age", 0.0, minimum=1.0) if node.has("maximum_age") else None
        vex = node.node("vex")
        vex_enabled = vex.flag("enabled", False)
        vex_types = frozenset(vex.str_list("artifact_types", DEFAULT_VEX_TYPES))
        vex.finish()
        listed = node.raw("artifact_types")
        effective = set(listed) if isinstance(listed, list) else set(self.default_artifact_types)
        if vex_enabled and not vex_types <= effective:
            missing = ", ".join(sorted(vex_types - effective))
            node.error(
                f"must also list the VEX artifact types ({missing}) so they are listed beside reports,"
                " or set vex.enabled: false",
                "artifact_types",
            )
        return VulnReportParams(
            policy=ReportPolicy(max_severity, unknown, denied, exceptions),
            maximum_age=maximum_age,
            future_skew=node.duration("future_skew", 300.0),
            created_annotation=node.string("created_annotation", mt.ANNOTATION_CREATED),
            require_creation_time=node.flag("require_creation_time", True),
            severity_sources=tuple(s for s in sources if s in SEVERITY_SOURCES) or SEVERITY_SOURCES,
            check_subject=node.flag("check_subject", True),
            vex_enabled=vex_enabled,
            vex_types=vex_types,
        )

    def create(self, spec: VerifierSpec) -> VulnReportVerifier:
        return VulnReportVerifier(spec)

    def check_configuration(
        self, spec: VerifierSpec, verifiers: tuple[VerifierSpec, ...], policy: PolicySpec
    ) -> list[str]:
        """A second line behind the structural rule (a VEX document is read only when its own result passed with
        the signatures the policy requires): reading VEX needs a ``rules`` rule with ``match: every`` and
        ``nested`` over a ``vex`` verifier, covering every VEX type and every scope this verifier reads."""
        params: VulnReportParams = spec.params
        rules = getattr(policy.params, "rules", ()) if policy.type == "rules" else ()
        problems = _report_type_problems(spec, params, rules)
        if not params.vex_enabled:
            return problems
        vex_verifiers = {
            v.name
            for v in verifiers
            if v.type == "vex" and params.vex_types <= v.artifact_types and _covers(v.scopes, spec.scopes)
        }
        for rule in rules:
            if (
                rule.match == "every"
                and rule.nested_verifiers
                and set(rule.verifiers) & vex_verifiers
                and (not rule.artifact_types or params.vex_types <= rule.artifact_types)
                and _covers(rule.scopes, spec.scopes)
            ):
                return problems
        return [
            *problems,
            "vex.enabled: VEX documents suppress findings, so each must be signed: configure a `vex` verifier "
            f"for {', '.join(sorted(params.vex_types))} and a rules-policy rule over it with match: every and "
            "nested verifiers, covering every VEX artifact type and every scope of this verifier "
            "(docs/metadata.md), or set vex.enabled: false",
        ]


def _report_type_problems(spec: VerifierSpec, params: VulnReportParams, rules: Any) -> list[str]:
    """A rule that requires signatures on only some of the report types this verifier reads leaves the others
    unsigned beside signed reports (Referee then ignores them when choosing the newest report; say so instead)."""
    report_types = spec.artifact_types - params.vex_types
    problems = []
    for rule in rules:
        if spec.name in rule.verifiers and rule.nested_verifiers and rule.artifact_types:
            missing = report_types - rule.artifact_types
            if missing:
                covered = ", ".join(sorted(rule.artifact_types))
                problems.append(
                    f"policy rule {rule.name!r} requires signatures on reports of {covered} only, but this verifier "
                    f"also reads {', '.join(sorted(missing))}: list every report type in the rule's artifactTypes or "
                    "narrow this verifier's artifactTypes"
                )
    return problems


def _covers(outer: tuple[str, ...], inner: tuple[str, ...]) -> bool:
    """Whether every repository an ``inner`` scope pattern can match is matched by an ``outer`` pattern (patterns as
    in :func:`provider.config.matches_any`; an inner pattern is compared literally)."""

    def covered(pattern: str) -> bool:
        for outer_pattern in outer:
            target = pattern if "/" in outer_pattern else pattern.split("/", 1)[0]
            if outer_pattern == "*" or fnmatch.fnmatchcase(target, outer_pattern):
                return True
        return False

    return all(covered(p) for p in inner)
