"""Registry request timing through aiohttp's tracing hooks: one histogram sample per HTTP request (to the
response headers), and a failure count for requests that got no response. Attached to the registry client's
session, so every request it sends (manifests, blobs, referrers, tokens, redirects) is measured in one place."""

from __future__ import annotations

import asyncio
import time
from types import SimpleNamespace
from typing import Any

import aiohttp
from yarl import URL

from provider import metrics


def host_label(url: URL) -> str:
    """``host[:port]`` of ``url`` (the port only when the URL names one); never the user information."""
    host = url.raw_host or ""
    if ":" in host:
        host = f"[{host}]"
    port = url.explicit_port
    return f"{host}:{port}" if port else host


async def _started(session: Any, ctx: SimpleNamespace, params: aiohttp.TraceRequestStartParams) -> None:
    ctx.started = time.monotonic()


async def _answered(session: Any, ctx: SimpleNamespace, params: aiohttp.TraceRequestEndParams) -> None:
    metrics.registry_latency(host_label(params.url)).observe(time.monotonic() - ctx.started)


async def _failed(session: Any, ctx: SimpleNamespace, params: aiohttp.TraceRequestExceptionParams) -> None:
    if isinstance(params.exception, asyncio.CancelledError):
        return  # the caller gave up (its deadline passed): not the registry's failure
    host = host_label(params.url)
    started = getattr(ctx, "started", None)
    if started is not None:
        metrics.registry_latency(host).observe(time.monotonic() - started)
    metrics.registry_failures(host, type(params.exception).__name__).inc()


def registry_trace() -> aiohttp.TraceConfig:
    """A TraceConfig for ``aiohttp.ClientSession(trace_configs=[...])``."""
    trace = aiohttp.TraceConfig()
    trace.on_request_start.append(_started)
    trace.on_request_end.append(_answered)
    trace.on_request_exception.append(_failed)
    return trace
