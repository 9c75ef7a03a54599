"""The Gatekeeper integration under the real OPA engine (opa-golib-python-bindings, OPA 1.x).

(a) every ``test_*`` rule of every ``rego/<template>/src_test.rego`` (``with external_data as …`` mocks);
(b) end to end: the Rego embedded in ``gatekeeper/templates/*.yaml`` evaluated on Gatekeeper-shaped admission
    reviews, with ``external_data`` registered as a Python function that sends a real ProviderRequest over mutual
    TLS to a running Referee backed by the real registry holding signed and unsigned images;
(c) the generated templates are in sync with their sources (``scripts/gen_gatekeeper.py --check``);
(d) every YAML under ``gatekeeper/`` parses and the Gatekeeper resources validate against the CRD schemas in
    ``tests/data/gatekeeper-crds``; the samples give the outcome their names promise.

Gatekeeper evaluates builtins non-strictly (``count(null)`` is undefined there, an error here), so the mocks and
the shim below hand the templates exactly the shapes Gatekeeper does, including ``responses: null``.
"""

from __future__ import annotations

import copy
import http.client
import json
import re
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate  # type: ignore[import-untyped]
import pytest
import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from opa_bindings import OpaEngine
from opa_bindings.engine import OpaError

from provider.config import load_config_bytes
from provider.server.app import RefereeServer
from tests.integration.conftest import SignedSet
from tests.support.referee import PROVIDER_API, Pki, server_section, write_config
from tests.support.registry import LoopThread

ROOT = Path(__file__).resolve().parents[2]
REGO = ROOT / "rego"
GATEKEEPER = ROOT / "gatekeeper"
CRDS = ROOT / "tests" / "data" / "gatekeeper-crds"
TEMPLATES = sorted(p.parent.name for p in REGO.glob("*/src.rego"))
TEST_RULE = re.compile(r"^(test_\w+)\s+if\b", re.MULTILINE)
VERIFIED, EVIDENCE = "refereeverifiedimages", "refereerequiredevidence"
KINDS = {
    "Pod": ("", "v1"),
    "Deployment": ("apps", "v1"),
    "StatefulSet": ("apps", "v1"),
    "DaemonSet": ("apps", "v1"),
    "ReplicaSet": ("apps", "v1"),
    "Job": ("batch", "v1"),
    "CronJob": ("batch", "v1"),
}


def _unmocked(request: Any) -> Any:
    raise RuntimeError(f"external_data called without a mock: {request!r}")


# -- (a) src_test.rego ----------------------------------------------------------------------------------------------


def _unit_cases() -> list[tuple[str, str]]:
    return [
        (name, rule) for name in TEMPLATES for rule in TEST_RULE.findall((REGO / name / "src_test.rego").read_text())
    ]


@pytest.fixture(scope="module")
def unit_engines() -> Iterator[dict[str, OpaEngine]]:
    engines: dict[str, OpaEngine] = {}
    for name in TEMPLATES:
        engine = OpaEngine()
        engine.register_function("external_data", _unmocked)
        engine.add_policy("src.rego", (REGO / name / "src.rego").read_text())
        engine.add_policy("src_test.rego", (REGO / name / "src_test.rego").read_text())
        engines[name] = engine
    yield engines
    for engine in engines.values():
        engine.close()


@pytest.mark.parametrize(("template", "rule"), _unit_cases(), ids=[f"{t}::{r}" for t, r in _unit_cases()])
def test_rego_unit_rule(unit_engines: dict[str, OpaEngine], template: str, rule: str) -> None:
    package = f"{template}_test"
    try:
        result = unit_engines[template].eval_document(f"{package}.{rule}")
    except OpaError as exc:
        pytest.fail(f"{template}/src_test.rego {rule}: {exc}", pytrace=False)
    assert result is True


def test_every_template_has_unit_rules_for_the_gatekeeper_response_shapes() -> None:
    assert TEMPLATES == [EVIDENCE, VERIFIED]
    for name in TEMPLATES:
        text = (REGO / name / "src_test.rego").read_text()
        assert text.startswith(f"package {name}_test\n")
        assert len(TEST_RULE.findall(text)) >= 15, name
        assert re.search(r'"status_code":\s*0\b', text), f"{name}: no full-cache-hit shape (status_code 0)"
        assert re.search(r'"responses":\s*null', text), f"{name}: no failure shape (responses: null)"


# -- (b) end to end: admission review → template → external_data → Referee (mTLS) → registry → verdict -----------


def _failure(status: int, message: str) -> dict[str, Any]:
    """What frameworks' HandleError gives Rego: both lists null."""
    return {"responses": None, "errors": None, "status_code": status, "system_error": message}


