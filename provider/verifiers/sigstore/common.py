"""What every Sigstore check shares: the rejection carrying the user-facing reason, base64 and time formats,
JSON path lookup."""

from __future__ import annotations

import base64
import binascii
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


def get_path(doc: object, *path: str) -> Any:
    """``doc[path[0]][path[1]]…`` through nested mappings, ``None`` when any step is missing."""
    for part in path:
        if not isinstance(doc, dict):
            return None
        doc = doc.get(part)
    return doc
