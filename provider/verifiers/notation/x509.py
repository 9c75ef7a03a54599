"""Certificate chains checked by hand, per the Notary Project ``Certificate Requirements``.

WebPKI verifiers (``cryptography.x509.verification``) enforce rules Notary forbids (validity nesting, other
extensions) and reject code-signing leaves, so chains are walked here: an ordered list leaf → root, each
certificate issued by the next (raw issuer/subject bytes equal and the signature verifies), the last one
self-signed. Only basicConstraints, keyUsage and extendedKeyUsage are evaluated; every other extension is
ignored ("fail open"), except in TSA chains, which notation-go verifies like Go's x509 package does.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from datetime import datetime

from asn1crypto import x509 as asn1_x509  # type: ignore[import-untyped]
from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, ExtensionOID, NameOID

MIN_RSA_BITS = 2048
MIN_EC_BITS = 256
LEAF_RSA_BITS = (2048, 3072, 4096)
LEAF_EC_CURVES = ("secp256r1", "secp384r1", "secp521r1")
_WEAK_HASHES = (hashes.SHA1, hashes.MD5)
_FORBIDDEN_CODE_SIGNING_EKU = {
    ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE: "anyExtendedKeyUsage",
    ExtendedKeyUsageOID.SERVER_AUTH: "serverAuth",
    ExtendedKeyUsageOID.CLIENT_AUTH: "clientAuth",
    ExtendedKeyUsageOID.EMAIL_PROTECTION: "emailProtection",
    ExtendedKeyUsageOID.TIME_STAMPING: "timeStamping",
    ExtendedKeyUsageOID.OCSP_SIGNING: "OCSPSigning",
}
# Extensions Go's x509 verifier understands; an unknown critical extension fails a TSA chain, as in notation-go.
_GO_HANDLED = frozenset(
    {
        ExtensionOID.BASIC_CONSTRAINTS,
        ExtensionOID.KEY_USAGE,
        ExtensionOID.EXTENDED_KEY_USAGE,
        ExtensionOID.SUBJECT_ALTERNATIVE_NAME,
        ExtensionOID.NAME_CONSTRAINTS,
        ExtensionOID.CERTIFICATE_POLICIES,
        ExtensionOID.POLICY_CONSTRAINTS,
        ExtensionOID.INHIBIT_ANY_POLICY,
        ExtensionOID.AUTHORITY_KEY_IDENTIFIER,
        ExtensionOID.SUBJECT_KEY_IDENTIFIER,
        ExtensionOID.CRL_DISTRIBUTION_POINTS,
        ExtensionOID.AUTHORITY_INFORMATION_ACCESS,
    }
)
# Attribute type names as Go's pkix.Name.String() prints them (what notation-go matches identities against).
GO_ATTRIBUTE_NAMES = {
    NameOID.COUNTRY_NAME: "C",
    NameOID.ORGANIZATION_NAME: "O",
    NameOID.ORGANIZATIONAL_UNIT_NAME: "OU",
    NameOID.COMMON_NAME: "CN",
    NameOID.SERIAL_NUMBER: "SERIALNUMBER",
    NameOID.LOCALITY_NAME: "L",
    NameOID.STATE_OR_PROVINCE_NAME: "ST",
    NameOID.STREET_ADDRESS: "STREET",
    NameOID.POSTAL_CODE: "POSTALCODE",
}


class CertificateError(ValueError):
    """A certificate cannot be parsed or used."""


class ChainError(ValueError):
    """A certificate chain breaks a Notary Project certificate rule."""


def parse_certificate(der: bytes, what: str = "certificate") -> x509.Certificate:
    try:
        cert = x509.load_der_x509_certificate(der)
        _ = cert.extensions
        cert.public_key()
        return cert
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise CertificateError(f"{what} is not a valid DER X.509 certificate ({exc})") from None


def load_certificates(data: bytes, what: str) -> list[x509.Certificate]:
    """Every certificate in a PEM bundle, or the one certificate of a DER file."""
    if b"-----BEGIN" in data:
        try:
            certs = x509.load_pem_x509_certificates(data)
        except ValueError as exc:
            raise CertificateError(f"{what}: not a PEM certificate bundle ({exc})") from None
        for cert in certs:
            parse_certificate(cert.public_bytes(serialization.Encoding.DER), what)
        return certs
    return [parse_certificate(data, what)]


def der(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.DER)


def thumbprint(cert: x509.Certificate) -> str:
    return hashlib.sha256(der(cert)).hexdigest()


def subject(cert: x509.Certificate) -> str:
    return cert.subject.rfc4514_string()


def _raw_names(cert: x509.Certificate) -> tuple[bytes, bytes]:
    tbs = asn1_x509.Certificate.load(der(cert))["tbs_certificate"]
    return tbs["subject"].dump(), tbs["issuer"].dump()


def is_issued_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    """Raw issuer bytes equal the issuer's raw subject and the issuer's key verifies the signature."""
    if _raw_names(cert)[1] != _raw_names(issuer)[0]:
        return False
    try:
        cert.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature, UnsupportedAlgorithm):
        return False
    return True


def is_self_signed(cert: x509.Certificate) -> bool:
    return is_issued_by(cert, cert)


def _name(cert: x509.Certificate) -> str:
    return repr(subject(cert))


def _extension(cert: x509.Certificate, oid: x509.ObjectIdentifier) -> x509.Extension[x509.ExtensionType] | None:
    try:
        return cert.extensions.get_extension_for_oid(oid)
    except x509.ExtensionNotFound:
        return None


def check_signature_algorithm(cert: x509.Certificate) -> None:
    try:
        algorithm = cert.signature_hash_algorithm
    except UnsupportedAlgorithm:
        raise ChainError(f"certificate {_name(cert)} uses an unsupported signature algorithm") from None
    if isinstance(algorithm, _WEAK_HASHES):
        raise ChainError(f"certificate {_name(cert)} is signed with {algorithm.name.upper()}, which is not allowed")


def check_key_size(cert: x509.Certificate, *, leaf: bool) -> None:
    key = cert.public_key()
    if isinstance(key, rsa.RSAPublicKey):
        ok = key.key_size in LEAF_RSA_BITS if leaf else key.key_size >= MIN_RSA_BITS
        if not ok:
            raise ChainError(f"certificate {_name(cert)}: RSA key size {key.key_size} bits is not supported")
        return
    if isinstance(key, ec.EllipticCurvePublicKey):
        ok = key.curve.name in LEAF_EC_CURVES if leaf else key.curve.key_size >= MIN_EC_BITS
        if not ok:
            raise ChainError(f"certificate {_name(cert)}: EC curve {key.curve.name} is not supported")
        return
    if leaf:
        raise ChainError(f"certificate {_name(cert)}: unsupported public key type {type(key).__name__}")


def _key_usage(cert: x509.Certificate, *, critical: bool) -> x509.KeyUsage:
    ext = _extension(cert, ExtensionOID.KEY_USAGE)
    if ext is None:
        raise ChainError(f"certificate {_name(cert)}: key usage extension must be present")
    if critical and not ext.critical:
        raise ChainError(f"certificate {_name(cert)}: key usage extension must be marked critical")
    assert isinstance(ext.value, x509.KeyUsage)
    return ext.value


def _check_leaf_key_usage(cert: x509.Certificate, *, critical: bool) -> None:
    usage = _key_usage(cert, critical=critical)
    if not usage.digital_signature:
        raise ChainError(f"certificate {_name(cert)}: key usage must have digitalSignature set")
    bad = [
        name
        for name, on in (
            ("keyEncipherment", usage.key_encipherment),
            ("dataEncipherment", usage.data_encipherment),
            ("keyAgreement", usage.key_agreement),
            ("keyCertSign", usage.key_cert_sign),
            ("cRLSign", usage.crl_sign),
            ("encipherOnly", usage.key_agreement and usage.encipher_only),
            ("decipherOnly", usage.key_agreement and usage.decipher_only),
        )
        if on
    ]
    if bad:
        raise ChainError(f"certificate {_name(cert)}: key usage must be digitalSignature only, found {', '.join(bad)}")


def _check_leaf_basic_constraints(cert: x509.Certificate) -> None:
    ext = _extension(cert, ExtensionOID.BASIC_CONSTRAINTS)
    if ext is not None and isinstance(ext.value, x509.BasicConstraints) and ext.value.ca:
        raise ChainError(f"certificate {_name(cert)}: a leaf certificate must not be a CA (basicConstraints cA=true)")


def _ekus(cert: x509.Certificate) -> tuple[list[x509.ObjectIdentifier], bool] | None:
    ext = _extension(cert, ExtensionOID.EXTENDED_KEY_USAGE)
    if ext is None:
        return None
    assert isinstance(ext.value, x509.ExtendedKeyUsage)
    return list(ext.value), ext.critical


def check_code_signing_leaf(cert: x509.Certificate) -> None:
    _check_leaf_basic_constraints(cert)
    _check_leaf_key_usage(cert, critical=True)
    ekus = _ekus(cert)
    if ekus is not None:
        for oid in ekus[0]:
            if oid in _FORBIDDEN_CODE_SIGNING_EKU:
                raise ChainError(
                    f"certificate {_name(cert)}: extended key usage must not contain {_FORBIDDEN_CODE_SIGNING_EKU[oid]}"
                )
    check_key_size(cert, leaf=True)


def check_timestamping_leaf(cert: x509.Certificate) -> None:
    _check_leaf_basic_constraints(cert)
    _check_leaf_key_usage(cert, critical=False)
    ekus = _ekus(cert)
    if ekus is None or ekus[0] != [ExtendedKeyUsageOID.TIME_STAMPING]:
        raise ChainError(
            f"timestamping certificate {_name(cert)} must have timeStamping as its only extended key usage"
        )
    if not ekus[1]:
        raise ChainError(f"timestamping certificate {_name(cert)} must mark extended key usage critical")
    check_key_size(cert, leaf=True)


def check_ca(cert: x509.Certificate, below: int, *, require_critical: bool) -> None:
    """A CA certificate with ``below`` intermediate CAs between it and the leaf."""
    ext = _extension(cert, ExtensionOID.BASIC_CONSTRAINTS)
    if ext is None or not isinstance(ext.value, x509.BasicConstraints) or not ext.value.ca:
        raise ChainError(f"certificate {_name(cert)}: basicConstraints must be present with cA=true")
    if require_critical and not ext.critical:
        raise ChainError(f"certificate {_name(cert)}: basicConstraints must be marked critical")
    if ext.value.path_length is not None and ext.value.path_length < below:
        raise ChainError(
            f"certificate {_name(cert)}: path length constraint {ext.value.path_length} but {below} CAs below it"
        )
    if not _key_usage(cert, critical=require_critical).key_cert_sign:
        raise ChainError(f"certificate {_name(cert)}: key usage must have keyCertSign set")
    check_key_size(cert, leaf=False)


def _walk(chain: Sequence[x509.Certificate]) -> None:
    """Issuance leaf → root: each certificate issued by the next, the last self-signed, no other self-signed."""
    for cert in chain:
        check_signature_algorithm(cert)
    for i, cert in enumerate(chain):
        if i == len(chain) - 1:
            if not is_self_signed(cert):
                raise ChainError(f"root certificate {_name(cert)} is not self-signed; the chain must end with a root")
            continue
        if is_self_signed(cert):
            role = "leaf" if i == 0 else "intermediate"
            raise ChainError(f"{role} certificate {_name(cert)} is self-signed but is not the last of the chain")
        if not is_issued_by(cert, chain[i + 1]):
            raise ChainError(f"certificate {_name(cert)} is not issued by {_name(chain[i + 1])}")


def validate_code_signing_chain(chain: Sequence[x509.Certificate]) -> None:
    """``ValidateCodeSigningCertChain``: order, issuance, leaf and CA rules (no validity checks here)."""
    if not chain:
        raise ChainError("certificate chain is empty")
    _walk(chain)
    check_code_signing_leaf(chain[0])
    for i, cert in enumerate(chain[1:], start=1):
        check_ca(cert, i - 1, require_critical=True)


def validate_timestamping_chain(chain: Sequence[x509.Certificate]) -> None:
    """``ValidateTimestampingCertChain`` plus what Go's x509 verification adds for TSA chains."""
    if not chain:
        raise ChainError("timestamping certificate chain is empty")
    _walk(chain)
    check_timestamping_leaf(chain[0])
    for i, cert in enumerate(chain[1:], start=1):
        check_ca(cert, i - 1, require_critical=False)
        ekus = _ekus(cert)
        if ekus is not None and not {
            ExtendedKeyUsageOID.TIME_STAMPING,
            ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE,
        } & set(ekus[0]):
            raise ChainError(f"CA certificate {_name(cert)} does not permit the timeStamping extended key usage")
    for cert in chain:
        for ext in cert.extensions:
            if ext.critical and ext.oid not in _GO_HANDLED:
                raise ChainError(
                    f"certificate {_name(cert)} has an unhandled critical extension {ext.oid.dotted_string}"
                )


