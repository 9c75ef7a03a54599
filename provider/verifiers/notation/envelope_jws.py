"""JWS JSON serialization (flattened) for Notary Project signatures (``signature-envelope-jws.md``)."""

from __future__ import annotations

import base64
import binascii
import json
import re
from datetime import datetime
from typing import Any

from provider.verifiers.notation.envelope import (
    H_AUTHENTIC_SIGNING_TIME,
    H_EXPIRY,
    H_SIGNING_AGENT,
    H_SIGNING_SCHEME,
    H_SIGNING_TIME,
    H_TIMESTAMP_SIGNATURE,
    CheckFailure,
    RawEnvelope,
    SignerInfo,
    build_signer_info,
)

TOP_LEVEL_KEYS = frozenset({"payload", "protected", "header", "signature"})
# RFC 7515 §4.1 registered header parameter names: ``crit`` must not list them.
REGISTERED = frozenset({"alg", "jku", "jwk", "kid", "x5u", "x5c", "x5t", "x5t#S256", "typ", "cty", "crit"})
_KNOWN_PROTECTED = frozenset(
    {"alg", "cty", "crit", H_SIGNING_SCHEME, H_SIGNING_TIME, H_AUTHENTIC_SIGNING_TIME, H_EXPIRY}
)
_B64URL = re.compile(r"^[A-Za-z0-9_-]*$")
_RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?(Z|[+-]\d{2}:\d{2})$")


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise CheckFailure(f"JSON object repeats the key {key!r}")
        out[key] = value
    return out


def _json(data: bytes, what: str) -> Any:
    try:
        return json.loads(data, object_pairs_hook=_no_duplicates)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        raise CheckFailure(f"{what} is not valid JSON") from None


def b64url_decode(value: object, what: str) -> bytes:
    """Unpadded base64url as RFC 7515 requires (no ``=``, no other alphabet)."""
    if not isinstance(value, str) or not _B64URL.match(value) or len(value) % 4 == 1:
        raise CheckFailure(f"{what} is not unpadded base64url")
    return base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))


def _b64std_decode(value: object, what: str) -> bytes:
    if not isinstance(value, str):
        raise CheckFailure(f"{what} is not a base64 string")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise CheckFailure(f"{what} is not standard base64") from None


def parse_time(value: object, what: str) -> datetime:
    if not isinstance(value, str) or not _RFC3339.match(value):
        raise CheckFailure(f"{what} is not an RFC 3339 date-time")
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise CheckFailure(f"{what} is not an RFC 3339 date-time") from None


def _optional_time(header: dict[str, Any], key: str) -> datetime | None:
    return None if key not in header else parse_time(header[key], key)


def parse(data: bytes) -> SignerInfo:
    """Parse and verify a JWS envelope; raise :class:`CheckFailure` (integrity) on any defect."""
    doc = _json(data, "JWS envelope")
    if not isinstance(doc, dict):
        raise CheckFailure("JWS envelope is not a JSON object")
    if set(doc) != TOP_LEVEL_KEYS:
        extra = sorted(set(doc) - TOP_LEVEL_KEYS)
        missing = sorted(TOP_LEVEL_KEYS - set(doc))
        what = f"unexpected {extra}" if extra else f"missing {missing}"
        raise CheckFailure(f"JWS envelope must be flattened JSON with payload, protected, header, signature: {what}")
    protected_b64, payload_b64 = doc["protected"], doc["payload"]
    protected_raw = b64url_decode(protected_b64, "protected header")
    payload = b64url_decode(payload_b64, "payload")
    signature = b64url_decode(doc["signature"], "signature")
    protected = _json(protected_raw, "protected header")
    if not isinstance(protected, dict):
        raise CheckFailure("protected header is not a JSON object")
    unprotected = doc["header"]
    if not isinstance(unprotected, dict):
        raise CheckFailure("unprotected header is not a JSON object")
    overlap = sorted(set(protected) & set(unprotected))
    if overlap:
        raise CheckFailure(f"header parameters {overlap} appear both protected and unprotected")
    alg, cty, crit, scheme = (protected.get(k) for k in ("alg", "cty", "crit", H_SIGNING_SCHEME))
    if not isinstance(alg, str):
        raise CheckFailure("alg header is missing or not a string")
    if not isinstance(cty, str):
        raise CheckFailure("cty header is missing or not a string")
    if crit is not None and (not isinstance(crit, list) or not all(isinstance(c, str) for c in crit)):
        raise CheckFailure("crit header is not a list of strings")
    if not isinstance(scheme, str):
        raise CheckFailure(f"{H_SIGNING_SCHEME} header is missing or not a string")
    x5c = unprotected.get("x5c")
    if not isinstance(x5c, list) or not x5c:
        raise CheckFailure("x5c header is missing or empty")
    chain = [_b64std_decode(c, f"x5c[{i}]") for i, c in enumerate(x5c)]
    token = unprotected.get(H_TIMESTAMP_SIGNATURE)
    agent = unprotected.get(H_SIGNING_AGENT)
    if agent is not None and not isinstance(agent, str):
        raise CheckFailure(f"{H_SIGNING_AGENT} is not a string")
    raw = RawEnvelope(
        envelope="jws",
        algorithm=alg,
        content_type=cty,
        signing_scheme=scheme,
        signing_time=_optional_time(protected, H_SIGNING_TIME),
        authentic_signing_time=_optional_time(protected, H_AUTHENTIC_SIGNING_TIME),
        expiry=_optional_time(protected, H_EXPIRY),
        crit=list(crit or []),
        protected_keys=frozenset(protected),
        extended={k: v for k, v in protected.items() if k not in _KNOWN_PROTECTED},
        chain_der=chain,
        signature=signature,
        signed_bytes=f"{protected_b64}.{payload_b64}".encode("ascii"),
        payload=payload,
        timestamp_token=None if token is None else _b64std_decode(token, H_TIMESTAMP_SIGNATURE),
        signing_agent=agent,
    )
    return build_signer_info(raw, REGISTERED)
