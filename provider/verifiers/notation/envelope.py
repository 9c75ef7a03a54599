"""What both envelope formats share: the parsed signer information, algorithms and header rules.

The JWS and COSE parsers only decode their wire format; :func:`build_signer_info` then applies the rules of
``signature-specification.md`` that are common to both (signing scheme, times, ``crit``, extended attributes,
certificate chain, algorithm bound to the signing key, the signature itself). Every violation raises
:class:`CheckFailure` for the integrity check: the envelope cannot be trusted to say anything.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from provider.verifiers.notation import x509 as nx509

MEDIA_TYPE_JWS = "application/jose+json"
MEDIA_TYPE_COSE = "application/cose"
ENVELOPE_TYPES = {MEDIA_TYPE_JWS: "jws", MEDIA_TYPE_COSE: "cose"}
PAYLOAD_CONTENT_TYPE = "application/vnd.cncf.notary.payload.v1+json"

SCHEME_X509 = "notary.x509"
SCHEME_SIGNING_AUTHORITY = "notary.x509.signingAuthority"
SCHEMES = (SCHEME_X509, SCHEME_SIGNING_AUTHORITY)

H_SIGNING_SCHEME = "io.cncf.notary.signingScheme"
H_SIGNING_TIME = "io.cncf.notary.signingTime"
H_AUTHENTIC_SIGNING_TIME = "io.cncf.notary.authenticSigningTime"
H_EXPIRY = "io.cncf.notary.expiry"
H_VERIFICATION_PLUGIN = "io.cncf.notary.verificationPlugin"
H_VERIFICATION_PLUGIN_MIN_VERSION = "io.cncf.notary.verificationPluginMinVersion"
H_TIMESTAMP_SIGNATURE = "io.cncf.notary.timestampSignature"
H_SIGNING_AGENT = "io.cncf.notary.signingAgent"
NOTARY_HEADERS = frozenset({H_SIGNING_SCHEME, H_SIGNING_TIME, H_AUTHENTIC_SIGNING_TIME, H_EXPIRY})

INTEGRITY = "integrity"
AUTHENTICITY = "authenticity"
AUTHENTIC_TIMESTAMP = "authenticTimestamp"
EXPIRY = "expiry"
REVOCATION = "revocation"
CHECKS = (INTEGRITY, AUTHENTICITY, AUTHENTIC_TIMESTAMP, EXPIRY, REVOCATION)


class CheckFailure(Exception):
    """A validation failed; ``check`` names which one (integrity unless said otherwise)."""

    def __init__(self, message: str, check: str = INTEGRITY) -> None:
        super().__init__(message)
        self.message = message
        self.check = check


@dataclass(frozen=True, slots=True)
class Algorithm:
    name: str
    hash: type[hashes.SHA256] | type[hashes.SHA384] | type[hashes.SHA512]
    rsa_bits: int | None = None
    curve: str | None = None

    def new_hash(self) -> hashes.HashAlgorithm:
        return self.hash()


ALGORITHMS: dict[str, Algorithm] = {
    "PS256": Algorithm("PS256", hashes.SHA256, rsa_bits=2048),
    "PS384": Algorithm("PS384", hashes.SHA384, rsa_bits=3072),
    "PS512": Algorithm("PS512", hashes.SHA512, rsa_bits=4096),
    "ES256": Algorithm("ES256", hashes.SHA256, curve="secp256r1"),
    "ES384": Algorithm("ES384", hashes.SHA384, curve="secp384r1"),
    "ES512": Algorithm("ES512", hashes.SHA512, curve="secp521r1"),
}
COSE_ALGORITHMS = {-37: "PS256", -38: "PS384", -39: "PS512", -7: "ES256", -35: "ES384", -36: "ES512"}


def algorithm_for_key(cert: x509.Certificate) -> Algorithm:
    """The only algorithm a signing certificate's key may sign with (``Algorithm Selection``)."""
    key = cert.public_key()
    if isinstance(key, rsa.RSAPublicKey):
        found = next((a for a in ALGORITHMS.values() if a.rsa_bits == key.key_size), None)
        if found is None:
            raise CheckFailure(f"signing key RSA {key.key_size} bits is not supported (2048, 3072 or 4096)")
        return found
    if isinstance(key, ec.EllipticCurvePublicKey):
        found = next((a for a in ALGORITHMS.values() if a.curve == key.curve.name), None)
        if found is None:
            raise CheckFailure(f"signing key curve {key.curve.name} is not supported (P-256, P-384 or P-521)")
        return found
    raise CheckFailure(f"signing key type {type(key).__name__} is not supported (RSA or EC)")


def verify_signature(alg: Algorithm, cert: x509.Certificate, signature: bytes, data: bytes) -> None:
    """RSASSA-PSS (salt = hash length) or ECDSA with a raw ``r‖s`` signature, as JWS and COSE encode it."""
    key = cert.public_key()
    try:
        if isinstance(key, rsa.RSAPublicKey) and alg.rsa_bits is not None:
            pss = padding.PSS(mgf=padding.MGF1(alg.new_hash()), salt_length=alg.new_hash().digest_size)
            key.verify(signature, data, pss, alg.new_hash())
            return
        if isinstance(key, ec.EllipticCurvePublicKey) and alg.curve is not None:
            size = (key.curve.key_size + 7) // 8
            if len(signature) != 2 * size:
                raise CheckFailure(f"{alg.name} signature is {len(signature)} bytes, expected {2 * size}")
            r = int.from_bytes(signature[:size], "big")
            s = int.from_bytes(signature[size:], "big")
            key.verify(encode_dss_signature(r, s), data, ec.ECDSA(alg.new_hash()))
            return
    except InvalidSignature:
        raise CheckFailure("signature does not verify with the signing certificate's key") from None
    raise CheckFailure(f"algorithm {alg.name} does not fit the signing key")


