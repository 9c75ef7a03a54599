"""A kubelet image credential provider plugin for the tests, and helpers to install and drive it.

Installed as an executable (``install_plugin``), it speaks the published exec API
(``credentialprovider.kubelet.k8s.io`` ``CredentialProviderRequest`` on stdin, ``CredentialProviderResponse``
on stdout, see kubernetes.io/docs/reference/config-api/kubelet-credentialprovider.v1/) the way the cloud
plugins do. What it answers is read, at each run, from the JSON control file named by the environment variable
``REFEREE_TEST_PLUGIN_CONTROL`` (set through the provider's ``env`` in the CredentialProviderConfig):

- ``mode``: ``ok`` (default), ``garbage`` (not JSON), ``wrong-kind``, ``wrong-api``, ``bad-key-type``, ``huge``
  (more stdout than any limit), ``exit`` (status ``exitCode``), ``sleep`` (starts a grandchild, then sleeps);
- ``cacheKeyType``, ``cacheDuration`` (omitted when null), ``auth`` (the response's map);
- ``stderr``: text written to stderr before answering (a plugin leaking secrets there);
- ``log``: a file to which every run appends one JSON line (pid, image, apiVersion, token, annotations).

The plugin checks its request strictly and exits 3 on anything off-schema.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

CONTROL_ENV = "REFEREE_TEST_PLUGIN_CONTROL"
API_VERSIONS = (
    "credentialprovider.kubelet.k8s.io/v1",
    "credentialprovider.kubelet.k8s.io/v1beta1",
    "credentialprovider.kubelet.k8s.io/v1alpha1",
)
REQUEST_FIELDS = {"apiVersion", "kind", "image", "serviceAccountToken", "serviceAccountAnnotations"}


def _fail(message: str) -> None:
    sys.stderr.write(f"test plugin: {message}\n")
    sys.exit(3)


def main() -> None:
    control: dict[str, Any] = json.loads(Path(os.environ[CONTROL_ENV]).read_text())
    request = json.loads(sys.stdin.buffer.read())
    if not isinstance(request, dict) or set(request) - REQUEST_FIELDS:
        _fail(f"unexpected request fields {sorted(set(request) - REQUEST_FIELDS)}")
    if request.get("kind") != "CredentialProviderRequest" or request.get("apiVersion") not in API_VERSIONS:
        _fail("not a CredentialProviderRequest")
    if not isinstance(request.get("image"), str) or not request["image"]:
        _fail("no image")
    if control.get("log"):
        line = {
            "pid": os.getpid(),
            "image": request["image"],
            "apiVersion": request["apiVersion"],
            "token": request.get("serviceAccountToken"),
            "annotations": request.get("serviceAccountAnnotations"),
            "args": sys.argv[1:],
        }
        with open(control["log"], "a") as fh:
            fh.write(json.dumps(line) + "\n")
    if control.get("stderr"):
        sys.stderr.write(control["stderr"] + "\n")
        sys.stderr.flush()
    mode = control.get("mode", "ok")
    if mode == "exit":
        sys.exit(int(control.get("exitCode", 1)))
    if mode == "sleep":
        child = subprocess.Popen(["sleep", "300"])
        if control.get("log"):
            with open(control["log"], "a") as fh:
                fh.write(json.dumps({"grandchild": child.pid}) + "\n")
        time.sleep(300)
    if mode == "garbage":
        sys.stdout.write("this is not json " + json.dumps(control.get("auth")) + "\n")
        return
    if mode == "huge":
        sys.stdout.write("x" * (4 * 1024 * 1024))
        return
    response: dict[str, Any] = {
        "apiVersion": request["apiVersion"],
        "kind": "CredentialProviderResponse",
        "cacheKeyType": control.get("cacheKeyType", "Registry"),
        "auth": control.get("auth", {}),
    }
    if control.get("cacheDuration") is not None:
        response["cacheDuration"] = control["cacheDuration"]
    if mode == "wrong-kind":
        response["kind"] = "ExecCredential"
    if mode == "wrong-api":
        response["apiVersion"] = "credentialprovider.kubelet.k8s.io/v0"
    if mode == "bad-key-type":
        response["cacheKeyType"] = "Forever"
    sys.stdout.write(json.dumps(response))


def install_plugin(bin_dir: Path, name: str = "test-credential-provider") -> Path:
    """Write this module as an executable plugin ``bin_dir/name`` run by the test interpreter."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    path = bin_dir / name
    path.write_text(f"#!{sys.executable} -I\n" + Path(__file__).read_text())
    path.chmod(0o755)
    return path


class PluginControl:
    """The control file and run log of one test's plugin."""

    def __init__(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.path = directory / "control.json"
        self.log = directory / "runs.jsonl"
        self.set(mode="ok")

    def set(self, **settings: Any) -> None:
        """Replace the settings (atomically, so a run never reads half a file)."""
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"log": str(self.log), **settings}))
        tmp.replace(self.path)

    def runs(self) -> list[dict[str, Any]]:
        if not self.log.exists():
            return []
        lines = [json.loads(line) for line in self.log.read_text().splitlines() if line.strip()]
        return [line for line in lines if "image" in line]

    def grandchildren(self) -> list[int]:
        if not self.log.exists():
            return []
        lines = [json.loads(line) for line in self.log.read_text().splitlines() if line.strip()]
        return [int(line["grandchild"]) for line in lines if "grandchild" in line]


def provider_config(
    directory: Path,
    control: PluginControl,
    match_images: list[str],
    *,
    name: str = "test-credential-provider",
    default_cache_duration: str = "1h",
    api_version: str = "credentialprovider.kubelet.k8s.io/v1",
    extra: Mapping[str, Any] | None = None,
    config_api_version: str = "kubelet.config.k8s.io/v1",
) -> Path:
    """A kubelet CredentialProviderConfig file with one provider pointing at the test plugin."""
    provider: dict[str, Any] = {
        "name": name,
        "matchImages": match_images,
        "defaultCacheDuration": default_cache_duration,
        "apiVersion": api_version,
        "args": ["get-credentials"],
        "env": [{"name": CONTROL_ENV, "value": str(control.path)}],
    }
    provider.update(extra or {})
    doc = {"apiVersion": config_api_version, "kind": "CredentialProviderConfig", "providers": [provider]}
    path = directory / "credential-providers.yaml"
    path.write_text(json.dumps(doc, indent=2))
    return path


if __name__ == "__main__":
    main()
