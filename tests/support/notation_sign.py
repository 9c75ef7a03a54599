"""A small Notary Project signer for tests: test PKIs with Notary-valid (or deliberately invalid) certificates,
JWS and COSE envelopes with every header under the caller's control, and signature manifests."""

from __future__ import annotations

import base64
import datetime as dt
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import cbor2
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey
NOTARY_SIGNATURE = "application/vnd.cncf.notary.signature"
JWS = "application/jose+json"
COSE = "application/cose"
PAYLOAD_TYPE = "application/vnd.cncf.notary.payload.v1+json"
_HASH = {"256": hashes.SHA256, "384": hashes.SHA384, "512": hashes.SHA512}
COSE_ALG = {"PS256": -37, "PS384": -38, "PS512": -39, "ES256": -7, "ES384": -35, "ES512": -36}
EPOCH = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)


def new_key(kind: str = "rsa2048") -> PrivateKey:
    if kind.startswith("rsa"):
        return rsa.generate_private_key(65537, int(kind[3:]))
    curves = {"p256": ec.SECP256R1(), "p384": ec.SECP384R1(), "p521": ec.SECP521R1(), "p224": ec.SECP224R1()}
    return ec.generate_private_key(curves[kind])


def name(cn: str, org: str = "Referee Test", country: str = "US", state: str = "WA") -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.COUNTRY_NAME, country),
            x509.NameAttribute(NameOID.STATE_OR_PROVINCE_NAME, state),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, org),
            x509.NameAttribute(NameOID.COMMON_NAME, cn),
        ]
    )


def key_usage(
    *, digital_signature: bool = False, cert_sign: bool = False, key_encipherment: bool = False
) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=digital_signature,
        content_commitment=False,
        key_encipherment=key_encipherment,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=cert_sign,
        crl_sign=cert_sign,
        encipher_only=False,
        decipher_only=False,
    )


@dataclass
class Issued:
    cert: x509.Certificate
    key: PrivateKey

    @property
    def pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)

    @property
    def der(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.DER)


def issue(
    subject: x509.Name,
    *,
    issuer: Issued | None = None,
    key: PrivateKey | None = None,
    ca: bool = False,
    path_length: int | None = None,
    ekus: Sequence[x509.ObjectIdentifier] | None = (ExtendedKeyUsageOID.CODE_SIGNING,),
    eku_critical: bool = False,
    usage: x509.KeyUsage | None = None,
    usage_critical: bool = True,
    basic_constraints: bool | None = None,
    not_before: dt.datetime = EPOCH,
    not_after: dt.datetime = EPOCH + dt.timedelta(days=3650),
    hash_algorithm: hashes.HashAlgorithm | None = None,
    extra: Sequence[tuple[x509.ExtensionType, bool]] = (),
) -> Issued:
    """A certificate; defaults make a Notary-valid code-signing leaf (or CA with ``ca=True``)."""
    key = key or new_key()
    signer_key = issuer.key if issuer else key
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer.cert.subject if issuer else subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
    )
    if ca:
        builder = builder.add_extension(x509.BasicConstraints(ca=True, path_length=path_length), critical=True)
        builder = builder.add_extension(usage or key_usage(cert_sign=True), critical=usage_critical)
    else:
        if basic_constraints is not None:
            builder = builder.add_extension(
                x509.BasicConstraints(ca=basic_constraints, path_length=None), critical=True
            )
        builder = builder.add_extension(usage or key_usage(digital_signature=True), critical=usage_critical)
    if ekus is not None and not ca:
        builder = builder.add_extension(x509.ExtendedKeyUsage(list(ekus)), critical=eku_critical)
    for ext, critical in extra:
        builder = builder.add_extension(ext, critical=critical)
    cert = builder.sign(signer_key, hash_algorithm or hashes.SHA256())  # type: ignore[arg-type]
    return Issued(cert, key)


