"""The ``rules`` policy: declarative rules per repository scope (any / all / every, minimum count, nesting).

An image is allowed iff at least one rule applies to its repository and every applicable rule is satisfied.
Only top-level results count (nested ones only through ``nested``); results carrying an error never count.

``match``: ``any`` — at least ``minCount`` artifacts counted across the listed verifiers; ``all`` — each listed
verifier has ``minCount`` counted artifacts; ``every`` — every artifact the listed verifiers judged counts (e.g.
every VEX document carries a valid signature), and there are at least ``minCount`` (which may be 0) of them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from provider import verdict
from provider.config import matches_any
from provider.confignode import Node
from provider.policies.base import PolicyEnforcer, PolicySpec, policy_types
from provider.verdict import ArtifactResult, Decision
from provider.verifiers.base import Subject

MATCH_MODES = ("any", "all", "every")
_MAX_LISTED = 3
_MAX_REASON = 160


@dataclass(frozen=True, slots=True)
class Rule:
    name: str
    scopes: tuple[str, ...]
    verifiers: tuple[str, ...]
    artifact_types: frozenset[str] = frozenset()
    match: str = "any"
    min_count: int = 1
    nested_verifiers: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class RulesParams:
    rules: tuple[Rule, ...]


def _short(digest: str) -> str:
    return digest[:19]


def _clip(text: str) -> str:
    return text if len(text) <= _MAX_REASON else text[: _MAX_REASON - 3] + "..."


def _listed(items: list[str]) -> str:
    more = f" (+{len(items) - _MAX_LISTED} more)" if len(items) > _MAX_LISTED else ""
    return "; ".join(items[:_MAX_LISTED]) + more


class RulesPolicy:
    def __init__(self, params: RulesParams) -> None:
        self.rules = params.rules

    def decide(self, subject: Subject, results: Sequence[ArtifactResult]) -> Decision:
        ref = subject.ref
        if not self.rules:
            return Decision(
                False,
                "policy has no rules: denied (an empty policy never allows)",
                {"type": "rules"},
                code=verdict.EMPTY_POLICY,
            )
        applicable = [r for r in self.rules if matches_any(r.scopes, ref.registry, ref.repository)]
        if not applicable:
            return Decision(
                False,
                f"no policy rule applies to {ref.name}: denied",
                {"type": "rules", "satisfied": {}, "unsatisfied": {}},
                code=verdict.NO_RULE_APPLIES,
            )
        if all(r.min_count == 0 for r in applicable):
            names = ", ".join(r.name for r in applicable)
            return Decision(
                False,
                f"the rules that apply to {ref.name} ({names}) require no evidence (minCount 0): denied",
                {"type": "rules", "satisfied": {}, "unsatisfied": {}},
                code=verdict.NO_EVIDENCE_REQUIRED,
            )
        satisfied: dict[str, list[str]] = {}
        unsatisfied: dict[str, str] = {}
        unmet: list[tuple[str, str]] = []
        verifiers: dict[str, None] = {}
        for rule in applicable:
            counted = _counted(rule, results)
            why = _unsatisfied_reason(rule, results, counted)
            if why is None:
                satisfied[rule.name] = sorted({d for digests in counted.values() for d in digests})
                verifiers.update(dict.fromkeys(v for v, digests in counted.items() if digests))
                verifiers.update(dict.fromkeys(rule.nested_verifiers))
            else:
                unsatisfied[rule.name] = why
                unmet.append((rule.name, _unmet_code(rule, results, counted)))
        details: dict[str, Any] = {"type": "rules", "satisfied": satisfied, "unsatisfied": unsatisfied}
        if unsatisfied:
            reason = "; ".join(f"rule {name}: {why}" for name, why in unsatisfied.items())
            return Decision(False, reason, details, code=unmet[0][1], verifiers=tuple(verifiers), unmet=tuple(unmet))
        listed = ", ".join(f"{name} ({', '.join(_short(d) for d in ds)})" for name, ds in satisfied.items())
        return Decision(
            True, f"satisfied rules: {listed}", details, code=verdict.POLICY_SATISFIED, verifiers=tuple(verifiers)
        )

    def required_signers(self, subject: Subject, verifier: str, artifact_type: str) -> tuple[frozenset[str], ...]:
        ref = subject.ref
        return tuple(
            frozenset(rule.nested_verifiers)
            for rule in self.rules
            if rule.nested_verifiers
            and verifier in rule.verifiers
            and (not rule.artifact_types or artifact_type in rule.artifact_types)
            and matches_any(rule.scopes, ref.registry, ref.repository)
        )


def _type_ok(rule: Rule, result: ArtifactResult) -> bool:
    return not rule.artifact_types or result.artifact_type in rule.artifact_types


def _nested_ok(rule: Rule, result: ArtifactResult) -> bool:
    if not rule.nested_verifiers:
        return True
    return any(n.succeeded and n.error is None and n.verifier in rule.nested_verifiers for n in result.nested)


def _counted(rule: Rule, results: Sequence[ArtifactResult]) -> dict[str, set[str]]:
    """Distinct digests that count for the rule, per listed verifier."""
    counted: dict[str, set[str]] = {v: set() for v in rule.verifiers}
    for r in results:
        if r.verifier in counted and r.succeeded and r.error is None and _type_ok(rule, r) and _nested_ok(rule, r):
            counted[r.verifier].add(r.digest)
    return counted


def _unsatisfied_reason(rule: Rule, results: Sequence[ArtifactResult], counted: dict[str, set[str]]) -> str | None:
    """``None`` when the rule is satisfied, else why not (naming each verifier that fell short)."""
    if rule.match == "all":
        short = [v for v in rule.verifiers if len(counted[v]) < rule.min_count]
        if not short:
            return None
        parts = [f"{v}: {len(counted[v])} of {rule.min_count} required ({_failures(rule, v, results)})" for v in short]
        return "; ".join(parts)
    total = {d for digests in counted.values() for d in digests}
    listed = " or ".join(rule.verifiers)
    if rule.match == "every":
        judged = {r.digest for r in results if r.verifier in rule.verifiers and _type_ok(rule, r)}
        if judged == total and len(total) >= rule.min_count:
            return None
        if judged != total:
            failures = "; ".join(f"{v}: {_failures(rule, v, results)}" for v in rule.verifiers)
            return f"{len(judged - total)} of {len(judged)} artifacts from {listed} do not count ({failures})"
    elif len(total) >= rule.min_count:
        return None
    failures = "; ".join(f"{v}: {_failures(rule, v, results)}" for v in rule.verifiers)
    return f"{len(total)} of {rule.min_count} verified artifacts from {listed} ({failures})"


def _unmet_code(rule: Rule, results: Sequence[ArtifactResult], counted: dict[str, set[str]]) -> str:
    """NO_EVIDENCE when the verifiers that fell short judged no artifact of the rule's types, EVIDENCE_ERROR
    when every such artifact could not be verified, else EVIDENCE_REJECTED."""
    short = [v for v in rule.verifiers if len(counted[v]) < rule.min_count] if rule.match == "all" else []
    names = set(short or rule.verifiers)
    judged = [r for r in results if r.verifier in names and _type_ok(rule, r)]
    if not judged:
        return verdict.NO_EVIDENCE
    if all(r.error is not None for r in judged):
        return verdict.EVIDENCE_ERROR
    return verdict.EVIDENCE_REJECTED


def _failures(rule: Rule, verifier: str, results: Sequence[ArtifactResult]) -> str:
    own = [r for r in results if r.verifier == verifier]
    if not own:
        return "no matching artifact found"
    typed = [r for r in own if _type_ok(rule, r)]
    if not typed:
        found = ", ".join(sorted({r.artifact_type or "(none)" for r in own}))
        return f"no artifact of type {', '.join(sorted(rule.artifact_types))} (found {found})"
    reasons: list[str] = []
    for r in typed:
        if r.error is not None:
            reasons.append(f"{_short(r.digest)}: {r.error}: {_clip(r.reason)}")
        elif not r.succeeded:
            reasons.append(f"{_short(r.digest)}: {_clip(r.reason)}")
        elif not _nested_ok(rule, r):
            nested = [n for n in r.nested if n.verifier in rule.nested_verifiers]
            why = _clip(nested[0].reason) if nested else "no nested artifact"
            names = " or ".join(rule.nested_verifiers)
            reasons.append(f"{_short(r.digest)}: not verified by {names} ({why})")
    counted = len(typed) - len(reasons)
    if counted:
        reasons.insert(0, f"{counted} verified")
    return _listed(reasons)


def _check_verifiers(node: Node, key: str, names: tuple[str, ...], verifier_names: frozenset[str]) -> None:
    path = node.child_path(key)
    if not node.has(key):
        node.problems.add(path, "required")
    elif not names:
        node.problems.add(path, "must name at least one verifier")
    for i, name in enumerate(names):
        if name not in verifier_names:
            node.problems.add(f"{path}[{i}]", f"no verifier named {name!r}")


def _parse_rule(node: Node, index: int, verifier_names: frozenset[str]) -> Rule:
    name = node.string("name", f"rules[{index}]")
    scopes = node.str_list("scopes", ("*",))
    if not scopes:
        node.error("must list at least one pattern (omit it to match every repository)", "scopes")
    verifiers = node.str_list("verifiers")
    _check_verifiers(node, "verifiers", verifiers, verifier_names)
    nested_verifiers: tuple[str, ...] = ()
    if node.has("nested"):
        nested = node.node("nested")
        nested_verifiers = nested.str_list("verifiers")
        _check_verifiers(nested, "verifiers", nested_verifiers, verifier_names)
        nested.finish()
    min_count = node.integer("min_count", 1, minimum=0)
    rule = Rule(
        name=name or f"rules[{index}]",
        scopes=scopes,
        verifiers=tuple(dict.fromkeys(verifiers)),
        artifact_types=frozenset(node.str_list("artifact_types")),
        match=node.string("match", "any", choices=MATCH_MODES),
        min_count=min_count if isinstance(min_count, int) else 1,
        nested_verifiers=tuple(dict.fromkeys(nested_verifiers)),
    )
    if rule.min_count == 0 and rule.match != "every":
        node.error(
            "0 is allowed only with match: every (a rule that asks for nothing would allow anything)", "min_count"
        )
    node.finish()
    return rule


@policy_types.register("rules")
class RulesPlugin:
    def parse_params(self, node: Node, verifier_names: frozenset[str]) -> RulesParams:
        rules: list[Rule] = []
        seen: set[str] = set()
        for i, item in enumerate(node.nodes("rules")):
            rule = _parse_rule(item, i, verifier_names)
            if rule.name in seen:
                item.error(f"duplicate rule name {rule.name!r}", "name")
            seen.add(rule.name)
            rules.append(rule)
        return RulesParams(rules=tuple(rules))

    def create(self, spec: PolicySpec) -> PolicyEnforcer:
        return RulesPolicy(spec.params)
