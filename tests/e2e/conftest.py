"""One real admission chain per session: etcd → kube-apiserver → Gatekeeper v3.21 (webhook, mutation, audit) →
Referee (``referee serve`` as the chart lays it out) → a real registry, driven with the real ``kubectl``.

Set-up follows docs/deploy.md: Gatekeeper's webhooks with gatekeeper/gatekeeper-values.yaml, the chart rendered with
the guide's values (templates and mutators on, ``mutateKeepTag``), the sample constraints with the changes the docs
ask for (``requireDigest: true`` because the Assigns are installed; break-glass turned on together with its
restriction policy and report constraint). A Pod with an unsigned image is created before the Assigns and the
constraints exist ("legacy"), as on a cluster that adopts Referee.

Short caches so cache cases finish quickly: Gatekeeper's response cache TTL and Referee's ``cache.verdictTtl``.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest
import yaml
from cryptography.hazmat.primitives.asymmetric import ec

from tests.integration.conftest import public_pem
from tests.support.admission import RefereeInstall, base_values, install_referee, sample
from tests.support.content import cosign_sign_legacy, make_image, push_image
from tests.support.gatekeeper_chain import GatekeeperChain, KubectlResult, wait_until
from tests.support.registry import RegistryProcess

GATEKEEPER_CACHE_TTL = 20.0  # --external-data-provider-response-cache-ttl
REFEREE_VERDICT_TTL = 10.0  # cache.verdictTtl
AUDIT_INTERVAL = 5
REPO = "e2e/app"
SHOP = "shop"  # enforced
EXEMPT_NS = "referee-system"  # in the sample constraint's excludedNamespaces
LEGACY_NS = "legacy"
BREAK_GLASS = "referee.dev/break-glass"
RESPONDER = ("--as=alice", "--as-group=system:masters", "--as-group=referee-break-glass")
OUTSIDER = ("--as=mallory", "--as-group=system:masters")

HELD = '{"metadata": {"finalizers": ["e2e.referee.dev/hold"]}}'

_names = itertools.count()


@dataclass(frozen=True)
class Image:
    host: str
    repo: str
    tag: str
    digest: str

    @property
    def ref(self) -> str:
        return f"{self.host}/{self.repo}:{self.tag}"

    @property
    def pinned(self) -> str:
        """What the Assigns write (Referee's ``mutateKeepTag: true``): the tag the user wrote and the digest."""
        return f"{self.ref}@{self.digest}"


@dataclass
class Cluster:
    chain: GatekeeperChain
    referee: RefereeInstall
    registry: RegistryProcess
    outage_registry: RegistryProcess
    key: ec.EllipticCurvePrivateKey
    other_key: ec.EllipticCurvePrivateKey
    legacy_pod: str = "legacy-app"
    legacy_image: Image | None = None
    legacy_signed: Image | None = None
    images: dict[str, Image] = field(default_factory=dict)

    def push(
        self,
        label: str,
        *,
        signed: bool = True,
        key: ec.EllipticCurvePrivateKey | None = None,
        registry: RegistryProcess | None = None,
    ) -> Image:
        """A new image (never seen by any cache) at tag ``<label>-<n>``, signed with ``key`` (default: trusted)."""
        reg = registry or self.registry
        tag = f"{label}-{next(_names)}"
        pushed = push_image(reg.url, REPO, tag, make_image(f"{REPO}/{tag}/{reg.port}"))
        image = Image(reg.host, REPO, tag, str(pushed))
        if signed:
            self.sign(image, key)
        return image

    def sign(self, image: Image, key: ec.EllipticCurvePrivateKey | None = None) -> None:
        reg = self.registry if image.host == self.registry.host else self.outage_registry
        cosign_sign_legacy(reg.url, image.repo, image.digest, key or self.key)

    def kubectl(self, *args: str, input: str | None = None) -> KubectlResult:
        return self.chain.k(*args, input=input)

    def run(self, image: str, *extra: str, namespace: str = SHOP, name: str | None = None) -> KubectlResult:
        """``kubectl run`` of a Pod with one container."""
        pod = name or f"p{next(_names)}"
        return self.kubectl("run", pod, f"--image={image}", "-n", namespace, "--restart=Never", *extra)

    def create(self, documents: Sequence[Mapping[str, Any]], *extra: str) -> KubectlResult:
        return self.kubectl("create", "-f", "-", *extra, input=yaml.safe_dump_all([dict(d) for d in documents]))

    def pod_images(self, name: str, namespace: str = SHOP) -> dict[str, str]:
        pod = self.chain.k.get_json("pod", name, "-n", namespace)
        spec = pod["spec"]
        return {
            c["name"]: c["image"]
            for field_name in ("containers", "initContainers", "ephemeralContainers")
            for c in spec.get(field_name, [])
        }

    def constraint(self, kind: str, name: str) -> dict[str, Any]:
        doc: dict[str, Any] = self.chain.k.get_json(f"{kind.lower()}.constraints.gatekeeper.sh", name)
        return doc


def denied(result: KubectlResult) -> str:
    """The error kubectl printed for a refused request (fails the test if the request was accepted)."""
    assert not result.ok, f"expected a denial, got: {result}"
    return result.stderr


def admitted(result: KubectlResult) -> KubectlResult:
    assert result.ok, f"expected admission, got: {result}"
    return result


def _enforcing_constraint() -> dict[str, Any]:
    """constraint.yaml with the two changes docs/deploy.md and docs/cookbook.md ask for in this set-up."""
    [doc] = sample("refereeverifiedimages", "constraint.yaml")
    doc["spec"]["parameters"]["requireDigest"] = True
    doc["spec"]["parameters"]["breakGlass"] = {"enabled": True}
    return doc


def _wait_for_break_glass_policy(cluster: Cluster) -> None:
    probe_pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "vap-probe", "namespace": SHOP, "annotations": {BREAK_GLASS: "probe"}},
        "spec": {"containers": [{"name": "c", "image": "registry.k8s.io/pause:3.10"}]},
    }

    def probe() -> bool:
        result = cluster.create([probe_pod], "--dry-run=server", *OUTSIDER)
        return not result.ok and "referee-break-glass-restriction" in result.stderr

    wait_until("the break-glass ValidatingAdmissionPolicy to take effect", probe, 60, 0.3)


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    workdir = tmp_path_factory.mktemp("e2e")
    chain = GatekeeperChain(
        workdir / "chain",
        manager_args=[f"--external-data-provider-response-cache-ttl={int(GATEKEEPER_CACHE_TTL)}s"],
        audit_interval=AUDIT_INTERVAL,
    )
    (workdir / "chain").mkdir()
    started: list[Any] = []
    try:
        started.append(chain.start())
        registry = RegistryProcess().start()
        started.append(registry)
        outage = RegistryProcess().start()
        started.append(outage)
        key, other = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP384R1())
        values = base_values(
            registries=[registry.host, outage.host],
            cosign_public_pem=public_pem(key).decode(),
            config={"cache": {"verdictTtl": f"{int(REFEREE_VERDICT_TTL)}s"}},
        )
        install = install_referee(chain, workdir, values, with_mutators=False)
        started.append(install)
        c = Cluster(chain, install, registry, outage, key, other)
        for ns in (SHOP, EXEMPT_NS, LEGACY_NS):
            chain.k.ok("create", "namespace", ns)
        # Pods that predate Referee: created by tag, before any Assign or constraint existed.
        c.legacy_image = c.push("legacy", signed=False)
        admitted(c.run(c.legacy_image.ref, namespace=LEGACY_NS, name=c.legacy_pod))
        c.legacy_signed = c.push("legacy-signed")
        admitted(c.run(c.legacy_signed.ref, namespace=LEGACY_NS, name="legacy-signed"))
        admitted(c.run(c.legacy_image.ref, "--overrides", HELD, namespace=LEGACY_NS, name="legacy-held"))
        install.apply_mutators()
        install.apply_constraints(
            [_enforcing_constraint(), *sample("refereeverifiedimages", "constraint-break-glass-report.yaml")]
        )
        install.apply(sample("refereeverifiedimages", "break-glass-restriction.yaml"))
        _wait_for_break_glass_policy(c)
        yield c
    except BaseException:
        print(chain.logs())
        raise
    finally:
        for thing in reversed(started):
            thing.stop()


@pytest.fixture
def running_referee(cluster: Cluster) -> Iterator[RefereeInstall]:
    """Referee, restarted after the test if the test stopped or paused it."""
    yield cluster.referee
    process = cluster.referee.process
    if process.proc is not None and process.proc.poll() is None:
        cluster.referee.resume()
    else:
        cluster.referee.start()
