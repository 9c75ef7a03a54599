"""The ``required-verifiers`` policy: allowed when every listed verifier succeeded on at least one artifact."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from provider import verdict
from provider.confignode import Node
from provider.policies.base import PolicyEnforcer, PolicySpec, policy_types
from provider.verdict import ArtifactResult, Decision
from provider.verifiers.base import Subject


@dataclass(frozen=True, slots=True)
class RequiredParams:
    required: tuple[str, ...]


class RequiredVerifiersPolicy:
    def __init__(self, params: RequiredParams) -> None:
        self.required = params.required

    def decide(self, subject: Subject, results: Sequence[ArtifactResult]) -> Decision:
        if not self.required:
            return Decision(
                False, "policy requires no verifier: denied (an empty policy never allows)", code=verdict.EMPTY_POLICY
            )
        satisfied: dict[str, str] = {}
        missing: list[str] = []
        unmet: list[tuple[str, str]] = []
        for name in self.required:
            own = [r for r in results if r.verifier == name]
            ok = next((r for r in own if r.succeeded), None)
            if ok is not None:
                satisfied[name] = ok.digest
                continue
            if not own:
                missing.append(f"{name}: no matching artifact found")
                unmet.append((name, verdict.NO_EVIDENCE))
            else:
                reasons = "; ".join(f"{r.digest[:19]}: {r.reason}" for r in own[:3])
                more = f" (+{len(own) - 3} more)" if len(own) > 3 else ""
                missing.append(f"{name}: no artifact verified ({reasons}{more})")
                errored = all(r.error is not None for r in own)
                unmet.append((name, verdict.EVIDENCE_ERROR if errored else verdict.EVIDENCE_REJECTED))
        details = {"type": "required-verifiers", "required": list(self.required), "satisfied": satisfied}
        verifiers = tuple(satisfied)
        if missing:
            return Decision(
                False,
                "; ".join(missing),
                {**details, "unsatisfied": missing},
                code=unmet[0][1],
                verifiers=verifiers,
                unmet=tuple(unmet),
            )
        names = ", ".join(f"{n} ({d[:19]})" for n, d in satisfied.items())
        return Decision(True, f"verified by {names}", details, code=verdict.POLICY_SATISFIED, verifiers=verifiers)

    def required_signers(self, subject: Subject, verifier: str, artifact_type: str) -> tuple[frozenset[str], ...]:
        return ()


@policy_types.register("required-verifiers")
class RequiredVerifiersPlugin:
    def parse_params(self, node: Node, verifier_names: frozenset[str]) -> RequiredParams:
        required = node.str_list("required")
        for i, name in enumerate(required):
            if name not in verifier_names:
                node.problems.add(f"{node.child_path('required')}[{i}]", f"no verifier named {name!r}")
        return RequiredParams(required=required)

    def create(self, spec: PolicySpec) -> PolicyEnforcer:
        return RequiredVerifiersPolicy(spec.params)


class DenyAllPolicy:
    """What runs when no policy is configured: fail closed."""

    def decide(self, subject: Subject, results: Sequence[ArtifactResult]) -> Decision:
        return Decision(
            False, "no policy configured: every image is denied", {"type": "deny-all"}, code=verdict.NO_POLICY
        )

    def required_signers(self, subject: Subject, verifier: str, artifact_type: str) -> tuple[frozenset[str], ...]:
        return ()


@policy_types.register("deny-all")
class DenyAllPlugin:
    def parse_params(self, node: Node, verifier_names: frozenset[str]) -> None:
        return None

    def create(self, spec: PolicySpec) -> PolicyEnforcer:
        return DenyAllPolicy()