@dataclass
class TestPki:
    """root CA → intermediate CA → code-signing leaf (the usual shape of a CI signing identity)."""

    root: Issued
    intermediate: Issued
    leaf: Issued

    @classmethod
    def create(cls, label: str = "ci", leaf_key: str = "rsa2048", **leaf_options: Any) -> TestPki:
        root = issue(name(f"{label} root"), ca=True)
        intermediate = issue(name(f"{label} intermediate"), issuer=root, ca=True, path_length=0)
        leaf = issue(name(f"{label} signer"), issuer=intermediate, key=new_key(leaf_key), **leaf_options)
        return cls(root, intermediate, leaf)

    @property
    def chain(self) -> list[x509.Certificate]:
        return [self.leaf.cert, self.intermediate.cert, self.root.cert]


def alg_for(key: PrivateKey) -> str:
    if isinstance(key, rsa.RSAPrivateKey):
        return {2048: "PS256", 3072: "PS384", 4096: "PS512"}.get(key.key_size, "PS256")
    return {"secp256r1": "ES256", "secp384r1": "ES384", "secp521r1": "ES512"}.get(key.curve.name, "ES256")


def raw_sign(key: PrivateKey, alg: str, data: bytes) -> bytes:
    algorithm = _HASH[alg[2:]]()
    if isinstance(key, rsa.RSAPrivateKey):
        pss = padding.PSS(mgf=padding.MGF1(algorithm), salt_length=algorithm.digest_size)
        return key.sign(data, pss, algorithm)
    r, s = decode_dss_signature(key.sign(data, ec.ECDSA(algorithm)))
    size = (key.curve.key_size + 7) // 8
    return r.to_bytes(size, "big") + s.to_bytes(size, "big")


def payload_for(target: Mapping[str, Any], annotations: Mapping[str, str] | None = None) -> bytes:
    descriptor = {"mediaType": target["mediaType"], "digest": target["digest"], "size": target["size"]}
    if annotations:
        descriptor["annotations"] = dict(annotations)
    return json.dumps({"targetArtifact": descriptor}, separators=(",", ":")).encode()


@dataclass
class Options:
    """Every knob of an envelope; the defaults produce what notation would sign."""

    alg: str | None = None
    scheme: str = "notary.x509"
    signing_time: dt.datetime = EPOCH + dt.timedelta(days=30)
    expiry: dt.datetime | None = None
    crit: list[Any] | None = None
    content_type: str = PAYLOAD_TYPE
    extra_protected: dict[Any, Any] = field(default_factory=dict)
    extra_unprotected: dict[Any, Any] = field(default_factory=dict)
    timestamp_token: bytes | None = None
    sign_with: PrivateKey | None = None
    signing_agent: str = "Referee-test/1.0"


def _crit(options: Options) -> list[Any]:
    if options.crit is not None:
        return options.crit
    crit: list[Any] = ["io.cncf.notary.signingScheme"]
    if options.scheme == "notary.x509.signingAuthority":
        crit.append("io.cncf.notary.authenticSigningTime")
    if options.expiry is not None:
        crit.append("io.cncf.notary.expiry")
    return crit


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _rfc3339(when: dt.datetime) -> str:
    return when.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")


