"""URLs a registry hands to Referee (token realms, redirects, ``Link`` pages) are attacker input: parse them
strictly before deciding whether a host may be contacted or trusted with credentials."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

_HOSTNAME = re.compile(r"^(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)(?:\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)*\.?$")
_DEFAULT_PORTS = {"https": 443, "http": 80}


class UnsafeURLError(ValueError):
    """A URL Referee refuses to contact (not http(s), user information, no or invalid host or port)."""


def authority(url: str) -> str:
    """The ``host[:port]`` an absolute http(s) URL points at, lower-cased and without the scheme's default port,
    in the form ``registries.allow`` patterns and ``registries.hosts[].host`` use (``[::1]:5000`` for IPv6).

    Raises :class:`UnsafeURLError` for anything else: other schemes, user information (``https://a@b/``), an
    empty or malformed host, a port outside 1-65535."""
    parts = urlsplit(url)
    if parts.scheme not in _DEFAULT_PORTS:
        raise UnsafeURLError(f"{url[:200]!r} is not an http(s) URL")
    netloc = parts.netloc
    if "@" in netloc:
        raise UnsafeURLError(f"{url[:200]!r} carries user information")
    try:
        port = parts.port
    except ValueError:
        raise UnsafeURLError(f"{url[:200]!r} has an invalid port") from None
    host = parts.hostname or ""
    if host.startswith("[") or ":" in host:
        literal = host.strip("[]")
        if not re.fullmatch(r"[0-9a-f:.]+", literal):
            raise UnsafeURLError(f"{url[:200]!r} has an invalid host")
        host = f"[{literal}]"
    elif not _HOSTNAME.match(host):
        raise UnsafeURLError(f"{url[:200]!r} has an invalid host")
    if port == 0:
        raise UnsafeURLError(f"{url[:200]!r} has an invalid port")
    if port is None or port == _DEFAULT_PORTS[parts.scheme]:
        return host
    return f"{host}:{port}"


def safe_authority(url: str) -> str | None:
    """:func:`authority`, or ``None`` for a URL Referee refuses."""
    try:
        return authority(url)
    except UnsafeURLError:
        return None


def origin(url: str) -> tuple[str, str]:
    """``(scheme, netloc)`` exactly as written: two URLs are same-origin only when both are identical."""
    parts = urlsplit(url)
    return parts.scheme, parts.netloc
