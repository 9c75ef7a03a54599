"""Sigstore trust material and the offline checks shared by the ``cosign``, ``sigstore-bundle`` and ``attestation``
verifiers.

Hand-written with ``cryptography``, ``rfc8785`` and ``rfc3161-client`` (sigstore-python is used only for whole
certificate-based bundles, in :mod:`provider.verifiers.sigstore_bundle`): Fulcio chains checked at a verified time,
certificate identities (SAN + OIDC issuer), Rekor signed entry timestamps over RFC 8785 canonical JSON, Merkle
inclusion proofs with signed checkpoints, embedded SCTs, transparency-log body binding (``hashedrekord`` 0.0.1,
``dsse`` 0.0.1, ``intoto`` 0.0.1/0.0.2; Rekor v2's ``hashedrekord`` 0.0.2 and ``dsse`` 0.0.2), RFC 3161
timestamps, DSSE PAE and in-toto Statements. Nothing here reads the network or the wall clock: every time comes
from the evidence or the caller.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import rfc8785
from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed
from cryptography.x509.oid import ExtendedKeyUsageOID
from cryptography.x509.verification import (
    Criticality,
    ExtensionPolicy,
    PolicyBuilder,
    Store,
    VerificationError,
)
from rfc3161_client import VerificationError as TimestampVerificationError
from rfc3161_client import VerifierBuilder, decode_timestamp_response

from provider import mediatypes as mt
from provider.config import matches_any
from provider.confignode import Node, camel
from provider.reference import ImageRef
from provider.verifiers.keys import PublicKey, TrustedKey, fingerprint, parse_keys

OID_ISSUER_V1 = x509.ObjectIdentifier("1.3.6.1.4.1.57264.1.1")
OID_ISSUER_V2 = x509.ObjectIdentifier("1.3.6.1.4.1.57264.1.8")
OID_OTHERNAME_SAN = x509.ObjectIdentifier("1.3.6.1.4.1.57264.1.7")
MAX_TLOG_ENTRIES = 8
MAX_TIMESTAMPS = 8
MAX_PROOF_HASHES = 64
STATEMENT_TYPES = frozenset({"https://in-toto.io/Statement/v0.1", "https://in-toto.io/Statement/v1"})
INTOTO_PAYLOAD_TYPE = "application/vnd.in-toto+json"


class Rejected(Exception):
    """Evidence that does not verify; the message is the user-facing reason."""

    @property
    def reason(self) -> str:
        return str(self.args[0]) if self.args else "rejected"


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def b64decode(value: object, what: str) -> bytes:
    """Standard or URL-safe base64 (padding optional); :class:`Rejected` otherwise."""
    if not isinstance(value, str):
        raise Rejected(f"{what} is not a base64 string")
    text = value.strip()
    padded = text + "=" * (-len(text) % 4)
    try:
        if "-" in text or "_" in text:
            return base64.urlsafe_b64decode(padded)
        return base64.b64decode(padded, validate=True)
    except (binascii.Error, ValueError):
        raise Rejected(f"{what} is not base64") from None


# -- keys and signatures -------------------------------------------------------------------------------------------


def spki(key: PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def verify_signature(key: PublicKey, signature: bytes, data: bytes, *, prehashed: bool = False) -> bool:
    """Sigstore's schemes: ECDSA (hash by curve, or a SHA-256 digest when ``prehashed``), RSA PKCS#1 v1.5 or PSS
    with SHA-256, Ed25519 (never prehashed)."""
    try:
        if isinstance(key, ed25519.Ed25519PublicKey):
            if prehashed:
                return False
            key.verify(signature, data)
            return True
        if isinstance(key, rsa.RSAPublicKey):
            algorithm: Any = Prehashed(hashes.SHA256()) if prehashed else hashes.SHA256()
            for pad in (padding.PKCS1v15(), padding.PSS(padding.MGF1(hashes.SHA256()), padding.PSS.AUTO)):
                try:
                    key.verify(signature, data, pad, algorithm)
                    return True
                except InvalidSignature:
                    continue
            return False
        if prehashed:
            key.verify(signature, data, ec.ECDSA(Prehashed(hashes.SHA256())))
            return True
        return TrustedKey(key=key, fingerprint="", source="").verify(signature, data)
    except (InvalidSignature, ValueError, UnsupportedAlgorithm):
        return False


# -- trust material ------------------------------------------------------------------------------------------------


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


def _pem_certificates(data: bytes) -> tuple[x509.Certificate, ...]:
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
    """``trustedRoot`` (a trusted_root.json file) plus ``fulcioRoots``, ``rekorKeys``, ``ctLogKeys`` and
    ``tsaCertChains`` (PEM text or files); every file is fingerprinted so a change reloads the configuration."""
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

    fulcio = list(base.fulcio)
    for path, data in pem_items("fulcio_roots"):
        certs = _pem_certificates(data)
        if not certs:
            node.problems.add(path, "no PEM certificate found")
        fulcio.extend(Authority((cert,)) for cert in certs)
    tsas = list(base.tsas)
    for path, data in pem_items("tsa_cert_chains"):
        certs = _pem_certificates(data)
        if not certs:
            node.problems.add(path, "no PEM certificate found")
        else:
            tsas.append(Authority(certs))
    rekor = dict(base.rekor)
    rekor.update(_log_keys(parse_keys(node, "rekor_keys")))
    ctlogs = dict(base.ctlogs)
    ctlogs.update(_log_keys(parse_keys(node, "ct_log_keys")))
    return TrustMaterial(tuple(fulcio), rekor, ctlogs, tuple(tsas), resolved)


# -- identities ----------------------------------------------------------------------------------------------------


def _der_utf8(value: bytes) -> str | None:
    if len(value) < 2 or value[0] != 0x0C:
        return None
    length, offset = value[1], 2
    if length & 0x80:
        count = length & 0x7F
        if not 0 < count <= 4 or len(value) < 2 + count:
            return None
        length, offset = int.from_bytes(value[2 : 2 + count], "big"), 2 + count
    if offset + length != len(value):
        return None
    try:
        return value[offset:].decode("utf-8")
    except UnicodeDecodeError:
        return None


def _extension_bytes(cert: x509.Certificate, oid: x509.ObjectIdentifier) -> bytes | None:
    try:
        value = cert.extensions.get_extension_for_oid(oid).value
    except (x509.ExtensionNotFound, ValueError):
        return None
    return value.value if isinstance(value, x509.UnrecognizedExtension) else None


def certificate_identity(cert: x509.Certificate) -> tuple[tuple[str, ...], str | None]:
    """``(SAN emails, URIs and Sigstore other names, OIDC issuer)``; the issuer from extension ``…1.8`` (DER
    UTF8String), else the legacy ``…1.1`` (raw string)."""
    sans: list[str] = []
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        sans.extend(san.get_values_for_type(x509.RFC822Name))
        sans.extend(san.get_values_for_type(x509.UniformResourceIdentifier))
        for other in san.get_values_for_type(x509.OtherName):
            if other.type_id == OID_OTHERNAME_SAN:
                sans.append(_der_utf8(other.value) or other.value.decode("utf-8", "replace"))
    except (x509.ExtensionNotFound, ValueError):
        pass
    issuer: str | None = None
    v2 = _extension_bytes(cert, OID_ISSUER_V2)
    if v2 is not None:
        issuer = _der_utf8(v2)
    if issuer is None:
        v1 = _extension_bytes(cert, OID_ISSUER_V1)
        if v1 is not None:
            issuer = v1.decode("utf-8", "replace")
    return tuple(sans), issuer


@dataclass(frozen=True, slots=True)
class IdentityRule:
    """One trusted keyless identity: SAN and OIDC issuer, each exact or a full-match regular expression."""

    identity: str | None
    identity_re: re.Pattern[str] | None
    issuer: str | None
    issuer_re: re.Pattern[str] | None
    scopes: tuple[str, ...] = ("*",)

    def matches(self, sans: Sequence[str], issuer: str | None) -> bool:
        if issuer is None:
            return False
        if self.issuer is not None and issuer != self.issuer:
            return False
        if self.issuer_re is not None and not self.issuer_re.fullmatch(issuer):
            return False
        if self.identity is not None:
            return self.identity in sans
        assert self.identity_re is not None
        return any(self.identity_re.fullmatch(s) for s in sans)

    def describe(self) -> str:
        who = (
            self.identity if self.identity is not None else f"/{self.identity_re.pattern if self.identity_re else ''}/"
        )
        by = self.issuer if self.issuer is not None else f"/{self.issuer_re.pattern if self.issuer_re else ''}/"
        return f"{who} from {by}"


def parse_identities(node: Node) -> tuple[IdentityRule, ...]:
    """``identities[]``: ``identity`` or ``identityRegExp``, ``issuer`` or ``issuerRegExp``, optional ``scopes``."""
    out: list[IdentityRule] = []
    for item in node.nodes("identities"):

        def pair(exact: str, pattern: str, item: Node = item) -> tuple[str | None, re.Pattern[str] | None, bool]:
            value = item.string(exact, None)
            regex_text = item.string(pattern, None)
            if (value is None) == (regex_text is None):
                item.error(f"give exactly one of {exact} or {camel(pattern)}", exact)
                return None, None, False
            if regex_text is None:
                return value, None, True
            try:
                return None, re.compile(regex_text), True
            except re.error as exc:
                item.error(f"invalid regular expression: {exc}", pattern)
                return None, None, False

        identity, identity_re, ok_identity = pair("identity", "identity_reg_exp")
        issuer, issuer_re, ok_issuer = pair("issuer", "issuer_reg_exp")
        scopes = item.str_list("scopes", ("*",))
        item.finish()
        if ok_identity and ok_issuer:
            out.append(IdentityRule(identity, identity_re, issuer, issuer_re, scopes))
    return tuple(out)


# -- certificates --------------------------------------------------------------------------------------------------


def load_certificate(data: bytes, what: str) -> x509.Certificate:
    try:
        if b"-----BEGIN" in data:
            return x509.load_pem_x509_certificate(data)
        return x509.load_der_x509_certificate(data)
    except ValueError:
        raise Rejected(f"{what} is not an X.509 certificate") from None


def load_pem_chain(data: str, what: str) -> tuple[x509.Certificate, ...]:
    certs = _pem_certificates(data.encode())
    if not certs and data.strip():
        raise Rejected(f"{what} holds no PEM certificate")
    return certs


_CA_POLICY = ExtensionPolicy.webpki_defaults_ca().may_be_present(x509.ExtendedKeyUsage, Criticality.NON_CRITICAL, None)
_EE_POLICY = ExtensionPolicy.webpki_defaults_ee().may_be_present(x509.ExtendedKeyUsage, Criticality.NON_CRITICAL, None)


def verify_chain(
    leaf: x509.Certificate, intermediates: Sequence[x509.Certificate], trust: TrustMaterial, at: datetime, source: str
) -> list[x509.Certificate]:
    """The verified chain above ``leaf`` (issuer first) at ``at``, to a Fulcio CA trusted at that time."""
    if not leaf.not_valid_before_utc <= at <= leaf.not_valid_after_utc:
        raise Rejected(
            f"certificate expired at {source} time {iso(at)}: valid only from "
            f"{iso(leaf.not_valid_before_utc)} to {iso(leaf.not_valid_after_utc)}"
        )
    anchors = [cert for ca in trust.fulcio if ca.validity.contains(at) for cert in ca.certificates]
    if not anchors:
        raise Rejected(f"no configured Fulcio CA is valid at {iso(at)}")
    verifier = (
        PolicyBuilder()
        .store(Store(anchors))
        .time(at)
        .extension_policies(ca_policy=_CA_POLICY, ee_policy=_EE_POLICY)
        .build_client_verifier()
    )
    try:
        chain = verifier.verify(leaf, list(intermediates)).chain
    except (VerificationError, x509.UnsupportedGeneralNameType, ValueError) as exc:
        raise Rejected(f"certificate does not chain to a configured Fulcio root at {iso(at)}: {exc}") from None
    try:
        usage = leaf.extensions.get_extension_for_class(x509.KeyUsage).value
        eku = leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except (x509.ExtensionNotFound, ValueError):
        raise Rejected("certificate lacks keyUsage or extendedKeyUsage") from None
    if not usage.digital_signature or ExtendedKeyUsageOID.CODE_SIGNING not in eku:
        raise Rejected("certificate is not a code-signing certificate")
    return list(chain[1:])


def verify_sct(leaf: x509.Certificate, issuer: x509.Certificate, ctlogs: Mapping[bytes, LogKey]) -> str:
    """Verify one embedded precertificate SCT against the configured CT logs (RFC 6962 §3.2); returns its log ID."""
    try:
        scts = leaf.extensions.get_extension_for_class(x509.PrecertificateSignedCertificateTimestamps).value
        tbs = leaf.tbs_precertificate_bytes
    except (x509.ExtensionNotFound, ValueError):
        raise Rejected("certificate carries no embedded SCT") from None
    issuer_key_hash = hashlib.sha256(spki(issuer.public_key())).digest()  # type: ignore[arg-type]
    epoch = datetime(1970, 1, 1)
    for sct in scts:
        log = ctlogs.get(sct.log_id)
        if log is None:
            continue
        millis = (sct.timestamp.replace(tzinfo=None) - epoch) // timedelta(milliseconds=1)
        ext = sct.extension_bytes
        signed = (
            b"\x00\x00"
            + millis.to_bytes(8, "big")
            + b"\x00\x01"
            + issuer_key_hash
            + len(tbs).to_bytes(3, "big")
            + tbs
            + len(ext).to_bytes(2, "big")
            + ext
        )
        if verify_signature(log.key, sct.signature, signed):
            return bytes(sct.log_id).hex()
    raise Rejected("no embedded SCT verifies with a configured CT log key")


# -- transparency log ----------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class InclusionProof:
    log_index: int
    tree_size: int
    root_hash: bytes
    hashes: tuple[bytes, ...]
    checkpoint: str


@dataclass(frozen=True, slots=True)
class TlogEntry:
    """A Rekor entry as cosign's ``bundle`` annotation or a Sigstore bundle carries it."""

    body_b64: str
    integrated_time: int
    log_index: int
    log_id: bytes
    signed_entry_timestamp: bytes | None
    inclusion_proof: InclusionProof | None = None

    def body(self) -> dict[str, Any]:
        try:
            body = json.loads(base64.b64decode(self.body_b64, validate=True))
        except (binascii.Error, ValueError):
            raise Rejected("Rekor entry body is not base64 JSON") from None
        if not isinstance(body, dict):
            raise Rejected("Rekor entry body is not a JSON object")
        return body


