"""The ``pgp`` verifier: OpenPGP-signed attestations (Grafeas occurrences, containers/image signatures).

Accepts the three OpenPGP forms: a cleartext-signed message (``gpg --clearsign``), a signed message with the
payload inside (``gpg --sign``, armored or binary — what containers/image and ``skopeo standalone-sign`` write),
and a detached signature over the attestation's ``serializedPayload``.

Cryptography, packet parsing and certificate validity (binding signatures, subkeys, hard revocations, SHA-1
rejection, a key alive when it signed) are Sequoia's, through ``pysequoia``, with the certificates in memory: no
keyring on disk. Referee adds what containers/image's GPGME verifier also demands: a key or signing subkey that is
expired or revoked *at verification time* fails, as does an expired signature (``request.now``). Before Sequoia
sees a message, its packet structure is checked here (at most 64 packets, the message grammar of RFC 4880 §11.3, at
most one compressed packet, at the top level) and compression is inflated here with a bound and removed, so nothing
Sequoia parses can expand (it bounds no decompression): a small signature cannot exhaust memory.
"""

from __future__ import annotations

import base64
import binascii
import bz2
import re
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pysequoia
from pysequoia.packet import HashAlgorithm, PacketPile, SignatureType, Tag

from provider.attestations import Attestation, SignatureEntry
from provider.confignode import Node
from provider.verifiers.base import VerifierSpec, verifier_types
from provider.verifiers.claims import (
    DEFAULT_ARTIFACT_TYPES,
    AttestationVerifier,
    Checked,
    ClaimPolicy,
    parse_claim_policy,
    parse_notes,
)

MAX_SIGNATURE_BYTES = 256 * 1024
MAX_SIGNED_BYTES = 1024 * 1024
MAX_KEY_FILE_BYTES = 1024 * 1024
_ARMOR_BEGIN = re.compile(rb"^-----BEGIN PGP ([A-Z ,0-9/]+)-----\s*$")
_CLEARTEXT = b"-----BEGIN PGP SIGNED MESSAGE-----"
_TAG_SIGNATURE, _TAG_ONE_PASS, _TAG_COMPRESSED, _TAG_LITERAL = 2, 4, 8, 11
_WEAK_HASHES = ((HashAlgorithm.SHA1, "SHA-1"), (HashAlgorithm.MD5, "MD5"), (HashAlgorithm.RipeMD, "RIPEMD-160"))


@dataclass(frozen=True, slots=True)
class SubkeyState:
    fingerprint: str
    expires: datetime | None
    revoked: bool


@dataclass(frozen=True, slots=True, eq=False)
class PgpKey:
    """A configured OpenPGP certificate (public part only) with what Referee checks at verification time."""

    cert: pysequoia.Cert
    fingerprint: str
    source: str
    ids: frozenset[str]
    subkeys: Mapping[str, SubkeyState]
    revoked: bool

    @property
    def expires(self) -> datetime | None:
        return _utc(self.cert.expiration)


