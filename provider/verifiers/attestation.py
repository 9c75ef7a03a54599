"""The ``attestation`` verifier: signed in-toto Statements about the image, judged by declarative rules.

Evidence forms: cosign's legacy ``.att`` tag (DSSE envelope layers with certificate/chain/Rekor bundle
annotations), ``application/vnd.in-toto+json`` / DSSE referrers (same layers), and Sigstore bundles holding a
``dsseEnvelope``. Signatures are checked with the key/keyless/Rekor machinery of
:mod:`provider.verifiers.sigstore` (bundles through :class:`~provider.verifiers.sigstore_bundle.BundleChecker`).
A Statement (v0.1 or v1) counts only when one of its subjects' digests equals the image digest. The rules
(``predicateTypes``, ``provenance`` for SLSA v0.2/v1) are applied to the verified payload only; the verified
predicate, size-limited, goes into the result details (``predicateType``, ``predicate``, ``builderId`` …) for policy.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import structlog

from provider import mediatypes as mt
from provider.confignode import Node
from provider.errors import ArtifactTooLargeError, DigestMismatchError, ManifestInvalidError
from provider.oci import Descriptor
from provider.verifiers.base import VerificationRequest, VerifierResult, VerifierSpec, verifier_types
from provider.verifiers.sigstore.binding import dsse_binder
from provider.verifiers.sigstore.common import Rejected
from provider.verifiers.sigstore.dsse import Statement, pae, parse_envelope, parse_statement
from provider.verifiers.sigstore.evidence import evidence_from_annotations
from provider.verifiers.sigstore_bundle import BundleChecker, fetch_bundles, parse_bundle_checker

log = structlog.get_logger("referee.attestation")

MAX_ENVELOPE_BYTES = 4 * 1024 * 1024
MAX_ENVELOPES = 32
DEFAULT_MAX_PREDICATE_BYTES = 64 * 1024
SLSA_V02 = "https://slsa.dev/provenance/v0.2"
SLSA_V1 = "https://slsa.dev/provenance/v1"
SLSA_TYPES = frozenset({SLSA_V02, SLSA_V1})
ENVELOPE_LAYER_TYPES = frozenset({mt.DSSE_ENVELOPE, mt.INTOTO})


@dataclass(frozen=True, slots=True)
class Match:
    """Accepted values of one field: exact strings and/or full-match regular expressions."""

    exact: tuple[str, ...] = ()
    patterns: tuple[re.Pattern[str], ...] = ()
    version_prefix: bool = False

    def matches(self, value: str | None) -> bool:
        if value is None:
            return False
        if value in self.exact or any(p.fullmatch(value) for p in self.patterns):
            return True
        # slsa-verifier's builder-id rule: an expected id without "@" accepts any version of that builder.
        head = value.split("@", 1)[0]
        return self.version_prefix and "@" in value and any("@" not in e and e == head for e in self.exact)

    def describe(self) -> str:
        return ", ".join([*self.exact, *(f"/{p.pattern}/" for p in self.patterns)])


@dataclass(frozen=True, slots=True)
class ProvenanceRules:
    builder_id: Match | None = None
    build_type: Match | None = None
    source_repository: Match | None = None
    source_ref: Match | None = None

    @property
    def configured(self) -> bool:
        return any((self.builder_id, self.build_type, self.source_repository, self.source_ref))


@dataclass(frozen=True, slots=True)
class AttestationParams:
    checker: BundleChecker
    predicate_types: frozenset[str] = field(default_factory=frozenset)
    provenance: ProvenanceRules = ProvenanceRules()
    max_predicate_bytes: int = DEFAULT_MAX_PREDICATE_BYTES


def _text(doc: object, *path: str) -> str | None:
    for part in path:
        if not isinstance(doc, dict):
            return None
        doc = doc.get(part)
    return doc if isinstance(doc, str) and doc else None


def _split_source(uri: str | None) -> tuple[str | None, str | None]:
    """``git+https://github.com/org/repo@refs/tags/v1`` → (``https://github.com/org/repo``, ``refs/tags/v1``)."""
    if not uri:
        return None, None
    uri = uri.removeprefix("git+")
    head, sep, ref = uri.rpartition("@")
    if sep and "/" not in ref.split("refs/", 1)[0]:
        return head, ref
    return uri, None