def parse_cosign_bundle(annotation: str) -> TlogEntry:
    """cosign's ``dev.sigstore.cosign/bundle`` annotation: ``{SignedEntryTimestamp, Payload{body, integratedTime,
    logIndex, logID}}``."""
    try:
        doc = json.loads(annotation)
        payload = doc["Payload"]
        entry = TlogEntry(
            body_b64=payload["body"],
            integrated_time=payload["integratedTime"],
            log_index=payload["logIndex"],
            log_id=bytes.fromhex(payload["logID"]),
            signed_entry_timestamp=b64decode(doc["SignedEntryTimestamp"], "SignedEntryTimestamp"),
        )
    except (json.JSONDecodeError, KeyError, TypeError, ValueError):
        raise Rejected("Rekor bundle annotation is malformed") from None
    if not isinstance(entry.body_b64, str) or not all(
        isinstance(v, int) and not isinstance(v, bool) for v in (entry.integrated_time, entry.log_index)
    ):
        raise Rejected("Rekor bundle annotation is malformed")
    return entry


def _hash_children(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def _verify_inclusion(entry: TlogEntry, proof: InclusionProof) -> None:
    """RFC 9162 §2.1.3.2 audit path verification of the entry's leaf against the proof's root."""
    if not 0 <= proof.log_index < proof.tree_size or len(proof.hashes) > MAX_PROOF_HASHES:
        raise Rejected("Rekor inclusion proof is malformed")
    node = hashlib.sha256(b"\x00" + base64.b64decode(entry.body_b64)).digest()
    fn, sn = proof.log_index, proof.tree_size - 1
    for sibling in proof.hashes:
        if sn == 0:
            raise Rejected("Rekor inclusion proof is longer than the tree")
        if fn & 1 or fn == sn:
            node = _hash_children(sibling, node)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            node = _hash_children(node, sibling)
        fn >>= 1
        sn >>= 1
    if sn != 0 or node != proof.root_hash:
        raise Rejected("Rekor inclusion proof does not lead to the checkpoint's root hash")


def _verify_checkpoint(proof: InclusionProof, rekor: Mapping[bytes, LogKey]) -> None:
    """The signed note (``origin\\nsize\\nroot\\n…\\n\\n— name base64(keyhint‖sig)``) must be signed by a
    configured Rekor key and name the proof's tree size and root hash."""
    text, sep, signatures = proof.checkpoint.partition("\n\n")
    lines = text.split("\n")
    if not sep or len(lines) < 3:
        raise Rejected("Rekor checkpoint is malformed")
    try:
        size, root = int(lines[1]), base64.b64decode(lines[2], validate=True)
    except (ValueError, binascii.Error):
        raise Rejected("Rekor checkpoint is malformed") from None
    if size != proof.tree_size or root != proof.root_hash:
        raise Rejected("Rekor checkpoint does not match the inclusion proof")
    note = (text + "\n").encode()
    for line in signatures.splitlines():
        if not line.startswith("\u2014 "):
            continue
        _name, _, encoded = line[2:].rpartition(" ")
        try:
            raw = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError):
            continue
        for log in rekor.values():
            if log.log_id[:4] == raw[:4] and verify_signature(log.key, raw[4:], note):
                return
    raise Rejected("Rekor checkpoint is not signed by a configured Rekor key")


