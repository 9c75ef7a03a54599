"""The verdict: one versioned JSON document for the server, the CLI and Rego (see docs/verdict.md)."""

from __future__ import annotations

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
        return out


@dataclass(frozen=True, slots=True)
class Decision:
    """What a policy decided, and why."""

    allowed: bool
    reason: str
    details: Mapping[str, Any] = field(default_factory=dict)


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

    @property
    def allowed(self) -> bool:
        return self.decision.allowed

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
            "notes": list(self.notes),
        }


def iter_results(results: Sequence[ArtifactResult]) -> list[ArtifactResult]:
    """All results, nested ones included, depth first."""
    out: list[ArtifactResult] = []
    for r in results:
        out.append(r)
        out.extend(iter_results(r.nested))
    return out
