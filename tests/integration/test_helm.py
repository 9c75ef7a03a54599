"""The Helm chart ``helm/referee``, rendered and linted by the real Helm engine (helm-python-sdk = Helm v4).

Built-in kinds are validated with kubernetes-validate (strict, Kubernetes 1.30). The rendered ``referee.yaml``
is checked by the real ``referee config check``: the test materialises the container's filesystem the way the
kubelet would (every volumeMount of the Deployment, filled from the rendered ConfigMaps/Secrets or from
stand-ins for the Secrets the cluster provides) under a temporary root, maps each absolute path in the
configuration that falls under a mountPath into that root, and runs the check on the result. A path the
configuration names but no mount provides, a Secret key a mount does not project, or a file that does not
parse (key, certificate, password) makes the check fail, exactly as ``referee serve`` would in the pod.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import shutil
import subprocess
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import helm_python as helm
import kubernetes_validate  # type: ignore[import-untyped]
import pytest
import trustme
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID

from provider.config import load_config, load_config_bytes
from provider.errors import ConfigError
from provider.server.tls import build_server_context
from tests.support.chart import (
    Rendered,
    Sources,
    materialize,
    merged,
    rebase,
    secret_data,
)
from tests.support.chart import render_chart as _render_chart

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "helm" / "referee"
REFEREE = Path(sys.executable).parent / "referee"
NS = "gatekeeper-system"
RELEASE = "referee"
KUBE_VERSION = "1.30.0"
CRD_KINDS = frozenset(
    {"Provider", "Certificate", "Issuer", "ServiceMonitor", "PrometheusRule", "ConstraintTemplate", "Assign"}
)
CLIENT_CA_SECRET = "gatekeeper-webhook-server-cert"
BASE: dict[str, Any] = {"gatekeeper": {"clientCA": {"secretName": CLIENT_CA_SECRET}}}


@pytest.fixture(scope="module")
def chart() -> Iterator[helm.Chart]:
    with helm.Chart.load(CHART) as loaded:
        yield loaded


def render_chart(chart: helm.Chart, values: Mapping[str, Any], namespace: str = NS) -> Rendered:
    return _render_chart(chart, values, release=RELEASE, namespace=namespace)


def render(chart: helm.Chart, *layers: Mapping[str, Any], namespace: str = NS) -> Rendered:
    return render_chart(chart, merged(BASE, *layers), namespace)


def validate_kinds(rendered: Rendered) -> None:
    """Every built-in kind against the Kubernetes 1.30 schema, strictly; only known CRD kinds lack one."""
    for doc in rendered.docs:
        try:
            kubernetes_validate.validate(doc, KUBE_VERSION, strict=True)
        except kubernetes_validate.SchemaNotFoundError:
            assert doc["kind"] in CRD_KINDS, f"no schema for {doc['apiVersion']} {doc['kind']}"


def pem_cert(data: bytes | str) -> x509.Certificate:
    return x509.load_pem_x509_certificate(data.encode() if isinstance(data, str) else data)


def check_provider(provider: Mapping[str, Any]) -> x509.Certificate:
    """The Provider as Gatekeeper validates it (frameworks' externaldata cache.go); returns the caBundle cert."""
    assert provider["apiVersion"] == "externaldata.gatekeeper.sh/v1beta1"
    assert "namespace" not in provider["metadata"]  # cluster-scoped
    spec = provider["spec"]
    assert set(spec) == {"url", "timeout", "caBundle"}
    assert spec["url"].startswith("https://")
    assert isinstance(spec["timeout"], int) and spec["timeout"] >= 1
    return pem_cert(base64.b64decode(spec["caBundle"], validate=True))


@dataclass
class PodConfig:
    path: Path
    mounts: dict[str, Path]
    check: subprocess.CompletedProcess[str]


def check_in_pod(rendered: Rendered, root: Path, external: Sources) -> PodConfig:
    """Materialise the pod, point the configuration at it and run ``referee config check``."""
    mounts = materialize(rendered, root, external)
    args = rendered.container()["args"]
    config_arg = next(a for a in args if a.startswith("--config="))
    in_pod = config_arg.split("=", 1)[1]
    on_disk = rebase(in_pod, mounts)
    assert on_disk != in_pod, f"--config {in_pod} is not under any volumeMount"
    document = yaml.safe_load(Path(on_disk).read_text())
    assert document == rendered.config()
    checked = root / "checked" / "referee.yaml"
    checked.parent.mkdir()
    checked.write_text(yaml.safe_dump(rebase(document, mounts), sort_keys=False))
    result = subprocess.run(
        [str(REFEREE), "config", "check", str(checked)], capture_output=True, text=True, timeout=60, check=False
    )
    return PodConfig(checked, mounts, result)


# -- PKI stand-ins for what the cluster provides --------------------------------------------------------


@pytest.fixture(scope="module")
def gatekeeper_secret() -> dict[str, bytes]:
    """Gatekeeper's gatekeeper-webhook-server-cert as cert-controller makes it (RSA, CA key included)."""
    ca = trustme.CA(key_type=trustme.KeyType.RSA, organization_name="gatekeeper")
    leaf = ca.issue_cert(f"gatekeeper-webhook-service.{NS}.svc")
    return {
        "ca.crt": ca.cert_pem.bytes(),
        "ca.key": ca.private_key_pem.bytes(),
        "tls.crt": leaf.cert_chain_pems[0].bytes(),
        "tls.key": leaf.private_key_pem.bytes(),
    }


def public_pem() -> str:
    key = ec.generate_private_key(ec.SECP256R1())
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


# -- rendering modes ---------------------------------------------------------------------------------


def test_rendering_fails_without_the_gatekeeper_client_ca(chart: helm.Chart) -> None:
    with pytest.raises(helm.HelmRenderError) as exc:
        render_chart(chart, {})
    message = str(exc.value)
    assert "gatekeeper.clientCA is required" in message
    assert "mtls.disabled=true" in message


def test_default_values_render_valid_objects(chart: helm.Chart) -> None:
    rendered = render(chart)
    validate_kinds(rendered)
    assert rendered.kinds == sorted(
        [
            "ConfigMap",
            "Deployment",
            "NetworkPolicy",
            "PodDisruptionBudget",
            "Provider",
            "Provider",
            "Secret",
            "Service",
            "ServiceAccount",
        ]
    )
    assert {p["metadata"]["name"] for p in rendered.all("Provider")} == {"referee-verify", "referee-mutate"}
    for doc in rendered.docs:
        if doc["kind"] != "Provider":
            assert doc["metadata"]["namespace"] == NS, doc["kind"]
    assert "referee-verify" in rendered.notes and "denies EVERY image" in rendered.notes


def test_deployment_is_hardened(chart: helm.Chart) -> None:
    rendered = render(chart)
    pod = rendered.pod()
    container = rendered.container()
    pod_sc, sc = pod["securityContext"], container["securityContext"]
    assert pod_sc["runAsNonRoot"] is True and sc["runAsNonRoot"] is True
    assert isinstance(sc["runAsUser"], int) and sc["runAsUser"] == 65532
    assert pod_sc["seccompProfile"] == {"type": "RuntimeDefault"} == sc["seccompProfile"]
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"] == {"drop": ["ALL"]}
    assert pod["automountServiceAccountToken"] is False
    assert set(container["resources"]) == {"requests", "limits"}
    assert container["resources"]["limits"]["memory"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"https": 8443, "health": 8080}
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "health"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "health"}
    config = rendered.config()
    assert config["server"]["healthPort"] == ports["health"] and config["server"]["port"] == ports["https"]
    # the read-only root filesystem gets a writable /tmp
    tmp = next(m for m in container["volumeMounts"] if m["mountPath"] == "/tmp")
    assert next(v for v in pod["volumes"] if v["name"] == tmp["name"])["emptyDir"]
    # graceful shutdown fits in the grace period: preStop sleep + Referee's drain
    sleep = int(container["lifecycle"]["preStop"]["exec"]["command"][1])
    assert config["server"]["shutdownGrace"] == "10s"
    assert sleep + 10 < pod["terminationGracePeriodSeconds"]
    with pytest.raises(helm.HelmRenderError, match="terminationGracePeriodSeconds"):
        render(chart, {"terminationGracePeriodSeconds": 12})


