"""The chart as a platform team runs it (#20 items 1 and 3): GitOps-safe TLS and the usual extension points.

Rendered by the real Helm engine (helm-python-sdk renders offline, exactly like ``helm template``: ``lookup``
answers nothing), built-in kinds validated strictly against Kubernetes 1.30, and the GitOps route of
docs/deploy.md run as written: its openssl commands make the serving Secret, its values render twice to the same
bytes, and that Secret serves under the Providers' ``caBundle`` in the pod's filesystem (``referee config check``).
"""

from __future__ import annotations

import base64
import datetime as dt
import re
import subprocess
import sys
import textwrap
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import helm_python as helm
import kubernetes_validate  # type: ignore[import-untyped]
import pytest
import trustme
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.verification import DNSName, PolicyBuilder, Store

from provider.config import load_config
from provider.server.tls import build_server_context
from tests.support.chart import CHART, Rendered, Sources, materialize, merged, rebase, render_chart

REPO = Path(__file__).resolve().parents[2]
GUIDE = REPO / "docs" / "deploy.md"
REFEREE = Path(sys.executable).parent / "referee"
NS = "gatekeeper-system"
RELEASE = "referee"
CLIENT_CA_SECRET = "gatekeeper-webhook-server-cert"
BASE: dict[str, Any] = {"gatekeeper": {"clientCA": {"secretName": CLIENT_CA_SECRET}}}
CRD_KINDS = frozenset({"Provider", "Certificate", "Issuer"})
OFFLINE_REFUSAL = "rendered without cluster access"


@pytest.fixture(scope="module")
def chart() -> Iterator[helm.Chart]:
    with helm.Chart.load(CHART) as loaded:
        yield loaded


def render(chart: helm.Chart, *layers: Mapping[str, Any], offline_ca: bool = True) -> Rendered:
    return render_chart(chart, merged(BASE, *layers), release=RELEASE, namespace=NS, offline_ca=offline_ca)


def validate_kinds(rendered: Rendered) -> None:
    for doc in rendered.docs:
        try:
            kubernetes_validate.validate(doc, "1.30.0", strict=True)
        except kubernetes_validate.SchemaNotFoundError:
            assert doc["kind"] in CRD_KINDS, doc["kind"]


def public_pem() -> str:
    key = ec.generate_private_key(ec.SECP256R1()).public_key()
    return key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()


def _block(language: str, first_line: str) -> str:
    text = GUIDE.read_text()
    for block in re.findall(rf"```{language}\n(.*?)```", text, re.S):
        body = textwrap.dedent(block)
        if body.lstrip().startswith(first_line):
            return body
    raise AssertionError(f"docs/deploy.md has no {language} block starting with {first_line!r}")


def _guide_values() -> dict[str, Any]:
    """Step 2's referee-values.yaml with a real key and digest (as test_helm's guide test fills them)."""
    values: dict[str, Any] = yaml.safe_load(_block("yaml", "# referee-values.yaml"))
    values["image"]["digest"] = "sha256:" + "0" * 64
    values["trust"][0]["files"]["cosign.pub"] = public_pem()
    return values


@pytest.fixture(scope="module")
def serving_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    """The documented openssl commands, run as written (the kubectl line is the cluster's part)."""
    workdir = tmp_path_factory.mktemp("gitops-cert")
    script = _block("sh", "# gitops-serving-certificate.sh")
    lines = script.replace("\\\n", " ").splitlines()
    commands = [line for line in lines if line.strip() and not line.startswith(("#", "kubectl"))]
    assert len(commands) == 4 and any(line.startswith("kubectl") for line in lines)
    for command in commands:
        done = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", command], cwd=workdir, capture_output=True, text=True, timeout=120
        )
        assert done.returncode == 0, f"{command}\n{done.stderr}"
    return {name: (workdir / name).read_bytes() for name in ("ca.crt", "tls.crt", "tls.key")}


def _gitops_values(ca_pem: bytes) -> dict[str, Any]:
    gitops: dict[str, Any] = yaml.safe_load(_block("yaml", "# values-gitops.yaml"))
    assert "-----BEGIN CERTIFICATE-----" in gitops["tls"]["existingSecret"]["caBundle"]
    gitops["tls"]["existingSecret"]["caBundle"] = ca_pem.decode()
    return merged(_guide_values(), gitops)