class GatekeeperExternalData:
    """Stands in for frameworks' ``external_data`` builtin and its response cache.

    One POST per call carrying only the cache misses; items (values and errors) cached per (provider, key);
    ``status_code`` 0 when every key came from the cache; transport failures, non-JSON bodies and unknown
    providers give the null-list failure shape. TLS 1.3, Gatekeeper's client certificate, and only the
    Provider's caBundle as trust, as in Gatekeeper.
    """

    def __init__(self, pki: Pki) -> None:
        self.providers: dict[str, str] = {}
        self.ssl_context = pki.client_context()
        self.cache: dict[tuple[str, str], tuple[str, Any]] = {}
        self.cache_enabled = True
        self.requests: list[list[str]] = []
        self.last: dict[str, Any] = {}

    def reset(self) -> None:
        self.cache.clear()
        self.requests.clear()
        self.cache_enabled = True

    def __call__(self, request: dict[str, Any]) -> dict[str, Any]:
        self.last = self._call(request)
        return self.last

    def _call(self, request: dict[str, Any]) -> dict[str, Any]:
        provider, keys = request["provider"], list(request["keys"])
        url = self.providers.get(provider)
        if url is None:
            return _failure(400, f"failed to get Provider {provider}")
        merged = {k: self.cache[(provider, k)] for k in keys if self.cache_enabled and (provider, k) in self.cache}
        misses = [k for k in keys if k not in merged]
        status, system_error = 0, ""
        if misses:
            try:
                status, body = self._post(url, misses)
                document = json.loads(body)
                response = document.get("response") or {}
            except (OSError, http.client.HTTPException, ValueError, AttributeError) as exc:
                return _failure(500, f"Post {url!r}: {exc}")
            system_error = response.get("systemError") or ""
            for item in response.get("items") or []:
                entry = ("error", item["error"]) if item.get("error") else ("value", item.get("value"))
                merged[item["key"]] = entry
                self.cache[(provider, item["key"])] = entry
        return {
            "responses": [[k, v] for k, (kind, v) in merged.items() if kind == "value"],
            "errors": [[k, v] for k, (kind, v) in merged.items() if kind == "error"],
            "status_code": status,
            "system_error": system_error,
        }

    def _post(self, url: str, keys: list[str]) -> tuple[int, bytes]:
        self.requests.append(keys)
        host_port, _, path = url.removeprefix("https://").partition("/")
        host, _, port = host_port.partition(":")
        connection = http.client.HTTPSConnection(host, int(port), context=self.ssl_context, timeout=10)
        try:
            body = json.dumps({"apiVersion": PROVIDER_API, "kind": "ProviderRequest", "request": {"keys": keys}})
            connection.request("POST", "/" + path, body=body, headers={"Content-Type": "application/json"})
            answer = connection.getresponse()
            return answer.status, answer.read()
        finally:
            connection.close()


class RefereeThread:
    """A real Referee server on its own event loop, so the synchronous OPA callback can call it."""

    def __init__(self, config_path: Path) -> None:
        self._loop = LoopThread("referee-for-opa")

        async def start() -> RefereeServer:
            server = RefereeServer(str(config_path))
            await server.start()
            return server

        self.server = self._loop.run(start())
        self.verify_url = f"https://127.0.0.1:{self.server.port}/verify"

    def stop(self) -> None:
        try:
            self._loop.run(self.server.stop())
        finally:
            self._loop.stop()


def _referee_config(tmp: Path, signed: SignedSet, pki: Pki) -> Path:
    config = {
        "registries": {
            "allow": ["127.0.0.1:*"],
            "hosts": [{"host": signed.registry.host, "plainHttp": True}],
            "maxAttempts": 1,
            "requestTimeout": "1s",
        },
        "verifiers": [{"name": "cosign-ci", "type": "cosign", "keys": [str(signed.key_file)]}],
        "policy": {"type": "rules", "rules": [{"name": "signed-by-ci", "verifiers": ["cosign-ci"]}]},
        "server": server_section(pki),
    }
    return write_config(tmp / "referee.yaml", config)


def _embedded_rego(name: str) -> str:
    document = yaml.safe_load((GATEKEEPER / "templates" / f"{name}.yaml").read_text())
    rego: str = document["spec"]["targets"][0]["rego"]
    return rego


@pytest.fixture(scope="module")
def referee(signed_set: SignedSet, pki: Pki, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RefereeThread]:
    thread = RefereeThread(_referee_config(tmp_path_factory.mktemp("referee-opa"), signed_set, pki))
    yield thread
    thread.stop()


@pytest.fixture(scope="module")
def gatekeeper_engine(referee: RefereeThread, pki: Pki) -> Iterator[tuple[OpaEngine, GatekeeperExternalData]]:
    shim = GatekeeperExternalData(pki)
    engine = OpaEngine()
    engine.register_function("external_data", shim)
    for name in TEMPLATES:
        engine.add_policy(f"{name}.rego", _embedded_rego(name))
    yield engine, shim
    engine.close()


