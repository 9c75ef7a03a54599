"""The Notary Project trust policy document, version 1.0 (``trust-store-trust-policy.md``).

Parsed through :class:`provider.confignode.Node`, so every rule notation-go applies when it loads a policy
(``Document.Validate``) is reported as a configuration problem with its path, and a policy that would fail
every verification never goes live.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from provider.confignode import Node
from provider.verifiers.notation.envelope import AUTHENTIC_TIMESTAMP, AUTHENTICITY, EXPIRY, INTEGRITY, REVOCATION

ENFORCE, LOG, SKIP = "enforce", "log", "skip"
STORE_TYPES = ("ca", "signingAuthority", "tsa")
VERIFY_TIMESTAMP = ("always", "afterCertExpiry")
_BASE_LEVELS: dict[str, dict[str, str]] = {
    "strict": dict.fromkeys((INTEGRITY, AUTHENTICITY, AUTHENTIC_TIMESTAMP, EXPIRY, REVOCATION), ENFORCE),
    "permissive": {INTEGRITY: ENFORCE, AUTHENTICITY: ENFORCE, AUTHENTIC_TIMESTAMP: LOG, EXPIRY: LOG, REVOCATION: LOG},
    "audit": {INTEGRITY: ENFORCE, AUTHENTICITY: LOG, AUTHENTIC_TIMESTAMP: LOG, EXPIRY: LOG, REVOCATION: LOG},
    "skip": dict.fromkeys((INTEGRITY, AUTHENTICITY, AUTHENTIC_TIMESTAMP, EXPIRY, REVOCATION), SKIP),
}
_OVERRIDABLE: dict[str, tuple[str, ...]] = {
    AUTHENTICITY: (ENFORCE, LOG),
    AUTHENTIC_TIMESTAMP: (ENFORCE, LOG),
    EXPIRY: (ENFORCE, LOG),
    REVOCATION: (ENFORCE, LOG, SKIP),
}
_STORE_NAME = re.compile(r"^[a-zA-Z0-9_.-]+$")
_DOMAIN = re.compile(
    r"^(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])(?:(?:\.(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9]))+)?"
    r"(?::[0-9]+)?$"
)
_REPOSITORY = re.compile(r"^[a-z0-9]+(?:(?:[._]|__|-*)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-*)[a-z0-9]+)*)*$")
_ATTRIBUTE_TYPE = re.compile(r"^(?:[A-Za-z][A-Za-z0-9-]*|[0-9]+(?:\.[0-9]+)*)$")
_ALIASES = {"S": "ST"}
_HEX = frozenset("0123456789abcdefABCDEF")
X509_SUBJECT = "x509.subject"
WILDCARD = "*"


@dataclass(frozen=True, slots=True)
class Level:
    """A verification level after overrides: the action (enforce/log/skip) for each check."""

    name: str
    actions: Mapping[str, str]
    overridden: bool = False

    def action(self, check: str) -> str:
        return self.actions[check]


@dataclass(frozen=True, slots=True)
class Identity:
    raw: str
    attributes: Mapping[str, str]

    def matches(self, subject: Mapping[str, str]) -> bool:
        return all(subject.get(k) == v for k, v in self.attributes.items())


@dataclass(frozen=True, slots=True)
class TrustPolicy:
    name: str
    registry_scopes: tuple[str, ...]
    level: Level
    verify_timestamp: str
    trust_stores: tuple[tuple[str, str], ...]
    any_identity: bool
    identities: tuple[Identity, ...]

    def stores(self, store_type: str) -> list[str]:
        return [name for kind, name in self.trust_stores if kind == store_type]


@dataclass(frozen=True, slots=True)
class TrustPolicyDocument:
    policies: tuple[TrustPolicy, ...]

    def select(self, repository: str) -> TrustPolicy | None:
        """Exact ``registry/repository`` match first, then the global ``*`` policy, else none."""
        exact = next((p for p in self.policies if repository in p.registry_scopes), None)
        if exact is not None:
            return exact
        return next((p for p in self.policies if WILDCARD in p.registry_scopes), None)


def parse_dn(text: str) -> dict[str, str]:
    """An RFC 4514 distinguished name as notation-go reads it (single-valued RDNs, C/ST/O required)."""
    rdns: list[list[tuple[bytes, bool]]] = [[]]
    i = 0
    while i < len(text):
        char = text[i]
        if char == "\\":
            pair = text[i + 1 : i + 3]
            if len(pair) == 2 and all(c in _HEX for c in pair):
                rdns[-1].append((bytes([int(pair, 16)]), True))
                i += 3
                continue
            if i + 1 >= len(text):
                raise ValueError(f"distinguished name {text!r} ends with an escape character")
            rdns[-1].append((text[i + 1].encode(), True))
            i += 2
            continue
        if char in ",;":
            rdns.append([])
        elif char == "+":
            raise ValueError(f"distinguished name {text!r} has a multi-valued RDN, which is not supported")
        else:
            rdns[-1].append((char.encode(), False))
        i += 1
    out: dict[str, str] = {}
    for tokens in rdns:
        split = next((n for n, (t, esc) in enumerate(tokens) if t == b"=" and not esc), None)
        if split is None:
            raise ValueError(f"distinguished name {text!r} has an RDN without '='")
        attr_type = b"".join(t for t, _ in tokens[:split]).decode().strip()
        if not _ATTRIBUTE_TYPE.match(attr_type):
            raise ValueError(f"distinguished name {text!r} has an invalid attribute type {attr_type!r}")
        attr_type = _ALIASES.get(attr_type, attr_type)
        if any(t == b"=" and not esc for t, esc in tokens[split + 1 :]):
            raise ValueError(f"distinguished name {text!r} has an unescaped '=' in a value")
        value = _dn_value(tokens[split + 1 :], text)
        if attr_type in out:
            raise ValueError(f"distinguished name {text!r} repeats the attribute {attr_type}")
        out[attr_type] = value
    missing = [k for k in ("C", "ST", "O") if not out.get(k)]
    if missing:
        raise ValueError(f"distinguished name {text!r} must contain C, ST and O; missing {', '.join(missing)}")
    return out


def _dn_value(tokens: list[tuple[bytes, bool]], text: str) -> str:
    while tokens and tokens[0] == (b" ", False):
        tokens = tokens[1:]
    while tokens and tokens[-1] == (b" ", False):
        tokens = tokens[:-1]
    if tokens and tokens[0] == (b"#", False):
        return _hex_string(b"".join(t for t, _ in tokens[1:]).decode(), text)
    try:
        return b"".join(t for t, _ in tokens).decode()
    except UnicodeDecodeError:
        raise ValueError(f"distinguished name {text!r} has escapes that are not UTF-8") from None


def _hex_string(hex_text: str, text: str) -> str:
    """``#<hex>``: the BER encoding of a string value."""
    try:
        data = bytes.fromhex(hex_text)
    except ValueError:
        raise ValueError(f"distinguished name {text!r} has an invalid #hex value") from None
    if len(data) < 2 or data[1] >= 0x80 or data[1] != len(data) - 2:
        raise ValueError(f"distinguished name {text!r} has an invalid #hex value")
    return data[2:].decode("utf-8", "replace")