@dataclass(frozen=True, slots=True)
class SignerInfo:
    """A verified envelope: integrity holds for everything here except the unsigned attributes."""

    envelope: str
    payload: bytes
    algorithm: str
    signing_scheme: str
    signing_time: datetime
    expiry: datetime | None
    chain: tuple[x509.Certificate, ...]
    signature: bytes
    timestamp_token: bytes | None
    signing_agent: str | None
    extended: Mapping[object, object] = field(default_factory=dict)

    @property
    def leaf(self) -> x509.Certificate:
        return self.chain[0]


@dataclass(frozen=True, slots=True)
class RawEnvelope:
    """What a wire-format parser hands over (values already type-checked, nothing verified)."""

    envelope: str
    algorithm: str
    content_type: str
    signing_scheme: str
    signing_time: datetime | None
    authentic_signing_time: datetime | None
    expiry: datetime | None
    crit: Sequence[object]
    protected_keys: frozenset[object]
    extended: Mapping[object, object]
    chain_der: Sequence[bytes]
    signature: bytes
    signed_bytes: bytes
    payload: bytes
    timestamp_token: bytes | None
    signing_agent: str | None


def build_signer_info(raw: RawEnvelope, registered: frozenset[object]) -> SignerInfo:
    """Apply the envelope-independent integrity rules; ``registered`` lists labels ``crit`` may not name."""
    if raw.algorithm not in ALGORITHMS:
        raise CheckFailure(f"signature algorithm {raw.algorithm!r} is not allowed (PS256/384/512, ES256/384/512)")
    if raw.content_type != PAYLOAD_CONTENT_TYPE:
        raise CheckFailure(f"payload content type {raw.content_type!r} is not {PAYLOAD_CONTENT_TYPE}")
    if not raw.payload:
        raise CheckFailure("payload is empty")
    if not raw.signature:
        raise CheckFailure("signature is empty")
    signing_time = _check_scheme(raw)
    _check_crit(raw, registered)
    if raw.expiry is not None and raw.expiry <= signing_time:
        raise CheckFailure("expiry is not after the signing time")
    if not raw.chain_der:
        raise CheckFailure("certificate chain is missing")
    try:
        chain = tuple(nx509.parse_certificate(d, f"certificate {i} of the chain") for i, d in enumerate(raw.chain_der))
    except nx509.CertificateError as exc:
        raise CheckFailure(str(exc)) from None
    expected = algorithm_for_key(chain[0])
    if expected.name != raw.algorithm:
        raise CheckFailure(f"algorithm {raw.algorithm} does not match the signing key, which requires {expected.name}")
    verify_signature(expected, chain[0], raw.signature, raw.signed_bytes)
    try:
        nx509.validate_code_signing_chain(chain)
    except nx509.ChainError as exc:
        raise CheckFailure(f"certificate chain is invalid: {exc}") from None
    return SignerInfo(
        envelope=raw.envelope,
        payload=raw.payload,
        algorithm=raw.algorithm,
        signing_scheme=raw.signing_scheme,
        signing_time=signing_time,
        expiry=raw.expiry,
        chain=chain,
        signature=raw.signature,
        timestamp_token=raw.timestamp_token,
        signing_agent=raw.signing_agent,
        extended=dict(raw.extended),
    )


def _check_scheme(raw: RawEnvelope) -> datetime:
    if raw.signing_scheme == SCHEME_X509:
        if raw.authentic_signing_time is not None:
            raise CheckFailure(f"{H_AUTHENTIC_SIGNING_TIME} must not be present for {SCHEME_X509}")
        if raw.signing_time is None:
            raise CheckFailure(f"{H_SIGNING_TIME} is required for {SCHEME_X509}")
        return raw.signing_time
    if raw.signing_scheme == SCHEME_SIGNING_AUTHORITY:
        if raw.signing_time is not None:
            raise CheckFailure(f"{H_SIGNING_TIME} must not be present for {SCHEME_SIGNING_AUTHORITY}")
        if raw.authentic_signing_time is None:
            raise CheckFailure(f"{H_AUTHENTIC_SIGNING_TIME} is required for {SCHEME_SIGNING_AUTHORITY}")
        return raw.authentic_signing_time
    raise CheckFailure(f"unsupported signing scheme {raw.signing_scheme!r}")


def _check_crit(raw: RawEnvelope, registered: frozenset[object]) -> None:
    if not raw.crit:
        raise CheckFailure("crit header is missing or empty")
    if len(set(map(repr, raw.crit))) != len(raw.crit):
        raise CheckFailure("crit header lists a parameter twice")
    required = {H_SIGNING_SCHEME}
    if raw.expiry is not None:
        required.add(H_EXPIRY)
    if raw.signing_scheme == SCHEME_SIGNING_AUTHORITY:
        required.add(H_AUTHENTIC_SIGNING_TIME)
    for label in raw.crit:
        if label in registered:
            raise CheckFailure(f"crit header must not list the registered header {label!r}")
        if label not in raw.protected_keys:
            raise CheckFailure(f"header {label!r} is marked critical but not present")
    missing = sorted(required - set(raw.crit))
    if missing:
        raise CheckFailure(f"required headers not marked critical: {', '.join(missing)}")
    for key in raw.extended:
        if key in (H_VERIFICATION_PLUGIN, H_VERIFICATION_PLUGIN_MIN_VERSION):
            raise CheckFailure(f"signature requires verification plugin {raw.extended[key]!r} ({key}), not supported")
    unknown = sorted(str(k) for k in raw.extended if k in raw.crit)
    if unknown:
        raise CheckFailure(f"unknown critical header {', '.join(unknown)}")
