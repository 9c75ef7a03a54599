"""``referee import binauthz``: a Binary Authorization policy and its attestors → Referee + Gatekeeper.

Output:

* a Referee configuration: one ``attestor`` per Binary Authorization attestor (its note and its PGP / PKIX keys,
  inline), a ``grafeas`` store over the attestation project(s) and the attestors' notes, and a policy mirroring
  the default admission rule (used by ``referee verify`` and ``RefereeVerifiedImages``);
* Gatekeeper ``RefereeRequiredEvidence`` constraints, one file per target: ``default.yaml`` (the default rule)
  and ``cluster-<location.cluster>.yaml`` per cluster rule, each also carrying the namespace rules. A rule
  ``REQUIRE_ATTESTATION`` becomes ``requiredVerifiers`` = its attestors (all of them must attest, as in Binary
  Authorization) with ``requireAllowed: false`` (the constraint reads each attestor's result, so one Referee
  configuration serves every cluster); ``ALWAYS_DENY`` requires a verifier that does not exist;
  ``ALWAYS_ALLOW`` generates no constraint. ``DRYRUN_AUDIT_LOG_ONLY`` → ``enforcementAction: dryrun``; the
  allowlist → ``exemptImages``;
* a report of everything that could not be expressed exactly. Nothing is dropped silently.
"""

from __future__ import annotations

import copy
import hashlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from provider.attestations import NOTE_NAME
from provider.verifiers.pkix import ALGORITHMS

GRAFEAS_URL = "https://containeranalysis.googleapis.com"
TOKEN_FILE = "/var/run/secrets/referee/grafeas/token"
DEFAULT_ALLOW = ("gcr.io", "*.gcr.io", "*.pkg.dev")
ALWAYS_DENY_VERIFIER = "binauthz:ALWAYS_DENY"
ALWAYS_EXCLUDED = ("gatekeeper-system", "referee-system")
KINDS = [
    {"apiGroups": [""], "kinds": ["Pod", "ReplicationController"]},
    {"apiGroups": ["apps"], "kinds": ["Deployment", "StatefulSet", "DaemonSet", "ReplicaSet"]},
    {"apiGroups": ["batch"], "kinds": ["Job", "CronJob"]},
]
POLICY_KEYS = {
    "name",
    "description",
    "updateTime",
    "etag",
    "defaultAdmissionRule",
    "clusterAdmissionRules",
    "kubernetesNamespaceAdmissionRules",
    "kubernetesServiceAccountAdmissionRules",
    "istioServiceIdentityAdmissionRules",
    "admissionWhitelistPatterns",
    "globalPolicyEvaluationMode",
}
RULE_KEYS = {"evaluationMode", "requireAttestationsBy", "enforcementMode"}


class ConversionError(ValueError):
    """The input cannot be converted at all (reported on stderr, exit 2)."""


@dataclass
class ImportOptions:
    attestation_projects: tuple[str, ...] = ()
    grafeas_url: str = GRAFEAS_URL
    token_file: str = TOKEN_FILE
    allow: tuple[str, ...] = DEFAULT_ALLOW


@dataclass
class ImportResult:
    """``constraints`` maps a file name to ``(comment, constraint)`` pairs (the comment names the source rule)."""

    config: dict[str, Any]
    constraints: dict[str, list[tuple[str, dict[str, Any]]]]
    report: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class _Rule:
    where: str
    mode: str
    attestors: tuple[str, ...]
    dryrun: bool


