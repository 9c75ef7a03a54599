"""The ``pgp`` verifier on OpenPGP attestations made by Debian's gpg at test time (tests/support/gpg.py):
clear-signed image URLs (the Grafeas tutorial flow), signed simple-signing payloads (Binary Authorization PGP
attestors, containers/image), detached signatures over ``serializedPayload``, and every way they must fail."""

from __future__ import annotations

import base64
import datetime as dt
import json
import zlib
from pathlib import Path
from typing import Any

import pytest

from provider.attestations import synthetic_artifact
from provider.config import load_config_bytes
from provider.errors import ConfigError
from tests.support.attestor_fixtures import Keys
from tests.support.attestors import (
    DIGEST,
    IMAGE,
    NOTE,
    OTHER_DIGEST,
    OTHER_NOTE,
    atomic_payload,
    binauthz_payload,
    grafeas_request,
    lookaside_request,
    v1_occurrence,
    v1beta1_pgp_occurrence,
)
from tests.support.sigstore_sign import build_verifier

URL_TEXT = f"{IMAGE}@{DIGEST}\n".encode()


def pgp(keyring: Keys, *names: str, **params: Any) -> Any:
    keys = [keyring.public[n].decode() for n in names]
    return build_verifier({"name": "pgp", "type": "pgp", "keys": keys, **params})


async def test_clearsigned_image_url_in_a_v1beta1_occurrence_verifies(keyring: Keys) -> None:
    signed = keyring.sign("alice", URL_TEXT, mode="clearsign")
    result = await pgp(keyring, "alice").verify(grafeas_request(v1beta1_pgp_occurrence(signed, keyring.fpr["alice"])))
    assert result.succeeded, result.reason
    assert result.details["keyFingerprint"] == keyring.fpr["alice"]
    assert result.details["payloadShape"] == "image-url"
    assert result.details["signatureForm"] == "cleartext"
    assert result.details["signedDigest"] == DIGEST
    assert result.details["note"] == NOTE


@pytest.mark.parametrize("armor", [True, False], ids=["armored", "binary"])
async def test_signed_binauthz_payload_in_a_v1_occurrence_verifies(keyring: Keys, armor: bool) -> None:
    payload = binauthz_payload(IMAGE, DIGEST)
    signed = keyring.sign("rsa", payload, armor=armor)
    occurrence = v1_occurrence(payload, [(signed, keyring.fpr["rsa"])])
    result = await pgp(keyring, "alice", "rsa").verify(grafeas_request(occurrence))
    assert result.succeeded, result.reason
    assert result.details["keyFingerprint"] == keyring.fpr["rsa"]
    assert result.details["signatureForm"] == "attached"
    assert result.details["dockerReference"] == IMAGE


async def test_containers_signature_file_verifies_with_and_without_the_format_prefix(keyring: Keys) -> None:
    signed = keyring.sign("alice", atomic_payload(f"{IMAGE}:v1", DIGEST), armor=False)
    verifier = pgp(keyring, "alice")
    for blob in (signed, b"\x00simple-signing\n" + signed):
        result = await verifier.verify(lookaside_request(blob, key=f"{IMAGE}:v1"))
        assert result.succeeded, result.reason
        assert result.details["source"] == "lookaside"


async def test_detached_signature_over_serialized_payload_verifies(keyring: Keys) -> None:
    payload = binauthz_payload(IMAGE, DIGEST)
    detached = keyring.sign("alice", payload, mode="detached")
    result = await pgp(keyring, "alice").verify(grafeas_request(v1_occurrence(payload, [(detached, "x")])))
    assert result.succeeded, result.reason
    assert result.details["signatureForm"] == "detached"


async def test_detached_signature_over_other_content_fails(keyring: Keys) -> None:
    payload = binauthz_payload(IMAGE, DIGEST)
    detached = keyring.sign("alice", binauthz_payload(IMAGE, OTHER_DIGEST), mode="detached")
    result = await pgp(keyring, "alice").verify(grafeas_request(v1_occurrence(payload, [(detached, "x")])))
    assert not result.succeeded
    assert "does not verify: the signed content was altered or the signature is corrupt" in result.reason


