"""A throwaway Sigstore for tests: a Fulcio-like CA issuing short-lived code-signing certificates, a Rekor log
key producing signed entry timestamps (and single-leaf inclusion proofs with signed checkpoints), DSSE envelopes,
in-toto Statements, cosign layer annotations and Sigstore bundles. Everything is built from the specifications
(cosign SIGNATURE_SPEC/ATTESTATION_SPEC, protobuf-specs bundle, DSSE protocol, RFC 8785); no network."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import rfc8785
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

OID_ISSUER_V1 = x509.ObjectIdentifier("1.3.6.1.4.1.57264.1.1")
OID_ISSUER_V2 = x509.ObjectIdentifier("1.3.6.1.4.1.57264.1.8")
INTOTO = "application/vnd.in-toto+json"
BUNDLE_V03 = "application/vnd.dev.sigstore.bundle.v0.3+json"


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def pem_public(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def pem_cert(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _spki(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def pae(payload_type: str, payload: bytes) -> bytes:
    kind = payload_type.encode()
    return b"DSSEv1 %d %s %d %s" % (len(kind), kind, len(payload), payload)


OID_SCT_LIST = x509.ObjectIdentifier("1.3.6.1.4.1.11129.2.4.2")


def _der_octets(data: bytes) -> bytes:
    n = len(data)
    if n < 128:
        return bytes([0x04, n]) + data
    size = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x04, 0x80 | len(size)]) + size + data


def _utf8_der(text: str) -> bytes:
    raw = text.encode()
    assert len(raw) < 128
    return bytes([0x0C, len(raw)]) + raw


def statement(digest: str, predicate_type: str, predicate: Any, *, version: str = "v1", name: str = "image") -> bytes:
    """An in-toto Statement (``v1`` or ``v0.1``) about ``digest`` (``sha256:<hex>``)."""
    alg, _, value = digest.partition(":")
    doc = {
        "_type": f"https://in-toto.io/Statement/{version}",
        "subject": [{"name": name, "digest": {alg: value}}],
        "predicateType": predicate_type,
        "predicate": predicate,
    }
    return json.dumps(doc, separators=(",", ":")).encode()


def slsa_v1(builder_id: str, repository: str, ref: str, build_type: str = "https://example.com/build/v1") -> Any:
    return {
        "buildDefinition": {
            "buildType": build_type,
            "externalParameters": {"workflow": {"repository": repository, "ref": ref, "path": ".ci/build.yml"}},
            "resolvedDependencies": [],
        },
        "runDetails": {"builder": {"id": builder_id}, "metadata": {"invocationId": "1"}},
    }


def sign_dsse(key: ec.EllipticCurvePrivateKey, payload: bytes, payload_type: str = INTOTO) -> tuple[bytes, bytes]:
    """``(envelope JSON, raw signature)``."""
    signature = key.sign(pae(payload_type, payload), ec.ECDSA(hashes.SHA256()))
    envelope = {
        "payloadType": payload_type,
        "payload": b64(payload),
        "signatures": [{"keyid": "", "sig": b64(signature)}],
    }
    return json.dumps(envelope, separators=(",", ":")).encode(), signature


@dataclass
class FakeSigstore:
    """CA + Rekor log. ``now`` is the notional signing time (certificates live 10 minutes around it)."""

    now: dt.datetime = field(default_factory=lambda: dt.datetime(2025, 6, 1, 12, 0, tzinfo=dt.UTC))
    ca_key: ec.EllipticCurvePrivateKey = field(default_factory=lambda: ec.generate_private_key(ec.SECP384R1()))
    rekor_key: ec.EllipticCurvePrivateKey = field(default_factory=lambda: ec.generate_private_key(ec.SECP256R1()))
    ct_key: ec.EllipticCurvePrivateKey = field(default_factory=lambda: ec.generate_private_key(ec.SECP256R1()))
    log_index: int = 0

    def __post_init__(self) -> None:
        name = x509.Name(
            [
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, "referee.test"),
                x509.NameAttribute(NameOID.COMMON_NAME, "test-fulcio"),
            ]
        )
        public = self.ca_key.public_key()
        self.ca_cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(public)
            .serial_number(x509.random_serial_number())
            .not_valid_before(self.now - dt.timedelta(days=365))
            .not_valid_after(self.now + dt.timedelta(days=3650))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(public), critical=False)
            .sign(self.ca_key, hashes.SHA384())
        )

    # -- trust material ---------------------------------------------------------------------------------------

    @property
    def ca_pem(self) -> bytes:
        return pem_cert(self.ca_cert)

    @property
    def rekor_pem(self) -> bytes:
        return pem_public(self.rekor_key)

    @property
    def ct_pem(self) -> bytes:
        return pem_public(self.ct_key)

    @property
    def log_id(self) -> bytes:
        der = self.rekor_key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        return hashlib.sha256(der).digest()

    def trusted_root(self) -> bytes:
        """A ``trusted_root.json`` with this CA, Rekor key and CT log key (no TSAs)."""
        der = self.rekor_key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        start = (self.now - dt.timedelta(days=365)).strftime("%Y-%m-%dT%H:%M:%SZ")
        doc = {
            "mediaType": "application/vnd.dev.sigstore.trustedroot+json;version=0.1",
            "tlogs": [
                {
                    "baseUrl": "https://rekor.referee.test",
                    "hashAlgorithm": "SHA2_256",
                    "publicKey": {
                        "rawBytes": b64(der),
                        "keyDetails": "PKIX_ECDSA_P256_SHA_256",
                        "validFor": {"start": start},
                    },
                    "logId": {"keyId": b64(self.log_id)},
                }
            ],
            "certificateAuthorities": [
                {
                    "subject": {"organization": "referee.test", "commonName": "test-fulcio"},
                    "uri": "https://fulcio.referee.test",
                    "certChain": {
                        "certificates": [{"rawBytes": b64(self.ca_cert.public_bytes(serialization.Encoding.DER))}]
                    },
                    "validFor": {"start": start},
                }
            ],
            "ctlogs": [
                {
                    "baseUrl": "https://ctfe.referee.test",
                    "hashAlgorithm": "SHA2_256",
                    "publicKey": {
                        "rawBytes": b64(_spki(self.ct_key)),
                        "keyDetails": "PKIX_ECDSA_P256_SHA_256",
                        "validFor": {"start": start},
                    },
                    "logId": {"keyId": b64(hashlib.sha256(_spki(self.ct_key)).digest())},
                }
            ],
            "timestampAuthorities": [],
        }
        return json.dumps(doc, indent=1).encode()

    # -- certificates -------------------------------------------------------------------------------------------

    def issue(
        self,
        identity: str,
        issuer: str,
        *,
        not_before: dt.datetime | None = None,
        lifetime: dt.timedelta = dt.timedelta(minutes=10),
        legacy_issuer: bool = False,
        sct: bool = True,
    ) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
        """A Fulcio-shaped leaf: empty subject, critical SAN (email or URI), code signing, OIDC issuer
        extension (``…1.8`` DER UTF8String, or ``…1.1`` raw with ``legacy_issuer``)."""
        key = ec.generate_private_key(ec.SECP256R1())
        start = not_before or (self.now - dt.timedelta(minutes=1))
        san: x509.GeneralName = (
            x509.RFC822Name(identity)
            if "@" in identity and "://" not in identity
            else x509.UniformResourceIdentifier(identity)
        )
        issuer_ext = (
            x509.UnrecognizedExtension(OID_ISSUER_V1, issuer.encode())
            if legacy_issuer
            else x509.UnrecognizedExtension(OID_ISSUER_V2, _utf8_der(issuer))
        )
        serial = x509.random_serial_number()

        def build(extra: list[x509.ExtensionType]) -> x509.Certificate:
            builder = (
                x509.CertificateBuilder()
                .subject_name(x509.Name([]))
                .issuer_name(self.ca_cert.subject)
                .public_key(key.public_key())
                .serial_number(serial)
                .not_valid_before(start)
                .not_valid_after(start + lifetime)
                .add_extension(
                    x509.KeyUsage(True, False, False, False, False, False, False, False, False), critical=True
                )
                .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CODE_SIGNING]), critical=False)
                .add_extension(x509.SubjectAlternativeName([san]), critical=True)
                .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
                .add_extension(
                    x509.AuthorityKeyIdentifier.from_issuer_public_key(self.ca_key.public_key()), critical=False
                )
                .add_extension(issuer_ext, critical=False)
            )
            for ext in extra:
                builder = builder.add_extension(ext, critical=False)
            return builder.sign(self.ca_key, hashes.SHA384())

        precert = build([])
        cert = build([self._sct_extension(precert, start)]) if sct else precert
        return key, cert

    def _sct_extension(self, precert: x509.Certificate, when: dt.datetime) -> x509.UnrecognizedExtension:
        """An embedded SCT (RFC 6962 §3.3) by this CT log over the certificate's TBS without the SCT list."""
        tbs = precert.tbs_certificate_bytes
        millis = int(when.timestamp() * 1000)
        issuer_key_hash = hashlib.sha256(_spki(self.ca_key)).digest()
        signed = (
            b"\x00\x00" + millis.to_bytes(8, "big") + b"\x00\x01" + issuer_key_hash
            + len(tbs).to_bytes(3, "big") + tbs + b"\x00\x00"
        )  # fmt: skip
        signature = self.ct_key.sign(signed, ec.ECDSA(hashes.SHA256()))
        log_id = hashlib.sha256(_spki(self.ct_key)).digest()
        sct = b"\x00" + log_id + millis.to_bytes(8, "big") + b"\x00\x00" + b"\x04\x03"
        sct += len(signature).to_bytes(2, "big") + signature
        listed = len(sct).to_bytes(2, "big") + sct
        body = len(listed).to_bytes(2, "big") + listed
        return x509.UnrecognizedExtension(OID_SCT_LIST, _der_octets(body))

    # -- Rekor --------------------------------------------------------------------------------------------------

    @staticmethod
    def hashedrekord(data_sha256: bytes, signature: bytes, verifier_pem: bytes) -> dict[str, Any]:
        return {
            "apiVersion": "0.0.1",
            "kind": "hashedrekord",
            "spec": {
                "data": {"hash": {"algorithm": "sha256", "value": data_sha256.hex()}},
                "signature": {"content": b64(signature), "publicKey": {"content": b64(verifier_pem)}},
            },
        }

    @staticmethod
    def dsse_entry(envelope: bytes, payload: bytes, signature: bytes, verifier_pem: bytes) -> dict[str, Any]:
        return {
            "apiVersion": "0.0.1",
            "kind": "dsse",
            "spec": {
                "envelopeHash": {"algorithm": "sha256", "value": hashlib.sha256(envelope).hexdigest()},
                "payloadHash": {"algorithm": "sha256", "value": hashlib.sha256(payload).hexdigest()},
                "signatures": [{"signature": b64(signature), "verifier": b64(verifier_pem)}],
            },
        }

    @staticmethod
    def v2_verifier(key: ec.EllipticCurvePrivateKey, cert: x509.Certificate | None) -> dict[str, Any]:
        """A Rekor v2 ``Verifier``: the certificate (DER) or the public key (DER SPKI)."""
        if cert is not None:
            material = {"x509Certificate": {"rawBytes": b64(cert.public_bytes(serialization.Encoding.DER))}}
        else:
            material = {"publicKey": {"rawBytes": b64(_spki(key))}}
        return {**material, "keyDetails": "PKIX_ECDSA_P256_SHA_256"}

    @staticmethod
    def hashedrekord_v2(digest: bytes, signature: bytes, verifier: dict[str, Any]) -> dict[str, Any]:
        """Rekor v2 ``hashedrekord`` 0.0.2 over a SHA-256 ``digest``."""
        return {
            "apiVersion": "0.0.2",
            "kind": "hashedrekord",
            "spec": {
                "hashedRekordV002": {
                    "data": {"algorithm": "SHA2_256", "digest": b64(digest)},
                    "signature": {"content": b64(signature), "verifier": verifier},
                }
            },
        }

    @staticmethod
    def dsse_v2(payload: bytes, signature: bytes, verifier: dict[str, Any]) -> dict[str, Any]:
        """Rekor v2 ``dsse`` 0.0.2."""
        return {
            "apiVersion": "0.0.2",
            "kind": "dsse",
            "spec": {
                "dsseV002": {
                    "payloadHash": {"algorithm": "SHA2_256", "digest": b64(hashlib.sha256(payload).digest())},
                    "signatures": [{"content": b64(signature), "verifier": verifier}],
                }
            },
        }

    def log_entry(
        self, body: dict[str, Any], integrated_time: int | None = None, *, promise: bool = True
    ) -> dict[str, Any]:
        """``{body (base64), integratedTime, logIndex, logID (hex), set (bytes)}`` — the SET is ECDSA P-256
        over the RFC 8785 canonical JSON of the first four. Without ``promise`` (Rekor v2) there is no SET and
        no integrated time."""
        self.log_index += 1
        when = integrated_time if integrated_time is not None else int(self.now.timestamp())
        payload = {
            "body": b64(json.dumps(body, separators=(",", ":")).encode()),
            "integratedTime": when if promise else 0,
            "logIndex": self.log_index,
            "logID": self.log_id.hex(),
        }
        if not promise:
            return payload
        signature = self.rekor_key.sign(rfc8785.dumps(payload), ec.ECDSA(hashes.SHA256()))
        return {**payload, "set": signature}

    def cosign_bundle_annotation(self, entry: dict[str, Any]) -> str:
        """cosign's ``dev.sigstore.cosign/bundle`` annotation for a :meth:`log_entry`."""
        payload = {k: entry[k] for k in ("body", "integratedTime", "logIndex", "logID")}
        return json.dumps({"SignedEntryTimestamp": b64(entry["set"]), "Payload": payload}, separators=(",", ":"))

    def bundle_tlog_entry(self, entry: dict[str, Any], *, with_proof: bool = True) -> dict[str, Any]:
        """The protobuf-specs JSON form, with a one-leaf inclusion proof and a checkpoint signed by the log."""
        body = json.loads(base64.b64decode(entry["body"]))
        out: dict[str, Any] = {
            "logIndex": str(entry["logIndex"]),
            "logId": {"keyId": b64(self.log_id)},
            "kindVersion": {"kind": body["kind"], "version": body["apiVersion"]},
            "integratedTime": str(entry["integratedTime"]),
            "canonicalizedBody": entry["body"],
        }
        if "set" in entry:
            out["inclusionPromise"] = {"signedEntryTimestamp": b64(entry["set"])}
        if with_proof:
            root = hashlib.sha256(b"\x00" + base64.b64decode(entry["body"])).digest()
            note = f"rekor.referee.test - 1\n1\n{b64(root)}\n"
            sig = self.rekor_key.sign(note.encode(), ec.ECDSA(hashes.SHA256()))
            checkpoint = note + "\n\u2014 rekor.referee.test " + b64(self.log_id[:4] + sig) + "\n"
            out["inclusionProof"] = {
                "logIndex": "0",
                "rootHash": b64(root),
                "treeSize": "1",
                "hashes": [],
                "checkpoint": {"envelope": checkpoint},
            }
        return out

    # -- bundles ------------------------------------------------------------------------------------------------

    def dsse_bundle(
        self,
        key: ec.EllipticCurvePrivateKey,
        payload: bytes,
        *,
        cert: x509.Certificate | None = None,
        integrated_time: int | None = None,
        with_proof: bool = True,
        rekor: str = "v1",
    ) -> bytes:
        """A v0.3 bundle with a DSSE envelope, certificate or public-key hint, and a ``dsse`` 0.0.1 log entry
        (``rekor="v1"``), or Rekor v2's ``hashedrekord`` 0.0.2 over the PAE (``"v2"``) or ``dsse`` 0.0.2
        (``"v2-dsse"``) without a SET."""
        envelope, signature = sign_dsse(key, payload)
        if rekor == "v1":
            verifier = pem_cert(cert) if cert is not None else pem_public(key)
            entry = self.log_entry(self.dsse_entry(envelope, payload, signature, verifier), integrated_time)
        elif rekor == "v2":
            digest = hashlib.sha256(pae(INTOTO, payload)).digest()
            entry = self.log_entry(self.hashedrekord_v2(digest, signature, self.v2_verifier(key, cert)), promise=False)
        else:
            entry = self.log_entry(self.dsse_v2(payload, signature, self.v2_verifier(key, cert)), promise=False)
        return self._bundle(json.loads(envelope), "dsseEnvelope", cert, entry, with_proof)

    def message_bundle(
        self,
        key: ec.EllipticCurvePrivateKey,
        digest: bytes,
        *,
        cert: x509.Certificate | None = None,
        integrated_time: int | None = None,
        rekor: str = "v1",
    ) -> bytes:
        """A v0.3 bundle signing a SHA-256 ``digest`` (message signature, ``hashedrekord`` 0.0.1 entry, or
        0.0.2 without a SET for ``rekor="v2"``)."""
        signature = key.sign(digest, ec.ECDSA(Prehashed(hashes.SHA256())))
        if rekor == "v2":
            entry = self.log_entry(self.hashedrekord_v2(digest, signature, self.v2_verifier(key, cert)), promise=False)
        else:
            verifier = pem_cert(cert) if cert is not None else pem_public(key)
            entry = self.log_entry(self.hashedrekord(digest, signature, verifier), integrated_time)
        content = {"messageDigest": {"algorithm": "SHA2_256", "digest": b64(digest)}, "signature": b64(signature)}
        return self._bundle(content, "messageSignature", cert, entry, True)

    def _bundle(
        self, content: Any, key_name: str, cert: x509.Certificate | None, entry: dict[str, Any], with_proof: bool
    ) -> bytes:
        material: dict[str, Any] = {"tlogEntries": [self.bundle_tlog_entry(entry, with_proof=with_proof)]}
        if cert is not None:
            material["certificate"] = {"rawBytes": b64(cert.public_bytes(serialization.Encoding.DER))}
        else:
            material["publicKey"] = {"hint": "test-key"}
        return json.dumps({"mediaType": BUNDLE_V03, "verificationMaterial": material, key_name: content}).encode()


