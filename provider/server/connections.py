"""Connection-level limits aiohttp does not have: a request whose headers trickle in must not hold a connection.

aiohttp closes an *idle* connection after ``keepalive_timeout`` (120 s here, longer than Gatekeeper's 90 s idle
pool), and Referee bounds the body by the request deadline, but bytes of an unfinished request line or headers
arriving one at a time keep a connection open. :class:`GuardedAppRunner` closes a connection whose unfinished
request has not become a complete request within ``header_timeout`` of its first byte. Bytes that arrive while a
request is queued or being answered are its body (bounded by the request's deadline) and arm nothing: a kept-alive
connection is never closed under a request, nor because a body came in its own packet.

The handler also notes when each request arrived (``request_arrival``): Gatekeeper's timeout runs from then, not from
when a busy event loop gets round to the request's handler. For a later request on a kept-alive connection that is its
first byte; for the first request on a new connection it is when asyncio accepted the connection, since the caller's
clock was running through the TLS handshake too (a handshake delayed by a busy event loop would otherwise eat the
caller's margin unseen) — unless the caller sent nothing for a while after the handshake (a pre-opened connection),
then it is the first byte again. Time a connection spent in the kernel's accept queue before the loop accepted it is
not seen; the measured event-loop lag the answer budget reserves (``budget.LoopLag``) covers it only in part.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import structlog
from aiohttp import web
from aiohttp.web_protocol import RequestHandler
from aiohttp.web_server import Server

log = structlog.get_logger("referee.server")

PROMPT_REQUEST = 0.25
"""A first request whose first byte comes within this long of the TLS handshake's end was sent as soon as the
connection was up (a prompt client sends it right behind its TLS Finished); its time runs from the accept. The gap is
read on the event loop, so it must leave room for the loop's lag under load (up to ~0.1 s in the bench)."""


class _GuardedHandler(RequestHandler):
    __slots__ = ("_accepted", "_connected", "_header_timeout", "_partial_since", "_partial_timer", "request_arrival")

    def __init__(self, *args: Any, header_timeout: float, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # asyncio makes the protocol when it accepts the connection, before the TLS handshake.
        self._accepted: float | None = self._loop.time()
        self._connected: float | None = None
        self._header_timeout = header_timeout
        self._partial_since: float | None = None
        self._partial_timer: asyncio.TimerHandle | None = None
        self.request_arrival: float | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._connected = self._loop.time()
        super().connection_made(transport)

    def _first_byte_to_arrival(self, first_byte: float) -> float:
        """The arrival of a request whose first byte came at ``first_byte``: the accept time for a new connection's
        first request sent right after the handshake (see the module docstring)."""
        accepted, self._accepted = self._accepted, None
        if accepted is not None and self._connected is not None and first_byte - self._connected <= PROMPT_REQUEST:
            return accepted
        return first_byte

    def _serving(self) -> bool:
        """A request is queued or being answered: bytes now are its body, bounded by the request's own deadline."""
        return bool(self._messages) or self._request_in_progress

    def data_received(self, data: bytes) -> None:
        before = self._request_count
        arrived = self._loop.time()
        super().data_received(data)
        if self._request_count != before:
            first_byte = arrived if self._partial_since is None else self._partial_since
            self.request_arrival = self._first_byte_to_arrival(first_byte)
            self._partial_since = None
            self._cancel_partial()
        elif data and self._partial_timer is None and not self._serving():
            self._partial_since = arrived
            self._partial_timer = self._loop.call_later(self._header_timeout, self._check_partial, before)

    def _cancel_partial(self) -> None:
        if self._partial_timer is not None:
            self._partial_timer.cancel()
            self._partial_timer = None

    def _check_partial(self, count: int) -> None:
        self._partial_timer = None
        if self._request_count == count and not self._serving() and self.transport is not None:
            peer = self.transport.get_extra_info("peername")
            log.warning("request_headers_timeout", peer=str(peer), seconds=self._header_timeout)
            self.force_close()

    def connection_lost(self, exc: BaseException | None) -> None:
        self._cancel_partial()
        super().connection_lost(exc)


class _GuardedServer(Server):
    header_timeout: float = 10.0

    def __call__(self) -> RequestHandler:
        return _GuardedHandler(self, loop=self._loop, header_timeout=self.header_timeout, **self._kwargs)


def request_arrival(request: web.BaseRequest) -> float:
    """When ``request`` arrived (``time.monotonic()``, see the module docstring); now when the connection did not
    note it."""
    now = time.monotonic()
    arrived = getattr(request.protocol, "request_arrival", None)
    return arrived if isinstance(arrived, float) and arrived <= now else now


class GuardedAppRunner(web.AppRunner):
    """An ``AppRunner`` whose connections get :class:`_GuardedHandler`'s header timeout."""

    def __init__(self, app: web.Application, *, header_timeout: float, **kwargs: Any) -> None:
        super().__init__(app, **kwargs)
        self._header_timeout = header_timeout

    async def _make_server(self) -> Server:
        server = await super()._make_server()
        # aiohttp builds the Server inside Application._make_handler; the subclass only adds a field and __call__.
        server.__class__ = _GuardedServer
        assert isinstance(server, _GuardedServer)
        server.header_timeout = self._header_timeout
        return server


class GuardedTCPSite(web.TCPSite):
    """A ``TCPSite`` whose TLS handshakes must finish within ``handshake_timeout`` (asyncio's default is 60 s): a
    caller that connects and never completes the handshake holds a connection no longer than one that never sends
    its headers."""

    def __init__(self, *args: Any, handshake_timeout: float, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._handshake_timeout = handshake_timeout

    async def start(self) -> None:
        # TCPSite.start with ssl_handshake_timeout, which aiohttp does not pass through.
        await web.BaseSite.start(self)
        server = self._runner.server
        assert server is not None
        self._server = await asyncio.get_running_loop().create_server(
            server,
            self._host,
            self._port,
            ssl=self._ssl_context,
            ssl_handshake_timeout=self._handshake_timeout if self._ssl_context is not None else None,
            backlog=self._backlog,
            reuse_address=self._reuse_address,
            reuse_port=self._reuse_port,
        )
        sockets = self._server.sockets
        self._bound_port = sockets[0].getsockname()[1] if sockets else self._port
