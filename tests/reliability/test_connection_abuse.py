"""Connection-level abuse of ``referee serve`` (issue #13 item 3): each row is refused, closed or answered cleanly,
while a well-behaved Gatekeeper client keeps getting its verdicts in time on other connections, and the plain-HTTP
health port never serves the provider endpoints."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import os
import ssl
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import trustme
from cryptography.hazmat.primitives.asymmetric import ec

from tests.reliability.conftest import Launcher
from tests.reliability.harness import GatekeeperClient, check_response
from tests.support.content import cosign_sign_legacy, make_image, push_image
from tests.support.figures import Figures
from tests.support.referee import (
    Pki,
    RefereeProcess,
    cert_without_client_auth,
    provider_request,
    read_http_response,
    server_section,
)
from tests.support.registry import RegistryProcess

PROVIDER_TIMEOUT = 1.0
IDLE_CONNECTIONS = 500


@dataclass
class Served:
    referee: RefereeProcess
    pki: Pki
    key: str
    client: GatekeeperClient
    directory: Path


@pytest.fixture(scope="module")
def served(
    registry: RegistryProcess,
    rel_pki: Pki,
    cosign_key: tuple[ec.EllipticCurvePrivateKey, Path],
    launch_module: Launcher,
    tmp_path_factory: pytest.TempPathFactory,
) -> Served:
    key, key_file = cosign_key
    image = make_image("reliability/connections")
    push_image(registry.url, "rel/connections", "v1", image)
    cosign_sign_legacy(registry.url, "rel/connections", image["digest"], key)
    config = {
        "registries": {"allow": ["127.0.0.1:*"], "hosts": [{"host": registry.host, "plainHttp": True}]},
        "verifiers": [{"name": "cosign-ci", "type": "cosign", "keys": [str(key_file)]}],
        "policy": {"type": "required-verifiers", "required": ["cosign-ci"]},
        "server": server_section(rel_pki, providerTimeout=f"{PROVIDER_TIMEOUT}s", reloadInterval="10s"),
    }
    referee = launch_module(config, name="connections")
    client = GatekeeperClient(referee.url, rel_pki.client_context(), PROVIDER_TIMEOUT)
    return Served(
        referee, rel_pki, f"{registry.host}/rel/connections@{image['digest']}", client, tmp_path_factory.mktemp("c")
    )


async def _open(port: int, ctx: ssl.SSLContext | None) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection("127.0.0.1", port, ssl=ctx, server_hostname="127.0.0.1" if ctx else None)


async def _exchange(port: int, ctx: ssl.SSLContext | None, data: bytes, timeout: float = 10.0) -> bytes:
    """Send ``data`` and read until the server closes (or ``timeout``); connection errors read as b""."""
    try:
        reader, writer = await _open(port, ctx)
    except (ConnectionError, ssl.SSLError, OSError):
        return b""
    try:
        writer.write(data)
        await writer.drain()
        return await asyncio.wait_for(reader.read(), timeout)
    except (ConnectionError, ssl.SSLError, OSError):
        return b""
    finally:
        writer.close()


def _request(method: str, path: str, body: bytes, *, version: str = "1.1", extra: str = "") -> bytes:
    head = f"{method} {path} HTTP/{version}\r\nHost: referee\r\nContent-Type: application/json\r\n"
    head += f"Content-Length: {len(body)}\r\nConnection: close\r\n{extra}\r\n"
    return head.encode() + body


def _split(raw: bytes) -> tuple[str, bytes]:
    head, _, body = raw.partition(b"\r\n\r\n")
    return head.split(b"\r\n", 1)[0].decode("latin-1"), body


def _provider_response(raw: bytes) -> dict[str, Any]:
    status, body = _split(raw)
    assert status.endswith("200 OK"), raw[:300]
    if b"Transfer-Encoding: chunked" in raw.partition(b"\r\n\r\n")[0]:
        body = _dechunk(body)
    return check_response(json.loads(body))


def _dechunk(body: bytes) -> bytes:
    out = b""
    while body:
        size_line, _, rest = body.partition(b"\r\n")
        size = int(size_line, 16)
        if size == 0:
            break
        out += rest[:size]
        body = rest[size + 2 :]
    return out


def _good_body(served: Served) -> bytes:
    return json.dumps(provider_request([served.key])).encode()


# -- the rows ----------------------------------------------------------------------------------------------------


async def slowloris_body(served: Served) -> str:
    reader, writer = await _open(served.referee.port, served.pki.client_context())
    body = _good_body(served)
    writer.write(_request("POST", "/verify", body)[: -len(body)])  # the headers only
    await writer.drain()
    answer = asyncio.ensure_future(reader.read())

    async def trickle() -> None:
        for byte in body:
            if answer.done():
                return
            writer.write(bytes([byte]))
            await writer.drain()
            await asyncio.sleep(0.1)

    with contextlib.suppress(ConnectionError, OSError):
        await trickle()
    raw = await asyncio.wait_for(answer, 10)
    writer.close()
    document = _provider_response(raw)
    assert "did not arrive before the deadline" in document["response"]["systemError"], document
    return "answered REQUEST_INVALID (body not complete before the deadline)"


async def slowloris_headers(served: Served) -> str:
    reader, writer = await _open(served.referee.port, served.pki.client_context())
    writer.write(b"POST /verify HTTP/1.1\r\nHost: referee\r\nX-Slow: ")
    for _ in range(100):
        try:
            writer.write(b"a")
            await writer.drain()
            if await asyncio.wait_for(reader.read(1), 0.1) == b"":
                break
        except TimeoutError:
            continue
        except (ConnectionError, OSError):
            break
    else:
        raise AssertionError("headers trickling for 10 s kept the connection open")
    writer.close()
    return "connection closed after the header timeout"


async def idle_connections(served: Served) -> str:
    port = served.referee.port
    tls = IDLE_CONNECTIONS // 2
    writers: list[asyncio.StreamWriter] = []
    try:
        for i in range(tls):  # opened a few at a time: the abuse is holding them, not a handshake flood
            _, writer = await _open(port, served.pki.client_context())
            writers.append(writer)
            if i % 25 == 24:
                await asyncio.sleep(0.05)
        for _ in range(IDLE_CONNECTIONS - tls):
            _, writer = await _open(port, None)  # TCP only: the TLS handshake never starts
            writers.append(writer)
        answer = await served.client.verify([served.key])
        assert answer.allowed(served.key), answer.doc
    finally:
        for writer in writers:
            writer.close()
    return f"{tls} TLS and {IDLE_CONNECTIONS - tls} TCP-only idle connections held; a new client still served"


async def http_1_0(served: Served) -> str:
    raw = await _exchange(
        served.referee.port, served.pki.client_context(), _request("POST", "/verify", _good_body(served), version="1.0")
    )
    document = _provider_response(raw)
    assert document["response"]["items"][0]["value"]["allowed"] is True, document
    return "answered, connection closed"


async def chunked_body(served: Served) -> str:
    body = _good_body(served)
    chunks = b"".join(b"%x\r\n%s\r\n" % (len(body[i : i + 7]), body[i : i + 7]) for i in range(0, len(body), 7))
    head = b"POST /verify HTTP/1.1\r\nHost: referee\r\nContent-Type: application/json\r\nConnection: close\r\n"
    raw = await _exchange(
        served.referee.port,
        served.pki.client_context(),
        head + b"Transfer-Encoding: chunked\r\n\r\n" + chunks + b"0\r\n\r\n",
    )
    document = _provider_response(raw)
    assert document["response"]["items"][0]["value"]["allowed"] is True, document
    return "answered"


async def malformed_chunks(served: Served) -> str:
    head = b"POST /verify HTTP/1.1\r\nHost: referee\r\nContent-Type: application/json\r\nConnection: close\r\n"
    raw = await _exchange(
        served.referee.port,
        served.pki.client_context(),
        head + b"Transfer-Encoding: chunked\r\n\r\nzz\r\n{}\r\n0\r\n\r\n",
    )
    status, _ = _split(raw)
    assert raw == b"" or status.endswith("400 Bad Request"), raw[:300]
    assert b"Traceback" not in raw
    return "refused (400)"


async def wrong_methods(served: Served) -> str:
    for method in ("GET", "PUT", "DELETE", "PATCH", "OPTIONS"):
        raw = await _exchange(served.referee.port, served.pki.client_context(), _request(method, "/verify", b""))
        document = _provider_response(raw)
        assert "unknown endpoint" in document["response"]["systemError"], (method, document)
    raw = await _exchange(served.referee.port, served.pki.client_context(), _request("BREW", "/verify", b""))
    status, _ = _split(raw)
    assert status.endswith("400 Bad Request") and b"Traceback" not in raw, raw[:300]
    return "GET, PUT, DELETE, PATCH, OPTIONS: ProviderResponse naming the endpoints; an unknown method: 400"


async def wrong_paths(served: Served) -> str:
    for path in ("/", "/verify/", "/mutate/x", "/admin", "/metrics", "/healthz", "/../verify", "/verify?x=1#y"):
        raw = await _exchange(
            served.referee.port, served.pki.client_context(), _request("POST", path, _good_body(served))
        )
        if path == "/verify?x=1#y":
            assert _provider_response(raw)["response"]["items"], raw[:300]
            continue
        document = _provider_response(raw)
        assert "unknown endpoint" in document["response"]["systemError"], (path, document)
    raw = await _exchange(served.referee.port, served.pki.client_context(), _request("POST", "/" + "a" * 9000, b""))
    status, _ = _split(raw)
    assert raw == b"" or status.split(" ", 1)[1].startswith(("400", "414")), raw[:300]
    return "7 paths: ProviderResponse naming the endpoints; 9 KB path refused"


async def oversize_headers(served: Served) -> str:
    for count, size in ((40, 8000), (1000, 100), (1, 9000)):
        extra = "".join(f"X-Pad-{i}: {'p' * size}\r\n" for i in range(count))
        raw = await _exchange(
            served.referee.port, served.pki.client_context(), _request("POST", "/verify", b"{}", extra=extra)
        )
        status, _ = _split(raw)
        if status.endswith("200 OK"):
            assert "REQUEST_INVALID" in _provider_response(raw)["response"]["systemError"]
        else:
            assert raw == b"" or status.split(" ", 1)[1].startswith(("400", "431")), raw[:300]
    return "40 x 8 KB and 1,000 headers: answered REQUEST_INVALID; one 9 KB header: refused (400)"


async def plain_http_on_tls_port(served: Served) -> str:
    raw = await _exchange(served.referee.port, None, _request("POST", "/verify", _good_body(served)), timeout=15)
    assert b"ProviderResponse" not in raw and b"allowed" not in raw, raw[:300]
    return "no answer; connection closed"


async def garbage_handshake(served: Served) -> str:
    raw = await _exchange(served.referee.port, None, os.urandom(4096), timeout=15)
    assert b"ProviderResponse" not in raw
    return "connection closed"


def _mtls_row(make: Callable[[Served], ssl.SSLContext]) -> Callable[[Served], Awaitable[str]]:
    async def row(served: Served) -> str:
        ctx = make(served)
        with pytest.raises((aiohttp.ClientError, ssl.SSLError, ConnectionError)):
            async with (
                aiohttp.ClientSession(trust_env=False) as session,
                session.post(served.referee.url + "/verify", data=_good_body(served), ssl=ctx) as resp,
            ):
                await resp.read()
        return "handshake refused"

    return row


def _no_certificate(served: Served) -> ssl.SSLContext:
    return served.pki.client_context(present_cert=False)


def _other_ca(served: Served) -> ssl.SSLContext:
    return served.pki.client_context(trustme.CA().issue_cert("gatekeeper-webhook-service.gatekeeper-system.svc"))


def _no_client_auth_eku(served: Served) -> ssl.SSLContext:
    cert, key = cert_without_client_auth(served.pki.gatekeeper_ca, served.directory)
    ctx = served.pki.client_context(present_cert=False)
    ctx.load_cert_chain(str(cert), str(key))
    return ctx


def _expired(served: Served) -> ssl.SSLContext:
    now = dt.datetime.now(dt.UTC)
    leaf = served.pki.gatekeeper_ca.issue_cert(
        "gatekeeper-webhook-service.gatekeeper-system.svc",
        not_before=now - dt.timedelta(days=30),
        not_after=now - dt.timedelta(days=1),
    )
    return served.pki.client_context(leaf)


def _not_yet_valid(served: Served) -> ssl.SSLContext:
    now = dt.datetime.now(dt.UTC)
    leaf = served.pki.gatekeeper_ca.issue_cert(
        "gatekeeper-webhook-service.gatekeeper-system.svc",
        not_before=now + dt.timedelta(days=1),
        not_after=now + dt.timedelta(days=30),
    )
    return served.pki.client_context(leaf)


def _tls12(served: Served) -> ssl.SSLContext:
    ctx = served.pki.client_context()
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    return ctx


async def health_port_never_verifies(served: Served) -> str:
    url = served.referee.health_url
    async with aiohttp.ClientSession(trust_env=False) as session:
        for method in ("GET", "POST"):
            for path in ("/verify", "/mutate"):
                async with session.request(method, url + path, data=_good_body(served)) as resp:
                    text = await resp.text()
                    assert resp.status in (404, 405), (method, path, resp.status)
                    assert "ProviderResponse" not in text and "allowed" not in text
    raw = await _exchange(served.referee.health_port, served.pki.client_context(), b"", timeout=5)
    assert b"ProviderResponse" not in raw
    return "404/405 for /verify and /mutate; no TLS"


ROWS: dict[str, Callable[[Served], Awaitable[str]]] = {
    "slowloris body (1 byte per 100 ms)": slowloris_body,
    "slowloris headers (1 byte per 100 ms)": slowloris_headers,
    f"{IDLE_CONNECTIONS} idle connections": idle_connections,
    "HTTP/1.0 request": http_1_0,
    "chunked request body": chunked_body,
    "malformed chunked body": malformed_chunks,
    "wrong methods on /verify": wrong_methods,
    "wrong paths and a 9 KB path": wrong_paths,
    "oversize headers (320 KB, 1,000 headers, one 9 KB header)": oversize_headers,
    "plain HTTP on the TLS port": plain_http_on_tls_port,
    "random bytes instead of a TLS handshake": garbage_handshake,
    "mTLS: no client certificate": _mtls_row(_no_certificate),
    "mTLS: certificate from another CA": _mtls_row(_other_ca),
    "mTLS: certificate without the clientAuth EKU": _mtls_row(_no_client_auth_eku),
    "mTLS: expired certificate": _mtls_row(_expired),
    "mTLS: certificate not yet valid": _mtls_row(_not_yet_valid),
    "mTLS: TLS 1.2": _mtls_row(_tls12),
    "health port asked for /verify and /mutate": health_port_never_verifies,
}


async def _good_client(served: Served, stop: asyncio.Event, answers: list[float]) -> None:
    """A Gatekeeper that keeps asking while the abuse runs; every answer must be an allow, in time."""
    while not stop.is_set():
        answer = await served.client.verify([served.key])
        assert answer.allowed(served.key), answer.doc
        answers.append(answer.elapsed)
        await asyncio.sleep(0.05)


@pytest.mark.parametrize("row", list(ROWS))
async def test_abuse_is_refused_without_affecting_other_clients(served: Served, row: str, figures: Figures) -> None:
    async with _client(served):
        await _abuse(served, row, figures)


@contextlib.asynccontextmanager
async def _client(served: Served) -> AsyncIterator[GatekeeperClient]:
    """A Gatekeeper client for this test's event loop (its kept-alive connections live on that loop)."""
    served.client = GatekeeperClient(served.referee.url, served.pki.client_context(), PROVIDER_TIMEOUT)
    try:
        yield served.client
    finally:
        await served.client.close()


