"""Shared pieces: the error type, RFC 3339 parsing, JSON decoding and small accessors for untrusted JSON."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

_RFC3339 = re.compile(
    r"^(?P<date>\d{4}-\d{2}-\d{2})[Tt ](?P<h>\d{2}):(?P<m>\d{2}):(?P<s>\d{2})(?:\.(?P<frac>\d+))?"
    r"(?P<tz>[Zz]|[+-]\d{2}:?\d{2})$"
)
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


class MetadataError(ValueError):
    """The document is not what it claims to be (unparseable, structurally invalid). ``str()`` is the reason."""


def parse_rfc3339(value: object) -> datetime | None:
    """An RFC 3339 date-time as an aware UTC datetime, or None when ``value`` is not one.

    Accepts ``Z``/``z`` and numeric offsets (``+02:00``, ``+0200``), a ``T``, ``t`` or space separator, any
    number of fractional digits (truncated to microseconds: Trivy writes nanoseconds) and second 60 (a leap
    second is read as the following second; nothing assumes leap seconds exist). A time without an offset is
    not RFC 3339 and gives None.
    """
    if not isinstance(value, str):
        return None
    m = _RFC3339.match(value.strip())
    if not m:
        return None
    frac = (m.group("frac") or "")[:6].ljust(6, "0")
    second = int(m.group("s"))
    leap = second == 60
    tz = m.group("tz")
    if tz in ("Z", "z"):
        offset = UTC
    else:
        digits = tz[1:].replace(":", "")
        delta = timedelta(hours=int(digits[:2]), minutes=int(digits[2:]))
        if delta >= timedelta(hours=24):
            return None
        offset = timezone(delta if tz[0] == "+" else -delta)
    try:
        parsed = datetime.fromisoformat(
            f"{m.group('date')}T{m.group('h')}:{m.group('m')}:{59 if leap else second:02d}.{frac}"
        ).replace(tzinfo=offset)
        if leap:
            parsed += timedelta(seconds=1)
        return parsed.astimezone(UTC)
    except (ValueError, OverflowError):
        return None


def parse_expiry(value: object) -> datetime | None:
    """An exception's expiry: an RFC 3339 date-time, or a date ``YYYY-MM-DD`` valid through that whole UTC day."""
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if hasattr(value, "isoformat") and not isinstance(value, str):  # a YAML date
        value = value.isoformat()
    if isinstance(value, str) and _DATE.match(value.strip()):
        try:
            return datetime.fromisoformat(value.strip()).replace(tzinfo=UTC) + timedelta(days=1)
        except (ValueError, OverflowError):
            return None
    return parse_rfc3339(value)


def iso(moment: datetime | None) -> str | None:
    """``2026-01-01T00:00:00Z`` (UTC, microseconds only when present)."""
    if moment is None:
        return None
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def decode_json(data: bytes, what: str) -> Any:
    """``json.loads`` with a :class:`MetadataError` naming ``what`` on failure (UTF-8 with optional BOM)."""
    try:
        return json.loads(data.decode("utf-8-sig"))
    except UnicodeDecodeError:
        raise MetadataError(f"{what} is not UTF-8 text") from None
    except json.JSONDecodeError as exc:
        raise MetadataError(f"{what} is not JSON ({exc.msg} at line {exc.lineno} column {exc.colno})") from None
    except RecursionError:
        raise MetadataError(f"{what} is nested too deeply") from None


def mapping(value: object) -> Mapping[str, Any]:
    """``value`` when it is a JSON object, else an empty mapping."""
    return value if isinstance(value, Mapping) else {}


def items(value: object) -> list[Any]:
    """``value`` when it is a JSON array, else an empty list."""
    return value if isinstance(value, list) else []


def text(value: object) -> str | None:
    """A non-empty stripped string, else None."""
    if isinstance(value, str) and value.strip():
        return value.strip()
    return None


def unwrap_statement(document: object, predicate_prefixes: tuple[str, ...]) -> tuple[object, tuple[str, ...]]:
    """If ``document`` is an in-toto Statement whose ``predicateType`` starts with one of ``predicate_prefixes``,
    return ``(predicate, subject digests as "alg:hex")``; otherwise ``(document, ())``. A predicate given as a
    JSON string is decoded."""
    doc = mapping(document)
    predicate_type = text(doc.get("predicateType"))
    if not (str(doc.get("_type", "")).startswith("https://in-toto.io/Statement/") and predicate_type):
        return document, ()
    if not predicate_type.startswith(predicate_prefixes):
        return document, ()
    subjects: list[str] = []
    for subject in items(doc.get("subject")):
        for alg, value in mapping(mapping(subject).get("digest")).items():
            if isinstance(value, str):
                subjects.append(f"{alg.lower()}:{value.lower()}")
    predicate = doc.get("predicate")
    if isinstance(predicate, str):
        predicate = decode_json(predicate.encode(), "predicate")
    return predicate, tuple(subjects)
