"""Sigstore bundles: the sigstore-conformance cases and cosign's OCI attestation bundle
(vectors/sigstore-bundle/README.md), through sigstore-python and through the hand-written path."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from provider import mediatypes as mt
from provider.errors import ConfigError
from provider.reference import parse_reference
from provider.verifiers.sigstore.common import Rejected
from provider.verifiers.sigstore_bundle import BundleChecker
from tests.support.paths import VECTORS as SHARED_VECTORS
from tests.support.sigstore_sign import (
    FakeSigstore,
    MemorySource,
    PrivatePKI,
    artifact_request,
    build_verifier,
    layer,
    pem_cert,
    pem_public,
    slsa_v1,
    statement,
)

VECTORS = SHARED_VECTORS / "sigstore-bundle"
CASES = VECTORS / "conformance"
PUBLIC_GOOD = VECTORS / "trusted_root.public-good.json"
BEACON = {
    "identity": "https://github.com/sigstore-conformance/extremely-dangerous-public-oidc-beacon/.github/workflows/"
    "extremely-dangerous-oidc-beacon.yml@refs/heads/main",
    "issuer": "https://token.actions.githubusercontent.com",
}
OCI = VECTORS / "cosign-oci-attestation"
OCI_DIGEST = "sha256:732112270d7e59418a8c080b134b24cabd67d250d0d0147a97ed95ba5c280aa4"
CODY = {"identity": "cody@soyland.com", "issuer": "https://github.com/login/oauth"}
REF = parse_reference("registry.example/team/app:v1")

EXPECTED = {
    "happy-path-v0.3": True,
    "happy-path-intoto-in-dsse-v3": True,
    "intoto-with-custom-trust-root": True,
    "managed-key-happy-path": True,
    "signature-mismatch_fail": False,
    "dsse-invalid-sig_fail": False,
}


def _checker(root: Path, *, keys: list[str] | None = None, identities: list[dict[str, Any]] | None = None) -> Any:
    params: dict[str, Any] = {"trustedRoot": str(root)}
    if keys:
        params["keys"] = keys
    if identities:
        params["identities"] = identities
    return build_verifier({"name": "bundles", "type": "sigstore-bundle", **params}).params.checker


def _case(name: str) -> tuple[BundleChecker, bytes, str]:
    case = CASES / name
    root = case / "trusted_root.json" if (case / "trusted_root.json").exists() else PUBLIC_GOOD
    artifact = case / "artifact" if (case / "artifact").exists() else VECTORS / "a.txt"
    if (case / "key.pub").exists():
        checker = _checker(root, keys=[str(case / "key.pub")])
    else:
        checker = _checker(root, identities=[BEACON])
    digest = "sha256:" + hashlib.sha256(artifact.read_bytes()).hexdigest()
    return checker, (case / "bundle.sigstore.json").read_bytes(), digest


@pytest.mark.parametrize("path", ["sigstore-python", "hand-written"])
@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_conformance_case_verdicts(name: str, path: str) -> None:
    checker, raw, digest = _case(name)
    if path == "hand-written":
        checker = dataclasses.replace(checker, sigstore=None)
    if EXPECTED[name]:
        outcome = checker.verify(raw, digest, REF)
        assert outcome.facts["signer"] in ("key", "keyless")
        assert outcome.facts["tlogVerified"] is True
    else:
        with pytest.raises(Rejected) as info:
            checker.verify(raw, digest, REF)
        assert "signature" in info.value.reason.lower()


def test_which_path_verified_what() -> None:
    # certificate bundles with hashedrekord/dsse entries go to sigstore-python; the gaps are hand-written
    assert (
        _case("happy-path-v0.3")[0].verify(*_case("happy-path-v0.3")[1:], REF).facts["verifiedWith"]
        == "sigstore-python"
    )
    for name in ("managed-key-happy-path", "intoto-with-custom-trust-root"):
        checker, raw, digest = _case(name)
        assert checker.verify(raw, digest, REF).facts["verifiedWith"] == "referee"


def test_intoto_bundle_uses_its_rfc3161_timestamp_and_subject() -> None:
    checker, raw, digest = _case("intoto-with-custom-trust-root")
    facts = checker.verify(raw, digest, REF).facts
    assert facts["predicateType"] == "https://slsa.dev/provenance/v1"
    assert facts["timestamps"] == ["2023-02-01T00:00:00Z"] or facts["integratedTime"] == "2023-02-01T00:00:00Z"
    with pytest.raises(Rejected) as info:
        checker.verify(raw, "sha256:" + "0" * 64, REF)
    assert "do not include the image digest" in info.value.reason


def test_managed_key_wrong_key_is_rejected_at_configuration() -> None:
    with pytest.raises(ConfigError) as info:
        _checker(PUBLIC_GOOD, keys=[str(CASES / "managed-key-wrong-key_fail" / "key.pub")])
    assert info.value.problems == ["verifiers[0].keys[0]: not a PEM public key"]


def test_managed_key_bundle_with_another_key_fails() -> None:
    other = Path("/tmp") / "referee-other-key.pub"
    other.write_bytes(pem_public(ec.generate_private_key(ec.SECP256R1())))
    checker = _checker(PUBLIC_GOOD, keys=[str(other)])
    raw = (CASES / "managed-key-happy-path" / "bundle.sigstore.json").read_bytes()
    digest = "sha256:" + hashlib.sha256((VECTORS / "a.txt").read_bytes()).hexdigest()
    with pytest.raises(Rejected) as info:
        checker.verify(raw, digest, REF)
    assert "signature does not verify with any of 1 configured keys" in info.value.reason


def test_message_bundle_for_another_artifact_fails() -> None:
    checker, raw, _ = _case("happy-path-v0.3")
    for candidate in (checker, dataclasses.replace(checker, sigstore=None)):
        with pytest.raises(Rejected):
            candidate.verify(raw, "sha256:" + "1" * 64, REF)


@pytest.mark.parametrize("sigstore", [True, False], ids=["sigstore-python", "hand-written"])
def test_oci_attestation_bundle(sigstore: bool) -> None:
    checker = _checker(OCI / "trusted_root_pgi.json", identities=[CODY])
    if not sigstore:
        checker = dataclasses.replace(checker, sigstore=None)
    raw = (OCI / "oci-attestation.sigstore.json").read_bytes()
    facts = checker.verify(raw, OCI_DIGEST, REF).facts
    assert facts["identity"] == "cody@soyland.com"
    assert facts["predicateType"] == "https://cosign.sigstore.dev/attestation/v1"
    with pytest.raises(Rejected) as info:
        checker.verify(raw, "sha256:" + "2" * 64, REF)
    assert "do not include the image digest" in info.value.reason


def test_oci_attestation_bundle_wrong_san_and_wrong_issuer() -> None:
    for rule in (dict(CODY, identity="someone@soyland.com"), dict(CODY, issuer="https://accounts.google.com")):
        checker = _checker(OCI / "trusted_root_pgi.json", identities=[rule])
        raw = (OCI / "oci-attestation.sigstore.json").read_bytes()
        for candidate in (checker, dataclasses.replace(checker, sigstore=None)):
            with pytest.raises(Rejected) as info:
                candidate.verify(raw, OCI_DIGEST, REF)
            assert "matches none of the configured identities" in info.value.reason


async def test_bundle_verifier_on_a_referrer_manifest() -> None:
    verifier = build_verifier(
        {
            "name": "bundles",
            "type": "sigstore-bundle",
            "trustedRoot": str(OCI / "trusted_root_pgi.json"),
            "identities": [CODY],
        }
    )
    source = MemorySource()
    raw = (OCI / "oci-attestation.sigstore.json").read_bytes()
    layers = [layer(source, mt.SIGSTORE_BUNDLE_V03, raw)]
    good = artifact_request(source, layers, subject_digest=OCI_DIGEST, artifact_type=mt.SIGSTORE_BUNDLE_V03)
    assert verifier.can_verify(good.artifact)
    result = await verifier.verify(good)
    assert result.succeeded, result.reason
    assert result.details["bundleDigest"] == layers[0]["digest"]
    bad = artifact_request(source, layers, subject_digest="sha256:" + "3" * 64, artifact_type=mt.SIGSTORE_BUNDLE_V03)
    result = await verifier.verify(bad)
    assert not result.succeeded
    assert "bundle 0: statement subjects" in result.reason


# -- generated bundles -----------------------------------------------------------------------------------------------

SUBJECT = "sha256:" + hashlib.sha256(b"image manifest bytes").hexdigest()


def _fake_root(tmp_path: Path, fake: FakeSigstore) -> Path:
    path = tmp_path / "trusted_root.json"
    path.write_bytes(fake.trusted_root())
    return path


def test_generated_public_key_dsse_bundle(tmp_path: Path) -> None:
    fake = FakeSigstore()
    key = ec.generate_private_key(ec.SECP256R1())
    (tmp_path / "key.pub").write_bytes(pem_public(key))
    checker = _checker(_fake_root(tmp_path, fake), keys=[str(tmp_path / "key.pub")])
    raw = fake.dsse_bundle(key, statement(SUBJECT, "https://sigstore.dev/cosign/sign/v1", {}))
    facts = checker.verify(raw, SUBJECT, REF).facts
    assert facts["signer"] == "key" and facts["verifiedWith"] == "referee"
    tampered = json.loads(raw)
    tampered["dsseEnvelope"]["payload"] = tampered["dsseEnvelope"]["payload"][:-4] + "AAAA"
    with pytest.raises(Rejected) as info:
        checker.verify(json.dumps(tampered).encode(), SUBJECT, REF)
    assert "does not verify" in info.value.reason


def _keyless_setup(tmp_path: Path, sigstore: bool) -> tuple[FakeSigstore, dict[str, str], Any, Any, Any]:
    """A fake Sigstore, one identity with its key and certificate, and a checker trusting them (through
    sigstore-python, or with it switched off so the hand-written path runs)."""
    fake = FakeSigstore()
    identity = {"identity": "dev@example.com", "issuer": "https://issuer.example"}
    key, cert = fake.issue(identity["identity"], identity["issuer"])
    checker = _checker(_fake_root(tmp_path, fake), identities=[identity])
    if not sigstore:
        checker = dataclasses.replace(checker, sigstore=None)
    return fake, identity, key, cert, checker


@pytest.mark.parametrize("form", ["message", "v2", "v2-dsse"])
def test_rekor_v2_entries_bind_public_key_bundles(tmp_path: Path, form: str) -> None:
    """Rekor v2 records a message signature as ``hashedrekord`` 0.0.2, a DSSE envelope as ``hashedrekord``
    0.0.2 over its PAE or as ``dsse`` 0.0.2, with no SET: the inclusion proof and the checkpoint signed by the
    log prove inclusion, and the body must name this signature, this key and these bytes."""
    fake = FakeSigstore()
    key = ec.generate_private_key(ec.SECP256R1())
    (tmp_path / "key.pub").write_bytes(pem_public(key))
    checker = _checker(_fake_root(tmp_path, fake), keys=[str(tmp_path / "key.pub")])
    if form == "message":
        raw = fake.message_bundle(key, bytes.fromhex(SUBJECT[7:]), rekor="v2")
    else:
        raw = fake.dsse_bundle(key, statement(SUBJECT, "https://sigstore.dev/cosign/sign/v1", {}), rekor=form)
    doc = json.loads(raw)
    [entry] = doc["verificationMaterial"]["tlogEntries"]
    assert entry["kindVersion"]["version"] == "0.0.2" and "inclusionPromise" not in entry
    facts = checker.verify(raw, SUBJECT, REF).facts
    assert facts["signer"] == "key" and facts["tlogVerified"] is True

    def rewritten(change: Any) -> bytes:
        """The bundle with its log entry body changed (and the one-leaf proof and checkpoint re-made)."""
        body = json.loads(base64.b64decode(entry["canonicalizedBody"]))
        change(body["spec"])
        fresh = {"body": base64.b64encode(json.dumps(body).encode()).decode(), "integratedTime": 0, "logIndex": 9}
        forged = json.loads(raw)
        forged["verificationMaterial"]["tlogEntries"] = [fake.bundle_tlog_entry({**fresh, "logID": ""})]
        return json.dumps(forged).encode()

    other = ec.generate_private_key(ec.SECP256R1())
    inner = "hashedRekordV002" if form != "v2-dsse" else "dsseV002"

    def other_signer(spec: dict[str, Any]) -> None:
        signatures = spec[inner].get("signatures") or [spec[inner]["signature"]]
        signatures[0]["verifier"] = fake.v2_verifier(other, None)

    def other_hash(spec: dict[str, Any]) -> None:
        field = spec[inner].get("data") or spec[inner]["payloadHash"]
        field["digest"] = base64.b64encode(b"\x00" * 32).decode()

    def other_signature(spec: dict[str, Any]) -> None:
        signatures = spec[inner].get("signatures") or [spec[inner]["signature"]]
        signatures[0]["content"] = base64.b64encode(b"\x30\x00").decode()

    for change, reason in [
        (other_signer, "Rekor entry records another signature or signer"),
        (other_hash, "Rekor entry records another payload hash"),
        (other_signature, "Rekor entry records another signature or signer"),
    ]:
        with pytest.raises(Rejected) as info:
            checker.verify(rewritten(change), SUBJECT, REF)
        assert reason in info.value.reason, change.__name__
    unproven = json.loads(raw)
    del unproven["verificationMaterial"]["tlogEntries"][0]["inclusionProof"]
    with pytest.raises(Rejected) as info:
        checker.verify(json.dumps(unproven).encode(), SUBJECT, REF)
    assert "neither a signed entry timestamp nor an inclusion proof" in info.value.reason


@pytest.mark.parametrize(
    ("damage", "reason"),
    [
        (lambda m: m["tlogEntries"][0].update(kindVersion=None), None),
        (lambda m: m.update(tlogEntries={"0": {}}), "bundle tlogEntries is not a list"),
        (lambda m: m.update(timestampVerificationData={"rfc3161Timestamps": {}}), "rfc3161Timestamps is not a list"),
    ],
    ids=["null-kind", "entries-object", "timestamps-object"],
)
@pytest.mark.parametrize("sigstore", [True, False], ids=["sigstore-python", "hand-written"])
def test_malformed_verification_material_is_a_rejection_not_a_crash(
    tmp_path: Path, damage: Any, reason: str | None, sigstore: bool
) -> None:
    fake, identity, key, cert, checker = _keyless_setup(tmp_path, sigstore)
    doc = json.loads(fake.message_bundle(key, bytes.fromhex(SUBJECT[7:]), cert=cert))
    damage(doc["verificationMaterial"])
    if reason is None:  # kindVersion is a hint: the logged body says what the entry is
        assert checker.verify(json.dumps(doc).encode(), SUBJECT, REF).facts["identity"] == identity["identity"]
        return
    with pytest.raises(Rejected) as info:
        checker.verify(json.dumps(doc).encode(), SUBJECT, REF)
    assert reason in info.value.reason


@pytest.mark.parametrize("sigstore", [True, False], ids=["sigstore-python", "hand-written"])
def test_generated_keyless_bundles(tmp_path: Path, sigstore: bool) -> None:
    fake, identity, key, cert, checker = _keyless_setup(tmp_path, sigstore)
    message = fake.message_bundle(key, bytes.fromhex(SUBJECT[7:]), cert=cert)
    assert checker.verify(message, SUBJECT, REF).facts["identity"] == "dev@example.com"
    dsse = fake.dsse_bundle(
        key, statement(SUBJECT, "https://slsa.dev/provenance/v1", slsa_v1("b", "r", "x")), cert=cert
    )
    assert checker.verify(dsse, SUBJECT, REF).facts["predicateType"] == "https://slsa.dev/provenance/v1"
    wrong = _checker(_fake_root(tmp_path, fake), identities=[dict(identity, identity="other@example.com")])
    with pytest.raises(Rejected):
        (wrong if sigstore else dataclasses.replace(wrong, sigstore=None)).verify(message, SUBJECT, REF)


def test_unsupported_media_type_and_sha512_subject() -> None:
    checker, raw, digest = _case("happy-path-v0.3")
    doc = json.loads(raw)
    doc["mediaType"] = "application/vnd.dev.sigstore.bundle+json;version=9"
    with pytest.raises(Rejected) as info:
        checker.verify(json.dumps(doc).encode(), digest, REF)
    assert "unsupported bundle media type" in info.value.reason
    with pytest.raises(Rejected) as info:
        checker.verify(raw, "sha512:" + "0" * 128, REF)
    assert "only sha256" in info.value.reason


@pytest.mark.parametrize("damage", ["drop-start", "garble-start", "garble-end"])
def test_a_trust_root_with_a_malformed_validity_is_refused(damage: str) -> None:
    """A missing or unreadable bound must not become 'valid forever' (sigstore-conformance
    trust-root-*-missing-validity-start_fail)."""
    from provider.verifiers.sigstore.trust import parse_trusted_root

    root = json.loads((VECTORS / "trusted_root.public-good.json").read_text())
    validity = root["tlogs"][0]["publicKey"]["validFor"]
    if damage == "drop-start":
        del validity["start"]
    elif damage == "garble-start":
        validity["start"] = "yesterday"
    else:
        validity["end"] = "tomorrow"
    with pytest.raises(ValueError, match=r"tlogs\[0\]: validFor\.(start|end)"):
        parse_trusted_root(json.dumps(root).encode())


def _private_pki_bundle(pki: PrivatePKI, digest: bytes, *, with_root: bool = False) -> bytes:
    """A message-signature bundle by a private-PKI leaf: certificate chain (leaf, intermediate[, root]), no
    transparency-log entry, no timestamp."""
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric.utils import Prehashed

    key, cert = pki.issue("release@example.com")
    signature = key.sign(digest, ec.ECDSA(Prehashed(hashes.SHA256())))
    chain = [cert, pki.intermediate, *([pki.root] if with_root else [])]
    material = {
        "x509CertificateChain": {
            "certificates": [
                {"rawBytes": base64.b64encode(c.public_bytes(serialization.Encoding.DER)).decode()} for c in chain
            ]
        },
        "tlogEntries": [],
    }
    content = {
        "messageDigest": {"algorithm": "SHA2_256", "digest": base64.b64encode(digest).decode()},
        "signature": base64.b64encode(signature).decode(),
    }
    return json.dumps(
        {"mediaType": mt.SIGSTORE_BUNDLE_V03, "verificationMaterial": material, "messageSignature": content}
    ).encode()


async def test_private_pki_bundle_checked_at_verification_time(tmp_path: Path) -> None:
    """``certificateTime: now`` reaches the sigstore-bundle verifier too (the request's time, hand-written path)."""
    pki = PrivatePKI()
    (tmp_path / "corp-root.pem").write_bytes(pki.root_pem)
    entry = {
        "name": "bundles",
        "type": "sigstore-bundle",
        "caRoots": [str(tmp_path / "corp-root.pem")],
        "insecureIgnoreSct": True,
        "requireTlog": False,
        "identities": [{"identity": "release@example.com", "issuerRegExp": ".*"}],
    }
    source = MemorySource()
    layers = [layer(source, mt.SIGSTORE_BUNDLE_V03, _private_pki_bundle(pki, bytes.fromhex(SUBJECT[7:])))]
    request = artifact_request(source, layers, subject_digest=SUBJECT, artifact_type=mt.SIGSTORE_BUNDLE_V03)
    result = await build_verifier({**entry, "certificateTime": "now"}).verify(request)
    assert result.succeeded, result.reason
    assert result.details["certificateCheckedAt"] == "2026-11-01T00:00:00Z"
    assert result.details["verifiedWith"] == "referee"
    refused = await build_verifier(entry).verify(request)
    assert not refused.succeeded and "without a verified signing time" in refused.reason


def _as_chain_bundle(raw: bytes, chain_tail: list[dict[str, str]]) -> bytes:
    """A v0.3 certificate bundle rewritten as the v0.2 form with ``x509CertificateChain`` [leaf, *chain_tail]."""
    doc = json.loads(raw)
    leaf = doc["verificationMaterial"].pop("certificate")
    doc["mediaType"] = "application/vnd.dev.sigstore.bundle+json;version=0.2"
    doc["verificationMaterial"]["x509CertificateChain"] = {"certificates": [leaf, *chain_tail]}
    return json.dumps(doc).encode()


@pytest.mark.parametrize("sigstore", [True, False], ids=["sigstore-python", "hand-written"])
def test_bundle_whose_chain_includes_the_root_is_rejected(sigstore: bool) -> None:
    """sigstore-conformance ``test_verify_rejects_root``: the real happy-path bundle, carried as leaf + Fulcio
    intermediate, verifies; with the public-good root appended it is refused on both paths (sigstore-python
    itself only logs a warning)."""
    checker, raw, digest = _case("happy-path-v0.3")
    if not sigstore:
        checker = dataclasses.replace(checker, sigstore=None)
    [*_, fulcio] = json.loads(PUBLIC_GOOD.read_text())["certificateAuthorities"]
    intermediate, root = fulcio["certChain"]["certificates"]
    facts = checker.verify(_as_chain_bundle(raw, [intermediate]), digest, REF).facts
    assert facts["verifiedWith"] == ("sigstore-python" if sigstore else "referee")
    with pytest.raises(Rejected) as info:
        checker.verify(_as_chain_bundle(raw, [intermediate, root]), digest, REF)
    assert info.value.reason == (
        "bundle certificate chain includes a root certificate at position 2 (CN=sigstore,O=sigstore.dev); "
        "a bundle must not carry its trust anchor"
    )


@pytest.mark.parametrize("sigstore", [True, False], ids=["sigstore-python", "hand-written"])
def test_generated_bundle_with_its_root_in_the_chain_is_rejected(tmp_path: Path, sigstore: bool) -> None:
    fake, identity, key, cert, checker = _keyless_setup(tmp_path, sigstore)
    raw = fake.message_bundle(key, bytes.fromhex(SUBJECT[7:]), cert=cert)
    assert checker.verify(_as_chain_bundle(raw, []), SUBJECT, REF).facts["identity"] == identity["identity"]
    root = {"rawBytes": base64.b64encode(fake.ca_cert.public_bytes(serialization.Encoding.DER)).decode()}
    with pytest.raises(Rejected) as info:
        checker.verify(_as_chain_bundle(raw, [root]), SUBJECT, REF)
    assert "includes a root certificate at position 1 (CN=test-fulcio,O=referee.test)" in info.value.reason


async def test_private_pki_bundle_with_its_root_in_the_chain_is_rejected(tmp_path: Path) -> None:
    pki = PrivatePKI()
    (tmp_path / "corp-root.pem").write_bytes(pki.root_pem)
    verifier = build_verifier(
        {
            "name": "bundles",
            "type": "sigstore-bundle",
            "caRoots": [str(tmp_path / "corp-root.pem")],
            "certificateTime": "now",
            "insecureIgnoreSct": True,
            "requireTlog": False,
            "identities": [{"identity": "release@example.com", "issuerRegExp": ".*"}],
        }
    )
    source = MemorySource()
    bundle = _private_pki_bundle(pki, bytes.fromhex(SUBJECT[7:]), with_root=True)
    layers = [layer(source, mt.SIGSTORE_BUNDLE_V03, bundle)]
    request = artifact_request(source, layers, subject_digest=SUBJECT, artifact_type=mt.SIGSTORE_BUNDLE_V03)
    result = await verifier.verify(request)
    assert not result.succeeded
    assert "includes a root certificate at position 2 (CN=Example Corp Root CA)" in result.reason


def _with_checkpoint(raw: bytes, change: Any) -> bytes:
    doc = json.loads(raw)
    change(doc["verificationMaterial"]["tlogEntries"][0]["inclusionProof"])
    return json.dumps(doc).encode()


NO_CHECKPOINT = (
    "Rekor inclusion proof has no checkpoint (inclusionProof.checkpoint.envelope is missing or empty): without the "
    "log's signed tree head the proof proves nothing"
)


@pytest.mark.parametrize(
    "change",
    [lambda p: p.pop("checkpoint"), lambda p: p.update(checkpoint={}), lambda p: p.update(checkpoint={"envelope": ""})],
    ids=["no-checkpoint", "no-envelope", "empty-envelope"],
)
@pytest.mark.parametrize("name", ["managed-key-happy-path", "happy-path-v0.3"])
def test_inclusion_proof_without_a_checkpoint_says_so(name: str, change: Any) -> None:
    """Real bundles with the checkpoint taken out of their inclusion proof: the hand-written path names what is
    missing (it said "Rekor checkpoint is malformed")."""
    checker, raw, digest = _case(name)
    with pytest.raises(Rejected) as info:
        dataclasses.replace(checker, sigstore=None).verify(_with_checkpoint(raw, change), digest, REF)
    assert info.value.reason == NO_CHECKPOINT


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (lambda note: note.replace("\n\n", "\n"), "no blank line between the note and its signatures"),
        (lambda note: note.split("\n", 1)[0] + "\n\n", "the note needs an origin, a tree size and a root hash line"),
        (lambda note: note.replace("\n", "\nmany\n", 1), "tree size 'many' is not a number"),
    ],
    ids=["no-signature-block", "short-note", "size"],
)
def test_malformed_checkpoint_says_how(change: Any, reason: str) -> None:
    checker, raw, digest = _case("managed-key-happy-path")

    def damage(proof: dict[str, Any]) -> None:
        proof["checkpoint"]["envelope"] = change(proof["checkpoint"]["envelope"])

    with pytest.raises(Rejected) as info:
        checker.verify(_with_checkpoint(raw, damage), digest, REF)
    assert info.value.reason == f"Rekor checkpoint is malformed: {reason}"


