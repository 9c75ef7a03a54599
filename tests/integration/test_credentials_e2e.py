"""Credentials end to end: ``referee serve`` and ``referee verify`` as child processes verifying signed images in
a registry that requires credentials, obtained from a kubelet credential provider plugin or from a pull secret.

The plugin run count proves the cache: once per cache period, not per request. The logs are read in full to prove
that nothing the plugin prints (on stdout or stderr) reaches them.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.conftest import SignedSet
from tests.integration.test_credential_providers import SECRET_ON_STDERR, Private, Setup, private, registries
from tests.integration.test_operations import RefereeProcess, post, scrape, total
from tests.support.credential_plugin import PluginControl, install_plugin
from tests.support.referee import Pki, items_by_key, running_referee, server_section, write_config

__all__ = ["private"]  # the module fixture, shared with the client-level tests

REFEREE = Path(sys.executable).parent / "referee"
PROVIDER = "test-credential-provider"


@pytest.fixture
def plugin(tmp_path: Path) -> Setup:
    bin_dir = tmp_path / "plugins"
    install_plugin(bin_dir)
    return Setup(PluginControl(tmp_path / "plugin"), bin_dir, tmp_path)


def referee_config(private: Private, signed_set: SignedSet, pki: Pki, **registries_extra: Any) -> dict[str, Any]:
    section = registries(private, **registries_extra)
    section["hosts"].append({"host": signed_set.registry.host, "plainHttp": True})
    return {
        "registries": section,
        "verifiers": [{"name": "cosign-ci", "type": "cosign", "keys": [str(signed_set.key_file)]}],
        "policy": {"type": "required-verifiers", "required": ["cosign-ci"]},
        # no verdict or tag cache: every ProviderRequest goes to the registry again
        "cache": {"verdictTtl": 0, "tagTtl": 0},
        "server": server_section(pki),
    }


@pytest.fixture
def launch(tmp_path: Path) -> Iterator[Any]:
    started: list[RefereeProcess] = []

    def make(config: dict[str, Any], name: str = "referee") -> RefereeProcess:
        home = tmp_path / f"{name}-home"
        home.mkdir()
        process = RefereeProcess(write_config(tmp_path / f"{name}.yaml", config), tmp_path / f"{name}.log", home)
        started.append(process)
        process.start()
        return process

    yield make
    for process in started:
        process.stop()


def _no_secrets(text: str, private: Private) -> None:
    assert private.registry.password is not None
    basic = base64.b64encode(f"alice:{private.registry.password}".encode()).decode()
    for secret in (SECRET_ON_STDERR, private.registry.password, basic):
        assert secret not in text


async def test_serve_verifies_through_the_plugin_once_per_cache_period(
    launch: Any, private: Private, signed_set: SignedSet, pki: Pki, plugin: Setup
) -> None:
    plugin.control.set(cacheKeyType="Registry", cacheDuration="1h", auth=private.good_auth, stderr=SECRET_ON_STDERR)
    referee = launch(referee_config(private, signed_set, pki, credentialProviders=plugin.section([private.host])))
    keys = [private.ref(repo, tag) for repo in private.repos for tag in ("v1", "v2")]
    # a cold burst of concurrent requests, then more requests
    bodies = await asyncio.gather(*(post(referee, pki, "/verify", [key]) for key in keys))
    for _ in range(3):
        bodies.append(await post(referee, pki, "/verify", keys))
    for body, _ in bodies:
        assert "systemError" not in body["response"], body
        for item in body["response"]["items"]:
            assert item["value"]["allowed"] is True, item
    assert len(plugin.control.runs()) == 1
    samples = await scrape(referee)
    assert total(samples, "referee_credential_provider_execs_total", provider=PROVIDER, outcome="success") == 1
    registry_200 = total(samples, "referee_registry_requests_total", host=private.host, status="200")
    assert registry_200 >= 4 * len(keys), "every request read the registry (no verdict cache)"
    ran = [line for line in referee.lines() if line["event"] == "credential_provider_ran"]
    assert len(ran) == 1 and ran[0]["provider"] == PROVIDER and ran[0]["cache_key_type"] == "Registry"
    _no_secrets(referee.raw_log(), private)


async def test_serve_answers_a_plugin_failure_as_a_transient_error(
    launch: Any, private: Private, signed_set: SignedSet, pki: Pki, plugin: Setup
) -> None:
    plugin.control.set(mode="exit", exitCode=2, auth=private.good_auth, stderr=SECRET_ON_STDERR)
    referee = launch(referee_config(private, signed_set, pki, credentialProviders=plugin.section([private.host])))
    key, plain = private.ref("creds/app"), signed_set.ref("signed")
    body, _ = await post(referee, pki, "/verify", [key, plain])
    response = body["response"]
    # the failing key is not answered (never allowed, never a cacheable error) and is named in systemError
    assert key not in items_by_key(body)
    assert key in response["systemError"]
    assert "CREDENTIAL_PROVIDER_FAILED" in response["systemError"]
    assert "exited with status 2" in response["systemError"]
    # other keys keep their answers
    assert items_by_key(body)[plain]["value"]["allowed"] is True
    # it recovers as soon as the plugin does: failures are not cached
    plugin.control.set(auth=private.good_auth)
    body, _ = await post(referee, pki, "/verify", [key])
    assert items_by_key(body)[key]["value"]["allowed"] is True
    samples = await scrape(referee)
    assert total(samples, "referee_credential_provider_execs_total", provider=PROVIDER, outcome="error") == 1
    failed = [line for line in referee.lines() if line["event"] == "credential_provider_failed"]
    assert len(failed) == 1 and failed[0]["request_id"]
    _no_secrets(referee.raw_log(), private)


def _verify_cli(config_path: Path, home: Path, *refs: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SSL_CERT_", "REQUESTS_CA", "CURL_CA"))}
    env["HOME"] = str(home)
    env.pop("DOCKER_CONFIG", None)
    return subprocess.run(
        [str(REFEREE), "--log-level", "debug", "verify", "--config", str(config_path), "--output", "json", *refs],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )


def test_verify_cli_uses_the_plugin_once(
    private: Private, signed_set: SignedSet, pki: Pki, plugin: Setup, tmp_path: Path
) -> None:
    plugin.control.set(cacheKeyType="Registry", auth=private.good_auth, stderr=SECRET_ON_STDERR)
    config = write_config(
        tmp_path / "referee.yaml",
        referee_config(private, signed_set, pki, credentialProviders=plugin.section([private.host])),
    )
    refs = [private.ref(repo, tag) for repo in private.repos for tag in ("v1", "v2")]
    result = _verify_cli(config, tmp_path, *refs)
    assert result.returncode == 0, result.stdout + result.stderr
    verdicts = json.loads(result.stdout)
    assert [v["key"] for v in verdicts] == refs
    assert all(v["value"]["allowed"] for v in verdicts)
    assert len(plugin.control.runs()) == 1
    _no_secrets(result.stdout + result.stderr, private)

    plugin.control.set(mode="garbage", auth=private.good_auth, stderr=SECRET_ON_STDERR)
    failed = _verify_cli(config, tmp_path, refs[0])
    assert failed.returncode == 1
    (answer,) = json.loads(failed.stdout)
    assert "value" not in answer
    assert answer["error"].startswith("CREDENTIAL_PROVIDER_FAILED: ")
    assert "stdout is not JSON" in answer["error"]
    _no_secrets(failed.stdout + failed.stderr, private)


def _project(directory: Path, content: str, generation: int) -> None:
    """Write a mounted Secret the way the kubelet updates one: a new timestamped directory, then an atomic
    swap of the ``..data`` link that the file's link points through."""
    target = directory / f"..{generation}"
    target.mkdir()
    (target / ".dockerconfigjson").write_text(content)
    link = directory / "..data_tmp"
    link.symlink_to(target.name)
    os.replace(link, directory / "..data")
    entry = directory / ".dockerconfigjson"
    if not entry.is_symlink():
        entry.symlink_to("..data/.dockerconfigjson")


async def test_a_rotated_pull_secret_is_picked_up_without_restart(
    private: Private, signed_set: SignedSet, pki: Pki, tmp_path: Path
) -> None:
    assert private.registry.password is not None

    def secret(password: str) -> str:
        auth = base64.b64encode(f"alice:{password}".encode()).decode()
        return json.dumps({"auths": {private.host: {"auth": auth}}})

    mount = tmp_path / "pull-secret"
    mount.mkdir()
    _project(mount, secret("revoked-password"), 1)
    config = referee_config(private, signed_set, pki, pullSecrets=[str(mount)])
    config_path = write_config(tmp_path / "referee.yaml", config)
    key = private.ref("creds/app")
    async with running_referee(config_path, pki) as referee:
        body = await referee.verify([key])
        assert items_by_key(body)[key]["error"].startswith("AUTH_DENIED: ")
        _project(mount, secret(private.registry.password), 2)
        loop = asyncio.get_running_loop()
        end = loop.time() + 30
        while True:
            item = items_by_key(await referee.verify([key]))[key]
            if "value" in item:
                break
            assert loop.time() < end, f"the rotated pull secret was not picked up: {item}"
            await asyncio.sleep(0.1)
        assert item["value"]["allowed"] is True
