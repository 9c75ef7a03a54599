"""Notary Project signatures end to end: the notation e2e OCI layouts through the oci-layout store (CLI) and
pushed byte-identically into the real registry (with the ``sha256-<hex>`` referrers-tag index notation writes
for registries without the Referrers API) and judged through POST /verify; images signed by the test signer
(JWS in the OCI 1.1 shape, COSE in the OCI 1.0 shape); an unsigned image; trust store reload.

Clock: 2026-11-23 injected into the server. Revocation: default ``offline`` mode; no signing certificate here
carries OCSP/CRL locations, so nothing is fetched.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest

from provider.cli import main
from tests.support import notation_sign as ns
from tests.support.content import (
    make_artifact_manifest,
    make_image,
    push_artifact,
    push_blob,
    push_fallback_index,
    push_image,
    push_manifest,
)
from tests.support.paths import VECTORS as SHARED_VECTORS
from tests.support.referee import Pki, items_by_key, running_referee, server_section, write_config
from tests.support.registry import RegistryProcess

VECTORS = SHARED_VECTORS / "notation"
LAYOUTS = VECTORS / "oci-layouts"
E2E_DIGEST = "sha256:b8479de3f88fb259a0a9ea82a5b2a052a1ef3c4ebbcfc61482d5ae4c831f8af9"
NOW = dt.datetime(2026, 11, 23, tzinfo=dt.UTC)


def strict_policy(stores: list[str], level: str = "strict") -> dict[str, Any]:
    return {
        "version": "1.0",
        "trustPolicies": [
            {
                "name": "e2e",
                "registryScopes": ["*"],
                "signatureVerification": {"level": level},
                "trustStores": stores,
                "trustedIdentities": ["*"],
            }
        ],
    }


def notation_config(trust_stores: dict[str, Any], level: str = "strict", **extra: Any) -> dict[str, Any]:
    names = [f"{kind}:{name}" for kind, named in trust_stores.items() for name in named]
    config: dict[str, Any] = {
        "verifiers": [
            {
                "name": "notation-ci",
                "type": "notation",
                "trustPolicy": strict_policy(names, level),
                "trustStores": trust_stores,
            }
        ],
        "policy": {"type": "required-verifiers", "required": ["notation-ci"]},
    }
    config.update(extra)
    return config


E2E_STORES = {"ca": {"e2e": [str(VECTORS / "truststore/x509/ca/e2e/e2e.crt")]}}


@pytest.mark.parametrize(
    ("layout", "level", "code", "expected"),
    [
        ("e2e-valid-signature", "strict", 0, "signed by CN=e2e,O=Notary,L=Seattle,ST=WA,C=US"),
        ("e2e-expired-signature", "strict", 1, "expiry check failed: signature expired at 2023-06-27T13:21:21+08:00"),
        ("e2e-expired-signature", "permissive", 0, "logged failures: expiry"),
        ("e2e-invalid-signature", "strict", 1, "integrity check failed: unsupported signature envelope media type"),
        ("e2e-invalid-signature", "audit", 1, "integrity check failed"),
    ],
)
def test_layouts_through_the_oci_layout_store(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], layout: str, level: str, code: int, expected: str
) -> None:
    config = write_config(tmp_path / "referee.yaml", notation_config(E2E_STORES, level))
    argv = ["verify", "--config", str(config), "--layout", str(LAYOUTS / layout), "--output", "json"]
    assert main([*argv, "localhost:5000/test-repo:v1"]) == code
    [doc] = json.loads(capsys.readouterr().out)
    verdict = doc["value"]
    assert verdict["digest"] == E2E_DIGEST
    [artifact] = verdict["artifacts"]
    assert artifact["verifierType"] == "notation"
    assert artifact["artifactType"] == "application/vnd.cncf.notary.signature"
    assert expected in artifact["reason"]
    assert verdict["allowed"] is (code == 0)


def _push_layout(registry: RegistryProcess, repo: str, layout: Path) -> None:
    """Every blob and manifest of the layout, byte-identical, with the layout's tags (``v1``, ``sha256-…``)."""
    index = json.loads((layout / "index.json").read_bytes())
    manifests = {d["digest"]: d for d in index["manifests"]}
    for blob in sorted((layout / "blobs" / "sha256").iterdir()):
        if f"sha256:{blob.name}" not in manifests:
            push_blob(registry.url, repo, blob.read_bytes())
    ordered = sorted(manifests.values(), key=lambda d: d["mediaType"] == "application/vnd.oci.image.index.v1+json")
    for desc in ordered:
        body = (layout / "blobs" / "sha256" / desc["digest"].split(":")[1]).read_bytes()
        tag = (desc.get("annotations") or {}).get("org.opencontainers.image.ref.name", desc["digest"])
        pushed = push_manifest(registry.url, repo, tag, body, desc["mediaType"])
        assert pushed == desc["digest"]