def verify_tlog_entry(entry: TlogEntry, rekor: Mapping[bytes, LogKey]) -> datetime | None:
    """Verify the entry's SET (→ its integrated time, returned) and/or inclusion proof + checkpoint."""
    if entry.signed_entry_timestamp is None and entry.inclusion_proof is None:
        raise Rejected("Rekor entry has neither a signed entry timestamp nor an inclusion proof")
    log = rekor.get(entry.log_id)
    if log is None:
        raise Rejected(f"Rekor entry is from log {entry.log_id.hex()[:16]}…, for which no key is configured")
    verified_time: datetime | None = None
    if entry.signed_entry_timestamp is not None:
        canonical = rfc8785.dumps(
            {
                "body": entry.body_b64,
                "integratedTime": entry.integrated_time,
                "logIndex": entry.log_index,
                "logID": entry.log_id.hex(),
            }
        )
        if not verify_signature(log.key, entry.signed_entry_timestamp, canonical):
            raise Rejected("Rekor signed entry timestamp (SET) does not verify with the configured Rekor key")
        verified_time = datetime.fromtimestamp(entry.integrated_time, UTC)
        if not log.validity.contains(verified_time):
            raise Rejected(f"Rekor key was not valid at integrated time {iso(verified_time)}")
    if entry.inclusion_proof is not None:
        _verify_inclusion(entry, entry.inclusion_proof)
        _verify_checkpoint(entry.inclusion_proof, rekor)
    return verified_time


