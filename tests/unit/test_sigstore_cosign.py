"""cosign legacy ``.sig`` signatures with Rekor and Fulcio: the shared cosign vectors (vectors/cosign/README.md)
with a pinned clock, plus generated keyless signatures for the cases the vectors cannot show."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

from provider import mediatypes as mt
from provider.errors import ConfigError
from tests.support.paths import VECTORS as SHARED_VECTORS
from tests.support.sigstore_sign import (
    PINNED_NOW,
    FakeSigstore,
    MemorySource,
    PrivatePKI,
    artifact_request,
    build_verifier,
    ct_log_pems,
    layer,
    pem_cert,
)

VECTORS = SHARED_VECTORS / "cosign"
KEYS = VECTORS / "keys"
COSIGN_PUB, COSIGN2_PUB, REKOR_PUB, FULCIO = (
    str(KEYS / n) for n in ("cosign.pub", "cosign2.pub", "rekor.pub", "fulcio_v1.crt.pem")
)
PUBLIC_GOOD = str(SHARED_VECTORS / "sigstore-bundle" / "trusted_root.public-good.json")
CT_LOGS = ct_log_pems(Path(PUBLIC_GOOD))
MITR = {"identity": "mitr@redhat.com", "issuer": "https://github.com/login/oauth"}


def _vector(case: str, drop: tuple[str, ...] = (), patch: dict[str, str] | None = None, **kw: Any) -> Any:
    source = MemorySource()
    payload = (VECTORS / case / "payload.json").read_bytes()
    descriptor = json.loads((VECTORS / case / "layer-descriptor.json").read_text())
    annotations = {k: v for k, v in descriptor["annotations"].items() if k not in drop}
    annotations.update(patch or {})
    subject = "sha256:" + hashlib.sha256((VECTORS / case / "image-manifest.json").read_bytes()).hexdigest()
    layers = [layer(source, mt.COSIGN_SIMPLESIGNING, payload, annotations)]
    return artifact_request(source, layers, subject_digest=subject, artifact_type=mt.COSIGN_LEGACY_SIGNATURES, **kw)


def _cosign(**params: Any) -> Any:
    return build_verifier({"name": "sig", "type": "cosign", **params})


# -- vectors: key + Rekor --------------------------------------------------------------------------------------------


async def test_key_rekor_valid_passes_with_its_key_and_the_rekor_key() -> None:
    verifier = _cosign(keys=[COSIGN2_PUB], rekorKeys=[REKOR_PUB], requireTlog=True)
    result = await verifier.verify(_vector("key-rekor-valid"))
    assert result.succeeded, result.reason
    assert result.details["tlogVerified"] is True
    assert result.details["integratedTime"] == "2023-01-20T21:57:39Z"
    assert result.details["logIndex"] == 11608800


async def test_key_rekor_valid_fails_with_the_wrong_key() -> None:
    result = await _cosign(keys=[COSIGN_PUB], rekorKeys=[REKOR_PUB]).verify(_vector("key-rekor-valid"))
    assert not result.succeeded
    assert "does not verify with any of 1 configured keys" in result.reason


async def test_key_rekor_valid_fails_when_cosign_pub_is_the_rekor_key() -> None:
    result = await _cosign(keys=[COSIGN2_PUB], rekorKeys=[COSIGN_PUB]).verify(_vector("key-rekor-valid"))
    assert not result.succeeded
    assert "Rekor entry is from log c0d23d6ad406973f" in result.reason and "no key is configured" in result.reason


async def test_bad_set_is_denied() -> None:
    descriptor = json.loads((VECTORS / "key-rekor-valid" / "layer-descriptor.json").read_text())
    bundle = json.loads(descriptor["annotations"][mt.ANNOTATION_COSIGN_BUNDLE])
    bundle["Payload"]["integratedTime"] += 1  # the SET no longer covers the payload
    patched = {mt.ANNOTATION_COSIGN_BUNDLE: json.dumps(bundle)}
    verifier = _cosign(keys=[COSIGN2_PUB], rekorKeys=[REKOR_PUB])
    result = await verifier.verify(_vector("key-rekor-valid", patch=patched))
    assert not result.succeeded
    assert "signed entry timestamp (SET) does not verify" in result.reason


async def test_set_body_must_record_this_signature() -> None:
    # key-valid's signature under key-rekor-valid's genuine SET: the SET verifies, its body names another payload
    valid = json.loads((VECTORS / "key-rekor-valid" / "layer-descriptor.json").read_text())
    patched = {mt.ANNOTATION_COSIGN_BUNDLE: valid["annotations"][mt.ANNOTATION_COSIGN_BUNDLE]}
    result = await _cosign(keys=[COSIGN_PUB], rekorKeys=[REKOR_PUB]).verify(_vector("key-valid", patch=patched))
    assert not result.succeeded
    assert "Rekor entry records another payload hash" in result.reason


async def test_key_only_signature_fails_when_a_tlog_is_required() -> None:
    assert (await _cosign(keys=[COSIGN_PUB]).verify(_vector("key-valid"))).succeeded
    result = await _cosign(keys=[COSIGN_PUB], rekorKeys=[REKOR_PUB], requireTlog=True).verify(_vector("key-valid"))
    assert not result.succeeded
    assert "no transparency-log entry" in result.reason


async def test_unknown_key_is_denied() -> None:
    result = await _cosign(keys=[COSIGN2_PUB]).verify(_vector("key-valid"))
    assert not result.succeeded
    assert "signature does not verify with any of 1 configured keys" in result.reason


async def test_tampered_payload_is_denied() -> None:
    result = await _cosign(keys=[COSIGN_PUB]).verify(_vector("key-valid-tampered-payload"))
    assert not result.succeeded
    assert "does not verify" in result.reason


def test_require_tlog_without_rekor_keys_is_a_config_error() -> None:
    with pytest.raises(ConfigError) as info:
        _cosign(keys=[COSIGN_PUB], requireTlog=True)
    assert any("requireTlog needs Rekor public keys" in p for p in info.value.problems)


# -- vectors: keyless -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "trust",
    [{"fulcioRoots": [FULCIO], "rekorKeys": [REKOR_PUB], "ctLogKeys": CT_LOGS}, {"trustedRoot": PUBLIC_GOOD}],
    ids=["pem-files", "trusted-root"],
)
async def test_fulcio_rekor_valid_passes_checked_at_integrated_time(trust: dict[str, Any]) -> None:
    verifier = _cosign(identities=[MITR], **trust)
    result = await verifier.verify(_vector("fulcio-rekor-valid"))
    assert result.succeeded, result.reason
    assert result.details["signer"] == "keyless"
    assert result.details["identity"] == "mitr@redhat.com"
    assert result.details["issuer"] == "https://github.com/login/oauth"
    assert result.details["integratedTime"] == "2023-01-20T20:51:33Z"
    assert result.details["sctVerified"] is True
    assert "keyless signature by mitr@redhat.com" in result.reason


async def test_keyless_verdict_does_not_depend_on_the_clock() -> None:
    # the certificate expired in 2023; only the Rekor integrated time matters
    verifier = _cosign(identities=[MITR], fulcioRoots=[FULCIO], rekorKeys=[REKOR_PUB], ctLogKeys=CT_LOGS)
    for now in (PINNED_NOW, dt.datetime(2040, 1, 1, tzinfo=dt.UTC)):
        assert (await verifier.verify(_vector("fulcio-rekor-valid", now=now))).succeeded


async def test_identity_regex_is_a_full_match() -> None:
    base = {"fulcioRoots": [FULCIO], "rekorKeys": [REKOR_PUB], "ctLogKeys": CT_LOGS}
    good = _cosign(
        identities=[{"identityRegExp": r".*@redhat\.com", "issuerRegExp": r"https://github\.com/.*"}], **base
    )
    assert (await good.verify(_vector("fulcio-rekor-valid"))).succeeded
    partial = _cosign(identities=[{"identityRegExp": "mitr", "issuer": MITR["issuer"]}], **base)
    result = await partial.verify(_vector("fulcio-rekor-valid"))
    assert not result.succeeded and "matches none of the configured identities" in result.reason


async def test_wrong_identity_is_denied() -> None:
    verifier = _cosign(
        identities=[{"identity": "someone@redhat.com", "issuer": MITR["issuer"]}],
        fulcioRoots=[FULCIO],
        rekorKeys=[REKOR_PUB],
        ctLogKeys=CT_LOGS,
    )
    result = await verifier.verify(_vector("fulcio-rekor-valid"))
    assert not result.succeeded
    assert "certificate identity mitr@redhat.com" in result.reason
    assert "matches none of the configured identities (someone@redhat.com from" in result.reason


async def test_wrong_issuer_is_denied() -> None:
    verifier = _cosign(
        identities=[{"identity": "mitr@redhat.com", "issuer": "https://accounts.google.com"}],
        fulcioRoots=[FULCIO],
        rekorKeys=[REKOR_PUB],
        ctLogKeys=CT_LOGS,
    )
    result = await verifier.verify(_vector("fulcio-rekor-valid"))
    assert not result.succeeded
    assert "with issuer https://github.com/login/oauth matches none" in result.reason


async def test_keyless_without_set_is_denied() -> None:
    verifier = _cosign(identities=[MITR], fulcioRoots=[FULCIO], rekorKeys=[REKOR_PUB], ctLogKeys=CT_LOGS)
    result = await verifier.verify(_vector("fulcio-rekor-valid", drop=(mt.ANNOTATION_COSIGN_BUNDLE,)))
    assert not result.succeeded
    assert "keyless signature without a verified signing time" in result.reason


async def test_keyless_with_another_fulcio_root_is_denied() -> None:
    other = FakeSigstore()
    root = Path("/tmp") / f"other-root-{id(other)}.pem"
    root.write_bytes(other.ca_pem)
    verifier = _cosign(identities=[MITR], fulcioRoots=[str(root)], rekorKeys=[REKOR_PUB], ctLogKeys=CT_LOGS)
    result = await verifier.verify(_vector("fulcio-rekor-valid"))
    assert not result.succeeded
    assert "does not chain to a configured Fulcio root at 2023-01-20T20:51:33Z" in result.reason


# -- generated keyless signatures -------------------------------------------------------------------------------------

SUBJECT = "sha256:" + hashlib.sha256(b"an image manifest").hexdigest()


def _payload(digest: str = SUBJECT) -> bytes:
    doc = {
        "critical": {
            "identity": {"docker-reference": "registry.example/team/app"},
            "image": {"docker-manifest-digest": digest},
            "type": "cosign container image signature",
        },
        "optional": None,
    }
    return json.dumps(doc, separators=(",", ":")).encode()


def _keyless_request(
    fake: FakeSigstore, *, integrated_time: int | None = None, not_before: dt.datetime | None = None, **kw: Any
) -> Any:
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec

    key, cert = fake.issue(
        "https://ci.example/workflows/build@refs/heads/main", "https://issuer.example", not_before=not_before, **kw
    )
    payload = _payload()
    signature = key.sign(payload, ec.ECDSA(hashes.SHA256()))
    body = fake.hashedrekord(hashlib.sha256(payload).digest(), signature, pem_cert(cert))
    entry = fake.log_entry(body, integrated_time)
    annotations = {
        mt.ANNOTATION_COSIGN_SIGNATURE: base64.b64encode(signature).decode(),
        mt.ANNOTATION_COSIGN_CERTIFICATE: pem_cert(cert).decode(),
        mt.ANNOTATION_COSIGN_CHAIN: fake.ca_pem.decode(),
        mt.ANNOTATION_COSIGN_BUNDLE: fake.cosign_bundle_annotation(entry),
    }
    source = MemorySource()
    layers = [layer(source, mt.COSIGN_SIMPLESIGNING, payload, annotations)]
    return artifact_request(source, layers, subject_digest=SUBJECT, artifact_type=mt.COSIGN_LEGACY_SIGNATURES)


def _keyless_verifier(fake: FakeSigstore, tmp_path: Path, trust: dict[str, Any] | None = None, **identity: Any) -> Any:
    (tmp_path / "fulcio.pem").write_bytes(fake.ca_pem)
    (tmp_path / "rekor.pub").write_bytes(fake.rekor_pem)
    rule = {"identity": "https://ci.example/workflows/build@refs/heads/main", "issuer": "https://issuer.example"}
    rule.update(identity)
    if trust is None:
        trust = {"ctLogKeys": [fake.ct_pem.decode()]}
    return _cosign(
        identities=[rule], fulcioRoots=[str(tmp_path / "fulcio.pem")], rekorKeys=[str(tmp_path / "rekor.pub")], **trust
    )


async def test_generated_keyless_signature_passes(tmp_path: Path) -> None:
    fake = FakeSigstore()
    result = await _keyless_verifier(fake, tmp_path).verify(_keyless_request(fake))
    assert result.succeeded, result.reason
    assert result.details["identity"] == "https://ci.example/workflows/build@refs/heads/main"


async def test_keyless_needs_a_verified_sct_unless_explicitly_waived(tmp_path: Path) -> None:
    """Like cosign, keyless verification checks the certificate's embedded SCT; without CT log keys the
    configuration is refused, and only ``insecureIgnoreSct: true`` accepts a certificate with no SCT."""
    fake = FakeSigstore()
    with pytest.raises(ConfigError) as info:
        _keyless_verifier(fake, tmp_path, trust={})
    assert info.value.problems == [
        "verifiers[0].identities: keyless identities need CT log keys (ctLogKeys or a trustedRoot with ctlogs) "
        "to verify the certificate's embedded SCT; insecureIgnoreSct: true accepts certificates without one"
    ]
    checked = _keyless_verifier(fake, tmp_path)
    good = await checked.verify(_keyless_request(fake))
    assert good.succeeded and good.details["sctVerified"] is True
    missing = await checked.verify(_keyless_request(fake, sct=False))
    assert missing.reason.endswith("certificate carries no embedded SCT")
    other_log = FakeSigstore().ct_pem.decode()
    wrong = await _keyless_verifier(fake, tmp_path, trust={"ctLogKeys": [other_log]}).verify(_keyless_request(fake))
    assert wrong.reason.endswith("no embedded SCT verifies with a configured CT log key")
    waived = _keyless_verifier(fake, tmp_path, trust={"insecureIgnoreSct": True})
    result = await waived.verify(_keyless_request(fake, sct=False))
    assert result.succeeded and result.details["sctVerified"] is False


async def test_legacy_issuer_extension_is_read(tmp_path: Path) -> None:
    fake = FakeSigstore()
    result = await _keyless_verifier(fake, tmp_path).verify(_keyless_request(fake, legacy_issuer=True))
    assert result.succeeded, result.reason
    assert result.details["issuer"] == "https://issuer.example"


async def test_certificate_expired_at_integrated_time_is_denied(tmp_path: Path) -> None:
    fake = FakeSigstore()
    # the certificate lived 12:00-12:10; Rekor logged the entry at 12:30
    later = int((fake.now + dt.timedelta(minutes=30)).timestamp())
    request = _keyless_request(fake, integrated_time=later, not_before=fake.now)
    result = await _keyless_verifier(fake, tmp_path).verify(request)
    assert not result.succeeded
    assert "certificate expired at integrated time 2025-06-01T12:30:00Z" in result.reason


async def test_identity_scopes_limit_repositories(tmp_path: Path) -> None:
    fake = FakeSigstore()
    verifier = _keyless_verifier(fake, tmp_path, scopes=["registry.example/other/*"])
    result = await verifier.verify(_keyless_request(fake))
    assert not result.succeeded
    assert "no key or identity is configured for registry.example/team/app" in result.reason
    scoped = _keyless_verifier(fake, tmp_path, scopes=["registry.example/team/*"])
    assert (await scoped.verify(_keyless_request(fake))).succeeded


async def test_key_scopes_limit_repositories() -> None:
    scoped = _cosign(keys=[{"key": COSIGN_PUB, "scopes": ["registry.example/other/*"]}, COSIGN2_PUB])
    result = await scoped.verify(_vector("key-valid"))
    assert not result.succeeded
    assert "any of 1 configured keys" in result.reason  # only cosign2.pub applies to registry.example/team/app
    allowed = _cosign(keys=[{"key": COSIGN_PUB, "scopes": ["registry.example/team/*"]}])
    assert (await allowed.verify(_vector("key-valid"))).succeeded


def test_identity_needs_exactly_one_matcher_and_fulcio_roots() -> None:
    with pytest.raises(ConfigError) as info:
        _cosign(
            identities=[{"identity": "a@b", "identityRegExp": "a.*", "issuer": "x"}, {"identity": "a@b", "issuer": "x"}]
        )
    problems = "\n".join(info.value.problems)
    assert "verifiers[0].identities[0].identity: give exactly one of identity or identityRegExp\n" in problems + "\n"
    assert "keyless identities need Fulcio roots" in problems


# -- private PKI: certificateTime: now ---------------------------------------------------------------------------------

RELEASE = "release@example.com"


def _private_request(
    pki: PrivatePKI, *, issuer: str | None = None, not_before: dt.datetime | None = None, **kw: Any
) -> Any:
    """A cosign signature by a private-PKI leaf: certificate and chain annotations, no Rekor bundle, no timestamp
    (``cosign sign --key leaf.key --certificate leaf.pem --certificate-chain chain.pem --tlog-upload=false``)."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec

    key, cert = pki.issue(RELEASE, issuer=issuer, not_before=not_before)
    payload = _payload()
    annotations = {
        mt.ANNOTATION_COSIGN_SIGNATURE: base64.b64encode(key.sign(payload, ec.ECDSA(hashes.SHA256()))).decode(),
        mt.ANNOTATION_COSIGN_CERTIFICATE: pem_cert(cert).decode(),
        mt.ANNOTATION_COSIGN_CHAIN: pki.chain_pem.decode(),
    }
    source = MemorySource()
    layers = [layer(source, mt.COSIGN_SIMPLESIGNING, payload, annotations)]
    return artifact_request(source, layers, subject_digest=SUBJECT, artifact_type=mt.COSIGN_LEGACY_SIGNATURES, **kw)


