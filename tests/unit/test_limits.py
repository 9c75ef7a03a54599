"""Size-limited body reads: a body that has all arrived is taken at once (the warm path, #23 item 6), one still
arriving is read in chunks; either way nothing over the limit is accepted."""

from __future__ import annotations

import asyncio
from unittest import mock

import pytest
from aiohttp.streams import StreamReader

from provider.errors import RequestInvalidError
from provider.limits import read_limited


def _stream(*chunks: bytes, eof: bool = True) -> StreamReader:
    stream = StreamReader(mock.Mock(_reading_paused=False), 2**16, loop=asyncio.get_running_loop())
    for chunk in chunks:
        stream.feed_data(chunk)
    if eof:
        stream.feed_eof()
    return stream


async def test_a_body_that_has_arrived_is_read_whole_and_checked() -> None:
    assert await read_limited(_stream(b"ab", b"cd"), 4, 4, "body", RequestInvalidError) == b"abcd"
    with pytest.raises(RequestInvalidError, match="exceeds the 3-byte limit"):
        await read_limited(_stream(b"ab", b"cd"), None, 3, "body", RequestInvalidError)  # no or a false length
    with pytest.raises(RequestInvalidError, match="of 9 bytes exceeds"):
        await read_limited(_stream(b"ab"), 9, 3, "body", RequestInvalidError)


async def test_a_body_still_arriving_is_read_in_chunks_and_checked() -> None:
    stream = _stream(b"ab", eof=False)
    reading = asyncio.ensure_future(read_limited(stream, None, 5, "body", RequestInvalidError))
    await asyncio.sleep(0)
    stream.feed_data(b"cd")
    stream.feed_eof()
    assert await reading == b"abcd"
    stream = _stream(b"abc", eof=False)
    reading = asyncio.ensure_future(read_limited(stream, None, 5, "body", RequestInvalidError))
    await asyncio.sleep(0)
    stream.feed_data(b"def")
    stream.feed_eof()
    with pytest.raises(RequestInvalidError, match="exceeds the 5-byte limit"):
        await reading
