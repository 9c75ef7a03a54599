"""Every verdict stated in shared/vectors/notation/README.md, on the real notation-produced envelopes.

Clock: 2026-11-23 (inside every signing certificate's validity). Revocation: the default ``offline`` mode;
the signing certificates carry no OCSP/CRL locations, so their revocation check passes without a fetch. The
timestamp vectors run with ``revocation.tsaChain: skip`` (the README's "pass" assumption) except the one test
that shows ``tsaChain: enforce`` offline fails on the GlobalSign chain's unknown status.
"""

from __future__ import annotations

import hashlib
from typing import Any

import pytest

from provider.oci import Descriptor
from tests.unit.notation_helpers import COSE, JWS, VECTORS, params, policy, verify

LAYOUTS = VECTORS / "oci-layouts"
IMAGE = Descriptor(
    "application/vnd.oci.image.manifest.v1+json",
    "sha256:b8479de3f88fb259a0a9ea82a5b2a052a1ef3c4ebbcfc61482d5ae4c831f8af9",
    517,
)
ENVELOPES = {
    "valid": (
        LAYOUTS / "e2e-valid-signature/blobs/sha256/c9af07e038b2b1a463e648986ad7273157511ffeba0b689f33e5472bae471f50",
        JWS,
    ),
    "expired": (
        LAYOUTS / "e2e-expired-signature/blobs/sha256/b5f927564088f65dad86c81bcdd0b55415a8b4c9a0a5391107210e0cdb305cc7",
        JWS,
    ),
    "invalid": (
        LAYOUTS / "e2e-invalid-signature/blobs/sha256/9a8decdf3775708f4eed16859f19561d730cad40b1af0dcfc37ac1e5f879a934",
        "application/vnd.oci.image.layer.v1.tar",
    ),
}
E2E_STORE = {"ca": {"e2e": [str(VECTORS / "truststore/x509/ca/e2e")]}}
WRONG_STORE = {"ca": {"e2e": [str(VECTORS / "truststore/x509/ca/wrong/new_e2e.crt")]}}


def e2e_config(policy_file: str, stores: dict[str, Any] | None = E2E_STORE) -> dict[str, Any]:
    return {"trustPolicyFile": str(VECTORS / "trustpolicy" / policy_file), "trustStores": stores or {}}


async def run(
    name: str, policy_file: str, stores: dict[str, Any] | None = E2E_STORE, repository: str = "localhost:5000/test-repo"
) -> Any:
    path, media_type = ENVELOPES[name]
    return await verify(
        params(e2e_config(policy_file, stores)), path.read_bytes(), media_type, IMAGE, repository=repository
    )


@pytest.mark.parametrize(
    ("envelope", "policy_file", "stores", "passes", "reason"),
    [
        ("valid", "trustpolicy.json", E2E_STORE, True, "signed by CN=e2e,O=Notary,L=Seattle,ST=WA,C=US"),
        ("valid", "valid_trusted_identity_trustpolicy.json", E2E_STORE, True, "signed by CN=e2e"),
        (
            "valid",
            "trustpolicy.json",
            WRONG_STORE,
            False,
            "authenticity check failed: certificate chain does not chain",
        ),
        ("valid", "permissive_trustpolicy.json", WRONG_STORE, False, "authenticity check failed"),
        ("valid", "audit_trustpolicy.json", WRONG_STORE, True, "logged failures: authenticity: certificate chain"),
        (
            "valid",
            "invalid_trusted_identity_trustpolicy.json",
            E2E_STORE,
            False,
            "does not match the trusted identities",
        ),
        (
            "expired",
            "trustpolicy.json",
            E2E_STORE,
            False,
            "expiry check failed: signature expired at 2023-06-27T13:21:21+08:00",
        ),
        ("expired", "permissive_trustpolicy.json", E2E_STORE, True, "logged failures: expiry: signature expired"),
        ("expired", "audit_trustpolicy.json", E2E_STORE, True, "logged failures: expiry"),
        ("expired", "override_strict_trustpolicy.json", E2E_STORE, True, "logged failures: expiry"),
        (
            "invalid",
            "trustpolicy.json",
            E2E_STORE,
            False,
            "integrity check failed: unsupported signature envelope media type",
        ),
        ("invalid", "permissive_trustpolicy.json", E2E_STORE, False, "integrity check failed"),
        ("invalid", "audit_trustpolicy.json", E2E_STORE, False, "integrity check failed"),
        ("invalid", "skip_trustpolicy.json", None, True, "level skip: accepted without verification"),
        ("valid", "registry_scope_trustpolicy.json", E2E_STORE, True, "signed by CN=e2e"),
    ],
)
async def test_oci_layout_envelopes_give_the_readme_verdicts(
    envelope: str, policy_file: str, stores: dict[str, Any] | None, passes: bool, reason: str
) -> None:
    result = await run(envelope, policy_file, stores)
    assert result.succeeded is passes, result.reason
    assert reason in result.reason


