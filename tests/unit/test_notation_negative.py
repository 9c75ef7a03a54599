"""Envelopes built by tests/support/notation_sign.py: each defect is denied with its specific reason, in JWS
and (where the format differs) COSE. Certificates are generated per test with ``cryptography``; trustme leaves
are not valid Notary leaves (serverAuth/clientAuth EKU)."""

from __future__ import annotations

import base64
import datetime as dt
import json
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cbor2
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.x509.oid import ExtendedKeyUsageOID

from provider.errors import RevocationUnavailableError
from provider.oci import Descriptor
from tests.support import notation_sign as ns
from tests.unit.notation_helpers import COSE, JWS, NOW, params, policy, verify

TARGET = {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": "sha256:" + "ab" * 32, "size": 1234}
OTHER = {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": "sha256:" + "cd" * 32, "size": 1234}
DESCRIPTOR = Descriptor(TARGET["mediaType"], TARGET["digest"], TARGET["size"])
Signer = Callable[..., bytes]
FORMATS = [pytest.param(ns.sign_jws, JWS, id="jws"), pytest.param(ns.sign_cose, COSE, id="cose")]


@pytest.fixture(scope="module")
def pki() -> ns.TestPki:
    return ns.TestPki.create("ci")


def write_store(tmp_path: Path, *certs: x509.Certificate) -> str:
    path = tmp_path / f"store-{len(list(tmp_path.iterdir()))}.pem"
    path.write_bytes(b"".join(ns.Issued(c, ns.new_key("p256")).pem for c in certs))
    return str(path)


def config(tmp_path: Path, root: x509.Certificate, **extra: Any) -> dict[str, Any]:
    out: dict[str, Any] = {
        "trustPolicy": policy(["ca:ci"], extra.pop("identities", None), extra.pop("level", "strict")),
        "trustStores": {"ca": {"ci": [write_store(tmp_path, root)]}},
    }
    out.update(extra)
    return out


async def check(tmp_path: Path, pki: ns.TestPki, envelope: bytes, media_type: str, **extra: Any) -> Any:
    now = extra.pop("now", NOW)
    target = extra.pop("target", DESCRIPTOR)
    return await verify(params(config(tmp_path, pki.root.cert, **extra)), envelope, media_type, target, now=now)


def sign(signer: Signer, pki: ns.TestPki, target: dict[str, Any] = TARGET, **options: Any) -> bytes:
    return signer(ns.payload_for(target), pki.leaf.key, pki.chain, ns.Options(**options))


@pytest.mark.parametrize(("signer", "media_type"), FORMATS)
async def test_genuine_signature_passes_with_details(
    tmp_path: Path, pki: ns.TestPki, signer: Signer, media_type: str
) -> None:
    result = await check(tmp_path, pki, sign(signer, pki), media_type)
    assert result.succeeded, result.reason
    assert result.details["chain"] == [ns.name(n).rfc4514_string() for n in ("ci signer", "ci intermediate", "ci root")]
    assert result.details["trustAnchor"] == "CN=ci root,O=Referee Test,ST=WA,C=US"
    assert result.details["signingAgent"] == "Referee-test/1.0"


@pytest.mark.parametrize("key", ["rsa3072", "rsa4096", "p256", "p384", "p521"])
async def test_every_allowed_key_and_algorithm_passes(tmp_path: Path, key: str) -> None:
    pki = ns.TestPki.create("k", leaf_key=key)
    for signer, media_type in ((ns.sign_jws, JWS), (ns.sign_cose, COSE)):
        result = await check(tmp_path, pki, sign(signer, pki), media_type)
        assert result.succeeded, result.reason
        assert result.details["signatureAlgorithm"] == ns.alg_for(pki.leaf.key)


async def test_tampered_payload_jws(tmp_path: Path, pki: ns.TestPki) -> None:
    doc = json.loads(sign(ns.sign_jws, pki))
    doc["payload"] = base64.urlsafe_b64encode(ns.payload_for(OTHER)).rstrip(b"=").decode()
    result = await check(tmp_path, pki, json.dumps(doc).encode(), JWS)
    assert result.reason == "integrity check failed: signature does not verify with the signing certificate's key"


async def test_tampered_payload_cose(tmp_path: Path, pki: ns.TestPki) -> None:
    message = cbor2.loads(sign(ns.sign_cose, pki))
    body = list(message.value)
    body[2] = ns.payload_for(OTHER)
    result = await check(tmp_path, pki, cbor2.dumps(cbor2.CBORTag(18, body)), COSE)
    assert result.reason == "integrity check failed: signature does not verify with the signing certificate's key"


async def test_tampered_signature(tmp_path: Path, pki: ns.TestPki) -> None:
    doc = json.loads(sign(ns.sign_jws, pki))
    raw = bytearray(ns.jws_signature_bytes(json.dumps(doc).encode()))
    raw[10] ^= 1
    doc["signature"] = base64.urlsafe_b64encode(bytes(raw)).rstrip(b"=").decode()
    result = await check(tmp_path, pki, json.dumps(doc).encode(), JWS)
    assert result.reason == "integrity check failed: signature does not verify with the signing certificate's key"
    envelope = bytearray(sign(ns.sign_cose, pki))
    envelope[-1] ^= 1
    result = await check(tmp_path, pki, bytes(envelope), COSE)
    assert result.reason == "integrity check failed: signature does not verify with the signing certificate's key"


@pytest.mark.parametrize(("signer", "media_type"), FORMATS)
async def test_valid_signature_of_another_digest_copied_onto_this_image(
    tmp_path: Path, pki: ns.TestPki, signer: Signer, media_type: str
) -> None:
    result = await check(tmp_path, pki, sign(signer, pki, OTHER), media_type)
    assert not result.succeeded
    assert result.reason == (
        f"integrity check failed: the signature is for {OTHER['digest']} ({OTHER['mediaType']}, 1234 bytes), "
        f"not this artifact {TARGET['digest']} ({TARGET['mediaType']}, 1234 bytes)"
    )


async def test_media_type_and_size_are_part_of_the_target(tmp_path: Path, pki: ns.TestPki) -> None:
    for changed in ({**TARGET, "size": 1235}, {**TARGET, "mediaType": "application/vnd.oci.image.index.v1+json"}):
        result = await check(tmp_path, pki, sign(ns.sign_jws, pki, changed), JWS)
        assert "integrity check failed: the signature is for" in result.reason


@pytest.mark.parametrize(("signer", "media_type"), FORMATS)
async def test_expired_signature(tmp_path: Path, pki: ns.TestPki, signer: Signer, media_type: str) -> None:
    envelope = sign(signer, pki, expiry=ns.EPOCH + dt.timedelta(days=60))
    result = await check(tmp_path, pki, envelope, media_type)
    assert result.reason == "expiry check failed: signature expired at 2024-03-01T00:00:00Z"
    logged = await check(tmp_path, pki, envelope, media_type, level="permissive")
    assert logged.succeeded and "logged failures: expiry: signature expired" in logged.reason
    before = await check(tmp_path, pki, envelope, media_type, now=ns.EPOCH + dt.timedelta(days=59))
    assert before.succeeded, before.reason


async def test_expiry_must_follow_the_signing_time(tmp_path: Path, pki: ns.TestPki) -> None:
    envelope = sign(ns.sign_jws, pki, expiry=ns.EPOCH)
    result = await check(tmp_path, pki, envelope, JWS)
    assert result.reason == "integrity check failed: expiry is not after the signing time"


@pytest.mark.parametrize(("signer", "media_type"), FORMATS)
async def test_chain_to_an_untrusted_root(tmp_path: Path, pki: ns.TestPki, signer: Signer, media_type: str) -> None:
    other = ns.TestPki.create("rogue")
    result = await check(
        tmp_path,
        other,
        sign(signer, other),
        media_type,
        trustStores={"ca": {"ci": [write_store(tmp_path, pki.root.cert)]}},
    )
    assert result.reason == "authenticity check failed: certificate chain does not chain to a certificate in ca:ci"
    audit = await check(
        tmp_path,
        other,
        sign(signer, other),
        media_type,
        level="audit",
        trustStores={"ca": {"ci": [write_store(tmp_path, pki.root.cert)]}},
    )
    assert audit.succeeded and "logged failures: authenticity" in audit.reason


async def test_identity_mismatch_and_match(tmp_path: Path, pki: ns.TestPki) -> None:
    envelope = sign(ns.sign_jws, pki)
    wrong = await check(tmp_path, pki, envelope, JWS, identities=["x509.subject: C=US, ST=WA, O=Someone Else"])
    assert wrong.reason.startswith(
        "authenticity check failed: signer 'CN=ci signer,O=Referee Test,ST=WA,C=US' does not match"
    )
    right = await check(
        tmp_path, pki, envelope, JWS, identities=["x509.subject: C=US, ST=WA, O=Referee Test, CN=ci signer"]
    )
    assert right.succeeded and right.details["trustedIdentity"].endswith("CN=ci signer")


async def test_leaf_with_server_auth_eku_is_rejected(tmp_path: Path) -> None:
    pki = ns.TestPki.create("web", ekus=[ExtendedKeyUsageOID.CODE_SIGNING, ExtendedKeyUsageOID.SERVER_AUTH])
    for signer, media_type in ((ns.sign_jws, JWS), (ns.sign_cose, COSE)):
        result = await check(tmp_path, pki, sign(signer, pki), media_type)
        assert result.reason == (
            "integrity check failed: certificate chain is invalid: certificate "
            "'CN=web signer,O=Referee Test,ST=WA,C=US': extended key usage must not contain serverAuth"
        )


async def test_leaf_without_any_eku_is_accepted(tmp_path: Path) -> None:
    pki = ns.TestPki.create("noeku", ekus=None)
    assert (await check(tmp_path, pki, sign(ns.sign_jws, pki), JWS)).succeeded


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (
            {"usage": ns.key_usage(digital_signature=True, key_encipherment=True)},
            "key usage must be digitalSignature only, found keyEncipherment",
        ),
        ({"usage": ns.key_usage(cert_sign=True)}, "key usage must have digitalSignature set"),
        ({"usage_critical": False}, "key usage extension must be marked critical"),
        ({"basic_constraints": True}, "a leaf certificate must not be a CA"),
        ({"ekus": [ExtendedKeyUsageOID.TIME_STAMPING]}, "extended key usage must not contain timeStamping"),
        (
            {"ekus": [ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE]},
            "extended key usage must not contain anyExtendedKeyUsage",
        ),
    ],
)
async def test_leaf_certificate_rules(tmp_path: Path, options: dict[str, Any], message: str) -> None:
    pki = ns.TestPki.create("rules", **options)
    result = await check(tmp_path, pki, sign(ns.sign_jws, pki), JWS)
    assert result.reason.startswith("integrity check failed: certificate chain is invalid")
    assert message in result.reason


