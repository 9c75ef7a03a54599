"""The notation verifier's configuration: trust policy and trust store problems reported with their paths,
files fingerprinted into the configuration generation, and the verifier's manifest-level checks."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from provider.config import load_config
from provider.oci import Descriptor, parse_manifest
from provider.reference import parse_reference
from provider.verifiers.base import Subject, VerificationRequest, VerifierSpec
from provider.verifiers.notation import NotationPlugin
from provider.verifiers.notation.trustpolicy import parse_dn
from tests.support import notation_sign as ns
from tests.support.content import make_artifact_manifest, sha256_digest
from tests.support.referee import write_config
from tests.unit.notation_helpers import NOW, VECTORS, config_problems, params, policy

E2E_ROOT = VECTORS / "truststore" / "x509" / "ca" / "e2e" / "e2e.crt"


def test_trust_stores_from_files_directories_and_inline_pem(tmp_path: Path) -> None:
    pki = ns.TestPki.create("cfg")
    (tmp_path / "dir").mkdir()
    (tmp_path / "dir" / "root.crt").write_bytes(pki.root.pem)
    (tmp_path / "dir" / "inter.der").write_bytes(pki.intermediate.der)
    (tmp_path / "dir" / "ignored").mkdir()
    (tmp_path / "dir" / "ignored" / "x.pem").write_bytes(b"not read")
    p = params(
        {
            "trustPolicy": policy(["ca:dir", "ca:inline", "tsa:der"]),
            "trustStores": {
                "ca": {"dir": [str(tmp_path / "dir")], "inline": [pki.root.pem.decode()]},
                "tsa": {"der": str(VECTORS / "timestamp/truststore/x509/tsa/test-timestamp/globalsignRoot.cer")},
            },
        }
    )
    assert len(p.trust_stores[("ca", "dir")].certificates) == 2
    assert len(p.trust_stores[("ca", "inline")].certificates) == 1
    assert len(p.trust_stores[("tsa", "der")].certificates) == 1


def test_configuration_problems_have_paths(tmp_path: Path) -> None:
    pki = ns.TestPki.create("bad")
    leaf = tmp_path / "leaf.pem"
    leaf.write_bytes(pki.leaf.pem)
    (tmp_path / "empty").mkdir()
    (tmp_path / "escaping").mkdir()
    (tmp_path / "escaping" / "link.pem").symlink_to(leaf)
    problems = config_problems(
        {
            "trustPolicy": policy(["ca:leaf", "ca:missing"], ["x509.subject: C=US, O=NoState"]),
            "trustStores": {
                "ca": {"leaf": [str(leaf)], "empty": [str(tmp_path / "empty")], "link": [str(tmp_path / "escaping")]}
            },
            "revocation": {"mode": "online"},
        }
    )
    text = "\n".join(problems)
    assert "verifiers[0].trustStores.ca.leaf[0]" in text and "is neither a CA nor a self-signed certificate" in text
    assert "verifiers[0].trustStores.ca.empty[0]: directory" in text
    assert "link.pem is a symbolic link leaving the store, which is not allowed" in text
    assert "uses ca:missing, which is not configured under trustStores.ca" in text
    assert (
        "verifiers[0].trustPolicy.trustPolicies[0].trustedIdentities[0]" in text and "must contain C, ST and O" in text
    )
    assert "verifiers[0].revocation.allow: online revocation needs the hosts" in text


@pytest.mark.parametrize(
    ("identities", "stores", "root_cause"),
    [
        (
            ["x509.subject: C=US, O=NoState"],
            ["ca:x"],
            "verifiers[0].trustPolicy.trustPolicies[0].trustedIdentities[0]: distinguished name ' C=US, O=NoState' "
            "must contain C, ST and O; missing ST",
        ),
        (
            ["CN=forgot-the-prefix"],
            ["ca:x"],
            "verifiers[0].trustPolicy.trustPolicies[0].trustedIdentities[0]: expected '*' or 'x509.subject: <DN>', "
            "got 'CN=forgot-the-prefix'",
        ),
        (
            ["*"],
            ["ca-typo:x"],
            "verifiers[0].trustPolicy.trustPolicies[0].trustStores[0]: expected <ca|signingAuthority|tsa>:<store "
            "name>, got 'ca-typo:x'",
        ),
    ],
    ids=["identity-dn", "identity-prefix", "store-type"],
)
def test_a_trust_policy_entry_error_is_reported_once_as_its_root_cause(
    identities: list[str], stores: list[str], root_cause: str
) -> None:
    """A malformed identity (or store) is the only problem reported for it: no follow-on "at least one trusted
    identity is required" for a policy that does list one."""
    doc = policy(stores, identities)
    store_name = stores[0].partition(":")[2]
    problems = config_problems({"trustPolicy": doc, "trustStores": {"ca": {store_name: [str(E2E_ROOT)]}}})
    assert problems == [root_cause]