def test_gatekeeper_ca_mount_exposes_only_ca_crt(chart: helm.Chart) -> None:
    rendered = render(chart)
    volume = next(v for v in rendered.pod()["volumes"] if v["name"] == "gatekeeper-ca")
    assert volume["secret"] == {
        "secretName": CLIENT_CA_SECRET,
        "items": [{"key": "ca.crt", "path": "ca.crt"}],
        "defaultMode": 0o440,
    }
    tls = rendered.config()["server"]["tls"]
    assert tls["clientAuth"] == "require"
    assert tls["clientCaFile"] == "/etc/referee/gatekeeper-ca/ca.crt"
    assert tls["allowedClientNames"] == [f"gatekeeper-webhook-service.{NS}.svc"]


def test_client_ca_from_pem(chart: helm.Chart, gatekeeper_secret: dict[str, bytes]) -> None:
    pem = gatekeeper_secret["ca.crt"].decode()
    rendered = render_chart(chart, {"gatekeeper": {"clientCA": {"pem": pem}}})
    validate_kinds(rendered)
    cm = rendered.one("ConfigMap", f"{RELEASE}-gatekeeper-ca")
    assert pem_cert(cm["data"]["ca.crt"]) == pem_cert(pem)
    volume = next(v for v in rendered.pod()["volumes"] if v["name"] == "gatekeeper-ca")
    assert volume["configMap"]["name"] == f"{RELEASE}-gatekeeper-ca"
    with pytest.raises(helm.HelmRenderError, match="must be a PEM certificate"):
        render_chart(chart, {"gatekeeper": {"clientCA": {"pem": "not a certificate"}}})
    with pytest.raises(helm.HelmRenderError, match="either secretName or pem"):
        render(chart, {"gatekeeper": {"clientCA": {"pem": pem}}})


def test_client_ca_secret_must_be_mountable(chart: helm.Chart) -> None:
    with pytest.raises(helm.HelmRenderError) as exc:
        render(chart, namespace="referee-system")
    assert "cannot be mounted into namespace referee-system" in str(exc.value)
    rendered = render(chart, {"gatekeeper": {"clientCA": {"namespace": "referee-system"}}}, namespace="referee-system")
    assert rendered.one("Deployment")["metadata"]["namespace"] == "referee-system"


def test_mtls_disabled_only_explicitly(chart: helm.Chart) -> None:
    rendered = render_chart(chart, {"mtls": {"disabled": True}})
    validate_kinds(rendered)
    tls = rendered.config()["server"]["tls"]
    assert tls["clientAuth"] == "disabled"
    assert "clientCaFile" not in tls and "allowedClientNames" not in tls
    assert all(v["name"] != "gatekeeper-ca" for v in rendered.pod()["volumes"])
    assert "mutual TLS is DISABLED" in rendered.notes
    with pytest.raises(helm.HelmRenderError, match=r"contradicts gatekeeper\.clientCA"):
        render(chart, {"mtls": {"disabled": True}})
    with pytest.raises(helm.HelmRenderError, match="needs mutual TLS"):
        render_chart(chart, {"mtls": {"disabled": True, "allowedClientNames": ["x.example"]}})


def test_generated_ca_bundle_signed_the_serving_certificate(chart: helm.Chart) -> None:
    rendered = render(chart)
    secret = secret_data(rendered.one("Secret", f"{RELEASE}-tls"))
    service = rendered.one("Service")
    host = f"{service['metadata']['name']}.{NS}"
    providers = {p["metadata"]["name"]: p for p in rendered.all("Provider")}
    cas = {name: check_provider(p) for name, p in providers.items()}
    ca = cas["referee-verify"]
    assert cas["referee-mutate"] == ca
    leaf = pem_cert(secret["tls.crt"])
    # ECDSA P-256 by default (a cheaper handshake on every Gatekeeper call); the CA's signature verifies
    ca_key = ca.public_key()
    assert isinstance(ca_key, ec.EllipticCurvePublicKey) and ca_key.curve.name == "secp256r1"
    assert leaf.signature_hash_algorithm is not None
    ca_key.verify(leaf.signature, leaf.tbs_certificate_bytes, ec.ECDSA(leaf.signature_hash_algorithm))
    assert leaf.issuer == ca.subject
    leaf_key = leaf.public_key()
    assert isinstance(leaf_key, ec.EllipticCurvePublicKey) and leaf_key.curve.name == "secp256r1"
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is True
    assert pem_cert(secret["ca.crt"]) == ca
    # the serving key belongs to the certificate
    key = serialization.load_pem_private_key(secret["tls.key"], password=None)
    assert key.public_key().public_numbers() == leaf.public_key().public_numbers()  # type: ignore[union-attr]
    # names Gatekeeper's Go client checks against the Provider URL, and serverAuth
    sans = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(x509.DNSName)
    assert {host, f"{host}.svc"} <= set(sans)
    eku = leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert ExtendedKeyUsageOID.SERVER_AUTH in eku
    assert leaf.not_valid_after_utc > dt.datetime.now(dt.UTC) + dt.timedelta(days=300)
    for name, path in (("referee-verify", "/verify"), ("referee-mutate", "/mutate")):
        assert providers[name]["spec"]["url"] == f"https://{host}:{service['spec']['ports'][0]['port']}{path}"
    # a different render generates a different CA (nothing is baked into the chart)
    again = render(chart)
    assert check_provider(again.one("Provider", "referee-verify")) != ca
    # RSA-2048 on request (Gatekeeper <= 3.18)
    rsa_secret = secret_data(render(chart, {"tls": {"keyAlgorithm": "RSA"}}).one("Secret", f"{RELEASE}-tls"))
    rsa_ca, rsa_leaf = pem_cert(rsa_secret["ca.crt"]), pem_cert(rsa_secret["tls.crt"])
    rsa_ca_key = rsa_ca.public_key()
    assert isinstance(rsa_ca_key, rsa.RSAPublicKey) and rsa_ca_key.key_size == 2048
    assert isinstance(rsa_leaf.public_key(), rsa.RSAPublicKey)
    assert rsa_leaf.signature_hash_algorithm is not None
    rsa_ca_key.verify(
        rsa_leaf.signature, rsa_leaf.tbs_certificate_bytes, padding.PKCS1v15(), rsa_leaf.signature_hash_algorithm
    )
    rsa_key = serialization.load_pem_private_key(rsa_secret["tls.key"], password=None)
    assert rsa_key.public_key().public_numbers() == rsa_leaf.public_key().public_numbers()  # type: ignore[union-attr]


