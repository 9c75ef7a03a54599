"""The decision log: one JSON line per key answered by ``/verify``, the audit trail of what Referee decided.

It is kept apart from the operational log so it can be shipped and retained on its own: its own stream
(``server.decisionLog.output``, stdout by default, while the operational log is on stderr), its own switch
(``server.decisionLog.enabled``, independent of ``--log-level``), and every line carries
``"logger": "referee.decision"`` and ``"level": "audit"``. Lines are encoded here rather than through
structlog's processor chain and written once per request; when the log is off nothing is built.

Fields are chosen one by one (nothing from a request is copied wholesale), URLs in error messages lose their
query strings (pre-signed blob URLs carry credentials there), and every string is clipped, so a line stays
below about 4 KiB whatever the key.
"""

from __future__ import annotations

import contextlib
import json
import math
import re
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import structlog

from provider.verdict import Verdict

LOGGER = "referee.decision"
MAX_TEXT = 512
MAX_NAME = 128
MAX_VERIFIERS = 16
_URL_QUERY = re.compile(r"(https?://[^\s?#]*)[?#]\S*")
log = structlog.get_logger(LOGGER)
_encode = json.JSONEncoder(separators=(",", ":")).encode
_encode_str: Callable[[str], str] = json.encoder.encode_basestring_ascii  # what ``_encode`` does for a str


def clip(text: str, limit: int = MAX_TEXT) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


_second: tuple[int, str] = (-1, "")


def timestamp() -> str:
    """The operational log's format (ISO 8601, UTC, ``Z``), always with microseconds; the part up to the second is
    formatted once per second."""
    global _second
    now = time.time()
    whole = int(now)
    if _second[0] != whole:
        _second = (whole, datetime.fromtimestamp(whole, UTC).strftime("%Y-%m-%dT%H:%M:%S"))
    return f"{_second[1]}.{int((now - whole) * 1_000_000):06d}Z"


def verdict_line(stamp: str, request_id: str, key: str, verdict: Verdict, cached: bool, duration_ms: float) -> str:
    """The line for a key that got a verdict (allowed or denied). The same document as :func:`_line` builds, spliced
    from parts: the verdict's fields are encoded once per verdict, the timestamp and request id once per request."""
    return (
        _head(stamp, request_id)
        + _encode_str(clip(key))
        + verdict.memo("decisionlog", _verdict_fields)
        + (',"cached":true,"duration_ms":' if cached else ',"cached":false,"duration_ms":')
        + _number(duration_ms)
        + "}\n"
    )


def _number(value: float) -> str:
    """``value`` as the JSON encoder writes it (``float.__repr__`` when finite), without its per-call set-up."""
    return repr(float(value)) if math.isfinite(value) else _encode(value)


def _verdict_fields(verdict: Verdict) -> str:
    """``,"result":…,"config_generation":…`` of a verdict's line, in :func:`_line`'s order."""
    decision = verdict.decision
    fields = {
        "result": "allowed" if decision.allowed else "denied",
        "allowed": decision.allowed,
        "reason_code": decision.reason_code,
        "reason": clip(decision.reason),
        "subject": clip(verdict.subject),
        "digest": clip(verdict.digest, MAX_NAME),
        "verifiers": [clip(v, MAX_NAME) for v in decision.verifiers[:MAX_VERIFIERS]],
        "config_generation": verdict.config_generation,
    }
    return "," + _encode(fields)[1:-1]


_last_head: tuple[str, str, str] = ("", "", "")


def _head(stamp: str, request_id: str) -> str:
    """Everything before the key's value, kept for the last (timestamp, request id): a request's lines share it."""
    global _last_head
    if _last_head[0] != stamp or _last_head[1] != request_id:
        prefix = _encode(
            {
                "timestamp": stamp,
                "level": "audit",
                "logger": LOGGER,
                "event": "decision",
                "request_id": clip(request_id, MAX_NAME),
            }
        )[:-1]
        _last_head = (stamp, request_id, prefix + ',"key":')
    return _last_head[2]


def error_line(
    stamp: str,
    request_id: str,
    key: str,
    result: str,
    code: str,
    message: str,
    generation: str,
    duration_ms: float,
) -> str:
    """The line for a key answered with an error (``result`` error) or left for Gatekeeper to retry
    (``result`` unavailable). Spliced like :func:`verdict_line`: the fields after the key are encoded once per
    distinct (result, code, message, generation) — a request cut off by its deadline has one message for many keys."""
    fields = _ERROR_FIELDS.get((result, code, message, generation))
    if fields is None:
        if len(_ERROR_FIELDS) >= MAX_ERROR_FIELDS:
            _ERROR_FIELDS.clear()
        fields = _ERROR_FIELDS[(result, code, message, generation)] = _error_fields(result, code, message, generation)
    return _head(stamp, request_id) + _encode_str(clip(key)) + fields + _number(duration_ms) + "}\n"


MAX_ERROR_FIELDS = 256
_ERROR_FIELDS: dict[tuple[str, str, str, str], str] = {}


def _error_fields(result: str, code: str, message: str, generation: str) -> str:
    fields = {
        "result": result,
        "allowed": False,
        "reason_code": code,
        "reason": clip(_URL_QUERY.sub(r"\1?...", message)),
        "subject": None,
        "digest": None,
        "verifiers": [],
        "config_generation": generation,
        "cached": False,
    }
    return "," + _encode(fields)[1:-1] + ',"duration_ms":'


def _line(stamp: str, request_id: str, key: str, **fields: Any) -> str:
    doc = {
        "timestamp": stamp,
        "level": "audit",
        "logger": LOGGER,
        "event": "decision",
        "request_id": clip(request_id, MAX_NAME),
        "key": clip(key),
        **fields,
    }
    return _encode(doc) + "\n"


_broken = False


def write(lines: list[str], output: str) -> None:
    """Write a request's lines in one call; a closed or broken stream never fails the request."""
    global _broken
    stream = sys.stdout if output == "stdout" else sys.stderr
    try:
        stream.write("".join(lines))
        stream.flush()
    except (OSError, ValueError) as exc:
        if not _broken:
            _broken = True
            with contextlib.suppress(OSError, ValueError):
                log.error("decision_log_unwritable", output=output, error=type(exc).__name__)
