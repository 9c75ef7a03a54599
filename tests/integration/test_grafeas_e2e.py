"""End to end with the ``grafeas`` store: images in the real registry, attestations uploaded as Grafeas
occurrences (the way ``gcloud container binauthz attestations create`` and the Grafeas tutorial do) to the
spec-following Grafeas double (tests/support/grafeas.py, over TLS with a bearer token), verified by attestors
through ``referee verify`` and ``POST /verify``."""

from __future__ import annotations

import http.client
import json
import ssl
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from provider import mediatypes as mt
from provider.cli import main
from provider.config import load_config
from provider.executor import Engine
from tests.support.attestor_fixtures import Keys
from tests.support.attestors import (
    NOTE,
    OTHER_NOTE,
    b64,
    binauthz_payload,
    pkix_sign,
    v1_occurrence,
    v1beta1_pgp_occurrence,
)
from tests.support.content import cosign_sign_legacy, make_image, push_image
from tests.support.grafeas import GrafeasDouble
from tests.support.referee import Pki, items_by_key, running_referee, server_section, write_config
from tests.support.registry import RegistryProcess

PROJECT = "attest-project"
UNRELATED_NOTE = "projects/org/notes/unrelated"
TOKEN = "grafeas-test-token"
REPO = "attest/app"
PKIX_KEY = ec.generate_private_key(ec.SECP256R1())
PKIX_PEM = (
    PKIX_KEY.public_key()
    .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    .decode()
)
PKIX_ID = "//cloudkms.googleapis.com/v1/projects/org/locations/global/keyRings/r/cryptoKeys/ci/cryptoKeyVersions/1"


@dataclass
class World:
    registry: RegistryProcess
    grafeas: GrafeasDouble
    keys: Keys
    dir: Path
    digests: dict[str, str] = field(default_factory=dict)

    def ref(self, tag: str) -> str:
        return f"{self.registry.host}/{REPO}:{tag}"

    def repository(self) -> str:
        return f"{self.registry.host}/{REPO}"

    def resource(self, tag: str) -> str:
        return f"https://{self.repository()}@{self.digests[tag]}"

    def upload(self, body: dict[str, Any], version: str = "v1") -> dict[str, Any]:
        """POST the occurrence like gcloud does (real HTTPS to the double, bearer token)."""
        ctx = ssl.create_default_context(cadata=self.grafeas.ca_pem().decode())
        connection = http.client.HTTPSConnection("127.0.0.1", self.grafeas.port, context=ctx, timeout=30)
        try:
            connection.request(
                "POST",
                f"/{version}/projects/{PROJECT}/occurrences",
                body=json.dumps(body),
                headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"},
            )
            answer = connection.getresponse()
            document: dict[str, Any] = json.loads(answer.read())
            assert answer.status == 200, document
            return document
        finally:
            connection.close()

    def config(self, **store: Any) -> dict[str, Any]:
        token = self.dir / "token"
        token.write_text(TOKEN + "\n")
        ca = self.dir / "grafeas-ca.pem"
        ca.write_bytes(self.grafeas.ca_pem())
        grafeas = {
            "name": "grafeas",
            "type": "grafeas",
            "url": self.grafeas.url,
            "projects": [PROJECT],
            "notes": [NOTE, OTHER_NOTE],
            "tokenFile": str(token),
            "caFile": str(ca),
            "requestTimeout": "5s",
            **store,
        }
        return {
            "registries": {"allow": ["127.0.0.1:*"], "hosts": [{"host": self.registry.host, "plainHttp": True}]},
            "stores": [grafeas],
            "attestors": [
                {
                    "name": "built-by-ci",
                    "note": NOTE,
                    "pgpKeys": [self.keys.public[n].decode() for n in ("alice", "old", "dave")],
                    "pkixKeys": [{"id": PKIX_ID, "key": PKIX_PEM, "signatureAlgorithm": "ECDSA_P256_SHA256"}],
                }
            ],
            "policy": {"type": "required-verifiers", "required": ["built-by-ci"]},
        }