def _ca_certificate(
    subject: x509.Name, key: ec.EllipticCurvePrivateKey, issuer: x509.Certificate | None,
    issuer_key: ec.EllipticCurvePrivateKey, start: dt.datetime, end: dt.datetime,
) -> x509.Certificate:  # fmt: skip
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer.subject if issuer is not None else subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None if issuer is None else 0), critical=True)
        .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()), critical=False)
        .sign(issuer_key, hashes.SHA256())
    )


@dataclass
class PrivatePKI:
    """A company PKI as cosign's "bring your own PKI" uses it: root → intermediate → long-lived code-signing leaves,
    no SCT, no Fulcio; the OIDC issuer extension only when asked for."""

    now: dt.datetime = field(default_factory=lambda: dt.datetime(2026, 6, 1, tzinfo=dt.UTC))
    root_key: ec.EllipticCurvePrivateKey = field(default_factory=lambda: ec.generate_private_key(ec.SECP384R1()))
    intermediate_key: ec.EllipticCurvePrivateKey = field(
        default_factory=lambda: ec.generate_private_key(ec.SECP384R1())
    )

    def __post_init__(self) -> None:
        start, end = self.now - dt.timedelta(days=3650), self.now + dt.timedelta(days=3650)
        root_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Example Corp Root CA")])
        self.root = _ca_certificate(root_name, self.root_key, None, self.root_key, start, end)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Example Corp Code Signing CA")])
        self.intermediate = _ca_certificate(name, self.intermediate_key, self.root, self.root_key, start, end)

    @property
    def root_pem(self) -> bytes:
        return pem_cert(self.root)

    @property
    def chain_pem(self) -> bytes:
        """What cosign's ``dev.sigstore.cosign/chain`` annotation holds: intermediates, then the root."""
        return pem_cert(self.intermediate) + pem_cert(self.root)

    def issue(
        self, identity: str, *, issuer: str | None = None, not_before: dt.datetime | None = None,
        lifetime: dt.timedelta = dt.timedelta(days=365),
    ) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:  # fmt: skip
        key = ec.generate_private_key(ec.SECP256R1())
        start = not_before or (self.now - dt.timedelta(days=30))
        san: x509.GeneralName = (
            x509.RFC822Name(identity) if "://" not in identity else x509.UniformResourceIdentifier(identity)
        )
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, identity)]))
            .issuer_name(self.intermediate.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(start)
            .not_valid_after(start + lifetime)
            .add_extension(x509.KeyUsage(True, False, False, False, False, False, False, False, False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CODE_SIGNING]), critical=False)
            .add_extension(x509.SubjectAlternativeName([san]), critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self.intermediate_key.public_key()), critical=False
            )
        )
        if issuer is not None:
            builder = builder.add_extension(
                x509.UnrecognizedExtension(OID_ISSUER_V2, _utf8_der(issuer)), critical=False
            )
        return key, builder.sign(self.intermediate_key, hashes.SHA256())


