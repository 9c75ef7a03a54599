"""pytest fixtures for real registries (load with ``pytest_plugins = ["tests.support.fixtures"]``).

Nothing is skipped: a missing ``docker-registry``/``htpasswd`` makes the fixture FAIL with an install hint.
Every process and thread started here is stopped in teardown.

* ``registry`` (session): plain-HTTP anonymous :class:`RegistryProcess`.
* ``tls_registry`` (session): TLS + htpasswd; ``.username`` ``"alice"``, ``.password`` ``"s3cret"``,
  ``.ca_pem_path``, ``.ssl_context()``.
* ``token_registry`` (session): token auth; ``.token_server`` (:class:`TokenServer`, user ``"bob"`` /
  ``"hunter2"``, anonymous pull disabled), ``.username``, ``.password``.
* ``referrers_proxy`` (function): :class:`ReferrersProxy` in front of ``registry``, switches/log/counters reset
  before and after each test (recorded referrers persist with the session registry's content).
* ``referrers_proxy_factory`` (function): ``make(upstream: RegistryProcess) -> ReferrersProxy`` for a proxy in
  front of another registry (e.g. ``token_registry``); stopped at teardown.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from tests.support.referrers_proxy import ReferrersProxy
from tests.support.registry import (
    RegistryNotInstalledError,
    RegistryProcess,
    TokenServer,
    find_htpasswd_binary,
    find_registry_binary,
)

__all__ = [
    "TLS_PASSWORD",
    "TLS_USER",
    "TOKEN_PASSWORD",
    "TOKEN_USER",
    "referrers_proxy",
    "referrers_proxy_factory",
    "registry",
    "tls_registry",
    "token_registry",
]

TLS_USER, TLS_PASSWORD = "alice", "s3cret"
TOKEN_USER, TOKEN_PASSWORD = "bob", "hunter2"


def _require(*, htpasswd: bool = False) -> None:
    message: str | None = None
    try:
        find_registry_binary()
        if htpasswd:
            find_htpasswd_binary()
    except RegistryNotInstalledError as exc:
        message = str(exc)
    if message is not None:
        pytest.fail(message, pytrace=False)


@pytest.fixture(scope="session")
def registry() -> Iterator[RegistryProcess]:
    _require()
    with RegistryProcess() as reg:
        yield reg


@pytest.fixture(scope="session")
def tls_registry() -> Iterator[RegistryProcess]:
    _require(htpasswd=True)
    with RegistryProcess(tls=True, htpasswd_users={TLS_USER: TLS_PASSWORD}) as reg:
        yield reg


@pytest.fixture(scope="session")
def token_registry() -> Iterator[RegistryProcess]:
    _require()
    with TokenServer(users={TOKEN_USER: TOKEN_PASSWORD}, anonymous_pull=False) as token_server:  # noqa: SIM117
        with RegistryProcess(token_server=token_server) as reg:
            yield reg


@pytest.fixture(scope="session")
def _referrers_proxy_session(registry: RegistryProcess) -> Iterator[ReferrersProxy]:
    with ReferrersProxy(registry.url) as proxy:
        yield proxy


@pytest.fixture
def referrers_proxy(_referrers_proxy_session: ReferrersProxy) -> Iterator[ReferrersProxy]:
    _referrers_proxy_session.reset()
    yield _referrers_proxy_session
    _referrers_proxy_session.reset()


@pytest.fixture
def referrers_proxy_factory() -> Iterator[Callable[[RegistryProcess], ReferrersProxy]]:
    started: list[ReferrersProxy] = []

    def make(upstream: RegistryProcess) -> ReferrersProxy:
        token_realm = upstream.token_server.realm if upstream.token_server is not None else None
        proxy = ReferrersProxy(upstream.url, upstream_ssl=upstream.ssl_context(), token_upstream=token_realm)
        started.append(proxy)
        return proxy.start()

    yield make
    for proxy in started:
        proxy.stop()
