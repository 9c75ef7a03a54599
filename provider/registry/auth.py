"""Registry authentication: challenge parsing, basic auth and the bearer-token flow with a token cache.

Token flow per distribution's ``docs/spec/auth/token.md`` (and ``oauth.md`` for identity tokens).
"""

from __future__ import annotations

import base64
import re
import time
from collections.abc import Callable
from dataclasses import dataclass

from provider.config import Credentials

_PARAM_RE = re.compile(r'\s*([A-Za-z0-9_.-]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^,\s]+))\s*,?')
MIN_TOKEN_LIFETIME = 60.0


@dataclass(frozen=True, slots=True)
class Challenge:
    scheme: str
    params: dict[str, str]

    @property
    def realm(self) -> str | None:
        return self.params.get("realm")

    @property
    def service(self) -> str | None:
        return self.params.get("service")

    @property
    def scope(self) -> str | None:
        return self.params.get("scope")

    @property
    def error(self) -> str | None:
        return self.params.get("error")


def parse_challenge(header: str) -> Challenge | None:
    """Parse one ``WWW-Authenticate`` value (RFC 7235 auth-params, RFC 6750 bearer parameters)."""
    header = header.strip()
    if not header:
        return None
    scheme, _, rest = header.partition(" ")
    params: dict[str, str] = {}
    pos = 0
    while pos < len(rest):
        m = _PARAM_RE.match(rest, pos)
        if not m or m.end() == pos:
            break
        value = m.group(2) if m.group(2) is not None else m.group(3)
        params[m.group(1).lower()] = re.sub(r"\\(.)", r"\1", value)
        pos = m.end()
    return Challenge(scheme=scheme.lower(), params=params)


def basic_header(username: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()


def pull_scope(repository: str) -> str:
    return f"repository:{repository}:pull"


@dataclass(slots=True)
class _Token:
    value: str
    expires_at: float


class TokenCache:
    """Bearer tokens per (registry, realm, service, scope), kept until shortly before they expire."""

    def __init__(self, clock: Callable[[], float] = time.monotonic, max_entries: int = 4096) -> None:
        self._clock = clock
        self._tokens: dict[tuple[str, str, str, str], _Token] = {}
        self._max_entries = max_entries

    def get(self, key: tuple[str, str, str, str]) -> str | None:
        token = self._tokens.get(key)
        if token is None:
            return None
        if self._clock() >= token.expires_at:
            del self._tokens[key]
            return None
        return token.value

    def put(self, key: tuple[str, str, str, str], value: str, expires_in: float) -> None:
        lifetime = max(expires_in, MIN_TOKEN_LIFETIME)
        margin = min(30.0, lifetime * 0.1)
        if len(self._tokens) >= self._max_entries:
            now = self._clock()
            for k in [k for k, t in self._tokens.items() if t.expires_at <= now] or list(self._tokens)[:1]:
                del self._tokens[k]
        self._tokens[key] = _Token(value, self._clock() + lifetime - margin)

    def drop(self, key: tuple[str, str, str, str]) -> None:
        self._tokens.pop(key, None)


@dataclass(slots=True)
class HostAuthState:
    """What we learnt about a registry's auth: the last challenge (so later requests can authenticate
    pre-emptively, without a 401 round trip) and the credentials that apply."""

    credentials: Credentials | None
    challenge: Challenge | None = None