async def test_sha1_signed_certificate_is_rejected(tmp_path: Path) -> None:
    pki = ns.TestPki.create("sha1")
    assert isinstance(pki.root.key, ns.rsa.RSAPrivateKey)
    weak = ns.resign_sha1(pki.intermediate.cert, pki.root.key)
    env = ns.sign_jws(ns.payload_for(TARGET), pki.leaf.key, [pki.leaf.cert, weak, pki.root.cert])
    result = await verify(params(config(tmp_path, pki.root.cert)), env, JWS, DESCRIPTOR)
    assert result.reason == (
        "integrity check failed: certificate chain is invalid: certificate 'CN=sha1 intermediate,O=Referee Test,"
        "ST=WA,C=US' is signed with SHA1, which is not allowed"
    )


async def test_ca_rules_and_chain_order(tmp_path: Path) -> None:
    root = ns.issue(ns.name("r"), ca=True)
    weak = ns.issue(ns.name("i"), issuer=root, ca=True, usage=ns.key_usage(digital_signature=True))
    leaf = ns.issue(ns.name("leaf"), issuer=weak)
    env = ns.sign_jws(ns.payload_for(TARGET), leaf.key, [leaf.cert, weak.cert, root.cert])
    result = await verify(params(config(tmp_path, root.cert)), env, JWS, DESCRIPTOR)
    assert "key usage must have keyCertSign set" in result.reason

    pathlen = ns.issue(ns.name("i0"), issuer=root, ca=True, path_length=0)
    below = ns.issue(ns.name("i1"), issuer=pathlen, ca=True)
    leaf2 = ns.issue(ns.name("leaf2"), issuer=below)
    env = ns.sign_jws(ns.payload_for(TARGET), leaf2.key, [leaf2.cert, below.cert, pathlen.cert, root.cert])
    result = await verify(params(config(tmp_path, root.cert)), env, JWS, DESCRIPTOR)
    assert "path length constraint 0 but 1 CAs below it" in result.reason

    pki = ns.TestPki.create("order")
    env = ns.sign_jws(ns.payload_for(TARGET), pki.leaf.key, [pki.leaf.cert, pki.root.cert, pki.intermediate.cert])
    result = await verify(params(config(tmp_path, pki.root.cert)), env, JWS, DESCRIPTOR)
    assert "is not issued by" in result.reason
    env = ns.sign_jws(ns.payload_for(TARGET), pki.leaf.key, [pki.leaf.cert, pki.intermediate.cert])
    result = await verify(params(config(tmp_path, pki.root.cert)), env, JWS, DESCRIPTOR)
    assert "is not self-signed; the chain must end with a root" in result.reason
    unrelated = ns.issue(ns.name("stray"), ca=True)
    env = ns.sign_jws(ns.payload_for(TARGET), pki.leaf.key, [*pki.chain, unrelated.cert])
    result = await verify(params(config(tmp_path, pki.root.cert)), env, JWS, DESCRIPTOR)
    assert "self-signed but is not the last of the chain" in result.reason