@pytest.fixture
def gk(gatekeeper_engine: tuple[OpaEngine, GatekeeperExternalData], referee: RefereeThread) -> Iterator[Gatekeeper]:
    engine, shim = gatekeeper_engine
    shim.reset()
    shim.providers = {"referee-verify": referee.verify_url}
    yield Gatekeeper(engine, shim)
    shim.reset()


class Gatekeeper:
    def __init__(self, engine: OpaEngine, shim: GatekeeperExternalData) -> None:
        self.engine = engine
        self.shim = shim

    def violations(self, template: str, review: dict[str, Any], parameters: dict[str, Any]) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self.engine.eval_document(
            f"{template}.violation", {"review": review, "parameters": parameters}
        )
        return result

    def messages(self, template: str, review: dict[str, Any], parameters: dict[str, Any]) -> list[str]:
        return sorted(v["msg"] for v in self.violations(template, review, parameters))


def admission(
    kind: str,
    containers: list[str],
    init: list[str] | None = None,
    *,
    namespace: str = "team-a",
    annotations: dict[str, str] | None = None,
) -> dict[str, Any]:
    """A Gatekeeper review (AdmissionRequest) creating ``kind`` with these images."""
    group, version = KINDS[kind]
    spec: dict[str, Any] = {"containers": [{"name": f"c{i}", "image": img} for i, img in enumerate(containers)]}
    if init:
        spec["initContainers"] = [{"name": f"i{i}", "image": img} for i, img in enumerate(init)]
    metadata: dict[str, Any] = {"name": "app", "namespace": namespace}
    if annotations:
        metadata["annotations"] = annotations
    template = {"metadata": {"labels": {"app": "app"}}, "spec": spec}
    body: dict[str, Any]
    if kind == "Pod":
        body = spec
    elif kind == "CronJob":
        body = {"schedule": "*/5 * * * *", "jobTemplate": {"spec": {"template": template}}}
    else:
        body = {"selector": {"matchLabels": {"app": "app"}}, "template": template}
    obj = {"apiVersion": f"{group}/{version}".lstrip("/"), "kind": kind, "metadata": metadata, "spec": body}
    return {
        "kind": {"group": group, "version": version, "kind": kind},
        "operation": "CREATE",
        "name": "app",
        "namespace": namespace,
        "object": obj,
    }


@pytest.fixture(scope="module")
def stopped_referee_url(signed_set: SignedSet, pki: Pki, tmp_path_factory: pytest.TempPathFactory) -> str:
    """The /verify URL of a Referee that was started and stopped again."""
    thread = RefereeThread(_referee_config(tmp_path_factory.mktemp("referee-stopped"), signed_set, pki))
    thread.stop()
    return thread.verify_url


@pytest.mark.parametrize("kind", list(KINDS))
def test_e2e_every_case_on_every_kind(
    gk: Gatekeeper, signed_set: SignedSet, stopped_referee_url: str, kind: str
) -> None:
    s = signed_set
    evidence = {"requiredVerifiers": ["cosign-ci"]}

    allowed = admission(kind, [s.ref("signed")], [s.pinned("signed")])
    assert gk.violations(VERIFIED, allowed, {}) == []
    assert gk.violations(EVIDENCE, allowed, evidence) == []

    denied = admission(kind, [s.ref("signed")], [s.ref("unsigned")])
    [violation] = gk.violations(VERIFIED, denied, {})
    assert violation["details"] == {"image": s.ref("unsigned")}
    assert violation["msg"].startswith(f"image {s.ref('unsigned')} is not verified by Referee: rule signed-by-ci: ")
    fallback = "sha256-" + s.digest("unsigned").split(":")[1][:12]
    assert sorted(gk.messages(EVIDENCE, denied, evidence)) == [
        f"image {s.ref('unsigned')}: Referee denied it (rule signed-by-ci: 0 of 1 verified artifacts from cosign-ci "
        f"(cosign-ci: no matching artifact found) [no referrers listed: {s.registry.host} has no referrers API and no "
        f"fallback index {fallback}… exists (attach with a tool that writes it)]); evidence from a denied verdict "
        "does not count",
        f"image {s.ref('unsigned')}: verifier cosign-ci has no successful artifact (no artifact was checked by it)",
    ]

    exempt_image = {"exemptImages": [s.ref("unsigned")]}
    assert gk.violations(VERIFIED, denied, exempt_image) == []
    assert gk.violations(EVIDENCE, denied, {**evidence, **exempt_image}) == []

    in_system = admission(kind, [s.ref("unsigned")], namespace="kube-system")
    assert gk.violations(VERIFIED, in_system, {"exemptNamespaces": ["kube-*"]}) == []
    assert gk.violations(EVIDENCE, in_system, {**evidence, "exemptNamespaces": ["kube-system"]}) == []
    assert len(gk.violations(VERIFIED, in_system, {"exemptNamespaces": ["kube-public"]})) == 1

    glass = admission(kind, [s.ref("unsigned")], annotations={"referee.dev/break-glass": "INC-1"})
    assert len(gk.violations(VERIFIED, glass, {})) == 1
    assert gk.violations(VERIFIED, glass, {"breakGlass": {"enabled": True}}) == []
    assert gk.violations(EVIDENCE, glass, {**evidence, "breakGlass": {"enabled": True}}) == []
    [warning] = gk.messages(VERIFIED, glass, {"breakGlass": {"enabled": True, "report": True}})
    assert warning.startswith(f'break-glass override referee.dev/break-glass="INC-1" admitted {kind} app; ')

    refused = admission(kind, [s.ref("signed")], ["ghcr.io/elsewhere/tool:1"])
    [message] = gk.messages(VERIFIED, refused, {})
    assert message.startswith("image ghcr.io/elsewhere/tool:1 denied by Referee: REGISTRY_NOT_ALLOWED: ")
    assert gk.messages(EVIDENCE, refused, evidence) == [message]

    gk.shim.providers["referee-stopped"] = stopped_referee_url
    down = {"provider": "referee-stopped"}
    [message] = gk.messages(VERIFIED, allowed, down)
    assert message.startswith("Referee verification unavailable: Post ")
    assert gk.shim.last["responses"] is None
    assert gk.messages(EVIDENCE, allowed, {**evidence, **down}) == [message]