def test_a_policy_without_identities_or_stores_still_says_so() -> None:
    doc = policy(["ca:x"])
    doc["trustPolicies"][0]["trustedIdentities"] = []
    doc["trustPolicies"][0]["trustStores"] = []
    assert config_problems({"trustPolicy": doc}) == [
        "verifiers[0].trustPolicy.trustPolicies[0].trustStores: at least one trust store is required",
        "verifiers[0].trustPolicy.trustPolicies[0].trustedIdentities: at least one trusted identity (or '*') is "
        "required",
    ]


def test_trust_policy_is_required_once() -> None:
    assert config_problems({}) == [
        "verifiers[0].trustPolicy: a trust policy is required (trustPolicy inline or trustPolicyFile)"
    ]
    both = config_problems({"trustPolicy": policy(["ca:x"]), "trustPolicyFile": "/nonexistent.json"})
    assert any("give either trustPolicy or trustPolicyFile" in p for p in both)


def test_skip_level_with_wildcard_scope_is_accepted_like_notation() -> None:
    p = params({"trustPolicyFile": str(VECTORS / "trustpolicy/skip_trustpolicy.json")})
    assert p.trust_policy.policies[0].level.name == "skip"


def test_exact_repository_beats_the_wildcard_policy() -> None:
    document = {
        "version": "1.0",
        "trustPolicies": [
            {
                "name": "global",
                "registryScopes": ["*"],
                "signatureVerification": {"level": "strict"},
                "trustStores": ["ca:e2e"],
                "trustedIdentities": ["*"],
            },
            {
                "name": "legacy",
                "registryScopes": ["registry.example/legacy/app"],
                "signatureVerification": {"level": "skip"},
            },
        ],
    }
    p = params({"trustPolicy": document, "trustStores": {"ca": {"e2e": [str(VECTORS / "truststore/x509/ca/e2e")]}}})
    assert p.trust_policy.select("registry.example/legacy/app").name == "legacy"  # type: ignore[union-attr]
    assert p.trust_policy.select("registry.example/legacy/app2").name == "global"  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("dn", "expected"),
    [
        ("C=US, ST=WA, O=Notary", {"C": "US", "ST": "WA", "O": "Notary"}),
        ("C=US,S=WA,O=a\\,b\\;c\\\\d,CN=\\ x\\ ", {"C": "US", "ST": "WA", "O": "a,b;c\\d", "CN": " x "}),
        ("C=US,ST=WA,O=#0c064e6f74617279", {"C": "US", "ST": "WA", "O": "Notary"}),
        ("C=US,ST=WA,O=caf\\C3\\A9", {"C": "US", "ST": "WA", "O": "café"}),
    ],
)
def test_distinguished_names(dn: str, expected: dict[str, str]) -> None:
    assert parse_dn(dn) == expected


@pytest.mark.parametrize(
    "dn", ["C=US,ST=WA", "invalid", "C=US,ST=WA,O=x,S=WA", "C=US,ST=WA,O=Notary Project=#", "OU=a+CN=b,C=US,ST=WA,O=x"]
)
def test_invalid_distinguished_names(dn: str) -> None:
    with pytest.raises(ValueError, match="distinguished name"):
        parse_dn(dn)


