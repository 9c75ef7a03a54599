"""The chart's registry credential values: pull secrets, kubelet credential providers (CredentialProviderConfig,
plugin binaries from an image through an init container, projected service-account tokens) and the
ServiceAccount annotations of IRSA / GKE Workload Identity / Azure Workload Identity.

Rendered by the real Helm engine; the pod's filesystem is materialised as in ``test_helm`` and the init container's
copy is done by hand (the plugin image is not runnable here) before ``referee config check`` runs on the result.
"""

from __future__ import annotations

import base64
import json
import subprocess
from pathlib import Path
from typing import Any

import helm_python as helm
import pytest
import trustme
import yaml

from provider.config import load_config
from tests.integration.test_helm import (
    BASE,
    CLIENT_CA_SECRET,
    REFEREE,
    RELEASE,
    Rendered,
    Sources,
    chart,
    gatekeeper_secret,
    materialize,
    merged,
    render,
    validate_kinds,
)
from tests.integration.test_helm import (
    rebase as _rebase,
)
from tests.support.credential_plugin import install_plugin

__all__ = ["chart", "gatekeeper_secret"]  # module fixtures shared with test_helm

ECR_PROVIDER = {
    "name": "ecr-credential-provider",
    "matchImages": ["*.dkr.ecr.*.amazonaws.com", "*.dkr.ecr.*.amazonaws.com.cn"],
    "defaultCacheDuration": "12h",
    "apiVersion": "credentialprovider.kubelet.k8s.io/v1",
    "args": ["get-credentials"],
}
ACR_PROVIDER = {
    "name": "acr-credential-provider",
    "matchImages": ["*.azurecr.io"],
    "defaultCacheDuration": "10m",
    "apiVersion": "credentialprovider.kubelet.k8s.io/v1",
    "args": ["/etc/referee/trust/azure/azure.json"],
    "tokenAttributes": {
        "serviceAccountTokenAudience": "api://AzureADTokenExchange",
        "cacheType": "ServiceAccount",
        "requireServiceAccount": True,
        "requiredServiceAccountAnnotationKeys": ["azure.workload.identity/client-id"],
    },
}


def _values(**credentials: Any) -> dict[str, Any]:
    return merged(
        BASE,
        {
            "serviceAccount": {
                "annotations": {
                    "eks.amazonaws.com/role-arn": "arn:aws:iam::111122223333:role/referee-ecr-read",
                    "azure.workload.identity/client-id": "00000000-0000-0000-0000-000000000001",
                }
            },
            "podLabels": {"azure.workload.identity/use": "true"},
            "registryCredentials": credentials,
            "trust": [{"name": "azure", "files": {"azure.json": json.dumps({"cloud": "AzurePublicCloud"})}}],
        },
    )


def _enabled(**extra: Any) -> dict[str, Any]:
    section: dict[str, Any] = {
        "enabled": True,
        "config": {
            "apiVersion": "kubelet.config.k8s.io/v1",
            "kind": "CredentialProviderConfig",
            "providers": [ECR_PROVIDER, ACR_PROVIDER],
        },
        "pluginImage": {"repository": "registry.example/cloud-credential-providers", "tag": "1.31.0", "path": "/bin"},
        "serviceAccountTokens": [{"audience": "api://AzureADTokenExchange", "expirationSeconds": 3600}],
    }
    section.update(extra)
    return section


def _cluster() -> Sources:
    """The Secrets and ConfigMaps the cluster holds beside the chart."""
    docker = {"auths": {"registry.example": {"auth": base64.b64encode(b"robot:pull-pass").decode()}}}
    return {
        ("Secret", CLIENT_CA_SECRET): {"ca.crt": trustme.CA().cert_pem.bytes()},
        ("Secret", "team-a-pull"): {".dockerconfigjson": json.dumps(docker).encode()},
        ("Secret", "shared-pull"): {".dockerconfigjson": json.dumps({"auths": {}}).encode()},
        ("ConfigMap", "node-credential-providers"): {"config.yaml": yaml.safe_dump(_NODE_CONFIG).encode()},
    }


_NODE_CONFIG = {
    "apiVersion": "kubelet.config.k8s.io/v1",
    "kind": "CredentialProviderConfig",
    "providers": [ECR_PROVIDER],
}