def test_e2e_bad_signatures_are_denied_with_referees_reasons(gk: Gatekeeper, signed_set: SignedSet) -> None:
    s = signed_set
    review = admission("Deployment", [s.ref("wrongkey"), s.ref("tampered"), s.ref("copied"), s.ref("signed")])
    violations = gk.violations(VERIFIED, review, {})
    assert {v["details"]["image"] for v in violations} == {s.ref("wrongkey"), s.ref("tampered"), s.ref("copied")}
    for v in violations:
        assert "rule signed-by-ci: 0 of 1 verified artifacts from cosign-ci (cosign-ci: sha256:" in v["msg"]
    evidence = gk.messages(EVIDENCE, review, {"requiredVerifiers": ["cosign-ci"]})
    missing = [m for m in evidence if "verifier cosign-ci has no successful artifact (sha256:" in m]
    denied = [m for m in evidence if "evidence from a denied verdict does not count" in m]
    assert len(missing) == 3
    assert len(denied) == 3
    assert len(evidence) == 6


def test_e2e_one_batched_request_with_deduplicated_keys(gk: Gatekeeper, signed_set: SignedSet) -> None:
    s = signed_set
    gk.shim.cache_enabled = False
    review = admission("Pod", [s.ref("signed"), s.ref("signed"), s.ref("unsigned")], [s.ref("signed")])
    assert len(gk.violations(VERIFIED, review, {})) == 1
    assert gk.shim.requests == [sorted([s.ref("signed"), s.ref("unsigned")])]


def test_e2e_full_cache_hit_has_status_code_zero_and_still_decides(gk: Gatekeeper, signed_set: SignedSet) -> None:
    s = signed_set
    review = admission("Pod", [s.ref("signed"), s.ref("unsigned")])
    first = gk.messages(VERIFIED, review, {})
    assert gk.shim.last["status_code"] == 200
    assert len(gk.shim.requests) == 1
    second = gk.messages(VERIFIED, review, {})
    assert gk.shim.last["status_code"] == 0
    assert len(gk.shim.requests) == 1
    assert second == first
    assert len(second) == 1
    assert gk.violations(VERIFIED, admission("Pod", [s.ref("signed")]), {}) == []
    assert gk.shim.last["status_code"] == 0


def test_e2e_exempt_images_are_not_sent(gk: Gatekeeper, signed_set: SignedSet) -> None:
    s = signed_set
    review = admission("StatefulSet", [s.ref("signed")], [s.ref("unsigned")])
    parameters = {"exemptImages": [s.ref("unsigned")]}
    assert gk.violations(VERIFIED, review, parameters) == []
    assert gk.shim.requests == [[s.ref("signed")]]
    prefix = {"exemptImages": [f"{s.registry.host}/{s.repo}:uns*"]}
    assert gk.violations(VERIFIED, review, prefix) == []
    assert len(gk.violations(VERIFIED, review, {"exemptImages": [f"{s.registry.host}/{s.repo}:x*"]})) == 1


