"""Gatekeeper's wire format (gatekeeper-protocol.md §2) and the mutation value (§8)."""

from __future__ import annotations

import json

import pytest

from provider.errors import RequestInvalidError
from provider.server.app import _pinned_value
from provider.server.protocol import item, parse_request, response

V1BETA1 = "externaldata.gatekeeper.sh/v1beta1"
V1ALPHA1 = "externaldata.gatekeeper.sh/v1alpha1"
DIGEST = "sha256:" + "ab" * 32


def _body(api_version: object = V1BETA1, kind: object = "ProviderRequest", keys: object = None) -> bytes:
    doc: dict[str, object] = {"apiVersion": api_version, "kind": kind, "request": {"keys": keys}}
    return json.dumps(doc).encode()


# -- parse_request -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("api_version", [V1BETA1, V1ALPHA1])
def test_accepts_both_api_versions(api_version: str) -> None:
    keys = ["reg/app:v1", f"reg/db@{DIGEST}"]
    req = parse_request(_body(api_version, keys=keys), max_keys=10)
    assert req.api_version == api_version
    assert req.keys == keys


def test_exactly_what_gatekeeper_sends() -> None:
    body = (
        b'{"apiVersion":"externaldata.gatekeeper.sh/v1beta1","kind":"ProviderRequest",'
        b'"request":{"keys":["reg/app:v1","reg/db@sha256:' + b"ab" * 32 + b'"]}}'
    )
    assert parse_request(body, 1000).keys == ["reg/app:v1", f"reg/db@{DIGEST}"]


def test_keys_are_kept_byte_for_byte_with_duplicates() -> None:
    keys = ["nginx", "nginx", "  spaced  ", "ünïcode"]
    assert parse_request(_body(keys=keys), 10).keys == keys


def test_empty_and_missing_keys() -> None:
    assert parse_request(_body(keys=[]), 10).keys == []
    body = json.dumps({"apiVersion": V1BETA1, "kind": "ProviderRequest", "request": {}}).encode()
    assert parse_request(body, 10).keys == []


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        pytest.param(b"{not json", "JSON", id="malformed"),
        pytest.param(b"", "JSON", id="empty"),
        pytest.param(b'{"apiVersion": "\xff\xfe"}', "UTF-8", id="not-utf8"),
        pytest.param(b"[1, 2]", "object", id="array"),
        pytest.param(_body(kind="ProviderResponse", keys=[]), "kind", id="wrong-kind"),
        pytest.param(_body(kind=None, keys=[]), "kind", id="no-kind"),
        pytest.param(_body(api_version="externaldata.gatekeeper.sh/v2", keys=[]), "apiVersion", id="wrong-version"),
        pytest.param(_body(api_version=None, keys=[]), "apiVersion", id="no-version"),
        pytest.param(_body(keys="nginx"), "list", id="keys-string"),
        pytest.param(_body(keys={"a": 1}), "list", id="keys-object"),
        pytest.param(
            json.dumps({"apiVersion": V1BETA1, "kind": "ProviderRequest", "request": ["a"]}).encode(),
            "request",
            id="request-not-object",
        ),
        pytest.param(
            json.dumps({"apiVersion": V1BETA1, "kind": "ProviderRequest"}).encode(), "request", id="no-request"
        ),
    ],
)
def test_rejects(body: bytes, fragment: str) -> None:
    with pytest.raises(RequestInvalidError) as info:
        parse_request(body, 10)
    assert info.value.code == "REQUEST_INVALID"
    assert fragment in str(info.value)


def test_utf16_body_is_rejected() -> None:
    # RFC 8259 §8.1: JSON exchanged between systems is UTF-8; Gatekeeper's Go client sends UTF-8
    body = _body(keys=["nginx"]).decode().encode("utf-16")
    with pytest.raises(RequestInvalidError):
        parse_request(body, 10)


def test_deeply_nested_json_is_a_request_error() -> None:
    # 100k levels of nesting fit well inside the default 1 MiB body limit; the answer must still be a
    # RequestInvalidError (-> systemError), not an unexpected exception that turns into an HTTP 500
    depth = 100_000
    body = (
        b'{"apiVersion":"externaldata.gatekeeper.sh/v1beta1","kind":"ProviderRequest","request":{"keys":'
        + b"[" * depth
        + b"]" * depth
        + b"}}"
    )
    assert len(body) < 1024 * 1024
    with pytest.raises(RequestInvalidError):
        parse_request(body, 1000)


@pytest.mark.parametrize(("keys", "bad_index"), [(["a", "b", 7], 2), ([None], 0), (["a", ["b"]], 1), (["a", {}], 1)])
def test_non_string_key_names_the_index(keys: list[object], bad_index: int) -> None:
    with pytest.raises(RequestInvalidError) as info:
        parse_request(_body(keys=keys), 10)
    assert str(bad_index) in info.value.message