# -- binding the log entry to the evidence --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Signer:
    key: PublicKey
    certificate: x509.Certificate | None


def _certificate_names(cert: x509.Certificate, signer: Signer) -> bool:
    """A certificate recorded in a log entry is the signer's certificate, or (key signer) carries its key."""
    if signer.certificate is not None:
        return cert == signer.certificate
    try:
        return spki(cert.public_key()) == spki(signer.key)  # type: ignore[arg-type]
    except (UnsupportedAlgorithm, ValueError):
        return False


def _same_signer(pem: bytes, signer: Signer) -> bool:
    if b"CERTIFICATE" in pem:
        try:
            cert = x509.load_pem_x509_certificate(pem)
        except ValueError:
            return False
        return _certificate_names(cert, signer)
    try:
        key = serialization.load_pem_public_key(pem)
    except (ValueError, UnsupportedAlgorithm):
        return False
    return spki(key) == spki(signer.key)  # type: ignore[arg-type]


def get_path(doc: object, *path: str) -> Any:
    """``doc[path[0]][path[1]]…`` through nested mappings, ``None`` when any step is missing."""
    for part in path:
        if not isinstance(doc, dict):
            return None
        doc = doc.get(part)
    return doc


def _kind(body: Mapping[str, Any]) -> str:
    return f"{body.get('kind')} {body.get('apiVersion')}"


