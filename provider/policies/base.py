"""The ``PolicyEnforcer`` seam: turns artifact results into an allow/deny decision."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from provider import specs
from provider.confignode import Node
from provider.plugins import PluginRegistry
from provider.specs import PolicySpec as PolicySpec
from provider.specs import Signature as Signature
from provider.verdict import ArtifactResult, Decision
from provider.verifiers.base import Subject


class PolicyEnforcer(Protocol):
    """Pure and synchronous; must deny when it has nothing to go on."""

    def decide(self, subject: Subject, results: Sequence[ArtifactResult]) -> Decision: ...

    def required_signers(self, subject: Subject, verifier: str, artifact_type: str) -> tuple[frozenset[str], ...]:
        """The signatures the policy requires on artifacts of ``artifact_type`` judged by ``verifier``: one set of
        nested verifier names per applicable requirement, any one of which must have verified the artifact. Empty
        when the policy requires no signature on them."""
        ...


def signed_under(policy: PolicyEnforcer, subject: Subject, result: ArtifactResult) -> Signature:
    """Whether ``result``'s artifact carries every signature the policy requires on it."""
    groups = policy.required_signers(subject, result.verifier, result.artifact_type)
    if not groups:
        return Signature.NOT_REQUIRED
    if all(any(n.verifier in g and n.succeeded and n.error is None for n in result.nested) for g in groups):
        return Signature.PRESENT
    signers = frozenset().union(*groups)
    if any(n.error is not None and n.verifier in signers for n in result.nested):
        return Signature.UNKNOWN
    return Signature.MISSING


class PolicyPlugin(Protocol):
    def parse_params(self, node: Node, verifier_names: frozenset[str]) -> Any: ...

    def create(self, spec: PolicySpec) -> PolicyEnforcer: ...


policy_types: PluginRegistry[PolicyPlugin] = specs.policy_types
