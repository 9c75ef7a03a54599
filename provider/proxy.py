"""Outbound HTTP proxies from ``HTTPS_PROXY``, ``HTTP_PROXY`` and ``NO_PROXY``, applied explicitly per request.

Referee's HTTP sessions never read the environment themselves (``trust_env=False``: no netrc, no CA variables,
no implicit proxy). This module reads the three proxy variables once, at configuration load, and the clients pass
the proxy for each request's *target* URL. ``registries.allow`` and every other host check apply to that target,
never to the proxy: a proxy is infrastructure the operator chose, not a host a pusher can name.

Semantics follow Go's ``golang.org/x/net/http/httpproxy`` (what the kubelet and containerd use): upper-case names
first, then lower-case; ``NO_PROXY`` is a comma-separated list of ``*``, IP addresses, CIDR ranges and domain names
(``example.com`` matches it and its subdomains, ``.example.com`` only subdomains), each optionally with ``:port``.
Unlike Go, loopback targets are not exempt on their own: list ``localhost,127.0.0.1`` in ``NO_PROXY`` as usual.
Proxy credentials (``http://user:password@proxy:3128``) are sent as ``Proxy-Authorization: Basic``, never logged.
"""

from __future__ import annotations

import base64
import ipaddress
import os
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

from provider.confignode import Secret

NAMES = {"https": ("HTTPS_PROXY", "https_proxy"), "http": ("HTTP_PROXY", "http_proxy")}
NO_PROXY_NAMES = ("NO_PROXY", "no_proxy")


@dataclass(frozen=True, slots=True)
class Proxy:
    """One proxy: its URL without credentials (safe to print), and the ``Proxy-Authorization`` value if any."""

    url: str
    authorization: Secret | None = None

    def headers(self) -> dict[str, str] | None:
        return None if self.authorization is None else {"Proxy-Authorization": self.authorization.reveal()}


@dataclass(frozen=True, slots=True)
class _Exemption:
    host: str  # lower-case domain (leading "." kept), or "" for an address entry
    network: ipaddress.IPv4Network | ipaddress.IPv6Network | None
    port: int | None

    def matches(self, host: str, port: int) -> bool:
        if self.port is not None and self.port != port:
            return False
        if self.network is not None:
            try:
                return ipaddress.ip_address(host) in self.network
            except ValueError:
                return False
        if self.host.startswith("."):
            return host.endswith(self.host)
        return host == self.host or host.endswith("." + self.host)


@dataclass(frozen=True, slots=True)
class ProxySettings:
    """The proxies for ``http://`` and ``https://`` targets and the ``NO_PROXY`` exemptions; empty means direct."""

    http: Proxy | None = None
    https: Proxy | None = None
    exempt_all: bool = False
    exemptions: tuple[_Exemption, ...] = ()

    def for_url(self, url: str) -> Proxy | None:
        """The proxy to reach ``url`` through, or ``None`` to connect directly."""
        parts = urlsplit(url)
        proxy = self.https if parts.scheme == "https" else self.http if parts.scheme == "http" else None
        if proxy is None or self.exempt_all or not parts.hostname:
            return None
        host = parts.hostname.lower().rstrip(".")
        port = parts.port or (443 if parts.scheme == "https" else 80)
        if any(e.matches(host, port) for e in self.exemptions):
            return None
        return proxy

    def arguments(self, url: str, headers: dict[str, str]) -> tuple[str | None, dict[str, str] | None]:
        """aiohttp's ``proxy`` and ``proxy_headers`` for a request to ``url``. aiohttp sends ``proxy_headers`` only
        on a CONNECT (``https://`` targets); for an ``http://`` target the request itself goes to the proxy, so the
        credentials are added to ``headers`` (the proxy consumes them; a direct request never carries them)."""
        proxy = self.for_url(url)
        if proxy is None:
            return None, None
        if proxy.authorization is not None and urlsplit(url).scheme == "http":
            headers["Proxy-Authorization"] = proxy.authorization.reveal()
            return proxy.url, None
        return proxy.url, proxy.headers()

    def describe(self) -> dict[str, object]:
        """For the startup log: URLs without credentials, and the exemptions."""
        return {
            "https_proxy": self.https.url if self.https else None,
            "http_proxy": self.http.url if self.http else None,
            "no_proxy": "*" if self.exempt_all else ",".join(_show(e) for e in self.exemptions),
        }


