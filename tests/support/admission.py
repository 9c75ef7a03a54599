"""Referee installed into a :class:`GatekeeperChain` the way docs/deploy.md installs it, then driven with ``kubectl``.

What is applied is what users get: ``helm template`` of ``helm/referee`` (Providers with the generated CA,
ConstraintTemplates and Assigns from ``gatekeeper/``, and the chart's other objects, which the API server stores
but nothing runs) and the sample constraints in ``gatekeeper/samples/``. The only adaptations are the ones
docs/deploy.md describes for Referee running outside the cluster ("Referee outside the cluster"): the serving
certificate names ``localhost`` (``tls.extraDnsNames``), the Providers' ``spec.url`` points at it, and Referee
listens on 127.0.0.1 ports. Referee itself is ``referee serve`` on the container filesystem the chart lays out
(``tests/support/chart.py``), with Gatekeeper's CA from the chain's ``gatekeeper-webhook-server-cert`` stand-in.
"""

from __future__ import annotations

import base64
import copy
import signal
import urllib.parse
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import helm_python as helm
import yaml

from tests.support.chart import CHART, Rendered, materialize, merged, rebase, render_chart
from tests.support.gatekeeper_chain import (
    GATEKEEPER_NAMESPACE,
    ChainError,
    GatekeeperChain,
    KubectlResult,
    free_port,
    wait_until,
)
from tests.support.referee import RefereeProcess

__all__ = [
    "CLIENT_CA_SECRET",
    "RELEASE",
    "SAMPLES",
    "RefereeInstall",
    "install_referee",
    "sample",
]

REPO = Path(__file__).resolve().parents[2]
SAMPLES = REPO / "gatekeeper" / "samples"
RELEASE = "referee"
CLIENT_CA_SECRET = "gatekeeper-webhook-server-cert"
# docs/deploy.md, "Referee outside the cluster": the name the Providers use to reach Referee.
OUTSIDE_HOST = "localhost"
READY_TIMEOUT = 120.0


def sample(*parts: str) -> list[dict[str, Any]]:
    """The documents of ``gatekeeper/samples/<parts>``."""
    return [d for d in yaml.safe_load_all((SAMPLES.joinpath(*parts)).read_text()) if d]


