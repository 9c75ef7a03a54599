"""The Helm chart ``helm/referee`` as the real Helm engine renders it (helm-python-sdk), and the referee container's
filesystem as the kubelet would lay it out from the rendered objects.

``materialize`` writes every volumeMount of the Deployment's container under a temporary root, filled from the
rendered ConfigMaps/Secrets or from stand-ins for the Secrets the cluster provides, with the kubelet's atomic-writer
layout (``..data`` links); ``rebase`` maps absolute in-pod paths of the configuration onto that root. Used by the
chart tests (``referee config check`` on the result) and by the real-chain e2e tests (``referee serve`` on it).
"""

from __future__ import annotations

import base64
import copy
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import helm_python as helm
import yaml

__all__ = [
    "CHART",
    "OFFLINE_CA",
    "Rendered",
    "Sources",
    "materialize",
    "merged",
    "rebase",
    "render_chart",
    "secret_data",
]

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "helm" / "referee"

helm.disable_logging()  # Helm logs an INFO line for the files/gatekeeper link on every load

# (kind, name) -> {key: bytes}: the Secrets and ConfigMaps the cluster provides (e.g. Gatekeeper's CA Secret).
Sources = dict[tuple[str, str], dict[str, bytes]]


def merged(*layers: Mapping[str, Any]) -> dict[str, Any]:
    """Deep-merge value layers (later wins; lists are replaced)."""
    out: dict[str, Any] = {}
    for layer in layers:
        for key, val in layer.items():
            if isinstance(val, Mapping) and isinstance(out.get(key), dict):
                out[key] = merged(out[key], val)
            else:
                out[key] = copy.deepcopy(val)
    return out


@dataclass
class Rendered:
    docs: list[dict[str, Any]]
    notes: str
    release: str = "referee"

    def all(self, kind: str) -> list[dict[str, Any]]:
        return [d for d in self.docs if d["kind"] == kind]

    def find(self, kind: str, name: str) -> dict[str, Any] | None:
        return next((d for d in self.all(kind) if d["metadata"]["name"] == name), None)

    def one(self, kind: str, name: str | None = None) -> dict[str, Any]:
        found = [d for d in self.all(kind) if name is None or d["metadata"]["name"] == name]
        assert len(found) == 1, f"expected one {kind} {name or ''}, got {[d['metadata']['name'] for d in found]}"
        return found[0]

    @property
    def kinds(self) -> list[str]:
        return sorted(d["kind"] for d in self.docs)

    def config(self) -> dict[str, Any]:
        cm = self.one("ConfigMap", f"{self.release}-config")
        doc: dict[str, Any] = yaml.safe_load(cm["data"]["referee.yaml"])
        return doc

    def pod(self) -> dict[str, Any]:
        spec: dict[str, Any] = self.one("Deployment")["spec"]["template"]["spec"]
        return spec

    def container(self) -> dict[str, Any]:
        """The referee container (``extraContainers`` may add sidecars beside it)."""
        [c] = [c for c in self.pod()["containers"] if c["name"] == "referee"]
        found: dict[str, Any] = c
        return found


# The suite renders offline, like ``helm template``, where the chart refuses to mint a CA unless told it may
# (``tls.allowOfflineCA``): renders opt in unless their values say otherwise.
OFFLINE_CA: dict[str, Any] = {"tls": {"allowOfflineCA": True}}


def render_chart(
    chart: helm.Chart, values: Mapping[str, Any], *, release: str, namespace: str, offline_ca: bool = True
) -> Rendered:
    """``helm template`` of ``chart`` with ``values`` (every document parsed; NOTES kept apart). ``offline_ca``
    sets ``tls.allowOfflineCA`` when ``values`` leave it unset; ``False`` renders the values exactly as given."""
    tls = values.get("tls")
    if offline_ca and not (isinstance(tls, Mapping) and "allowOfflineCA" in tls):
        values = merged(values, OFFLINE_CA)
    out = chart.render(dict(values), name=release, namespace=namespace)
    docs: list[dict[str, Any]] = []
    notes = ""
    for path, text in out.items():
        if path.endswith("NOTES.txt"):
            notes = text
            continue
        docs.extend(d for d in yaml.safe_load_all(text) if d)
    return Rendered(docs, notes, release)


