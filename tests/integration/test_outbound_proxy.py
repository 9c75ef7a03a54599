"""Outbound proxies (#20 item 2) through a real forward proxy (Debian's tinyproxy) to the real registry.

Referee's sessions never read the environment (``trust_env=False``); ``HTTPS_PROXY``, ``HTTP_PROXY`` and
``NO_PROXY`` are read once at configuration load and passed per request. The proxy's own log says what went
through it: CONNECT tunnels to the TLS registry, absolute-form GETs to the plain one, nothing for a ``NO_PROXY``
host, nothing for a registry outside ``registries.allow`` (the allow list judges the target, never the proxy,
whose address is in no allow list here).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.integration.attach_support import run_cli
from tests.support.content import make_image, push_image
from tests.support.fixtures import TLS_PASSWORD, TLS_USER
from tests.support.forward_proxy import TinyProxy
from tests.support.registry import RegistryProcess

REPO = "proxied/app"
PROXY_VARIABLES = ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "NO_PROXY", "no_proxy")


@pytest.fixture(scope="module")
def proxy() -> Iterator[TinyProxy]:
    with TinyProxy(user="proxyuser", password="proxy-s3cret") as started:
        yield started


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)


def _config(path: Path, registry: RegistryProcess, plain: RegistryProcess) -> Path:
    assert registry.ca_pem_path is not None
    doc: dict[str, Any] = {
        "registries": {
            "allow": [registry.host, plain.host],  # the registries themselves; the proxy's address is not listed
            "hosts": [
                {"host": registry.host, "caFile": registry.ca_pem_path, "username": TLS_USER, "password": TLS_PASSWORD},
                {"host": plain.host, "plainHttp": True},
            ],
        },
        "verifiers": [{"name": "sbom", "type": "sbom"}],
        "policy": {"type": "required-verifiers", "required": ["sbom"]},
        "cache": {"verdictTtl": 0},
    }
    path.write_text(yaml.safe_dump(doc))
    return path


def _verify(capsys: pytest.CaptureFixture[str], config: Path, ref: str) -> tuple[dict[str, Any], str]:
    _code, out, err = run_cli(capsys, "verify", "--config", str(config), "--output", "json", ref)
    [item] = json.loads(out)
    return item, err


@pytest.fixture(scope="module")
def images(tls_registry: RegistryProcess, registry: RegistryProcess) -> dict[str, str]:
    image = make_image("proxied")
    push_image(
        tls_registry.url, REPO, "v1", image, ("basic", TLS_USER, TLS_PASSWORD), ssl_ctx=tls_registry.ssl_context()
    )
    push_image(registry.url, REPO, "v1", image)
    return {"tls": f"{tls_registry.host}/{REPO}:v1", "plain": f"{registry.host}/{REPO}:v1", "digest": image["digest"]}


def test_requests_go_through_the_proxy_and_no_proxy_hosts_do_not(
    proxy: TinyProxy,
    tls_registry: RegistryProcess,
    registry: RegistryProcess,
    images: dict[str, str],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    config = _config(tmp_path / "referee.yaml", tls_registry, registry)
    monkeypatch.setenv("HTTPS_PROXY", proxy.url())
    monkeypatch.setenv("HTTP_PROXY", proxy.url())

    # TLS registry: tunnelled with CONNECT, authenticated to the proxy; the verdict is the registry's answer
    before = len(proxy.requests())
    item, err = _verify(capsys, config, images["tls"])
    assert item["value"]["digest"] == images["digest"], item
    tunnels = proxy.requests()[before:]
    assert tunnels and all(r == f"CONNECT {tls_registry.host} HTTP/1.1" for r in tunnels)
    assert "proxy-s3cret" not in err and "proxyuser:" not in err

    # plain-HTTP registry: absolute-form requests through the proxy
    before = len(proxy.requests())
    item, _ = _verify(capsys, config, images["plain"])
    assert item["value"]["digest"] == images["digest"]
    plain = proxy.requests()[before:]
    assert any(r.startswith(f"HEAD http://{registry.host}/v2/{REPO}/manifests/v1 ") for r in plain) or any(
        r.startswith(f"GET http://{registry.host}/v2/{REPO}/manifests/v1 ") for r in plain
    ), plain
    assert all(f"http://{registry.host}/" in r for r in plain)

    # NO_PROXY names the TLS registry (host:port): the same verification goes direct, the proxy sees nothing
    monkeypatch.setenv("NO_PROXY", f"localhost,{tls_registry.host}")
    before = len(proxy.requests())
    item, _ = _verify(capsys, config, images["tls"])
    assert item["value"]["digest"] == images["digest"]
    assert proxy.requests()[before:] == []
    # a CIDR entry exempts the plain registry's address as well
    monkeypatch.setenv("NO_PROXY", "10.0.0.0/8,127.0.0.0/8")
    item, _ = _verify(capsys, config, images["plain"])
    assert item["value"]["digest"] == images["digest"]
    assert proxy.requests()[before:] == []


def test_the_allow_list_judges_the_target_not_the_proxy(
    proxy: TinyProxy,
    tls_registry: RegistryProcess,
    registry: RegistryProcess,
    images: dict[str, str],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    config = _config(tmp_path / "referee.yaml", tls_registry, registry)
    monkeypatch.setenv("HTTPS_PROXY", proxy.url())
    monkeypatch.setenv("HTTP_PROXY", proxy.url())
    before = len(proxy.requests())
    # the proxy's own address as a registry: not in registries.allow, so refused before any request
    item, _ = _verify(capsys, config, f"{proxy.address}/{REPO}:v1")
    assert item["error"].startswith("REGISTRY_NOT_ALLOWED"), item
    assert proxy.requests()[before:] == []


def test_wrong_proxy_credentials_fail_closed_and_bad_variables_are_configuration_errors(
    proxy: TinyProxy,
    tls_registry: RegistryProcess,
    registry: RegistryProcess,
    images: dict[str, str],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    config = _config(tmp_path / "referee.yaml", tls_registry, registry)
    monkeypatch.setenv("HTTPS_PROXY", f"http://proxyuser:wrong@{proxy.address}")
    item, err = _verify(capsys, config, images["tls"])
    assert "value" not in item and item["error"], item  # no verdict: the registry could not be reached
    assert "wrong" not in json.dumps(item) and "wrong@" not in err

    monkeypatch.setenv("HTTPS_PROXY", "socks5://127.0.0.1:1080")
    monkeypatch.setenv("NO_PROXY", "good.example,bad/entry")
    code, _out, err = run_cli(capsys, "config", "check", str(config))
    assert code == 2
    assert "environment HTTPS_PROXY: the proxy must be an http:// URL" in err
    assert "environment NO_PROXY: 'bad/entry' is not an address, CIDR range or domain name" in err
