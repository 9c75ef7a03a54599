"""What every Sigstore check shares: the rejection carrying the user-facing reason, base64 and time formats,
JSON path lookup."""

from __future__ import annotations

import base64
import binascii
import re
from datetime import UTC, datetime
from typing import Any


class Rejected(Exception):
    """Evidence that does not verify; the message is the user-facing reason."""

    @property
    def reason(self) -> str:
        return str(self.args[0]) if self.args else "rejected"


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def b64decode(value: object, what: str) -> bytes:
    """Standard or URL-safe base64 (padding optional); :class:`Rejected` otherwise."""
    if not isinstance(value, str):
        raise Rejected(f"{what} is not a base64 string")
    text = value.strip()
    padded = text + "=" * (-len(text) % 4)
    try:
        if "-" in text or "_" in text:
            return base64.urlsafe_b64decode(padded)
        return base64.b64decode(padded, validate=True)
    except (binascii.Error, ValueError):
        raise Rejected(f"{what} is not base64") from None


_STD_BASE64 = re.compile(r"(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?")


def std_b64decode(value: str, what: str) -> bytes:
    """Base64 as Go's ``base64.StdEncoding.DecodeString`` reads it (cosign and containers/image decode signature
    annotations so): the standard alphabet, padded, with ``\r`` and ``\n`` ignored wherever they appear; nothing
    else (no spaces, no URL-safe alphabet, no missing or excess padding)."""
    text = value.replace("\r", "").replace("\n", "")
    if not _STD_BASE64.fullmatch(text):
        raise Rejected(f"{what} is not base64")
    return base64.b64decode(text, validate=True)


def get_path(doc: object, *path: str) -> Any:
    """``doc[path[0]][path[1]]…`` through nested mappings, ``None`` when any step is missing."""
    for part in path:
        if not isinstance(doc, dict):
            return None
        doc = doc.get(part)
    return doc