def _private_verifier(pki: PrivatePKI, tmp_path: Path, **params: Any) -> Any:
    (tmp_path / "corp-root.pem").write_bytes(pki.root_pem)
    config: dict[str, Any] = {
        "caRoots": [str(tmp_path / "corp-root.pem")],
        "certificateTime": "now",
        "insecureIgnoreSct": True,
        "identities": [{"identity": RELEASE, "issuerRegExp": ".*"}],
    }
    config.update(params)
    return _cosign(**{k: v for k, v in config.items() if v is not None})


async def test_private_pki_certificate_is_checked_at_verification_time_only_when_opted_in(tmp_path: Path) -> None:
    """cosign checks a certificate with no log entry and no timestamp at the current time; Referee does so only
    under ``certificateTime: now``, against the private PKI's roots (``caRoots``), at the request's time."""
    pki = PrivatePKI()
    result = await _private_verifier(pki, tmp_path).verify(_private_request(pki))
    assert result.succeeded, result.reason
    assert result.details["certificateCheckedAt"] == "2026-11-01T00:00:00Z"  # PINNED_NOW, the request's time
    assert result.details["tlogVerified"] is False and result.details["sctVerified"] is False
    assert result.details["identity"] == RELEASE and result.details["issuer"] is None
    assert "certificate valid at verification time 2026-11-01T00:00:00Z" in result.reason
    default = await _private_verifier(pki, tmp_path, certificateTime=None).verify(_private_request(pki))
    assert not default.succeeded
    assert "keyless signature without a verified signing time" in default.reason


