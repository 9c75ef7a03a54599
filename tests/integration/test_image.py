"""The container image, built from the repository's Dockerfile by ``scripts/build-image`` and run for real.

The build is hermetic (wheels downloaded on the host, ``pip --no-index`` inside) on the official Python base when
it can be pulled, else on a Debian bookworm base made with mmdebstrap (cached between runs). A broken Dockerfile
fails the module fixture and so every test here.

The container runs as the Helm chart runs the pod: read-only root filesystem with a writable ``/tmp``, every
capability dropped, configuration and certificates mounted read-only, the HTTPS and health ports published on
127.0.0.1 only. Then Referee judges its own image: exported to an OCI layout, given a signature, a CycloneDX SBOM
of its Python environment and a signature on that SBOM, and verified with ``referee verify --layout``.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import ssl
import subprocess
import sys
import sysconfig
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from cryptography.hazmat.primitives.asymmetric import ec

from provider import __version__
from provider import mediatypes as mt
from tests.integration.conftest import SignedSet, public_pem
from tests.support.container import (
    HOST_LOOPBACK,
    BuiltImage,
    Container,
    build_image,
    generate_sbom,
    listening_addresses,
    podman,
    proc_ids,
    rss_kib,
    running,
    ulimit_flags,
    venv_constraints,
)
from tests.support.content import cosign_payload, cosign_sign_payload, make_artifact_manifest, sha256_digest
from tests.support.referee import Pki, items_by_key, provider_request

UID = 65532
PROVIDER_PORT, HEALTH_PORT = 8443, 8080
SHUTDOWN_GRACE_SECONDS = 10


def report(capsys: pytest.CaptureFixture[str], *lines: str) -> None:
    """Print to the terminal even under output capture, so the figures and verdicts appear in the test output."""
    with capsys.disabled():
        print()
        for line in lines:
            print(f"    {line}")


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BuiltImage]:
    work = tmp_path_factory.mktemp("image-build")
    tag = f"localhost/referee-test:{uuid.uuid4().hex[:12]}"
    built = build_image(tag, work / "build.log", constraints=venv_constraints(work / "constraints.txt"))
    try:
        yield built
    finally:
        podman("rmi", "--force", tag, check=False)


# -- build facts ---------------------------------------------------------------------------------------------


def test_image_is_built_hermetically_from_the_dockerfile(image: BuiltImage, capsys: pytest.CaptureFixture[str]) -> None:
    log = image.log.read_text()
    # the build ran without network and pip read only the wheelhouse (when the step ran, not from the layer cache)
    assert "(wheelhouse, no network)" in log
    build = log.split("(wheelhouse, no network)", 1)[1]
    assert "Looking in indexes" not in build
    assert "Looking in links: /wheelhouse" in build or "Using cache" in build.split("RUN ", 1)[1].split("\n")[1]
    info = image.inspect()
    config = info["Config"]
    assert config["User"] == f"{UID}:{UID}"
    assert config["Entrypoint"] == ["referee"]
    assert config["Cmd"] == ["serve", "--config", "/etc/referee/referee.yaml"]
    assert set(config["ExposedPorts"]) == {f"{PROVIDER_PORT}/tcp", f"{HEALTH_PORT}/tcp"}
    version = podman("run", "--rm", "--network", "none", *ulimit_flags(), image.tag, "--version").stdout.strip()
    assert version == f"referee {__version__}"
    layers = image.layers()
    sizes = " + ".join(f"{size / 1e6:.0f} MB" for size, _ in layers)
    report(
        capsys,
        f"image {image.tag}: {image.size_bytes() / 1e6:.0f} MB in {len(layers)} layers ({sizes}), base {image.base}",
        f"scripts/build-image took {image.seconds:.1f} s",
    )


def test_build_is_reproducible(image: BuiltImage, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The same sources, wheels and base give the same layers, byte for byte, when every step runs again.

    (The image IDs differ when the first build reused cached steps: buildah's history then keeps the cached
    steps' creation times and names the intermediate images. Two builds without cache give the same ID.)"""
    tag = f"{image.tag}-again"
    again = build_image(tag, tmp_path / "build.log", constraints=venv_constraints(tmp_path / "c.txt"), no_cache=True)
    try:
        first, second = image.inspect(), again.inspect()
        assert second["RootFS"]["Layers"] == first["RootFS"]["Layers"]
        assert second["Created"] == first["Created"]
        assert second["Config"] == first["Config"]
    finally:
        podman("rmi", "--force", tag, check=False)
    layers = ", ".join(d[7:19] for d in first["RootFS"]["Layers"])
    report(capsys, f"rebuilt without cache in {again.seconds:.1f} s: the same layers ({layers})")