CASES = (
    "shape1",
    "shape2",
    "shape3",
    "wrongkey",
    "tampered",
    "otherimage",
    "expired",
    "revoked",
    "othernote",
    "unrelated",
    "missing",
    "paged",
    "both",
)


def _pgp_v1(world: World, tag: str, signer: str, digest: str | None = None, note: str = NOTE) -> dict[str, Any]:
    payload = binauthz_payload(world.repository(), digest or world.digests[tag])
    signed = world.keys.sign(signer, payload)
    body = v1_occurrence(payload, [(signed, world.keys.fpr[signer])], note=note, resource=world.resource(tag))
    return body


@pytest.fixture(scope="module")
def world(registry: RegistryProcess, keyring: Keys, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    grafeas = GrafeasDouble(token=TOKEN).start()
    for note in (NOTE, OTHER_NOTE, UNRELATED_NOTE):
        grafeas.add_note(note)
    grafeas.add_project(PROJECT)
    w = World(registry, grafeas, keyring, tmp_path_factory.mktemp("grafeas"))
    for tag in CASES:
        image = make_image(f"grafeas/{tag}")
        push_image(registry.url, REPO, tag, image)
        w.digests[tag] = image["digest"]
    # Shape 1: the Grafeas tutorial flow, a clear-signed image URL as a v1beta1 pgpSignedAttestation.
    url_text = f"{w.repository()}@{w.digests['shape1']}\n".encode()
    w.upload(
        v1beta1_pgp_occurrence(
            keyring.sign("alice", url_text, mode="clearsign"), keyring.fpr["alice"], resource=w.resource("shape1")
        ),
        "v1beta1",
    )
    # Shape 2: a Binary Authorization PGP attestation (signed payload inside, serializedPayload beside it).
    w.upload(_pgp_v1(w, "shape2", "alice"))
    # Shape 3: a PKIX attestation (Cloud KMS key id).
    payload = binauthz_payload(w.repository(), w.digests["shape3"])
    w.upload(
        v1_occurrence(
            payload, [(pkix_sign(PKIX_KEY, "ECDSA_P256_SHA256", payload), PKIX_ID)], resource=w.resource("shape3")
        )
    )
    w.upload(_pgp_v1(w, "wrongkey", "bob"))
    tampered = binauthz_payload(w.repository(), w.digests["tampered"])
    signature = pkix_sign(PKIX_KEY, "ECDSA_P256_SHA256", tampered)
    tampered = tampered.replace(b'"critical"', b'"critical" ')
    w.upload(v1_occurrence(tampered, [(signature, PKIX_ID)], resource=w.resource("tampered")))
    w.upload(_pgp_v1(w, "otherimage", "alice", digest=w.digests["shape2"]))
    w.upload(_pgp_v1(w, "expired", "old"))
    w.upload(_pgp_v1(w, "revoked", "dave"))
    w.upload(_pgp_v1(w, "othernote", "alice", note=OTHER_NOTE))
    w.upload(_pgp_v1(w, "unrelated", "alice", note=UNRELATED_NOTE))
    for _ in range(4):
        w.upload(_pgp_v1(w, "paged", "bob"))
    w.upload(_pgp_v1(w, "paged", "alice"))
    w.upload(_pgp_v1(w, "both", "alice"))
    cosign_key = ec.generate_private_key(ec.SECP256R1())
    (w.dir / "cosign.pub").write_bytes(
        cosign_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    cosign_sign_legacy(registry.url, REPO, w.digests["both"], cosign_key)
    yield w
    grafeas.stop()


@pytest.fixture
def grafeas(world: World) -> Iterator[GrafeasDouble]:
    world.grafeas.reset()
    yield world.grafeas
    world.grafeas.reset()


EXPECTED_DENIALS = {
    "wrongkey": "which is not a configured key",
    "tampered": "the payload was altered or another key signed it",
    "otherimage": "not this image",
    "expired": "expired at",
    "revoked": "is revoked",
    "othernote": f"attestation is under note {OTHER_NOTE}; built-by-ci accepts only {NOTE}",
    "unrelated": "built-by-ci: no matching artifact found",
    "missing": "built-by-ci: no matching artifact found",
}


def _check_verdicts(world: World, values: dict[str, dict[str, Any]]) -> None:
    for tag in ("shape1", "shape2", "shape3"):
        verdict = values[world.ref(tag)]
        assert verdict["allowed"] is True, (tag, verdict["reason"])
        [artifact] = verdict["artifacts"]
        assert artifact["artifactType"] == mt.GRAFEAS_ATTESTATION
        assert artifact["verifier"] == "built-by-ci" and artifact["verifierType"] == "attestor"
        assert artifact["details"]["note"] == NOTE
        assert artifact["details"]["occurrence"].startswith(f"projects/{PROJECT}/occurrences/")
    assert values[world.ref("shape1")]["artifacts"][0]["details"]["payloadShape"] == "image-url"
    assert values[world.ref("shape2")]["artifacts"][0]["details"]["keyFingerprint"] == world.keys.fpr["alice"]
    assert values[world.ref("shape3")]["artifacts"][0]["details"]["keyId"] == PKIX_ID
    for tag, reason in EXPECTED_DENIALS.items():
        verdict = values[world.ref(tag)]
        assert verdict["allowed"] is False, tag
        assert reason in verdict["reason"], (tag, verdict["reason"])


def test_referee_verify_allows_each_shape_and_denies_each_fault(
    world: World, grafeas: GrafeasDouble, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(world.dir / "cli.yaml", world.config())
    refs = [world.ref(tag) for tag in ("shape1", "shape2", "shape3", *EXPECTED_DENIALS)]
    assert main(["verify", "--config", str(config), "--output", "json", *refs]) == 1
    values = {entry["key"]: entry["value"] for entry in json.loads(capsys.readouterr().out)}
    _check_verdicts(world, values)
    assert all(auth == f"Bearer {TOKEN}" for _, _, _, auth in grafeas.requests)
    assert main(["verify", "--config", str(config), world.ref("shape3")]) == 0


async def test_verify_endpoint_gives_the_same_verdicts(world: World, grafeas: GrafeasDouble, pki: Pki) -> None:
    config = write_config(world.dir / "server.yaml", {**world.config(), "server": server_section(pki)})
    refs = [world.ref(tag) for tag in ("shape1", "shape2", "shape3", *EXPECTED_DENIALS)]
    async with running_referee(config, pki) as referee:
        response = await referee.verify(refs)
    assert "systemError" not in response["response"]
    _check_verdicts(world, {key: item["value"] for key, item in items_by_key(response).items()})


async def _outcome(world: World, ref: str, **store: Any) -> Any:
    path = write_config(world.dir / "engine.yaml", world.config(**store))
    engine = Engine(load_config(path))
    try:
        return await engine.verify_key(ref)
    finally:
        await engine.close()


async def test_occurrences_are_followed_across_pages(world: World, grafeas: GrafeasDouble) -> None:
    outcome = await _outcome(world, world.ref("paged"), pageSize=2)
    assert outcome.verdict is not None and outcome.verdict.allowed, outcome
    assert len(outcome.verdict.artifacts) == 5
    lists = [query for method, _, query, _ in grafeas.requests if method == "GET"]
    assert len(lists) == 3
    assert "pageToken" not in lists[0] and all("pageToken=" in q for q in lists[1:])
    resource = f"https://{world.repository()}@{world.digests['paged']}"
    assert parse_qs(lists[0])["filter"] == [f'resourceUrl="{resource}" AND kind="ATTESTATION"']


async def test_attestations_are_listed_beside_the_registry_referrers(world: World, grafeas: GrafeasDouble) -> None:
    config = world.config()
    config["verifiers"] = [{"name": "cosign-ci", "type": "cosign", "keys": [str(world.dir / "cosign.pub")]}]
    config["policy"] = {"type": "required-verifiers", "required": ["cosign-ci", "built-by-ci"]}
    path = write_config(world.dir / "both.yaml", config)
    engine = Engine(load_config(path))
    try:
        both = await engine.verify_key(world.ref("both"))
        shape2 = await engine.verify_key(world.ref("shape2"))
    finally:
        await engine.close()
    assert both.verdict is not None and both.verdict.allowed, both
    assert {a.verifier for a in both.verdict.artifacts} == {"cosign-ci", "built-by-ci"}
    assert shape2.verdict is not None and not shape2.verdict.allowed
    assert "cosign-ci: no matching artifact found" in shape2.verdict.decision.reason


async def test_the_v1beta1_api_is_read_too(world: World, grafeas: GrafeasDouble) -> None:
    outcome = await _outcome(world, world.ref("shape1"), apiVersion="v1beta1")
    assert outcome.verdict is not None and outcome.verdict.allowed, outcome
    assert grafeas.requests[0][1] == f"/v1beta1/projects/{PROJECT}/occurrences"


async def test_unavailable_grafeas_is_a_transient_error_never_a_pass(world: World, grafeas: GrafeasDouble) -> None:
    grafeas.fail_next = [503, 503]
    outcome = await _outcome(world, world.ref("shape2"), maxAttempts=2)
    assert outcome.verdict is None and outcome.error is not None
    assert outcome.error.code == "STORE_UNAVAILABLE" and outcome.error.transient
    grafeas.fail_next = [429]
    recovered = await _outcome(world, world.ref("shape2"), maxAttempts=2)
    assert recovered.verdict is not None and recovered.verdict.allowed


async def test_slow_grafeas_times_out_as_a_transient_error(world: World, grafeas: GrafeasDouble) -> None:
    grafeas.delay = 2.0
    outcome = await _outcome(world, world.ref("shape2"), requestTimeout="200ms", maxAttempts=1)
    assert outcome.error is not None and outcome.error.transient, outcome


async def test_grafeas_outage_reaches_gatekeeper_as_system_error(
    world: World, grafeas: GrafeasDouble, pki: Pki
) -> None:
    config = write_config(world.dir / "outage.yaml", {**world.config(maxAttempts=1), "server": server_section(pki)})
    async with running_referee(config, pki) as referee:
        grafeas.fail_next = [503]
        response = await referee.verify([world.ref("shape2")])
    body = response["response"]
    assert body["items"] == []
    assert world.ref("shape2") in body["systemError"] and "STORE_UNAVAILABLE" in body["systemError"]


async def test_refused_token_and_unknown_project_are_item_errors(world: World, grafeas: GrafeasDouble) -> None:
    (world.dir / "bad-token").write_text("wrong")
    refused = await _outcome(world, world.ref("shape2"), tokenFile=str(world.dir / "bad-token"))
    assert refused.error is not None and refused.error.code == "AUTH_DENIED" and not refused.error.transient
    assert "UNAUTHENTICATED" in refused.error.message
    unknown = await _outcome(world, world.ref("shape2"), projects=["nope"])
    assert unknown.error is not None and unknown.error.code == "STORE_ERROR"
    assert "404" in unknown.error.message and "NOT_FOUND" in unknown.error.message


async def test_images_outside_registries_allow_never_reach_grafeas(world: World, grafeas: GrafeasDouble) -> None:
    outcome = await _outcome(world, "ghcr.io/elsewhere/app@sha256:" + "a" * 64)
    assert outcome.error is not None and outcome.error.code == "REGISTRY_NOT_ALLOWED"
    assert grafeas.requests == []


def test_grafeas_store_config_errors(tmp_path: Path) -> None:
    from provider.config import load_config_bytes
    from provider.errors import ConfigError

    text = json.dumps(
        {
            "stores": [
                {"name": "g", "type": "grafeas", "url": "ftp://x", "projects": ["UPPER"], "notes": ["bad"]},
                {
                    "name": "h",
                    "type": "grafeas",
                    "url": "http://127.0.0.1:1",
                    "projects": ["p"],
                    "notes": [NOTE],
                    "tokenFile": "t",
                    "plainHttp": True,
                },
                {"name": "i", "type": "grafeas", "url": "http://127.0.0.1:1", "projects": ["p"], "notes": [NOTE]},
                {"name": "j", "type": "grafeas", "url": "https://x"},
            ]
        }
    )
    with pytest.raises(ConfigError) as info:
        load_config_bytes(text.encode(), tmp_path)
    assert info.value.problems == [
        "stores[0].url: 'ftp://x' is not an http(s) base URL",
        "stores[0].projects[0]: 'UPPER' is not a project id",
        "stores[0].notes[0]: 'bad' is not a note name",
        "stores[1].tokenFile: a bearer token is never sent over plain HTTP",
        "stores[2].url: plain HTTP must be enabled explicitly with plainHttp: true",
        "stores[3].projects: required",
        "stores[3].notes: at least one note (projects/<project>/notes/<note>) is required",
    ]


def test_occurrence_bodies_are_what_gcloud_sends(world: World) -> None:
    stored = world.upload(_pgp_v1(world, "missing", "alice", note=UNRELATED_NOTE))
    assert stored["resourceUri"] == world.resource("missing")
    assert stored["name"].startswith(f"projects/{PROJECT}/occurrences/")
    assert stored["attestation"]["signatures"][0]["publicKeyId"] == world.keys.fpr["alice"]
    assert (
        b64(binauthz_payload(world.repository(), world.digests["missing"]))
        == stored["attestation"]["serializedPayload"]
    )


async def test_imported_binary_authorization_setup_verifies(world: World, grafeas: GrafeasDouble) -> None:
    """`referee import binauthz` output, pointed at the double, gives the verdicts Binary Authorization would."""
    import yaml

    attestor = {
        "name": "projects/org/attestors/built-by-ci",
        "userOwnedGrafeasNote": {
            "noteReference": NOTE,
            "publicKeys": [
                {"id": world.keys.fpr["alice"], "asciiArmoredPgpPublicKey": world.keys.public["alice"].decode()},
                {"id": PKIX_ID, "pkixPublicKey": {"publicKeyPem": PKIX_PEM, "signatureAlgorithm": "ECDSA_P256_SHA256"}},
            ],
        },
    }
    policy = {
        "name": f"projects/{PROJECT}/policy",
        "defaultAdmissionRule": {
            "evaluationMode": "REQUIRE_ATTESTATION",
            "enforcementMode": "ENFORCED_BLOCK_AND_AUDIT_LOG",
            "requireAttestationsBy": ["projects/org/attestors/built-by-ci"],
        },
    }
    (world.dir / "policy.yaml").write_text(yaml.safe_dump(policy))
    (world.dir / "attestor.yaml").write_text(yaml.safe_dump(attestor))
    (world.dir / "token").write_text(TOKEN)
    out = world.dir / "imported"
    argv = ["import", "binauthz", str(world.dir / "policy.yaml"), "--attestor", str(world.dir / "attestor.yaml")]
    argv += ["--out", str(out), "--grafeas-url", world.grafeas.url, "--token-file", str(world.dir / "token")]
    assert main([*argv, "--allow", "127.0.0.1:*"]) == 0
    assert main(["config", "check", str(out / "referee.yaml")]) == 0
    config = yaml.safe_load((out / "referee.yaml").read_text())
    (world.dir / "ca.pem").write_bytes(world.grafeas.ca_pem())
    config["stores"][0]["caFile"] = str(world.dir / "ca.pem")  # the double's test CA
    config["registries"]["hosts"] = [{"host": world.registry.host, "plainHttp": True}]
    engine = Engine(load_config(write_config(out / "patched.yaml", config)))
    try:
        verdicts = {
            tag: (await engine.verify_key(world.ref(tag))).verdict
            for tag in ("shape1", "shape2", "shape3", "wrongkey", "othernote")
        }
    finally:
        await engine.close()
    assert {tag: v.allowed for tag, v in verdicts.items() if v is not None} == {
        "shape1": True,
        "shape2": True,
        "shape3": True,
        "wrongkey": False,
        "othernote": False,
    }
