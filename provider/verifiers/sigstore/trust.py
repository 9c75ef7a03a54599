"""Trust material: a Sigstore ``trusted_root.json`` and/or PEM Fulcio roots, Rekor and CT log keys, TSA chains."""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from provider.confignode import Node
from provider.verifiers.keys import PublicKey, TrustedKey, parse_keys
from provider.verifiers.sigstore.signatures import spki


@dataclass(frozen=True, slots=True)
class Validity:
    start: datetime | None = None
    end: datetime | None = None

    def contains(self, moment: datetime) -> bool:
        return (self.start is None or self.start <= moment) and (self.end is None or moment <= self.end)


@dataclass(frozen=True, slots=True)
class LogKey:
    """A transparency-log (Rekor or CT) public key, identified by its log ID."""

    log_id: bytes
    key: PublicKey
    validity: Validity = Validity()


@dataclass(frozen=True, slots=True)
class Authority:
    """A certificate authority (Fulcio or a TSA): its chain, leaf side first, and when it was trusted."""

    certificates: tuple[x509.Certificate, ...]
    validity: Validity = Validity()


@dataclass(frozen=True, slots=True)
class TrustMaterial:
    fulcio: tuple[Authority, ...] = ()
    rekor: Mapping[bytes, LogKey] = field(default_factory=dict)
    ctlogs: Mapping[bytes, LogKey] = field(default_factory=dict)
    tsas: tuple[Authority, ...] = ()
    trusted_root_path: str | None = None
    private_cas: tuple[Authority, ...] = ()


def _parse_time(value: object) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    text = re.sub(r"(\.\d{6})\d+", r"\1", value.strip()).replace("Z", "+00:00")
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _validity(obj: object) -> Validity:
    """``validFor``: ``start`` is required and ``end`` must parse when present — a malformed bound is an error,
    never an unbounded validity (sigstore-conformance ``trust-root-*-missing-validity-start_fail``)."""
    if not isinstance(obj, dict):
        raise ValueError("validFor is missing")
    start = _parse_time(obj.get("start"))
    if start is None:
        raise ValueError(f"validFor.start is missing or not a timestamp: {obj.get('start')!r}")
    end = _parse_time(obj.get("end"))
    if obj.get("end") is not None and end is None:
        raise ValueError(f"validFor.end is not a timestamp: {obj.get('end')!r}")
    return Validity(start, end)


def _load_der_key(data: bytes) -> PublicKey:
    try:
        key = serialization.load_der_public_key(data)
    except (ValueError, UnsupportedAlgorithm):
        raise ValueError("public key is not DER SubjectPublicKeyInfo") from None
    if not isinstance(key, ec.EllipticCurvePublicKey | rsa.RSAPublicKey | ed25519.Ed25519PublicKey):
        raise ValueError(f"unsupported public key type {type(key).__name__}")
    return key


def parse_trusted_root(data: bytes) -> TrustMaterial:
    """A Sigstore ``trusted_root.json`` (protobuf-specs ``TrustedRoot`` JSON); ValueError with a reason."""
    try:
        doc = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise ValueError("not JSON") from None
    if not isinstance(doc, dict):
        raise ValueError("not a JSON object")

    def logs(key: str) -> dict[bytes, LogKey]:
        out: dict[bytes, LogKey] = {}
        for i, item in enumerate(doc.get(key) or []):
            try:
                public = item["publicKey"]
                der = base64.b64decode(public["rawBytes"])
                pub = _load_der_key(der)
                raw_id = (item.get("logId") or {}).get("keyId")
                log_id = base64.b64decode(raw_id) if raw_id else hashlib.sha256(der).digest()
                validity = _validity(public.get("validFor"))
            except (KeyError, TypeError, ValueError, binascii.Error) as exc:
                raise ValueError(f"{key}[{i}]: {exc}") from None
            out[log_id] = LogKey(log_id, pub, validity)
        return out

    def authorities(key: str) -> tuple[Authority, ...]:
        out: list[Authority] = []
        for i, item in enumerate(doc.get(key) or []):
            try:
                certs = tuple(
                    x509.load_der_x509_certificate(base64.b64decode(c["rawBytes"]))
                    for c in item["certChain"]["certificates"]
                )
                validity = _validity(item.get("validFor"))
            except (KeyError, TypeError, ValueError, binascii.Error) as exc:
                raise ValueError(f"{key}[{i}]: {exc}") from None
            if certs:
                out.append(Authority(certs, validity))
        return tuple(out)

    return TrustMaterial(
        fulcio=authorities("certificateAuthorities"),
        rekor=logs("tlogs"),
        ctlogs=logs("ctlogs"),
        tsas=authorities("timestampAuthorities"),
    )


def pem_certificates(data: bytes) -> tuple[x509.Certificate, ...]:
    try:
        return tuple(x509.load_pem_x509_certificates(data))
    except ValueError:
        return ()


def _log_keys(keys: Sequence[TrustedKey]) -> dict[bytes, LogKey]:
    """Configured log keys; the log ID is the SHA-256 of the DER SubjectPublicKeyInfo."""
    out: dict[bytes, LogKey] = {}
    for key in keys:
        log_id = hashlib.sha256(spki(key.key)).digest()
        out[log_id] = LogKey(log_id, key.key)
    return out


def parse_trust(node: Node) -> TrustMaterial:
    """``trustedRoot`` (a trusted_root.json file) plus ``fulcioRoots``, ``caRoots`` (a private PKI's roots),
    ``rekorKeys``, ``ctLogKeys`` and ``tsaCertChains`` (PEM text or files); every file is fingerprinted so a change
    reloads the configuration."""
    base = TrustMaterial()
    root_path = node.string("trusted_root", None)
    resolved: str | None = None
    if root_path is not None:
        data = node.problems.read_file(root_path, node.child_path("trustedRoot"), max_bytes=4 * 1024 * 1024)
        if data is not None:
            try:
                base = parse_trusted_root(data)
                resolved = str(node.problems.resolve(root_path))
            except ValueError as exc:
                node.error(f"not a Sigstore trusted root: {exc}", "trusted_root")

    def pem_items(name: str) -> list[tuple[str, bytes]]:
        out: list[tuple[str, bytes]] = []
        for path, item in node.items(name):
            if not isinstance(item, str) or not item.strip():
                node.problems.add(path, "expected PEM text or a file path")
                continue
            data = item.encode() if "-----BEGIN" in item else node.problems.read_file(item, path, 1024 * 1024)
            if data is not None:
                out.append((path, data))
        return out

    def roots(name: str) -> list[Authority]:
        out: list[Authority] = []
        for path, data in pem_items(name):
            certs = pem_certificates(data)
            if not certs:
                node.problems.add(path, "no PEM certificate found")
            out.extend(Authority((cert,)) for cert in certs)
        return out

    fulcio = list(base.fulcio) + roots("fulcio_roots")
    private_cas = roots("ca_roots")
    tsas = list(base.tsas)
    for path, data in pem_items("tsa_cert_chains"):
        certs = pem_certificates(data)
        if not certs:
            node.problems.add(path, "no PEM certificate found")
        else:
            tsas.append(Authority(certs))
    rekor = dict(base.rekor)
    rekor.update(_log_keys(parse_keys(node, "rekor_keys")))
    ctlogs = dict(base.ctlogs)
    ctlogs.update(_log_keys(parse_keys(node, "ct_log_keys")))
    return TrustMaterial(tuple(fulcio), rekor, ctlogs, tuple(tsas), resolved, tuple(private_cas))