def provenance_facts(predicate_type: str, predicate: object) -> dict[str, str]:
    """``builderId``, ``buildType``, ``sourceRepository``, ``sourceRef`` from SLSA v1 or v0.2 (metadata.md §6)."""
    facts: dict[str, str | None] = {}
    if predicate_type == SLSA_V1:
        facts["builderId"] = _text(predicate, "runDetails", "builder", "id")
        facts["buildType"] = _text(predicate, "buildDefinition", "buildType")
        workflow = _text(predicate, "buildDefinition", "externalParameters", "workflow", "repository")
        if workflow:
            facts["sourceRepository"] = workflow
            facts["sourceRef"] = _text(predicate, "buildDefinition", "externalParameters", "workflow", "ref")
        else:
            deps = (
                predicate.get("buildDefinition", {}).get("resolvedDependencies")
                if isinstance(predicate, dict)
                else None
            )
            first = deps[0] if isinstance(deps, list) and deps else None
            facts["sourceRepository"], facts["sourceRef"] = _split_source(_text(first, "uri"))
    elif predicate_type == SLSA_V02:
        facts["builderId"] = _text(predicate, "builder", "id")
        facts["buildType"] = _text(predicate, "buildType")
        uri = _text(predicate, "invocation", "configSource", "uri")
        if uri is None:
            materials = predicate.get("materials") if isinstance(predicate, dict) else None
            uri = _text(materials[0], "uri") if isinstance(materials, list) and materials else None
        facts["sourceRepository"], facts["sourceRef"] = _split_source(uri)
    return {k: v for k, v in facts.items() if v}


def check_rules(statement: Statement, params: AttestationParams) -> str | None:
    """The first rule the statement breaks, or None."""
    wanted = params.predicate_types or (SLSA_TYPES if params.provenance.configured else frozenset())
    if wanted and statement.predicate_type not in wanted:
        return f"predicate type {statement.predicate_type} is not one of {', '.join(sorted(wanted))}"
    rules = params.provenance
    if not rules.configured:
        return None
    if statement.predicate_type not in SLSA_TYPES:
        return f"provenance rules need a SLSA provenance predicate, not {statement.predicate_type}"
    facts = provenance_facts(statement.predicate_type, statement.predicate)
    checks = (
        ("builder id", "builderId", rules.builder_id),
        ("build type", "buildType", rules.build_type),
        ("source repository", "sourceRepository", rules.source_repository),
        ("source ref", "sourceRef", rules.source_ref),
    )
    for label, key, match in checks:
        if match is not None and not match.matches(facts.get(key)):
            return f"{label} {facts.get(key) or '(absent)'} does not match {match.describe()}"
    return None


def statement_details(statement: Statement, max_bytes: int) -> dict[str, Any]:
    serialized = json.dumps(statement.predicate, separators=(",", ":"), ensure_ascii=False)
    details: dict[str, Any] = {
        "predicateType": statement.predicate_type,
        "statementType": statement.type,
        "predicateBytes": len(serialized.encode()),
        "predicateTruncated": len(serialized.encode()) > max_bytes,
    }
    if not details["predicateTruncated"]:
        details["predicate"] = statement.predicate
    details.update(provenance_facts(statement.predicate_type, statement.predicate))
    return details


