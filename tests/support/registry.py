"""Real registry processes and a distribution token server for the test suite.

``RegistryProcess`` runs Debian's ``docker-registry`` (distribution 2.8.2) as a child process on
``127.0.0.1`` with an ephemeral port and in-memory storage, in one of three modes:

* plain HTTP, anonymous;
* TLS (trustme certificate for ``127.0.0.1``/``localhost``) with htpasswd basic auth (bcrypt entries);
* token auth (``auth.token``) against a :class:`TokenServer`.

``TokenServer`` implements ``distribution:docs/content/spec/auth/token.md``: ``GET /token?service=&scope=``
with optional Basic credentials, answering ES256 JWTs signed by a key whose certificate (issued by a trustme
CA) is carried in the ``x5c`` header. The registry's ``rootcertbundle`` is that CA certificate, so the
registry verifies the chain leaf -> CA before trusting a token.

Both run without touching ``HOME``/``DOCKER_CONFIG`` or the CA environment variables.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime as dt
import fnmatch
import http.client
import json
import os
import re
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Coroutine, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Self, TypeVar

import jwt
import trustme
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

__all__ = [
    "DEFAULT_REGISTRY_BINARY",
    "LoopThread",
    "RegistryNotInstalledError",
    "RegistryProcess",
    "RegistryStartError",
    "ServerThread",
    "TokenServer",
    "find_htpasswd_binary",
    "find_registry_binary",
]

DEFAULT_REGISTRY_BINARY = "/usr/bin/docker-registry"
INSTALL_HINT = "install it with: apt-get install -y --no-install-recommends docker-registry apache2-utils skopeo umoci"
_LISTENING_RE = re.compile(r"listening on 127\.0\.0\.1:(\d+)")

_T = TypeVar("_T")


class RegistryNotInstalledError(RuntimeError):
    """``docker-registry`` or ``htpasswd`` is not installed."""


class RegistryStartError(RuntimeError):
    """The registry process did not come up; the message carries its log."""


def find_registry_binary() -> str:
    """Path of the ``docker-registry`` binary, or :class:`RegistryNotInstalledError`."""
    for candidate in (DEFAULT_REGISTRY_BINARY, shutil.which("docker-registry")):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    raise RegistryNotInstalledError(f"docker-registry (distribution 2.8.2) not found; {INSTALL_HINT}")


def find_htpasswd_binary() -> str:
    """Path of ``htpasswd`` (apache2-utils), or :class:`RegistryNotInstalledError`."""
    found = shutil.which("htpasswd") or ("/usr/bin/htpasswd" if os.access("/usr/bin/htpasswd", os.X_OK) else None)
    if not found:
        raise RegistryNotInstalledError(f"htpasswd (apache2-utils) not found; {INSTALL_HINT}")
    return found


# --------------------------------------------------------------------------------------------------------
# asyncio servers in their own thread
# --------------------------------------------------------------------------------------------------------


class LoopThread:
    """An asyncio event loop running forever in a daemon thread.

    Lets synchronous fixtures and async tests (on pytest-asyncio's own loop) share one server.
    """

    def __init__(self, name: str) -> None:
        self.loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()
        self._ready.wait(10)

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.call_soon(self._ready.set)
        try:
            self.loop.run_forever()
        finally:
            pending = [t for t in asyncio.all_tasks(self.loop) if not t.done()]
            for task in pending:
                task.cancel()
            if pending:
                self.loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            self.loop.run_until_complete(self.loop.shutdown_asyncgens())
            self.loop.close()

    def run(self, coro: Coroutine[Any, Any, _T], timeout: float = 30.0) -> _T:
        """Run ``coro`` on the loop thread and wait for its result."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def stop(self) -> None:
        if self._thread.is_alive():
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(10)


class ServerThread:
    """An aiohttp application served on ``127.0.0.1:<ephemeral>`` from a :class:`LoopThread`.

    Subclasses implement :meth:`build_app` (called on the loop thread) and may override
    :meth:`on_startup` / :meth:`on_cleanup` (coroutines, also on the loop thread).
    """

    thread_name = "aiohttp-server"

    def __init__(self) -> None:
        self._loop_thread: LoopThread | None = None
        self._runner: web.AppRunner | None = None
        self.port: int = 0

    # hooks -------------------------------------------------------------------------------------------
    def build_app(self) -> web.Application:  # pragma: no cover - abstract
        raise NotImplementedError

    async def on_startup(self) -> None:
        return None

    async def on_cleanup(self) -> None:
        return None

    # lifecycle ---------------------------------------------------------------------------------------
    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.host}"

    @property
    def running(self) -> bool:
        return self._runner is not None

    def start(self) -> Self:
        if self._runner is not None:
            return self
        self._loop_thread = LoopThread(self.thread_name)
        try:
            self._loop_thread.run(self._start())
        except BaseException:
            self._loop_thread.stop()
            self._loop_thread = None
            raise
        return self

    async def _start(self) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        runner = web.AppRunner(self.build_app(), access_log=None, handle_signals=False, shutdown_timeout=1.0)
        await runner.setup()
        site = web.SockSite(runner, sock)
        await site.start()
        self._runner = runner
        await self.on_startup()

    async def _stop(self) -> None:
        try:
            await self.on_cleanup()
        finally:
            if self._runner is not None:
                await self._runner.cleanup()
                self._runner = None

    def stop(self) -> None:
        if self._loop_thread is None:
            return
        try:
            with contextlib.suppress(Exception):
                self._loop_thread.run(self._stop(), timeout=15)
        finally:
            self._loop_thread.stop()
            self._loop_thread = None

    def call(self, coro: Coroutine[Any, Any, _T], timeout: float = 30.0) -> _T:
        """Run a coroutine on the server's loop (for helpers that need it)."""
        if self._loop_thread is None:
            coro.close()
            raise RuntimeError("server not started")
        return self._loop_thread.run(coro, timeout)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