@pytest.mark.parametrize(("signer", "media_type"), FORMATS)
async def test_alg_not_matching_the_key(tmp_path: Path, pki: ns.TestPki, signer: Signer, media_type: str) -> None:
    for alg in ("PS384", "ES256"):
        result = await check(tmp_path, pki, sign(signer, pki, alg=alg), media_type)
        assert (
            result.reason
            == f"integrity check failed: algorithm {alg} does not match the signing key, which requires PS256"
        )


@pytest.mark.parametrize("alg", ["none", "HS256", "RS256"])
async def test_none_hmac_and_pkcs1_are_refused(tmp_path: Path, pki: ns.TestPki, alg: str) -> None:
    result = await check(tmp_path, pki, sign(ns.sign_jws, pki, alg=alg), JWS)
    assert (
        result.reason
        == f"integrity check failed: signature algorithm {alg!r} is not allowed (PS256/384/512, ES256/384/512)"
    )
    cose = await check(tmp_path, pki, sign(ns.sign_cose, pki, extra_protected={1: 5}), COSE)
    assert cose.reason == "integrity check failed: COSE algorithm 5 is not allowed (PS256/384/512, ES256/384/512)"


async def test_small_rsa_key_is_refused(tmp_path: Path) -> None:
    pki = ns.TestPki.create("small", leaf_key="rsa1024")
    result = await check(tmp_path, pki, sign(ns.sign_jws, pki, alg="PS256"), JWS)
    assert result.reason == "integrity check failed: signing key RSA 1024 bits is not supported (2048, 3072 or 4096)"


@pytest.mark.parametrize(
    ("data", "media_type", "reason"),
    [
        (b"invalid signature\n", JWS, "JWS envelope is not valid JSON"),
        (b"[1,2]", JWS, "JWS envelope is not a JSON object"),
        (b"invalid signature\n", COSE, "COSE envelope"),
        (cbor2.dumps([1, 2, 3, 4]), COSE, "envelope is not a COSE_Sign1_Tagged object (CBOR tag 18)"),
        (b"\xd2\x84\x40\xa0\x40\x40", COSE, "COSE protected header is missing"),
        (b"", JWS, "JWS envelope is not valid JSON"),
    ],
)
async def test_garbage_envelopes(tmp_path: Path, pki: ns.TestPki, data: bytes, media_type: str, reason: str) -> None:
    result = await check(tmp_path, pki, data, media_type)
    assert result.reason.startswith(f"integrity check failed: {reason}"), result.reason


@pytest.mark.parametrize(("signer", "media_type"), FORMATS)
async def test_missing_crit_entries(tmp_path: Path, pki: ns.TestPki, signer: Signer, media_type: str) -> None:
    expiry = ns.EPOCH + dt.timedelta(days=7000)
    result = await check(
        tmp_path, pki, sign(signer, pki, expiry=expiry, crit=["io.cncf.notary.signingScheme"]), media_type
    )
    assert result.reason == "integrity check failed: required headers not marked critical: io.cncf.notary.expiry"
    result = await check(tmp_path, pki, sign(signer, pki, crit=[]), media_type)
    assert result.reason == "integrity check failed: crit header is missing or empty"
    result = await check(tmp_path, pki, sign(signer, pki, crit=["io.cncf.notary.expiry"]), media_type)
    assert result.reason == "integrity check failed: header 'io.cncf.notary.expiry' is marked critical but not present"


@pytest.mark.parametrize(("signer", "media_type"), FORMATS)
async def test_unknown_critical_header(tmp_path: Path, pki: ns.TestPki, signer: Signer, media_type: str) -> None:
    crit = ["io.cncf.notary.signingScheme", "io.example.policy"]
    envelope = sign(signer, pki, crit=crit, extra_protected={"io.example.policy": "x"})
    result = await check(tmp_path, pki, envelope, media_type)
    assert result.reason == "integrity check failed: unknown critical header io.example.policy"
    informational = sign(signer, pki, extra_protected={"io.example.note": "x"})
    assert (await check(tmp_path, pki, informational, media_type)).succeeded


@pytest.mark.parametrize(("signer", "media_type"), FORMATS)
async def test_verification_plugin_is_not_supported(
    tmp_path: Path, pki: ns.TestPki, signer: Signer, media_type: str
) -> None:
    crit = ["io.cncf.notary.signingScheme", "io.cncf.notary.verificationPlugin"]
    envelope = sign(signer, pki, crit=crit, extra_protected={"io.cncf.notary.verificationPlugin": "com.example.tlog"})
    result = await check(tmp_path, pki, envelope, media_type)
    assert "requires verification plugin 'com.example.tlog'" in result.reason


async def test_crit_must_not_list_registered_headers(tmp_path: Path, pki: ns.TestPki) -> None:
    result = await check(tmp_path, pki, sign(ns.sign_jws, pki, crit=["io.cncf.notary.signingScheme", "alg"]), JWS)
    assert result.reason == "integrity check failed: crit header must not list the registered header 'alg'"
    result = await check(tmp_path, pki, sign(ns.sign_cose, pki, crit=["io.cncf.notary.signingScheme", 1]), COSE)
    assert result.reason == "integrity check failed: crit header must not list the registered header 1"


async def test_content_type_and_scheme(tmp_path: Path, pki: ns.TestPki) -> None:
    result = await check(tmp_path, pki, sign(ns.sign_jws, pki, content_type="application/json"), JWS)
    assert "payload content type 'application/json' is not application/vnd.cncf.notary.payload.v1+json" in result.reason
    result = await check(tmp_path, pki, sign(ns.sign_cose, pki, scheme="notary.default"), COSE)
    assert result.reason == "integrity check failed: unsupported signing scheme 'notary.default'"


