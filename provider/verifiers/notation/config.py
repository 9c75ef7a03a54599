"""The ``notation`` verifier's configuration: trust policy, named trust stores, revocation, limits.

Every file (policy, certificates, CRLs) is read through ``Problems.read_file`` at parse time, so a changed
trust store or policy file changes the configuration generation and is picked up by the reload loop.
"""

from __future__ import annotations

import json
import stat
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509

from provider.confignode import Node
from provider.verifiers.notation import x509 as nx509
from provider.verifiers.notation.revocation import MODES, TSA_CHAIN_MODES, RevocationConfig
from provider.verifiers.notation.trustpolicy import STORE_TYPES, TrustPolicyDocument, parse_document

MAX_CERT_FILE_BYTES = 1024 * 1024
MAX_POLICY_BYTES = 1024 * 1024
MAX_CRL_FILE_BYTES = 32 * 1024 * 1024
_STORE_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-")


@dataclass(frozen=True, slots=True)
class TrustStore:
    type: str
    name: str
    certificates: tuple[x509.Certificate, ...]


@dataclass(frozen=True, slots=True)
class NotationParams:
    trust_policy: TrustPolicyDocument
    trust_stores: Mapping[tuple[str, str], TrustStore]
    revocation: RevocationConfig = field(default_factory=RevocationConfig)
    max_signatures: int = 10
    max_envelope_bytes: int = 4 * 1024 * 1024
    user_metadata: Mapping[str, str] = field(default_factory=dict)

    def certificates(self, store_type: str, names: list[str]) -> list[x509.Certificate]:
        out: list[x509.Certificate] = []
        for name in names:
            store = self.trust_stores.get((store_type, name))
            if store is not None:
                out.extend(store.certificates)
        return out


def _contained_link(link: Path, root: Path) -> bool:
    """A symbolic link is followed only when it resolves inside ``root`` — the layout of a Kubernetes
    ConfigMap or Secret volume, whose files link to ``..data/<file>`` in the same directory."""
    try:
        return link.resolve(strict=True).is_relative_to(root.resolve(strict=True))
    except (OSError, RuntimeError):
        return False


def _store_certificates(node: Node, entry: object, path: str) -> list[x509.Certificate]:
    """One store entry: inline PEM, a certificate file (PEM bundle or DER), or a directory of them."""
    if not isinstance(entry, str) or not entry.strip():
        node.problems.add(path, "expected a certificate file, a directory or inline PEM")
        return []
    if "-----BEGIN" in entry:
        return _certificates(node, entry.encode(), path, "inline PEM")
    resolved = node.problems.resolve(entry)
    if resolved.is_symlink() and not _contained_link(resolved, resolved.parent):
        node.problems.add(path, f"{entry} is a symbolic link leaving its directory, which trust stores do not allow")
        return []
    if resolved.is_dir():
        found: list[x509.Certificate] = []
        files = sorted(resolved.iterdir())
        regular: list[Path] = []
        for child in files:
            if child.name.startswith(".."):
                continue  # the kubelet's own ..data / ..<timestamp> entries behind a projected volume
            mode = child.lstat().st_mode
            if stat.S_ISLNK(mode):
                if not _contained_link(child, resolved):
                    node.problems.add(path, f"{child} is a symbolic link leaving the store, which is not allowed")
                    continue
                mode = child.stat().st_mode
            if stat.S_ISREG(mode):
                regular.append(child)
                data = node.problems.read_file(str(child), path, MAX_CERT_FILE_BYTES)
                if data is not None:
                    found.extend(_certificates(node, data, path, str(child)))
        if not found and not regular:
            node.problems.add(path, f"directory {entry} holds no certificate files")
        return found
    data = node.problems.read_file(entry, path, MAX_CERT_FILE_BYTES)
    return [] if data is None else _certificates(node, data, path, entry)


def _certificates(node: Node, data: bytes, path: str, what: str) -> list[x509.Certificate]:
    try:
        certs = nx509.load_certificates(data, what)
    except nx509.CertificateError as exc:
        node.problems.add(path, str(exc))
        return []
    if not certs:
        node.problems.add(path, f"{what} holds no certificate")
    usable = []
    for cert in certs:
        if not (_is_ca(cert) or nx509.is_self_signed(cert)):
            node.problems.add(path, f"{what}: {nx509.subject(cert)!r} is neither a CA nor a self-signed certificate")
        else:
            usable.append(cert)
    return usable


def _is_ca(cert: x509.Certificate) -> bool:
    try:
        value = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        return False
    return value.ca


