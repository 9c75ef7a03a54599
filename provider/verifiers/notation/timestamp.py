"""RFC 3161 timestamp countersignatures (with RFC 5816 ``signing-certificate-v2``), verified by hand.

``asn1crypto`` parses the CMS structures leniently (GlobalSign tokens list their certificates in non-DER order,
which strict DER parsers reject); ``cryptography`` does every signature check. What is checked follows
notation-go (``tspclient-go``): TSTInfo v1 whose ``messageImprint`` is the hash of the envelope's signature
bytes, a v1 SignerInfo with signed attributes (content type, message digest, signing-certificate-v2 naming the
signing certificate by hash), a signature by that certificate, and a chain from it to a ``tsa:`` store
certificate that is valid at ``genTime`` and meets the timestamping certificate rules.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from asn1crypto import cms, tsp  # type: ignore[import-untyped]
from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

from provider.verifiers.notation import x509 as nx509

BASELINE_POLICY = "0.4.0.2023.1.1"
_HASHES: dict[str, type[hashes.SHA256] | type[hashes.SHA384] | type[hashes.SHA512]] = {
    "sha256": hashes.SHA256,
    "sha384": hashes.SHA384,
    "sha512": hashes.SHA512,
}
_MAX_CHAIN = 8


class TimestampError(Exception):
    """The countersignature is missing, malformed, untrusted or does not fit the signature."""


@dataclass(frozen=True, slots=True)
class Timestamp:
    gen_time: datetime
    accuracy: timedelta
    policy: str
    chain: tuple[x509.Certificate, ...]

    @property
    def lower(self) -> datetime:
        return self.gen_time - self.accuracy

    @property
    def upper(self) -> datetime:
        return self.gen_time + self.accuracy

    @property
    def authority(self) -> str:
        return nx509.subject(self.chain[0])


def _digest(name: str, data: bytes) -> bytes:
    if name not in _HASHES:
        raise TimestampError(f"hash algorithm {name} is not allowed (SHA-256, SHA-384 or SHA-512)")
    h = hashes.Hash(_HASHES[name]())
    h.update(data)
    return h.finalize()


def verify_token(token: bytes, signature: bytes, trusted: Sequence[x509.Certificate]) -> Timestamp:
    """Verify ``token`` as a countersignature of ``signature`` by a TSA chaining to ``trusted``."""
    try:
        return _verify(token, signature, trusted)
    except (ValueError, TypeError, KeyError, AttributeError, IndexError, OverflowError) as exc:
        raise TimestampError(f"timestamp token is malformed ({type(exc).__name__}: {exc})") from None


def _verify(token: bytes, signature: bytes, trusted: Sequence[x509.Certificate]) -> Timestamp:
    info = cms.ContentInfo.load(token, strict=True)
    if info["content_type"].native != "signed_data":
        raise TimestampError("timestamp token is not CMS SignedData")
    signed = info["content"]
    encap = signed["encap_content_info"]
    if encap["content_type"].native != "tst_info":
        raise TimestampError(f"timestamp token content type is {encap['content_type'].native}, not TSTInfo")
    tst_bytes = encap["content"].contents
    tst = tsp.TSTInfo.load(tst_bytes, strict=True)
    if tst["version"].native != "v1":
        raise TimestampError(f"TSTInfo version {tst['version'].native} is not v1")
    imprint = tst["message_imprint"]
    if imprint["hashed_message"].native != _digest(imprint["hash_algorithm"]["algorithm"].native, signature):
        raise TimestampError("timestamp messageImprint does not match the signature")
    gen_time: datetime = tst["gen_time"].native
    policy: str = tst["policy"].dotted
    accuracy = _accuracy(tst, policy)
    if gen_time.year >= 9999 or gen_time.year <= 1:
        raise TimestampError(f"timestamp genTime {gen_time} is out of range")
    certificates = [
        x509.load_der_x509_certificate(choice.chosen.dump())
        for choice in signed["certificates"]
        if choice.name == "certificate"
    ]
    problems: list[str] = []
    for signer in signed["signer_infos"]:
        try:
            chain = _verify_signer(signer, tst_bytes, certificates, trusted, gen_time)
        except TimestampError as exc:
            problems.append(str(exc))
            continue
        return Timestamp(gen_time=gen_time, accuracy=accuracy, policy=policy, chain=chain)
    raise TimestampError("; ".join(problems) or "timestamp token has no signer")


MAX_ACCURACY = timedelta(days=1)


def _accuracy(tst: tsp.TSTInfo, policy: str) -> timedelta:
    parts = tst["accuracy"].native or {}
    seconds, millis, micros = (parts.get(k) or 0 for k in ("seconds", "millis", "micros"))
    if not (seconds or millis or micros) and policy == BASELINE_POLICY:
        return timedelta(seconds=1)
    # RFC 3161 bounds millis and micros to 1..999; a token claiming more than a day of slack is not a timestamp.
    if not (0 <= seconds <= MAX_ACCURACY.total_seconds() and 0 <= millis <= 999 and 0 <= micros <= 999):
        raise TimestampError(f"timestamp accuracy {parts} is out of range")
    return timedelta(seconds=seconds, milliseconds=millis, microseconds=micros)


def _attribute(signer: cms.SignerInfo, name: str) -> object:
    values = [a["values"] for a in signer["signed_attrs"] if a["type"].native == name]
    if len(values) != 1 or len(values[0]) != 1:
        raise TimestampError(f"timestamp signer must carry exactly one {name} attribute")
    return values[0][0]


def _signing_certificate(signer: cms.SignerInfo, certificates: Sequence[x509.Certificate]) -> x509.Certificate:
    """The certificate named by signing-certificate-v2 (issuerSerial, else the sid), checked by hash."""
    attribute = _attribute(signer, "signing_certificate_v2")
    cert_ids = attribute["certs"]  # type: ignore[index]
    if len(cert_ids) == 0:
        raise TimestampError("signing-certificate-v2 names no certificate")
    cert_id = cert_ids[0]
    issuer_serial = cert_id["issuer_serial"]
    if issuer_serial.native is not None:
        names = [g.chosen for g in issuer_serial["issuer"] if g.name == "directory_name"]
        if not names:
            raise TimestampError("signing-certificate-v2 issuerSerial has no directory name")
        issuer, serial = names[0], issuer_serial["serial_number"].native
    else:
        sid = signer["sid"].chosen
        issuer, serial = sid["issuer"], sid["serial_number"].native
    candidate = next(
        (
            c
            for c in certificates
            if c.serial_number == serial and cms.Certificate.load(nx509.der(c)).issuer.hashable == issuer.hashable
        ),
        None,
    )
    if candidate is None:
        raise TimestampError("the TSA signing certificate is not in the timestamp token")
    algorithm = cert_id["hash_algorithm"]["algorithm"].native or "sha256"
    if cert_id["cert_hash"].native != _digest(algorithm, nx509.der(candidate)):
        raise TimestampError("signing-certificate-v2 hash does not match the TSA signing certificate")
    return candidate


def _verify_signer(
    signer: cms.SignerInfo,
    tst_bytes: bytes,
    certificates: Sequence[x509.Certificate],
    trusted: Sequence[x509.Certificate],
    gen_time: datetime,
) -> tuple[x509.Certificate, ...]:
    if signer["version"].native != "v1" or signer["sid"].name != "issuer_and_serial_number":
        raise TimestampError("timestamp signer info must be version 1 with issuerAndSerialNumber")
    if signer["signed_attrs"].native is None:
        raise TimestampError("timestamp signer info has no signed attributes")
    digest_name = signer["digest_algorithm"]["algorithm"].native
    if _attribute(signer, "content_type").native != "tst_info":  # type: ignore[attr-defined]
        raise TimestampError("signed content-type attribute is not TSTInfo")
    if _attribute(signer, "message_digest").native != _digest(digest_name, tst_bytes):  # type: ignore[attr-defined]
        raise TimestampError("signed message-digest attribute does not match the TSTInfo")
    cert = _signing_certificate(signer, certificates)
    signed_attrs = b"\x31" + signer["signed_attrs"].dump()[1:]
    _check_signature(signer, cert, digest_name, signed_attrs)
    chain = _build_chain(cert, [*certificates, *trusted], trusted, gen_time)
    try:
        nx509.validate_timestamping_chain(chain)
    except nx509.ChainError as exc:
        raise TimestampError(f"timestamping certificate chain is invalid: {exc}") from None
    signing_times = [a["values"][0].native for a in signer["signed_attrs"] if a["type"].native == "signing_time"]
    for when in signing_times:
        if not all(nx509.valid_at(c, when) for c in chain):
            raise TimestampError(f"timestamp signing-time {when.isoformat()} is outside the TSA chain's validity")
    return chain


def _check_signature(signer: cms.SignerInfo, cert: x509.Certificate, digest_name: str, data: bytes) -> None:
    algorithm = signer["signature_algorithm"]
    kind = algorithm.signature_algo
    try:
        declared = algorithm.hash_algo
    except ValueError:
        declared = digest_name
    if declared != digest_name:
        raise TimestampError(f"timestamp signature hash {declared} differs from the digest algorithm {digest_name}")
    if digest_name not in _HASHES:
        raise TimestampError(f"timestamp digest algorithm {digest_name} is not allowed")
    hash_algorithm = _HASHES[digest_name]()
    key = cert.public_key()
    value = signer["signature"].native
    try:
        if kind == "rsassa_pkcs1v15" and isinstance(key, rsa.RSAPublicKey):
            key.verify(value, data, padding.PKCS1v15(), hash_algorithm)
        elif kind == "rsassa_pss" and isinstance(key, rsa.RSAPublicKey):
            params = algorithm["parameters"]
            if params["hash_algorithm"]["algorithm"].native != digest_name:
                raise TimestampError("RSASSA-PSS parameters name a different hash")
            pss = padding.PSS(mgf=padding.MGF1(hash_algorithm), salt_length=params["salt_length"].native)
            key.verify(value, data, pss, hash_algorithm)
        elif kind == "ecdsa" and isinstance(key, ec.EllipticCurvePublicKey):
            key.verify(value, data, ec.ECDSA(hash_algorithm))
        else:
            raise TimestampError(f"timestamp signature algorithm {kind} does not fit the TSA key")
    except (InvalidSignature, UnsupportedAlgorithm):
        raise TimestampError("timestamp signature does not verify with the TSA certificate") from None


def _build_chain(
    leaf: x509.Certificate,
    pool: Sequence[x509.Certificate],
    trusted: Sequence[x509.Certificate],
    when: datetime,
) -> tuple[x509.Certificate, ...]:
    """Depth-first from the TSA certificate to a trusted one, every link valid at ``when``."""
    anchors = {nx509.der(c) for c in trusted}

    def walk(path: list[x509.Certificate]) -> list[x509.Certificate] | None:
        current = path[-1]
        if not nx509.valid_at(current, when):
            return None
        if nx509.der(current) in anchors:
            return path
        if len(path) >= _MAX_CHAIN:
            return None
        seen = {nx509.der(c) for c in path}
        for candidate in pool:
            if nx509.der(candidate) in seen or not nx509.is_issued_by(current, candidate):
                continue
            found = walk([*path, candidate])
            if found is not None:
                return found
        return None

    chain = walk([leaf])
    if chain is None:
        raise TimestampError(
            f"TSA certificate {nx509.subject(leaf)!r} does not chain to a trusted tsa store certificate valid at "
            f"{when.isoformat()}"
        )
    return tuple(chain)