async def test_jws_structure_is_strict(tmp_path: Path, pki: ns.TestPki) -> None:
    doc = json.loads(sign(ns.sign_jws, pki))
    extra = {**doc, "signatures": []}
    assert "flattened JSON" in (await check(tmp_path, pki, json.dumps(extra).encode(), JWS)).reason
    padded = {**doc, "signature": doc["signature"] + "=" * (-len(doc["signature"]) % 4 or 4)}
    assert (
        "signature is not unpadded base64url" in (await check(tmp_path, pki, json.dumps(padded).encode(), JWS)).reason
    )
    overlap = {**doc, "header": {**doc["header"], "alg": "PS256"}}
    assert (
        "appear both protected and unprotected"
        in (await check(tmp_path, pki, json.dumps(overlap).encode(), JWS)).reason
    )
    duplicated = json.dumps(doc).replace('{"payload"', '{"payload":"x","payload"', 1).encode()
    assert "repeats the key 'payload'" in (await check(tmp_path, pki, duplicated, JWS)).reason
    no_chain = {**doc, "header": {}}
    assert "x5c header is missing or empty" in (await check(tmp_path, pki, json.dumps(no_chain).encode(), JWS)).reason


async def test_cose_structure_is_strict(tmp_path: Path, pki: ns.TestPki) -> None:
    good = sign(ns.sign_cose, pki)
    assert "trailing data" in (await check(tmp_path, pki, good + b"\x00", COSE)).reason
    message = cbor2.loads(good)
    body = list(message.value)
    protected = cbor2.loads(body[0])
    protected["io.cncf.notary.signingTime"] = int(ns.EPOCH.timestamp())
    body[0] = cbor2.dumps(protected)
    assert (
        "must be a CBOR tag 1 (epoch) date-time"
        in (await check(tmp_path, pki, cbor2.dumps(cbor2.CBORTag(18, body)), COSE)).reason
    )
    single = list(message.value)
    single[1] = {33: pki.leaf.der}
    assert (
        "x5chain (label 33) is missing"
        in (await check(tmp_path, pki, cbor2.dumps(cbor2.CBORTag(18, single)), COSE)).reason
    )
    # a protected map whose key 3 appears twice (hand-encoded)
    dup = bytes([0xD2, 0x84, 0x47, 0xA2, 0x03, 0x41, 0x61, 0x03, 0x41, 0x62, 0xA0, 0x40, 0x40])
    assert "duplicate key" in (await check(tmp_path, pki, dup, COSE)).reason
    indefinite = bytes([0xD2, 0x9F, 0xFF])
    assert "indefinite-length" in (await check(tmp_path, pki, indefinite, COSE)).reason


async def test_expired_certificate_without_timestamp(tmp_path: Path) -> None:
    pki = ns.TestPki.create("old", not_after=ns.EPOCH + dt.timedelta(days=365))
    envelope = sign(ns.sign_jws, pki)
    result = await check(tmp_path, pki, envelope, JWS)
    assert result.reason.startswith(
        "authenticTimestamp check failed: certificate 'CN=old signer,O=Referee Test,ST=WA,C=US' is not valid now"
    )
    permissive = await check(tmp_path, pki, envelope, JWS, level="permissive")
    assert permissive.succeeded and "logged failures: authenticTimestamp" in permissive.reason


async def test_signing_authority_scheme(tmp_path: Path, pki: ns.TestPki) -> None:
    envelope = sign(ns.sign_cose, pki, scheme="notary.x509.signingAuthority")
    sa_config = {
        "trustPolicy": policy(["signingAuthority:sa"]),
        "trustStores": {"signingAuthority": {"sa": [write_store(tmp_path, pki.root.cert)]}},
    }
    result = await verify(params(sa_config), envelope, COSE, DESCRIPTOR)
    assert result.succeeded, result.reason
    assert result.details["signingTimeAuthentic"] is True
    ca_only = await check(tmp_path, pki, envelope, COSE)
    assert ca_only.reason == (
        "authenticity check failed: trust policy 'test' lists no signingAuthority trust store for signing scheme "
        "notary.x509.signingAuthority"
    )
    late = sign(
        ns.sign_jws, pki, scheme="notary.x509.signingAuthority", signing_time=ns.EPOCH + dt.timedelta(days=4000)
    )
    result = await verify(params(sa_config), late, JWS, DESCRIPTOR)
    assert "was not valid at the authentic signing time" in result.reason
    no_crit = sign(ns.sign_jws, pki, scheme="notary.x509.signingAuthority", crit=["io.cncf.notary.signingScheme"])
    result = await verify(params(sa_config), no_crit, JWS, DESCRIPTOR)
    assert (
        result.reason
        == "integrity check failed: required headers not marked critical: io.cncf.notary.authenticSigningTime"
    )


async def test_user_metadata_must_be_signed(tmp_path: Path, pki: ns.TestPki) -> None:
    envelope = ns.sign_jws(ns.payload_for(TARGET, {"buildId": "42"}), pki.leaf.key, pki.chain)
    ok = await check(tmp_path, pki, envelope, JWS, userMetadata={"buildId": "42"})
    assert ok.succeeded
    bad = await check(tmp_path, pki, envelope, JWS, userMetadata={"buildId": "43"})
    assert bad.reason == "integrity check failed: signed annotations do not contain the required buildId=43"


async def test_cose_semantic_tags_in_ignored_headers(tmp_path: Path, pki: ns.TestPki) -> None:
    """Unknown or exotic CBOR tags in headers Notary ignores are ignored (as go-cose does); a tag whose content
    cbor2 cannot decode is an integrity failure, never a crash."""
    exotic = {
        "io.example.unknown": cbor2.CBORTag(99999, "x"),
        "io.example.mime": cbor2.CBORTag(36, "Content-Type: text/plain\n\nhi"),
        "io.example.bignum": cbor2.CBORTag(2, b"\x01" * 64),
        "io.example.decimal": cbor2.CBORTag(4, [10**6, 1]),
    }
    protected = {f"{k}.signed": v for k, v in exotic.items()}
    result = await check(
        tmp_path, pki, sign(ns.sign_cose, pki, extra_unprotected=exotic, extra_protected=protected), COSE
    )
    assert result.succeeded, result.reason
    broken = sign(ns.sign_cose, pki, extra_unprotected={"io.example.bad": cbor2.CBORTag(2, "not bytes")})
    failed = await check(tmp_path, pki, broken, COSE)
    assert not failed.succeeded
    assert failed.reason.startswith("integrity check failed: COSE envelope cannot be decoded")