async def test_private_pki_certificate_outside_its_validity_or_from_another_pki_fails(tmp_path: Path) -> None:
    pki = PrivatePKI()
    verifier = _private_verifier(pki, tmp_path)
    later = dt.datetime(2028, 1, 1, tzinfo=dt.UTC)
    expired = await verifier.verify(_private_request(pki, now=later))
    assert not expired.succeeded
    assert "certificate expired at verification time 2028-01-01T00:00:00Z" in expired.reason
    future = await verifier.verify(_private_request(pki, not_before=dt.datetime(2027, 1, 1, tzinfo=dt.UTC)))
    assert not future.succeeded and "certificate expired at verification time 2026-11-01T00:00:00Z" in future.reason
    stranger = await verifier.verify(_private_request(PrivatePKI()))
    assert not stranger.succeeded
    assert "does not chain to a configured private (caRoots) root at 2026-11-01T00:00:00Z" in stranger.reason


async def test_private_pki_identity_with_and_without_an_oidc_issuer(tmp_path: Path) -> None:
    """A certificate without the OIDC issuer extension matches only an issuerRegExp that accepts "" (cosign reads
    a missing issuer as ""); one with the extension matches its issuer as usual."""
    pki = PrivatePKI()
    exact = _private_verifier(pki, tmp_path, identities=[{"identity": RELEASE, "issuer": "https://sso.example"}])
    without = await exact.verify(_private_request(pki))
    assert not without.succeeded and "with issuer (none) matches none" in without.reason
    with_issuer = await exact.verify(_private_request(pki, issuer="https://sso.example"))
    assert with_issuer.succeeded, with_issuer.reason
    assert with_issuer.details["issuer"] == "https://sso.example"
    nonempty = _private_verifier(pki, tmp_path, identities=[{"identity": RELEASE, "issuerRegExp": ".+"}])
    assert not (await nonempty.verify(_private_request(pki))).succeeded