def test_trust_store_changes_change_the_generation(tmp_path: Path) -> None:
    a, b = ns.TestPki.create("a"), ns.TestPki.create("b")
    store = tmp_path / "root.pem"
    store.write_bytes(a.root.pem)
    policy_file = tmp_path / "trustpolicy.json"
    policy_file.write_text(json.dumps(policy(["ca:ci"])))
    path = write_config(
        tmp_path / "referee.yaml",
        {
            "verifiers": [
                {
                    "name": "n",
                    "type": "notation",
                    "trustPolicyFile": str(policy_file),
                    "trustStores": {"ca": {"ci": [str(store)]}},
                }
            ]
        },
    )
    first = load_config(path).generation
    store.write_bytes(b.root.pem)
    second = load_config(path).generation
    policy_file.write_text(json.dumps(policy(["ca:ci"], level="permissive")))
    third = load_config(path).generation
    assert len({first, second, third}) == 3


class _Content:
    def __init__(self, blobs: dict[str, bytes]) -> None:
        self.blobs = blobs

    async def fetch_manifest(self, descriptor: Descriptor) -> Any:
        raise AssertionError("not used")

    async def fetch_blob(self, descriptor: Descriptor, max_bytes: int | None = None) -> bytes:
        return self.blobs[descriptor.digest]


async def test_verifier_checks_the_signature_manifest(tmp_path: Path) -> None:
    pki = ns.TestPki.create("m")
    store = tmp_path / "root.pem"
    store.write_bytes(pki.root.pem)
    plugin = NotationPlugin()
    p = params({"trustPolicy": policy(["ca:ci"]), "trustStores": {"ca": {"ci": [str(store)]}}, "maxSignatures": 1})
    verifier = plugin.create(VerifierSpec("n", "notation", plugin.default_artifact_types, ("*",), p))
    image = {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": "sha256:" + "ab" * 32, "size": 10}
    subject = Subject(
        parse_reference(f"registry.example/app@{image['digest']}"), Descriptor(image["mediaType"], image["digest"], 10)
    )
    envelope = ns.sign_jws(ns.payload_for(image), pki.leaf.key, pki.chain)

    def request(layers: list[tuple[str, bytes, None]], form: str = "oci-1.1", siblings: int = 0) -> VerificationRequest:
        raw, blobs = make_artifact_manifest(image, ns.NOTARY_SIGNATURE, layers, form=form)  # type: ignore[arg-type]
        digest = sha256_digest(raw)
        manifest = parse_manifest(raw, digest, None)
        artifact = Descriptor(manifest.descriptor.media_type, digest, len(raw), artifact_type=ns.NOTARY_SIGNATURE)
        others = tuple(
            Descriptor(artifact.media_type, "sha256:" + f"{i:02x}" * 32, 1, ns.NOTARY_SIGNATURE)
            for i in range(siblings)
        )
        return VerificationRequest(subject, artifact, manifest, _Content(blobs), NOW, (*others, artifact))

    for form in ("oci-1.1", "oci-1.0"):
        result = await verifier.verify(request([(ns.JWS, envelope, None)], form))
        assert result.succeeded, result.reason
        assert result.details["signatureManifest"].startswith("sha256:")
    two = await verifier.verify(request([(ns.JWS, envelope, None), (ns.JWS, envelope, None)]))
    assert two.reason == "integrity check failed: signature manifest must have exactly one layer (the envelope), has 2"
    beyond = await verifier.verify(request([(ns.JWS, envelope, None)], siblings=1))
    assert beyond.reason == "not examined: only the first 1 notation signatures are verified"


def test_kubernetes_projected_volume_layout_is_read(tmp_path: Path) -> None:
    """ConfigMap/Secret volumes hold ``name -> ..data/name`` links and ``..data -> ..<timestamp>``."""
    pki = ns.TestPki.create("k8s")
    mount = tmp_path / "trust"
    real = mount / "..2026_11_23_00_00_00.000000001"
    real.mkdir(parents=True)
    (real / "root.pem").write_bytes(pki.root.pem)
    (mount / "..data").symlink_to(real.name)
    (mount / "root.pem").symlink_to("..data/root.pem")
    p = params(
        {
            "trustPolicy": policy(["ca:dir", "ca:file"]),
            "trustStores": {"ca": {"dir": [str(mount)], "file": [str(mount / "root.pem")]}},
        }
    )
    assert len(p.trust_stores[("ca", "dir")].certificates) == 1
    assert len(p.trust_stores[("ca", "file")].certificates) == 1