class MemorySource:
    """A ``ContentSource`` over blobs held in memory, digest-checked and size-limited like a real store."""

    def __init__(self) -> None:
        self.blobs: dict[str, bytes] = {}

    def add(self, data: bytes) -> str:
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        self.blobs[digest] = data
        return digest

    async def fetch_manifest(self, descriptor: Any) -> Any:
        from provider.oci import parse_manifest

        return parse_manifest(await self.fetch_blob(descriptor), descriptor.digest, descriptor.media_type)

    async def fetch_blob(self, descriptor: Any, max_bytes: int | None = None) -> bytes:
        from provider.errors import ArtifactTooLargeError, NotFoundError

        if max_bytes is not None and descriptor.size > max_bytes:
            raise ArtifactTooLargeError(f"blob {descriptor.digest} is {descriptor.size} bytes, over {max_bytes}")
        data = self.blobs.get(descriptor.digest)
        if data is None:
            raise NotFoundError(f"blob {descriptor.digest} not found")
        if "sha256:" + hashlib.sha256(data).hexdigest() != descriptor.digest:
            raise AssertionError("MemorySource holds bytes under a wrong digest")
        return data


PINNED_NOW = dt.datetime(2026, 11, 1, tzinfo=dt.UTC)


def build_verifier(entry: dict[str, Any], base_dir: str = "/") -> Any:
    """A verifier built from one ``verifiers[]`` entry the way the server builds it (through the config)."""
    from pathlib import Path

    from provider.config import load_config_bytes
    from provider.verifiers.base import verifier_types

    config = load_config_bytes(json.dumps({"verifiers": [entry]}).encode(), Path(base_dir))
    spec = config.verifiers[0]
    plugin = verifier_types.get(spec.type)
    assert plugin is not None
    return plugin.create(spec)