def sign_jws(
    payload: bytes, key: PrivateKey, chain: Sequence[x509.Certificate], options: Options | None = None
) -> bytes:
    o = options or Options()
    alg = o.alg or alg_for(key)
    time_key = (
        "io.cncf.notary.authenticSigningTime" if o.scheme.endswith("signingAuthority") else "io.cncf.notary.signingTime"
    )
    protected: dict[str, Any] = {
        "alg": alg,
        "crit": _crit(o),
        "cty": o.content_type,
        "io.cncf.notary.signingScheme": o.scheme,
        time_key: _rfc3339(o.signing_time),
    }
    if o.expiry is not None:
        protected["io.cncf.notary.expiry"] = _rfc3339(o.expiry)
    protected.update(o.extra_protected)
    protected_b64 = _b64url(json.dumps(protected, separators=(",", ":")).encode())
    payload_b64 = _b64url(payload)
    signing_input = f"{protected_b64}.{payload_b64}".encode()
    signature = raw_sign(o.sign_with or key, alg if alg in COSE_ALG else alg_for(key), signing_input)
    header: dict[str, Any] = {
        "x5c": [base64.b64encode(c.public_bytes(serialization.Encoding.DER)).decode() for c in chain],
        "io.cncf.notary.signingAgent": o.signing_agent,
    }
    if o.timestamp_token is not None:
        header["io.cncf.notary.timestampSignature"] = base64.b64encode(o.timestamp_token).decode()
    header.update(o.extra_unprotected)
    envelope = {"payload": payload_b64, "protected": protected_b64, "header": header, "signature": _b64url(signature)}
    return json.dumps(envelope, separators=(",", ":")).encode()


def jws_signature_bytes(envelope: bytes) -> bytes:
    doc = json.loads(envelope)
    value: str = doc["signature"]
    return base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))


def sign_cose(
    payload: bytes, key: PrivateKey, chain: Sequence[x509.Certificate], options: Options | None = None
) -> bytes:
    o = options or Options()
    alg = o.alg or alg_for(key)
    time_key = (
        "io.cncf.notary.authenticSigningTime" if o.scheme.endswith("signingAuthority") else "io.cncf.notary.signingTime"
    )
    protected: dict[Any, Any] = {
        1: COSE_ALG.get(alg, -37),
        2: _crit(o),
        3: o.content_type,
        "io.cncf.notary.signingScheme": o.scheme,
        time_key: cbor2.CBORTag(1, int(o.signing_time.timestamp())),
    }
    if o.expiry is not None:
        protected["io.cncf.notary.expiry"] = cbor2.CBORTag(1, int(o.expiry.timestamp()))
    protected.update(o.extra_protected)
    protected_bytes = cbor2.dumps(protected)
    to_be_signed = cbor2.dumps(["Signature1", protected_bytes, b"", payload])
    signature = raw_sign(o.sign_with or key, alg if alg in COSE_ALG else alg_for(key), to_be_signed)
    unprotected: dict[Any, Any] = {
        33: [c.public_bytes(serialization.Encoding.DER) for c in chain],
        "io.cncf.notary.signingAgent": o.signing_agent,
    }
    if o.timestamp_token is not None:
        unprotected["io.cncf.notary.timestampSignature"] = o.timestamp_token
    unprotected.update(o.extra_unprotected)
    return cbor2.dumps(cbor2.CBORTag(18, [protected_bytes, unprotected, payload, signature]))


def cose_signature_bytes(envelope: bytes) -> bytes:
    value: bytes = cbor2.loads(envelope).value[3]
    return value


def thumbprints(chain: Sequence[x509.Certificate]) -> str:
    return json.dumps([c.fingerprint(hashes.SHA256()).hex() for c in chain])


def resign_sha1(cert: x509.Certificate, issuer_key: rsa.RSAPrivateKey) -> x509.Certificate:
    """The same certificate signed with sha1WithRSAEncryption (``cryptography`` refuses to build one)."""
    from asn1crypto import x509 as asn1_x509  # type: ignore[import-untyped]

    parsed = asn1_x509.Certificate.load(cert.public_bytes(serialization.Encoding.DER))
    tbs = parsed["tbs_certificate"]
    tbs["signature"] = {"algorithm": "sha1_rsa"}
    tbs_der = tbs.dump(force=True)
    signature = issuer_key.sign(tbs_der, padding.PKCS1v15(), hashes.SHA1())
    rebuilt = asn1_x509.Certificate(
        {"tbs_certificate": tbs, "signature_algorithm": {"algorithm": "sha1_rsa"}, "signature_value": signature}
    )
    return x509.load_der_x509_certificate(rebuilt.dump(force=True))


