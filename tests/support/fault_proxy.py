"""A fault-injecting proxy in front of a real registry (Debian's ``docker-registry``).

:class:`FaultProxy` is a :class:`~tests.support.referrers_proxy.ReferrersProxy` (so it also serves the OCI 1.1
referrers API the real registry lacks) that listens on several ports at once: each port is a separate registry as
far as Referee is concerned (``127.0.0.1:<port>``), so registry-wide state in Referee — a ``Retry-After`` pause,
per-registry slots, the referrers-API probe — stays within one test row. Faults are switched per request path
(a path substring) and hold until :meth:`clear_faults`:

==================  ===================================================================================================
kind                what a matching request gets
==================  ===================================================================================================
``status``          ``status`` with ``headers`` and an OCI error body (500/502/503, 429 with or without Retry-After)
``delay``           the genuine answer after ``seconds``
``hang``            nothing: the connection stays open and silent until the fault is cleared
``reset``           the genuine status line and headers, half the body, then a TCP reset
``truncate``        the genuine headers (full ``Content-Length``), half the body, then a clean close
``body``            ``body`` instead of the genuine bytes (``Docker-Content-Digest`` dropped unless ``keep_digest``)
``corrupt``         the genuine answer with one byte changed (same length, same ``Docker-Content-Digest``)
``oversize``        ``size`` bytes of JSON-ish filler with an honest ``Content-Length``
``oversize-chunked`` ``size`` bytes, chunked, no ``Content-Length``
``oversize-lying``  ``size`` bytes written after a ``Content-Length`` of the genuine size (the header lies)
``content-type``    the genuine answer with ``Content-Type: <content_type>``
``redirect``        ``307`` to ``location`` (``{self}`` = the same URL: a redirect loop)
``challenge``       ``401`` with a Bearer challenge whose realm is ``location`` (default: this proxy's ``/token``,
                    whose tokens the fault never accepts: a challenge loop)
``pages``           a referrers listing that never ends: every page is empty and links to another page
==================  ===================================================================================================

``hits`` counts the requests each fault answered; everything else is proxied unchanged.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import socket
import struct
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field

from aiohttp import web

from tests.support.content import OCI_INDEX
from tests.support.referrers_proxy import ReferrersProxy, _corrupt

__all__ = ["KINDS", "Fault", "FaultProxy"]

KINDS = frozenset(
    {
        "status",
        "delay",
        "hang",
        "reset",
        "truncate",
        "body",
        "corrupt",
        "oversize",
        "oversize-chunked",
        "oversize-lying",
        "content-type",
        "redirect",
        "challenge",
        "pages",
    }
)
HANG_LIMIT = 120.0


@dataclass(frozen=True)
class Fault:
    kind: str
    status: int = 0
    headers: Mapping[str, str] = field(default_factory=dict)
    seconds: float = 0.0
    size: int = 0
    body: bytes = b""
    keep_digest: bool = False
    content_type: str = ""
    location: str = ""

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown fault kind {self.kind!r}")


class FaultProxy(ReferrersProxy):
    """See the module docstring. ``registries`` ports are opened; ``hosts[i]`` names the i-th registry."""

    thread_name = "fault-proxy"

    def __init__(self, upstream_url: str, *, registries: int = 1) -> None:
        super().__init__(upstream_url, rewrite_token_realm=False)
        self.registries = registries
        self.ports: list[int] = []
        self.faults: dict[str, Fault] = {}
        self.hits: Counter[str] = Counter()
        self._release: asyncio.Event | None = None

    @property
    def hosts(self) -> list[str]:
        return [f"127.0.0.1:{port}" for port in self.ports]

    # switches ------------------------------------------------------------------------------------------------
    def inject(self, fragment: str, fault: Fault) -> None:
        """Every request whose path contains ``fragment`` gets ``fault`` until :meth:`clear_faults`."""
        self.faults[fragment] = fault
        release = self._release
        if release is not None and self._loop_thread is not None:
            self._loop_thread.loop.call_soon_threadsafe(release.clear)

    def clear_faults(self) -> None:
        """Remove every fault and let hanging connections go (they are closed without an answer)."""
        self.faults.clear()
        release = self._release
        if release is not None and self._loop_thread is not None:
            self._loop_thread.loop.call_soon_threadsafe(release.set)

    # server --------------------------------------------------------------------------------------------------
    async def _start(self) -> None:
        await super()._start()
        self._release = asyncio.Event()
        assert self._runner is not None
        self.ports = [self.port]
        for _ in range(self.registries - 1):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(("127.0.0.1", 0))
            await web.SockSite(self._runner, sock).start()
            self.ports.append(sock.getsockname()[1])

    def stop(self) -> None:
        self.clear_faults()
        super().stop()

    def _match(self, path: str) -> tuple[str, Fault] | None:
        for fragment, fault in list(self.faults.items()):
            if fragment in path:
                return fragment, fault
        return None

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        if self._session is None:  # stopping
            raise web.HTTPServiceUnavailable()
        found = self._match(request.path)
        if found is None:
            return await super()._handle(request)
        fragment, fault = found
        self.hits[fragment] += 1
        kind = fault.kind
        if kind == "status":
            body = json.dumps({"errors": [{"code": "UNAVAILABLE", "message": f"injected {fault.status}"}]}).encode()
            return web.Response(
                status=fault.status, body=body, content_type="application/json", headers=dict(fault.headers)
            )
        if kind == "delay":
            await asyncio.sleep(fault.seconds)
            return await super()._handle(request)
        if kind == "hang":
            assert self._release is not None
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._release.wait(), HANG_LIMIT)
            _abort(request)
            raise web.HTTPServiceUnavailable()
        if kind == "redirect":
            location = fault.location or str(request.url)
            return web.Response(status=307, headers={"Location": location})
        if kind == "challenge":
            realm = fault.location or f"{self.url}/token"
            name = request.path.removeprefix("/v2/").split("/", 1)[0]
            challenge = f'Bearer realm="{realm}",service="fault-proxy",scope="repository:{name}:pull"'
            body = b'{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}'
            return web.Response(
                status=401, body=body, content_type="application/json", headers={"WWW-Authenticate": challenge}
            )
        if kind == "pages":
            link = f"{request.path}?n=1&last=sha256:{secrets.token_hex(32)}"
            body = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": []}).encode()
            return web.Response(
                status=200, body=body, headers={"Content-Type": OCI_INDEX, "Link": f'<{link}>; rel="next"'}
            )

        genuine = await super()._handle(request)
        assert isinstance(genuine, web.Response)
        data = genuine.body if isinstance(genuine.body, bytes) else b""
        headers = {k: v for k, v in genuine.headers.items() if k.lower() not in ("content-length", "content-type")}
        content_type = genuine.headers.get("Content-Type", "application/octet-stream")
        if request.method == "HEAD" and kind not in ("body", "content-type", "oversize"):
            return genuine
        if kind == "corrupt":
            return web.Response(status=genuine.status, body=_corrupt(data), headers=_typed(headers, content_type))
        if kind == "content-type":
            return _head_or_body(request, genuine.status, data, _typed(headers, fault.content_type))
        if kind == "body":
            if not fault.keep_digest:
                headers.pop("Docker-Content-Digest", None)
            return _head_or_body(request, 200, fault.body, _typed(headers, content_type))
        filler = _filler(fault.size)
        if kind == "oversize":
            headers.pop("Docker-Content-Digest", None)
            return _head_or_body(request, 200, filler, _typed(headers, content_type))
        if kind == "oversize-chunked":
            response = web.StreamResponse(status=200, headers=_typed(headers, content_type))
            response.enable_chunked_encoding()
            await response.prepare(request)
            for start in range(0, len(filler), 65536):
                await response.write(filler[start : start + 65536])
            await response.write_eof()
            return response
        # reset / truncate / oversize-lying: raw bytes on the transport, then the connection ends
        if kind == "oversize-lying":
            payload, declared, ending = filler, len(data), "close"
        else:
            payload, declared, ending = data[: len(data) // 2], len(data), ("reset" if kind == "reset" else "close")
        head = f"HTTP/1.1 {genuine.status} OK\r\nContent-Type: {content_type}\r\nContent-Length: {declared}\r\n"
        head += "".join(f"{k}: {v}\r\n" for k, v in headers.items() if k.lower() != "connection")
        head += "Connection: close\r\n\r\n"
        transport = request.transport
        assert transport is not None
        transport.write(head.encode() + payload)
        if ending == "reset":
            _abort(request)
        else:
            transport.close()
        raise web.HTTPServiceUnavailable()


def _typed(headers: Mapping[str, str], content_type: str) -> dict[str, str]:
    return {**headers, "Content-Type": content_type}


def _head_or_body(request: web.Request, status: int, body: bytes, headers: Mapping[str, str]) -> web.Response:
    if request.method == "HEAD":
        return web.Response(status=status, headers={**headers, "Content-Length": str(len(body))})
    return web.Response(status=status, body=body, headers=headers)


def _filler(size: int) -> bytes:
    unit = b'{"pad":"' + b"x" * 1000 + b'"},'
    return (b"[" + unit * (size // len(unit) + 1))[:size]


def _abort(request: web.Request) -> None:
    """End the connection with a TCP reset (SO_LINGER 0), not a clean close."""
    transport = request.transport
    if transport is None:
        return
    sock = transport.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()
