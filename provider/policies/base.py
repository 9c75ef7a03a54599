"""The ``PolicyEnforcer`` seam: turns artifact results into an allow/deny decision."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from provider.confignode import Node
from provider.plugins import PluginRegistry
from provider.verdict import ArtifactResult, Decision
from provider.verifiers.base import Subject


class PolicyEnforcer(Protocol):
    """Pure and synchronous; must deny when it has nothing to go on."""

    def decide(self, subject: Subject, results: Sequence[ArtifactResult]) -> Decision: ...


@dataclass(frozen=True, slots=True)
class PolicySpec:
    type: str
    params: Any


class PolicyPlugin(Protocol):
    def parse_params(self, node: Node, verifier_names: frozenset[str]) -> Any: ...

    def create(self, spec: PolicySpec) -> PolicyEnforcer: ...


policy_types: PluginRegistry[PolicyPlugin] = PluginRegistry("policy")