def test_non_string_keys_name_every_index() -> None:
    with pytest.raises(RequestInvalidError) as info:
        parse_request(_body(keys=[1, "ok", 2.5]), 10)
    message = info.value.message
    assert "0" in message
    assert "2" in message


def test_too_many_keys() -> None:
    keys = [f"app{i}" for i in range(4)]
    assert parse_request(_body(keys=keys[:3]), max_keys=3).keys == keys[:3]
    with pytest.raises(RequestInvalidError) as info:
        parse_request(_body(keys=keys), max_keys=3)
    assert "3" in info.value.message


# -- response ------------------------------------------------------------------------------------------------------


def test_response_shape() -> None:
    items = [item("reg/app:v1", value={"allowed": True}), item("bad", error="REFERENCE_INVALID: nope")]
    doc = response(items)
    assert doc["apiVersion"] == V1BETA1
    assert doc["kind"] == "ProviderResponse"
    body = doc["response"]
    assert body["idempotent"] is True
    assert body["items"] == [
        {"key": "reg/app:v1", "value": {"allowed": True}},
        {"key": "bad", "error": "REFERENCE_INVALID: nope"},
    ]
    assert "systemError" not in body  # omitempty
    json.dumps(doc)  # serialisable


def test_response_with_system_error() -> None:
    doc = response([], "REQUEST_INVALID: body is not JSON")
    assert doc["response"]["systemError"] == "REQUEST_INVALID: body is not JSON"
    assert doc["response"]["items"] == []


def test_huge_system_error_is_truncated() -> None:
    huge = "x" * 100_000
    doc = response([], huge)
    text = doc["response"]["systemError"]
    assert text
    assert len(text) < len(huge)
    assert len(text) <= 16 * 1024
    assert text.startswith("xxx")


def test_item_error_drops_value() -> None:
    assert item("k", value="v", error="E: x") == {"key": "k", "error": "E: x"}
    assert item("k", value="reg/app@" + DIGEST) == {"key": "k", "value": "reg/app@" + DIGEST}


def test_item_value_may_be_any_json_including_falsy() -> None:
    assert item("k", value={}) == {"key": "k", "value": {}}
    assert item("k", value=False) == {"key": "k", "value": False}


# -- the mutation value --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "keep_tag", "expected"),
    [
        ("nginx:1", False, f"nginx@{DIGEST}"),
        ("nginx:1", True, f"nginx:1@{DIGEST}"),
        ("nginx", False, f"nginx@{DIGEST}"),
        ("nginx", True, f"nginx@{DIGEST}"),
        ("host:5000/app:v1", False, f"host:5000/app@{DIGEST}"),
        ("host:5000/app:v1", True, f"host:5000/app:v1@{DIGEST}"),
        ("host:5000/app", False, f"host:5000/app@{DIGEST}"),
        ("host:5000/app", True, f"host:5000/app@{DIGEST}"),
        ("ghcr.io/org/team/app:1.2.3", False, f"ghcr.io/org/team/app@{DIGEST}"),
        # already pinned: the same string comes back
        (f"nginx@{DIGEST}", False, f"nginx@{DIGEST}"),
        (f"nginx@{DIGEST}", True, f"nginx@{DIGEST}"),
        (f"host:5000/app:v1@{DIGEST}", True, f"host:5000/app:v1@{DIGEST}"),
        (f"host:5000/app@{DIGEST}", False, f"host:5000/app@{DIGEST}"),
    ],
)
def test_pinned_value(key: str, keep_tag: bool, expected: str) -> None:
    assert _pinned_value(key, DIGEST, keep_tag) == expected


@pytest.mark.parametrize("keep_tag", [False, True])
@pytest.mark.parametrize("key", ["nginx:1", "nginx", "host:5000/app:v1", "host:5000/app", f"ghcr.io/a/b:c@{DIGEST}"])
def test_pinned_value_is_a_fixed_point(key: str, keep_tag: bool) -> None:
    # mutation must be idempotent: feeding the output back in returns the same string
    once = _pinned_value(key, DIGEST, keep_tag)
    assert _pinned_value(once, DIGEST, keep_tag) == once
    assert once.endswith(f"@{DIGEST}")
    assert once.count("@") == 1


def test_oversized_integers_are_a_request_error() -> None:
    body = b'{"apiVersion": "externaldata.gatekeeper.sh/v1beta1", "kind": "ProviderRequest", "x": ' + b"1" * 5000 + b"}"
    with pytest.raises(RequestInvalidError) as exc:
        parse_request(body, 10)
    assert "cannot be decoded" in exc.value.message
