"""DSSE envelopes and in-toto attestations: the shared DSSE vectors (vectors/dsse/README.md) with a pinned clock,
SLSA provenance rules, and generated attestations for the cases the vectors cannot show."""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from provider import mediatypes as mt
from provider.verifiers.attestation import provenance_facts
from provider.verifiers.keys import load_public_key
from provider.verifiers.sigstore.common import Rejected
from provider.verifiers.sigstore.dsse import pae, parse_envelope, parse_statement
from provider.verifiers.sigstore.signatures import verify_signature
from tests.support.paths import VECTORS as SHARED_VECTORS
from tests.support.sigstore_sign import (
    FakeSigstore,
    MemorySource,
    artifact_request,
    build_verifier,
    ct_log_pems,
    layer,
    pem_cert,
    pem_public,
    sign_dsse,
    slsa_v1,
    statement,
)

DSSE = SHARED_VECTORS / "dsse"
LINKS = DSSE / "in-toto-links"
ATT = DSSE / "cosign-legacy-att"
ATT_DIGEST = (ATT / "image-digest.txt").read_text().strip()
COSIGN_KEYS = SHARED_VECTORS / "cosign" / "keys"
PUBLIC_GOOD = str(SHARED_VECTORS / "sigstore-bundle" / "trusted_root.public-good.json")
GENERATOR = (
    "https://github.com/slsa-framework/slsa-github-generator/.github/workflows/generator_container_slsa3.yml"
    "@refs/tags/v1.10.0"
)
SLSA_IDENTITY = {"identity": GENERATOR, "issuer": "https://token.actions.githubusercontent.com"}


# -- in-toto links (RSA-PSS DSSE) ------------------------------------------------------------------------------------

LINK_SIGNERS = {"package.2f89b927.link": "carl", "write-code.776a00e2.link": "bob"}


@pytest.mark.parametrize("name", [*LINK_SIGNERS, "package.2f89b927.tampered-sig.link"])
@pytest.mark.parametrize("who", ["alice", "bob", "carl"])
def test_in_toto_link_envelopes(name: str, who: str) -> None:
    envelope = parse_envelope((LINKS / name).read_bytes())
    key = load_public_key((LINKS / f"{who}.pub").read_bytes())
    verified = any(
        verify_signature(key, sig, pae(envelope.payload_type, envelope.payload)) for sig in envelope.signatures
    )
    assert verified is (LINK_SIGNERS.get(name) == who)


async def test_link_is_not_a_statement() -> None:
    # a correctly signed in-toto link is not an attestation about an image
    verifier = build_verifier({"name": "att", "type": "attestation", "keys": [str(LINKS / "carl.pub")]})
    source = MemorySource()
    layers = [layer(source, mt.DSSE_ENVELOPE, (LINKS / "package.2f89b927.link").read_bytes())]
    request = artifact_request(source, layers, subject_digest="sha256:" + "0" * 64, artifact_type=mt.INTOTO)
    result = await verifier.verify(request)
    assert not result.succeeded
    assert "in-toto payload type 'link' is not a Statement v0.1 or v1" in result.reason


# -- cosign legacy .att (keyless, slsa-github-generator) -------------------------------------------------------------


def _att_request(subject: str = ATT_DIGEST, tamper: bool = False) -> Any:
    manifest = json.loads(
        (ATT / "blobs/sha256/31cc4fb663c8d34e2e6a0bd5f183d576c2811ee286e0998b4c2965e3b35a0d86").read_bytes()
    )
    desc = manifest["layers"][0]
    envelope = (ATT / "blobs/sha256" / desc["digest"][7:]).read_bytes()
    if tamper:
        doc = json.loads(envelope)
        payload = bytearray(base64.b64decode(doc["payload"]))
        payload[payload.index(b"ianlewis")] ^= 0x01
        doc["payload"] = base64.b64encode(bytes(payload)).decode()
        envelope = json.dumps(doc).encode()
    source = MemorySource()
    layers = [layer(source, desc["mediaType"], envelope, desc["annotations"])]
    return artifact_request(
        source,
        layers,
        subject_digest=subject,
        artifact_type=mt.COSIGN_LEGACY_ATTESTATIONS,
        repo="ghcr.io/slsa-framework/example-package",
        subject_media_type=mt.OCI_INDEX,
    )


def _att_verifier(**params: Any) -> Any:
    trust: dict[str, Any] = {
        "fulcioRoots": [str(COSIGN_KEYS / "fulcio_v1.crt.pem")],
        "rekorKeys": [str(COSIGN_KEYS / "rekor.pub")],
        "ctLogKeys": ct_log_pems(Path(PUBLIC_GOOD)),
    }
    if "trustedRoot" in params:
        trust = {}
    return build_verifier(
        {"name": "provenance", "type": "attestation", "identities": [SLSA_IDENTITY], **trust, **params}
    )