def _level(node: Node, policy: str) -> tuple[Level | None, str]:
    level_name = node.string("level", None, choices=tuple(_BASE_LEVELS))
    verify_timestamp = node.string("verify_timestamp", "always", choices=VERIFY_TIMESTAMP)
    if level_name is None:
        if not node.has("level"):
            node.error(f"trust policy {policy!r} needs a verification level", "level")
        node.ignore_rest()
        node.finish()
        return None, verify_timestamp
    actions = dict(_BASE_LEVELS[level_name])
    overridden = False
    if node.has("override"):
        override = node.node("override")
        if level_name == "skip":
            node.error("the skip level cannot be customised", "override")
            override.ignore_rest()
        if override.has(INTEGRITY):
            override.error("integrity cannot be overridden", INTEGRITY)
            override.raw(INTEGRITY)
        for check, allowed in _OVERRIDABLE.items():
            value = override.string(check, None, choices=allowed)
            if value is not None and level_name != "skip":
                actions[check] = value
                overridden = True
        override.finish()
    node.finish()
    return Level(level_name, actions, overridden), verify_timestamp


def _identities(node: Node, policy: str) -> tuple[bool, tuple[Identity, ...], bool]:
    """``(any identity, identities, listed)``; ``listed`` is whether any identity was given at all, valid or not,
    so that an invalid one is reported once, as itself, and not again as a missing identity."""
    listed = bool(node.raw("trusted_identities"))
    values = node.str_list("trusted_identities")
    path = node.child_path("trustedIdentities")
    if WILDCARD in values:
        if len(values) > 1:
            node.problems.add(path, f"trust policy {policy!r}: '*' cannot be combined with other identities")
        return True, (), listed
    identities: list[Identity] = []
    for i, value in enumerate(values):
        prefix, sep, dn = value.partition(":")
        if not sep or prefix != X509_SUBJECT:
            node.problems.add(f"{path}[{i}]", f"expected '*' or 'x509.subject: <DN>', got {value!r}")
            continue
        if not dn.strip():
            node.problems.add(f"{path}[{i}]", "x509.subject has no distinguished name")
            continue
        try:
            identities.append(Identity(value, parse_dn(dn)))
        except ValueError as exc:
            node.problems.add(f"{path}[{i}]", str(exc))
    for a in identities:
        for b in identities:
            if a is not b and Identity(a.raw, a.attributes).matches(b.attributes):
                node.problems.add(path, f"trust policy {policy!r}: identities {a.raw!r} and {b.raw!r} overlap")
                return False, tuple(identities), listed
    return False, tuple(identities), listed


