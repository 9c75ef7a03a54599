"""Harness for running Referee for real in tests: PKI on disk, config files, the HTTPS server in-process,
and a Gatekeeper-like client (TLS 1.3, client certificate with serverAuth + clientAuth, trusts only the
Provider caBundle)."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import os
import signal
import ssl
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import trustme
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from provider.executor import Clock, utc_now
from provider.server.app import RefereeServer

PROVIDER_API = "externaldata.gatekeeper.sh/v1beta1"
REFEREE = Path(sys.executable).parent / "referee"
STARTUP_TIMEOUT = 30.0


@dataclass
class Pki:
    """Two CAs as in a cluster: Gatekeeper's (signs its webhook cert, used as client cert) and the one
    that signs Referee's serving certificate (the Provider ``caBundle``)."""

    dir: Path
    gatekeeper_ca: trustme.CA
    serving_ca: trustme.CA
    server_cert: Path
    server_key: Path
    client_ca: Path
    serving_ca_pem: Path
    client: trustme.LeafCert

    @classmethod
    def create(cls, directory: Path) -> Pki:
        directory.mkdir(parents=True, exist_ok=True)
        gatekeeper_ca = trustme.CA(organization_name="gatekeeper")
        serving_ca = trustme.CA(organization_name="referee")
        leaf = serving_ca.issue_cert("127.0.0.1", "localhost", "referee.referee-system.svc")
        server_cert = directory / "tls.crt"
        server_key = directory / "tls.key"
        leaf.private_key_pem.write_to_path(str(server_key))
        server_cert.write_bytes(b"".join(blob.bytes() for blob in leaf.cert_chain_pems))
        client_ca = directory / "gatekeeper-ca.crt"
        gatekeeper_ca.cert_pem.write_to_path(str(client_ca))
        serving_ca_pem = directory / "ca.crt"
        serving_ca.cert_pem.write_to_path(str(serving_ca_pem))
        client = gatekeeper_ca.issue_cert("gatekeeper-webhook-service.gatekeeper-system.svc")
        return cls(directory, gatekeeper_ca, serving_ca, server_cert, server_key, client_ca, serving_ca_pem, client)

    def client_context(self, client: trustme.LeafCert | None = None, *, present_cert: bool = True) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=str(self.serving_ca_pem))
        ctx.minimum_version = ssl.TLSVersion.TLSv1_3
        if present_cert:
            (client or self.client).configure_cert(ctx)
        return ctx

    def tls_section(self, **overrides: Any) -> dict[str, Any]:
        section = {
            "certFile": str(self.server_cert),
            "keyFile": str(self.server_key),
            "clientCaFile": str(self.client_ca),
        }
        section.update(overrides)
        return section


def cert_without_client_auth(ca: trustme.CA, directory: Path) -> tuple[Path, Path]:
    """A leaf signed by ``ca`` whose EKU is serverAuth only (trustme always adds clientAuth)."""
    key = ec.generate_private_key(ec.SECP256R1())
    ca_cert = x509.load_pem_x509_certificate(ca.cert_pem.bytes())
    ca_key = serialization.load_pem_private_key(ca.private_key_pem.bytes(), password=None)
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "server-only")]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("server-only")]), critical=False)
        .sign(ca_key, hashes.SHA256())  # type: ignore[arg-type]
    )
    cert_path, key_path = directory / "server-only.crt", directory / "server-only.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_path, key_path