def _crl(
    issuer: ns.Issued,
    revoked: list[int],
    next_update: dt.datetime,
    extensions: list[tuple[x509.ExtensionType, bool]] | None = None,
) -> bytes:
    from cryptography.hazmat.primitives import serialization

    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(issuer.cert.subject)
        .last_update(ns.EPOCH)
        .next_update(next_update)
        .add_extension(x509.CRLNumber(1), critical=False)
    )
    for extension, critical in extensions or []:
        builder = builder.add_extension(extension, critical=critical)
    for serial in revoked:
        builder = builder.add_revoked_certificate(
            x509.RevokedCertificateBuilder()
            .serial_number(serial)
            .revocation_date(ns.EPOCH + dt.timedelta(days=40))
            .build()
        )
    return builder.sign(issuer.key, hashes.SHA256()).public_bytes(serialization.Encoding.DER)  # type: ignore[arg-type]


async def test_revocation_with_crl_files_offline(tmp_path: Path) -> None:
    cdp = x509.CRLDistributionPoints(
        [x509.DistributionPoint([x509.UniformResourceIdentifier("http://crl.invalid/ci.crl")], None, None, None)]
    )
    pki = ns.TestPki.create("rev", extra=[(cdp, False)])
    envelope = sign(ns.sign_jws, pki)
    unknown = await check(tmp_path, pki, envelope, JWS)
    assert unknown.reason.startswith(
        "revocation check failed: certificate 'CN=rev signer,O=Referee Test,ST=WA,C=US' has unknown revocation status"
    )
    assert "no CRL file from" in unknown.reason
    logged = await check(tmp_path, pki, envelope, JWS, level="permissive")
    assert logged.succeeded and "logged failures: revocation" in logged.reason

    good_crl, revoked_crl = tmp_path / "good.crl", tmp_path / "revoked.crl"
    good_crl.write_bytes(_crl(pki.intermediate, [12345], NOW + dt.timedelta(days=7)))
    revoked_crl.write_bytes(_crl(pki.intermediate, [pki.leaf.cert.serial_number], NOW + dt.timedelta(days=7)))
    good = await check(tmp_path, pki, envelope, JWS, revocation={"crlFiles": [str(good_crl)]})
    assert good.succeeded, good.reason
    assert good.details["revocation"][-1] == {
        "subject": "CN=rev signer,O=Referee Test,ST=WA,C=US",
        "status": "good",
        "method": "crl",
        "detail": "crl file",
    }
    revoked = await check(tmp_path, pki, envelope, JWS, revocation={"crlFiles": [str(revoked_crl)]})
    assert revoked.reason.startswith(
        "revocation check failed: certificate 'CN=rev signer,O=Referee Test,ST=WA,C=US' is revoked"
    )
    stale_crl = tmp_path / "stale.crl"
    stale_crl.write_bytes(_crl(pki.intermediate, [], NOW - dt.timedelta(days=1)))
    stale = await check(tmp_path, pki, envelope, JWS, revocation={"crlFiles": [str(stale_crl)]})
    assert "is not current" in stale.reason
    skipped = await check(tmp_path, pki, envelope, JWS, revocation={"mode": "skip"})
    assert skipped.succeeded
    assert (
        skipped.details["checks"]["revocation"]["reason"]
        == "not checked: revocation.mode is skip in the Referee configuration"
    )


def _idp(
    *,
    url: str | None = None,
    users: bool = False,
    cas: bool = False,
    reasons: frozenset[x509.ReasonFlags] | None = None,
) -> tuple[x509.ExtensionType, bool]:
    full_name = [x509.UniformResourceIdentifier(url)] if url else None
    return x509.IssuingDistributionPoint(full_name, None, users, cas, reasons, False, False), True


@pytest.mark.parametrize(
    ("extensions", "problem"),
    [
        ([_idp(cas=True)], "the CRL covers only CA certificates"),
        ([_idp(url="http://crl.invalid/other.crl")], "the CRL's distribution point is not one the certificate names"),
        (
            [_idp(reasons=frozenset({x509.ReasonFlags.key_compromise}))],
            "the CRL covers only some revocation reasons",
        ),
        (
            [(x509.UnrecognizedExtension(x509.ObjectIdentifier("1.3.6.1.4.1.55555.1"), b"\x05\x00"), True)],
            "the CRL has an unsupported critical extension 1.3.6.1.4.1.55555.1",
        ),
    ],
)
async def test_a_crl_of_another_scope_proves_nothing(
    tmp_path: Path, extensions: list[tuple[x509.ExtensionType, bool]], problem: str
) -> None:
    """A leaf missing from a CRL that does not cover it (CA-only, another partition, some reasons only, or
    with a critical extension Referee cannot process) is unknown, not good: RFC 5280 §6.3.3 (b)."""
    cdp = x509.CRLDistributionPoints(
        [x509.DistributionPoint([x509.UniformResourceIdentifier("http://crl.invalid/ci.crl")], None, None, None)]
    )
    pki = ns.TestPki.create("scope", extra=[(cdp, False)])
    envelope = sign(ns.sign_jws, pki)
    crl = tmp_path / "scoped.crl"
    crl.write_bytes(_crl(pki.intermediate, [], NOW + dt.timedelta(days=7), extensions))
    result = await check(tmp_path, pki, envelope, JWS, revocation={"crlFiles": [str(crl)]})
    assert not result.succeeded
    assert "has unknown revocation status" in result.reason
    assert f"crl file: {problem}" in result.reason

    in_scope = tmp_path / "in-scope.crl"
    in_scope.write_bytes(
        _crl(pki.intermediate, [], NOW + dt.timedelta(days=7), [_idp(url="http://crl.invalid/ci.crl", users=True)])
    )
    good = await check(tmp_path, pki, envelope, JWS, revocation={"crlFiles": [str(crl), str(in_scope)]})
    assert good.succeeded, good.reason