def _check_in_pod(rendered: Rendered, root: Path, external: Sources) -> tuple[subprocess.CompletedProcess[str], Path]:
    """Materialise the pod, put the plugins where the init container (or the image) would, run the check."""
    mounts = materialize(rendered, root, external)
    config = rendered.config()
    providers = config["registries"].get("credentialProviders")
    if providers is not None:
        bin_dir = Path(_rebase(providers["binDir"], mounts))
        if not bin_dir.is_relative_to(root):  # a directory of the Referee image: a stand-in for it
            bin_dir = root / "image" / providers["binDir"].lstrip("/")
            mounts[providers["binDir"]] = bin_dir
        stored = yaml.safe_load(Path(_rebase(providers["config"], mounts)).read_text())
        for provider in stored["providers"]:
            install_plugin(bin_dir, provider["name"])
    checked = root / "checked" / "referee.yaml"
    checked.parent.mkdir(parents=True)
    checked.write_text(yaml.safe_dump(_rebase(config, mounts), sort_keys=False))
    result = subprocess.run(
        [str(REFEREE), "config", "check", str(checked)], capture_output=True, text=True, timeout=60, check=False
    )
    return result, checked


def test_credential_providers_with_a_plugin_image(chart: helm.Chart, tmp_path: Path) -> None:
    rendered = render(chart, _values(credentialProviders=_enabled(), pullSecrets=["team-a-pull", "shared-pull"]))
    validate_kinds(rendered)
    pod = rendered.pod()
    (init,) = pod["initContainers"]
    assert init["image"] == "registry.example/cloud-credential-providers:1.31.0"
    assert init["command"] == ["cp", "-R", "/bin/.", "/etc/referee/credential-providers/bin/"]
    assert init["securityContext"]["readOnlyRootFilesystem"] is True
    assert init["securityContext"]["allowPrivilegeEscalation"] is False
    assert init["volumeMounts"] == [
        {"name": "credential-provider-bin", "mountPath": "/etc/referee/credential-providers/bin"}
    ]
    mounts = {m["mountPath"]: m for m in rendered.container()["volumeMounts"]}
    assert mounts["/etc/referee/credential-providers/bin"]["readOnly"] is True
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["credential-provider-bin"] == {"name": "credential-provider-bin", "emptyDir": {"sizeLimit": "256Mi"}}
    (token,) = volumes["service-account-tokens"]["projected"]["sources"]
    assert token == {
        "serviceAccountToken": {"audience": "api://AzureADTokenExchange", "expirationSeconds": 3600, "path": "0/token"}
    }
    assert volumes["pull-secret-0"]["secret"]["secretName"] == "team-a-pull"
    assert volumes["pull-secret-1"]["secret"]["secretName"] == "shared-pull"
    # the ServiceAccount carries the workload identity annotations; the pod the Azure label
    account = rendered.one("ServiceAccount")
    assert account["metadata"]["annotations"]["eks.amazonaws.com/role-arn"].endswith("role/referee-ecr-read")
    assert rendered.one("Deployment")["spec"]["template"]["metadata"]["labels"]["azure.workload.identity/use"] == "true"
    # the kubelet document is stored as given
    stored = yaml.safe_load(rendered.one("ConfigMap", f"{RELEASE}-credential-providers")["data"]["config.yaml"])
    assert stored["providers"] == [ECR_PROVIDER, ACR_PROVIDER]
    section = rendered.config()["registries"]
    assert section["pullSecrets"] == ["/etc/referee/pull-secrets/team-a-pull", "/etc/referee/pull-secrets/shared-pull"]
    assert section["credentialProviders"]["config"] == "/etc/referee/credential-providers/config/config.yaml"
    assert section["credentialProviders"]["binDir"] == "/etc/referee/credential-providers/bin"
    assert section["credentialProviders"]["serviceAccountTokens"] == [
        {"audience": "api://AzureADTokenExchange", "path": "/var/run/secrets/referee/tokens/0/token"}
    ]

    result, checked = _check_in_pod(rendered, tmp_path, _cluster())
    assert result.returncode == 0, result.stderr
    config = load_config(checked)
    providers = config.registries.credential_providers
    assert providers is not None
    ecr, acr = providers.providers
    assert ecr.name == "ecr-credential-provider" and ecr.token_attributes is None
    assert acr.token_attributes is not None and acr.token_file is not None
    assert Path(acr.token_file).read_text() == "projected-token-for-api://AzureADTokenExchange"
    assert dict(acr.service_account_annotations) == {
        "azure.workload.identity/client-id": "00000000-0000-0000-0000-000000000001"
    }
    entries = config.registries.credential_entries
    assert [(e.pattern.text, e.source) for e in entries] == [("registry.example", "registries.pullSecrets[0]")]


