"""HTTPS_PROXY / HTTP_PROXY / NO_PROXY as Referee reads them (Go's httpproxy rules; see provider/proxy.py)."""

from __future__ import annotations

import base64

import pytest

from provider.proxy import proxy_settings

PROXY = "http://proxy.corp.example:3128"


def settings(no_proxy: str = "", **more: str) -> object:
    env = {"HTTPS_PROXY": PROXY, "HTTP_PROXY": PROXY, "NO_PROXY": no_proxy, **more}
    found, problems = proxy_settings(env)
    assert problems == []
    return found


@pytest.mark.parametrize(
    ("no_proxy", "url", "proxied"),
    [
        ("", "https://ghcr.io/v2/", True),
        ("ghcr.io", "https://ghcr.io/v2/", False),
        ("ghcr.io", "https://pkg.ghcr.io/v2/", False),  # a name covers its subdomains
        (".ghcr.io", "https://ghcr.io/v2/", True),  # a leading dot: subdomains only
        (".ghcr.io", "https://pkg.ghcr.io/v2/", False),
        ("*.ghcr.io", "https://pkg.ghcr.io/v2/", False),
        ("ghcr.io", "https://notghcr.io/v2/", True),
        ("GHCR.IO", "https://ghcr.io/v2/", False),
        ("registry.local:5000", "https://registry.local:5000/v2/", False),
        ("registry.local:5000", "https://registry.local/v2/", True),  # another port
        ("10.0.0.0/8", "https://10.1.2.3:5000/v2/", False),
        ("10.0.0.0/8", "https://11.1.2.3/v2/", True),
        ("10.1.2.3", "https://10.1.2.3/v2/", False),
        ("::1", "https://[::1]:5000/v2/", False),
        ("[::1]:5000", "https://[::1]:5000/v2/", False),
        ("fd00::/8", "https://[fd12::1]/v2/", False),
        (" a.example , ghcr.io ", "https://ghcr.io/v2/", False),
        ("*", "https://anything.example/v2/", False),
        ("", "http://plain.example:5000/v2/", True),
    ],
)
def test_no_proxy(no_proxy: str, url: str, proxied: bool) -> None:
    found = settings(no_proxy)
    assert (found.for_url(url) is not None) is proxied  # type: ignore[attr-defined]


def test_each_scheme_has_its_own_proxy_and_upper_case_wins() -> None:
    found, _ = proxy_settings({"https_proxy": "http://lower:1", "HTTPS_PROXY": "http://upper:2"})
    assert found.for_url("https://x.example/") is not None
    assert found.for_url("https://x.example/").url == "http://upper:2"  # type: ignore[union-attr]
    assert found.for_url("http://x.example/") is None  # no HTTP_PROXY: plain HTTP goes direct
    lower, _ = proxy_settings({"http_proxy": "proxy:8080"})
    assert lower.for_url("http://x.example/").url == "http://proxy:8080"  # type: ignore[union-attr]
    assert proxy_settings({})[0].for_url("https://x.example/") is None


def test_credentials_become_a_header_and_never_show() -> None:
    found, _ = proxy_settings({"HTTPS_PROXY": "http://svc%40corp:p%3Ass@proxy:3128", "HTTP_PROXY": "http://u:p@proxy"})
    proxy = found.for_url("https://ghcr.io/")
    assert proxy is not None and proxy.url == "http://proxy:3128"
    assert proxy.headers() == {"Proxy-Authorization": "Basic " + base64.b64encode(b"svc@corp:p:ss").decode()}
    assert "p:ss" not in repr(found) and "p%3Ass" not in repr(found) and "p%3Ass" not in str(found.describe())
    # CONNECT targets get proxy_headers; a plain-HTTP target carries the header on the request to the proxy
    headers: dict[str, str] = {}
    assert found.arguments("https://ghcr.io/v2/", headers) == ("http://proxy:3128", proxy.headers())
    assert headers == {}
    assert found.arguments("http://plain.example/v2/", headers) == ("http://proxy:80", None)
    assert headers == {"Proxy-Authorization": "Basic " + base64.b64encode(b"u:p").decode()}
    exempt: dict[str, str] = {}
    none, _ = proxy_settings({"HTTP_PROXY": "http://u:p@proxy", "NO_PROXY": "plain.example"})
    assert none.arguments("http://plain.example/v2/", exempt) == (None, None) and exempt == {}


@pytest.mark.parametrize(
    ("env", "problem"),
    [
        ({"HTTPS_PROXY": "https://proxy:3128"}, "environment HTTPS_PROXY: the proxy must be an http:// URL"),
        ({"https_proxy": "socks5://proxy:1080"}, "environment https_proxy: the proxy must be an http:// URL"),
        ({"HTTP_PROXY": "http://proxy:99999"}, "environment HTTP_PROXY: the proxy's port is not a number"),
        ({"HTTP_PROXY": "http://proxy:3128/path"}, "environment HTTP_PROXY: expected http://host:port"),
        ({"NO_PROXY": "a.example,x/y"}, "environment NO_PROXY: 'x/y' is not an address, CIDR range or domain name"),
        ({"NO_PROXY": "a.example:http"}, "environment NO_PROXY: 'a.example:http': the port is not a number"),
    ],
)
def test_unusable_values_are_named_without_echoing_them(env: dict[str, str], problem: str) -> None:
    _, problems = proxy_settings({**env})
    assert len(problems) == 1 and problems[0].startswith(problem)
    if "PROXY" in next(iter(env)).upper() and "NO_PROXY" not in env:
        assert next(iter(env.values())) not in problems[0]
