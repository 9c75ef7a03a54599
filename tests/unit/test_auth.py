"""Registry auth: WWW-Authenticate parsing and the token cache (oci-and-referrers.md §8)."""

from __future__ import annotations

import base64

import pytest

from provider.registry.auth import TokenCache, basic_header, parse_challenge, pull_scope

# -- parse_challenge -----------------------------------------------------------------------------------------------


def test_bearer_realm_service_scope() -> None:
    c = parse_challenge(
        'Bearer realm="https://auth.example/token",service="registry.example",scope="repository:team/app:pull"'
    )
    assert c is not None
    assert c.scheme == "bearer"
    assert c.realm == "https://auth.example/token"
    assert c.service == "registry.example"
    assert c.scope == "repository:team/app:pull"
    assert c.error is None


def test_comma_inside_quotes_is_part_of_the_value() -> None:
    c = parse_challenge('Bearer realm="https://a.example/token",scope="repository:team/app:pull,push",service="s"')
    assert c is not None
    assert c.scope == "repository:team/app:pull,push"
    assert c.service == "s"
    assert c.realm == "https://a.example/token"


def test_escaped_quote_in_value() -> None:
    c = parse_challenge(r'Bearer realm="https://a.example/t?x=\"y\"",service="svc"')
    assert c is not None
    assert c.realm == 'https://a.example/t?x="y"'
    assert c.service == "svc"


def test_escaped_backslash_in_value() -> None:
    c = parse_challenge(r'Bearer realm="a\\b",service="svc"')
    assert c is not None
    assert c.realm == "a\\b"
    assert c.service == "svc"


def test_several_space_separated_scopes() -> None:
    c = parse_challenge('Bearer realm="r",service="s",scope="repository:a:pull repository:b/c:pull,push"')
    assert c is not None
    assert c.scope == "repository:a:pull repository:b/c:pull,push"
    assert c.scope.split(" ") == ["repository:a:pull", "repository:b/c:pull,push"]


def test_basic_realm() -> None:
    c = parse_challenge('Basic realm="Registry Realm"')
    assert c is not None
    assert c.scheme == "basic"
    assert c.realm == "Registry Realm"
    assert c.service is None


def test_insufficient_scope_error() -> None:
    c = parse_challenge(
        'Bearer realm="https://auth.example/token",service="registry.example",'
        'scope="repository:team/app:pull",error="insufficient_scope"'
    )
    assert c is not None
    assert c.error == "insufficient_scope"
    assert c.scope == "repository:team/app:pull"


def test_spaces_after_commas_and_scheme_case() -> None:
    c = parse_challenge('BEARER realm="r",  service="s" , scope="repository:x:pull"')
    assert c is not None
    assert c.scheme == "bearer"
    assert (c.realm, c.service, c.scope) == ("r", "s", "repository:x:pull")


def test_parameter_names_are_case_insensitive() -> None:
    c = parse_challenge('Bearer Realm="r",SERVICE="s"')
    assert c is not None
    assert (c.realm, c.service) == ("r", "s")


def test_unquoted_token_values() -> None:
    c = parse_challenge("Bearer realm=https://auth.example/token,service=registry.example")
    assert c is not None
    assert c.realm == "https://auth.example/token"
    assert c.service == "registry.example"


def test_challenge_on_v2_without_scope() -> None:
    c = parse_challenge('Bearer realm="https://auth.example/token",service="registry.example"')
    assert c is not None
    assert c.scope is None
    assert pull_scope("team/app") == "repository:team/app:pull"


@pytest.mark.parametrize("header", ["", "   "])
def test_empty_header(header: str) -> None:
    assert parse_challenge(header) is None


def test_basic_header() -> None:
    header = basic_header("alice", "pa:ss")
    scheme, _, value = header.partition(" ")
    assert scheme == "Basic"
    assert base64.b64decode(value) == b"alice:pa:ss"


# -- TokenCache ----------------------------------------------------------------------------------------------------


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


KEY = ("registry.example", "https://auth.example/token", "registry.example", "repository:a:pull")


def test_token_kept_until_shortly_before_expiry() -> None:
    clock = FakeClock()
    cache = TokenCache(clock=clock)
    cache.put(KEY, "tok", expires_in=300)
    assert cache.get(KEY) == "tok"
    clock.now += 200
    assert cache.get(KEY) == "tok"
    # a margin is applied: the token is gone before its nominal expiry...
    clock.now = 1000.0 + 299
    assert cache.get(KEY) is None


def test_token_gone_at_expiry() -> None:
    clock = FakeClock()
    cache = TokenCache(clock=clock)
    cache.put(KEY, "tok", expires_in=300)
    clock.now += 300
    assert cache.get(KEY) is None


@pytest.mark.parametrize("expires_in", [0, 1, 10, 59])
def test_expires_in_below_60_is_treated_as_60(expires_in: float) -> None:
    clock = FakeClock()
    cache = TokenCache(clock=clock)
    cache.put(KEY, "tok", expires_in=expires_in)
    clock.now += 40  # past the announced lifetime, well within 60 s minus any sane margin
    assert cache.get(KEY) == "tok"
    clock.now = 1000.0 + 60
    assert cache.get(KEY) is None


def test_drop() -> None:
    cache = TokenCache(clock=FakeClock())
    other = (*KEY[:3], "repository:b:pull")
    cache.put(KEY, "tok", expires_in=300)
    cache.put(other, "tok2", expires_in=300)
    cache.drop(KEY)
    assert cache.get(KEY) is None
    assert cache.get(other) == "tok2"
    cache.drop(KEY)  # dropping twice is fine


def test_tokens_are_per_key() -> None:
    cache = TokenCache(clock=FakeClock())
    cache.put(KEY, "a", expires_in=300)
    assert cache.get((*KEY[:3], "repository:other:pull")) is None
    assert cache.get(("other", *KEY[1:])) is None


def test_put_replaces() -> None:
    clock = FakeClock()
    cache = TokenCache(clock=clock)
    cache.put(KEY, "old", expires_in=60)
    clock.now += 30
    cache.put(KEY, "new", expires_in=300)
    clock.now += 100
    assert cache.get(KEY) == "new"


def test_bounded_entries() -> None:
    clock = FakeClock()
    cache = TokenCache(clock=clock, max_entries=3)
    keys = [(*KEY[:3], f"repository:r{i}:pull") for i in range(5)]
    for i, k in enumerate(keys):
        cache.put(k, f"t{i}", expires_in=300)
    present = [k for k in keys if cache.get(k) is not None]
    assert len(present) <= 3
    assert cache.get(keys[-1]) == "t4"  # the newest is always kept