def test_provider_timeouts_match_referee_deadlines(chart: helm.Chart) -> None:
    rendered = render(chart)
    verify, mutate = rendered.one("Provider", "referee-verify"), rendered.one("Provider", "referee-mutate")
    assert verify["spec"]["timeout"] == 2 and mutate["spec"]["timeout"] == 1
    server = rendered.config()["server"]
    assert server["providerTimeout"] == "2s" and server["mutateProviderTimeout"] == "1s"
    custom = render(
        chart, {"providers": {"verify": {"timeoutSeconds": 4}}, "gatekeeper": {"validatingWebhookTimeoutSeconds": 5}}
    )
    assert custom.one("Provider", "referee-verify")["spec"]["timeout"] == 4
    assert custom.config()["server"]["providerTimeout"] == "4s"
    with pytest.raises(helm.HelmRenderError, match=r"must be smaller than gatekeeper\.validatingWebhookTimeoutSeconds"):
        render(chart, {"providers": {"verify": {"timeoutSeconds": 3}}})
    no_mutate = render(chart, {"providers": {"mutate": {"enabled": False}}})
    assert [p["metadata"]["name"] for p in no_mutate.all("Provider")] == ["referee-verify"]


def test_cert_manager_mode_with_the_charts_ca(chart: helm.Chart) -> None:
    rendered = render(chart, {"tls": {"mode": "certManager"}})
    validate_kinds(rendered)
    assert rendered.find("Secret", f"{RELEASE}-tls") is None  # cert-manager writes it
    ca_secret = secret_data(rendered.one("Secret", f"{RELEASE}-ca"))
    ca = pem_cert(ca_secret["tls.crt"])
    ca_key = serialization.load_pem_private_key(ca_secret["tls.key"], password=None)
    assert isinstance(ca_key, ec.EllipticCurvePrivateKey) and ca_key.curve.name == "secp256r1"
    assert ca_key.public_key().public_numbers() == ca.public_key().public_numbers()  # type: ignore[union-attr]
    for provider in rendered.all("Provider"):
        assert check_provider(provider) == ca
    issuer = rendered.one("Issuer")
    assert issuer["apiVersion"] == "cert-manager.io/v1"
    assert issuer["spec"] == {"ca": {"secretName": f"{RELEASE}-ca"}}
    cert = rendered.one("Certificate")
    assert cert["apiVersion"] == "cert-manager.io/v1"
    spec = cert["spec"]
    assert spec["issuerRef"] == {"name": issuer["metadata"]["name"], "kind": "Issuer", "group": "cert-manager.io"}
    assert (spec["privateKey"]["algorithm"], spec["privateKey"]["size"]) == ("ECDSA", 256)
    assert "server auth" in spec["usages"] and "key encipherment" not in spec["usages"]
    assert {f"{RELEASE}.{NS}", f"{RELEASE}.{NS}.svc"} <= set(spec["dnsNames"])
    tls_volume = next(v for v in rendered.pod()["volumes"] if v["name"] == "tls")
    assert tls_volume["secret"]["secretName"] == spec["secretName"]
    as_rsa = render(chart, {"tls": {"mode": "certManager", "keyAlgorithm": "RSA"}})
    rsa_spec = as_rsa.one("Certificate")["spec"]
    assert (rsa_spec["privateKey"]["algorithm"], rsa_spec["privateKey"]["size"]) == ("RSA", 2048)
    assert "key encipherment" in rsa_spec["usages"]
    rsa_ca_key = serialization.load_pem_private_key(
        secret_data(as_rsa.one("Secret", f"{RELEASE}-ca"))["tls.key"], password=None
    )
    assert isinstance(rsa_ca_key, rsa.RSAPrivateKey)


def test_cert_manager_mode_with_an_issuer_of_your_own(chart: helm.Chart) -> None:
    own = {"tls": {"mode": "certManager", "certManager": {"issuerRef": {"name": "corp-ca", "kind": "ClusterIssuer"}}}}
    with pytest.raises(helm.HelmRenderError) as exc:
        render(chart, own)
    assert "tls.certManager.caBundle is required" in str(exc.value)
    assert "CA injector" in str(exc.value)
    corp = trustme.CA(key_type=trustme.KeyType.RSA)
    rendered = render(chart, own, {"tls": {"certManager": {"caBundle": corp.cert_pem.bytes().decode()}}})
    validate_kinds(rendered)
    assert rendered.all("Issuer") == [] and rendered.find("Secret", f"{RELEASE}-ca") is None
    assert rendered.one("Certificate")["spec"]["issuerRef"] == {
        "name": "corp-ca",
        "kind": "ClusterIssuer",
        "group": "cert-manager.io",
    }
    assert check_provider(rendered.one("Provider", "referee-verify")) == pem_cert(corp.cert_pem.bytes())


# -- values.schema.json ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ({"replicas": 3}, "additional properties 'replicas' not allowed"),
        ({"image": {"repository": "x", "pullSecret": "y"}}, "additional properties 'pullSecret' not allowed"),
        ({"config": {"server": {"port": 9443}}}, "additional properties 'port' not allowed"),
        ({"config": {"verifiers": [{"name": "a", "type": "cosign", "key": "x"}]}}, "'key' not allowed"),
        ({"config": {"verifiers": [{"name": "a", "type": "cosign", "trustPolicy": {}}]}}, "'trustPolicy'"),
        ({"config": {"verifiers": [{"name": "a", "type": "cosing"}]}}, "/config/verifiers/0/type"),
        ({"config": {"policy": {"type": "rules", "required": ["a"]}}}, "invalid propertyName 'required'"),
        ({"config": {"registries": {"hosts": [{"host": "h", "referrersApi": "sometimes"}]}}}, "/referrersApi"),
        ({"config": {"cache": {"verdictTtl": "5 minutes"}}}, "/verdictTtl"),
        ({"replicaCount": "two"}, "got string, want integer"),
        ({"providers": {"verify": {"timeoutSeconds": 0}}}, "/providers/verify/timeoutSeconds"),
        ({"podSecurity": {"runAsUser": 0}}, "/podSecurity/runAsUser"),
        ({"tls": {"mode": "manual"}}, "/tls/mode"),
        ({"mtls": {"disabled": "yes"}}, "got string, want boolean"),
        ({"image": {"digest": "sha256:abc"}}, "/image/digest"),
        ({"trust": [{"name": "Bad_Name", "files": {}}]}, "/trust/0/name"),
        ({"networkPolicy": {"healthFrom": [{"namespaceSelector": {"labels": {}}}]}}, "'labels' not allowed"),
        ({"prometheusRule": {"selector": '{job="referee"}'}}, "/prometheusRule/selector"),
        ({"prometheusRule": {"certificateExpiryDays": 0}}, "/prometheusRule/certificateExpiryDays"),
        ({"prometheusRule": {"alertLabels": {"team": 1}}}, "/prometheusRule/alertLabels/team"),
        ({"grafanaDashboard": {"folder": "Referee"}}, "additional properties 'folder' not allowed"),
        ({"tls": {"keyAlgorithm": "Ed25519"}}, "/tls/keyAlgorithm"),
        ({"sharedCache": {"url": "redis://user:pw@cache:6379"}}, "/sharedCache/url"),
        ({"sharedCache": {"password": "pw"}}, "additional properties 'password' not allowed"),
        ({"config": {"cache": {"shared": {"leaseTtl": "long"}}}}, "/config/cache/shared/leaseTtl"),
    ],
)
def test_schema_rejects_bad_values(chart: helm.Chart, values: dict[str, Any], expected: str) -> None:
    full = merged(BASE, values)
    with pytest.raises(helm.HelmValuesError) as exc:
        chart.validate_schema(full)
    assert expected in str(exc.value)
    with pytest.raises(helm.HelmValuesError):
        render_chart(chart, full)