_V2_HASHES: Mapping[str, Callable[[bytes], Any]] = {
    "SHA2_256": hashlib.sha256,
    "SHA2_384": hashlib.sha384,
    "SHA2_512": hashlib.sha512,
}


def _v2_signer_matches(verifier: object, signer: Signer) -> bool:
    """A Rekor v2 ``Verifier`` (``publicKey.rawBytes`` DER SPKI or ``x509Certificate.rawBytes`` DER) names
    ``signer``."""
    cert_b64 = get_path(verifier, "x509Certificate", "rawBytes")
    if cert_b64 is not None:
        try:
            cert = x509.load_der_x509_certificate(b64decode(cert_b64, "Rekor verifier"))
        except ValueError:
            return False
        return _certificate_names(cert, signer)
    key_b64 = get_path(verifier, "publicKey", "rawBytes")
    return key_b64 is not None and b64decode(key_b64, "Rekor verifier") == spki(signer.key)


def _bind_v2_signature(recorded: object, signature: bytes, signer: Signer) -> bool:
    return b64decode(get_path(recorded, "content"), "Rekor signature") == signature and _v2_signer_matches(
        get_path(recorded, "verifier"), signer
    )


def _v2_hash_matches(recorded: object, digest_of: Callable[[str], bytes | None]) -> bool:
    """A Rekor v2 ``HashOutput`` (``{algorithm, digest}``) holds ``digest_of(algorithm)``; None refuses it."""
    algorithm = get_path(recorded, "algorithm")
    expected = digest_of(algorithm) if isinstance(algorithm, str) else None
    return expected is not None and b64decode(get_path(recorded, "digest"), "Rekor digest") == expected


def _digests_of(data: bytes) -> Callable[[str], bytes | None]:
    return lambda algorithm: _V2_HASHES[algorithm](data).digest() if algorithm in _V2_HASHES else None


def _bind_hashedrekord_v2(
    body: Mapping[str, Any], digest_of: Callable[[str], bytes | None], signature: bytes, signer: Signer
) -> None:
    """``hashedrekord`` 0.0.2 (Rekor v2): the entry records the digest of the signed bytes, this signature and
    this signer. Rekor v2 records a DSSE envelope this way too, hashing its PAE."""
    spec = get_path(body, "spec", "hashedRekordV002")
    if not _v2_hash_matches(get_path(spec, "data"), digest_of):
        raise Rejected("Rekor entry records another payload hash")
    if not _bind_v2_signature(get_path(spec, "signature"), signature, signer):
        raise Rejected("Rekor entry records another signature or signer")


def bind_message(body: Mapping[str, Any], digest: bytes, signature: bytes, signer: Signer) -> None:
    """``hashedrekord`` 0.0.1 or 0.0.2: the entry records sha256 of the signed bytes, this signature and this
    signer."""
    if _kind(body) == "hashedrekord 0.0.2":
        _bind_hashedrekord_v2(body, lambda algorithm: digest if algorithm == "SHA2_256" else None, signature, signer)
        return
    if _kind(body) != "hashedrekord 0.0.1":
        raise Rejected(f"Rekor entry kind {_kind(body)} does not record a message signature")
    if (
        get_path(body, "spec", "data", "hash", "algorithm") != "sha256"
        or get_path(body, "spec", "data", "hash", "value") != digest.hex()
    ):
        raise Rejected("Rekor entry records another payload hash")
    if b64decode(get_path(body, "spec", "signature", "content"), "Rekor signature") != signature:
        raise Rejected("Rekor entry records another signature")
    pem = b64decode(get_path(body, "spec", "signature", "publicKey", "content"), "Rekor public key")
    if not _same_signer(pem, signer):
        raise Rejected("Rekor entry records another signing key or certificate")