async def test_detached_signature_without_payload_fails(keyring: Keys) -> None:
    detached = keyring.sign("alice", binauthz_payload(IMAGE, DIGEST), mode="detached")
    result = await pgp(keyring, "alice").verify(grafeas_request(v1_occurrence(None, [(detached, "x")])))
    assert not result.succeeded
    assert "carries no serializedPayload" in result.reason


async def test_signature_by_an_unconfigured_key_fails_naming_it(keyring: Keys) -> None:
    signed = keyring.sign("bob", URL_TEXT, mode="clearsign")
    result = await pgp(keyring, "alice").verify(grafeas_request(v1beta1_pgp_occurrence(signed, keyring.fpr["bob"])))
    assert not result.succeeded
    assert "which is not a configured key" in result.reason
    assert keyring.fpr["bob"] in result.reason


async def test_tampered_signed_message_fails(keyring: Keys) -> None:
    payload = atomic_payload(f"{IMAGE}:v1", DIGEST)
    signed = keyring.sign("alice", payload, armor=False, compress=False)
    tampered = signed.replace(DIGEST.encode(), OTHER_DIGEST.encode())
    assert tampered != signed
    result = await pgp(keyring, "alice").verify(lookaside_request(tampered, key=f"{IMAGE}:v1"))
    assert not result.succeeded
    assert "does not verify" in result.reason


async def test_serialized_payload_differing_from_the_signed_content_fails(keyring: Keys) -> None:
    payload = binauthz_payload(IMAGE, DIGEST)
    signed = keyring.sign("alice", payload)
    tampered = payload.replace(b"binauthz", b"BinAuthz")
    result = await pgp(keyring, "alice").verify(grafeas_request(v1_occurrence(tampered, [(signed, "x")])))
    assert not result.succeeded
    assert "serializedPayload differs from the signed content" in result.reason


async def test_attestation_for_another_image_fails(keyring: Keys) -> None:
    signed = keyring.sign("alice", binauthz_payload(IMAGE, OTHER_DIGEST))
    result = await pgp(keyring, "alice").verify(grafeas_request(v1_occurrence(None, [(signed, "x")])))
    assert not result.succeeded
    assert f"signature is for {OTHER_DIGEST}, not this image ({DIGEST})" in result.reason


async def test_expired_key_fails_at_verification_time_but_not_before(keyring: Keys) -> None:
    signed = keyring.sign("old", URL_TEXT, mode="clearsign")
    occurrence = v1beta1_pgp_occurrence(signed, keyring.fpr["old"])
    result = await pgp(keyring, "old").verify(grafeas_request(occurrence))
    assert not result.succeeded
    assert f"key {keyring.fpr['old']} expired at" in result.reason
    # The verification time is request.now: two years ago the key was valid.
    then = dt.datetime.now(dt.UTC) - dt.timedelta(days=2 * 365)
    earlier = await pgp(keyring, "old").verify(grafeas_request(occurrence, now=then))
    assert earlier.succeeded, earlier.reason


async def test_revoked_key_fails(keyring: Keys) -> None:
    signed = keyring.sign("dave", URL_TEXT, mode="clearsign")
    result = await pgp(keyring, "dave").verify(grafeas_request(v1beta1_pgp_occurrence(signed, keyring.fpr["dave"])))
    assert not result.succeeded
    assert result.reason == f"key {keyring.fpr['dave']} is revoked"


async def test_sha1_signature_is_refused(keyring: Keys) -> None:
    payload = binauthz_payload(IMAGE, DIGEST)
    sha1 = keyring.gpg.run("--digest-algo", "SHA1", "--local-user", keyring.email("rsa"), "--sign", stdin=payload)
    result = await pgp(keyring, "rsa").verify(grafeas_request(v1_occurrence(None, [(sha1, "x")])))
    assert not result.succeeded
    assert result.reason == f"signature by {keyring.fpr['rsa']} uses SHA-1, which is no longer accepted"