def test_e2e_exempt_namespaces(gk: Gatekeeper, signed_set: SignedSet) -> None:
    s = signed_set
    parameters = {"exemptNamespaces": ["kube-*"]}
    system = admission("DaemonSet", [s.ref("unsigned")], namespace="kube-system")
    assert gk.violations(VERIFIED, system, parameters) == []
    assert gk.shim.requests == []
    kubeflow = admission("DaemonSet", [s.ref("unsigned")], namespace="kubeflow")
    assert len(gk.violations(VERIFIED, kubeflow, parameters)) == 1
    evidence = {"requiredVerifiers": ["cosign-ci"], "exemptNamespaces": ["kube-system"]}
    assert gk.violations(EVIDENCE, admission("Job", [s.ref("unsigned")], namespace="kube-system"), evidence) == []


def test_e2e_break_glass_admits_and_the_report_constraint_names_the_override(
    gk: Gatekeeper, signed_set: SignedSet
) -> None:
    s = signed_set
    glass = {"referee.dev/break-glass": "INC-4711 CI is down"}
    review = admission("ReplicaSet", [s.ref("unsigned")], annotations=glass)
    assert len(gk.violations(VERIFIED, review, {})) == 1
    assert gk.violations(VERIFIED, review, {"breakGlass": {"enabled": True}}) == []
    assert gk.violations(EVIDENCE, review, {"requiredVerifiers": ["cosign-ci"], "breakGlass": {"enabled": True}}) == []
    [warning] = gk.violations(VERIFIED, review, {"breakGlass": {"enabled": True, "report": True}})
    assert warning["msg"].startswith(
        'break-glass override referee.dev/break-glass="INC-4711 CI is down" admitted ReplicaSet app; '
        f"overridden: image {s.ref('unsigned')} is not verified by Referee: rule signed-by-ci: "
    )
    assert warning["details"]["images"] == [s.ref("unsigned")]
    quiet = admission("ReplicaSet", [s.ref("unsigned")])
    assert gk.violations(VERIFIED, quiet, {"breakGlass": {"enabled": True, "report": True}}) == []


def test_e2e_a_key_the_provider_refuses_denies_with_its_error(gk: Gatekeeper, signed_set: SignedSet) -> None:
    s = signed_set
    review = admission("Job", [s.ref("signed"), "ghcr.io/elsewhere/tool:1"])
    assert gk.messages(VERIFIED, review, {}) == [
        "image ghcr.io/elsewhere/tool:1 denied by Referee: REGISTRY_NOT_ALLOWED: ghcr.io/elsewhere/tool is not in "
        "registries.allow; Referee contacts only listed registries"
    ]
    assert gk.messages(EVIDENCE, review, {"requiredVerifiers": ["cosign-ci"]}) == gk.messages(VERIFIED, review, {})


def test_e2e_an_unanswered_key_denies_through_system_error(gk: Gatekeeper, signed_set: SignedSet) -> None:
    s = signed_set
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        dead = f"127.0.0.1:{sock.getsockname()[1]}/gone/app:1"
    review = admission("CronJob", [s.ref("signed"), dead])
    [message] = gk.messages(VERIFIED, review, {})
    assert message.startswith(f"Referee verification unavailable: 1 of 2 keys not answered, retry: {dead}: ")
    assert gk.shim.last["responses"] != [] and gk.shim.last["errors"] == []
    # The answered key is now in the (shim's) Gatekeeper cache: only the unanswered one is asked again.
    [again] = gk.messages(EVIDENCE, review, {"requiredVerifiers": ["cosign-ci"]})
    assert again.startswith(f"Referee verification unavailable: 1 of 1 keys not answered, retry: {dead}: ")
    assert gk.shim.requests[-1] == [dead]
    assert [k for k, _ in gk.shim.last["responses"]] == [s.ref("signed")]


def test_e2e_mtls_failure_and_unknown_provider_deny(gk: Gatekeeper, signed_set: SignedSet, pki: Pki) -> None:
    s = signed_set
    review = admission("Deployment", [s.ref("signed")])
    gk.shim.ssl_context = pki.client_context(present_cert=False)
    try:
        [message] = gk.messages(VERIFIED, review, {})
    finally:
        gk.shim.ssl_context = pki.client_context()
    assert message.startswith("Referee verification unavailable: Post ")
    assert gk.messages(VERIFIED, review, {"provider": "referee-verify-typo"}) == [
        "Referee verification unavailable: failed to get Provider referee-verify-typo"
    ]
    assert gk.violations(VERIFIED, review, {}) == []


# -- (c) generated templates ---------------------------------------------------------------------------------------


