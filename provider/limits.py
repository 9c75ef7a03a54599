"""Size-limited reads of HTTP bodies (registry responses and ProviderRequests alike)."""

from __future__ import annotations

from collections.abc import Callable

import aiohttp

from provider.errors import ProviderError


async def read_limited(
    stream: aiohttp.StreamReader,
    declared_length: int | None,
    max_bytes: int,
    what: str,
    error: Callable[[str], ProviderError],
) -> bytes:
    """Read ``stream`` to the end, refusing (with ``error``) anything over ``max_bytes`` — by the declared
    ``Content-Length`` before reading, and by counting while reading."""
    if declared_length is not None and declared_length > max_bytes:
        raise error(f"{what} of {declared_length} bytes exceeds the {max_bytes}-byte limit")
    chunks: list[bytes] = []
    total = 0
    async for chunk in stream.iter_chunked(65536):
        total += len(chunk)
        if total > max_bytes:
            raise error(f"{what} exceeds the {max_bytes}-byte limit")
        chunks.append(chunk)
    return b"".join(chunks)