def _utc(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def _short_error(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def load_pgp_keys(data: bytes, source: str) -> list[PgpKey]:
    """Parse one or more OpenPGP certificates (armored or binary); raise ValueError with a user-facing reason."""
    try:
        certs = pysequoia.Cert.split_bytes(data)
        secret = any(p.tag in (Tag.SecretKey, Tag.SecretSubkey) for p in PacketPile.from_bytes(data))
    except Exception as exc:
        raise ValueError(f"not an OpenPGP public key ({_short_error(exc)})") from None
    if not certs:
        raise ValueError("not an OpenPGP public key (no certificate found)")
    if secret:
        raise ValueError(f"{certs[0].fingerprint.upper()} contains secret key material; configure the public key only")
    return [_describe(cert, source) for cert in certs]


def _describe(cert: pysequoia.Cert, source: str) -> PgpKey:
    """Subkey expiry and revocations from the certificate's own packets (the certificate is configuration,
    and a revocation packet counts even if it does not verify: that only makes the check stricter)."""
    ids: set[str] = set()
    subkeys: dict[str, SubkeyState] = {}
    revoked = cert.is_revoked
    current: str | None = None
    created: datetime | None = None
    newest: datetime | None = None
    for packet in PacketPile.from_bytes(bytes(cert)):
        if packet.tag in (Tag.PublicKey, Tag.PublicSubkey):
            fpr = (packet.fingerprint or "").lower()
            ids.update({fpr, (packet.key_id or "").lower()})
            current = fpr if packet.tag == Tag.PublicSubkey else None
            created, newest = _utc(packet.key_created), None
            if current:
                subkeys[current] = SubkeyState(current, None, False)
            continue
        if packet.tag != Tag.Signature:
            continue
        kind = packet.signature_type
        if kind == SignatureType.KeyRevocation:
            revoked = True
        elif current and kind == SignatureType.SubkeyRevocation:
            subkeys[current] = SubkeyState(current, subkeys[current].expires, True)
        elif current and kind == SignatureType.SubkeyBinding:
            made = _utc(packet.signature_created)
            if made is not None and (newest is None or made >= newest):
                newest = made
                period = packet.key_validity_period
                expires = created + period if created is not None and period else None
                subkeys[current] = SubkeyState(current, expires, subkeys[current].revoked)
    ids.discard("")
    return PgpKey(cert, cert.fingerprint.upper(), source, frozenset(ids), subkeys, revoked)


def parse_pgp_keys(node: Node, name: str) -> tuple[PgpKey, ...]:
    """``<name>``: a list of ASCII-armored public keys given inline or as paths to key files."""

    def parse(item: object, path: str) -> tuple[PgpKey, ...] | None:
        if not isinstance(item, str) or not item.strip():
            node.problems.add(path, "expected an ASCII-armored public key or a file path")
            return None
        if "-----BEGIN PGP" in item:
            data: bytes | None = item.encode()
            source = "inline"
        else:
            data = node.problems.read_file(item, path, max_bytes=MAX_KEY_FILE_BYTES)
            source = item
        if data is None:
            return None
        try:
            return tuple(load_pgp_keys(data, source))
        except ValueError as exc:
            node.problems.add(path, str(exc))
            return None

    keys = [key for group in node.parse_each(name, parse) for key in group]
    seen: set[str] = set()
    for key in keys:
        if key.fingerprint in seen:
            node.error(f"key {key.fingerprint} is listed twice", name)
        seen.add(key.fingerprint)
    return tuple(keys)


# -- message framing ---------------------------------------------------------------------------------------


class _UnreadableError(ValueError):
    pass


def _dearmor(blob: bytes) -> bytes:
    lines = blob.splitlines()
    start = next((i for i, line in enumerate(lines) if _ARMOR_BEGIN.match(line.strip())), None)
    if start is None:
        raise _UnreadableError("no OpenPGP armor header")
    body: list[bytes] = []
    in_headers = True
    for line in lines[start + 1 :]:
        text = line.strip()
        if text.startswith(b"-----END PGP"):
            break
        if in_headers:
            if not text:
                in_headers = False
                continue
            if b": " in text:
                continue
            in_headers = False
        if text.startswith(b"=") and len(text) == 5:
            break
        body.append(text)
    try:
        return base64.b64decode(b"".join(body), validate=True)
    except (binascii.Error, ValueError):
        raise _UnreadableError("armored data is not base64") from None


def _packet(data: bytes, offset: int = 0) -> tuple[int, bytes, int]:
    """``(tag, body, end)`` of the packet at ``offset`` (RFC 4880 §4.2, old and new formats, partial lengths)."""
    if offset >= len(data) or not data[offset] & 0x80:
        raise _UnreadableError("not an OpenPGP packet")
    first = data[offset]
    i = offset + 1
    if not first & 0x40:
        tag, length_type = (first >> 2) & 0x0F, first & 0x03
        if length_type == 3:
            return tag, data[i:], len(data)
        size = 1 << length_type
        if i + size > len(data):
            raise _UnreadableError("truncated OpenPGP packet")
        length = int.from_bytes(data[i : i + size], "big")
        i += size
        if i + length > len(data):
            raise _UnreadableError("truncated OpenPGP packet")
        return tag, data[i : i + length], i + length
    tag = first & 0x3F
    chunks: list[bytes] = []
    while True:
        if i >= len(data):
            raise _UnreadableError("truncated OpenPGP packet")
        o1 = data[i]
        if o1 < 192:
            length, i = o1, i + 1
        elif o1 < 224:
            if i + 1 >= len(data):
                raise _UnreadableError("truncated OpenPGP packet")
            length, i = ((o1 - 192) << 8) + data[i + 1] + 192, i + 2
        elif o1 == 255:
            length, i = int.from_bytes(data[i + 1 : i + 5], "big"), i + 5
        else:
            partial = 1 << (o1 & 0x1F)
            chunks.append(data[i + 1 : i + 1 + partial])
            i += 1 + partial
            continue
        if i + length > len(data):
            raise _UnreadableError("truncated OpenPGP packet")
        chunks.append(data[i : i + length])
        return tag, b"".join(chunks), i + length


def _inflate(body: bytes, limit: int) -> bytes:
    """A Compressed Data packet body, inflated to at most ``limit`` bytes."""
    if not body:
        raise _UnreadableError("empty compressed packet")
    algorithm, data = body[0], body[1:]
    try:
        if algorithm == 0:
            out = data
        elif algorithm in (1, 2):
            out = zlib.decompressobj(-15 if algorithm == 1 else 15).decompress(data, limit + 1)
        elif algorithm == 3:
            out = bz2.BZ2Decompressor().decompress(data, limit + 1)
        else:
            raise _UnreadableError(f"unknown compression algorithm {algorithm}")
    except (zlib.error, OSError, EOFError):
        raise _UnreadableError("compressed data is corrupt") from None
    if len(out) > limit:
        raise _UnreadableError(f"signed message expands beyond {limit} bytes")
    return out


MAX_PACKETS = 64


def _packets(data: bytes) -> list[tuple[int, bytes, bytes]]:
    """Every top-level packet of ``data`` as ``(tag, body, raw bytes)``, at most ``MAX_PACKETS``."""
    out: list[tuple[int, bytes, bytes]] = []
    offset = 0
    while offset < len(data):
        if len(out) >= MAX_PACKETS:
            raise _UnreadableError(f"more than {MAX_PACKETS} OpenPGP packets")
        tag, body, end = _packet(data, offset)
        out.append((tag, body, data[offset:end]))
        offset = end
    return out


def _only_signatures(data: bytes, what: str) -> bytes:
    packets = _packets(data)
    if not packets or any(tag != _TAG_SIGNATURE for tag, _, _ in packets):
        raise _UnreadableError(f"{what} may hold only signature packets")
    return data


def _signed_message(data: bytes) -> bytes:
    """An attached signed message without compression: ``[one-pass…] literal [signature…]`` or ``signature…
    literal`` (RFC 4880 §11.3), with at most one Compressed Data packet, at the top level, inflated here within
    ``MAX_SIGNED_BYTES`` — so nothing Sequoia later parses can expand (it bounds no decompression). A signature covers
    the literal data, not the compression around it, so the message verifies the same."""
    packets = _packets(data)
    compressed = [i for i, (tag, _, _) in enumerate(packets) if tag == _TAG_COMPRESSED]
    if len(compressed) > 1:
        raise _UnreadableError("more than one compressed packet")
    if compressed:
        i = compressed[0]
        inner = _packets(_inflate(packets[i][1], MAX_SIGNED_BYTES))
        if any(tag == _TAG_COMPRESSED for tag, _, _ in inner):
            raise _UnreadableError("nested compression is not accepted")
        packets = [*packets[:i], *inner, *packets[i + 1 :]]
    tags = [tag for tag, _, _ in packets]
    if tags.count(_TAG_LITERAL) != 1:
        raise _UnreadableError("a signed message holds exactly one literal data packet")
    if any(tag not in (_TAG_ONE_PASS, _TAG_LITERAL, _TAG_SIGNATURE) for tag in tags):
        raise _UnreadableError("unexpected OpenPGP packet in a signed message")
    literal = tags.index(_TAG_LITERAL)
    before, after = tags[:literal], tags[literal + 1 :]
    if not after and not before:
        raise _UnreadableError("a signed message without a signature")
    if after and not all(tag == _TAG_SIGNATURE for tag in after):
        raise _UnreadableError("only signatures may follow the literal data")
    if before and not (
        all(tag == _TAG_ONE_PASS for tag in before) or (not after and all(tag == _TAG_SIGNATURE for tag in before))
    ):
        raise _UnreadableError("malformed signed message")
    return b"".join(raw for _, _, raw in packets)


def _cleartext_signature(blob: bytes) -> bytes:
    """The signature block of a cleartext-signed message, checked to hold only signature packets."""
    start = blob.find(b"-----BEGIN PGP SIGNATURE-----")
    if start < 0:
        raise _UnreadableError("cleartext-signed message without a signature block")
    return _only_signatures(_dearmor(blob[start:]), "the signature block")


def _frame(blob: bytes) -> tuple[str, bytes, bytes]:
    """``(form, bytes for Sequoia, the signature packets)`` with form ``cleartext``, ``attached`` or ``detached``.
    Nothing handed on can expand: compression is removed here, within bounds."""
    head = blob.lstrip()[:64]
    if head.startswith(_CLEARTEXT):
        return "cleartext", blob, _cleartext_signature(blob)
    binary = _dearmor(blob) if head.startswith(b"-----BEGIN PGP") else blob
    tag, _, _ = _packet(binary)
    if tag == _TAG_SIGNATURE and all(t == _TAG_SIGNATURE for t, _, _ in _packets(binary)):
        return "detached", binary, binary
    if tag in (_TAG_SIGNATURE, _TAG_COMPRESSED, _TAG_ONE_PASS, _TAG_LITERAL):
        message = _signed_message(binary)
        return "attached", message, message
    raise _UnreadableError(f"OpenPGP packet {tag} does not start a signed message")


def looks_like_openpgp(signature: bytes) -> bool:
    head = signature.lstrip()[:32]
    if head.startswith(b"-----BEGIN PGP"):
        return True
    return bool(head) and bool(head[0] & 0x80) and _header_tag(head[0]) in (2, 4, 8, 11)


def _header_tag(first: int) -> int:
    return first & 0x3F if first & 0x40 else (first >> 2) & 0x0F


@dataclass(frozen=True, slots=True)
class _SigInfo:
    issuers: frozenset[str]
    created: datetime | None
    expires: datetime | None
    weak_hash: str | None = None


def _signature_packets(data: bytes) -> list[_SigInfo]:
    found: list[_SigInfo] = []
    for packet in PacketPile.from_bytes(data):
        if packet.tag == Tag.Signature:
            ids = {packet.issuer_fingerprint, packet.issuer_key_id}
            found.append(
                _SigInfo(
                    frozenset(i.lower() for i in ids if i),
                    _utc(packet.signature_created),
                    _utc(packet.signature_expiration_time),
                    next((name for algo, name in _WEAK_HASHES if packet.hash_algorithm == algo), None),
                )
            )
        elif packet.tag == Tag.OnePassSig and packet.ops_issuer:
            found.append(_SigInfo(frozenset({packet.ops_issuer.lower()}), None, None))
    return found


class PgpChecker:
    """Checks OpenPGP signatures against configured certificates."""

    def __init__(self, keys: tuple[PgpKey, ...]) -> None:
        self._keys = keys

    def claims(self, entry: SignatureEntry) -> bool:
        return entry.embedded_payload is None and looks_like_openpgp(entry.signature)

    def unclaimed(self, entry: SignatureEntry) -> str:
        return "not an OpenPGP signature"

    def _matching(self, issuers: frozenset[str]) -> list[PgpKey]:
        return [k for k in self._keys if k.ids & issuers]

    def check(self, entry: SignatureEntry, attestation: Attestation, now: datetime) -> Checked | str:
        if len(entry.signature) > MAX_SIGNATURE_BYTES:
            return f"OpenPGP signature over {MAX_SIGNATURE_BYTES} bytes"
        try:
            form, data, signature_packets = _frame(entry.signature)
            signatures = _signature_packets(signature_packets)
        except _UnreadableError as exc:
            return f"not a valid OpenPGP signed message: {exc}"
        except Exception as exc:
            return f"not a valid OpenPGP signed message: {_short_error(exc)}"
        issuers = frozenset().union(*(s.issuers for s in signatures)) if signatures else frozenset()
        keys = self._matching(issuers)
        if not keys:
            full = {i for i in issuers if len(i) > 16}
            shown = full | {i for i in issuers if len(i) <= 16 and not any(f.endswith(i) for f in full)}
            named = ", ".join(sorted(i.upper() for i in shown)) or "an unnamed key"
            return f"signed by {named}, which is not a configured key"
        usable = [k for k in keys if not k.revoked]
        if not usable:
            return "; ".join(f"key {k.fingerprint} is revoked" for k in keys)
        keys = usable
        if form == "detached" and attestation.payload is None:
            return "detached OpenPGP signature, but the attestation carries no serializedPayload to check it against"
        try:
            result = self._sequoia(form, data, attestation.payload, keys)
        except Exception:
            return self._why_not(keys, signatures, now)
        valid = [s for s in result.valid_sigs if any(k.fingerprint.lower() == s.certificate for k in keys)]
        if not valid:
            return self._why_not(keys, signatures, now)
        certificate, signing_key = valid[0].certificate, valid[0].signing_key
        key = next(k for k in keys if k.fingerprint.lower() == certificate)
        problem = self._at(key, signing_key, signatures, now)
        if problem is not None:
            return problem
        payload = attestation.payload if form == "detached" else result.bytes
        if payload is None:
            return "OpenPGP message carried no signed content"
        if form != "detached" and attestation.payload is not None and not _same(payload, attestation.payload, form):
            return f"signature by {key.fingerprint} verified, but serializedPayload differs from the signed content"
        facts: dict[str, Any] = {"keyFingerprint": key.fingerprint, "signatureForm": form}
        if signing_key != certificate:
            facts["signingKey"] = signing_key.upper()
        return Checked(payload=payload, key=key.fingerprint, facts=facts)

    @staticmethod
    def _sequoia(form: str, data: bytes, payload: bytes | None, keys: list[PgpKey]) -> Any:
        certs = [k.cert for k in keys]
        store: Callable[[list[str]], list[pysequoia.Cert]] = lambda _ids: certs  # noqa: E731
        if form == "detached":
            return pysequoia.verify(bytes=payload, store=store, signature=pysequoia.Sig.from_bytes(data))
        return pysequoia.verify(bytes=data, store=store)

    def _at(self, key: PgpKey, signing_key: str, signatures: list[_SigInfo], now: datetime) -> str | None:
        """Validity at ``now`` (verification time), beyond Sequoia's "alive when it signed"."""
        if key.revoked:
            return f"key {key.fingerprint} is revoked"
        if key.expires is not None and key.expires <= now:
            return f"key {key.fingerprint} expired at {key.expires.isoformat()}"
        sub = key.subkeys.get(signing_key)
        if sub is not None:
            if sub.revoked:
                return f"signing subkey {sub.fingerprint.upper()} of {key.fingerprint} is revoked"
            if sub.expires is not None and sub.expires <= now:
                return f"signing subkey {sub.fingerprint.upper()} expired at {sub.expires.isoformat()}"
        info = next((s for s in signatures if signing_key in s.issuers or signing_key[-16:] in s.issuers), None)
        if info is not None:
            if info.expires is not None and info.expires <= now:
                return f"signature by {key.fingerprint} expired at {info.expires.isoformat()}"
            if info.created is not None and info.created > now:
                return f"signature by {key.fingerprint} is dated in the future ({info.created.isoformat()})"
        return None

    @staticmethod
    def _why_not(keys: list[PgpKey], signatures: list[_SigInfo], now: datetime) -> str:
        names = ", ".join(k.fingerprint for k in keys)
        for info in signatures:
            if info.weak_hash is not None:
                return f"signature by {names} uses {info.weak_hash}, which is no longer accepted"
            if info.expires is not None and info.expires <= now:
                return f"signature by {names} expired at {info.expires.isoformat()}"
        for key in keys:
            created = next((s.created for s in signatures if s.created), None)
            if key.expires is not None and created is not None and key.expires <= created:
                return f"key {key.fingerprint} had expired ({key.expires.isoformat()}) when it signed"
        return f"signature by {names} does not verify: the signed content was altered or the signature is corrupt"


def _same(signed: bytes, claimed: bytes, form: str) -> bool:
    if form == "cleartext":
        return _canonical_text(signed) == _canonical_text(claimed)
    return signed == claimed


def _canonical_text(data: bytes) -> bytes:
    return b"\n".join(line.rstrip() for line in data.replace(b"\r\n", b"\n").split(b"\n")).rstrip(b"\n")


@dataclass(frozen=True, slots=True)
class PgpParams:
    keys: tuple[PgpKey, ...]
    notes: frozenset[str]
    claims: ClaimPolicy


@verifier_types.register("pgp")
class PgpPlugin:
    default_artifact_types = DEFAULT_ARTIFACT_TYPES

    def parse_params(self, node: Node) -> PgpParams:
        before = len(node.problems.items)
        keys = parse_pgp_keys(node, "keys")
        if not keys and len(node.problems.items) == before:
            node.error("at least one OpenPGP public key is required", "keys")
        notes = parse_notes(node)
        return PgpParams(keys=keys, notes=notes, claims=parse_claim_policy(node, "matchRepoDigestOrExact"))

    def create(self, spec: VerifierSpec) -> AttestationVerifier:
        params: PgpParams = spec.params
        return AttestationVerifier(spec, [PgpChecker(params.keys)], params.notes, params.claims)