def _trust_stores(node: Node, policy: str) -> tuple[tuple[tuple[str, str], ...], bool]:
    """``(stores, listed)``; ``listed`` as for :func:`_identities`."""
    listed = bool(node.raw("trust_stores"))
    out: list[tuple[str, str]] = []
    path = node.child_path("trustStores")
    for i, value in enumerate(node.str_list("trust_stores")):
        kind, sep, name = value.partition(":")
        if not sep or kind not in STORE_TYPES:
            node.problems.add(f"{path}[{i}]", f"expected <ca|signingAuthority|tsa>:<store name>, got {value!r}")
        elif not _STORE_NAME.match(name):
            node.problems.add(f"{path}[{i}]", f"store name {name!r} must match [a-zA-Z0-9_.-]+")
        else:
            out.append((kind, name))
    return tuple(out), listed


def valid_scope(scope: str) -> bool:
    domain, sep, repository = scope.partition("/")
    return bool(sep) and bool(_DOMAIN.match(domain)) and bool(_REPOSITORY.match(repository))


def parse_document(node: Node) -> TrustPolicyDocument:
    """Validate a trust policy document (version 1.0) the way notation-go does, reporting every problem."""
    version = node.string("version", None)
    if version is None and not node.has("version"):
        node.error('required (the trust policy document version, "1.0")', "version")
    elif version is not None and version != "1.0":
        node.error(f'unsupported trust policy version {version!r}; only "1.0" is supported', "version")
    policies: list[TrustPolicy] = []
    names: set[str] = set()
    scopes: dict[str, str] = {}
    items = node.nodes("trust_policies")
    if not items:
        node.error("at least one trust policy is required", "trust_policies")
    for item in items:
        name = item.string("name", None)
        if not name:
            item.error("every trust policy needs a name", "name")
            name = ""
        elif name in names:
            item.error(f"trust policy name {name!r} is used twice", "name")
        names.add(name)
        registry_scopes = item.str_list("registry_scopes")
        scope_path = item.child_path("registryScopes")
        if not registry_scopes:
            item.problems.add(scope_path, "at least one registry scope is required")
        if WILDCARD in registry_scopes and len(registry_scopes) > 1:
            item.problems.add(scope_path, "'*' cannot be combined with other registry scopes")
        for i, scope in enumerate(registry_scopes):
            if scope != WILDCARD and WILDCARD in scope:
                item.problems.add(
                    f"{scope_path}[{i}]",
                    f"{scope!r}: a scope cannot hold a wildcard; only '*' alone (every repository) is allowed, "
                    "otherwise list fully qualified repositories (host/repo)",
                )
            elif scope != WILDCARD and not valid_scope(scope):
                item.problems.add(f"{scope_path}[{i}]", f"{scope!r} is not a fully qualified repository (host/repo)")
            if scope in scopes:
                item.problems.add(f"{scope_path}[{i}]", f"scope {scope!r} is already used by policy {scopes[scope]!r}")
            scopes.setdefault(scope, name)
        level, verify_timestamp = _level(item.node("signature_verification"), name)
        if not item.has("signature_verification"):
            item.error("required", "signature_verification")
        stores, stores_listed = _trust_stores(item, name)
        any_identity, identities, identities_listed = _identities(item, name)
        if level is not None and level.name == "skip":
            if stores_listed or identities_listed:
                item.error("a skip policy must not list trust stores or trusted identities", "signature_verification")
        elif level is not None:
            if not stores_listed:
                item.error("at least one trust store is required", "trust_stores")
            if not identities_listed:
                item.error("at least one trusted identity (or '*') is required", "trusted_identities")
        item.finish()
        if level is not None:
            policies.append(
                TrustPolicy(
                    name=name,
                    registry_scopes=registry_scopes,
                    level=level,
                    verify_timestamp=verify_timestamp,
                    trust_stores=stores,
                    any_identity=any_identity,
                    identities=identities,
                )
            )
    node.finish()
    return TrustPolicyDocument(tuple(policies))