def bind_dsse(body: Mapping[str, Any], payload_type: str, payload: bytes, signature: bytes, signer: Signer) -> None:
    """``dsse`` 0.0.1 / 0.0.2, ``intoto`` 0.0.1 / 0.0.2, or Rekor v2's ``hashedrekord`` 0.0.2 over the PAE:
    payload hash, signature (where recorded) and signer."""
    kind = _kind(body)
    if kind == "hashedrekord 0.0.2":
        _bind_hashedrekord_v2(body, _digests_of(pae(payload_type, payload)), signature, signer)
        return
    if kind == "dsse 0.0.2":
        spec = get_path(body, "spec", "dsseV002")
        if not _v2_hash_matches(get_path(spec, "payloadHash"), _digests_of(payload)):
            raise Rejected("Rekor entry records another payload hash")
        signatures = get_path(spec, "signatures")
        if not isinstance(signatures, list) or not any(_bind_v2_signature(s, signature, signer) for s in signatures):
            raise Rejected("Rekor entry records another signature or signer")
        return
    payload_hex = hashlib.sha256(payload).hexdigest()
    spec = get_path(body, "spec")
    if kind == "dsse 0.0.1":
        recorded_hash = get_path(spec, "payloadHash")
        entries = [
            (s.get("signature"), s.get("verifier")) for s in get_path(spec, "signatures") or [] if isinstance(s, dict)
        ]
        decode_sig: Callable[[object], bytes] = lambda v: b64decode(v, "Rekor signature")  # noqa: E731
    elif kind == "intoto 0.0.2":
        recorded_hash = get_path(spec, "content", "payloadHash")
        sigs = get_path(spec, "content", "envelope", "signatures") or []
        entries = [(s.get("sig"), s.get("publicKey")) for s in sigs if isinstance(s, dict)]

        def decode_sig(v: object) -> bytes:
            return b64decode(b64decode(v, "Rekor signature").decode("ascii", "replace"), "Rekor signature")

    elif kind == "intoto 0.0.1":
        recorded_hash = get_path(spec, "content", "payloadHash")
        entries = [(None, get_path(spec, "publicKey"))]
        decode_sig = lambda v: signature  # noqa: E731  (0.0.1 records no signature)
    else:
        raise Rejected(f"Rekor entry kind {kind} does not record a DSSE envelope")
    if get_path(recorded_hash, "algorithm") != "sha256" or get_path(recorded_hash, "value") != payload_hex:
        raise Rejected("Rekor entry records another payload hash")
    for sig, verifier in entries:
        if decode_sig(sig) == signature and _same_signer(b64decode(verifier, "Rekor verifier"), signer):
            return
    raise Rejected("Rekor entry records another signature or signer")


def dsse_binder(envelope: Envelope, signature: bytes) -> Callable[[Mapping[str, Any], Signer], None]:
    """:func:`bind_dsse` for one envelope signature."""
    return lambda body, signer: bind_dsse(body, envelope.payload_type, envelope.payload, signature, signer)


def message_binder(digest: bytes, signature: bytes) -> Callable[[Mapping[str, Any], Signer], None]:
    """:func:`bind_message` for one signature over bytes whose SHA-256 is ``digest``."""
    return lambda body, signer: bind_message(body, digest, signature, signer)


# -- RFC 3161 timestamps -------------------------------------------------------------------------------------------


def verify_timestamp(response: bytes, message: bytes, tsas: Sequence[Authority]) -> datetime:
    """An RFC 3161 ``TimeStampResp`` over ``message`` from a configured TSA; returns its genTime."""
    try:
        parsed = decode_timestamp_response(response)
    except ValueError:
        raise Rejected("RFC 3161 timestamp is not a TimeStampResp") from None
    for tsa in tsas:
        certs = tsa.certificates
        builder = VerifierBuilder().add_root_certificate(certs[-1])
        if len(certs) > 1:
            builder = builder.tsa_certificate(certs[0])
        for cert in certs[1:-1]:
            builder = builder.add_intermediate_certificate(cert)
        try:
            builder.build().verify_message(parsed, message)
        except (TimestampVerificationError, ValueError):
            continue
        gen_time = parsed.tst_info.gen_time
        gen_time = gen_time if gen_time.tzinfo else gen_time.replace(tzinfo=UTC)
        if tsa.validity.contains(gen_time):
            return gen_time
    raise Rejected("RFC 3161 timestamp does not verify with a configured timestamp authority")


# -- the trust policy: keys, identities, transparency ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Evidence:
    """One signature and what came with it. ``signed`` is the exact signed bytes (a SHA-256 digest when
    ``prehashed``); ``bind`` checks a Rekor entry body against the signature and signer."""

    signature: bytes
    signed: bytes
    bind: Callable[[Mapping[str, Any], Signer], None]
    certificate: x509.Certificate | None = None
    chain: tuple[x509.Certificate, ...] = ()
    tlog: tuple[TlogEntry, ...] = ()
    timestamps: tuple[bytes, ...] = ()
    timestamp_message: bytes = b""
    prehashed: bool = False


def evidence_from_annotations(
    annotations: Mapping[str, str],
    *,
    signature: bytes,
    signed: bytes,
    bind: Callable[[Mapping[str, Any], Signer], None],
    timestamp_message: bytes,
) -> Evidence:
    """Evidence from a cosign layer's annotations: certificate, chain, Rekor bundle (SET), RFC 3161 timestamp."""
    cert_pem = annotations.get(mt.ANNOTATION_COSIGN_CERTIFICATE)
    chain_pem = annotations.get(mt.ANNOTATION_COSIGN_CHAIN)
    bundle = annotations.get(mt.ANNOTATION_COSIGN_BUNDLE)
    stamp = annotations.get(mt.ANNOTATION_COSIGN_RFC3161)
    timestamps: tuple[bytes, ...] = ()
    if stamp:
        try:
            timestamps = (b64decode(json.loads(stamp)["SignedRFC3161Timestamp"], "RFC 3161 timestamp"),)
        except (json.JSONDecodeError, KeyError, TypeError):
            raise Rejected("RFC 3161 timestamp annotation is malformed") from None
    return Evidence(
        signature=signature,
        signed=signed,
        bind=bind,
        certificate=load_certificate(cert_pem.encode(), "certificate annotation") if cert_pem else None,
        chain=load_pem_chain(chain_pem, "chain annotation") if chain_pem else (),
        tlog=(parse_cosign_bundle(bundle),) if bundle else (),
        timestamps=timestamps,
        timestamp_message=timestamp_message,
    )