def base_values(
    *,
    registries: Sequence[str],
    cosign_public_pem: str,
    config: Mapping[str, Any] | None = None,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The values of docs/deploy.md (simplest setup: Referee in Gatekeeper's namespace, Gatekeeper's CA Secret,
    templates and mutators from the chart, one cosign verifier) for plain-HTTP registries on 127.0.0.1, plus the
    out-of-cluster host name."""
    values: dict[str, Any] = {
        "gatekeeper": {
            "clientCA": {"secretName": CLIENT_CA_SECRET},
            "validatingWebhookTimeoutSeconds": 3,
            "mutatingWebhookTimeoutSeconds": 2,
            "templates": {"enabled": True},
            "mutation": {"enabled": True},
        },
        "tls": {"extraDnsNames": [OUTSIDE_HOST]},
        "trust": [{"name": "cosign-keys", "files": {"cosign.pub": cosign_public_pem}}],
        "config": {
            "registries": {
                "allow": list(registries),
                "hosts": [{"host": host, "plainHttp": True} for host in registries],
            },
            "verifiers": [
                {"name": "ci-cosign", "type": "cosign", "keys": ["/etc/referee/trust/cosign-keys/cosign.pub"]}
            ],
            "policy": {"type": "required-verifiers", "required": ["ci-cosign"]},
            "server": {"mutateKeepTag": True},
        },
    }
    if config:
        values["config"] = merged(values["config"], config)
    return merged(values, extra or {})


@dataclass
class RefereeInstall:
    """Referee as the chart deploys it, running as a process beside the chain."""

    chain: GatekeeperChain
    rendered: Rendered
    process: RefereeProcess
    config_path: Path
    port: int
    health_port: int
    applied: list[dict[str, Any]] = field(default_factory=list)
    mutators: list[dict[str, Any]] = field(default_factory=list)

    # -- the process ---------------------------------------------------------------------------------------
    def stop(self) -> None:
        self.process.stop()

    def start(self) -> None:
        """Start (again) on the same ports, so the Providers keep pointing at it."""
        self.process.start()
        assert (self.process.port, self.process.health_port) == (self.port, self.health_port)

    def pause(self) -> None:
        """SIGSTOP: the socket still accepts connections but nothing answers (slower than any timeout)."""
        assert self.process.proc is not None
        self.process.proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self.process.proc is not None
        self.process.proc.send_signal(signal.SIGCONT)

    def answered(self, event: str = "key_answered") -> list[dict[str, Any]]:
        """Referee's per-key log lines (``key_answered`` for /verify, ``key_pinned``/``key_not_pinned`` for /mutate)."""
        return [line for line in self.process.lines() if line.get("event") == event]

    # -- the cluster ---------------------------------------------------------------------------------------
    def kubectl(self, *args: str, input: str | None = None) -> KubectlResult:
        return self.chain.k(*args, input=input)

    def apply(self, documents: Iterable[Mapping[str, Any]]) -> None:
        docs = [copy.deepcopy(dict(d)) for d in documents]
        self.chain.k.apply(docs)
        self.applied.extend(docs)

    def apply_mutators(self) -> None:
        """Apply the chart's Assigns and wait until the mutation webhook uses each one."""
        self.apply(self.mutators)
        for doc in self.mutators:
            wait_for_mutator(self.chain, doc["kind"], doc["metadata"]["name"])

    def apply_constraints(self, documents: Iterable[Mapping[str, Any]]) -> None:
        """Apply constraints and wait until the webhook enforces each one."""
        docs = list(documents)
        self.apply(docs)
        for doc in docs:
            wait_for_constraint(self.chain, doc["kind"], doc["metadata"]["name"])


def _provider_outside(doc: dict[str, Any], port: int) -> dict[str, Any]:
    url = urllib.parse.urlsplit(doc["spec"]["url"])
    doc["spec"]["url"] = urllib.parse.urlunsplit(url._replace(netloc=f"{OUTSIDE_HOST}:{port}"))
    return doc


def _by_pod(chain: GatekeeperChain, resource: str, name: str) -> list[dict[str, Any]]:
    result = chain.k("get", resource, name, "-o", "json")
    if not result.ok:
        return []
    status = result.json().get("status") or {}
    by_pod: list[dict[str, Any]] = status.get("byPod") or []
    return by_pod


def wait_for_provider(chain: GatekeeperChain, name: str) -> None:
    def probe() -> bool:
        chain.check_alive()
        pods = _by_pod(chain, "providers.externaldata.gatekeeper.sh", name)
        return bool(pods) and all(p.get("active") for p in pods)

    wait_until(f"Provider {name} active", probe, READY_TIMEOUT, 0.2)


def wait_for_template(chain: GatekeeperChain, name: str, kind: str) -> None:
    def probe() -> bool:
        chain.check_alive()
        pods = _by_pod(chain, "constrainttemplates.templates.gatekeeper.sh", name)
        if not pods or not all(p.get("errors") is None for p in pods):
            if pods and any(p.get("errors") for p in pods):
                raise ChainError(f"ConstraintTemplate {name}: {pods}")
            return False
        crd = chain.k("get", "crd", f"{kind.lower()}.constraints.gatekeeper.sh", "-o", "json")
        if not crd.ok:
            return False
        conditions = crd.json().get("status", {}).get("conditions", [])
        return any(c["type"] == "Established" and c["status"] == "True" for c in conditions)

    wait_until(f"ConstraintTemplate {name}", probe, READY_TIMEOUT, 0.2)


def wait_for_constraint(chain: GatekeeperChain, kind: str, name: str) -> None:
    def probe() -> bool:
        chain.check_alive()
        pods = _by_pod(chain, f"{kind.lower()}.constraints.gatekeeper.sh", name)
        return bool(pods) and all(p.get("enforced") for p in pods)

    wait_until(f"constraint {kind}/{name} enforced", probe, READY_TIMEOUT, 0.2)


def wait_for_mutator(chain: GatekeeperChain, kind: str, name: str) -> None:
    def probe() -> bool:
        chain.check_alive()
        pods = _by_pod(chain, f"{kind.lower()}.mutations.gatekeeper.sh", name)
        return bool(pods) and all(p.get("enforced") for p in pods)

    wait_until(f"mutator {kind}/{name} enforced", probe, READY_TIMEOUT, 0.2)


def install_referee(
    chain: GatekeeperChain, workdir: Path, values: Mapping[str, Any], *, with_mutators: bool = True
) -> RefereeInstall:
    """Render the chart with ``values``, run Referee on the rendered container filesystem, apply the rendered
    objects (Providers pointed at Referee), and wait until Gatekeeper uses every Provider, template and mutator.
    ``with_mutators=False`` holds the Assigns back until :meth:`RefereeInstall.apply_mutators`."""
    assert chain.pki is not None
    with helm.Chart.load(CHART) as chart:
        rendered = render_chart(chart, values, release=RELEASE, namespace=GATEKEEPER_NAMESPACE)
    certs = chain.pki.files
    gatekeeper_secret = {
        "ca.crt": certs["gatekeeper-certs/ca.crt"].read_bytes(),
        "ca.key": chain.pki.gatekeeper_ca.private_key_pem.bytes(),
        "tls.crt": certs["gatekeeper-certs/tls.crt"].read_bytes(),
        "tls.key": certs["gatekeeper-certs/tls.key"].read_bytes(),
    }
    root = workdir / "pod"
    mounts = materialize(rendered, root, {("Secret", CLIENT_CA_SECRET): gatekeeper_secret})
    config = rebase(rendered.config(), mounts)
    port, health_port = free_port(), free_port()
    config["server"].update(address="127.0.0.1", port=port, healthAddress="127.0.0.1", healthPort=health_port)
    config_path = workdir / "referee.yaml"
    config_path.write_text(yaml.safe_dump(config, sort_keys=False))
    home = workdir / "referee-home"
    home.mkdir()
    process = RefereeProcess(config_path, workdir / "referee.log", home, log_level="info")
    install = RefereeInstall(chain, rendered, process, config_path, port, health_port)
    install.start()

    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": CLIENT_CA_SECRET, "namespace": GATEKEEPER_NAMESPACE},
        "type": "kubernetes.io/tls",
        "data": {k: base64.b64encode(v).decode() for k, v in gatekeeper_secret.items()},
    }
    docs = [copy.deepcopy(d) for d in rendered.docs]
    for doc in docs:
        if doc["kind"] == "Provider":
            _provider_outside(doc, port)
    # CRDs of the constraint kinds exist only once Gatekeeper has compiled the templates: those go first.
    install.apply([secret, *(d for d in docs if d["kind"] != "Assign")])
    for doc in rendered.all("Provider"):
        wait_for_provider(chain, doc["metadata"]["name"])
    for doc in rendered.all("ConstraintTemplate"):
        wait_for_template(chain, doc["metadata"]["name"], doc["spec"]["crd"]["spec"]["names"]["kind"])
    install.mutators = [d for d in docs if d["kind"] == "Assign"]
    if with_mutators:
        install.apply_mutators()
    return install
