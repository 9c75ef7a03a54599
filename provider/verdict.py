"""The verdict: one versioned JSON document for the server, the CLI and Rego (see docs/verdict.md)."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

T = TypeVar("T")

SCHEMA_VERSION = "referee.verdict/v1"


@dataclass(frozen=True, slots=True)
class ArtifactResult:
    """The outcome of one verifier on one artifact (referrer), with its nested results."""

    digest: str
    artifact_type: str
    verifier: str
    verifier_type: str
    succeeded: bool
    reason: str
    details: Mapping[str, Any] = field(default_factory=dict)
    nested: tuple[ArtifactResult, ...] = ()
    error: str | None = None
    subject: str | None = None
    """The platform manifest the artifact is attached to, when it is not the verdict's subject (an index's
    platform-level evidence, ``multiArch.platformArtifactTypes``)."""

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "digest": self.digest,
            "artifactType": self.artifact_type,
            "verifier": self.verifier,
            "verifierType": self.verifier_type,
            "succeeded": self.succeeded,
            "reason": self.reason,
            "details": dict(self.details),
            "nested": [n.to_json() for n in self.nested],
        }
        if self.error:
            out["error"] = self.error
        if self.subject:
            out["subject"] = self.subject
        return out

    @classmethod
    def from_json(cls, doc: object) -> ArtifactResult:
        """The inverse of :meth:`to_json`; ``ValueError`` when ``doc`` does not have its shape."""
        d = _mapping(doc, "artifact")
        error = d.get("error")
        return cls(
            digest=_text(d, "digest"),
            artifact_type=_text(d, "artifactType"),
            verifier=_text(d, "verifier"),
            verifier_type=_text(d, "verifierType"),
            succeeded=_flag(d, "succeeded"),
            reason=_text(d, "reason"),
            details=_mapping(d.get("details"), "details"),
            nested=tuple(cls.from_json(n) for n in _list(d, "nested")),
            error=error if isinstance(error, str) and error else None,
        )


# Reason codes of a decision (the decision log and ``referee_decisions_total`` carry them; docs/operations.md).
POLICY_SATISFIED = "POLICY_SATISFIED"
POLICY_DENIED = "POLICY_DENIED"  # a policy that names no code of its own
NO_POLICY = "NO_POLICY"
EMPTY_POLICY = "EMPTY_POLICY"
NO_RULE_APPLIES = "NO_RULE_APPLIES"
NO_EVIDENCE_REQUIRED = "NO_EVIDENCE_REQUIRED"
NO_EVIDENCE = "NO_EVIDENCE"
EVIDENCE_REJECTED = "EVIDENCE_REJECTED"
EVIDENCE_ERROR = "EVIDENCE_ERROR"


@dataclass(frozen=True, slots=True)
class Decision:
    """What a policy decided, and why: ``reason`` for people; ``code``, ``verifiers`` and ``unmet`` for the
    decision log and metrics (bounded values: codes above, names from the configuration)."""

    allowed: bool
    reason: str
    details: Mapping[str, Any] = field(default_factory=dict)
    code: str = ""
    verifiers: tuple[str, ...] = ()
    """The verifiers whose evidence met a requirement of the policy."""
    unmet: tuple[tuple[str, str], ...] = ()
    """``(requirement, code)`` for each requirement (required verifier, rule) that was not met."""

    @property
    def reason_code(self) -> str:
        return self.code or (POLICY_SATISFIED if self.allowed else POLICY_DENIED)


@dataclass(frozen=True, slots=True)
class Verdict:
    subject: str
    digest: str
    media_type: str
    decision: Decision
    artifacts: Sequence[ArtifactResult]
    verified_at: str
    config_generation: str
    notes: tuple[str, ...] = ()
    complete: bool = True
    _encoded: bytes | None = field(default=None, init=False, repr=False, compare=False)
    _memo: dict[str, Any] = field(default_factory=dict, init=False, repr=False, compare=False)

    @property
    def allowed(self) -> bool:
        return self.decision.allowed

    def memo(self, name: str, build: Callable[[Verdict], T]) -> T:
        """``build(self)``, computed once per verdict and kept under ``name``: a verdict is immutable and a cached one
        is served many times, so what other modules derive from it (the decision log's fields) is derived once."""
        try:
            value: T = self._memo[name]
        except KeyError:
            value = self._memo[name] = build(self)
        return value

    def encoded(self) -> bytes:
        """:meth:`to_json` as compact UTF-8 JSON, encoded once (a cached verdict is served many times)."""
        if self._encoded is None:
            data = json.dumps(self.to_json(), separators=(",", ":")).encode()
            object.__setattr__(self, "_encoded", data)
            return data
        return self._encoded

    def to_record(self) -> dict[str, Any]:
        """:meth:`to_json` plus what it leaves out (the decision's code, verifiers and unmet requirements): what
        :meth:`from_record` needs to rebuild an equal verdict, e.g. one read back from a shared cache."""
        decision = self.decision
        return {
            "verdict": self.to_json(),
            "code": decision.code,
            "verifiers": list(decision.verifiers),
            "unmet": [list(pair) for pair in decision.unmet],
        }

    @classmethod
    def from_record(cls, record: object) -> Verdict:
        """The inverse of :meth:`to_record`; ``ValueError`` when ``record`` does not have its shape."""
        r = _mapping(record, "record")
        unmet: list[tuple[str, str]] = []
        for pair in _list(r, "unmet"):
            if not (isinstance(pair, list) and len(pair) == 2 and all(isinstance(x, str) for x in pair)):
                raise ValueError("unmet: expected [requirement, code] pairs")
            unmet.append((pair[0], pair[1]))
        verifiers = _list(r, "verifiers")
        if not all(isinstance(v, str) for v in verifiers):
            raise ValueError("verifiers: expected strings")
        return cls.from_json(r.get("verdict"), code=_text(r, "code"), verifiers=tuple(verifiers), unmet=tuple(unmet))

    @classmethod
    def from_json(
        cls,
        doc: object,
        *,
        code: str = "",
        verifiers: tuple[str, ...] = (),
        unmet: tuple[tuple[str, str], ...] = (),
    ) -> Verdict:
        """The inverse of :meth:`to_json` (which leaves out the decision's ``code``, ``verifiers`` and ``unmet``:
        pass them, or use :meth:`from_record`); ``ValueError`` when ``doc`` does not have its shape."""
        d = _mapping(doc, "verdict")
        if d.get("schemaVersion") != SCHEMA_VERSION:
            raise ValueError(f"schemaVersion: expected {SCHEMA_VERSION}")
        allowed = _flag(d, "allowed")
        if _flag(d, "succeeded") != allowed:
            raise ValueError("allowed and succeeded differ")
        notes = _list(d, "notes")
        if not all(isinstance(n, str) for n in notes):
            raise ValueError("notes: expected strings")
        decision = Decision(
            allowed=allowed,
            reason=_text(d, "reason"),
            details=_mapping(d.get("policy"), "policy"),
            code=code,
            verifiers=verifiers,
            unmet=unmet,
        )
        return cls(
            subject=_text(d, "subject"),
            digest=_text(d, "digest"),
            media_type=_text(d, "mediaType"),
            decision=decision,
            artifacts=tuple(ArtifactResult.from_json(a) for a in _list(d, "artifacts")),
            verified_at=_text(d, "verifiedAt"),
            config_generation=_text(d, "configGeneration"),
            notes=tuple(notes),
            complete=_flag(d, "complete"),
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "schemaVersion": SCHEMA_VERSION,
            "subject": self.subject,
            "digest": self.digest,
            "mediaType": self.media_type,
            "allowed": self.decision.allowed,
            "succeeded": self.decision.allowed,
            "reason": self.decision.reason,
            "policy": dict(self.decision.details),
            "artifacts": [a.to_json() for a in self.artifacts],
            "verifiedAt": self.verified_at,
            "configGeneration": self.config_generation,
            "complete": self.complete,
            "notes": list(self.notes),
        }


def _mapping(value: object, what: str) -> dict[str, Any]:
    if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
        raise ValueError(f"{what}: expected an object")
    return value


def _list(d: Mapping[str, Any], key: str) -> list[Any]:
    value = d.get(key)
    if not isinstance(value, list):
        raise ValueError(f"{key}: expected a list")
    return value


def _text(d: Mapping[str, Any], key: str) -> str:
    value = d.get(key)
    if not isinstance(value, str):
        raise ValueError(f"{key}: expected a string")
    return value


def _flag(d: Mapping[str, Any], key: str) -> bool:
    value = d.get(key)
    if not isinstance(value, bool):
        raise ValueError(f"{key}: expected true or false")
    return value


def iter_results(results: Sequence[ArtifactResult]) -> list[ArtifactResult]:
    """All results, nested ones included, depth first."""
    out: list[ArtifactResult] = []
    for r in results:
        out.append(r)
        out.extend(iter_results(r.nested))
    return out