def _object_nodes(node: Any, path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    if isinstance(node, dict):
        if node.get("type") == "object" or "properties" in node:
            yield path, node
        for key, child in node.get("properties", {}).items():
            yield from _object_nodes(child, f"{path}.{key}")
        for key in ("items", "additionalProperties"):
            if isinstance(node.get(key), dict):
                yield from _object_nodes(node[key], f"{path}[{key}]")
        for key in ("oneOf", "anyOf", "allOf"):
            for i, child in enumerate(node.get(key, [])):
                yield from _object_nodes(child, f"{path}<{key}{i}>")


def test_schema_is_closed_at_every_level() -> None:
    schema = json.loads((CHART / "values.schema.json").read_text())
    passthrough = []
    for path, node in _object_nodes(schema):
        extra = node.get("additionalProperties")
        if "properties" in node:
            assert extra is False, f"{path or '<root>'}: additionalProperties must be false"
        elif isinstance(extra, dict):
            continue  # a map (labels, annotations, files): its values are typed
        elif path.startswith(".config."):
            # values whose shape Referee's parser checks itself (e.g. trust store name -> certificates)
            assert node.get("description") == "passed through; validated by referee config check", path
        else:
            assert "passed through" in node.get("description", ""), f"{path}: open object"
            passthrough.append(path)
    assert sorted(passthrough) == [
        ".affinity.nodeAffinity",
        ".affinity.podAffinity",
        ".affinity.podAntiAffinity",
        ".extraContainers[items]",
        ".extraInitContainers[items]",
        ".extraVolumes[items]",
    ]
    # every key in values.yaml is described (the schema would reject the chart's own defaults otherwise)
    defaults = yaml.safe_load((CHART / "values.yaml").read_text())
    assert set(defaults) == set(schema["properties"])


def test_schema_config_section_is_generated_from_referees_parser() -> None:
    result = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "gen_chart_schema.py"), "--check"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr


def _problems(document: dict[str, Any], tmp_path: Path) -> list[str]:
    try:
        load_config_bytes(yaml.safe_dump(document).encode(), tmp_path)
    except ConfigError as exc:
        return list(exc.problems)
    return []


def test_schema_allows_exactly_the_parameters_referee_knows(tmp_path: Path) -> None:
    """Independently of the generator: every parameter the schema allows for a verifier, store or policy
    type is one Referee does not call unknown, and a key outside the schema is one Referee rejects."""
    schema = json.loads((CHART / "values.schema.json").read_text())["properties"]["config"]["properties"]
    slots = {"verifiers": schema["verifiers"]["items"], "stores": schema["stores"]["items"], "policy": schema["policy"]}

    def document(slot: str, type_name: str, extra: dict[str, Any]) -> dict[str, Any]:
        if slot == "policy":
            return {"policy": {"type": type_name, **extra}}
        return {slot: [{"name": "x", "type": type_name, **extra}]}

    checked = 0
    for slot, node in slots.items():
        prefix = "policy" if slot == "policy" else f"{slot}[0]"
        dispatched = [rule["if"]["properties"]["type"]["const"] for rule in node["allOf"]]
        assert dispatched == node["properties"]["type"]["enum"]
        for rule in node["allOf"]:
            type_name = rule["if"]["properties"]["type"]["const"]
            for key in rule["then"]["propertyNames"]["enum"]:
                if key in ("name", "type"):
                    continue
                problems = _problems(document(slot, type_name, {key: None}), tmp_path)
                assert not [p for p in problems if p.startswith(f"{prefix}.{key}: unknown key")], (type_name, key)
                checked += 1
            problems = _problems(document(slot, type_name, {"notAParameter": 1}), tmp_path)
            assert f"{prefix}.notAParameter: unknown key" in problems, (type_name, problems)
    assert checked > 20


def test_lint(chart: helm.Chart) -> None:
    modes = [BASE, merged(BASE, {"tls": {"mode": "certManager"}}), {"mtls": {"disabled": True}}]
    for values in modes:
        report = helm.lint(CHART, values, strict=True, namespace=NS, kube_version="v1.30.0")
        assert report["errors"] == [], values
        assert [m for m in report["messages"] if m["severity"] >= 2] == [], values
    # lint reports template errors too (``fail`` is lenient in Helm's lint mode, so break a template)
    broken = helm.lint(CHART, merged(BASE, {"resources": {"limits": {"memory": {"nested": 1}}}}), namespace=NS)
    assert broken["errors"] or any(m["severity"] >= 2 for m in broken["messages"])


# -- the rendered configuration passes `referee config check` in the pod's filesystem ---------------------


def _full_values(cosign_pub: str, registry_ca: str) -> dict[str, Any]:
    return merged(
        BASE,
        {
            "registryCredentials": {
                "hosts": [
                    {"host": "registry.example.com:5000", "username": "referee", "password": "inline-pass-1"},
                    {"host": "ghcr.io", "username": "bot", "existingSecret": "ghcr-pull", "existingSecretKey": "pat"},
                ],
                "dockerConfigSecret": "pull-secret",
            },
            "trust": [
                {"name": "cosign-keys", "files": {"release.pub": cosign_pub}},
                {"name": "registry-ca", "existingConfigMap": "registry-ca"},
                {"name": "next-keys", "existingSecret": "next-keys"},
            ],
            "config": {
                "registries": {
                    "allow": ["registry.example.com:5000", "ghcr.io/example/*"],
                    "hosts": [
                        {
                            "host": "registry.example.com:5000",
                            "caFile": "/etc/referee/trust/registry-ca/ca.crt",
                            "referrersApi": "auto",
                            "maxConcurrency": 8,
                        },
                        {"host": "quay.io", "ca": registry_ca, "registryTokenFile": "/etc/referee/trust/next-keys/t"},
                    ],
                    "maxConcurrency": 16,
                    "requestTimeout": "5s",
                    "maxAttempts": 3,
                    "referrersApiMemory": "1h",
                    "cosignLegacyTags": True,
                },
                "stores": [{"name": "registry", "type": "registry", "scopes": ["*"]}],
                "verifiers": [
                    {
                        "name": "release",
                        "type": "cosign",
                        "artifactTypes": ["application/vnd.dev.cosign.simplesigning.v1+json"],
                        "scopes": ["*"],
                        "keys": ["/etc/referee/trust/cosign-keys/release.pub", "/etc/referee/trust/next-keys/next.pub"],
                    }
                ],
                "policy": {"type": "required-verifiers", "required": ["release"]},
                "server": {
                    "deadlineMargin": "100ms",
                    "mutateDeadlineMargin": "50ms",
                    "mutateKeepTag": False,
                    "maxKeys": 1000,
                    "maxBodyBytes": "1MiB",
                    "reloadInterval": "5s",
                    "keepaliveTimeout": "120s",
                },
                "cache": {
                    "verdictTtl": "5m",
                    "verdictMaxEntries": 10000,
                    "tagTtl": "10s",
                    "tagMaxEntries": 10000,
                    "contentMaxBytes": "64MiB",
                },
                "limits": {
                    "maxManifestBytes": "4MiB",
                    "maxBlobBytes": "16MiB",
                    "maxReferrers": 64,
                    "maxReferrerPages": 10,
                    "maxNestedDepth": 1,
                    "nestedArtifactTypes": ["application/spdx+json"],
                    "verificationTimeout": "10s",
                    "maxConcurrentVerifications": 16,
                },
            },
        },
    )


