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
    if stream.is_eof():  # everything has arrived (a small body usually has): take it without iterating
        data = stream.read_nowait(-1)
        if len(data) > max_bytes:
            raise error(f"{what} exceeds the {max_bytes}-byte limit")
        if stream.at_eof():
            return data
        chunks = [data]  # not expected: the buffer is read to its end at EOF; read on to be sure
    else:
        chunks = []
    total = sum(len(c) for c in chunks)
    async for chunk in stream.iter_chunked(65536):
        total += len(chunk)
        if total > max_bytes:
            raise error(f"{what} exceeds the {max_bytes}-byte limit")
        chunks.append(chunk)
    return b"".join(chunks)