def write_config(path: Path, config: Mapping[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(dict(config), sort_keys=False))
    return path


def provider_request(keys: list[Any]) -> dict[str, Any]:
    return {"apiVersion": PROVIDER_API, "kind": "ProviderRequest", "request": {"keys": keys}}


class RunningReferee:
    def __init__(self, server: RefereeServer, pki: Pki) -> None:
        self.server = server
        self.pki = pki
        self.url = f"https://127.0.0.1:{server.port}"
        self.health_url = f"http://127.0.0.1:{server.health_port}"

    async def post(
        self, path: str, body: Any, *, ssl_ctx: ssl.SSLContext | None = None, raw: bytes | None = None
    ) -> dict[str, Any]:
        data = raw if raw is not None else json.dumps(body).encode()
        async with (
            aiohttp.ClientSession(trust_env=False) as session,
            session.post(
                self.url + path,
                data=data,
                headers={"Content-Type": "application/json"},
                ssl=ssl_ctx or self.pki.client_context(),
            ) as resp,
        ):
            assert resp.status == 200
            result: dict[str, Any] = await resp.json()
            return result

    async def verify(self, keys: list[Any]) -> dict[str, Any]:
        return await self.post("/verify", provider_request(keys))

    async def mutate(self, keys: list[Any]) -> dict[str, Any]:
        return await self.post("/mutate", provider_request(keys))

    async def health(self, path: str) -> tuple[int, str]:
        async with (
            aiohttp.ClientSession(trust_env=False) as session,
            session.get(self.health_url + path) as resp,
        ):
            return resp.status, await resp.text()


@contextlib.asynccontextmanager
async def running_referee(config_path: Path, pki: Pki, *, clock: Clock = utc_now) -> AsyncIterator[RunningReferee]:
    server = RefereeServer(str(config_path), clock=clock)
    await server.start()
    try:
        yield RunningReferee(server, pki)
    finally:
        await server.stop()


def server_section(pki: Pki, **overrides: Any) -> dict[str, Any]:
    section: dict[str, Any] = {
        "address": "127.0.0.1",
        "port": 0,
        "healthAddress": "127.0.0.1",
        "healthPort": 0,
        "tls": pki.tls_section(),
        "reloadInterval": "100ms",
    }
    section.update(overrides)
    return section


async def read_http_response(reader: asyncio.StreamReader, timeout: float = 10.0) -> tuple[bytes, bytes]:
    """One HTTP/1.1 response with a ``Content-Length`` read from a raw connection: its head and its body."""
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout)
    length = next(
        int(line.split(b":", 1)[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:")
    )
    return head, await asyncio.wait_for(reader.readexactly(length), timeout)


def items_by_key(response: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    return {item["key"]: item for item in response["response"]["items"]}


def write_layout(directory: Path, manifests: list[tuple[bytes, str, str | None]], blobs: list[bytes]) -> Path:
    """An OCI image layout: ``manifests`` are ``(bytes, media type, ref name or None)``; blobs by content."""
    import hashlib

    sha = directory / "blobs" / "sha256"
    sha.mkdir(parents=True, exist_ok=True)
    entries = []
    for data in blobs + [m[0] for m in manifests]:
        (sha / hashlib.sha256(data).hexdigest()).write_bytes(data)
    for data, media_type, name in manifests:
        entry: dict[str, Any] = {
            "mediaType": media_type,
            "digest": "sha256:" + hashlib.sha256(data).hexdigest(),
            "size": len(data),
        }
        if name:
            entry["annotations"] = {"org.opencontainers.image.ref.name": name}
        entries.append(entry)
    (directory / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
    (directory / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": entries}))
    return directory


@dataclass
class RefereeProcess:
    """``referee --log-level LEVEL serve --config FILE`` as a child process; stderr goes to ``log_path``.

    Started with ``HOME`` set to ``home`` and without the CA environment variables; ``port``/``health_port`` come
    from the ``server_started`` log line. Stopped by its PID (SIGTERM, then SIGKILL)."""

    config_path: Path
    log_path: Path
    home: Path
    proc: subprocess.Popen[bytes] | None = None
    port: int = 0
    health_port: int = 0
    log_level: str = "debug"
    _log: Any = field(default=None, repr=False)

    def start(self) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("SSL_CERT_", "REQUESTS_CA", "CURL_CA"))}
        env["HOME"] = str(self.home)
        env.pop("DOCKER_CONFIG", None)
        before = sum(line.get("event") == "server_started" for line in self.lines()) if self.log_path.exists() else 0
        self._log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [str(REFEREE), "--log-level", self.log_level, "serve", "--config", str(self.config_path)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=self._log,
            env=env,
        )
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while time.monotonic() < deadline:
            started = [line for line in self.lines() if line.get("event") == "server_started"]
            if len(started) > before:
                self.port, self.health_port = int(started[-1]["port"]), int(started[-1]["health_port"])
                return
            if self.proc.poll() is not None:
                raise AssertionError(f"referee serve exited with {self.proc.returncode}: {self.raw_log()}")
            time.sleep(0.05)
        raise AssertionError(f"referee serve did not start within {STARTUP_TIMEOUT}s: {self.raw_log()}")

    def raw_log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def lines(self) -> list[dict[str, Any]]:
        """Every complete stderr line, parsed: the log is JSON lines and nothing else."""
        out = []
        for raw in self.raw_log().splitlines():
            if not raw.strip():
                continue
            doc = json.loads(raw)
            assert isinstance(doc, dict), raw
            out.append(doc)
        return out

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    @property
    def health_url(self) -> str:
        return f"http://127.0.0.1:{self.health_port}"

    def terminate(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        if self._log is not None:
            self._log.close()
            self._log = None