def _second_values(registry_ca: str) -> dict[str, Any]:
    """Keys the first configuration cannot hold at the same time (other policy type, inline secrets, layouts)."""
    layout_index = json.dumps({"schemaVersion": 2, "manifests": []})
    return merged(
        BASE,
        {
            "trust": [
                {
                    "name": "layout",
                    "files": {"oci-layout": '{"imageLayoutVersion":"1.0.0"}', "index.json": layout_index},
                }
            ],
            "config": {
                "apiVersion": "referee.dev/v1alpha1",
                "registries": {
                    "allow": ["*"],
                    "hosts": [
                        {"host": "a.example", "ca": registry_ca, "username": "u", "password": "p"},
                        {"host": "b.example", "registryToken": "t", "plainHttp": False},
                        {
                            "host": "c.example:5000",
                            "plainHttp": True,
                            "username": "u",
                            "passwordFile": "/etc/referee/trust/layout/index.json",
                        },
                    ],
                    "dockerConfig": "/etc/referee/trust/layout/index.json",
                },
                "stores": [
                    {"name": "local", "type": "oci-layout", "path": "/etc/referee/trust/layout", "scopes": ["local/*"]}
                ],
                "verifiers": [
                    {"name": "a", "type": "cosign", "keys": [public_pem()]},
                    {"name": "b", "type": "cosign", "keys": [public_pem()]},
                ],
                "policy": {
                    "type": "rules",
                    "rules": [
                        {
                            "name": "all",
                            "scopes": ["*"],
                            "verifiers": ["a", "b"],
                            "artifactTypes": ["application/vnd.dev.cosign.simplesigning.v1+json"],
                            "match": "all",
                            "minCount": 1,
                            "nested": {"verifiers": ["b"]},
                        }
                    ],
                },
            },
        },
    )


@pytest.fixture(scope="module")
def cluster_objects(gatekeeper_secret: dict[str, bytes]) -> Sources:
    """What the cluster holds beside the chart: Gatekeeper's Secret and the user's existing objects."""
    registry_ca = trustme.CA()
    docker = {"auths": {"ghcr.io": {"auth": base64.b64encode(b"bot:docker-pass").decode()}}}
    return {
        ("Secret", CLIENT_CA_SECRET): gatekeeper_secret,
        ("Secret", "ghcr-pull"): {"pat": b"ghp_not_a_real_token\n"},
        ("Secret", "pull-secret"): {".dockerconfigjson": json.dumps(docker).encode()},
        ("Secret", "next-keys"): {"next.pub": public_pem().encode(), "t": b"registry-token"},
        ("ConfigMap", "registry-ca"): {"ca.crt": registry_ca.cert_pem.bytes()},
    }


def test_rendered_config_passes_referee_config_check(
    chart: helm.Chart, tmp_path: Path, cluster_objects: Sources
) -> None:
    registry_ca = trustme.CA().cert_pem.bytes().decode()
    rendered = render_chart(chart, _full_values(public_pem(), registry_ca))
    validate_kinds(rendered)
    pod = check_in_pod(rendered, tmp_path, cluster_objects)
    assert pod.check.returncode == 0, pod.check.stderr
    assert "OK" in pod.check.stdout
    config = load_config(pod.path)
    # the TLS files the chart mounts load as Referee's serving context (key matches certificate; client CA)
    build_server_context(config.server.tls)
    assert config.server.tls.client_auth == "require"
    # credentials were wired in from files: no password in the ConfigMap
    hosts = {h.host: h for h in config.registries.hosts}
    assert hosts["registry.example.com:5000"].credentials is not None
    assert hosts["registry.example.com:5000"].credentials.password is not None
    assert hosts["registry.example.com:5000"].credentials.password.reveal() == "inline-pass-1"
    assert hosts["ghcr.io"].credentials is not None and hosts["ghcr.io"].credentials.password is not None
    assert hosts["ghcr.io"].credentials.password.reveal() == "ghp_not_a_real_token"
    assert "docker.io" not in config.registries.docker_credentials and "ghcr.io" in config.registries.docker_credentials
    configmap_text = rendered.one("ConfigMap", f"{RELEASE}-config")["data"]["referee.yaml"]
    assert "inline-pass-1" not in configmap_text and "ghp_not" not in configmap_text
    # Gatekeeper's CA key is in its Secret but never in the pod
    gatekeeper_dir = pod.mounts["/etc/referee/gatekeeper-ca"]
    assert sorted(p.name for p in gatekeeper_dir.iterdir() if not p.name.startswith("..")) == ["ca.crt"]
    assert (gatekeeper_dir / "ca.crt").is_symlink()  # read through the kubelet's links, as in the pod


def test_second_config_shape_passes_referee_config_check(
    chart: helm.Chart, tmp_path: Path, cluster_objects: Sources
) -> None:
    rendered = render_chart(chart, _second_values(trustme.CA().cert_pem.bytes().decode()))
    pod = check_in_pod(rendered, tmp_path, cluster_objects)
    assert pod.check.returncode == 0, pod.check.stderr


def test_config_check_catches_a_path_no_mount_provides(
    chart: helm.Chart, tmp_path: Path, cluster_objects: Sources
) -> None:
    values = merged(
        BASE,
        {
            "config": {
                "verifiers": [{"name": "v", "type": "cosign", "keys": ["/etc/referee/trust/missing/key.pub"]}],
                "policy": {"type": "required-verifiers", "required": ["v"]},
            }
        },
    )
    pod = check_in_pod(render_chart(chart, values), tmp_path, cluster_objects)
    assert pod.check.returncode == 2
    assert "verifiers[0].keys[0]" in pod.check.stderr and "/etc/referee/trust/missing/key.pub" in pod.check.stderr


def test_config_check_in_cert_manager_and_mtls_disabled_modes(chart: helm.Chart, tmp_path: Path) -> None:
    serving_ca = trustme.CA(key_type=trustme.KeyType.RSA)
    leaf = serving_ca.issue_cert(f"{RELEASE}.{NS}.svc")
    issued = {"tls.crt": leaf.cert_chain_pems[0].bytes(), "tls.key": leaf.private_key_pem.bytes()}
    gatekeeper_ca = trustme.CA(key_type=trustme.KeyType.RSA)
    cluster: Sources = {
        ("Secret", f"{RELEASE}-tls"): issued,  # written by cert-manager from the Certificate
        ("Secret", CLIENT_CA_SECRET): {"ca.crt": gatekeeper_ca.cert_pem.bytes()},
    }
    cert_manager = render(chart, {"tls": {"mode": "certManager"}})
    pod = check_in_pod(cert_manager, tmp_path / "cm", cluster)
    assert pod.check.returncode == 0, pod.check.stderr
    build_server_context(load_config(pod.path).server.tls)

    disabled = render_chart(chart, {"mtls": {"disabled": True}})
    pod = check_in_pod(disabled, tmp_path / "off", {})
    assert pod.check.returncode == 0, pod.check.stderr
    tls = load_config(pod.path).server.tls
    assert tls.client_auth == "disabled"
    build_server_context(tls)


def test_secret_volumes_are_readable_only_by_referees_group(chart: helm.Chart) -> None:
    """Keys, passwords and docker config.json are mounted 0440: readable by the referee user through the
    pod's fsGroup, by no one else; public trust material (ConfigMaps) keeps the kubelet default."""
    rendered = render_chart(chart, _full_values(public_pem(), trustme.CA().cert_pem.bytes().decode()))
    pod = rendered.pod()
    assert pod["securityContext"]["fsGroup"] == pod["securityContext"]["runAsGroup"]
    secret_backed = {
        v["name"]: v.get("secret", v.get("projected")) for v in pod["volumes"] if "secret" in v or "projected" in v
    }
    assert set(secret_backed) == {"tls", "gatekeeper-ca", "registry-credentials", "dockerconfig", "trust-next-keys"}
    assert {name: body.get("defaultMode") for name, body in secret_backed.items()} == dict.fromkeys(
        secret_backed, 0o440
    )