# -- the container as the chart runs it ----------------------------------------------------------------------


def _config_dir(directory: Path, pki: Pki, signed_set: SignedSet) -> Path:
    """``/etc/referee`` for the container: configuration, serving certificate and key, Gatekeeper's CA, cosign key."""
    directory.mkdir(mode=0o755)
    for source, name in (
        (pki.server_cert, "tls.crt"),
        (pki.server_key, "tls.key"),
        (pki.client_ca, "gatekeeper-ca.crt"),
        (signed_set.key_file, "cosign.pub"),
    ):
        shutil.copyfile(source, directory / name)
    registry = f"{HOST_LOOPBACK}:{signed_set.registry.host.rsplit(':', 1)[1]}"
    config = {
        "registries": {"allow": [f"{HOST_LOOPBACK}:*"], "hosts": [{"host": registry, "plainHttp": True}]},
        "verifiers": [{"name": "cosign-ci", "type": "cosign", "keys": ["/etc/referee/cosign.pub"]}],
        "policy": {"type": "required-verifiers", "required": ["cosign-ci"]},
        "server": {
            "tls": {
                "certFile": "/etc/referee/tls.crt",
                "keyFile": "/etc/referee/tls.key",
                "clientCaFile": "/etc/referee/gatekeeper-ca.crt",
                "clientAuth": "require",
            },
            "shutdownGrace": f"{SHUTDOWN_GRACE_SECONDS}s",
        },
    }
    (directory / "referee.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    for path in directory.iterdir():
        path.chmod(0o644)  # the chart mounts Secrets 0440 with fsGroup; here the files are world-readable
    return directory


async def _post_verify(url: str, keys: list[str], ctx: ssl.SSLContext) -> dict[str, Any]:
    async with (
        aiohttp.ClientSession(trust_env=False) as session,
        session.post(f"{url}/verify", json=provider_request(keys), ssl=ctx) as resp,
    ):
        assert resp.status == 200
        body: dict[str, Any] = await resp.json()
        return body


async def _without_client_certificate(url: str, ctx: ssl.SSLContext) -> None:
    async with aiohttp.ClientSession(trust_env=False) as session:
        with pytest.raises(aiohttp.ClientError):
            async with session.post(f"{url}/verify", json=provider_request(["x"]), ssl=ctx) as resp:
                await resp.read()


def test_container_serves_verify_over_mtls_read_only_as_non_root(
    image: BuiltImage,
    pki: Pki,
    signed_set: SignedSet,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    etc = _config_dir(tmp_path / "etc-referee", pki, signed_set)
    container = Container(image.tag, mounts=[(etc, "/etc/referee")], ports=[PROVIDER_PORT, HEALTH_PORT])
    with running(container):
        provider_port, health_port = container.host_port(PROVIDER_PORT), container.host_port(HEALTH_PORT)
        ready_seconds = container.wait_ready(f"http://127.0.0.1:{health_port}/readyz")

        # published on the host's loopback only
        for port in (provider_port, health_port):
            assert listening_addresses(port) == {"127.0.0.1"}, port
        bindings = container.inspect()["NetworkSettings"]["Ports"]
        assert {b["HostIp"] for port in bindings.values() for b in port} == {"127.0.0.1"}

        # /verify over mutual TLS, against the registry on the host
        url = f"https://127.0.0.1:{provider_port}"
        registry = f"{HOST_LOOPBACK}:{signed_set.registry.host.rsplit(':', 1)[1]}"
        signed, unsigned = f"{registry}/{signed_set.repo}:signed", f"{registry}/{signed_set.repo}:unsigned"
        answer = asyncio.run(_post_verify(url, [signed, unsigned], pki.client_context()))
        items = items_by_key(answer)
        assert items[signed]["value"]["allowed"] is True, items[signed]
        assert items[signed]["value"]["digest"] == signed_set.digest("signed")
        assert items[unsigned]["value"]["allowed"] is False, items[unsigned]
        asyncio.run(_without_client_certificate(url, pki.client_context(present_cert=False)))

        # the process runs as 65532:65532, and the root filesystem and the mounts are read-only
        pid = container.pid()
        assert proc_ids(pid) == {"Uid": [UID] * 4, "Gid": [UID] * 4}
        rss = rss_kib(pid)
        for target in ("/opt/referee/written-by-test", "/etc/referee/written-by-test"):
            write = container.exec("python", "-c", f"open({target!r}, 'w')", user="0")
            assert write.returncode != 0 and "Read-only file system" in write.stderr, (target, write.stderr)
        assert container.exec("python", "-c", "open('/tmp/scratch', 'w').write('x')").returncode == 0

        # SIGTERM: drains and exits 0 within server.shutdownGrace
        container.signal("TERM")
        signalled = time.monotonic()
        assert container.wait_exit(timeout=SHUTDOWN_GRACE_SECONDS) == 0
        exit_seconds = time.monotonic() - signalled
        logs = container.logs()

    # every line the container wrote is a JSON log event: the operational log on stderr, the decision log (one line
    # per key, docs/operations.md) on stdout
    events = []
    for line in logs:
        entry = json.loads(line.text)
        assert isinstance(entry, dict) and {"event", "level", "timestamp"} <= entry.keys(), line
        events.append((line.stream, entry["event"], entry.get("logger")))
    names = [event for stream, event, _ in events if stream == "stderr"]
    for expected in ("server_started", "request_answered", "shutdown_requested", "server_stopped"):
        assert expected in names, names
    assert names.index("shutdown_requested") < names.index("server_stopped") == len(names) - 1
    decisions = [event for stream, event, logger in events if stream == "stdout"]
    assert decisions and {logger for stream, _, logger in events if stream == "stdout"} == {"referee.decision"}
    report(
        capsys,
        f"container ready {ready_seconds:.2f} s after `podman run`; RSS {rss / 1024:.1f} MiB after 2 keys; "
        f"exit 0 {exit_seconds:.2f} s after SIGTERM (shutdownGrace {SHUTDOWN_GRACE_SECONDS} s); "
        f"{len(names)} JSON log lines on stderr, {len(decisions)} decision-log lines on stdout",
    )


# -- Referee judges its own image ------------------------------------------------------------------------------


@dataclass
class Layout:
    """An OCI image layout that artifacts are attached to by writing blobs and index.json entries."""

    root: Path

    @property
    def index_path(self) -> Path:
        return self.root / "index.json"

    def index(self) -> dict[str, Any]:
        doc: dict[str, Any] = json.loads(self.index_path.read_text())
        return doc

    def add(self, manifest: bytes, blobs: dict[str, bytes]) -> dict[str, Any]:
        for data in [*blobs.values(), manifest]:
            (self.root / "blobs" / "sha256" / sha256_digest(data).split(":", 1)[1]).write_bytes(data)
        descriptor = {"mediaType": mt.OCI_MANIFEST, "digest": sha256_digest(manifest), "size": len(manifest)}
        index = self.index()
        index["manifests"].append(descriptor)
        self.index_path.write_text(json.dumps(index))
        return descriptor

    def drop(self, digest: str) -> None:
        index = self.index()
        index["manifests"] = [m for m in index["manifests"] if m["digest"] != digest]
        self.index_path.write_text(json.dumps(index))


def cosign_sign(layout: Layout, subject: dict[str, Any], key: ec.EllipticCurvePrivateKey, name: str) -> str:
    """cosign's OCI 1.1 signature referrer (``cosign sign --registry-referrers-mode=oci-1-1``) of ``subject``."""
    payload = cosign_payload(name, subject["digest"])
    annotations = {mt.ANNOTATION_COSIGN_SIGNATURE: cosign_sign_payload(key, payload)}
    manifest, blobs = make_artifact_manifest(
        subject, mt.COSIGN_OCI11_SIGNATURE, [(mt.COSIGN_SIMPLESIGNING, payload, annotations)]
    )
    return str(layout.add(manifest, blobs)["digest"])


def attach_sbom(layout: Layout, subject: dict[str, Any], sbom: bytes) -> dict[str, Any]:
    manifest, blobs = make_artifact_manifest(subject, mt.CYCLONEDX_JSON, [(mt.CYCLONEDX_JSON, sbom, None)])
    return layout.add(manifest, blobs)


def policy_config(path: Path, key_file: Path) -> Path:
    """Signed by the release key, and a CycloneDX SBOM without GPL-3.0 that the release key signed too."""
    config = {
        "verifiers": [
            {"name": "release-key", "type": "cosign", "keys": [str(key_file)]},
            {"name": "sbom", "type": "sbom", "disallowedLicenses": ["GPL-3.0"]},
        ],
        "limits": {"maxNestedDepth": 1, "nestedArtifactTypes": [mt.CYCLONEDX_JSON]},
        "policy": {
            "type": "rules",
            "rules": [
                {"name": "signed", "verifiers": ["release-key"]},
                {"name": "sbom-signed", "verifiers": ["sbom"], "nested": {"verifiers": ["release-key"]}},
            ],
        },
    }
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def referee_verify(config: Path, layout: Layout, ref: str, output: str = "text") -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "provider.cli", "verify", "--config", str(config), "--layout", str(layout.root)]
    return subprocess.run(
        [*command, "--output", output, ref],
        capture_output=True,
        text=True,
        timeout=120,
    )


def _verdict(config: Path, layout: Layout, ref: str) -> dict[str, Any]:
    result = referee_verify(config, layout, ref, "json")
    assert result.returncode in (0, 1), result.stderr
    [entry] = json.loads(result.stdout)
    assert "value" in entry, entry
    value: dict[str, Any] = entry["value"]
    return value


def test_referee_judges_its_own_image(image: BuiltImage, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    layout = Layout(tmp_path / "layout")
    podman("save", "--format", "oci-dir", "--output", str(layout.root), image.tag)
    [entry] = layout.index()["manifests"]
    assert entry["annotations"][mt.ANNOTATION_REF_NAME] == image.tag
    subject = {k: entry[k] for k in ("mediaType", "digest", "size")}

    sbom = generate_sbom(image.tag, Path(sysconfig.get_paths()["purelib"]))
    doc = json.loads(sbom)
    components = {c["name"]: c for c in doc["components"]}
    assert doc["bomFormat"] == "CycloneDX" and doc["specVersion"] == "1.6"
    assert components["referee"]["version"] == __version__
    assert {"aiohttp", "cryptography", "sigstore"} <= components.keys()
    assert "cyclonedx-bom" not in components  # the tool ran beside the environment, not in it

    release_key, other_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    key_file = tmp_path / "release.pub"
    key_file.write_bytes(public_pem(release_key))
    name = image.tag.rsplit(":", 1)[0]
    image_signature = cosign_sign(layout, subject, release_key, name)
    sbom_descriptor = attach_sbom(layout, subject, sbom)
    sbom_signature = cosign_sign(layout, sbom_descriptor, release_key, name)
    config = policy_config(tmp_path / "referee.yaml", key_file)

    result = referee_verify(config, layout, image.tag)
    report(capsys, f"$ referee verify --layout <OCI layout of {image.tag}> {image.tag}", *result.stdout.splitlines())
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.startswith(f"ALLOWED {image.tag}  ({entry['digest']})")
    verdict = _verdict(config, layout, f"{name}@{entry['digest']}")
    assert verdict["allowed"] is True
    assert set(verdict["policy"]["satisfied"]) == {"signed", "sbom-signed"}, verdict["policy"]

    # each clause of the policy decides: the SBOM's signature, the image's signature, the licence deny-list
    layout.drop(sbom_signature)
    assert set(_verdict(config, layout, image.tag)["policy"]["unsatisfied"]) == {"sbom-signed"}
    cosign_sign(layout, sbom_descriptor, other_key, name)
    assert set(_verdict(config, layout, image.tag)["policy"]["unsatisfied"]) == {"sbom-signed"}
    sbom_signature = cosign_sign(layout, sbom_descriptor, release_key, name)
    assert _verdict(config, layout, image.tag)["allowed"]

    layout.drop(image_signature)
    denied = _verdict(config, layout, image.tag)
    assert not denied["allowed"] and set(denied["policy"]["unsatisfied"]) == {"signed"}, denied["reason"]
    cosign_sign(layout, subject, release_key, name)

    doc["components"].append(
        {"type": "library", "name": "copyleft", "version": "1.0", "licenses": [{"license": {"id": "GPL-3.0-only"}}]}
    )
    layout.drop(sbom_descriptor["digest"])
    layout.drop(sbom_signature)
    gpl = attach_sbom(layout, subject, json.dumps(doc).encode())
    cosign_sign(layout, gpl, release_key, name)
    denied = _verdict(config, layout, image.tag)
    assert not denied["allowed"] and set(denied["policy"]["unsatisfied"]) == {"sbom-signed"}, denied["reason"]
    [sbom_result] = [a for a in denied["artifacts"] if a["verifier"] == "sbom"]
    assert "GPL-3.0-only" in sbom_result["reason"], sbom_result