def _sign_and_push(
    registry: RegistryProcess, repo: str, image: dict[str, Any], pki: ns.TestPki, envelope_type: str, form: str
) -> str:
    payload = ns.payload_for(image["descriptor"])
    if envelope_type == ns.JWS:
        envelope = ns.sign_jws(payload, pki.leaf.key, pki.chain)
    else:
        envelope = ns.sign_cose(payload, pki.leaf.key, pki.chain)
    manifest, blobs = make_artifact_manifest(
        image["descriptor"],
        ns.NOTARY_SIGNATURE,
        [(envelope_type, envelope, None)],
        {"io.cncf.notary.x509chain.thumbprint#S256": ns.thumbprints(pki.chain)},
        form=form,  # type: ignore[arg-type]
    )
    digest = push_artifact(registry.url, repo, manifest, blobs)
    push_fallback_index(registry.url, repo, image["digest"], [manifest])
    return str(digest)


async def test_layouts_and_signed_images_through_post_verify(
    registry: RegistryProcess, pki: Pki, tmp_path: Path
) -> None:
    host = registry.host
    for layout in ("e2e-valid-signature", "e2e-expired-signature", "e2e-invalid-signature"):
        _push_layout(registry, f"notation/{layout}", LAYOUTS / layout)

    signer = ns.TestPki.create("ci")
    rogue = ns.TestPki.create("rogue")
    images = {tag: make_image(f"notation-e2e/{tag}") for tag in ("jws", "cose", "two", "unsigned", "rogue")}
    repo = "notation/app"
    for tag, image in images.items():
        push_image(registry.url, repo, tag, image)
    _sign_and_push(registry, repo, images["jws"], signer, ns.JWS, "oci-1.1")
    _sign_and_push(registry, repo, images["cose"], signer, ns.COSE, "oci-1.0")
    _sign_and_push(registry, repo, images["two"], rogue, ns.JWS, "oci-1.1")
    _sign_and_push(registry, repo, images["two"], signer, ns.COSE, "oci-1.1")
    _sign_and_push(registry, repo, images["rogue"], rogue, ns.JWS, "oci-1.0")

    ci_root = tmp_path / "ci-root.pem"
    ci_root.write_bytes(signer.root.pem)
    stores = {"ca": {"e2e": [str(VECTORS / "truststore/x509/ca/e2e/e2e.crt")], "ci": [str(ci_root)]}}
    config = notation_config(
        stores,
        registries={"allow": ["127.0.0.1:*"], "hosts": [{"host": host, "plainHttp": True}]},
        server=server_section(pki),
    )
    path = write_config(tmp_path / "referee.yaml", config)
    keys = {
        "valid": f"{host}/notation/e2e-valid-signature:v1",
        "expired": f"{host}/notation/e2e-expired-signature:v1",
        "invalid": f"{host}/notation/e2e-invalid-signature:v1",
        **{tag: f"{host}/{repo}:{tag}" for tag in images},
    }
    async with running_referee(path, pki, clock=lambda: NOW) as referee:
        items = items_by_key(await referee.verify(list(keys.values())))
        verdicts = {name: items[key]["value"] for name, key in keys.items()}

        assert verdicts["valid"]["allowed"] is True, verdicts["valid"]["reason"]
        [valid] = verdicts["valid"]["artifacts"]
        assert valid["details"]["signer"] == "CN=e2e,O=Notary,L=Seattle,ST=WA,C=US"
        assert valid["details"]["checks"]["integrity"]["outcome"] == "passed"

        assert verdicts["expired"]["allowed"] is False
        assert "expiry check failed: signature expired at 2023-06-27T13:21:21+08:00" in verdicts["expired"]["reason"]
        assert verdicts["invalid"]["allowed"] is False
        assert "integrity check failed: unsupported signature envelope media type" in verdicts["invalid"]["reason"]

        for tag, envelope in (("jws", "jws"), ("cose", "cose")):
            verdict = verdicts[tag]
            assert verdict["allowed"] is True, verdict["reason"]
            [artifact] = verdict["artifacts"]
            assert artifact["details"]["envelope"] == envelope
            assert artifact["details"]["signer"] == "CN=ci signer,O=Referee Test,ST=WA,C=US"
            assert artifact["details"]["trustAnchor"] == "CN=ci root,O=Referee Test,ST=WA,C=US"

        two = verdicts["two"]
        assert two["allowed"] is True, two["reason"]
        outcomes = sorted((a["succeeded"], a["reason"]) for a in two["artifacts"])
        assert outcomes[0][0] is False
        assert (
            outcomes[0][1]
            == "authenticity check failed: certificate chain does not chain to a certificate in ca:e2e, ca:ci"
        )
        assert outcomes[1][0] is True and outcomes[1][1].startswith("signed by CN=ci signer")

        assert verdicts["rogue"]["allowed"] is False
        assert "authenticity check failed" in verdicts["rogue"]["reason"]
        unsigned = verdicts["unsigned"]
        assert unsigned["allowed"] is False and unsigned["artifacts"] == []
        assert "notation-ci: no matching artifact found" in unsigned["reason"]

        # Trust store reload: replacing the store file's content (the configuration file is unchanged) changes
        # the configuration generation, and the rogue signer becomes trusted without a restart.
        generation = referee.server.state.config.generation
        ci_root.write_bytes(signer.root.pem + rogue.root.pem)
        for _ in range(100):
            await asyncio.sleep(0.1)
            if referee.server.state.config.generation != generation:
                break
        assert referee.server.state.config.generation != generation
        again = items_by_key(await referee.verify([keys["rogue"]]))[keys["rogue"]]["value"]
        assert again["allowed"] is True, again["reason"]