def test_plugins_inside_the_referee_image_and_an_existing_config_map(chart: helm.Chart, tmp_path: Path) -> None:
    section = _enabled(
        config={},
        existingConfigMap="node-credential-providers",
        pluginImage={"repository": ""},
        serviceAccountTokens=[],
    )
    rendered = render(chart, _values(credentialProviders=section))
    validate_kinds(rendered)
    result, checked = _check_in_pod(rendered, tmp_path, _cluster())
    assert result.returncode == 0, result.stderr
    providers = load_config(checked).registries.credential_providers
    assert providers is not None and [p.name for p in providers.providers] == ["ecr-credential-provider"]
    assert "initContainers" not in rendered.pod()
    assert rendered.find("ConfigMap", f"{RELEASE}-credential-providers") is None
    volumes = {v["name"]: v for v in rendered.pod()["volumes"]}
    assert volumes["credential-provider-config"]["configMap"]["name"] == "node-credential-providers"
    assert "service-account-tokens" not in volumes
    registries = rendered.config()["registries"]["credentialProviders"]
    assert registries["binDir"] == "/usr/local/lib/referee/credential-providers"
    assert registries["serviceAccountAnnotations"]["eks.amazonaws.com/role-arn"].endswith("referee-ecr-read")


@pytest.mark.parametrize(
    ("credentials", "config", "expected"),
    [
        (
            {"credentialProviders": {"enabled": True}},
            {},
            "needs config (a kubelet CredentialProviderConfig) or existingConfigMap",
        ),
        (
            {"credentialProviders": _enabled(existingConfigMap="x")},
            {},
            "set config or existingConfigMap, not both",
        ),
        (
            {"credentialProviders": _enabled()},
            {"registries": {"credentialProviders": {"config": "/x", "binDir": "/y"}}},
            "config.registries.credentialProviders and registryCredentials.credentialProviders.enabled both set",
        ),
        (
            {"credentialProviders": _enabled(serviceAccountTokens=[{"audience": "a"}, {"audience": "a"}])},
            {},
            'audience "a" listed twice',
        ),
        (
            {"credentialProviders": _enabled(pluginImage={"repository": "r.example/p", "tag": ""})},
            {},
            "pluginImage: set tag or digest",
        ),
        ({"pullSecrets": ["a"]}, {"registries": {"pullSecrets": ["/x"]}}, "pullSecrets both set"),
    ],
)
def test_contradictions_fail_the_render(
    chart: helm.Chart, credentials: dict[str, Any], config: dict[str, Any], expected: str
) -> None:
    with pytest.raises(helm.HelmRenderError) as caught:
        render(chart, _values(**credentials), {"config": config})
    assert expected in str(caught.value)


@pytest.mark.parametrize(
    "section",
    [
        _enabled(config={"kind": "CredentialProviderConfig", "providers": [{"name": "x", "matchImages": []}]}),
        _enabled(config={"providers": [{**ECR_PROVIDER, "matchimages": ["x"]}]}),
        _enabled(execTimeout="ten seconds"),
        _enabled(pluginImage={"repository": "r", "tag": "1", "path": "relative/bin"}),
    ],
)
def test_schema_rejects_bad_credential_provider_values(chart: helm.Chart, section: dict[str, Any]) -> None:
    with pytest.raises(helm.HelmValuesError):
        chart.validate_schema(_values(credentialProviders=section))


def test_deploy_guide_cloud_examples_pass_config_check(chart: helm.Chart, tmp_path: Path) -> None:
    """The values files of docs/deploy.md's ECR, Artifact Registry and ACR sections render and pass the check."""
    from tests.integration.test_helm import REPO

    text = (REPO / "docs" / "deploy.md").read_text()
    blocks = _values_blocks(text)
    assert set(blocks) >= {"values-ecr.yaml", "values-gcp.yaml", "values-acr.yaml"}, sorted(blocks)
    for name in ("values-ecr.yaml", "values-gcp.yaml", "values-acr.yaml"):
        values = merged(BASE, yaml.safe_load(blocks[name]))
        rendered = render(chart, values)
        validate_kinds(rendered)
        result, _ = _check_in_pod(rendered, tmp_path / name, _cluster())
        assert result.returncode == 0, (name, result.stderr)


def _values_blocks(markdown: str) -> dict[str, str]:
    """```yaml fenced blocks whose first line is ``# <file name>``."""
    blocks: dict[str, str] = {}
    parts = markdown.split("```yaml\n")
    for part in parts[1:]:
        body = part.split("```", 1)[0]
        first = body.splitlines()[0] if body else ""
        if first.startswith("# values-"):
            blocks[first[2:].strip()] = body
    return blocks