class AttestationVerifier:
    type = "attestation"

    def __init__(self, spec: VerifierSpec) -> None:
        self.name = spec.name
        self.artifact_types = spec.artifact_types
        self.params: AttestationParams = spec.params

    def can_verify(self, artifact: Descriptor) -> bool:
        return artifact.artifact_type in self.artifact_types

    async def verify(self, request: VerificationRequest) -> VerifierResult:
        digest = request.subject.descriptor.digest
        failures: list[str] = []
        verified: list[tuple[Statement, dict[str, Any]]] = []
        if any(layer.media_type in mt.SIGSTORE_BUNDLE_TYPES for layer in request.manifest.layers):
            await self._from_bundles(request, verified, failures)
        else:
            await self._from_envelopes(request, verified, failures)
        if not verified and not failures:
            return VerifierResult(False, "no DSSE envelope or Sigstore bundle layer in the attestation manifest")
        broken: list[str] = []
        for statement, facts in verified:
            problem = check_rules(statement, self.params)
            details = {**facts, **statement_details(statement, self.params.max_predicate_bytes)}
            if problem is None:
                log.debug(
                    "attestation_verified", verifier=self.name, subject=digest, predicate=statement.predicate_type
                )
                return VerifierResult(True, f"attestation {statement.predicate_type} verified", details)
            broken.append(problem)
            failures.append(f"{statement.predicate_type}: {problem}")
        details = {"failures": failures}
        if verified:
            first_statement, first_facts = verified[0]
            details = {**first_facts, **statement_details(first_statement, self.params.max_predicate_bytes), **details}
        reason = "; ".join(broken) if broken else "no attestation verified: " + "; ".join(failures)
        return VerifierResult(False, reason, details)

    async def _from_bundles(
        self, request: VerificationRequest, verified: list[tuple[Statement, dict[str, Any]]], failures: list[str]
    ) -> None:
        digest = request.subject.descriptor.digest
        for index, (layer, data) in enumerate(await fetch_bundles(request)):
            if isinstance(data, str):
                failures.append(f"bundle {index}: {data}")
                continue
            try:
                outcome = self.params.checker.verify(data, digest, request.subject.ref, request.now)
            except Rejected as exc:
                failures.append(f"bundle {index}: {exc.reason}")
                continue
            if outcome.statement is None:
                failures.append(f"bundle {index}: holds a message signature, not an attestation")
                continue
            verified.append((outcome.statement, {**outcome.facts, "attestationDigest": layer.digest}))

    async def _from_envelopes(
        self, request: VerificationRequest, verified: list[tuple[Statement, dict[str, Any]]], failures: list[str]
    ) -> None:
        layers = [layer for layer in request.manifest.layers if layer.media_type in ENVELOPE_LAYER_TYPES]
        for index, layer in enumerate(layers[:MAX_ENVELOPES]):
            try:
                blob = await request.content.fetch_blob(layer, MAX_ENVELOPE_BYTES)
            except (ArtifactTooLargeError, DigestMismatchError, ManifestInvalidError) as exc:
                failures.append(f"envelope {index}: {exc}")
                continue
            try:
                statement, facts = self._verify_envelope(request, layer, blob)
            except Rejected as exc:
                failures.append(f"envelope {index}: {exc.reason}")
                continue
            verified.append((statement, {**facts, "attestationDigest": layer.digest}))

    def _verify_envelope(
        self, request: VerificationRequest, layer: Descriptor, blob: bytes
    ) -> tuple[Statement, Mapping[str, Any]]:
        envelope = parse_envelope(blob)
        signed = pae(envelope.payload_type, envelope.payload)
        failure: Rejected | None = None
        for signature in envelope.signatures:
            try:
                evidence = evidence_from_annotations(
                    layer.annotations,
                    signature=signature,
                    signed=signed,
                    bind=dsse_binder(envelope, signature),
                    timestamp_message=blob,
                )
                facts = self.params.checker.policy.verify(evidence, request.subject.ref, request.now)
            except Rejected as exc:
                failure = failure or exc
                continue
            statement = parse_statement(envelope.payload_type, envelope.payload)
            digest = request.subject.descriptor.digest
            if not statement.names_digest(digest):
                raise Rejected(
                    f"statement subjects ({', '.join(statement.subject_digests()) or 'none'}) do not include "
                    f"the image digest {digest}"
                )
            return statement, facts
        assert failure is not None
        raise failure


def _parse_match(node: Node, name: str, *, version_prefix: bool = False) -> Match | None:
    exact_raw = node.raw(name)
    pattern_raw = node.raw(f"{name}_reg_exp")
    if exact_raw is None and pattern_raw is None:
        return None
    exact: list[str] = []
    patterns: list[re.Pattern[str]] = []
    for raw, sink in ((exact_raw, "exact"), (pattern_raw, "pattern")):
        values = raw if isinstance(raw, list) else [] if raw is None else [raw]
        key = name if sink == "exact" else f"{name}_reg_exp"
        for value in values:
            if not isinstance(value, str) or not value:
                node.error("expected a non-empty string or a list of them", key)
                continue
            if sink == "exact":
                exact.append(value)
                continue
            try:
                patterns.append(re.compile(value))
            except re.error as exc:
                node.error(f"invalid regular expression: {exc}", key)
    return Match(tuple(exact), tuple(patterns), version_prefix)


@verifier_types.register("attestation")
class AttestationPlugin:
    default_artifact_types = frozenset(
        {mt.COSIGN_LEGACY_ATTESTATIONS, mt.INTOTO, mt.DSSE_ENVELOPE, *mt.SIGSTORE_BUNDLE_TYPES}
    )

    def parse_params(self, node: Node) -> AttestationParams:
        """Shared key/identity/trust parameters plus ``predicateTypes``, ``provenance`` and
        ``maxPredicateBytes``."""
        checker = parse_bundle_checker(node, require_tlog_default=False)
        predicate_types = frozenset(node.str_list("predicate_types"))
        rules_node = node.node("provenance")
        rules = ProvenanceRules(
            builder_id=_parse_match(rules_node, "builder_id", version_prefix=True),
            build_type=_parse_match(rules_node, "build_type"),
            source_repository=_parse_match(rules_node, "source_repository"),
            source_ref=_parse_match(rules_node, "source_ref"),
        )
        rules_node.finish()
        max_bytes = node.size("max_predicate_bytes", DEFAULT_MAX_PREDICATE_BYTES, minimum=0)
        return AttestationParams(checker, predicate_types, rules, max_bytes)

    def create(self, spec: VerifierSpec) -> AttestationVerifier:
        return AttestationVerifier(spec)