# -- item 1: GitOps-safe TLS -------------------------------------------------------------------------------


def test_documented_gitops_route_renders_identically_twice_offline(
    chart: helm.Chart, serving_files: dict[str, bytes], tmp_path: Path
) -> None:
    values = _gitops_values(serving_files["ca.crt"])
    first = chart.render(dict(values), name=RELEASE, namespace=NS)
    second = chart.render(dict(values), name=RELEASE, namespace=NS)
    assert first == second
    rendered = render_chart(chart, values, release=RELEASE, namespace=NS, offline_ca=False)
    validate_kinds(rendered)
    assert "Secret" not in rendered.kinds and "Certificate" not in rendered.kinds
    tls_volume = next(v for v in rendered.pod()["volumes"] if v["name"] == "tls")
    assert tls_volume["secret"]["secretName"] == "referee-serving"
    ca = x509.load_pem_x509_certificate(serving_files["ca.crt"])
    for provider in rendered.all("Provider"):
        assert x509.load_pem_x509_certificate(base64.b64decode(provider["spec"]["caBundle"])) == ca

    # The Secret the commands made, mounted as the kubelet would: the configuration loads and serves with it ...
    gatekeeper_ca = trustme.CA(key_type=trustme.KeyType.RSA)
    cluster: Sources = {
        ("Secret", "referee-serving"): {"tls.crt": serving_files["tls.crt"], "tls.key": serving_files["tls.key"]},
        ("Secret", CLIENT_CA_SECRET): {"ca.crt": gatekeeper_ca.cert_pem.bytes()},
        ("Secret", "ghcr-pull"): {"password": b"read-token"},
    }
    mounts = materialize(rendered, tmp_path, cluster)
    checked = tmp_path / "referee.yaml"
    checked.write_text(yaml.safe_dump(rebase(rendered.config(), mounts)))
    result = subprocess.run(
        [str(REFEREE), "config", "check", str(checked)], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    build_server_context(load_config(checked).server.tls)
    # ... and its certificate verifies for the Providers' host under their caBundle, as Gatekeeper's client checks
    leaf = x509.load_pem_x509_certificate(serving_files["tls.crt"])
    host = rendered.one("Provider", "referee-verify")["spec"]["url"].split("/")[2].split(":")[0]
    verifier = PolicyBuilder().store(Store([ca])).time(dt.datetime.now(dt.UTC)).build_server_verifier(DNSName(host))
    verifier.verify(leaf, [])
    verifier_svc = PolicyBuilder().store(Store([ca])).build_server_verifier(DNSName(f"{host}.svc"))
    verifier_svc.verify(leaf, [])


def test_a_ca_is_never_minted_offline_unless_asked(chart: helm.Chart) -> None:
    guide = _guide_values()
    for mode in ({}, {"tls": {"mode": "certManager"}}):
        with pytest.raises(helm.HelmRenderError) as exc:
            render_chart(chart, merged(guide, mode), release=RELEASE, namespace=NS, offline_ca=False)
        message = str(exc.value)
        assert OFFLINE_REFUSAL in message and "tls.mode=existingSecret" in message
        assert "tls.allowOfflineCA=true" in message and 'docs/deploy.md, "GitOps"' in message
    # asked for: a one-off render mints a CA, a new one each time
    once = render_chart(chart, merged(guide, {"tls": {"allowOfflineCA": True}}), release=RELEASE, namespace=NS)
    again = render_chart(chart, merged(guide, {"tls": {"allowOfflineCA": True}}), release=RELEASE, namespace=NS)
    assert once.one("Provider", "referee-verify") != again.one("Provider", "referee-verify")
    # cert-manager with an issuer of your own needs no CA from the chart: renders offline, the same twice
    corp = trustme.CA(key_type=trustme.KeyType.RSA).cert_pem.bytes().decode()
    own = {"tls": {"mode": "certManager", "certManager": {"issuerRef": {"name": "corp"}, "caBundle": corp}}}
    values = merged(guide, own)
    assert chart.render(dict(values), name=RELEASE, namespace=NS) == chart.render(
        dict(values), name=RELEASE, namespace=NS
    )


def test_existing_secret_mode_needs_its_name_and_ca(chart: helm.Chart) -> None:
    with pytest.raises(helm.HelmRenderError, match=r"needs tls\.existingSecret\.name"):
        render(chart, {"tls": {"mode": "existingSecret"}})
    with pytest.raises(helm.HelmRenderError, match=r"needs tls\.existingSecret\.caBundle"):
        render(chart, {"tls": {"mode": "existingSecret", "existingSecret": {"name": "s"}}})
    with pytest.raises(helm.HelmRenderError, match="is not a PEM certificate"):
        render(chart, {"tls": {"mode": "existingSecret", "existingSecret": {"name": "s", "caBundle": "nope"}}})
    with pytest.raises(helm.HelmValuesError, match="/tls/existingSecret"):
        chart.validate_schema(merged(BASE, {"tls": {"existingSecret": {"secretName": "s"}}}))
    ca = trustme.CA(key_type=trustme.KeyType.RSA).cert_pem.bytes().decode()
    rendered = render(chart, {"tls": {"mode": "existingSecret", "existingSecret": {"name": "s", "caBundle": ca}}})
    assert "serving certificate from your Secret s" in rendered.notes
    report = helm.lint(
        CHART,
        merged(BASE, {"tls": {"mode": "existingSecret", "existingSecret": {"name": "s", "caBundle": ca}}}),
        strict=True,
        namespace=NS,
        kube_version="v1.30.0",
    )
    assert report["errors"] == [] and [m for m in report["messages"] if m["severity"] >= 2] == []


# -- item 3: extension points ------------------------------------------------------------------------------


def test_extra_env_volumes_and_mounts(chart: helm.Chart) -> None:
    env = [
        {"name": "HTTPS_PROXY", "value": "http://proxy.corp.example:3128"},
        {"name": "NO_PROXY", "value": ".svc,.cluster.local,10.0.0.0/8"},
        {"name": "PROXY_PASSWORD", "valueFrom": {"secretKeyRef": {"name": "proxy", "key": "password"}}},
    ]
    volumes = [{"name": "corp-ca", "configMap": {"name": "corp-ca-bundle"}}, {"name": "scratch", "emptyDir": {}}]
    mounts = [{"name": "corp-ca", "mountPath": "/etc/corp-ca", "readOnly": True}]
    rendered = render(chart, {"extraEnv": env, "extraVolumes": volumes, "extraVolumeMounts": mounts})
    validate_kinds(rendered)
    container = rendered.container()
    assert container["env"] == [{"name": "HOME", "value": "/tmp"}, *env]
    assert container["volumeMounts"][-1] == mounts[0]
    assert rendered.pod()["volumes"][-2:] == volumes
    for bad, where in (
        ({"extraEnv": [{"value": "x"}]}, "/extraEnv/0"),
        ({"extraEnv": [{"name": "A", "value": "x", "valueFrom": {"fieldRef": {"fieldPath": "a"}}}]}, "/extraEnv/0"),
        ({"extraEnv": [{"name": "A", "valueFrom": {"secretRef": {"name": "x"}}}]}, "secretRef"),
        ({"extraVolumes": [{"configMap": {"name": "x"}}]}, "/extraVolumes/0"),
        ({"extraVolumeMounts": [{"name": "x", "mountPath": "relative"}]}, "/extraVolumeMounts/0/mountPath"),
        ({"extraVolumeMounts": [{"name": "x", "mountPath": "/x", "readonly": True}]}, "'readonly' not allowed"),
    ):
        with pytest.raises(helm.HelmValuesError, match=re.escape(where)):
            chart.validate_schema(merged(BASE, bad))


def test_security_context_overrides_merge_over_the_hardened_defaults(chart: helm.Chart) -> None:
    default = render(chart)
    hardened_pod = default.pod()["securityContext"]
    hardened = default.container()["securityContext"]
    assert hardened["readOnlyRootFilesystem"] is True and hardened["capabilities"] == {"drop": ["ALL"]}
    profile = {"type": "Localhost", "localhostProfile": "profiles/referee.json"}
    rendered = render(
        chart,
        {
            "podSecurityContext": {"seccompProfile": profile, "supplementalGroups": [4000], "fsGroup": 4000},
            "containerSecurityContext": {"seLinuxOptions": {"level": "s0:c123,c456"}, "seccompProfile": profile},
        },
    )
    validate_kinds(rendered)
    pod_sc, sc = rendered.pod()["securityContext"], rendered.container()["securityContext"]
    assert pod_sc == {**hardened_pod, "seccompProfile": profile, "supplementalGroups": [4000], "fsGroup": 4000}
    assert sc == {**hardened, "seLinuxOptions": {"level": "s0:c123,c456"}, "seccompProfile": profile}
    assert "WARNING: the security context overrides weaken" not in rendered.notes
    weakened = render(
        chart, {"containerSecurityContext": {"readOnlyRootFilesystem": False, "capabilities": {"add": ["NET_RAW"]}}}
    )
    validate_kinds(weakened)
    assert weakened.container()["securityContext"]["capabilities"] == {"drop": ["ALL"], "add": ["NET_RAW"]}
    assert (
        "WARNING: the security context overrides weaken the chart's hardened defaults: readOnlyRootFilesystem=false, "
        "capabilities.add." in weakened.notes
    )
    for bad, where in (
        ({"podSecurityContext": {"privileged": True}}, "'privileged' not allowed"),
        ({"containerSecurityContext": {"runAsUser": 0}}, "/containerSecurityContext/runAsUser"),
        ({"containerSecurityContext": {"seccompProfile": {"type": "Sometimes"}}}, "/seccompProfile/type"),
    ):
        with pytest.raises(helm.HelmValuesError, match=re.escape(where)):
            chart.validate_schema(merged(BASE, bad))


def test_common_labels_reach_every_object_but_no_selector(chart: helm.Chart) -> None:
    labels = {"team": "platform", "cost-center": "cc-42"}
    rendered = render(
        chart,
        {"commonLabels": labels, "serviceMonitor": {"enabled": True}, "autoscaling": {"enabled": True}},
        {"prometheusRule": {"enabled": True}, "grafanaDashboard": {"enabled": True}},
    )
    for doc in rendered.docs:
        assert labels.items() <= doc["metadata"]["labels"].items(), (doc["kind"], doc["metadata"]["name"])
    deployment = rendered.one("Deployment")
    assert labels.items() <= deployment["spec"]["template"]["metadata"]["labels"].items()
    default = render(chart)
    assert deployment["spec"]["selector"] == default.one("Deployment")["spec"]["selector"]
    assert rendered.one("Service")["spec"]["selector"] == default.one("Service")["spec"]["selector"]
    with pytest.raises(helm.HelmValuesError, match="/commonLabels/team"):
        chart.validate_schema(merged(BASE, {"commonLabels": {"team": 1}}))


@pytest.mark.parametrize(
    ("image", "expected"),
    [
        ({"registry": "mirror.example.com:5000"}, "mirror.example.com:5000/referee-dev/referee:0.1.0"),
        ({"registry": "mirror.example.com/ghcr"}, "mirror.example.com/ghcr/referee-dev/referee:0.1.0"),
        ({"registry": "localhost:5000", "repository": "referee"}, "localhost:5000/referee:0.1.0"),
        (
            {"registry": "mirror.example.com", "repository": "localhost/referee", "tag": "dev"},
            "mirror.example.com/referee:dev",
        ),
        (
            {"registry": "m.example", "digest": "sha256:" + "ab" * 32},
            "m.example/referee-dev/referee@sha256:" + "ab" * 32,
        ),
    ],
)
def test_image_registry_override(chart: helm.Chart, image: dict[str, str], expected: str) -> None:
    assert render(chart, {"image": image}).container()["image"] == expected


def test_service_type_and_priority_class(chart: helm.Chart) -> None:
    default = render(chart)
    assert default.one("Service")["spec"]["type"] == "ClusterIP"
    assert "priorityClassName" not in default.pod()
    rendered = render(chart, {"service": {"type": "LoadBalancer"}, "priorityClassName": "system-cluster-critical"})
    validate_kinds(rendered)
    assert rendered.one("Service")["spec"]["type"] == "LoadBalancer"
    assert rendered.pod()["priorityClassName"] == "system-cluster-critical"
    with pytest.raises(helm.HelmValuesError, match="/service/type"):
        chart.validate_schema(merged(BASE, {"service": {"type": "ExternalName"}}))