@dataclass
class TestTsa:
    """A timestamping authority: root CA → TSA certificate (EKU timeStamping, critical unless told otherwise)."""

    root: Issued
    tsa: Issued

    @classmethod
    def create(cls, label: str = "tsa", **tsa_options: Any) -> TestTsa:
        root = issue(name(f"{label} root"), ca=True)
        options: dict[str, Any] = {"ekus": [ExtendedKeyUsageOID.TIME_STAMPING], "eku_critical": True}
        options.update(tsa_options)
        return cls(root, issue(name(f"{label} signer"), issuer=root, **options))

    def token(
        self, signature: bytes, gen_time: dt.datetime, *, accuracy_seconds: int | None = 1, policy: str = "1.2.3.4.1"
    ) -> bytes:
        """An RFC 3161 TimeStampToken over ``signature`` (SHA-256 imprint, signing-certificate-v2)."""
        import hashlib

        from asn1crypto import algos, cms, core, tsp  # type: ignore[import-untyped]
        from asn1crypto import x509 as asn1_x509

        info: dict[str, Any] = {
            "version": "v1",
            "policy": policy,
            "message_imprint": {
                "hash_algorithm": {"algorithm": "sha256"},
                "hashed_message": hashlib.sha256(signature).digest(),
            },
            "serial_number": x509.random_serial_number(),
            "gen_time": core.GeneralizedTime(gen_time),
        }
        if accuracy_seconds is not None:
            info["accuracy"] = {"seconds": accuracy_seconds}
        tst = tsp.TSTInfo(info)
        tst_der = tst.dump()
        tsa_cert = asn1_x509.Certificate.load(self.tsa.der)
        root_cert = asn1_x509.Certificate.load(self.root.der)
        attrs = cms.CMSAttributes(
            [
                {"type": "content_type", "values": ["tst_info"]},
                {"type": "message_digest", "values": [hashlib.sha256(tst_der).digest()]},
                {
                    "type": "signing_certificate_v2",
                    "values": [{"certs": [{"cert_hash": hashlib.sha256(self.tsa.der).digest()}]}],
                },
            ]
        )
        key = self.tsa.key
        assert isinstance(key, rsa.RSAPrivateKey)
        signed = key.sign(attrs.dump(), padding.PKCS1v15(), hashes.SHA256())
        signer = {
            "version": "v1",
            "sid": cms.SignerIdentifier(
                "issuer_and_serial_number",
                {"issuer": tsa_cert.issuer, "serial_number": tsa_cert.serial_number},
            ),
            "digest_algorithm": algos.DigestAlgorithm({"algorithm": "sha256"}),
            "signed_attrs": attrs,
            "signature_algorithm": algos.SignedDigestAlgorithm({"algorithm": "sha256_rsa"}),
            "signature": signed,
        }
        content = cms.SignedData(
            {
                "version": "v3",
                "digest_algorithms": [{"algorithm": "sha256"}],
                "encap_content_info": {"content_type": "tst_info", "content": cms.ParsableOctetString(tst_der)},
                "certificates": [tsa_cert, root_cert],
                "signer_infos": [signer],
            }
        )
        return bytes(cms.ContentInfo({"content_type": "signed_data", "content": content}).dump())


def add_timestamp(envelope: bytes, token: bytes) -> bytes:
    """Put ``token`` into the unprotected header of a JWS or COSE envelope (signed before, so unchanged)."""
    if envelope[:1] == b"{":
        doc = json.loads(envelope)
        doc["header"]["io.cncf.notary.timestampSignature"] = base64.b64encode(token).decode()
        return json.dumps(doc, separators=(",", ":")).encode()
    body = list(cbor2.loads(envelope).value)
    body[1] = {**dict(body[1]), "io.cncf.notary.timestampSignature": token}
    return cbor2.dumps(cbor2.CBORTag(18, body))