def test_registry_passwords_stay_in_secrets(chart: helm.Chart) -> None:
    rendered = render(
        chart,
        {"registryCredentials": {"hosts": [{"host": "r.example:5000", "username": "u", "password": "hunter2!"}]}},
    )
    secret = rendered.one("Secret", f"{RELEASE}-registry-credentials")
    assert secret_data(secret) == {"r.example_5000": b"hunter2!"}
    assert "hunter2" not in json.dumps([d for d in rendered.docs if d["kind"] != "Secret"])
    host = rendered.config()["registries"]["hosts"][0]
    assert host == {
        "host": "r.example:5000",
        "username": "u",
        "passwordFile": "/etc/referee/registry-credentials/r.example_5000/password",
    }
    with pytest.raises(helm.HelmRenderError, match="password or existingSecret is required"):
        render(chart, {"registryCredentials": {"hosts": [{"host": "r.example", "username": "u"}]}})
    with pytest.raises(helm.HelmRenderError, match="already has credentials"):
        render(
            chart,
            {
                "registryCredentials": {"hosts": [{"host": "r.example", "username": "u", "password": "p"}]},
                "config": {"registries": {"hosts": [{"host": "r.example", "username": "x", "password": "y"}]}},
            },
        )


def test_config_checksum_rolls_pods_only_when_asked(chart: helm.Chart) -> None:
    default = render(chart)
    assert "annotations" not in default.one("Deployment")["spec"]["template"]["metadata"]

    def checksum(*layers: Mapping[str, Any]) -> str:
        rendered = render(chart, {"rollOnConfigChange": True}, *layers)
        value: str = rendered.one("Deployment")["spec"]["template"]["metadata"]["annotations"]["checksum/config"]
        return value

    base = checksum()
    assert len(base) == 64
    assert checksum() == base
    assert checksum({"replicaCount": 5}) == base
    assert checksum({"config": {"cache": {"verdictTtl": "1m"}}}) != base
    assert checksum({"trust": [{"name": "k", "files": {"a.pub": "x"}}]}) != base


# -- Gatekeeper policy objects from gatekeeper/ ----------------------------------------------------------

SAMPLE_TEMPLATE = """\
apiVersion: templates.gatekeeper.sh/v1
kind: ConstraintTemplate
metadata:
  name: refereeverified
spec:
  crd:
    spec:
      names:
        kind: RefereeVerified
  targets:
    - target: admission.k8s.gatekeeper.sh
      rego: |
        package refereeverified
        violation contains {"msg": "x"} if { external_data({"provider": "referee-verify", "keys": []}) }
"""
SAMPLE_ASSIGN = """\
apiVersion: mutations.gatekeeper.sh/v1
kind: Assign
metadata:
  name: referee-pin-containers
spec:
  applyTo:
    - groups: [""]
      kinds: [Pod]
      versions: [v1]
  location: "spec.containers[name:*].image"
  parameters:
    assign:
      externalData:
        provider: referee-mutate
        dataSource: ValueAtLocation
        failurePolicy: Fail
"""


@pytest.fixture
def chart_copy(tmp_path: Path) -> Path:
    """The chart with files/gatekeeper replaced by a directory of sample policy objects."""
    copy_dir = tmp_path / "referee"
    shutil.copytree(CHART, copy_dir, symlinks=True)
    link = copy_dir / "files" / "gatekeeper"
    link.unlink()
    (link / "templates").mkdir(parents=True)
    (link / "mutation").mkdir()
    return copy_dir


def test_gatekeeper_objects_follow_their_toggles(chart_copy: Path) -> None:
    gk = chart_copy / "files" / "gatekeeper"
    with helm.Chart.load(chart_copy) as empty:
        with pytest.raises(helm.HelmRenderError, match="no ConstraintTemplates under files/gatekeeper/templates"):
            render(empty, {"gatekeeper": {"templates": {"enabled": True}}})
        with pytest.raises(helm.HelmRenderError, match="no mutators under files/gatekeeper/mutation"):
            render(empty, {"gatekeeper": {"mutation": {"enabled": True}}})
    (gk / "templates" / "refereeverified.yaml").write_text(SAMPLE_TEMPLATE)
    (gk / "templates" / "notes.md").write_text("not a manifest")
    (gk / "mutation" / "pin-containers.yaml").write_text(SAMPLE_ASSIGN)
    with helm.Chart.load(chart_copy) as loaded:
        off = render(loaded)
        assert not off.all("ConstraintTemplate") and not off.all("Assign")
        on = render(loaded, {"gatekeeper": {"templates": {"enabled": True}, "mutation": {"enabled": True}}})
        assert on.all("ConstraintTemplate") == [yaml.safe_load(SAMPLE_TEMPLATE)]
        expected_assign = yaml.safe_load(SAMPLE_ASSIGN)
        match = expected_assign["spec"].setdefault("match", {})
        if NS not in match.setdefault("excludedNamespaces", []):
            match["excludedNamespaces"].append(NS)
        assert on.all("Assign") == [expected_assign]
        validate_kinds(on)
        only_templates = render(loaded, {"gatekeeper": {"templates": {"enabled": True}}})
        assert only_templates.all("ConstraintTemplate") and not only_templates.all("Assign")
        with pytest.raises(helm.HelmRenderError, match=r"needs providers\.mutate\.enabled"):
            render(loaded, {"gatekeeper": {"mutation": {"enabled": True}}, "providers": {"mutate": {"enabled": False}}})


def test_chart_reads_the_repositorys_gatekeeper_directory(chart: helm.Chart) -> None:
    link = CHART / "files" / "gatekeeper"
    assert link.is_symlink() and link.resolve() == (REPO / "gatekeeper").resolve()
    templates = sorted((REPO / "gatekeeper" / "templates").glob("*.yaml"))
    mutators = sorted((REPO / "gatekeeper" / "mutation").glob("*.yaml"))
    if not templates:
        with pytest.raises(helm.HelmRenderError, match="no ConstraintTemplates"):
            render(chart, {"gatekeeper": {"templates": {"enabled": True}}})
        return
    toggles: dict[str, Any] = {"templates": {"enabled": True}, "mutation": {"enabled": bool(mutators)}}
    rendered = render(chart, {"gatekeeper": toggles})
    expected = [d for f in templates + mutators for d in yaml.safe_load_all(f.read_text()) if d]
    policy = [d for d in rendered.docs if d["apiVersion"].split("/")[0].endswith("gatekeeper.sh")]
    policy = [d for d in policy if d["kind"] != "Provider"]
    assert sorted(json.dumps(d, sort_keys=True) for d in policy) == sorted(
        json.dumps(d, sort_keys=True) for d in expected
    )
    providers = {p["metadata"]["name"] for p in rendered.all("Provider")}
    for doc in policy:
        text = json.dumps(doc)
        for name in ("referee-verify", "referee-mutate"):
            if name in text:
                assert name in providers


# -- the other objects --------------------------------------------------------------------------------------


def test_network_policy_admits_only_gatekeeper_to_the_provider_port(chart: helm.Chart) -> None:
    rendered = render(chart)
    spec = rendered.one("NetworkPolicy")["spec"]
    assert spec["policyTypes"] == ["Ingress"]
    assert spec["podSelector"]["matchLabels"] == rendered.one("Deployment")["spec"]["selector"]["matchLabels"]
    assert spec["ingress"] == [
        {
            "from": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": NS}}}],
            "ports": [{"port": 8443, "protocol": "TCP"}],
        }
    ]
    monitoring = [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}]
    pods = {"matchLabels": {"gatekeeper.sh/system": "yes"}}
    custom = render(
        chart,
        {
            "gatekeeper": {"namespace": "opa"},
            "networkPolicy": {"healthFrom": monitoring, "gatekeeperPodSelector": pods},
        },
        {"gatekeeper": {"clientCA": {"namespace": NS}}},
    )
    validate_kinds(custom)
    ingress = custom.one("NetworkPolicy")["spec"]["ingress"]
    assert ingress[0]["from"] == [
        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "opa"}}, "podSelector": pods}
    ]
    assert ingress[1] == {"from": monitoring, "ports": [{"port": 8080, "protocol": "TCP"}]}
    assert custom.config()["server"]["tls"]["allowedClientNames"] == ["gatekeeper-webhook-service.opa.svc"]
    assert not render(chart, {"networkPolicy": {"enabled": False}}).all("NetworkPolicy")