def test_with_private_roots_beside_a_trusted_root_certificate_bundles_take_the_hand_written_path(
    tmp_path: Path,
) -> None:
    """sigstore-python knows only the trusted root's Fulcio CAs; with caRoots configured too, a bundle signed by
    the private PKI (logged in Rekor) and one signed through Fulcio both verify, by the hand-written path."""
    fake, pki = FakeSigstore(), PrivatePKI(now=FakeSigstore().now)
    (tmp_path / "corp.pem").write_bytes(pki.root_pem + pem_cert(pki.intermediate))
    checker = build_verifier(
        {
            "name": "bundles",
            "type": "sigstore-bundle",
            "trustedRoot": str(_fake_root(tmp_path, fake)),
            "caRoots": [str(tmp_path / "corp.pem")],
            "insecureIgnoreSct": True,
            "identities": [{"identity": "release@example.com", "issuerRegExp": ".*"}],
        }
    ).params.checker
    assert checker.sigstore is not None
    digest = bytes.fromhex(SUBJECT[7:])
    key, cert = pki.issue("release@example.com")
    facts = checker.verify(fake.message_bundle(key, digest, cert=cert), SUBJECT, REF).facts
    assert facts["verifiedWith"] == "referee" and facts["identity"] == "release@example.com"
    key, cert = fake.issue("release@example.com", "https://issuer.example")
    facts = checker.verify(fake.message_bundle(key, digest, cert=cert), SUBJECT, REF).facts
    assert facts["verifiedWith"] == "referee" and facts["issuer"] == "https://issuer.example"