async def _abuse(served: Served, row: str, figures: Figures) -> None:
    first = await served.client.verify([served.key])
    assert first.allowed(served.key), first.doc
    stop = asyncio.Event()
    answers: list[float] = []
    good = asyncio.ensure_future(_good_client(served, stop, answers))
    started = time.monotonic()
    try:
        outcome = await ROWS[row](served)
    finally:
        stop.set()
        await good
    assert answers, "the well-behaved client was not served while the abuse ran"
    assert served.referee.proc is not None and served.referee.proc.poll() is None
    figures.record(
        "connections",
        row,
        outcome=outcome,
        seconds=round(time.monotonic() - started, 2),
        other_client_answers=len(answers),
        other_client_slowest_s=round(max(answers), 3),
        other_client_failures=0,
        survived=True,
    )


async def _read_response(reader: asyncio.StreamReader) -> dict[str, Any]:
    _, body = await read_http_response(reader)
    return check_response(json.loads(body))


async def test_a_kept_alive_connection_outlives_a_request_whose_body_came_apart_from_its_headers(
    served: Served, figures: Figures
) -> None:
    """Gatekeeper keeps connections alive for 90 s. A request body that arrives in its own TLS record (any large
    batch) must not arm the unfinished-headers timer: before the fix the connection was force-closed
    ``providerTimeout`` after the body — idle or in the middle of the next answer."""
    reader, writer = await _open(served.referee.port, served.pki.client_context())
    body = _good_body(served)
    keep_alive = (
        "POST /verify HTTP/1.1\r\nHost: referee\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    try:
        for _ in range(2):
            writer.write(keep_alive.encode())
            await writer.drain()
            await asyncio.sleep(0.05)
            writer.write(body)
            await writer.drain()
            document = await _read_response(reader)
            assert document["response"]["items"][0]["value"]["allowed"] is True, document
            await asyncio.sleep(PROVIDER_TIMEOUT + 0.5)  # past the unfinished-headers timeout
    finally:
        writer.close()
    figures.record(
        "connections",
        "keep-alive connection after a body sent apart from its headers",
        outcome="kept open; the next request on it answered",
        survived=True,
        other_client_failures=0,
    )