async def test_a_revoked_cosigner_does_not_hide_a_valid_signature(keyring: Keys) -> None:
    payload = binauthz_payload(IMAGE, DIGEST)
    both = keyring.gpg.run(
        "--local-user", keyring.email("dave"), "--local-user", keyring.email("alice"), "--sign", stdin=payload
    )
    result = await pgp(keyring, "dave", "alice").verify(grafeas_request(v1_occurrence(None, [(both, "x")])))
    assert result.succeeded, result.reason
    assert result.details["keyFingerprint"] == keyring.fpr["alice"]
    only_dave = await pgp(keyring, "dave").verify(grafeas_request(v1_occurrence(None, [(both, "x")])))
    assert only_dave.reason == f"key {keyring.fpr['dave']} is revoked"


async def test_signing_subkey_verifies_and_is_reported(keyring: Keys) -> None:
    signed = keyring.sign("carol", binauthz_payload(IMAGE, DIGEST))
    result = await pgp(keyring, "carol").verify(grafeas_request(v1_occurrence(None, [(signed, "x")])))
    assert result.succeeded, result.reason
    assert result.details["keyFingerprint"] == keyring.fpr["carol"]
    assert result.details["signingKey"] == keyring.subkey["carol"]


async def test_expired_signing_subkey_fails(keyring: Keys) -> None:
    signed = keyring.sign("frank", binauthz_payload(IMAGE, DIGEST))
    result = await pgp(keyring, "frank").verify(grafeas_request(v1_occurrence(None, [(signed, "x")])))
    assert not result.succeeded
    assert f"signing subkey {keyring.subkey['frank']} expired at" in result.reason


async def test_expired_signature_fails(keyring: Keys) -> None:
    signed = keyring.sign("erin", URL_TEXT, mode="clearsign")
    result = await pgp(keyring, "erin").verify(grafeas_request(v1beta1_pgp_occurrence(signed, keyring.fpr["erin"])))
    assert not result.succeeded
    assert f"signature by {keyring.fpr['erin']} expired at" in result.reason


@pytest.mark.parametrize(
    ("mode", "key", "signed_for", "ok"),
    [
        ("matchRepoDigestOrExact", f"{IMAGE}:v1", f"{IMAGE}:v1", True),
        ("matchRepoDigestOrExact", f"{IMAGE}:v2", f"{IMAGE}:v1", False),
        ("matchRepoDigestOrExact", f"{IMAGE}@{DIGEST}", f"{IMAGE}:v1", True),
        ("matchRepoDigestOrExact", f"{IMAGE}@{DIGEST}", "gcr.io/org/other:v1", False),
        ("matchRepository", f"{IMAGE}:v2", f"{IMAGE}:v1", True),
        ("matchRepository", f"{IMAGE}:v2", "gcr.io/org/other", False),
        ("matchExact", f"{IMAGE}@{DIGEST}", f"{IMAGE}@{DIGEST}", True),
        ("matchExact", f"{IMAGE}@{DIGEST}", f"{IMAGE}:v1", False),
        ("ignore", f"{IMAGE}:v2", "docker.io/library/anything", True),
    ],
)
async def test_signed_identity_modes(keyring: Keys, mode: str, key: str, signed_for: str, ok: bool) -> None:
    signed = keyring.sign("alice", atomic_payload(signed_for, DIGEST))
    result = await pgp(keyring, "alice", signedIdentity=mode).verify(lookaside_request(signed, key=key))
    assert result.succeeded is ok, result.reason
    if not ok:
        assert "signed for" in result.reason


async def test_note_restriction(keyring: Keys) -> None:
    signed = keyring.sign("alice", URL_TEXT, mode="clearsign")
    occurrence = v1beta1_pgp_occurrence(signed, keyring.fpr["alice"], note=OTHER_NOTE)
    result = await pgp(keyring, "alice", notes=[NOTE]).verify(grafeas_request(occurrence))
    assert not result.succeeded
    assert result.reason == f"attestation is under note {OTHER_NOTE}; pgp accepts only {NOTE}"
    lookaside = await pgp(keyring, "alice", notes=[NOTE]).verify(lookaside_request(signed))
    assert lookaside.reason == f"attestation is not attached to a Grafeas note; pgp accepts only {NOTE}"


