"""containers/image signatures in lookaside storage (a directory and an HTTP server), images in the real registry.

The centrepiece: for every signature file made here — by ``skopeo standalone-sign`` or by ``gpg`` directly —
Referee's verdict (``lookaside`` store + ``pgp`` verifier) equals ``skopeo standalone-verify``'s on the same
manifest, docker reference, key and file, and each case's expected outcome holds for both.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from provider import mediatypes as mt
from provider.cli import main
from provider.config import load_config
from provider.executor import Engine
from provider.stores.lookaside import signature_path
from tests.support.attestor_fixtures import Keys
from tests.support.attestors import atomic_payload, cosign_payload, pkix_sign, sigstore_json_blob
from tests.support.content import make_image, push_image
from tests.support.gpg import GnuPG
from tests.support.referee import Pki, items_by_key, running_referee, server_section, write_config
from tests.support.registry import RegistryProcess, ServerThread

TRUSTED = ("alice", "carol", "old", "dave", "frank", "erin")


@dataclass
class Case:
    name: str
    expected: bool
    signer: str  # whose fingerprint skopeo is told to expect
    subkey: bool = False


CASES = [
    Case("skopeo-signed", True, "alice"),
    Case("skopeo-subkey", True, "carol", subkey=True),
    Case("gpg-armored", True, "alice"),
    Case("gpg-uncompressed", True, "alice"),
    Case("gpg-clearsigned", True, "alice"),
    Case("wrong-key", False, "alice"),
    Case("other-digest", False, "alice"),
    Case("other-repository", False, "alice"),
    Case("other-tag", False, "alice"),
    Case("tampered", False, "alice"),
    Case("expired-key", False, "old"),
    Case("revoked-key", False, "dave"),
    Case("expired-subkey", False, "frank", subkey=True),
    Case("expired-signature", False, "erin"),
]


@dataclass
class Lookaside:
    registry: RegistryProcess
    keys: Keys
    dir: Path
    sigstore: Path
    digests: dict[str, str] = field(default_factory=dict)
    manifests: dict[str, Path] = field(default_factory=dict)

    def ref(self, name: str, tag: str = "v1") -> str:
        return f"{self.registry.host}/lookaside/{name}:{tag}"

    def place(self, name: str, blob: bytes, index: int = 1) -> Path:
        path = self.sigstore / signature_path(f"lookaside/{name}", self.digests[name], index)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(blob)
        return path

    def config(self, store: dict[str, Any], **extra: Any) -> dict[str, Any]:
        return {
            "registries": {"allow": ["127.0.0.1:*"], "hosts": [{"host": self.registry.host, "plainHttp": True}]},
            "stores": [{"name": "sigstore", "type": "lookaside", **store}],
            "verifiers": [{"name": "redhat", "type": "pgp", "keys": [self.keys.public[n].decode() for n in TRUSTED]}],
            "policy": {"type": "required-verifiers", "required": ["redhat"]},
            **extra,
        }


def _make(world: Lookaside, case: Case) -> bytes:
    k, name = world.keys, case.name
    manifest, ref, digest = world.manifests[name], world.ref(name), world.digests[name]
    out = world.dir / f"{name}.sig"
    if name.startswith("skopeo-") or name == "tampered":
        signer = "carol" if name == "skopeo-subkey" else "alice"
        k.gpg.skopeo_sign(manifest, ref, k.fpr[signer], out)
        blob = out.read_bytes()
        if name == "tampered":
            middle = len(blob) // 2
            blob = blob[:middle] + bytes([blob[middle] ^ 0x01]) + blob[middle + 1 :]
        return blob
    if name == "wrong-key":
        k.gpg.skopeo_sign(manifest, ref, k.fpr["bob"], out)
        return out.read_bytes()
    signed_for, signed_digest = ref, digest
    if name == "other-digest":
        signed_digest = world.digests["skopeo-signed"]
    elif name == "other-repository":
        signed_for = world.ref("elsewhere")
    elif name == "other-tag":
        signed_for = world.ref(name, "v2")
    payload = atomic_payload(signed_for, signed_digest)
    signer = {"expired-key": "old", "revoked-key": "dave", "expired-subkey": "frank", "expired-signature": "erin"}
    who = signer.get(name, "alice")
    if name == "gpg-armored":
        return k.sign(who, payload, armor=True)
    if name == "gpg-uncompressed":
        return k.sign(who, payload, armor=False, compress=False)
    if name == "gpg-clearsigned":
        return k.sign(who, payload, mode="clearsign")
    return k.sign(who, payload, armor=False)


@pytest.fixture(scope="module")
def world(registry: RegistryProcess, keyring: Keys, tmp_path_factory: pytest.TempPathFactory) -> Lookaside:
    base = tmp_path_factory.mktemp("lookaside")
    w = Lookaside(registry, keyring, base, base / "sigstore")
    for name in [c.name for c in CASES] + ["shape1", "shape3", "unsigned"]:
        image = make_image(f"lookaside/{name}")
        push_image(registry.url, f"lookaside/{name}", "v1", image)
        w.digests[name] = image["digest"]
        w.manifests[name] = base / f"{name}.manifest.json"
        w.manifests[name].write_bytes(image["manifest"])
    for case in CASES:
        w.place(case.name, _make(w, case))
    return w


@pytest.fixture(scope="module")
def verifying_keyring(keyring: Keys) -> Iterator[GnuPG]:
    """What skopeo trusts: the public keys of TRUSTED (dave's with its revocation), nothing else."""
    ring = GnuPG.with_public_keys([keyring.public[n] for n in TRUSTED])
    yield ring
    ring.close()


async def _verdicts(config: dict[str, Any], path: Path, refs: list[str]) -> dict[str, Any]:
    engine = Engine(load_config(write_config(path, config)))
    try:
        outcomes = await asyncio.gather(*(engine.verify_key(r) for r in refs))
    finally:
        await engine.close()
    return {o.key: o for o in outcomes}


async def test_referee_and_skopeo_agree_on_every_signature(world: Lookaside, verifying_keyring: GnuPG) -> None:
    outcomes = await _verdicts(
        world.config({"path": str(world.sigstore)}), world.dir / "dir.yaml", [world.ref(c.name) for c in CASES]
    )
    table = []
    for case in CASES:
        fingerprint = world.keys.subkey[case.signer] if case.subkey else world.keys.fpr[case.signer]
        signature = world.sigstore / signature_path(f"lookaside/{case.name}", world.digests[case.name], 1)
        skopeo_ok, skopeo_says = verifying_keyring.skopeo_verify(
            world.manifests[case.name], world.ref(case.name), fingerprint, signature
        )
        outcome = outcomes[world.ref(case.name)]
        assert outcome.verdict is not None, (case.name, outcome.error)
        table.append(
            (case.name, case.expected, skopeo_ok, outcome.verdict.allowed, outcome.verdict.decision.reason, skopeo_says)
        )
    disagreements = [row for row in table if not row[1] == row[2] == row[3]]
    print(
        "\n".join(
            f"{row[0]:<18} expected={row[1]!s:<5} skopeo={row[2]!s:<5} referee={row[3]!s:<5} {row[4]}" for row in table
        )
    )
    assert disagreements == []


async def test_directory_and_http_lookaside_give_the_same_verdicts(world: Lookaside) -> None:
    server = StaticLookaside(world.sigstore).start()
    try:
        refs = [world.ref(c.name) for c in CASES] + [world.ref("unsigned")]
        by_dir = await _verdicts(world.config({"path": str(world.sigstore)}), world.dir / "d.yaml", refs)
        by_url = await _verdicts(
            world.config({"url": f"file://{world.sigstore}"}), world.dir / "f.yaml", refs
        )  # registries.d form
        by_http = await _verdicts(world.config({"url": server.url, "plainHttp": True}), world.dir / "h.yaml", refs)
    finally:
        server.stop()
    for ref in refs:
        allowed = {name: found[ref].verdict.allowed for name, found in (("d", by_dir), ("f", by_url), ("h", by_http))}
        assert len(set(allowed.values())) == 1, (ref, allowed)
    unsigned = by_http[world.ref("unsigned")].verdict
    assert unsigned is not None and "redhat: no matching artifact found" in unsigned.decision.reason
    # signature-1 of each signed image was read, then signature-2 answered 404 and ended the listing.
    assert any(path.endswith("/signature-2") for path in server.paths)
    http_artifact = by_http[world.ref("skopeo-signed")].verdict.artifacts[0]
    assert http_artifact.details["location"].startswith(server.url)
    assert http_artifact.artifact_type == mt.LOOKASIDE_SIGNATURE


async def test_several_signatures_are_read_in_order_until_the_first_gap(world: Lookaside) -> None:
    name = "wrong-key"
    good = world.keys.sign("alice", atomic_payload(world.ref(name), world.digests[name]), armor=False)
    world.place(name, good, index=2)
    try:
        outcomes = await _verdicts(world.config({"path": str(world.sigstore)}), world.dir / "m.yaml", [world.ref(name)])
        verdict = outcomes[world.ref(name)].verdict
        assert verdict is not None and verdict.allowed
        assert [a.succeeded for a in sorted(verdict.artifacts, key=lambda a: a.details["location"])] == [False, True]
    finally:
        (world.sigstore / signature_path(f"lookaside/{name}", world.digests[name], 2)).unlink()


async def test_lookaside_server_errors_are_transient_and_redirects_elsewhere_refused(world: Lookaside) -> None:
    server = StaticLookaside(world.sigstore).start()
    try:
        server.fail = 503
        outcomes = await _verdicts(
            world.config({"url": server.url, "plainHttp": True, "maxAttempts": 1}),
            world.dir / "e.yaml",
            [world.ref("skopeo-signed")],
        )
        error = outcomes[world.ref("skopeo-signed")].error
        assert error is not None and error.transient and error.code == "STORE_UNAVAILABLE"
        server.fail = 0
        server.redirect = "https://elsewhere.example/"
        outcomes = await _verdicts(
            world.config({"url": server.url, "plainHttp": True}), world.dir / "r.yaml", [world.ref("skopeo-signed")]
        )
        error = outcomes[world.ref("skopeo-signed")].error
        assert error is not None and error.code == "STORE_ERROR" and not error.transient
        assert "elsewhere.example, which is not in registries.allow" in error.message
    finally:
        server.stop()


# -- the three shapes from the lookaside store, through referee verify and /verify ------------------------------------


@pytest.fixture(scope="module")
def shapes(world: Lookaside, keyring: Keys) -> dict[str, Any]:
    key = ec.generate_private_key(ec.SECP256R1())
    pem = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    url_text = f"{world.ref('shape1').removesuffix(':v1')}@{world.digests['shape1']}\n".encode()
    world.place("shape1", keyring.sign("alice", url_text, mode="clearsign"))
    payload = cosign_payload(world.ref("shape3"), world.digests["shape3"])
    world.place("shape3", sigstore_json_blob(payload, pkix_sign(key, "ECDSA_P256_SHA256", payload)))
    config = world.config({"path": str(world.sigstore)})
    config["attestors"] = [
        {
            "name": "release",
            "pgpKeys": [keyring.public["alice"].decode()],
            "pkixKeys": [{"key": pem.decode(), "signatureAlgorithm": "ECDSA_P256_SHA256"}],
        }
    ]
    config["policy"] = {"type": "required-verifiers", "required": ["release"]}
    return config


def test_referee_verify_allows_the_three_shapes_from_lookaside(
    world: Lookaside, shapes: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_config(world.dir / "shapes.yaml", shapes)
    refs = [world.ref("shape1"), world.ref("skopeo-signed"), world.ref("shape3"), world.ref("unsigned")]
    assert main(["verify", "--config", str(path), "--output", "json", *refs]) == 1
    values = {entry["key"]: entry["value"] for entry in json.loads(capsys.readouterr().out)}
    assert [values[r]["allowed"] for r in refs] == [True, True, True, False]
    release = {r: next(a for a in values[r]["artifacts"] if a["verifier"] == "release") for r in refs[:3]}
    assert release[refs[0]]["details"]["payloadShape"] == "image-url"
    assert release[refs[1]]["details"]["keyFingerprint"] == world.keys.fpr["alice"]
    assert release[refs[2]]["details"]["signatureAlgorithm"] == "ECDSA_P256_SHA256"


async def test_verify_endpoint_allows_the_three_shapes_from_lookaside(
    world: Lookaside, shapes: dict[str, Any], pki: Pki
) -> None:
    path = write_config(world.dir / "shapes-server.yaml", {**shapes, "server": server_section(pki)})
    refs = [world.ref("shape1"), world.ref("skopeo-signed"), world.ref("shape3"), world.ref("revoked-key")]
    async with running_referee(path, pki) as referee:
        items = items_by_key(await referee.verify(refs))
    assert [items[r]["value"]["allowed"] for r in refs] == [True, True, True, False]


class StaticLookaside(ServerThread):
    """A static web server over a lookaside directory (what containers/image documents for ``http(s)``)."""

    thread_name = "lookaside-http"

    def __init__(self, root: Path) -> None:
        super().__init__()
        self.root = root
        self.paths: list[str] = []
        self.fail = 0
        self.redirect: str | None = None

    def build_app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/{tail:.*}", self._get)
        return app

    async def _get(self, request: web.Request) -> web.StreamResponse:
        self.paths.append(request.path)
        if self.fail:
            return web.Response(status=self.fail)
        if self.redirect:
            raise web.HTTPFound(self.redirect + request.path)
        path = (self.root / request.path.lstrip("/")).resolve()
        if not path.is_file() or self.root.resolve() not in path.parents:
            return web.Response(status=404, text="404 page not found")
        return web.Response(body=path.read_bytes(), content_type="application/octet-stream")