async def test_registry_scope_policy_fails_for_any_other_repository() -> None:
    result = await run("valid", "registry_scope_trustpolicy.json", repository="localhost:5000/other-repo")
    assert not result.succeeded
    assert result.reason == "no trust policy applies to localhost:5000/other-repo"


async def test_verdict_details_name_signer_scheme_policy_and_each_check() -> None:
    result = await run("expired", "permissive_trustpolicy.json")
    d = result.details
    assert d["signer"] == "CN=e2e,O=Notary,L=Seattle,ST=WA,C=US"
    assert d["signingScheme"] == "notary.x509"
    assert d["signingTime"] == "2023-06-27T13:20:21+08:00"
    assert d["trustPolicy"] == "e2e" and d["level"] == "permissive"
    assert d["checks"]["integrity"] == {"action": "enforce", "outcome": "passed"}
    assert d["checks"]["expiry"]["outcome"] == "failed" and d["checks"]["expiry"]["action"] == "log"
    assert d["enforced"] == ["integrity", "authenticity"]
    assert set(d["logged"]) == {"expiry", "authenticTimestamp", "revocation"}
    assert d["revocation"][0]["status"] == "not-revocable"


def _alpine(kind: str) -> tuple[Descriptor, dict[str, Any]]:
    manifest = (VECTORS / "envelopes" / f"alpine-{kind}" / "target-manifest.json").read_bytes()
    target = Descriptor(
        "application/vnd.oci.image.manifest.v1+json", "sha256:" + hashlib.sha256(manifest).hexdigest(), len(manifest)
    )
    assert target.digest == "sha256:19dbd2e48e921426ee8ace4dc892edfb2ecdc1d1a72d5416c83670c30acecef0"
    config = {
        "trustPolicy": policy(["ca:alpine"]),
        "trustStores": {"ca": {"alpine": [str(VECTORS / "envelopes" / f"alpine-{kind}" / "alpine-leaf.crt")]}},
    }
    return target, config


@pytest.mark.parametrize(
    ("kind", "file", "media_type", "passes"),
    [
        ("jws", "jws_signature.sig", JWS, True),
        ("jws", "tampered-signature.sig", JWS, False),
        ("jws", "tampered-payload.sig", JWS, False),
        ("cose", "cose_signature.sig", COSE, True),
        ("cose", "tampered-signature.sig", COSE, False),
    ],
)
async def test_bare_envelopes(kind: str, file: str, media_type: str, passes: bool) -> None:
    target, config = _alpine(kind)
    result = await verify(
        params(config), (VECTORS / "envelopes" / f"alpine-{kind}" / file).read_bytes(), media_type, target
    )
    assert result.succeeded is passes, result.reason
    if passes:
        assert result.details["envelope"] == kind and result.details["signatureAlgorithm"] == "PS256"
        assert result.details["signer"] == "CN=alpine,O=Notary,L=Seattle,ST=WA,C=US"
    else:
        assert result.reason == "integrity check failed: signature does not verify with the signing certificate's key"


TIMESTAMP = VECTORS / "timestamp"
TS_TARGET = Descriptor(
    "application/vnd.docker.distribution.manifest.v2+json",
    "sha256:c0669ef34cdc14332c0f1ab0c2c01acb91d96014b172f1a76f3a39e63d1f0bda",
    528,
)


def ts_config(tsa: str | None, verify_timestamp: str = "always", tsa_chain: str = "skip") -> dict[str, Any]:
    stores: dict[str, Any] = {"ca": {"valid": [str(TIMESTAMP / "truststore/x509/ca/valid/TestTimestamp.crt")]}}
    names = ["ca:valid"]
    if tsa is not None:
        stores["tsa"] = {tsa: [str(TIMESTAMP / "truststore/x509/tsa" / tsa)]}
        names.append(f"tsa:{tsa}")
    return {
        "trustPolicy": policy(names, verifyTimestamp=verify_timestamp),
        "trustStores": stores,
        "revocation": {"mode": "offline", "tsaChain": tsa_chain},
    }