def test_service_monitor_toggle(chart: helm.Chart) -> None:
    assert not render(chart).all("ServiceMonitor")
    rendered = render(chart, {"serviceMonitor": {"enabled": True, "labels": {"release": "prom"}}})
    monitor = rendered.one("ServiceMonitor")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["metadata"]["labels"]["release"] == "prom"
    assert monitor["spec"]["endpoints"][0]["port"] == "health"
    assert monitor["spec"]["endpoints"][0]["path"] == "/metrics"
    service = rendered.one("Service")
    assert {"name": "health", "port": 8080, "targetPort": "health", "protocol": "TCP"} in service["spec"]["ports"]
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    assert "add Prometheus to networkPolicy.healthFrom" in rendered.notes


def test_prometheus_rule_and_dashboard_toggles(chart: helm.Chart) -> None:
    default = render(chart)
    assert not default.all("PrometheusRule")
    assert not default.find("ConfigMap", f"{RELEASE}-dashboard")
    rendered = render(
        chart,
        {
            "prometheusRule": {"enabled": True, "labels": {"release": "prom"}, "alertLabels": {"team": "platform"}},
            "grafanaDashboard": {"enabled": True, "namespace": "monitoring", "annotations": {"grafana_folder": "R"}},
        },
    )
    validate_kinds(rendered)
    rule = rendered.one("PrometheusRule")
    assert rule["apiVersion"] == "monitoring.coreos.com/v1"
    assert (rule["metadata"]["namespace"], rule["metadata"]["labels"]["release"]) == (NS, "prom")
    alerts = [r for group in rule["spec"]["groups"] for r in group["rules"]]
    assert len(alerts) == 10
    for alert in alerts:
        assert alert["labels"]["team"] == "platform" and alert["labels"]["severity"] in ("warning", "critical")
        assert f'job="{RELEASE}",namespace="{NS}"' in alert["expr"], alert["alert"]
        assert {"summary", "description"} <= set(alert["annotations"])
    dashboard = rendered.one("ConfigMap", f"{RELEASE}-dashboard")
    assert dashboard["metadata"]["namespace"] == "monitoring"
    assert dashboard["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert dashboard["metadata"]["annotations"] == {"grafana_folder": "R"}
    assert json.loads(dashboard["data"]["referee.json"]) == json.loads(
        (CHART / "dashboards" / "referee.json").read_text()
    )

    custom = render(
        chart,
        {
            "prometheusRule": {"enabled": True, "selector": 'service="referee-metrics"', "certificateExpiryDays": 30},
            "grafanaDashboard": {"enabled": True, "labels": {"grafana_dashboard": "referee"}},
        },
    )
    exprs = {r["alert"]: r["expr"] for g in custom.one("PrometheusRule")["spec"]["groups"] for r in g["rules"]}
    assert all('{service="referee-metrics"' in e and "job=" not in e for e in exprs.values())
    assert "< 30 * 86400" in exprs["RefereeCertificateExpiringSoon"]
    labels = custom.one("ConfigMap", f"{RELEASE}-dashboard")["metadata"]["labels"]
    assert labels["grafana_dashboard"] == "referee"
    assert "set prometheusRule.selector" in rendered.notes and "set prometheusRule.selector" not in custom.notes
    report = helm.lint(
        CHART,
        merged(BASE, {"prometheusRule": {"enabled": True}, "grafanaDashboard": {"enabled": True}}),
        strict=True,
        namespace=NS,
        kube_version="v1.30.0",
    )
    assert report["errors"] == [] and [m for m in report["messages"] if m["severity"] >= 2] == []


def test_autoscaling_and_disruption_budget(chart: helm.Chart) -> None:
    default = render(chart)
    assert default.one("Deployment")["spec"]["replicas"] == 2
    assert default.one("PodDisruptionBudget")["spec"]["maxUnavailable"] == 1
    assert not default.all("HorizontalPodAutoscaler")
    scaled = render(
        chart,
        {
            "autoscaling": {
                "enabled": True,
                "minReplicas": 3,
                "maxReplicas": 9,
                "targetMemoryUtilizationPercentage": 80,
            },
            "podDisruptionBudget": {"minAvailable": 2, "maxUnavailable": None},
        },
    )
    validate_kinds(scaled)
    assert "replicas" not in scaled.one("Deployment")["spec"]
    hpa = scaled.one("HorizontalPodAutoscaler")["spec"]
    assert (hpa["minReplicas"], hpa["maxReplicas"]) == (3, 9)
    assert hpa["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": RELEASE}
    assert {m["resource"]["name"] for m in hpa["metrics"]} == {"cpu", "memory"}
    assert scaled.one("PodDisruptionBudget")["spec"] == {
        "minAvailable": 2,
        "selector": {"matchLabels": default.one("Deployment")["spec"]["selector"]["matchLabels"]},
    }
    with pytest.raises(helm.HelmRenderError, match="not both"):
        render(chart, {"podDisruptionBudget": {"minAvailable": 1}})
    assert not render(chart, {"podDisruptionBudget": {"enabled": False}}).all("PodDisruptionBudget")


def test_replicas_spread_over_zones_and_nodes_by_default(chart: helm.Chart) -> None:
    """HA by default: two replicas, a disruption budget of one, and soft spreading per rollout over zones and nodes;
    constraints of your own replace the default, which can also be turned off."""
    rendered = render(chart)
    validate_kinds(rendered)
    selector = rendered.one("Deployment")["spec"]["selector"]["matchLabels"]
    spread = rendered.pod()["topologySpreadConstraints"]
    assert [c["topologyKey"] for c in spread] == ["topology.kubernetes.io/zone", "kubernetes.io/hostname"]
    for constraint in spread:
        assert constraint["whenUnsatisfiable"] == "ScheduleAnyway" and constraint["maxSkew"] == 1
        assert constraint["labelSelector"] == {"matchLabels": selector}
        assert constraint["matchLabelKeys"] == ["pod-template-hash"]
    own = [{"maxSkew": 2, "topologyKey": "kubernetes.io/hostname", "whenUnsatisfiable": "DoNotSchedule"}]
    assert render(chart, {"topologySpreadConstraints": own}).pod()["topologySpreadConstraints"] == own
    assert "topologySpreadConstraints" not in render(chart, {"defaultTopologySpread": False}).pod()


@pytest.fixture(scope="module")
def shared_cache_secret() -> dict[str, bytes]:
    return {"hmac": b"0123456789abcdef0123456789abcdef0123456789abcdef\n", "pw": b"cache-password\n"}


def test_shared_cache_values_are_wired_into_the_pod(
    chart: helm.Chart, tmp_path: Path, cluster_objects: Sources, shared_cache_secret: dict[str, bytes]
) -> None:
    """sharedCache: the URL, the HMAC key and password files from an existing Secret (only its two keys mounted),
    the CA inline; tuning from config.cache.shared is kept. The pod's configuration passes referee config check and
    loads the secrets from the mounted files; none of them is in the ConfigMap."""
    ca = trustme.CA().cert_pem.bytes().decode()
    values = {
        "sharedCache": {
            "enabled": True,
            "url": "rediss://valkey.cache.svc:6380/1",
            "username": "referee",
            "existingSecret": "cache-credentials",
            "hmacKeyKey": "hmac",
            "passwordKey": "pw",
            "caBundle": ca,
        },
        "config": {"cache": {"shared": {"keyPrefix": "prod:", "leaseTtl": "2s"}}},
    }
    rendered = render(chart, values)
    validate_kinds(rendered)
    volume = next(v for v in rendered.pod()["volumes"] if v["name"] == "shared-cache")
    assert volume["secret"] == {
        "secretName": "cache-credentials",
        "defaultMode": 0o440,
        "items": [{"key": "hmac", "path": "hmac.key"}, {"key": "pw", "path": "password"}],
    }
    assert rendered.find("Secret", f"{RELEASE}-shared-cache") is None
    cluster = {**cluster_objects, ("Secret", "cache-credentials"): {**shared_cache_secret, "other": b"not mounted"}}
    pod = check_in_pod(rendered, tmp_path, cluster)
    assert pod.check.returncode == 0, pod.check.stderr
    shared = load_config(pod.path).cache.shared
    assert shared is not None
    assert (shared.url, shared.username, shared.key_prefix, shared.lease_ttl) == (
        "rediss://valkey.cache.svc:6380/1",
        "referee",
        "prod:",
        2.0,
    )
    assert shared.hmac_key == shared_cache_secret["hmac"].strip()
    assert shared.password is not None and shared.password.reveal() == "cache-password"
    assert shared.ca_pem == ca.encode()
    assert sorted(p.name for p in pod.mounts["/etc/referee/shared-cache"].iterdir() if not p.name.startswith("..")) == [
        "hmac.key",
        "password",
    ]
    configmap_text = rendered.one("ConfigMap", f"{RELEASE}-config")["data"]["referee.yaml"]
    assert "cache-password" not in configmap_text and "0123456789abcdef" not in configmap_text


def test_shared_cache_with_a_generated_hmac_key(chart: helm.Chart, tmp_path: Path, cluster_objects: Sources) -> None:
    """Without existingSecret the chart makes the HMAC key Secret (random; reused from the cluster on upgrades)."""
    rendered = render(chart, {"sharedCache": {"enabled": True, "url": "redis://valkey.cache.svc:6379"}})
    validate_kinds(rendered)
    key = secret_data(rendered.one("Secret", f"{RELEASE}-shared-cache"))["hmac-key"]
    assert len(key) == 64
    again = secret_data(
        render(chart, {"sharedCache": {"enabled": True, "url": "redis://valkey.cache.svc:6379"}}).one(
            "Secret", f"{RELEASE}-shared-cache"
        )
    )["hmac-key"]
    assert again != key  # offline rendering cannot look the Secret up: existingSecret is the GitOps way
    pod = check_in_pod(rendered, tmp_path, cluster_objects)
    assert pod.check.returncode == 0, pod.check.stderr
    shared = load_config(pod.path).cache.shared
    assert shared is not None and shared.hmac_key == key and shared.password is None


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ({"sharedCache": {"enabled": True}}, "sharedCache.url: set the redis:// or rediss:// (TLS) URL"),
        (
            {"sharedCache": {"enabled": True, "url": "redis://c:6379", "caBundle": "PEM"}},
            "sharedCache.caBundle needs a rediss:// (TLS) url",
        ),
        (
            {"sharedCache": {"enabled": True, "url": "redis://c:6379", "passwordKey": "pw"}},
            "the chart does not store cache passwords",
        ),
        (
            {
                "sharedCache": {"enabled": True, "url": "redis://c:6379"},
                "config": {"cache": {"shared": {"hmacKeyFile": "/k"}}},
            },
            "config.cache.shared.hmacKeyFile is set by the chart from sharedCache",
        ),
    ],
)
def test_shared_cache_misconfiguration_fails_the_render(
    chart: helm.Chart, values: dict[str, Any], expected: str
) -> None:
    with pytest.raises(helm.HelmRenderError) as exc:
        render(chart, values)
    assert expected in str(exc.value)