@pytest.mark.parametrize("trust", [{}, {"trustedRoot": PUBLIC_GOOD}], ids=["pem-files", "trusted-root"])
async def test_cosign_legacy_att_passes(trust: dict[str, Any]) -> None:
    result = await _att_verifier(**trust).verify(_att_request())
    assert result.succeeded, result.reason
    details = result.details
    assert details["predicateType"] == "https://slsa.dev/provenance/v0.2"
    assert details["statementType"] == "https://in-toto.io/Statement/v0.1"
    assert details["builderId"] == GENERATOR
    assert details["buildType"] == "https://github.com/slsa-framework/slsa-github-generator/container@v1"
    assert details["sourceRepository"] == "https://github.com/slsa-framework/example-package"
    assert details["sourceRef"] == "refs/tags/v13.0.30"
    assert details["predicateTruncated"] is False
    assert details["predicate"]["builder"]["id"] == GENERATOR
    assert details["integratedTime"] == "2024-03-21T10:34:04Z"
    assert details["identity"] == GENERATOR


async def test_statement_subject_for_another_digest_is_denied() -> None:
    other = "sha256:" + hashlib.sha256(b"another image").hexdigest()
    result = await _att_verifier().verify(_att_request(subject=other))
    assert not result.succeeded
    assert f"do not include the image digest {other}" in result.reason
    assert ATT_DIGEST in result.reason


async def test_tampered_dsse_payload_is_denied() -> None:
    result = await _att_verifier().verify(_att_request(tamper=True))
    assert not result.succeeded
    assert "signature does not verify with the certificate's key" in result.reason


async def test_provenance_rules_on_the_vector() -> None:
    passing = _att_verifier(
        predicateTypes=["https://slsa.dev/provenance/v0.2"],
        provenance={
            "builderId": "https://github.com/slsa-framework/slsa-github-generator/.github/workflows/generator_container_slsa3.yml",
            "sourceRepository": "https://github.com/slsa-framework/example-package",
            "sourceRefRegExp": r"refs/tags/v13\..*",
            "buildType": ["https://github.com/slsa-framework/slsa-github-generator/container@v1"],
        },
    )
    assert (await passing.verify(_att_request())).succeeded  # builder id without @version accepts any version
    wrong_builder = _att_verifier(provenance={"builderIdRegExp": "https://builder.example/.*"})
    result = await wrong_builder.verify(_att_request())
    assert not result.succeeded
    assert result.reason == f"builder id {GENERATOR} does not match /https://builder.example/.*/"
    assert result.details["builderId"] == GENERATOR  # facts of the verified statement stay visible to policy
    wrong_type = _att_verifier(predicateTypes=["https://slsa.dev/provenance/v1"])
    result = await wrong_type.verify(_att_request())
    assert not result.succeeded
    assert (
        "predicate type https://slsa.dev/provenance/v0.2 is not one of https://slsa.dev/provenance/v1" in result.reason
    )


async def test_predicate_size_limit_sets_the_truncated_flag() -> None:
    result = await _att_verifier(maxPredicateBytes="1KiB").verify(_att_request())
    assert result.succeeded
    assert result.details["predicateTruncated"] is True and "predicate" not in result.details
    assert result.details["predicateBytes"] > 1024
    assert result.details["builderId"] == GENERATOR


# -- generated attestations ------------------------------------------------------------------------------------------

SUBJECT = "sha256:" + hashlib.sha256(b"generated image").hexdigest()
BUILDER = "https://github.com/org/builder/.github/workflows/build.yml@refs/tags/v2.0.0"


def _key_file(tmp_path: Path, key: ec.EllipticCurvePrivateKey, name: str = "att.pub") -> str:
    path = tmp_path / name
    path.write_bytes(pem_public(key))
    return str(path)


def _envelope_request(
    envelope: bytes, annotations: dict[str, str] | None = None, media_type: str = mt.DSSE_ENVELOPE
) -> Any:
    source = MemorySource()
    layers = [layer(source, media_type, envelope, {mt.ANNOTATION_COSIGN_SIGNATURE: "", **(annotations or {})})]
    return artifact_request(source, layers, subject_digest=SUBJECT, artifact_type=mt.INTOTO)


@pytest.mark.parametrize("version", ["v1", "v0.1"])
async def test_key_signed_provenance_v1_rules(tmp_path: Path, version: str) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    predicate = slsa_v1(BUILDER, "https://github.com/org/app", "refs/heads/main")
    envelope, _ = sign_dsse(key, statement(SUBJECT, "https://slsa.dev/provenance/v1", predicate, version=version))
    rules = {"builderId": BUILDER, "sourceRepository": "https://github.com/org/app", "sourceRef": "refs/heads/main"}
    verifier = build_verifier(
        {"name": "att", "type": "attestation", "keys": [_key_file(tmp_path, key)], "provenance": rules}
    )
    result = await verifier.verify(_envelope_request(envelope))
    assert result.succeeded, result.reason
    assert result.details["keyFingerprint"].startswith("sha256:")
    assert result.details["buildType"] == "https://example.com/build/v1"
    failing = build_verifier(
        {
            "name": "att",
            "type": "attestation",
            "keys": [_key_file(tmp_path, key)],
            "provenance": {"builderId": "https://other"},
        }
    )
    result = await failing.verify(_envelope_request(envelope))
    assert not result.succeeded and result.reason.startswith(f"builder id {BUILDER} does not match https://other")


