"""When a request's clock starts (#23 item 5): a new connection's first request, sent as soon as the TLS handshake
ended, counts from when the connection was accepted (the caller's timeout ran through the handshake too); a
pre-opened connection's first request and later kept-alive requests count from their first byte. Real TLS, real
aiohttp server, raw client sockets so the test decides when the handshake and each request happen."""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import AsyncIterator

import pytest
import trustme
from aiohttp import web

from provider.server.connections import PROMPT_REQUEST, GuardedAppRunner, request_arrival
from tests.support.referee import read_http_response

HANDSHAKE_DELAY = 0.6
IDLE_AFTER_HANDSHAKE = PROMPT_REQUEST + 0.4


async def _arrival(request: web.Request) -> web.Response:
    return web.Response(text=repr(request_arrival(request)))


@pytest.fixture
async def served() -> AsyncIterator[tuple[int, ssl.SSLContext]]:
    ca = trustme.CA()
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server_ctx)
    client_ctx = ssl.create_default_context()
    ca.configure_trust(client_ctx)
    application = web.Application()
    application.router.add_get("/", _arrival)
    runner = GuardedAppRunner(application, header_timeout=10.0)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=server_ctx)
    await site.start()
    port = runner.addresses[0][1]
    yield port, client_ctx
    await runner.cleanup()


async def _ask(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> float:
    writer.write(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    await writer.drain()
    _, body = await read_http_response(reader)
    return float(body)


async def test_a_prompt_first_request_counts_from_the_accept_not_the_handshake(
    served: tuple[int, ssl.SSLContext],
) -> None:
    port, client_ctx = served
    connecting = time.monotonic()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    await asyncio.sleep(HANDSHAKE_DELAY)  # the handshake waits (as behind a busy event loop); the caller's clock runs
    await writer.start_tls(client_ctx, server_hostname="127.0.0.1")
    sent = time.monotonic()
    first = await _ask(reader, writer)
    assert connecting <= first < sent - HANDSHAKE_DELAY / 2

    later = time.monotonic()
    second = await _ask(reader, writer)  # kept alive: its own first byte
    assert second >= later
    writer.close()


async def test_a_pre_opened_connection_counts_from_the_first_byte(served: tuple[int, ssl.SSLContext]) -> None:
    port, client_ctx = served
    reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=client_ctx, server_hostname="127.0.0.1")
    await asyncio.sleep(IDLE_AFTER_HANDSHAKE)
    sent = time.monotonic()
    assert await _ask(reader, writer) >= sent
    writer.close()