@dataclass(frozen=True, slots=True)
class SigstorePolicy:
    """Who may sign (keys and keyless identities, each with its own repository scopes) and what proves when."""

    keys: tuple[TrustedKey, ...] = ()
    identities: tuple[IdentityRule, ...] = ()
    trust: TrustMaterial = TrustMaterial()
    require_tlog: bool = False
    ignore_sct: bool = False

    def keys_for(self, ref: ImageRef) -> list[TrustedKey]:
        return [k for k in self.keys if matches_any(k.scopes, ref.registry, ref.repository)]

    def identities_for(self, ref: ImageRef) -> list[IdentityRule]:
        return [i for i in self.identities if matches_any(i.scopes, ref.registry, ref.repository)]

    def verify(self, evidence: Evidence, ref: ImageRef) -> dict[str, Any]:
        """Facts about the verified signer; :class:`Rejected` with the most specific reason otherwise."""
        keys, identities = self.keys_for(ref), self.identities_for(ref)
        if not keys and not identities:
            raise Rejected(f"no key or identity is configured for {ref.registry}/{ref.repository}")
        key_failure: Rejected | None = None
        if keys:
            try:
                return self._verify_with_keys(evidence, keys)
            except Rejected as exc:
                key_failure = exc
        if evidence.certificate is not None and identities:
            return self._verify_keyless(evidence, evidence.certificate, identities)
        if key_failure is not None:
            raise key_failure
        raise Rejected("signature has no certificate and no key is configured for this repository")

    def _tlog(self, evidence: Evidence, signer: Signer, required: bool) -> tuple[list[datetime], dict[str, Any]]:
        if len(evidence.tlog) > MAX_TLOG_ENTRIES:
            raise Rejected(f"more than {MAX_TLOG_ENTRIES} transparency-log entries")
        if not evidence.tlog or (not self.trust.rekor and not required):
            if required:
                raise Rejected("no transparency-log entry (Rekor SET), which this verifier requires")
            return [], {"tlogVerified": False}
        if not self.trust.rekor:
            raise Rejected("no Rekor public key is configured to verify the transparency-log entry")
        times: list[datetime] = []
        facts: dict[str, Any] = {"tlogVerified": True}
        for entry in evidence.tlog:
            when = verify_tlog_entry(entry, self.trust.rekor)
            evidence.bind(entry.body(), signer)
            facts.setdefault("logIndex", entry.log_index)
            facts.setdefault("logID", entry.log_id.hex())
            if when is not None:
                times.append(when)
                facts.setdefault("integratedTime", iso(when))
        return times, facts

    def _timestamps(self, evidence: Evidence) -> list[datetime]:
        if len(evidence.timestamps) > MAX_TIMESTAMPS:
            raise Rejected(f"more than {MAX_TIMESTAMPS} RFC 3161 timestamps")
        if not evidence.timestamps or not self.trust.tsas:
            return []
        return [verify_timestamp(ts, evidence.timestamp_message, self.trust.tsas) for ts in evidence.timestamps]

    def _verify_with_keys(self, evidence: Evidence, keys: Sequence[TrustedKey]) -> dict[str, Any]:
        key = next(
            (
                k
                for k in keys
                if verify_signature(k.key, evidence.signature, evidence.signed, prehashed=evidence.prehashed)
            ),
            None,
        )
        if key is None:
            raise Rejected(f"signature does not verify with any of {len(keys)} configured keys")
        _, facts = self._tlog(evidence, Signer(key.key, None), self.require_tlog)
        stamps = self._timestamps(evidence)
        if stamps:
            facts["timestamps"] = [iso(t) for t in stamps]
        return {"signer": "key", "keyFingerprint": key.fingerprint, "keyType": key.kind, **facts}

    def _verify_keyless(
        self, evidence: Evidence, cert: x509.Certificate, identities: Sequence[IdentityRule]
    ) -> dict[str, Any]:
        key = cert.public_key()
        if not isinstance(key, ec.EllipticCurvePublicKey | rsa.RSAPublicKey | ed25519.Ed25519PublicKey):
            raise Rejected("certificate key type is not supported")
        if not verify_signature(key, evidence.signature, evidence.signed, prehashed=evidence.prehashed):
            raise Rejected("signature does not verify with the certificate's key")
        times, facts = self._tlog(evidence, Signer(key, cert), self.require_tlog)
        sources = [("integrated", t) for t in times]
        sources += [("RFC 3161 timestamp", t) for t in self._timestamps(evidence)]
        if not sources:
            raise Rejected(
                "keyless signature without a verified signing time (a Rekor SET or an RFC 3161 timestamp "
                "from a configured authority)"
            )
        chain: list[x509.Certificate] = []
        for source, moment in sources:
            chain = verify_chain(cert, evidence.chain, self.trust, moment, source)
        if not self.ignore_sct:
            facts["sctLogID"] = verify_sct(cert, chain[0], self.trust.ctlogs)
        sans, issuer = certificate_identity(cert)
        rule = next((r for r in identities if r.matches(sans, issuer)), None)
        if rule is None:
            raise Rejected(
                f"certificate identity {', '.join(sans) or '(none)'} with issuer {issuer or '(none)'} matches none "
                f"of the configured identities ({'; '.join(r.describe() for r in identities)})"
            )
        if len(sources) > len(times):
            facts["timestamps"] = [iso(t) for _, t in sources[len(times) :]]
        return {
            "signer": "keyless",
            "identity": next(s for s in sans if rule.matches([s], issuer)),
            "issuer": issuer,
            "certificateFingerprint": "sha256:" + cert.fingerprint(hashes.SHA256()).hex(),
            "sctVerified": "sctLogID" in facts,
            **facts,
        }