# --------------------------------------------------------------------------------------------------------
# Token server
# --------------------------------------------------------------------------------------------------------


def _rfc3339(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts, tz=dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _json_error(status: int, code: str, message: str, headers: Mapping[str, str] | None = None) -> web.Response:
    body = json.dumps({"errors": [{"code": code, "message": message, "detail": None}]})
    return web.Response(status=status, body=body.encode(), content_type="application/json", headers=headers)


class TokenServer(ServerThread):
    """Distribution token server (``docs/content/spec/auth/token.md``) for ``auth.token`` registries.

    * ``GET /token?service=<svc>&scope=repository:<name>:<actions>[&scope=…]``; ``Authorization: Basic``
      optional. Unknown user or wrong password -> 401; no credentials -> anonymous.
    * Grants the intersection of requested and allowed actions, never an error for missing rights
      (a pull-only or empty grant is normal).
    * Allowed actions: ``permissions[user]`` = ``{fnmatch pattern on repository name: [actions]}``; a user
      without an entry gets ``{"*": ["pull", "push", "delete"]}``; anonymous (key ``""``) gets
      ``{"*": ["pull"]}`` when ``anonymous_pull`` else nothing.
    * Tokens: ES256 JWT, header ``x5c`` = [signing leaf certificate, base64 DER], claims ``iss``, ``aud``
      (= service), ``sub``, ``exp``, ``nbf``, ``iat``, ``jti``, ``access``.
    * Response ``{"token", "access_token", "expires_in", "issued_at"}``; ``expires_in`` is a plain attribute.

    ``requests`` records ``(scope, user)`` per token request (scopes joined by a space, ``""`` for none,
    user ``None`` when anonymous) so tests can assert token caching. ``root_cert_bundle_path`` is the CA
    certificate file to give the registry as ``rootcertbundle``.
    """

    thread_name = "token-server"

    def __init__(
        self,
        users: Mapping[str, str] | None = None,
        *,
        permissions: Mapping[str, Mapping[str, Sequence[str]]] | None = None,
        anonymous_pull: bool = False,
        issuer: str = "referee-test-token-issuer",
        service: str = "referee-test-registry",
        expires_in: int = 300,
        ca: trustme.CA | None = None,
    ) -> None:
        super().__init__()
        self.users: dict[str, str] = dict(users or {})
        self.permissions: dict[str, dict[str, list[str]]] = {
            user: {pattern: list(actions) for pattern, actions in perms.items()}
            for user, perms in (permissions or {}).items()
        }
        self.anonymous_pull = anonymous_pull
        self.issuer = issuer
        self.service = service
        self.expires_in = expires_in
        self.requests: list[tuple[str, str | None]] = []
        self.rejected: list[tuple[str, str | None]] = []
        self.ca = ca or trustme.CA()
        leaf = self.ca.issue_cert("token-signer.referee.test")
        key = serialization.load_pem_private_key(leaf.private_key_pem.bytes(), password=None)
        if not isinstance(key, ec.EllipticCurvePrivateKey) or key.curve.name != "secp256r1":
            raise ValueError("TokenServer needs a trustme CA issuing ECDSA P-256 keys (ES256)")
        self._signing_key = key
        leaf_cert = x509.load_pem_x509_certificate(leaf.cert_chain_pems[0].bytes())
        self.x5c: list[str] = [
            base64.b64encode(c.public_bytes(serialization.Encoding.DER)).decode()
            for c in [leaf_cert] + [x509.load_pem_x509_certificate(p.bytes()) for p in leaf.cert_chain_pems[1:]]
        ]
        self._tmpdir = tempfile.TemporaryDirectory(prefix="referee-token-")
        self.root_cert_bundle_path = str(Path(self._tmpdir.name) / "token-signing-ca.pem")
        self.ca.cert_pem.write_to_path(self.root_cert_bundle_path)

    @property
    def realm(self) -> str:
        return f"{self.url}/token"

    def stop(self) -> None:
        """Stop the server and remove the CA bundle file (a stopped TokenServer is not restartable)."""
        super().stop()
        self._tmpdir.cleanup()

    # token minting ----------------------------------------------------------------------------------
    def issue_token(
        self,
        subject: str | None,
        access: Sequence[Mapping[str, Any]],
        *,
        expires_in: int | None = None,
        audience: str | None = None,
        issuer: str | None = None,
        not_before: float | None = None,
        extra_claims: Mapping[str, Any] | None = None,
    ) -> str:
        """Mint a token directly (no HTTP). Overrides allow building invalid tokens for negative tests."""
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": issuer if issuer is not None else self.issuer,
            "sub": subject or "",
            "aud": audience if audience is not None else self.service,
            "exp": now + (expires_in if expires_in is not None else self.expires_in),
            "nbf": int(not_before) if not_before is not None else now,
            "iat": now,
            "jti": uuid.uuid4().hex,
            "access": [dict(a) for a in access],
        }
        if extra_claims:
            claims.update(extra_claims)
        return jwt.encode(claims, self._signing_key, algorithm="ES256", headers={"x5c": self.x5c})

    def allowed_actions(self, user: str | None, repository: str) -> set[str]:
        if user is None:
            perms = self.permissions.get("", {"*": ["pull"]} if self.anonymous_pull else {})
        else:
            perms = self.permissions.get(user, {"*": ["pull", "push", "delete"]})
        allowed: set[str] = set()
        for pattern, actions in perms.items():
            if fnmatch.fnmatchcase(repository, pattern):
                allowed.update(actions)
        return allowed

    def grant(self, user: str | None, scopes: Sequence[str]) -> list[dict[str, Any]]:
        """The ``access`` claim for ``scopes``: requested ∩ allowed, per repository."""
        merged: dict[str, list[str]] = {}
        for scope in scopes:
            parts = scope.split(":")
            if len(parts) < 3 or parts[0] != "repository":
                continue
            name = ":".join(parts[1:-1])
            requested = [a for a in parts[-1].split(",") if a]
            allowed = self.allowed_actions(user, name)
            granted = merged.setdefault(name, [])
            for action in requested:
                if (action in allowed or "*" in allowed) and action not in granted:
                    granted.append(action)
        return [{"type": "repository", "name": name, "actions": actions} for name, actions in merged.items()]

    # HTTP ------------------------------------------------------------------------------------------
    def build_app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/token", self._handle_token)
        return app

    async def _handle_token(self, request: web.Request) -> web.Response:
        scopes: list[str] = []
        for raw in request.query.getall("scope", []):
            scopes.extend(s for s in raw.split(" ") if s)
        scope_text = " ".join(scopes)
        user: str | None = None
        authz = request.headers.get("Authorization")
        if authz:
            scheme, _, value = authz.partition(" ")
            if scheme.lower() != "basic":
                self.rejected.append((scope_text, None))
                return _json_error(401, "UNAUTHORIZED", "only Basic credentials are accepted")
            try:
                name, _, password = base64.b64decode(value.strip(), validate=True).decode().partition(":")
            except (ValueError, UnicodeDecodeError):
                self.rejected.append((scope_text, None))
                return _json_error(401, "UNAUTHORIZED", "malformed Basic credentials")
            if name not in self.users or not secrets.compare_digest(self.users[name], password):
                self.rejected.append((scope_text, name))
                return _json_error(
                    401, "UNAUTHORIZED", "invalid username or password", {"WWW-Authenticate": 'Basic realm="token"'}
                )
            user = name
        self.requests.append((scope_text, user))
        service = request.query.get("service", self.service)
        if service != self.service:
            return _json_error(400, "DENIED", f"unknown service {service!r}")
        expires_in = int(self.expires_in)
        now = time.time()
        token = self.issue_token(user, self.grant(user, scopes), expires_in=expires_in)
        body = {"token": token, "access_token": token, "expires_in": expires_in, "issued_at": _rfc3339(now)}
        return web.json_response(body)