def test_image_by_digest(chart: helm.Chart) -> None:
    digest = "sha256:" + "ab" * 32
    rendered = render(chart, {"image": {"repository": "registry.example/referee", "digest": digest}})
    assert rendered.container()["image"] == f"registry.example/referee@{digest}"
    assert render(chart).container()["image"] == "ghcr.io/referee-dev/referee:0.1.0"


def test_notation_trust_store_given_inline_passes_in_the_pod(
    chart: helm.Chart, tmp_path: Path, cluster_objects: Sources
) -> None:
    """Notation trust stores refuse symbolic links (Notary Project rule) and every file of a ConfigMap or
    Secret volume is one, so the chart's documented route is inline PEM in ``config`` (docs/deploy.md)."""
    ca = trustme.CA(key_type=trustme.KeyType.RSA).cert_pem.bytes().decode()
    verifier = {
        "name": "notation-ci",
        "type": "notation",
        "trustPolicy": {
            "version": "1.0",
            "trustPolicies": [
                {
                    "name": "all",
                    "registryScopes": ["*"],
                    "signatureVerification": {"level": "strict"},
                    "trustStores": ["ca:ci"],
                    "trustedIdentities": ["*"],
                }
            ],
        },
        "trustStores": {"ca": {"ci": [ca]}},
    }
    config = {"verifiers": [verifier], "policy": {"type": "required-verifiers", "required": ["notation-ci"]}}
    pod = check_in_pod(render(chart, {"config": config}), tmp_path / "inline", cluster_objects)
    assert pod.check.returncode == 0, pod.check.stderr


def test_deploy_guide_values_render_and_pass_config_check(
    chart: helm.Chart, tmp_path: Path, gatekeeper_secret: dict[str, bytes]
) -> None:
    """The values file docs/deploy.md walks a new user through, with a real key and digest filled in."""
    guide = (REPO / "docs" / "deploy.md").read_text()
    block = next(b for b in guide.split("```yaml\n")[1:] if b.startswith("# referee-values.yaml"))
    values = yaml.safe_load(block.split("```", 1)[0])
    values["image"]["digest"] = "sha256:" + "0" * 64
    assert values["trust"][0]["files"]["cosign.pub"].startswith("-----BEGIN PUBLIC KEY-----")
    values["trust"][0]["files"]["cosign.pub"] = public_pem()
    rendered = render_chart(chart, values)
    validate_kinds(rendered)
    cluster: Sources = {
        ("Secret", CLIENT_CA_SECRET): gatekeeper_secret,
        ("Secret", "ghcr-pull"): {"password": b"read-token"},
    }
    pod = check_in_pod(rendered, tmp_path, cluster)
    assert pod.check.returncode == 0, pod.check.stderr
    config = load_config(pod.path)
    assert [v.name for v in config.verifiers] == ["ci-cosign", "sbom"]
    assert config.registries.host_config("ghcr.io").credentials is not None


def test_mutators_never_cover_referees_own_namespace(chart: helm.Chart) -> None:
    """Assigns call referee-mutate with failurePolicy Fail: Referee's own pods must be excluded wherever the
    chart is installed, or Referee could never start."""
    values = {"gatekeeper": {"mutation": {"enabled": True}, "clientCA": {"namespace": "team-security"}}}
    rendered = render(chart, values, namespace="team-security")
    assigns = rendered.all("Assign")
    assert len(assigns) == len(list((REPO / "gatekeeper" / "mutation").glob("*.yaml")))
    for assign in assigns:
        assert "team-security" in assign["spec"]["match"]["excludedNamespaces"], assign["metadata"]["name"]