def valid_at(cert: x509.Certificate, when: datetime) -> bool:
    return cert.not_valid_before_utc <= when <= cert.not_valid_after_utc


def validity(cert: x509.Certificate) -> str:
    return f"{cert.not_valid_before_utc.isoformat()} .. {cert.not_valid_after_utc.isoformat()}"


def subject_attributes(cert: x509.Certificate) -> dict[str, str]:
    """The leaf subject as notation-go sees it: single-valued RDNs, unique types, C/ST/O present."""
    out: dict[str, str] = {}
    for rdn in cert.subject.rdns:
        attributes = list(rdn)
        if len(attributes) > 1:
            raise ChainError(f"signing certificate subject {_name(cert)} has a multi-valued RDN")
        attribute = attributes[0]
        key = GO_ATTRIBUTE_NAMES.get(attribute.oid, attribute.oid.dotted_string)
        value = attribute.value if isinstance(attribute.value, str) else attribute.value.hex()
        if key in out:
            raise ChainError(f"signing certificate subject {_name(cert)} repeats the attribute {key}")
        out[key] = value
    missing = [k for k in ("C", "ST", "O") if not out.get(k)]
    if missing:
        raise ChainError(f"signing certificate subject {_name(cert)} lacks {', '.join(missing)}")
    return out