def _show(e: _Exemption) -> str:
    text = str(e.network) if e.network is not None else e.host
    return f"{text}:{e.port}" if e.port is not None else text


def _variable(environ: Mapping[str, str], names: tuple[str, ...]) -> tuple[str, str] | None:
    for name in names:
        value = environ.get(name, "").strip()
        if value:
            return name, value
    return None


def parse_proxy(value: str) -> Proxy:
    """``http://[user:password@]host:port`` (a bare ``host:port`` means ``http://``); ValueError with a reason."""
    text = value if "://" in value else f"http://{value}"
    parts = urlsplit(text)
    if parts.scheme != "http":
        raise ValueError(
            f"the proxy must be an http:// URL (HTTPS targets are tunnelled with CONNECT), not {parts.scheme}://"
        )
    try:
        port = parts.port
    except ValueError:
        raise ValueError("the proxy's port is not a number from 1 to 65535") from None
    if not parts.hostname or parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ValueError("expected http://host:port, with nothing after the port")
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    url = f"http://{host}:{port or 80}"
    authorization = None
    if parts.username is not None:
        pair = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
        authorization = Secret("Basic " + base64.b64encode(pair.encode()).decode("ascii"))
    return Proxy(url, authorization)


def parse_no_proxy(value: str) -> tuple[bool, tuple[_Exemption, ...]]:
    """``(everything exempt, exemptions)``; ValueError naming the first entry that is none of the accepted forms."""
    exemptions: list[_Exemption] = []
    for raw in value.split(","):
        entry = raw.strip().lower()
        if not entry:
            continue
        if entry == "*":
            return True, ()
        try:
            exemptions.append(_Exemption("", ipaddress.ip_network(entry.strip("[]"), strict=False), None))
            continue
        except ValueError:
            pass
        host, port = entry, None
        if entry.startswith("["):  # [v6]:port
            head, _, tail = entry[1:].partition("]")
            host, port = head, tail.removeprefix(":") or None
        elif entry.count(":") == 1:
            host, port = entry.split(":")
        if port is not None and not (port.isdigit() and 0 < int(port) < 65536):
            raise ValueError(f"{raw.strip()!r}: the port is not a number from 1 to 65535")
        number = int(port) if port is not None else None
        try:
            exemptions.append(_Exemption("", ipaddress.ip_network(host, strict=False), number))
            continue
        except ValueError:
            pass
        name = host.removeprefix("*")
        if not name or any(c in name for c in "/@ *") or name == ".":
            raise ValueError(f"{raw.strip()!r} is not an address, CIDR range or domain name")
        exemptions.append(_Exemption(name.rstrip("."), None, number))
    return False, tuple(exemptions)


def proxy_settings(environ: Mapping[str, str] | None = None) -> tuple[ProxySettings, list[str]]:
    """The settings from the environment, and a problem per variable that cannot be used (named, never echoed:
    a proxy URL may hold a password)."""
    env = os.environ if environ is None else environ
    problems: list[str] = []
    proxies: dict[str, Proxy | None] = {}
    for scheme, names in NAMES.items():
        found = _variable(env, names)
        proxies[scheme] = None
        if found is not None:
            try:
                proxies[scheme] = parse_proxy(found[1])
            except ValueError as exc:
                problems.append(f"environment {found[0]}: {exc}")
    exempt_all = False
    exemptions: tuple[_Exemption, ...] = ()
    found = _variable(env, NO_PROXY_NAMES)
    if found is not None:
        try:
            exempt_all, exemptions = parse_no_proxy(found[1])
        except ValueError as exc:
            problems.append(f"environment {found[0]}: {exc}")
    return ProxySettings(proxies["http"], proxies["https"], exempt_all, exemptions), problems