def artifact_request(
    source: MemorySource,
    layers: list[dict[str, Any]],
    *,
    subject_digest: str,
    artifact_type: str,
    repo: str = "registry.example/team/app",
    now: dt.datetime = PINNED_NOW,
    subject_media_type: str = "application/vnd.oci.image.manifest.v1+json",
) -> Any:
    """A ``VerificationRequest`` for a manifest with ``layers`` (descriptor dicts) attached to the subject."""
    from provider.oci import Descriptor, parse_manifest
    from provider.reference import parse_reference
    from provider.verifiers.base import Subject, VerificationRequest

    config = b"{}"
    source.add(config)
    doc = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": "sha256:" + hashlib.sha256(config).hexdigest(),
            "size": 2,
        },
        "layers": layers,
    }
    raw = json.dumps(doc, separators=(",", ":")).encode()
    digest = "sha256:" + hashlib.sha256(raw).hexdigest()
    manifest = parse_manifest(raw, digest, doc["mediaType"])
    artifact = Descriptor(doc["mediaType"], digest, len(raw), artifact_type=artifact_type)
    subject = Subject(
        ref=parse_reference(f"{repo}@{subject_digest}"),
        descriptor=Descriptor(subject_media_type, subject_digest, 1),
    )
    return VerificationRequest(subject=subject, artifact=artifact, manifest=manifest, content=source, now=now)


def layer(
    source: MemorySource, media_type: str, data: bytes, annotations: dict[str, str] | None = None
) -> dict[str, Any]:
    digest = source.add(data)
    out: dict[str, Any] = {"mediaType": media_type, "digest": digest, "size": len(data)}
    if annotations:
        out["annotations"] = annotations
    return out


def ct_log_pems(trusted_root: Path) -> list[str]:
    """The CT log keys of a Sigstore trusted root as PEM text, for ``ctLogKeys``."""
    doc = json.loads(trusted_root.read_bytes())
    out = []
    for log in doc.get("ctlogs", []):
        key = serialization.load_der_public_key(base64.b64decode(log["publicKey"]["rawBytes"]))
        out.append(
            key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()
        )
    return out