async def test_cose_timestamp_passes_with_the_globalsign_root() -> None:
    result = await verify(
        params(ts_config("test-timestamp")), (TIMESTAMP / "coseWithTimestamp.sig").read_bytes(), COSE, TS_TARGET
    )
    assert result.succeeded, result.reason
    stamp = result.details["timestamp"]
    assert stamp["time"] == "2024-06-18T06:27:16Z"
    assert stamp["accuracySeconds"] == 1.0
    assert stamp["authority"] == "CN=Globalsign TSA for Advanced - G4 - 202311,O=GlobalSign nv-sa,C=BE"
    assert stamp["revocation"] == "skipped by configuration"
    assert result.details["checks"]["authenticTimestamp"]["outcome"] == "passed"


async def test_cose_timestamp_after_cert_expiry_skips_the_tsa_while_the_cert_is_valid() -> None:
    result = await verify(
        params(ts_config("test-timestamp", "afterCertExpiry")),
        (TIMESTAMP / "coseWithTimestamp.sig").read_bytes(),
        COSE,
        TS_TARGET,
    )
    assert result.succeeded, result.reason
    assert result.details["timestamp"] is None
    assert "afterCertExpiry" in result.details["checks"]["authenticTimestamp"]["note"]


async def test_cose_timestamp_from_an_untrusted_tsa_fails_under_strict() -> None:
    result = await verify(
        params(ts_config("test-mismatch")), (TIMESTAMP / "coseWithTimestamp.sig").read_bytes(), COSE, TS_TARGET
    )
    assert not result.succeeded
    assert result.reason.startswith("authenticTimestamp check failed: TSA certificate")
    assert "does not chain to a trusted tsa store certificate" in result.reason


async def test_tsa_chain_revocation_enforced_offline_is_unknown_and_fails() -> None:
    result = await verify(
        params(ts_config("test-timestamp", tsa_chain="enforce")),
        (TIMESTAMP / "coseWithTimestamp.sig").read_bytes(),
        COSE,
        TS_TARGET,
    )
    assert not result.succeeded
    assert "authenticTimestamp check failed: timestamping certificate" in result.reason
    assert "has unknown revocation status" in result.reason


async def test_tsa_chain_revocation_logged_offline_passes_and_says_so() -> None:
    result = await verify(
        params(ts_config("test-timestamp", tsa_chain="log")),
        (TIMESTAMP / "coseWithTimestamp.sig").read_bytes(),
        COSE,
        TS_TARGET,
    )
    assert result.succeeded, result.reason
    assert "unknown revocation status" in result.details["timestamp"]["revocationLogged"]


@pytest.mark.parametrize(
    ("tsa", "verify_timestamp", "passes"),
    [(None, "always", True), ("test-timestamp", "afterCertExpiry", True), ("test-timestamp", "always", False)],
)
async def test_jws_without_timestamp(tsa: str | None, verify_timestamp: str, passes: bool) -> None:
    result = await verify(
        params(ts_config(tsa, verify_timestamp)), (TIMESTAMP / "withoutTimestamp.sig").read_bytes(), JWS, TS_TARGET
    )
    assert result.succeeded is passes, result.reason
    if not passes:
        assert (
            result.reason == "authenticTimestamp check failed: no timestamp countersignature in the signature envelope"
        )


async def test_expired_vector_passes_strict_on_a_clock_before_its_expiry() -> None:
    import datetime as dt

    path, media_type = ENVELOPES["expired"]
    before = dt.datetime(2023, 6, 27, 5, 21, tzinfo=dt.UTC)
    result = await verify(params(e2e_config("trustpolicy.json")), path.read_bytes(), media_type, IMAGE, now=before)
    assert result.succeeded, result.reason
    after = await verify(
        params(e2e_config("trustpolicy.json")), path.read_bytes(), media_type, IMAGE, now=before.replace(minute=22)
    )
    assert after.reason == "expiry check failed: signature expired at 2023-06-27T13:21:21+08:00"