def parse_policy(node: Node, *, require_tlog_default: bool, keys_name: str = "keys") -> SigstorePolicy:
    """The shared parameters: ``keys``, ``identities``, trust material and ``requireTlog``."""
    keys = parse_keys(node, keys_name)
    identities = parse_identities(node)
    trust = parse_trust(node)
    require_tlog = node.flag("require_tlog", require_tlog_default)
    ignore_sct = node.flag("insecure_ignore_sct", False)
    if identities and not trust.fulcio:
        node.error("keyless identities need Fulcio roots (fulcioRoots or trustedRoot)", "identities")
    if identities and not trust.ctlogs and not ignore_sct:
        node.error(
            "keyless identities need CT log keys (ctLogKeys or a trustedRoot with ctlogs) to verify the "
            "certificate's embedded SCT; insecureIgnoreSct: true accepts certificates without one",
            "identities",
        )
    if require_tlog and not trust.rekor:
        node.error("requireTlog needs Rekor public keys (rekorKeys or trustedRoot)", "require_tlog")
    return SigstorePolicy(
        keys=keys, identities=identities, trust=trust, require_tlog=require_tlog, ignore_sct=ignore_sct
    )


def key_fingerprint(key: PublicKey) -> str:
    return fingerprint(key)


# -- DSSE and in-toto ----------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Envelope:
    payload_type: str
    payload: bytes
    signatures: tuple[bytes, ...]


def pae(payload_type: str, payload: bytes) -> bytes:
    """DSSE pre-authentication encoding."""
    kind = payload_type.encode()
    return b"DSSEv1 %d %s %d %s" % (len(kind), kind, len(payload), payload)


def parse_envelope(doc: object) -> Envelope:
    """A DSSE envelope (JSON bytes or an already-decoded object)."""
    if isinstance(doc, bytes | str):
        try:
            doc = json.loads(doc)
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise Rejected("DSSE envelope is not JSON") from None
    if not isinstance(doc, dict):
        raise Rejected("DSSE envelope is not a JSON object")
    payload_type = doc.get("payloadType")
    if not isinstance(payload_type, str):
        raise Rejected("DSSE envelope has no payloadType")
    payload = b64decode(doc.get("payload"), "DSSE payload")
    raw_sigs = doc.get("signatures")
    if not isinstance(raw_sigs, list) or not raw_sigs:
        raise Rejected("DSSE envelope has no signatures")
    sigs = tuple(b64decode(s.get("sig") if isinstance(s, dict) else None, "DSSE signature") for s in raw_sigs[:16])
    return Envelope(payload_type, payload, sigs)


@dataclass(frozen=True, slots=True)
class Statement:
    type: str
    subjects: tuple[Mapping[str, Any], ...]
    predicate_type: str
    predicate: Any
    raw: Mapping[str, Any]

    def names_digest(self, digest: str) -> bool:
        """True when a subject's digest equals ``digest`` (``alg:hex``; hex compared case-insensitively)."""
        alg, _, hex_value = digest.partition(":")
        return any(
            isinstance(s.get("digest"), dict)
            and isinstance(s["digest"].get(alg), str)
            and s["digest"][alg].lower() == hex_value.lower()
            for s in self.subjects
        )

    def subject_digests(self) -> list[str]:
        out: list[str] = []
        for s in self.subjects:
            digest = s.get("digest")
            if isinstance(digest, dict):
                out.extend(f"{k}:{v}" for k, v in digest.items() if isinstance(v, str))
        return out


def parse_statement(payload_type: str, payload: bytes) -> Statement:
    """An in-toto Statement v0.1 or v1 (``application/vnd.in-toto+json``)."""
    if payload_type != INTOTO_PAYLOAD_TYPE:
        raise Rejected(f"DSSE payloadType is {payload_type!r}, not {INTOTO_PAYLOAD_TYPE!r}")
    try:
        doc = json.loads(payload)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise Rejected("in-toto payload is not JSON") from None
    if not isinstance(doc, dict):
        raise Rejected("in-toto payload is not a JSON object")
    kind = doc.get("_type")
    if kind not in STATEMENT_TYPES:
        raise Rejected(f"in-toto payload type {kind!r} is not a Statement v0.1 or v1")
    subjects = doc.get("subject")
    predicate_type = doc.get("predicateType")
    if not isinstance(subjects, list) or not subjects or not all(isinstance(s, dict) for s in subjects):
        raise Rejected("in-toto Statement has no subjects")
    if not isinstance(predicate_type, str) or not predicate_type:
        raise Rejected("in-toto Statement has no predicateType")
    return Statement(str(kind), tuple(subjects), predicate_type, doc.get("predicate"), doc)