def _delta_crl(
    issuer: ns.Issued,
    number: int,
    revoked: list[tuple[int, x509.ReasonFlags | None]],
    next_update: dt.datetime,
    base_number: int = 1,
) -> bytes:
    from cryptography.hazmat.primitives import serialization

    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(issuer.cert.subject)
        .last_update(ns.EPOCH + dt.timedelta(days=number))
        .next_update(next_update)
        .add_extension(x509.CRLNumber(number), critical=False)
        .add_extension(x509.DeltaCRLIndicator(base_number), critical=True)
    )
    for serial, reason in revoked:
        entry = x509.RevokedCertificateBuilder().serial_number(serial).revocation_date(ns.EPOCH + dt.timedelta(days=40))
        if reason is not None:
            entry = entry.add_extension(x509.CRLReason(reason), critical=False)
        builder = builder.add_revoked_certificate(entry.build())
    return builder.sign(issuer.key, hashes.SHA256()).public_bytes(serialization.Encoding.DER)  # type: ignore[arg-type]


async def test_delta_crls_must_be_current_and_the_newest_applies(tmp_path: Path) -> None:
    """A base CRL that names a delta is used only with a current delta for it; an expired delta is never used
    (replaying an old delta must not hide a revocation) and among current ones the highest number wins."""
    cdp = x509.CRLDistributionPoints(
        [x509.DistributionPoint([x509.UniformResourceIdentifier("http://crl.invalid/ci.crl")], None, None, None)]
    )
    pki = ns.TestPki.create("delta", extra=[(cdp, False)])
    envelope = sign(ns.sign_jws, pki)
    leaf = pki.leaf.cert.serial_number
    freshest = x509.FreshestCRL(
        [x509.DistributionPoint([x509.UniformResourceIdentifier("http://crl.invalid/delta.crl")], None, None, None)]
    )
    later = NOW + dt.timedelta(days=7)
    files = {
        "base.crl": _crl(pki.intermediate, [], later, [(freshest, False)]),
        "base-listing.crl": _crl(pki.intermediate, [leaf], later, [(freshest, False)]),
        "expired-11.crl": _delta_crl(pki.intermediate, 11, [], NOW - dt.timedelta(days=1)),
        "current-12.crl": _delta_crl(pki.intermediate, 12, [(leaf, None)], later),
        "current-13-empty.crl": _delta_crl(pki.intermediate, 13, [], later),
        "unhold-12.crl": _delta_crl(pki.intermediate, 12, [(leaf, x509.ReasonFlags.remove_from_crl)], later),
        "other-base.crl": _delta_crl(pki.intermediate, 12, [], later, base_number=5),
    }
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)

    async def status(*names: str) -> Any:
        return await check(tmp_path, pki, envelope, JWS, revocation={"crlFiles": [str(tmp_path / n) for n in names]})

    missing = await status("base.crl")
    assert "the base CRL requires a delta CRL that is unavailable" in missing.reason
    for order in (["expired-11.crl", "current-12.crl"], ["current-12.crl", "expired-11.crl"]):
        revoked = await status("base.crl", *order)
        assert "is revoked" in revoked.reason, order
    only_expired = await status("base.crl", "expired-11.crl")
    assert not only_expired.succeeded
    assert "delta crl file: delta CRL is not current" in only_expired.reason
    newest = await status("base.crl", "current-12.crl", "current-13-empty.crl")
    assert newest.succeeded, newest.reason
    wrong_base = await status("base.crl", "other-base.crl")
    assert "delta CRL does not apply to base CRL number 1" in wrong_base.reason
    removed = await status("base-listing.crl", "unhold-12.crl")
    assert removed.succeeded, removed.reason


def _ocsp_with_two_answers(
    pki: ns.TestPki, first: tuple[x509.Certificate, Any], second: tuple[x509.Certificate, Any]
) -> bytes:
    """One BasicOCSPResponse carrying two SingleResponses (cryptography builds only one; asn1crypto joins them)."""
    from asn1crypto import core
    from asn1crypto import ocsp as aocsp
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import padding, rsa
    from cryptography.x509 import ocsp

    def one(cert: x509.Certificate, status: Any) -> aocsp.OCSPResponse:
        revoked = status == ocsp.OCSPCertStatus.REVOKED
        built = (
            ocsp.OCSPResponseBuilder()
            .add_response(
                cert=cert,
                issuer=pki.intermediate.cert,
                algorithm=hashes.SHA256(),
                cert_status=status,
                this_update=NOW - dt.timedelta(hours=1),
                next_update=NOW + dt.timedelta(hours=1),
                revocation_time=ns.EPOCH + dt.timedelta(days=40) if revoked else None,
                revocation_reason=None,
            )
            .responder_id(ocsp.OCSPResponderEncoding.HASH, pki.intermediate.cert)
            .sign(pki.intermediate.key, hashes.SHA256())  # type: ignore[arg-type]
        )
        return aocsp.OCSPResponse.load(built.public_bytes(serialization.Encoding.DER))

    outer, extra = one(*first), one(*second)
    basic = outer["response_bytes"]["response"].parsed
    tbs = basic["tbs_response_data"]
    extra_single = extra["response_bytes"]["response"].parsed["tbs_response_data"]["responses"][0]
    tbs["responses"] = aocsp.Responses([tbs["responses"][0].copy(), extra_single.copy()])
    key = pki.intermediate.key
    assert isinstance(key, rsa.RSAPrivateKey)
    basic["signature"] = core.OctetBitString(key.sign(tbs.dump(force=True), padding.PKCS1v15(), hashes.SHA256()))
    outer["response_bytes"]["response"] = core.ParsableOctetString(basic.dump(force=True))
    return bytes(outer.dump(force=True))


@pytest.mark.parametrize("leaf_first", [True, False])
def test_ocsp_answer_is_picked_by_serial_and_issuer_among_several(leaf_first: bool) -> None:
    """A responder may answer about several certificates in one response: the leaf's own answer counts,
    whatever its position, and a response that says nothing about the leaf is no answer."""
    from cryptography.x509 import ocsp

    from provider.verifiers.notation.revocation import REVOKED, RevocationChecker, RevocationConfig

    pki = ns.TestPki.create("multi")
    sibling = ns.issue(ns.name("multi sibling"), issuer=pki.intermediate)
    answers = [(pki.leaf.cert, ocsp.OCSPCertStatus.REVOKED), (sibling.cert, ocsp.OCSPCertStatus.GOOD)]
    data = _ocsp_with_two_answers(pki, *(answers if leaf_first else answers[::-1]))
    assert len(list(ocsp.load_der_ocsp_response(data).responses)) == 2
    checker = RevocationChecker(RevocationConfig(mode="online"))
    notes: list[str] = []
    status, _ = checker._ocsp_status(pki.leaf.cert, pki.intermediate.cert, data, NOW, None, "http://ocsp", notes)
    assert status is not None and status.status == REVOKED, notes

    stranger = ns.issue(ns.name("multi stranger"), issuer=pki.intermediate)
    status, _ = checker._ocsp_status(stranger.cert, pki.intermediate.cert, data, NOW, None, "http://ocsp", notes)
    assert status is None
    assert notes[-1] == "http://ocsp: OCSP response is for another certificate"
    other_issuer = ns.TestPki.create("multi other")
    status, _ = checker._ocsp_status(
        pki.leaf.cert, other_issuer.intermediate.cert, data, NOW, None, "http://ocsp", notes
    )
    assert status is None
    assert notes[-1] == "http://ocsp: OCSP response is for another certificate"


