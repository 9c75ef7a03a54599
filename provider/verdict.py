"""The verdict: one versioned JSON document for the server, the CLI and Rego (see docs/verdict.md)."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

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

    @property
    def allowed(self) -> bool:
        return self.decision.allowed

    def encoded(self) -> bytes:
        """:meth:`to_json` as compact UTF-8 JSON, encoded once (a cached verdict is served many times)."""
        if self._encoded is None:
            data = json.dumps(self.to_json(), separators=(",", ":")).encode()
            object.__setattr__(self, "_encoded", data)
            return data
        return self._encoded

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


def iter_results(results: Sequence[ArtifactResult]) -> list[ArtifactResult]:
    """All results, nested ones included, depth first."""
    out: list[ArtifactResult] = []
    for r in results:
        out.append(r)
        out.extend(iter_results(r.nested))
    return out
