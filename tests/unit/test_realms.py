"""Where a registry's token challenge may send Referee, and with which credentials (serve, verify and attach share
this rule: provider/registry/realms.py)."""

from __future__ import annotations

import pytest

from provider.config import Credentials, RegistriesConfig, RegistryHostConfig
from provider.confignode import Secret
from provider.errors import AuthDeniedError
from provider.registry.realms import judge_realm

USER = Credentials(username="u", password=Secret("p"))


def _judge(realm: str, *, allow: tuple[str, ...] = ("registry.example",), realms: tuple[str, ...] = (),
           creds: Credentials | None = None, registry: str = "registry.example") -> str:  # fmt: skip
    settings = RegistryHostConfig(host=registry, token_realms=realms)
    config = RegistriesConfig(allow=allow, hosts=(settings,))
    return judge_realm(realm, registry, f"https://{registry}", settings, config, creds).host


def test_the_registry_itself_and_configured_or_known_realms_need_no_allow_entry() -> None:
    assert _judge("https://registry.example/token", creds=USER) == "registry.example"
    assert _judge("https://auth.example/token", realms=("auth.example",), creds=USER) == "auth.example"
    # Docker Hub's token service is known; allow: [docker.io] alone must work (it used to fail: AUTH_DENIED).
    assert _judge("https://auth.docker.io/token", allow=("docker.io",), registry="docker.io", creds=USER) == (
        "auth.docker.io"
    )


def test_other_hosts_need_an_allow_entry_and_never_get_credentials() -> None:
    with pytest.raises(AuthDeniedError, match="Referee contacts only listed hosts"):
        _judge("https://tokens.elsewhere/token")
    assert (
        _judge("https://tokens.elsewhere/token", allow=("registry.example", "tokens.elsewhere")) == "tokens.elsewhere"
    )
    with pytest.raises(AuthDeniedError, match="only to the registry itself or to a realm listed in its tokenRealms"):
        _judge("https://tokens.elsewhere/token", allow=("registry.example", "tokens.elsewhere"), creds=USER)


@pytest.mark.parametrize(
    "realm",
    ["https://registry.example@evil.example/token", "ftp://registry.example/token", "https://registry.example:0/t"],
)
def test_unsafe_realm_urls_are_refused(realm: str) -> None:
    with pytest.raises(AuthDeniedError, match="token realm refused"):
        _judge(realm, allow=("*",))


def test_a_plain_http_realm_needs_plain_http() -> None:
    with pytest.raises(AuthDeniedError, match="plain HTTP"):
        _judge("http://registry.example/token")