def _run_generator(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(root / "scripts" / "gen_gatekeeper.py"), *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_generated_templates_are_in_sync() -> None:
    result = _run_generator(ROOT, "--check")
    assert result.returncode == 0, result.stdout + result.stderr
    for name in TEMPLATES:
        assert _embedded_rego(name) == (REGO / name / "src.rego").read_text()


def test_generator_check_reports_drift_and_refuses_rego_v1(tmp_path: Path) -> None:
    shutil.copytree(ROOT / "rego", tmp_path / "rego")
    shutil.copytree(GATEKEEPER / "templates", tmp_path / "gatekeeper" / "templates")
    (tmp_path / "scripts").mkdir()
    shutil.copy(ROOT / "scripts" / "gen_gatekeeper.py", tmp_path / "scripts")
    assert _run_generator(tmp_path, "--check").returncode == 0
    src = tmp_path / "rego" / VERIFIED / "src.rego"
    src.write_text(src.read_text().replace('"the verdict has no reason"', '"no reason"'))
    drift = _run_generator(tmp_path, "--check")
    assert drift.returncode == 1
    assert '-      } else := "the verdict has no reason"\n' in drift.stdout
    assert '+      } else := "no reason"\n' in drift.stdout
    common = tmp_path / "rego" / EVIDENCE / "src.rego"
    common.write_text(common.read_text().replace('else := "referee-verify"', 'else := "referee-verify-2"'))
    diverged = _run_generator(tmp_path, "--check")
    assert diverged.returncode == 2
    assert "common sections differ" in diverged.stderr
    common.write_text(common.read_text().replace('else := "referee-verify-2"', 'else := "referee-verify"'))
    src.write_text(
        src.read_text().replace("import future.keywords.in\n", "import future.keywords.in\nimport rego.v1\n")
    )
    refused = _run_generator(tmp_path, "--check")
    assert refused.returncode == 2
    assert "import rego.v1" in refused.stderr


# -- (d) manifests -------------------------------------------------------------------------------------------------


def _strict(schema: Any) -> Any:
    """``additionalProperties: false`` wherever fields are listed and unknown ones are not preserved."""
    if isinstance(schema, dict):
        out = {k: _strict(v) for k, v in schema.items()}
        if "properties" in out and not out.get("x-kubernetes-preserve-unknown-fields"):
            out.setdefault("additionalProperties", False)
        return out
    if isinstance(schema, list):
        return [_strict(v) for v in schema]
    return schema


def _crd(name: str) -> dict[str, Any]:
    schema: dict[str, Any] = _strict(yaml.safe_load((CRDS / name).read_text()))
    return schema


def _documents() -> list[tuple[Path, Any]]:
    found = []
    for path in sorted(GATEKEEPER.rglob("*.y*ml")):
        found.extend((path, doc) for doc in yaml.safe_load_all(path.read_text()) if doc is not None)
    return found


def _template_schemas() -> dict[str, dict[str, Any]]:
    out = {}
    for path in sorted((GATEKEEPER / "templates").glob("*.yaml")):
        doc = yaml.safe_load(path.read_text())
        out[doc["spec"]["crd"]["spec"]["names"]["kind"]] = doc["spec"]["crd"]["spec"]["validation"]["openAPIV3Schema"]
    return out


def _constraint_schema(parameters: dict[str, Any]) -> dict[str, Any]:
    schema = _crd("constraint-v1beta1.yaml")
    schema["properties"]["spec"]["properties"]["parameters"] = _strict(copy.deepcopy(parameters))
    return schema


WORKLOADS = {"Pod", "Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "ReplicationController", "Job", "CronJob"}


def test_every_gatekeeper_yaml_parses_and_validates_against_the_crds() -> None:
    schemas = {
        "ConstraintTemplate": _crd("constrainttemplate-v1.yaml"),
        "Provider": _crd("provider-v1beta1.yaml"),
        "Assign": _crd("assign-v1.yaml"),
    }
    constraint_kinds = _template_schemas()
    assert set(constraint_kinds) == {"RefereeVerifiedImages", "RefereeRequiredEvidence"}
    seen: dict[str, int] = {}
    for path, doc in _documents():
        rel = path.relative_to(ROOT)
        assert isinstance(doc, dict), rel
        if path.name == "gatekeeper-values.yaml":
            kind = "gatekeeper-values"
            rules = doc["mutatingWebhookCustomRules"]
            assert any("pods/ephemeralcontainers" in rule["resources"] for rule in rules), rel
        elif path.name == "provider-answers.yaml":
            kind = "provider-answers"
            assert all(set(answer) in ({"value"}, {"error"}) for answer in doc.values()), rel
        elif str(doc.get("apiVersion", "")).startswith("constraints.gatekeeper.sh/"):
            kind = "constraint"
            jsonschema.validate(doc, _constraint_schema(constraint_kinds[doc["kind"]]))
        elif doc.get("kind") in WORKLOADS:
            kind = "sample object"
            assert path.parent.parent.name == "samples" and path.name.startswith("example_"), rel
        elif doc.get("kind") in ("ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding"):
            kind = "admission policy"
            kubernetes_validate.validate(doc, "1.30.0", strict=True)
        else:
            kind = doc.get("kind", "?")
            assert kind in schemas, f"{rel}: unexpected {kind}"
            jsonschema.validate(doc, schemas[kind])
        seen[kind] = seen.get(kind, 0) + 1
    assert seen == {
        "ConstraintTemplate": 2,
        "Provider": 2,
        "Assign": 7,
        "constraint": 3,
        "sample object": 6,
        "provider-answers": 2,
        "gatekeeper-values": 1,
        "admission policy": 2,
    }


def test_strict_validation_catches_a_misspelt_field() -> None:
    assign = yaml.safe_load((GATEKEEPER / "mutation" / "assign-pod-containers.yaml").read_text())
    assign["spec"]["parameters"]["assign"]["externalData"]["failurepolicy"] = "Ignore"
    with pytest.raises(jsonschema.ValidationError, match="failurepolicy"):
        jsonschema.validate(assign, _crd("assign-v1.yaml"))
    constraint = yaml.safe_load((GATEKEEPER / "samples" / VERIFIED / "constraint.yaml").read_text())
    constraint["spec"]["parameters"]["breakGlass"] = {"enable": True}
    with pytest.raises(jsonschema.ValidationError, match="enable"):
        jsonschema.validate(constraint, _constraint_schema(_template_schemas()["RefereeVerifiedImages"]))


def test_providers_and_assigns_cover_every_pod_spec_location() -> None:
    providers = {doc["metadata"]["name"]: doc["spec"] for _, doc in _documents() if doc.get("kind") == "Provider"}
    assert set(providers) == {"referee-verify", "referee-mutate"}
    for name, spec in providers.items():
        assert spec["url"].startswith("https://") and spec["url"].endswith(f"/{name.removeprefix('referee-')}")
        assert spec["caBundle"] == "${CA_BUNDLE}"
        assert spec["timeout"] >= 1
    covered = set()
    for _, doc in _documents():
        if doc.get("kind") != "Assign":
            continue
        spec = doc["spec"]
        assert spec["parameters"]["assign"]["externalData"] == {
            "provider": "referee-mutate",
            "dataSource": "ValueAtLocation",
            "failurePolicy": "Ignore",
        }
        assert {"gatekeeper-system", "referee-system"} <= set(spec["match"]["excludedNamespaces"])
        applied = {kind for entry in spec["applyTo"] for kind in entry["kinds"]}
        matched = {kind for entry in spec["match"]["kinds"] for kind in entry["kinds"]}
        assert applied == matched
        location = re.fullmatch(
            r"(.*)\.(containers|initContainers|ephemeralContainers)\[name:\*\]\.image", spec["location"]
        )
        assert location is not None, spec["location"]
        covered.update((kind, location.group(1), location.group(2)) for kind in applied)
    paths = {"Pod": "spec", "CronJob": "spec.jobTemplate.spec.template.spec"}
    # Only a Pod holds ephemeral containers (added through the pods/ephemeralcontainers subresource).
    expected = {
        (kind, paths.get(kind, "spec.template.spec"), field)
        for kind in WORKLOADS
        for field in ("containers", "initContainers", "ephemeralContainers")
        if kind == "Pod" or field != "ephemeralContainers"
    }
    assert covered == expected


def _sample_review(obj: dict[str, Any]) -> dict[str, Any]:
    group, _, version = obj["apiVersion"].rpartition("/")
    namespace = obj["metadata"].get("namespace", "default")
    return {
        "kind": {"group": group, "version": version, "kind": obj["kind"]},
        "operation": "CREATE",
        "name": obj["metadata"]["name"],
        "namespace": namespace,
        "object": obj,
    }


def _evaluate(template: str, obj: dict[str, Any], parameters: dict[str, Any], answers: dict[str, Any]) -> Any:
    """The template's violations for ``obj``, with Referee's answers per image (``{"value": …}`` or ``{"error": …}``;
    images not listed get a denying verdict)."""

    def answer(request: dict[str, Any]) -> dict[str, Any]:
        got = {k: answers.get(k, {"value": {"allowed": False, "reason": "not signed"}}) for k in request["keys"]}
        return {
            "responses": [[k, a["value"]] for k, a in got.items() if "value" in a],
            "errors": [[k, a["error"]] for k, a in got.items() if "error" in a],
            "status_code": 200,
            "system_error": "",
        }

    with OpaEngine() as engine:
        engine.register_function("external_data", answer)
        engine.add_policy("template.rego", _embedded_rego(template))
        return engine.eval_document(f"{template}.violation", {"review": _sample_review(obj), "parameters": parameters})


def _sample_violations(template: str, example: str, constraint: str) -> list[dict[str, Any]]:
    folder = GATEKEEPER / "samples" / template
    answers = yaml.safe_load((folder / "provider-answers.yaml").read_text())
    parameters = yaml.safe_load((folder / constraint).read_text())["spec"]["parameters"]
    result: list[dict[str, Any]] = _evaluate(
        template, yaml.safe_load((folder / example).read_text()), parameters, answers
    )
    return result


def test_samples_give_the_outcome_their_names_promise() -> None:
    for template in TEMPLATES:
        for example in sorted((GATEKEEPER / "samples" / template).glob("example_*.yaml")):
            violations = _sample_violations(template, example.name, "constraint.yaml")
            if example.name.startswith("example_allowed"):
                assert violations == [], (template, example.name)
            else:
                assert example.name.startswith("example_disallowed")
                assert violations, (template, example.name)
    verified = sorted(v["msg"] for v in _sample_violations(VERIFIED, "example_disallowed.yaml", "constraint.yaml"))
    assert verified == [
        "image docker.io/someone/uploader:latest denied by Referee: REGISTRY_NOT_ALLOWED: "
        "docker.io/someone/uploader is not in registries.allow",
        "image ghcr.io/example-org/unsigned:0.1 is not verified by Referee: rule signed-by-ci: 0 of 1 verified "
        "artifacts from cosign-ci (cosign-ci: no matching artifact found)",
    ]
    evidence = sorted(v["msg"] for v in _sample_violations(EVIDENCE, "example_disallowed.yaml", "constraint.yaml"))
    assert len(evidence) == 3
    assert [m.split(": ", 1)[1].split(" ")[0] for m in evidence] == ["no", "no", "vulnerability"]


def test_break_glass_report_sample_warns_only_for_the_override() -> None:
    report = "constraint-break-glass-report.yaml"
    for example in sorted((GATEKEEPER / "samples" / VERIFIED).glob("example_*.yaml")):
        violations = _sample_violations(VERIFIED, example.name, report)
        if example.name == "example_disallowed_break_glass.yaml":
            [warning] = violations
            assert warning["msg"].startswith(
                'break-glass override referee.dev/break-glass="INC-4711: CI down, hotfix approved by on-call" '
                "admitted Deployment hotfix; overridden: image ghcr.io/example-org/hotfix:0.0.1 is not verified"
            )
        else:
            assert violations == [], example.name


def _with_key(value: Any, key_file: Path) -> Any:
    if isinstance(value, dict):
        return {k: _with_key(v, key_file) for k, v in value.items()}
    if isinstance(value, list):
        return [_with_key(v, key_file) for v in value]
    if isinstance(value, str) and value.endswith(".pub"):
        return str(key_file)
    return value


def _named_verifiers(policy: dict[str, Any]) -> set[str]:
    rules = policy.get("rules") or []
    return {name for rule in rules for name in [*rule["verifiers"], *(rule.get("nested") or {}).get("verifiers", [])]}


def test_cookbook_snippets_are_valid(tmp_path: Path) -> None:
    key_file = tmp_path / "key.pub"
    key_file.write_bytes(
        ec.generate_private_key(ec.SECP256R1())
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    schemas = _template_schemas()
    blocks = re.findall(r"```yaml\n(.*?)```", (ROOT / "docs" / "cookbook.md").read_text(), re.DOTALL)
    constraints: dict[str, dict[str, Any]] = {}
    objects: list[dict[str, Any]] = []
    configs = 0
    for block in blocks:
        for doc in yaml.safe_load_all(block):
            if str(doc.get("apiVersion", "")).startswith("constraints.gatekeeper.sh/"):
                jsonschema.validate(doc, _constraint_schema(schemas[doc["kind"]]))
                constraints[doc["metadata"]["name"]] = doc
            elif doc.get("kind") in WORKLOADS:
                objects.append(doc)
            else:
                config = _with_key(doc, key_file)
                if "verifiers" not in config:
                    names = sorted(_named_verifiers(config["policy"]))
                    config["verifiers"] = [{"name": n, "type": "cosign", "keys": [str(key_file)]} for n in names]
                load_config_bytes(yaml.safe_dump(config).encode(), tmp_path)
                configs += 1
    assert configs == 6
    assert len(constraints) == 6
    [hotfix] = objects
    enforcing = constraints["verified-images"]["spec"]["parameters"]
    report = constraints["verified-images-break-glass-report"]["spec"]["parameters"]
    assert _evaluate(VERIFIED, hotfix, enforcing, {}) == []
    assert len(_evaluate(VERIFIED, hotfix, {}, {})) == 1
    [warning] = _evaluate(VERIFIED, hotfix, report, {})
    assert warning["msg"].startswith(
        'break-glass override referee.dev/break-glass="INC-4711: CI down, hotfix approved by on-call" '
        "admitted Deployment hotfix; overridden: image registry.example.com/shop/hotfix:0.0.1 is not verified"
    )
