"""What ``referee attach`` did, for the CLI to print."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from provider.attach.tagindex import IndexUpdate

HOW = {
    "referrers-api": "the registry lists it through its referrers API",
    "tag-schema": "referrers tag-schema index",
    "layout": "OCI layout index.json",
}


@dataclass(frozen=True, slots=True)
class AttachResult:
    subject: str
    digest: str
    artifact_type: str
    discovery: str
    index: IndexUpdate | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "subject": self.subject,
            "digest": self.digest,
            "artifactType": self.artifact_type,
            "discovery": self.discovery,
        }
        if self.index is not None:
            out["index"] = {
                "tag": self.index.tag,
                "entries": self.index.entries,
                "written": self.index.written,
                "attempts": self.index.attempts,
                "droppedInternalEntries": list(self.index.dropped),
                "prunedMissingEntries": list(self.index.pruned),
            }
        return out

    def lines(self) -> list[str]:
        out = [f"attached {self.digest} ({self.artifact_type or 'no artifactType'}) to {self.subject}"]
        if self.index is None:
            out.append(f"  discoverable: {HOW[self.discovery]}")
        else:
            state = "updated" if self.index.written else "already listed it"
            out.append(f"  discoverable: {HOW[self.discovery]} {self.index.tag} {state} ({self.index.entries} entries)")
            if self.index.pruned:
                out.append(f"  removed {len(self.index.pruned)} entries whose manifests the registry no longer holds")
            if self.index.dropped:
                out.append(f"  dropped {len(self.index.dropped)} entries claiming Referee's cosign-legacy type")
        return out