async def test_unknown_key_is_denied(tmp_path: Path) -> None:
    key, other = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    envelope, _ = sign_dsse(key, statement(SUBJECT, "https://example.com/p", {}))
    verifier = build_verifier({"name": "att", "type": "attestation", "keys": [_key_file(tmp_path, other)]})
    result = await verifier.verify(_envelope_request(envelope))
    assert not result.succeeded
    assert "envelope 0: signature does not verify with any of 1 configured keys" in result.reason


async def test_keyless_attestation_in_a_bundle_and_in_layers(tmp_path: Path) -> None:
    fake = FakeSigstore()
    identity = {"identity": "https://ci.example/build@refs/heads/main", "issuer": "https://issuer.example"}
    key, cert = fake.issue(identity["identity"], identity["issuer"])
    root = tmp_path / "trusted_root.json"
    root.write_bytes(fake.trusted_root())
    verifier = build_verifier(
        {"name": "att", "type": "attestation", "trustedRoot": str(root), "identities": [identity], "requireTlog": True}
    )
    payload = statement(SUBJECT, "https://slsa.dev/provenance/v1", slsa_v1(BUILDER, "r", "x"))
    # Sigstore bundle referrer (through sigstore-python: certificate + dsse entry)
    source = MemorySource()
    layers = [layer(source, mt.SIGSTORE_BUNDLE_V03, fake.dsse_bundle(key, payload, cert=cert))]
    request = artifact_request(source, layers, subject_digest=SUBJECT, artifact_type=mt.SIGSTORE_BUNDLE_V03)
    result = await verifier.verify(request)
    assert result.succeeded, result.reason
    assert result.details["verifiedWith"] == "sigstore-python" and result.details["builderId"] == BUILDER
    # the same statement as a cosign .att layer with certificate and Rekor SET (dsse 0.0.1 body)
    envelope, signature = sign_dsse(key, payload)
    entry = fake.log_entry(fake.dsse_entry(envelope, payload, signature, pem_cert(cert)))
    annotations = {
        mt.ANNOTATION_COSIGN_CERTIFICATE: pem_cert(cert).decode(),
        mt.ANNOTATION_COSIGN_BUNDLE: fake.cosign_bundle_annotation(entry),
    }
    result = await verifier.verify(_envelope_request(envelope, annotations))
    assert result.succeeded, result.reason
    assert result.details["sctVerified"] is True
    # without the SET the keyless attestation has no signing time
    no_set = {mt.ANNOTATION_COSIGN_CERTIFICATE: pem_cert(cert).decode()}
    result = await verifier.verify(_envelope_request(envelope, no_set))
    assert not result.succeeded and "no transparency-log entry" in result.reason


async def test_message_signature_bundle_is_not_an_attestation(tmp_path: Path) -> None:
    fake = FakeSigstore()
    key = ec.generate_private_key(ec.SECP256R1())
    root = tmp_path / "trusted_root.json"
    root.write_bytes(fake.trusted_root())
    verifier = build_verifier(
        {"name": "att", "type": "attestation", "trustedRoot": str(root), "keys": [_key_file(tmp_path, key)]}
    )
    source = MemorySource()
    layers = [layer(source, mt.SIGSTORE_BUNDLE_V03, fake.message_bundle(key, bytes.fromhex(SUBJECT[7:])))]
    request = artifact_request(source, layers, subject_digest=SUBJECT, artifact_type=mt.SIGSTORE_BUNDLE_V03)
    result = await verifier.verify(request)
    assert not result.succeeded and "holds a message signature, not an attestation" in result.reason


def test_statement_parsing_and_provenance_locations() -> None:
    with pytest.raises(Rejected):
        parse_statement("text/plain", b"{}")
    parsed = parse_statement(
        mt.INTOTO, statement(SUBJECT, "https://slsa.dev/provenance/v1", slsa_v1("b", "https://x/r", "refs/x"))
    )
    assert parsed.names_digest(SUBJECT.upper().replace("SHA256", "sha256"))
    assert provenance_facts(parsed.predicate_type, parsed.predicate) == {
        "builderId": "b",
        "buildType": "https://example.com/build/v1",
        "sourceRepository": "https://x/r",
        "sourceRef": "refs/x",
    }
    v02 = {
        "builder": {"id": "b"},
        "buildType": "t",
        "materials": [{"uri": "git+https://github.com/o/r@refs/heads/main"}],
    }
    assert provenance_facts("https://slsa.dev/provenance/v0.2", v02) == {
        "builderId": "b",
        "buildType": "t",
        "sourceRepository": "https://github.com/o/r",
        "sourceRef": "refs/heads/main",
    }
