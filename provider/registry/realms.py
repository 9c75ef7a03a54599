"""Which token service a registry's ``WWW-Authenticate`` challenge may send Referee to, and whether the registry's
credentials may go with it — one rule for ``referee serve``/``verify`` (:mod:`provider.registry.client`) and
``referee attach`` (:mod:`provider.attach.session`).

A realm is contacted when it is on the registry's own host, is a token service configured or known for the registry
(``hosts[].tokenRealms``, :data:`KNOWN_TOKEN_REALMS`), or is a host ``registries.allow`` or ``registries.hosts``
lists. Credentials (Basic, identity tokens) go only to the registry's own host or a configured or known realm.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

from provider.config import Credentials, RegistriesConfig, RegistryHostConfig
from provider.errors import AuthDeniedError
from provider.registry.urls import UnsafeURLError, authority, safe_authority

# Registries whose token service lives on another host; their credentials may go there without configuration.
KNOWN_TOKEN_REALMS: dict[str, frozenset[str]] = {"docker.io": frozenset({"auth.docker.io"})}


@dataclass(frozen=True, slots=True)
class Realm:
    """A token service Referee may contact for a registry."""

    host: str
    scheme: str
    settings: RegistryHostConfig
    """``registries.hosts`` settings of the realm's own host (TLS), defaults when it has none."""


def judge_realm(
    realm: str,
    registry: str,
    base_url: str,
    settings: RegistryHostConfig,
    config: RegistriesConfig,
    credentials: Credentials | None,
) -> Realm:
    """The realm Referee may ask for a token, or :class:`AuthDeniedError` saying why not."""
    try:
        host = authority(realm)
    except UnsafeURLError as exc:
        raise AuthDeniedError(f"{registry}: token realm refused: {exc}") from None
    scheme = urlsplit(realm).scheme
    own_host = host in (safe_authority(base_url) or registry, registry)
    configured = host in frozenset(settings.token_realms) | KNOWN_TOKEN_REALMS.get(registry, frozenset())
    realm_settings = config.host_config(host)
    if scheme == "http" and not (realm_settings.plain_http or (own_host and settings.plain_http)):
        raise AuthDeniedError(
            f"{registry}: token realm {realm} is plain HTTP; list {host} with plainHttp: true to allow it"
        )
    listed = config.is_allowed(host, "") or host in {h.host for h in config.hosts}
    if not (own_host or configured or listed):
        raise AuthDeniedError(
            f"{registry}: token realm host {host} is not the registry's own host, not in its tokenRealms and not in "
            "registries.allow or registries.hosts; Referee contacts only listed hosts"
        )
    secret = credentials is not None and (credentials.identity_token or (credentials.username and credentials.password))
    if secret and not (own_host or configured):
        raise AuthDeniedError(
            f"{registry}: token realm host {host} is not the registry; Referee sends {registry}'s credentials only to "
            "the registry itself or to a realm listed in its tokenRealms"
        )
    return Realm(host, scheme, realm_settings)