def split_documents(documents: Sequence[Any]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Find the policy (the document with ``defaultAdmissionRule``) and the attestors among YAML documents
    (lists are flattened; ``gcloud ... --format=yaml`` and ``--format=json`` output both work)."""
    policies: list[dict[str, Any]] = []
    attestors: list[dict[str, Any]] = []
    flat: list[Any] = []
    for doc in documents:
        flat.extend(doc if isinstance(doc, list) else [doc])
    for doc in flat:
        if doc is None:
            continue
        if not isinstance(doc, dict):
            raise ConversionError(f"expected a policy or attestor object, got {type(doc).__name__}")
        if "defaultAdmissionRule" in doc:
            policies.append(doc)
        elif "userOwnedGrafeasNote" in doc or "userOwnedDrydockNote" in doc:
            attestors.append(doc)
        else:
            raise ConversionError(f"document {doc.get('name', '(unnamed)')!r} is neither a policy nor an attestor")
    if len(policies) != 1:
        raise ConversionError(f"expected exactly one policy (with defaultAdmissionRule), found {len(policies)}")
    return policies[0], attestors


class _Converter:
    def __init__(self, policy: Mapping[str, Any], attestors: Sequence[Mapping[str, Any]], options: ImportOptions):
        self.policy = policy
        self.options = options
        self.report: list[str] = []
        self.attestors = {str(a.get("name", "")): a for a in attestors}
        self.names: dict[str, str] = {}

    # -- rules -------------------------------------------------------------------------------------------------
    def rule(self, where: str, raw: object) -> _Rule:
        if not isinstance(raw, dict):
            raise ConversionError(f"{where}: expected an admission rule object")
        for key in sorted(set(raw) - RULE_KEYS):
            self.report.append(f"{where}.{key}: not understood, ignored")
        mode = raw.get("evaluationMode", "EVALUATION_MODE_UNSPECIFIED")
        enforcement = raw.get("enforcementMode", "ENFORCED_BLOCK_AND_AUDIT_LOG")
        if enforcement not in ("ENFORCED_BLOCK_AND_AUDIT_LOG", "DRYRUN_AUDIT_LOG_ONLY"):
            self.report.append(f"{where}.enforcementMode {enforcement!r} is unknown: enforced (deny)")
        required = raw.get("requireAttestationsBy") or []
        if not isinstance(required, list) or not all(isinstance(a, str) for a in required):
            raise ConversionError(f"{where}.requireAttestationsBy must be a list of attestor names")
        if mode == "REQUIRE_ATTESTATION" and not required:
            raise ConversionError(f"{where}: REQUIRE_ATTESTATION without requireAttestationsBy")
        if mode not in ("REQUIRE_ATTESTATION", "ALWAYS_ALLOW", "ALWAYS_DENY"):
            self.report.append(f"{where}.evaluationMode {mode!r} has no Referee equivalent: converted to ALWAYS_DENY")
            mode = "ALWAYS_DENY"
        if mode != "REQUIRE_ATTESTATION" and required:
            self.report.append(f"{where}: requireAttestationsBy is ignored with {mode}, as Binary Authorization does")
            required = []
        names = tuple(self.attestor_name(a, where) for a in required)
        return _Rule(where, mode, names, enforcement == "DRYRUN_AUDIT_LOG_ONLY")

    def attestor_name(self, resource: str, where: str) -> str:
        if resource not in self.attestors:
            raise ConversionError(f"{where}: attestor {resource} was not given (pass its description with --attestor)")
        if resource not in self.names:
            short = resource.rsplit("/", 1)[-1]
            taken = set(self.names.values())
            if short in taken:
                short = resource.replace("projects/", "").replace("/attestors/", "-")
            self.names[resource] = short
        return self.names[resource]

    # -- attestors ---------------------------------------------------------------------------------------------
    def attestor_entry(self, resource: str) -> dict[str, Any]:
        raw = self.attestors[resource]
        note_block = raw.get("userOwnedGrafeasNote") or raw.get("userOwnedDrydockNote") or {}
        note = note_block.get("noteReference")
        if not isinstance(note, str) or not NOTE_NAME.match(note):
            raise ConversionError(f"attestor {resource}: noteReference {note!r} is not projects/<p>/notes/<n>")
        pgp: list[str] = []
        pkix: list[dict[str, str]] = []
        for i, key in enumerate(note_block.get("publicKeys") or []):
            where = f"attestor {resource} publicKeys[{i}]"
            if not isinstance(key, dict):
                raise ConversionError(f"{where}: expected an object")
            if isinstance(key.get("asciiArmoredPgpPublicKey"), str):
                pgp.append(key["asciiArmoredPgpPublicKey"])
            elif isinstance(key.get("pkixPublicKey"), dict):
                spec = key["pkixPublicKey"]
                algorithm = spec.get("signatureAlgorithm")
                if algorithm not in ALGORITHMS:
                    self.report.append(f"{where}: signature algorithm {algorithm!r} is not supported; key left out")
                    continue
                pkix_key = {"key": str(spec.get("publicKeyPem", "")), "signatureAlgorithm": str(algorithm)}
                if key.get("id"):
                    pkix_key = {"id": str(key["id"]), **pkix_key}
                pkix.append(pkix_key)
            else:
                self.report.append(f"{where}: neither a PGP nor a PKIX key; left out")
        if not pgp and not pkix:
            raise ConversionError(f"attestor {resource} has no key Referee can use")
        entry: dict[str, Any] = {"name": self.names[resource], "note": note}
        if pgp:
            entry["pgpKeys"] = pgp
        if pkix:
            entry["pkixKeys"] = pkix
        return entry

    # -- exemptions ----------------------------------------------------------------------------------------------
    def exempt_images(self) -> list[str]:
        out: list[str] = []
        for i, item in enumerate(self.policy.get("admissionWhitelistPatterns") or []):
            pattern = item.get("namePattern") if isinstance(item, dict) else None
            where = f"admissionWhitelistPatterns[{i}]"
            if not isinstance(pattern, str) or not pattern:
                self.report.append(f"{where}: no namePattern; ignored")
            elif pattern.endswith("**"):
                out.append(pattern[:-2] + "*")
            elif pattern.endswith("*"):
                self.report.append(
                    f"{where}: {pattern!r} matches one path segment only; Gatekeeper's exemptImages match any "
                    f"suffix, so it is NOT exempted (add {pattern[:-1]}* to exemptImages by hand to accept the wider "
                    "match)"
                )
            elif "*" in pattern:
                self.report.append(f"{where}: {pattern!r} has a wildcard that is not trailing; not exempted")
            else:
                out.append(pattern)
        return out

    # -- constraints -----------------------------------------------------------------------------------------------
    def constraint(
        self, name: str, rule: _Rule, exempt: list[str], excluded: list[str], namespaces: list[str] | None = None
    ) -> dict[str, Any] | None:
        if rule.mode == "ALWAYS_ALLOW":
            return None
        parameters: dict[str, Any] = {
            "requiredVerifiers": list(rule.attestors) if rule.mode == "REQUIRE_ATTESTATION" else [ALWAYS_DENY_VERIFIER],
            "requireAllowed": False,
        }
        if exempt:
            parameters["exemptImages"] = exempt
        match: dict[str, Any] = {"kinds": copy.deepcopy(KINDS)}
        if namespaces is not None:
            match["namespaces"] = namespaces
        else:
            match["excludedNamespaces"] = excluded
        return {
            "apiVersion": "constraints.gatekeeper.sh/v1beta1",
            "kind": "RefereeRequiredEvidence",
            "metadata": {"name": _name(name)},
            "spec": {
                "enforcementAction": "dryrun" if rule.dryrun else "deny",
                "match": match,
                "parameters": parameters,
            },
        }

    def convert(self) -> ImportResult:
        for key in sorted(set(self.policy) - POLICY_KEYS):
            self.report.append(f"policy.{key}: not understood, ignored")
        default = self.rule("defaultAdmissionRule", self.policy["defaultAdmissionRule"])
        clusters = {
            str(k): self.rule(f"clusterAdmissionRules[{k}]", v)
            for k, v in (self.policy.get("clusterAdmissionRules") or {}).items()
        }
        namespaces = {
            str(k): self.rule(f"kubernetesNamespaceAdmissionRules[{k}]", v)
            for k, v in (self.policy.get("kubernetesNamespaceAdmissionRules") or {}).items()
        }
        for key in ("kubernetesServiceAccountAdmissionRules", "istioServiceIdentityAdmissionRules"):
            for target in self.policy.get(key) or {}:
                self.report.append(
                    f"{key}[{target}]: Gatekeeper constraints cannot select by service account or Istio identity; "
                    "NOT converted (the namespace, cluster or default rule applies to those workloads instead)"
                )
        excluded = list(ALWAYS_EXCLUDED)
        mode = self.policy.get("globalPolicyEvaluationMode", "GLOBAL_POLICY_EVALUATION_MODE_UNSPECIFIED")
        if mode == "ENABLE":
            excluded.insert(0, "kube-system")
            self.report.append(
                "globalPolicyEvaluationMode ENABLE: Google's list of GKE system images has no Referee equivalent; "
                "kube-system is excluded from the constraints instead (approximation)"
            )
        excluded += sorted(namespaces)
        exempt = self.exempt_images()
        constraints: dict[str, list[tuple[str, dict[str, Any]]]] = {}
        targets = {"default": ("binauthz-default", default)}
        for spec, rule in clusters.items():
            targets[f"cluster-{_dns(spec)}"] = (f"binauthz-cluster-{_dns(spec)}", rule)
        for file, (name, rule) in targets.items():
            docs = [(rule, self.constraint(name, rule, exempt, excluded))]
            docs += [(r, self.constraint(f"{name}-ns-{_dns(ns)}", r, exempt, [], [ns])) for ns, r in namespaces.items()]
            constraints[f"{file}.yaml"] = [(f"{r.where}: {r.mode}", d) for r, d in docs if d is not None]
            if not constraints[f"{file}.yaml"]:
                self.report.append(f"{file}.yaml: every rule is ALWAYS_ALLOW; no constraint needed there")
        return ImportResult(self.referee_config(default), constraints, self.report)

    def referee_config(self, default: _Rule) -> dict[str, Any]:
        attestors = [self.attestor_entry(resource) for resource in self.names]
        for resource in sorted(set(self.attestors) - set(self.names)):
            self.report.append(f"attestor {resource}: no rule requires it; not converted")
        projects = list(self.options.attestation_projects)
        if not projects:
            match = re.match(r"^projects/([^/]+)/policy$", str(self.policy.get("name", "")))
            if match is None:
                raise ConversionError("the policy has no name projects/<project>/policy: pass --attestation-project")
            projects = [match.group(1)]
        config: dict[str, Any] = {
            "apiVersion": "referee.dev/v1alpha1",
            "registries": {"allow": list(self.options.allow)},
        }
        if attestors:
            config["stores"] = [
                {
                    "name": "grafeas",
                    "type": "grafeas",
                    "url": self.options.grafeas_url,
                    "projects": projects,
                    "notes": sorted({a["note"] for a in attestors}),
                    "tokenFile": self.options.token_file,
                }
            ]
            config["attestors"] = attestors
            self.report.append(
                f"stores[0].tokenFile: provide a Grafeas access token at {self.options.token_file} (Referee does not "
                "use Workload Identity or the metadata server yet)"
            )
        if default.mode == "REQUIRE_ATTESTATION":
            rule = {"name": "defaultAdmissionRule", "verifiers": list(default.attestors), "match": "all"}
            config["policy"] = {"type": "rules", "rules": [rule]}
        else:
            config["policy"] = {"type": "deny-all"}
            self.report.append(
                f"policy: the default rule is {default.mode}; Referee's own verdict denies every image (deny-all). "
                "The generated constraints do not depend on it (requireAllowed: false)"
            )
        self.report.append(
            f"registries.allow: {', '.join(self.options.allow)}; add every registry your images come from (--allow)"
        )
        return config


def _name(text: str) -> str:
    """A constraint name (at most 63 characters; longer ones keep a hash of the whole)."""
    if len(text) <= 63:
        return text
    return text[:54].rstrip("-.") + "-" + hashlib.sha256(text.encode()).hexdigest()[:8]


def _dns(text: str) -> str:
    return re.sub(r"[^a-z0-9.-]+", "-", text.lower()).strip("-.")[:200] or "x"


def convert(policy: Mapping[str, Any], attestors: Sequence[Mapping[str, Any]], options: ImportOptions) -> ImportResult:
    """Convert; raise :class:`ConversionError` when the input cannot be converted at all."""
    return _Converter(policy, attestors, options).convert()
