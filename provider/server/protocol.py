"""Gatekeeper's external-data wire format (ProviderRequest / ProviderResponse)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from provider.errors import RequestInvalidError

API_VERSIONS = ("externaldata.gatekeeper.sh/v1beta1", "externaldata.gatekeeper.sh/v1alpha1")
RESPONSE_API_VERSION = API_VERSIONS[0]
MAX_SYSTEM_ERROR = 4096


@dataclass(frozen=True, slots=True)
class ProviderRequest:
    api_version: str
    keys: list[str]


def parse_request(body: bytes, max_keys: int) -> ProviderRequest:
    """Parse and validate a ProviderRequest body; raise RequestInvalidError with a precise reason."""
    try:
        doc = json.loads(body.decode("utf-8"))
    except UnicodeDecodeError:
        raise RequestInvalidError("body is not UTF-8") from None
    except json.JSONDecodeError as exc:
        raise RequestInvalidError(f"body is not JSON: {exc.msg} at position {exc.pos}") from None
    except (RecursionError, ValueError) as exc:
        raise RequestInvalidError(f"body cannot be decoded: {type(exc).__name__}") from None
    if not isinstance(doc, dict):
        raise RequestInvalidError("body is not a JSON object")
    api_version = doc.get("apiVersion")
    if api_version not in API_VERSIONS:
        raise RequestInvalidError(f"apiVersion must be one of {', '.join(API_VERSIONS)}; got {api_version!r}")
    if doc.get("kind") != "ProviderRequest":
        raise RequestInvalidError(f"kind must be ProviderRequest; got {doc.get('kind')!r}")
    request = doc.get("request")
    if not isinstance(request, dict):
        raise RequestInvalidError("request must be an object")
    keys = request.get("keys")
    if keys is None:
        keys = []
    if not isinstance(keys, list):
        raise RequestInvalidError("request.keys must be a list")
    if len(keys) > max_keys:
        raise RequestInvalidError(f"request has {len(keys)} keys; at most {max_keys} are accepted")
    bad = [i for i, k in enumerate(keys) if not isinstance(k, str)]
    if bad:
        listed = ", ".join(str(i) for i in bad[:5])
        raise RequestInvalidError(f"request.keys must be strings; item(s) {listed} are not")
    return ProviderRequest(api_version=api_version, keys=keys)


def item(key: str, value: Any = None, error: str | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"key": key}
    if error:
        out["error"] = error
    else:
        out["value"] = value
    return out


def response(items: list[dict[str, Any]], system_error: str = "", idempotent: bool = True) -> dict[str, Any]:
    if len(system_error) > MAX_SYSTEM_ERROR:
        system_error = system_error[: MAX_SYSTEM_ERROR - 3] + "..."
    body: dict[str, Any] = {"idempotent": idempotent, "items": items}
    if system_error:
        body["systemError"] = system_error
    return {"apiVersion": RESPONSE_API_VERSION, "kind": "ProviderResponse", "response": body}


_dump = json.JSONEncoder(separators=(",", ":")).encode


def encode_item(key: str, *, value: bytes | None = None, error: str | None = None, scalar: str | None = None) -> bytes:
    """One item, encoded: ``value`` is already-encoded JSON (a verdict), ``scalar`` a string value (a pinned
    reference), ``error`` an item error."""
    if error:
        return f'{{"key":{_dump(key)},"error":{_dump(error)}}}'.encode()
    if scalar is not None:
        return f'{{"key":{_dump(key)},"value":{_dump(scalar)}}}'.encode()
    assert value is not None
    return b'{"key":' + _dump(key).encode() + b',"value":' + value + b"}"


def encode_response(items: list[bytes], system_error: str = "", idempotent: bool = True) -> bytes:
    """The ProviderResponse :func:`response` describes, spliced from encoded items (each verdict is encoded once
    and cached with it, so a warm answer costs no JSON encoding of verdicts)."""
    if len(system_error) > MAX_SYSTEM_ERROR:
        system_error = system_error[: MAX_SYSTEM_ERROR - 3] + "..."
    head = f'{{"apiVersion":{_dump(RESPONSE_API_VERSION)},"kind":"ProviderResponse","response":{{"idempotent":'
    head += "true" if idempotent else "false"
    tail = f',"systemError":{_dump(system_error)}}}}}' if system_error else "}}"
    return head.encode() + b',"items":[' + b",".join(items) + b"]" + tail.encode()