def _parse_trust_stores(node: Node) -> tuple[dict[tuple[str, str], TrustStore], set[tuple[str, str]]]:
    """The usable trust stores, and every store named (usable or not: a policy naming a broken store is not
    reported a second time)."""
    stores: dict[tuple[str, str], TrustStore] = {}
    named_stores: set[tuple[str, str]] = set()
    for store_type in STORE_TYPES:
        named = node.raw(store_type)
        type_path = node.child_path(store_type)
        if named is None:
            continue
        if not isinstance(named, dict):
            node.problems.add(type_path, "expected a mapping of store names to certificate lists")
            continue
        for name, entries in named.items():
            path = f"{type_path}.{name}"
            named_stores.add((store_type, str(name)))
            if not isinstance(name, str) or not name or not set(name) <= _STORE_NAME_CHARS:
                node.problems.add(path, "store names must match [a-zA-Z0-9_.-]+")
                continue
            if isinstance(entries, str):
                entries = [entries]
            if not isinstance(entries, list) or not entries:
                node.problems.add(path, "expected a non-empty list of files, directories or inline PEM")
                continue
            certs: list[x509.Certificate] = []
            for i, entry in enumerate(entries):
                certs.extend(_store_certificates(node, entry, f"{path}[{i}]"))
            stores[(store_type, name)] = TrustStore(store_type, name, tuple(certs))
    node.finish()
    return stores, named_stores


def _parse_trust_policy(node: Node) -> TrustPolicyDocument:
    if node.has("trust_policy") and node.has("trust_policy_file"):
        node.error("give either trustPolicy or trustPolicyFile, not both", "trust_policy")
    if node.has("trust_policy_file"):
        path = node.string("trust_policy_file")
        field_path = node.child_path("trustPolicyFile")
        data = None if path is None else node.problems.read_file(path, field_path, MAX_POLICY_BYTES)
        if data is None:
            return TrustPolicyDocument(())
        try:
            document = json.loads(data)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            node.problems.add(field_path, f"{path} is not JSON: {exc}")
            return TrustPolicyDocument(())
        return parse_document(Node(document, f"{field_path}({Path(path).name})", node.problems))
    if not node.has("trust_policy"):
        node.error("a trust policy is required (trustPolicy inline or trustPolicyFile)", "trust_policy")
        return TrustPolicyDocument(())
    return parse_document(node.node("trust_policy"))


def _parse_revocation(node: Node) -> RevocationConfig:
    defaults = RevocationConfig()
    mode = node.string("mode", defaults.mode, choices=MODES)
    crls: list[x509.CertificateRevocationList] = []
    crl_path = node.child_path("crlFiles")
    for i, path in enumerate(node.str_list("crl_files")):
        data = node.problems.read_file(path, f"{crl_path}[{i}]", MAX_CRL_FILE_BYTES)
        if data is None:
            continue
        try:
            crls.append(
                x509.load_pem_x509_crl(data) if data.lstrip().startswith(b"-----") else x509.load_der_x509_crl(data)
            )
        except ValueError:
            node.problems.add(f"{crl_path}[{i}]", f"{path} is not a PEM or DER CRL")
    allow = node.str_list("allow")
    if mode == "online" and not allow:
        node.error(
            "online revocation needs the hosts it may contact (e.g. [ocsp.example.com, crl.example.com])", "allow"
        )
    config = RevocationConfig(
        mode=mode,
        crls=tuple(crls),
        timeout=node.duration("timeout", defaults.timeout, minimum=0.05),
        tsa_chain=node.string("tsa_chain", defaults.tsa_chain, choices=TSA_CHAIN_MODES),
        allow=allow,
        cache_ttl=node.duration("cache_ttl", defaults.cache_ttl),
        max_crl_bytes=node.size("max_crl_bytes", defaults.max_crl_bytes, minimum=1024),
    )
    node.finish()
    return config


def parse_params(node: Node) -> NotationParams:
    stores, named_stores = _parse_trust_stores(node.node("trust_stores"))
    document = _parse_trust_policy(node)
    for index, policy in enumerate(document.policies):
        for kind, name in policy.trust_stores:
            if (kind, name) not in named_stores:
                node.problems.add(
                    f"{node.child_path('trustPolicy')}.trustPolicies[{index}]",
                    f"policy {policy.name!r} uses {kind}:{name}, which is not configured under trustStores.{kind}",
                )
    metadata = node.raw("user_metadata") or {}
    if not isinstance(metadata, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()
    ):
        node.error("expected a mapping of annotation names to values", "user_metadata")
        metadata = {}
    return NotationParams(
        trust_policy=document,
        trust_stores=stores,
        revocation=_parse_revocation(node.node("revocation")),
        max_signatures=node.integer("max_signatures", 10, minimum=1, maximum=100),
        max_envelope_bytes=node.size("max_envelope_bytes", 4 * 1024 * 1024, minimum=1024),
        user_metadata=dict(metadata),
    )