# --------------------------------------------------------------------------------------------------------
# Registry process
# --------------------------------------------------------------------------------------------------------


class RegistryProcess:
    """``docker-registry serve <config.yml>`` on ``127.0.0.1:<ephemeral>``, in-memory storage, delete enabled.

    * ``RegistryProcess()`` — plain HTTP, anonymous.
    * ``RegistryProcess(tls=True, htpasswd_users={"alice": "s3cret"})`` — TLS with a certificate for
      ``127.0.0.1``/``localhost`` issued by ``ca`` (a ``trustme.CA``, created when omitted; exposed as ``.ca``
      and ``.ca_pem_path``) and htpasswd basic auth (``htpasswd -Bbn``, bcrypt).
    * ``RegistryProcess(token_server=ts)`` — ``auth.token`` with ``realm = ts.realm``, ``service``/``issuer``
      from the token server and ``rootcertbundle = ts.root_cert_bundle_path``. Start ``ts`` first.

    The registry log goes to ``.log_path``; the port is read from its ``listening on 127.0.0.1:N`` line, then
    ``GET /v2/`` is polled until it answers (200 or 401). ``stop()`` sends SIGTERM to the PID, waits, and
    kills as a fallback. The child gets a minimal environment (no ``REGISTRY_*`` overrides, ``HOME`` = a
    temporary directory, no ``DOCKER_CONFIG``).
    """

    def __init__(
        self,
        *,
        tls: bool = False,
        ca: trustme.CA | None = None,
        htpasswd_users: Mapping[str, str] | None = None,
        token_server: TokenServer | None = None,
        binary: str | None = None,
        log_level: str = "info",
        startup_timeout: float = 15.0,
    ) -> None:
        if htpasswd_users and token_server is not None:
            raise ValueError("choose htpasswd or token auth, not both")
        self.tls = tls
        self.ca: trustme.CA | None = ca if ca is not None else (trustme.CA() if tls else None)
        self.htpasswd_users: dict[str, str] = dict(htpasswd_users or {})
        self.token_server = token_server
        self.binary = binary or find_registry_binary()
        self.log_level = log_level
        self.startup_timeout = startup_timeout
        self.port = 0
        self.username: str | None = None
        self.password: str | None = None
        if self.htpasswd_users:
            self.username, self.password = next(iter(self.htpasswd_users.items()))
        elif token_server is not None and token_server.users:
            self.username, self.password = next(iter(token_server.users.items()))
        self.ca_pem_path: str | None = None
        self._tmpdir: tempfile.TemporaryDirectory[str] | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._log_file: Any = None
        self.config_path = ""
        self.log_path = ""

    # addresses ---------------------------------------------------------------------------------------
    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def scheme(self) -> str:
        return "https" if self.tls else "http"

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.host}"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    def ssl_context(self) -> ssl.SSLContext | None:
        """A client context trusting only this registry's CA file (``None`` for plain HTTP)."""
        if not self.tls or self.ca_pem_path is None:
            return None
        return ssl.create_default_context(cafile=self.ca_pem_path)

    def log_text(self) -> str:
        try:
            return Path(self.log_path).read_text(errors="replace")
        except OSError:
            return ""

    # lifecycle --------------------------------------------------------------------------------------
    def _write_config(self, tmp: Path) -> dict[str, Any]:
        config: dict[str, Any] = {
            "version": "0.1",
            "log": {"level": self.log_level, "formatter": "text", "accesslog": {"disabled": True}},
            "storage": {
                "inmemory": {},
                "delete": {"enabled": True},
                "maintenance": {"uploadpurging": {"enabled": False}},
            },
            "http": {"addr": "127.0.0.1:0", "secret": secrets.token_hex(16)},
        }
        if self.tls:
            assert self.ca is not None
            cert = self.ca.issue_cert("127.0.0.1", "localhost")
            cert_path, key_path = tmp / "server.crt", tmp / "server.key"
            cert_path.write_bytes(b"".join(p.bytes() for p in cert.cert_chain_pems))
            key_path.write_bytes(cert.private_key_pem.bytes())
            key_path.chmod(0o600)
            self.ca_pem_path = str(tmp / "ca.pem")
            self.ca.cert_pem.write_to_path(self.ca_pem_path)
            config["http"]["tls"] = {"certificate": str(cert_path), "key": str(key_path)}
        if self.htpasswd_users:
            htpasswd = find_htpasswd_binary()
            lines = []
            for user, password in self.htpasswd_users.items():
                out = subprocess.run(
                    [htpasswd, "-Bbn", "-C", "5", user, password],
                    check=True,
                    capture_output=True,
                    env={"PATH": "/usr/bin:/bin"},
                )
                lines.append(out.stdout.decode().strip())
            htpasswd_path = tmp / "htpasswd"
            htpasswd_path.write_text("\n".join(lines) + "\n")
            config["auth"] = {"htpasswd": {"realm": "referee-test-registry", "path": str(htpasswd_path)}}
        elif self.token_server is not None:
            ts = self.token_server
            if not ts.running:
                raise RegistryStartError("start the TokenServer before the registry that trusts it")
            config["auth"] = {
                "token": {
                    "realm": ts.realm,
                    "service": ts.service,
                    "issuer": ts.issuer,
                    "rootcertbundle": ts.root_cert_bundle_path,
                }
            }
        return config

    def start(self) -> Self:
        if self._proc is not None:
            return self
        self._tmpdir = tempfile.TemporaryDirectory(prefix="referee-registry-")
        tmp = Path(self._tmpdir.name)
        try:
            config = self._write_config(tmp)
            # JSON is valid YAML: the registry parses it with go-yaml.
            self.config_path = str(tmp / "config.yml")
            Path(self.config_path).write_text(json.dumps(config, indent=2))
            self.log_path = str(tmp / "registry.log")
            home = tmp / "home"
            home.mkdir()
            env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "HOME": str(home), "TMPDIR": str(tmp)}
            self._log_file = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
            self._proc = subprocess.Popen(
                [self.binary, "serve", self.config_path],
                stdin=subprocess.DEVNULL,
                stdout=self._log_file,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=str(tmp),
                start_new_session=True,
            )
            self.port = self._wait_for_port()
            self._wait_for_http()
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_for_port(self) -> int:
        deadline = time.monotonic() + self.startup_timeout
        assert self._proc is not None
        while time.monotonic() < deadline:
            match = _LISTENING_RE.search(self.log_text())
            if match:
                return int(match.group(1))
            if self._proc.poll() is not None:
                raise RegistryStartError(
                    f"docker-registry exited with {self._proc.returncode}; log:\n{self.log_text()}"
                )
            time.sleep(0.02)
        raise RegistryStartError(f"docker-registry did not report its port; log:\n{self.log_text()}")

    def _wait_for_http(self) -> None:
        deadline = time.monotonic() + self.startup_timeout
        last_error: Exception | None = None
        while time.monotonic() < deadline:
            conn: http.client.HTTPConnection
            if self.tls:
                conn = http.client.HTTPSConnection("127.0.0.1", self.port, timeout=2, context=self.ssl_context())
            else:
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
            try:
                conn.request("GET", "/v2/")
                status = conn.getresponse().status
                if status in (200, 401):
                    return
                last_error = RuntimeError(f"GET /v2/ -> {status}")
            except OSError as exc:
                last_error = exc
            finally:
                conn.close()
            time.sleep(0.02)
        raise RegistryStartError(f"registry not answering GET /v2/ ({last_error}); log:\n{self.log_text()}")

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(proc.pid, signal.SIGKILL)
                proc.wait(timeout=5)
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None
        if self._tmpdir is not None:
            self._tmpdir.cleanup()
            self._tmpdir = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        mode = "token" if self.token_server else ("htpasswd" if self.htpasswd_users else "anonymous")
        return f"<RegistryProcess {self.url} tls={self.tls} auth={mode} pid={self.pid}>"