async def test_online_revocation_only_contacts_allowed_hosts(tmp_path: Path) -> None:
    cdp = x509.CRLDistributionPoints(
        [x509.DistributionPoint([x509.UniformResourceIdentifier("http://crl.invalid/ci.crl")], None, None, None)]
    )
    pki = ns.TestPki.create("rev2", extra=[(cdp, False)])
    result = await check(
        tmp_path, pki, sign(ns.sign_jws, pki), JWS, revocation={"mode": "online", "allow": ["127.0.0.1"]}
    )
    assert "http://crl.invalid/ci.crl: host not in revocation.allow" in result.reason


def _tsa_config(tmp_path: Path, pki: ns.TestPki, tsa: ns.TestTsa, verify_timestamp: str = "always") -> dict[str, Any]:
    return {
        "trustPolicy": policy(["ca:ci", "tsa:test"], verifyTimestamp=verify_timestamp),
        "trustStores": {
            "ca": {"ci": [write_store(tmp_path, pki.root.cert)]},
            "tsa": {"test": [write_store(tmp_path, tsa.root.cert)]},
        },
        "revocation": {"tsaChain": "skip"},
    }


def _stamped(signer: Signer, pki: ns.TestPki, tsa: ns.TestTsa, gen_time: dt.datetime, **options: Any) -> bytes:
    unstamped = sign(signer, pki, **options)
    raw = ns.jws_signature_bytes(unstamped) if signer is ns.sign_jws else ns.cose_signature_bytes(unstamped)
    return ns.add_timestamp(unstamped, tsa.token(raw, gen_time))


@pytest.fixture(scope="module")
def tsa() -> ns.TestTsa:
    return ns.TestTsa.create()


@pytest.mark.parametrize(("signer", "media_type"), FORMATS)
async def test_own_timestamp_authority(tmp_path: Path, tsa: ns.TestTsa, signer: Signer, media_type: str) -> None:
    pki = ns.TestPki.create("stamped", not_after=ns.EPOCH + dt.timedelta(days=365))
    gen_time = ns.EPOCH + dt.timedelta(days=31)
    envelope = _stamped(signer, pki, tsa, gen_time)
    p = params(_tsa_config(tmp_path, pki, tsa))
    result = await verify(p, envelope, media_type, DESCRIPTOR)
    assert result.succeeded, result.reason
    assert result.details["timestamp"]["authority"] == "CN=tsa signer,O=Referee Test,ST=WA,C=US"
    assert result.details["timestamp"]["time"] == "2024-02-01T00:00:00Z"
    later = params(_tsa_config(tmp_path, pki, tsa, "afterCertExpiry"))
    assert (await verify(later, envelope, media_type, DESCRIPTOR)).succeeded


async def test_timestamp_must_countersign_this_signature(tmp_path: Path, tsa: ns.TestTsa, pki: ns.TestPki) -> None:
    token = tsa.token(b"another signature", ns.EPOCH + dt.timedelta(days=31))
    envelope = sign(ns.sign_jws, pki, timestamp_token=token)
    result = await verify(params(_tsa_config(tmp_path, pki, tsa)), envelope, JWS, DESCRIPTOR)
    assert result.reason == "authenticTimestamp check failed: timestamp messageImprint does not match the signature"


async def test_timestamp_outside_the_signing_certificate_validity(tmp_path: Path, tsa: ns.TestTsa) -> None:
    pki = ns.TestPki.create("short", not_after=ns.EPOCH + dt.timedelta(days=40))
    envelope = _stamped(ns.sign_jws, pki, tsa, ns.EPOCH + dt.timedelta(days=45))
    result = await verify(params(_tsa_config(tmp_path, pki, tsa)), envelope, JWS, DESCRIPTOR)
    assert result.reason.startswith(
        "authenticTimestamp check failed: timestamp 2024-02-15T00:00:00Z ± 0:00:01 is outside"
    )
    before_signing = _stamped(ns.sign_jws, pki, tsa, ns.EPOCH + dt.timedelta(days=29))
    result = await verify(params(_tsa_config(tmp_path, pki, tsa)), before_signing, JWS, DESCRIPTOR)
    assert "is not after the signing time" in result.reason


async def test_timestamping_certificate_rules(tmp_path: Path, pki: ns.TestPki) -> None:
    loose = ns.TestTsa.create("loose", eku_critical=False)
    envelope = _stamped(ns.sign_cose, pki, loose, ns.EPOCH + dt.timedelta(days=31))
    result = await verify(params(_tsa_config(tmp_path, pki, loose)), envelope, COSE, DESCRIPTOR)
    assert result.reason == (
        "authenticTimestamp check failed: timestamping certificate chain is invalid: timestamping certificate "
        "'CN=loose signer,O=Referee Test,ST=WA,C=US' must mark extended key usage critical"
    )
    code = ns.TestTsa.create("code", ekus=[ExtendedKeyUsageOID.CODE_SIGNING])
    envelope = _stamped(ns.sign_cose, pki, code, ns.EPOCH + dt.timedelta(days=31))
    result = await verify(params(_tsa_config(tmp_path, pki, code)), envelope, COSE, DESCRIPTOR)
    assert "must have timeStamping as its only extended key usage" in result.reason