@pytest.mark.parametrize(
    ("params", "problem"),
    [
        (
            {"trustedRoot": PUBLIC_GOOD},
            "now is only for private-PKI roots (caRoots), never with Fulcio roots (trustedRoot): Fulcio "
            "certificates are checked only at a signing time a Rekor entry or RFC 3161 timestamp proves",
        ),
        (
            {"fulcioRoots": [FULCIO]},
            "now is only for private-PKI roots (caRoots), never with Fulcio roots (fulcioRoots): Fulcio "
            "certificates are checked only at a signing time a Rekor entry or RFC 3161 timestamp proves",
        ),
        ({"caRoots": None, "fulcioRoots": None}, "now needs the private PKI's root certificates (caRoots)"),
        (
            {"identities": None, "keys": [COSIGN_PUB]},
            "now applies to certificates, but no keyless identities are configured",
        ),
        ({"certificateTime": "later"}, "must be one of signed, now; got 'later'"),
    ],
    ids=["trusted-root", "fulcio-roots", "no-ca-roots", "no-identities", "unknown-value"],
)
def test_certificate_time_now_is_refused_with_fulcio_roots(
    tmp_path: Path, params: dict[str, Any], problem: str
) -> None:
    with pytest.raises(ConfigError) as info:
        _private_verifier(PrivatePKI(), tmp_path, **params)
    assert f"verifiers[0].certificateTime: {problem}" in info.value.problems