def secret_data(secret: Mapping[str, Any]) -> dict[str, bytes]:
    return {k: base64.b64decode(v) for k, v in (secret.get("data") or {}).items()}


def _source(rendered: Rendered, external: Sources, kind: str, name: str) -> dict[str, bytes]:
    doc = rendered.find(kind, name)
    if doc is None:
        assert (kind, name) in external, f"{kind} {name} is neither rendered by the chart nor provided by the test"
        return external[(kind, name)]
    if kind == "Secret":
        return secret_data(doc)
    return {k: v.encode() for k, v in (doc.get("data") or {}).items()}


def _project(data: Mapping[str, bytes], items: list[dict[str, str]] | None) -> dict[str, bytes]:
    if items is None:
        return dict(data)
    out = {}
    for item in items:
        assert item["key"] in data, f"key {item['key']!r} is not in the source (has {sorted(data)})"
        out[item["path"]] = data[item["key"]]
    return out


def _volume_files(volume: Mapping[str, Any], rendered: Rendered, external: Sources) -> dict[str, bytes]:
    if "configMap" in volume:
        cm = volume["configMap"]
        return _project(_source(rendered, external, "ConfigMap", cm["name"]), cm.get("items"))
    if "secret" in volume:
        sec = volume["secret"]
        return _project(_source(rendered, external, "Secret", sec["secretName"]), sec.get("items"))
    if "projected" in volume:
        files: dict[str, bytes] = {}
        for src in volume["projected"]["sources"]:
            if "serviceAccountToken" in src:  # the kubelet writes a token for the audience; a stand-in here
                token = src["serviceAccountToken"]
                files[token["path"]] = f"projected-token-for-{token['audience']}".encode()
                continue
            kind, body = ("Secret", src["secret"]) if "secret" in src else ("ConfigMap", src["configMap"])
            files.update(_project(_source(rendered, external, kind, body["name"]), body.get("items")))
        return files
    assert "emptyDir" in volume, volume
    return {}


def materialize(rendered: Rendered, root: Path, external: Sources) -> dict[str, Path]:
    """Write every volumeMount of the referee container under ``root``; returns mountPath -> directory.

    ConfigMap, Secret and projected volumes get the kubelet's atomic-writer layout: the files live in a
    timestamped directory, ``..data`` links to it and each top-level entry is a symbolic link through
    ``..data`` (so a reader that refuses symbolic links fails here as it would in the pod)."""
    volumes = {v["name"]: v for v in rendered.pod()["volumes"]}
    mounts: dict[str, Path] = {}
    for mount in rendered.container()["volumeMounts"]:
        target = root / mount["mountPath"].lstrip("/")
        target.mkdir(parents=True)
        volume = volumes[mount["name"]]
        files = _volume_files(volume, rendered, external)
        if "emptyDir" not in volume:
            payload = target / "..2026_01_01_00_00_00.000000001"
            payload.mkdir()
            (target / "..data").symlink_to(payload.name)
            for top in sorted({rel.split("/", 1)[0] for rel in files}):
                (target / top).symlink_to(f"..data/{top}")
            base = payload
        else:
            base = target
        for rel, data in files.items():
            assert not rel.startswith("/") and ".." not in rel.split("/"), rel
            path = base / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
        mounts[mount["mountPath"]] = target
    return mounts


def rebase(node: Any, mounts: Mapping[str, Path]) -> Any:
    """``node`` with every absolute path under a mountPath moved to where ``materialize`` wrote that mount."""
    if isinstance(node, dict):
        return {k: rebase(v, mounts) for k, v in node.items()}
    if isinstance(node, list):
        return [rebase(v, mounts) for v in node]
    if isinstance(node, str) and node.startswith("/"):
        for mount_path in sorted(mounts, key=len, reverse=True):
            base = mount_path.rstrip("/")
            if node == base or node.startswith(base + "/"):
                return str(mounts[mount_path]) + node[len(base) :]
    return node