async def test_online_revocation_ocsp_and_crl_on_loopback(tmp_path: Path) -> None:
    """A local HTTP responder (127.0.0.1 only): OCSP answers good, revoked; an unreachable OCSP falls back to CRL."""
    from aiohttp import web
    from cryptography.hazmat.primitives import serialization
    from cryptography.x509 import ocsp

    state: dict[str, Any] = {"status": ocsp.OCSPCertStatus.GOOD, "ocsp_hits": 0, "crl_hits": 0}
    holder: dict[str, ns.TestPki] = {}

    async def ocsp_handler(request: web.Request) -> web.Response:
        state["ocsp_hits"] += 1
        pki = holder["pki"]
        req = ocsp.load_der_ocsp_request(await request.read())
        assert req.serial_number == pki.leaf.cert.serial_number
        revoked = state["status"] == ocsp.OCSPCertStatus.REVOKED
        builder = (
            ocsp.OCSPResponseBuilder()
            .add_response(
                cert=pki.leaf.cert,
                issuer=pki.intermediate.cert,
                algorithm=hashes.SHA1(),
                cert_status=state["status"],
                this_update=NOW - dt.timedelta(hours=1),
                next_update=NOW + dt.timedelta(hours=1),
                revocation_time=ns.EPOCH + dt.timedelta(days=40) if revoked else None,
                revocation_reason=None,
            )
            .responder_id(ocsp.OCSPResponderEncoding.HASH, pki.intermediate.cert)
        )
        response = builder.sign(pki.intermediate.key, hashes.SHA256())  # type: ignore[arg-type]
        return web.Response(body=response.public_bytes(serialization.Encoding.DER))

    async def crl_handler(request: web.Request) -> web.Response:
        state["crl_hits"] += 1
        return web.Response(
            body=_crl(holder["pki"].intermediate, [holder["pki"].leaf.cert.serial_number], NOW + dt.timedelta(days=1))
        )

    app = web.Application()
    app.router.add_post("/ocsp", ocsp_handler)
    app.router.add_get("/ci.crl", crl_handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        aia = x509.AuthorityInformationAccess(
            [
                x509.AccessDescription(
                    x509.oid.AuthorityInformationAccessOID.OCSP,
                    x509.UniformResourceIdentifier(f"http://127.0.0.1:{port}/ocsp"),
                )
            ]
        )
        pki = ns.TestPki.create("online", extra=[(aia, False)])
        holder["pki"] = pki
        online = {"mode": "online", "allow": ["127.0.0.1"], "timeout": "2s"}
        envelope = sign(ns.sign_jws, pki)
        good = await check(tmp_path, pki, envelope, JWS, revocation=online)
        assert good.succeeded, good.reason
        assert good.details["revocation"][-1]["method"] == "ocsp"
        state["status"] = ocsp.OCSPCertStatus.REVOKED
        revoked = await check(tmp_path, pki, envelope, JWS, revocation=online)
        assert revoked.reason.startswith(
            "revocation check failed: certificate 'CN=online signer,O=Referee Test,ST=WA,C=US' is revoked (ocsp"
        )

        cdp = x509.CRLDistributionPoints(
            [
                x509.DistributionPoint(
                    [x509.UniformResourceIdentifier(f"http://127.0.0.1:{port}/ci.crl")], None, None, None
                )
            ]
        )
        dead = x509.AuthorityInformationAccess(
            [
                x509.AccessDescription(
                    x509.oid.AuthorityInformationAccessOID.OCSP,
                    x509.UniformResourceIdentifier(f"http://127.0.0.1:{port}/missing"),
                )
            ]
        )
        fallback = ns.TestPki.create("fallback", extra=[(dead, False), (cdp, False)])
        holder["pki"] = fallback
        result = await check(tmp_path, fallback, sign(ns.sign_jws, fallback), JWS, revocation=online)
        assert result.reason.startswith(
            "revocation check failed: certificate 'CN=fallback signer,O=Referee Test,ST=WA,C=US' is revoked (crl"
        )
        assert state["crl_hits"] == 1
    finally:
        await runner.cleanup()


async def test_unreachable_responder_is_undecided_not_a_cached_denial(tmp_path: Path) -> None:
    """No responder answers: under an enforced revocation check that is undecided (transient, so Gatekeeper is
    told to ask again) rather than a denial that would be cached; a definite failure stays a failure."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed_port = s.getsockname()[1]
    aia = x509.AuthorityInformationAccess(
        [
            x509.AccessDescription(
                x509.oid.AuthorityInformationAccessOID.OCSP,
                x509.UniformResourceIdentifier(f"http://127.0.0.1:{closed_port}/ocsp"),
            )
        ]
    )
    pki = ns.TestPki.create("down", extra=[(aia, False)])
    envelope = sign(ns.sign_jws, pki)
    online = {"mode": "online", "allow": ["127.0.0.1"], "timeout": "1s"}
    with pytest.raises(RevocationUnavailableError) as exc:
        await check(tmp_path, pki, envelope, JWS, revocation=online)
    assert exc.value.transient
    assert "has unknown revocation status" in exc.value.message
    logged = await check(tmp_path, pki, envelope, JWS, revocation=online, level="permissive")
    assert logged.succeeded, logged.reason
    refused = await check(tmp_path, pki, envelope, JWS, revocation={"mode": "online", "allow": ["other.example"]})
    assert not refused.succeeded
    assert "host not in revocation.allow" in refused.reason


@pytest.mark.parametrize("level", ["strict", "permissive"])
async def test_absurd_timestamp_accuracy_is_a_timestamp_failure_not_a_crash(tmp_path: Path, level: str) -> None:
    """The countersignature header is unsigned: a token claiming 10**30 s of accuracy must fail the timestamp
    check (enforced under strict, logged under permissive), never crash the verifier."""
    pki = ns.TestPki.create("acc", not_after=ns.EPOCH + dt.timedelta(days=365))
    tsa = ns.TestTsa.create()
    envelope = sign(ns.sign_jws, pki)
    token = tsa.token(ns.jws_signature_bytes(envelope), ns.EPOCH + dt.timedelta(days=31), accuracy_seconds=10**30)
    stamped = ns.add_timestamp(envelope, token)
    cfg = _tsa_config(tmp_path, pki, tsa)
    cfg["trustPolicy"]["trustPolicies"][0]["signatureVerification"]["level"] = level
    result = await verify(params(cfg), stamped, JWS, DESCRIPTOR)
    assert "accuracy" in json.dumps(result.details) or "accuracy" in result.reason
    assert result.succeeded is (level == "permissive")


async def test_deeply_nested_payload_is_an_integrity_failure(tmp_path: Path, pki: ns.TestPki) -> None:
    other = ns.TestPki.create("deep")
    envelope = ns.sign_jws(b"[" * 100000 + b"]" * 100000, other.leaf.key, other.chain)
    result = await verify(params(config(tmp_path, pki.root.cert, level="audit")), envelope, JWS, DESCRIPTOR)
    assert not result.succeeded
    assert "payload is not JSON" in result.reason