async def test_unsealed_document_is_refused(keyring: Keys) -> None:
    """A manifest shaped like a store's synthetic artifact but pushed by someone else (no valid seal)."""
    signed = keyring.sign("alice", URL_TEXT, mode="clearsign")
    request = grafeas_request(v1beta1_pgp_occurrence(signed, keyring.fpr["alice"]))
    layer = request.manifest.layers[0]
    forged_layer = {**layer.to_json(), "data": base64.b64encode(layer.data or b"").decode()}
    forged_layer["annotations"] = {"dev.referee.attestation/seal": "0" * 64}
    doc = json.loads(request.manifest.raw)
    doc["layers"] = [forged_layer]
    from dataclasses import replace

    from provider.oci import parse_manifest
    from provider.reference import compute_digest

    raw = json.dumps(doc).encode()
    forged = replace(request, manifest=parse_manifest(raw, compute_digest(raw), None))
    result = await pgp(keyring, "alice").verify(forged)
    assert not result.succeeded
    assert result.reason == "attestation document was not produced by a Referee evidence store"


def _packet(tag: int, body: bytes) -> bytes:
    """A new-format packet with a five-octet length (RFC 4880 §4.2.2.3)."""
    return bytes([0xC0 | tag, 0xFF]) + len(body).to_bytes(4, "big") + body


async def test_compression_bomb_is_refused_before_decompression(keyring: Keys) -> None:
    bomb = zlib.compress(b"\0" * (16 * 1024 * 1024), 9)
    message = _packet(8, b"\x02" + bomb)
    assert len(message) < 256 * 1024
    result = await pgp(keyring, "alice").verify(lookaside_request(message))
    assert not result.succeeded
    assert "signed message expands beyond 1048576 bytes" in result.reason


async def test_nested_compression_is_refused(keyring: Keys) -> None:
    inner = _packet(8, b"\x02" + zlib.compress(b"hello"))
    result = await pgp(keyring, "alice").verify(lookaside_request(_packet(8, b"\x00" + inner)))
    assert not result.succeeded
    assert "nested compression is not accepted" in result.reason


@pytest.mark.parametrize("layout", ["ops-first", "compressed-ops-inside", "cleartext-signature-block"])
async def test_compression_bombs_anywhere_in_the_message_are_refused_without_inflating_them(
    keyring: Keys, layout: str
) -> None:
    """Review finding: a compressed packet after a one-pass signature, or one whose inner first packet is a one-pass
    signature, used to reach Sequoia, which inflates without bound (a 6 KB file aborted the server)."""
    zeros = zlib.compressobj(9)
    inner_literal = b"".join([zeros.compress(b"\0" * (1 << 20)) for _ in range(64)]) + zeros.flush()
    bomb = _packet(8, b"\x02" + zlib.compress(_packet(8, b"\x02" + inner_literal), 9))
    one_pass = _packet(4, bytes([3, 0, 8, 22]) + b"\x01" * 8 + b"\x01")
    signature = _packet(2, b"\x04\x00" + b"\x00" * 16)
    if layout == "ops-first":
        message = one_pass + bomb + signature
    elif layout == "compressed-ops-inside":
        message = _packet(8, b"\x02" + zlib.compress(one_pass + _packet(8, b"\x02" + inner_literal), 9)) + signature
    else:
        block = base64.b64encode(bomb).decode()
        message = (
            "-----BEGIN PGP SIGNED MESSAGE-----\nHash: SHA256\n\nhello\n-----BEGIN PGP SIGNATURE-----\n\n"
            f"{block}\n-----END PGP SIGNATURE-----\n"
        ).encode()
    assert len(message) < 256 * 1024
    result = await pgp(keyring, "alice").verify(lookaside_request(message))
    assert not result.succeeded
    expected = {
        "ops-first": "nested compression is not accepted",
        "compressed-ops-inside": "nested compression is not accepted",
        "cleartext-signature-block": "the signature block may hold only signature packets",
    }[layout]
    assert result.reason.endswith(f"not a valid OpenPGP signed message: {expected}"), result.reason


