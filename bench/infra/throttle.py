"""A throttling proxy in front of the real registry, in its own process: ``python -m bench.infra.throttle HOST:PORT``
prints ``port N`` and relays every connection to the registry until a *storm* is started:

* ``POST /_bench/storm?seconds=S&retryAfter=R``: for the next S seconds every request gets
  ``429 TOOMANYREQUESTS`` with ``Retry-After: R`` (and the distribution-spec error body) and is not forwarded;
* ``GET /_bench/events?since=T``: ``[[time, status], …]`` for every registry request received after T (status 429
  for a throttled request, 0 for one relayed to the registry); times are ``time.monotonic()``, CLOCK_MONOTONIC,
  the same clock in every process of the machine.

It is written against asyncio's transports rather than as an HTTP proxy so that relaying costs next to no CPU: it
reads only each request's head (Referee sends GET and HEAD without bodies, one request at a time per connection,
as HTTP/1.1 without pipelining does) and copies the registry's responses back byte for byte. A request with a
body is relayed with its ``Content-Length`` bytes; chunked request bodies are refused (nothing here sends them)."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
import time
from urllib.parse import parse_qs, urlsplit

MAX_HEAD = 64 * 1024
_BODY_429 = json.dumps(
    {"errors": [{"code": "TOOMANYREQUESTS", "message": "throttled by the bench's storm", "detail": None}]}
).encode()


class State:
    def __init__(self, upstream: tuple[str, int]) -> None:
        self.upstream = upstream
        self.storm_until = 0.0
        self.retry_after = "1"
        self.events: list[tuple[float, int]] = []


def _response(status: str, body: bytes, extra: str = "", *, head_only: bool = False) -> bytes:
    """A complete response; to a HEAD request without its body (the length is still announced)."""
    head = (
        f"HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n{extra}"
        "Connection: keep-alive\r\n\r\n"
    )
    return head.encode() + (b"" if head_only else body)


class _Upstream(asyncio.Protocol):
    def __init__(self, client: asyncio.Transport) -> None:
        self.client = client

    def data_received(self, data: bytes) -> None:
        self.client.write(data)

    def connection_lost(self, exc: Exception | None) -> None:
        self.client.close()


class _Client(asyncio.Protocol):
    def __init__(self, state: State) -> None:
        self.state = state
        self.transport: asyncio.Transport | None = None
        self.upstream: asyncio.Transport | None = None
        self.waiting: list[bytes] = []
        self.connecting: asyncio.Future[None] | None = None
        self.buffer = b""
        self.body_left = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def connection_lost(self, exc: Exception | None) -> None:
        if self.upstream is not None:
            self.upstream.close()

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while self.buffer:
            if self.body_left:
                chunk, self.buffer = self.buffer[: self.body_left], self.buffer[self.body_left :]
                self.body_left -= len(chunk)
                self._forward(chunk)
                continue
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                if len(self.buffer) > MAX_HEAD:
                    assert self.transport is not None
                    self.transport.close()
                return
            head, self.buffer = self.buffer[: end + 4], self.buffer[end + 4 :]
            self._request(head)

    def _request(self, head: bytes) -> None:
        assert self.transport is not None
        lines = head.decode("latin-1").split("\r\n")
        method, target = [*lines[0].split(" "), "", ""][:2]
        headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:] if line)}
        if target.startswith("/_bench/"):
            self.transport.write(self._control(method, target))
            return
        if "chunked" in headers.get("transfer-encoding", "").lower():
            self.transport.write(_response("501 Not Implemented", b"chunked request bodies are not relayed"))
            self.transport.close()
            return
        length = int(headers.get("content-length", "0") or 0)
        now = time.monotonic()
        state = self.state
        if now < state.storm_until:
            state.events.append((now, 429))
            self.body_left = 0
            self.buffer = self.buffer[length:]  # drop any body
            retry = f"Retry-After: {state.retry_after}\r\n"
            self.transport.write(_response("429 Too Many Requests", _BODY_429, retry, head_only=method == "HEAD"))
            return
        state.events.append((now, 0))
        self.body_left = length
        self._forward(head)

    def _forward(self, data: bytes) -> None:
        if self.upstream is not None:
            self.upstream.write(data)
            return
        self.waiting.append(data)
        if len(self.waiting) == 1:
            self.connecting = asyncio.ensure_future(self._connect())

    async def _connect(self) -> None:
        downstream = self.transport
        assert downstream is not None
        loop = asyncio.get_running_loop()
        try:
            transport, _ = await loop.create_connection(lambda: _Upstream(downstream), *self.state.upstream)
        except OSError:
            downstream.close()
            return
        self.upstream = transport
        for data in self.waiting:
            transport.write(data)
        self.waiting.clear()

    def _control(self, method: str, target: str) -> bytes:
        url = urlsplit(target)
        state = self.state
        query = parse_qs(url.query)
        if url.path == "/_bench/storm" and method == "POST":
            now = time.monotonic()
            state.retry_after = query["retryAfter"][0]
            state.storm_until = now + float(query["seconds"][0])
            return _response("200 OK", json.dumps({"start": now, "end": state.storm_until}).encode())
        if url.path == "/_bench/events":
            since = float(query.get("since", ["0"])[0])
            return _response("200 OK", json.dumps([e for e in state.events if e[0] >= since]).encode())
        return _response("404 Not Found", b"{}")


async def serve(upstream: str) -> None:
    host, _, port = upstream.rpartition(":")
    state = State((host, int(port)))
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: _Client(state), "127.0.0.1", 0)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print(f"port {server.sockets[0].getsockname()[1]}", flush=True)
    await stop.wait()
    server.close()


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    asyncio.run(serve(args[0]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
