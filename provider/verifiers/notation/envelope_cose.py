"""COSE_Sign1_Tagged for Notary Project signatures (``signature-envelope-cose.md``).

``cbor2`` decodes the values; a small structural scan first enforces what go-cose enforces and ``cbor2`` does
not: one well-formed item, definite lengths only, no duplicate map keys, and times that are CBOR tag 1.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import cbor2

from provider.verifiers.notation.envelope import (
    COSE_ALGORITHMS,
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

LABEL_ALG, LABEL_CRIT, LABEL_CONTENT_TYPE, LABEL_X5CHAIN = 1, 2, 3, 33
# ``crit`` must not list the common parameters (integer labels 0 to 8).
REGISTERED: frozenset[object] = frozenset(range(9))
_KNOWN_PROTECTED = frozenset(
    {LABEL_ALG, LABEL_CRIT, LABEL_CONTENT_TYPE, H_SIGNING_SCHEME, H_SIGNING_TIME, H_AUTHENTIC_SIGNING_TIME, H_EXPIRY}
)
_MAX_DEPTH = 16
_TAG_SIGN1 = 0xD2


def _argument(data: bytes, pos: int) -> tuple[int, int, int]:
    """``(major type, argument, position after the head)``; indefinite and reserved lengths are refused."""
    if pos >= len(data):
        raise CheckFailure("COSE envelope is truncated")
    initial = data[pos]
    major, info = initial >> 5, initial & 0x1F
    if info < 24:
        return major, info, pos + 1
    if info > 27:
        raise CheckFailure("COSE envelope uses indefinite-length or reserved CBOR encoding")
    size = 1 << (info - 24)
    if pos + 1 + size > len(data):
        raise CheckFailure("COSE envelope is truncated")
    return major, int.from_bytes(data[pos + 1 : pos + 1 + size], "big"), pos + 1 + size


def _item_end(data: bytes, pos: int, depth: int = 0) -> int:
    if depth > _MAX_DEPTH:
        raise CheckFailure("COSE envelope nests too deeply")
    major, arg, pos = _argument(data, pos)
    if major in (2, 3):
        if pos + arg > len(data):
            raise CheckFailure("COSE envelope is truncated")
        return pos + arg
    if major == 4:
        for _ in range(arg):
            pos = _item_end(data, pos, depth + 1)
        return pos
    if major == 5:
        keys: set[bytes] = set()
        for _ in range(arg):
            end = _item_end(data, pos, depth + 1)
            if data[pos:end] in keys:
                raise CheckFailure("COSE envelope has a map with a duplicate key")
            keys.add(data[pos:end])
            pos = _item_end(data, end, depth + 1)
        return pos
    if major == 6:
        return _item_end(data, pos, depth + 1)
    return pos


def _single_item(data: bytes, what: str) -> None:
    if not data:
        raise CheckFailure(f"{what} is empty")
    if _item_end(data, 0) != len(data):
        raise CheckFailure(f"{what} has trailing data")


def _map_entries(data: bytes) -> list[tuple[bytes, bytes]]:
    """The raw ``(key, value)`` encodings of a top-level CBOR map."""
    major, count, pos = _argument(data, 0)
    if major != 5:
        raise CheckFailure("COSE protected header is not a map")
    entries = []
    for _ in range(count):
        key_end = _item_end(data, pos)
        value_end = _item_end(data, key_end)
        entries.append((data[pos:key_end], data[key_end:value_end]))
        pos = value_end
    return entries


def _loads(data: bytes) -> Any:
    try:
        return cbor2.loads(data)
    except (cbor2.CBORDecodeError, ValueError, OverflowError) as exc:
        raise CheckFailure(f"COSE envelope cannot be decoded ({exc})") from None


def _time(raw: bytes, label: str) -> datetime:
    if not raw or raw[0] != 0xC1:
        raise CheckFailure(f"{label} must be a CBOR tag 1 (epoch) date-time")
    value = _loads(raw)
    if not isinstance(value, datetime):
        raise CheckFailure(f"{label} is not a valid epoch date-time")
    return value.astimezone(UTC)


def _is_sequence(value: object) -> bool:
    return isinstance(value, list | tuple)


def parse(data: bytes) -> SignerInfo:
    """Parse and verify a COSE_Sign1_Tagged envelope; raise :class:`CheckFailure` (integrity) on any defect."""
    _single_item(data, "COSE envelope")
    if data[0] != _TAG_SIGN1:
        raise CheckFailure("envelope is not a COSE_Sign1_Tagged object (CBOR tag 18)")
    message = _loads(data)
    body = getattr(message, "value", None)
    if not isinstance(body, list | tuple) or len(body) != 4:
        raise CheckFailure("COSE_Sign1 must be an array of four items")
    protected_raw, unprotected, payload, signature = body
    if not isinstance(protected_raw, bytes) or not protected_raw:
        raise CheckFailure("COSE protected header is missing")
    if not isinstance(unprotected, Mapping):
        raise CheckFailure("COSE unprotected header is not a map")
    if not isinstance(payload, bytes):
        raise CheckFailure("COSE payload must be attached as a byte string")
    if not isinstance(signature, bytes):
        raise CheckFailure("COSE signature is not a byte string")
    _single_item(protected_raw, "COSE protected header")
    raw_values: dict[object, bytes] = {}
    for raw_key, raw_value in _map_entries(protected_raw):
        key = _loads(raw_key)
        if not isinstance(key, int | str) or isinstance(key, bool):
            raise CheckFailure("COSE protected header labels must be integers or text")
        raw_values[key] = raw_value
    protected = {
        key: _loads(value)
        for key, value in raw_values.items()
        if key not in (H_SIGNING_TIME, H_EXPIRY, H_AUTHENTIC_SIGNING_TIME)
    }
    overlap = sorted(str(k) for k in set(raw_values) & set(unprotected))
    if overlap:
        raise CheckFailure(f"header parameters {overlap} appear both protected and unprotected")
    alg = protected.get(LABEL_ALG)
    if not isinstance(alg, int) or isinstance(alg, bool) or alg not in COSE_ALGORITHMS:
        raise CheckFailure(f"COSE algorithm {alg!r} is not allowed (PS256/384/512, ES256/384/512)")
    crit = protected.get(LABEL_CRIT)
    if crit is not None and (
        not _is_sequence(crit) or not all(isinstance(c, int | str) and not isinstance(c, bool) for c in crit)
    ):
        raise CheckFailure("crit header is not an array of labels")
    cty = protected.get(LABEL_CONTENT_TYPE)
    if not isinstance(cty, str):
        raise CheckFailure("content type header is missing or not text")
    scheme = protected.get(H_SIGNING_SCHEME)
    if not isinstance(scheme, str):
        raise CheckFailure(f"{H_SIGNING_SCHEME} header is missing or not text")
    chain = unprotected.get(LABEL_X5CHAIN)
    if not _is_sequence(chain) or not chain or not all(isinstance(c, bytes) for c in chain):
        raise CheckFailure("x5chain (label 33) is missing or not an array of certificates")
    token = unprotected.get(H_TIMESTAMP_SIGNATURE)
    if token is not None and not isinstance(token, bytes):
        raise CheckFailure(f"{H_TIMESTAMP_SIGNATURE} is not a byte string")
    agent = unprotected.get(H_SIGNING_AGENT)
    if agent is not None and not isinstance(agent, str):
        raise CheckFailure(f"{H_SIGNING_AGENT} is not text")
    times = {
        label: _time(raw_values[label], label)
        for label in (H_SIGNING_TIME, H_AUTHENTIC_SIGNING_TIME, H_EXPIRY)
        if label in raw_values
    }
    raw = RawEnvelope(
        envelope="cose",
        algorithm=COSE_ALGORITHMS[alg],
        content_type=cty,
        signing_scheme=scheme,
        signing_time=times.get(H_SIGNING_TIME),
        authentic_signing_time=times.get(H_AUTHENTIC_SIGNING_TIME),
        expiry=times.get(H_EXPIRY),
        crit=list(crit or []),
        protected_keys=frozenset(raw_values),
        extended={k: v for k, v in protected.items() if k not in _KNOWN_PROTECTED},
        chain_der=list(chain),
        signature=signature,
        signed_bytes=sig_structure(protected_raw, payload),
        payload=payload,
        timestamp_token=token,
        signing_agent=agent,
    )
    return build_signer_info(raw, REGISTERED)


def sig_structure(protected: bytes, payload: bytes) -> bytes:
    """``ToBeSigned`` for COSE_Sign1: ``["Signature1", protected, h'', payload]``."""
    return cbor2.dumps(["Signature1", protected, b"", payload])