async def test_garbage_and_pkix_signatures_are_not_openpgp(keyring: Keys) -> None:
    result = await pgp(keyring, "alice").verify(grafeas_request(v1_occurrence(b"{}", [(b"\x30\x45garbage", "k")])))
    assert not result.succeeded
    assert result.reason == "not an OpenPGP signature"
    armored = b"-----BEGIN PGP MESSAGE-----\n\n!!!notbase64\n-----END PGP MESSAGE-----\n"
    result = await pgp(keyring, "alice").verify(lookaside_request(armored))
    assert "not a valid OpenPGP signed message: armored data is not base64" in result.reason


async def test_any_valid_signature_among_several_counts(keyring: Keys) -> None:
    payload = binauthz_payload(IMAGE, DIGEST)
    signatures = [(keyring.sign("bob", payload), "b"), (keyring.sign("alice", payload), "a")]
    result = await pgp(keyring, "alice").verify(grafeas_request(v1_occurrence(payload, signatures)))
    assert result.succeeded, result.reason


async def test_wrong_payload_type_fails(keyring: Keys) -> None:
    critical = {"identity": {"docker-reference": IMAGE}, "image": {"docker-manifest-digest": DIGEST}}
    payload = json.dumps({"critical": {**critical, "type": "something else"}})
    signed = keyring.sign("alice", payload.encode())
    result = await pgp(keyring, "alice").verify(grafeas_request(v1_occurrence(None, [(signed, "x")])))
    assert "signed payload type 'something else' is not accepted" in result.reason


def test_synthetic_artifacts_are_deterministic() -> None:
    from provider.oci import Descriptor

    subject = Descriptor(media_type="application/vnd.oci.image.manifest.v1+json", digest=DIGEST, size=1)
    one = synthetic_artifact(subject, "t", {"a": 1}, {})
    two = synthetic_artifact(subject, "t", {"a": 1}, {})
    assert one.digest == two.digest
    assert one.data == two.data


# -- configuration -------------------------------------------------------------------------------------------------


def _problems(text: str, base: Path) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_config_bytes(text.encode(), base)
    return info.value.problems


def test_config_errors_name_their_path(tmp_path: Path, keyring: Keys) -> None:
    (tmp_path / "notakey.asc").write_text("hello")
    secret = keyring.gpg.run("--armor", "--export-secret-keys", keyring.email("alice"))
    (tmp_path / "secret.asc").write_bytes(secret)
    (tmp_path / "alice.asc").write_bytes(keyring.public["alice"])
    problems = _problems(
        "verifiers:\n"
        "  - {name: a, type: pgp, keys: [notakey.asc, secret.asc, missing.asc, alice.asc, alice.asc],"
        " signedIdentity: exact, notes: [projects/p/notes/n, notes/x]}\n"
        "  - {name: b, type: pgp}\n",
        tmp_path,
    )
    assert problems[0].startswith("verifiers[0].keys[0]: not an OpenPGP public key")
    assert problems[1] == (
        f"verifiers[0].keys[1]: {keyring.fpr['alice']} contains secret key material; configure the public key only"
    )
    assert problems[2].startswith("verifiers[0].keys[2]: cannot read missing.asc")
    assert problems[3] == f"verifiers[0].keys: key {keyring.fpr['alice']} is listed twice"
    assert problems[4] == "verifiers[0].notes[1]: 'notes/x' is not a note name"
    assert problems[5].startswith("verifiers[0].signedIdentity: must be one of matchRepoDigestOrExact")
    assert problems[6] == "verifiers[1].keys: at least one OpenPGP public key is required"
    assert len(problems) == 7


def test_key_files_are_part_of_the_generation(tmp_path: Path, keyring: Keys) -> None:
    key = tmp_path / "k.asc"
    key.write_bytes(keyring.public["alice"])
    text = b"verifiers: [{name: a, type: pgp, keys: [k.asc]}]\n"
    first = load_config_bytes(text, tmp_path).generation
    key.write_bytes(keyring.public["bob"])
    assert load_config_bytes(text, tmp_path).generation != first
