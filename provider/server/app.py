"""The HTTPS provider (``POST /verify``, ``POST /mutate``) and the plain-HTTP health port
(``/healthz``, ``/readyz``, ``/metrics``).

Every answer is a well-formed ProviderResponse with HTTP 200 — Gatekeeper ignores the status and reads the
body — and arrives before the per-request deadline (Provider timeout minus a margin). Keys that finished
keep their items; keys that hit the deadline or a transient registry fault are left out of ``items`` and
named in ``systemError``, which Gatekeeper never caches (docs/protocol.md has the whole mapping).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import contextvars
import logging
import os
import signal
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import structlog
from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.web_protocol import RequestPayloadError
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from provider import deadline, decisionlog, logs, metrics
from provider.config import MAX_CONFIG_BYTES, Config, load_config
from provider.confignode import camel
from provider.errors import (
    ConfigError,
    DeadlineExceededError,
    DigestMismatchError,
    InternalError,
    ProviderError,
    RequestInvalidError,
)
from provider.executor import Clock, Engine, Outcome, utc_now
from provider.limits import read_limited
from provider.reference import parse_reference
from provider.server import protocol
from provider.server.budget import RECHECK, AnswerCost, LoopLag, work_deadline
from provider.server.connections import GuardedAppRunner, GuardedTCPSite, request_arrival
from provider.server.reload import ConfigReloader
from provider.server.tls import ReloadingTLS

log = structlog.get_logger("referee.server")


@dataclass
class ServerState:
    engine: Engine
    config_path: str | None = None
    tls: ReloadingTLS | None = None
    reloader: ConfigReloader | None = None
    lag: LoopLag = field(default_factory=LoopLag)
    answer_cost: AnswerCost = field(default_factory=AnswerCost)
    ready: bool = False
    last_reload_error: list[str] = field(default_factory=list)

    @property
    def config(self) -> Config:
        return self.engine.config


STATE = web.AppKey("state", ServerState)
REQUEST_ID: contextvars.ContextVar[str] = contextvars.ContextVar("referee_request_id", default="")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _json(doc: dict[str, Any]) -> web.Response:
    return web.json_response(doc, status=200)


async def _read_request(request: web.Request, config: Config) -> protocol.ProviderRequest:
    """Check the caller's name, read the body within its limit, and parse the ProviderRequest."""
    if not _client_allowed(request, config.server.tls.allowed_client_names):
        raise RequestInvalidError("client certificate name is not in server.tls.allowedClientNames")
    try:
        body = await read_limited(
            request.content, request.content_length, config.server.max_body_bytes, "body", RequestInvalidError
        )
    except (HttpProcessingError, RequestPayloadError) as exc:  # e.g. a Content-Encoding that does not decode
        raise RequestInvalidError(f"the request body could not be decoded ({type(exc).__name__})") from None
    return protocol.parse_request(body, config.server.max_keys)


async def _read_within(request: web.Request, config: Config, until: float) -> protocol.ProviderRequest:
    """:func:`_read_request` by ``until`` (``time.monotonic()``; ``TimeoutError`` after), the answer's due time
    counted from the request's arrival; no timer when the body has all arrived."""
    if request.content.is_eof():
        return await _read_request(request, config)
    async with asyncio.timeout_at(asyncio.get_running_loop().time() + until - time.monotonic()):
        return await _read_request(request, config)


def _client_allowed(request: web.Request, names: tuple[str, ...]) -> bool:
    if not names:
        return True
    peer = request.transport.get_extra_info("peercert") if request.transport else None
    if not peer:
        return False
    sans = {value for kind, value in peer.get("subjectAltName", ()) if kind == "DNS"}
    return bool(sans & set(names))


@web.middleware
async def _request_context(request: web.Request, handler: Handler) -> web.StreamResponse:
    request_id = request.headers.get("X-Request-Id", "")[:64] or os.urandom(8).hex()
    REQUEST_ID.set(request_id)
    structlog.contextvars.bind_contextvars(request_id=request_id)
    try:
        response = await handler(request)
        response.headers["X-Request-Id"] = request_id
        return response
    finally:
        structlog.contextvars.unbind_contextvars("request_id")


def _classify(outcome: Outcome | InternalError | None) -> tuple[str, str]:
    """``(result, reason code)`` of a verify key: allowed/denied by the policy's code, error by the error's code,
    unavailable (named in systemError for Gatekeeper to retry) by the transient fault's code."""
    if isinstance(outcome, Outcome):
        if outcome.verdict is not None:
            return ("allowed" if outcome.verdict.allowed else "denied"), outcome.verdict.decision.reason_code
        assert outcome.error is not None
        return ("unavailable" if outcome.error.transient else "error"), outcome.error.code
    if isinstance(outcome, InternalError):
        return "unavailable", outcome.code
    return "unavailable", DeadlineExceededError.code


def _kind(outcome: Outcome | InternalError | None) -> str:
    """``allowed``, ``denied``, ``error`` or ``unfinished`` (named in systemError)."""
    if not isinstance(outcome, Outcome):
        return "unfinished"
    if outcome.verdict is not None:
        return "allowed" if outcome.verdict.allowed else "denied"
    assert outcome.error is not None
    return "unfinished" if outcome.error.transient else "error"


def _summarise(outcome: Outcome) -> dict[str, Any]:
    """The per-key fields of a ``key_answered`` line (debug)."""
    if outcome.verdict is not None:
        verdict = outcome.verdict
        return {"subject": verdict.subject, "digest": verdict.digest, "reason": verdict.decision.reason}
    return {"error": str(outcome.error)}


async def _run_keys(
    keys: list[str], stop_at: Callable[[], float], work: Callable[[str], Awaitable[Any]]
) -> tuple[dict[str, Any], set[str]]:
    """Run ``work`` once per distinct key until every key is done or ``stop_at()`` (``time.monotonic()``, read again
    every ``RECHECK`` seconds) passes; return the results of the keys done and the rest. Unfinished keys are cancelled
    without waiting for them: each waits on shared work that goes on, and the answer must not wait a loop turn."""
    unique = list(dict.fromkeys(keys))
    tasks = {k: asyncio.ensure_future(work(k)) for k in unique}
    pending: set[asyncio.Future[Any]] = set(tasks.values())
    while pending:
        left = stop_at() - time.monotonic()
        if left <= 0:
            break
        _, pending = await asyncio.wait(pending, timeout=min(left, RECHECK))
    for task in pending:
        task.cancel()
    done: dict[str, Any] = {}
    for k, t in tasks.items():
        if t.cancelled() or not t.done():
            continue
        exc = t.exception()
        if exc is None:
            done[k] = t.result()
        else:
            log.error("key_crashed", key=k, error=repr(exc))
            done[k] = InternalError(f"unexpected {type(exc).__name__} while answering this key")
    return done, set(unique) - set(done)


def _rejected(endpoint: str, started: float, exc: RequestInvalidError) -> web.Response:
    log.warning("request_rejected", endpoint=endpoint, error=str(exc))
    metrics.requests(endpoint, "rejected").inc()
    metrics.request_latency(endpoint).observe(time.monotonic() - started)
    return _json(protocol.response([], str(exc)))


async def handle_verify(request: web.Request) -> web.Response:
    state = request.app[STATE]
    started = request_arrival(request)
    config = state.config
    answer_due = config.server.verify_deadline
    endpoint = "verify"
    try:
        req = await _read_within(request, config, started + answer_due)
    except TimeoutError:
        return _rejected(endpoint, started, RequestInvalidError("the request body did not arrive before the deadline"))
    except RequestInvalidError as exc:
        return _rejected(endpoint, started, exc)
    unique = list(dict.fromkeys(req.keys))
    results: dict[str, Outcome | InternalError] = {}
    cold: list[str] = []
    engine = state.engine
    for key in unique:
        outcome = engine.cached_outcome(key)
        if outcome is None:
            cold.append(key)
        else:
            results[key] = outcome
    key_times: dict[str, float] = {}
    if cold:

        async def work(key: str) -> Outcome:
            begun = time.monotonic()
            try:
                return await engine.verify_key(key)
            finally:
                key_times[key] = time.monotonic() - begun

        def stop_at() -> float:
            return work_deadline(started, answer_due, len(unique), state.lag.recent, state.answer_cost.per_key)

        with deadline.deadline_after(stop_at() - time.monotonic()):
            done, _ = await _run_keys(cold, stop_at, work)
        results.update(done)
    stopped = time.monotonic()
    request_id = REQUEST_ID.get()
    response = _answer_verify(state, config, req.keys, unique, results, key_times, started, answer_due, request_id)
    state.answer_cost.observe(len(unique), time.monotonic() - stopped)
    return response


def _answer_verify(
    state: ServerState,
    config: Config,
    keys: list[str],
    unique: list[str],
    results: dict[str, Outcome | InternalError],
    key_times: dict[str, float],
    started: float,
    answer_due: float,
    request_id: str,
) -> web.Response:
    """Encode the ProviderResponse and account for it: metrics counted once per kind, one summary log line (per-key
    lines at debug), the decision log."""
    items: list[bytes] = []
    retry: dict[str, str] = {}
    for key in keys:
        outcome = results.get(key)
        if outcome is None:
            retry[key] = f"DEADLINE_EXCEEDED: not finished within {answer_due:.2f}s"
        elif isinstance(outcome, InternalError):
            retry[key] = str(outcome)
        elif outcome.error is not None and outcome.error.transient:
            retry[key] = str(outcome.error)
        elif outcome.verdict is not None:
            items.append(protocol.encode_item(key, value=outcome.verdict.encoded()))
        else:
            items.append(protocol.encode_item(key, error=str(outcome.error)))
    system_error = ""
    if retry:
        system_error = f"{len(retry)} of {len(unique)} keys not answered, retry: {_listed(retry)}"
    body = protocol.encode_response(items, system_error)

    decision_log = config.server.decision_log
    lines: list[str] = []
    stamp = decisionlog.timestamp() if decision_log.enabled else ""
    per_key = logs.enabled(logging.DEBUG)
    kinds: collections.Counter[str] = collections.Counter()
    decisions: collections.Counter[tuple[str, str]] = collections.Counter()
    cached = 0
    now = time.monotonic()
    for key in unique:
        outcome = results.get(key)
        verdict = outcome.verdict if isinstance(outcome, Outcome) else None
        if isinstance(outcome, Outcome) and verdict is not None:  # the common case: result = kind = allowed/denied
            decision = verdict.decision
            result = kind = "allowed" if decision.allowed else "denied"
            code = decision.reason_code
            was_cached = outcome.cached
            if not decision.allowed:
                for requirement, reason in decision.unmet:
                    metrics.unmet_requirements(requirement, reason).inc()
        else:
            result, code = _classify(outcome)
            kind = _kind(outcome)
            was_cached = False
        decisions[(result, code)] += 1
        kinds[kind] += 1
        cached += was_cached
        if not (decision_log.enabled or per_key):
            continue
        duration_ms = round(key_times.get(key, 0.0 if was_cached else now - started) * 1000, 1)
        if decision_log.enabled:
            if verdict is not None:
                lines.append(decisionlog.verdict_line(stamp, request_id, key, verdict, was_cached, duration_ms))
            else:
                message = str(outcome.error) if isinstance(outcome, Outcome) else retry.get(key, "")
                lines.append(
                    decisionlog.error_line(
                        stamp, request_id, key, result, code, message, config.generation, duration_ms
                    )
                )
        if per_key:
            fields = _summarise(outcome) if isinstance(outcome, Outcome) else {"error": retry.get(key)}
            log.debug("key_answered", key=key, outcome=kind, cached=was_cached, duration_ms=duration_ms, **fields)
    if lines:
        decisionlog.write(lines, decision_log.output)
    for kind, count in kinds.items():
        metrics.keys("verify", kind).inc(count)
    for (result, code), count in decisions.items():
        metrics.decisions(result, code).inc(count)
    elapsed = time.monotonic() - started
    metrics.requests("verify", "partial" if retry else "ok").inc()
    metrics.request_latency("verify").observe(elapsed)
    if logs.enabled(logging.INFO):
        log.info(
            "request_answered",
            endpoint="verify",
            keys=len(unique),
            cached=cached,
            **{kind: kinds[kind] for kind in ("allowed", "denied", "error", "unfinished")},
            duration_ms=round(elapsed * 1000, 1),
        )
    return web.Response(body=body, content_type="application/json")


def _listed(retry: dict[str, str]) -> str:
    """``key: reason; …`` for systemError, built only as far as :data:`protocol.MAX_SYSTEM_ERROR` shows of it."""
    parts: list[str] = []
    size = 0
    for key, reason in retry.items():
        part = f"{key}: {reason}"
        parts.append(part)
        size += len(part) + 2
        if size > protocol.MAX_SYSTEM_ERROR:
            break
    return "; ".join(parts)


def _pinned_value(key: str, digest: str, keep_tag: bool) -> str:
    """``key`` pinned to ``digest``, spelled as the user wrote it (``nginx:1`` → ``nginx@sha256:…``)."""
    name = key.split("@", 1)[0]
    slash = name.rfind("/")
    colon = name.rfind(":")
    if colon > slash and not keep_tag:
        name = name[:colon]
    return f"{name}@{digest}"


async def handle_mutate(request: web.Request) -> web.Response:
    state = request.app[STATE]
    started = request_arrival(request)
    config = state.config
    budget = config.server.mutate_deadline
    endpoint = "mutate"
    try:
        req = await _read_within(request, config, started + budget)
    except TimeoutError:
        return _rejected(endpoint, started, RequestInvalidError("the request body did not arrive before the deadline"))
    except RequestInvalidError as exc:
        return _rejected(endpoint, started, exc)

    key_times: dict[str, float] = {}

    async def work(key: str) -> str | ProviderError:
        begun = time.monotonic()
        try:
            ref = parse_reference(key)
            _, descriptor = await state.engine.resolve_key(key)
        except ProviderError as exc:
            return exc
        finally:
            key_times[key] = time.monotonic() - begun
        if ref.digest and ref.digest != descriptor.digest:
            return DigestMismatchError(f"{key} resolves to {descriptor.digest}")
        return _pinned_value(key, descriptor.digest, config.server.mutate_keep_tag)

    unique = list(dict.fromkeys(req.keys))

    def stop_at() -> float:
        return work_deadline(started, budget, len(unique), state.lag.recent, state.answer_cost.per_key)

    with deadline.deadline_after(stop_at() - time.monotonic()):
        results, _ = await _run_keys(unique, stop_at, work)
    stopped = time.monotonic()
    items: list[bytes] = []
    for key in req.keys:
        result = results.get(key)
        if result is None:
            result = DeadlineExceededError(f"not resolved within {budget:.2f}s")
        if isinstance(result, ProviderError):
            items.append(protocol.encode_item(key, error=str(result)))
        else:
            items.append(protocol.encode_item(key, scalar=result))
    body = protocol.encode_response(items)
    pinned_count = 0
    per_key = logs.enabled(logging.DEBUG)
    for key in unique:
        result = results.get(key)
        pinned = isinstance(result, str)
        pinned_count += pinned
        if per_key:
            log.debug(
                "key_pinned" if pinned else "key_not_pinned",
                key=key,
                value=result if pinned else None,
                error=None if pinned else str(result or "DEADLINE_EXCEEDED"),
                duration_ms=round(key_times.get(key, time.monotonic() - started) * 1000, 1),
            )
    failed = len(unique) - pinned_count
    if pinned_count:
        metrics.keys(endpoint, "pinned").inc(pinned_count)
    if failed:
        metrics.keys(endpoint, "error").inc(failed)
    elapsed = time.monotonic() - started
    metrics.requests(endpoint, "partial" if failed else "ok").inc()
    metrics.request_latency(endpoint).observe(elapsed)
    log.info(
        "request_answered",
        endpoint=endpoint,
        keys=len(unique),
        pinned=pinned_count,
        not_pinned=failed,
        duration_ms=round(elapsed * 1000, 1),
    )
    state.answer_cost.observe(len(unique), time.monotonic() - stopped)
    return web.Response(body=body, content_type="application/json")


async def _not_found(request: web.Request) -> web.Response:
    return _json(
        protocol.response([], f"unknown endpoint {request.method} {request.path}; use POST /verify or /mutate")
    )


def create_app(state: ServerState) -> web.Application:
    app = web.Application(middlewares=[_request_context], client_max_size=state.config.server.max_body_bytes + 1)
    app[STATE] = state
    app.router.add_post("/verify", handle_verify)
    app.router.add_post("/mutate", handle_mutate)
    app.router.add_route("*", "/{tail:.*}", _not_found)
    return app


async def handle_healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def handle_readyz(request: web.Request) -> web.Response:
    state = request.app[STATE]
    body: dict[str, Any] = {"ready": state.ready, "configGeneration": state.config.generation}
    if state.last_reload_error:
        body["lastReloadError"] = state.last_reload_error
    shared = state.engine.shared_status()
    if shared is not None:  # a shared cache that is down does not make the pod unready: it answers local-only
        body["sharedCache"] = shared
    return web.json_response(body, status=200 if state.ready else 503)


async def handle_metrics(request: web.Request) -> web.Response:
    return web.Response(body=generate_latest(metrics.REGISTRY), headers={"Content-Type": CONTENT_TYPE_LATEST})


def create_health_app(state: ServerState) -> web.Application:
    app = web.Application()
    app[STATE] = state
    app.router.add_get("/healthz", handle_healthz)
    app.router.add_get("/readyz", handle_readyz)
    app.router.add_get("/metrics", handle_metrics)
    return app


async def reload_once(state: ServerState) -> bool:
    """Apply the configuration file if it changed, settled and is valid (parsed off the event loop). Returns True
    when a new generation was swapped in. Never raises: problems are kept in ``lastReloadError``."""
    if state.reloader is None:
        return False
    try:
        new = await state.reloader.poll(state.config.server.reload_interval / 4)
    except ConfigError as exc:
        if exc.problems != state.last_reload_error:
            log.error("config_reload_rejected", problems=exc.problems, kept_generation=state.config.generation)
            metrics.CONFIG_RELOADS.labels("rejected").inc()
        metrics.CONFIG_LAST_RELOAD_OK.set(0)
        state.last_reload_error = exc.problems
        _reload_tls(state, state.config)
        return False
    if new is None:
        _reload_tls(state, state.config)
        return False
    swapped = False
    if new.generation != state.config.generation:
        old = state.config
        fixed = ("address", "port", "health_address", "health_port", "keepalive_timeout", "shutdown_grace")
        changed = [name for name in fixed if getattr(old.server, name) != getattr(new.server, name)]
        if changed:
            log.warning("config_reload_needs_restart", settings=[f"server.{camel(n)}" for n in changed])
        try:
            state.engine.swap(new)
        except Exception as exc:  # building verifiers/stores from a valid file failed: keep serving the old one
            state.last_reload_error = [f"cannot apply the new configuration: {type(exc).__name__}: {exc}"]
            log.exception("config_reload_failed", kept_generation=old.generation)
            metrics.CONFIG_RELOADS.labels("rejected").inc()
            metrics.CONFIG_LAST_RELOAD_OK.set(0)
            return False
        metrics.CONFIG_RELOADS.labels("applied").inc()
        _publish_config(new)
        log.info("config_reloaded", generation=new.generation, previous=old.generation)
        swapped = True
    state.last_reload_error = []
    metrics.CONFIG_LAST_RELOAD_OK.set(1)
    _reload_tls(state, new)
    return swapped


def _reload_tls(state: ServerState, config: Config) -> None:
    if state.tls is not None:
        state.tls.maybe_reload(config.server.tls)


def _publish_config(config: Config) -> None:
    """Gauges that describe the configuration in force."""
    metrics.CONFIG_GENERATION.clear()
    metrics.CONFIG_GENERATION.labels(config.generation).set(1)
    metrics.CONFIG_LAST_RELOAD_TIME.set(time.time())
    metrics.PROVIDER_TIMEOUT.labels("verify").set(config.server.provider_timeout)
    metrics.PROVIDER_TIMEOUT.labels("mutate").set(config.server.mutate_provider_timeout)


async def _reload_loop(state: ServerState) -> None:
    while True:
        await asyncio.sleep(state.config.server.reload_interval)
        try:
            await reload_once(state)
        except Exception as exc:  # the loop must survive anything a bad file can cause
            state.last_reload_error = [f"reload failed: {type(exc).__name__}"]
            log.exception("config_reload_failed")
            metrics.CONFIG_LAST_RELOAD_OK.set(0)


class RefereeServer:
    """The running service: HTTPS provider, health port, configuration and TLS reload."""

    def __init__(self, config_path: str, *, clock: Clock = utc_now) -> None:
        config = load_config(config_path)
        tls = ReloadingTLS(config.server.tls)
        reloader = ConfigReloader(config_path, config, max_config_bytes=MAX_CONFIG_BYTES, monotonic=time.monotonic)
        self.state = ServerState(
            engine=Engine(config, clock=clock), config_path=config_path, tls=tls, reloader=reloader
        )
        self._runners: list[web.AppRunner] = []
        self._reloader: asyncio.Task[None] | None = None
        self.port = 0
        self.health_port = 0

    async def start(self) -> None:
        server = self.state.config.server
        assert self.state.tls is not None
        header_timeout = max(server.provider_timeout, server.mutate_provider_timeout)
        runner = GuardedAppRunner(
            create_app(self.state),
            header_timeout=header_timeout,
            access_log=None,
            keepalive_timeout=server.keepalive_timeout,
            shutdown_timeout=server.shutdown_grace,
        )
        await runner.setup()
        site = GuardedTCPSite(
            runner,
            server.address,
            server.port,
            ssl_context=self.state.tls.listening_context,
            handshake_timeout=header_timeout,
        )
        await site.start()
        self.port = _bound_port(site)
        health = web.AppRunner(create_health_app(self.state), access_log=None, shutdown_timeout=1.0)
        await health.setup()
        health_site = web.TCPSite(health, server.health_address, server.health_port)
        await health_site.start()
        self.health_port = _bound_port(health_site)
        self._runners = [runner, health]
        self._reloader = asyncio.ensure_future(_reload_loop(self.state))
        _publish_config(self.state.config)
        metrics.CONFIG_LAST_RELOAD_OK.set(1)
        engine = self.state.engine
        metrics.PENDING.set_function(lambda: engine.pending)
        self.state.lag.start()
        self.state.ready = True
        log.info(
            "server_started",
            port=self.port,
            health_port=self.health_port,
            generation=self.state.config.generation,
            client_auth=server.tls.client_auth,
            outbound_proxy=self.state.config.registries.proxy.describe(),
        )

    async def stop(self) -> None:
        """Stop accepting, drain in-flight requests (up to ``shutdownGrace``), then release everything."""
        self.state.ready = False
        await self.state.lag.stop()
        if self._reloader is not None:
            self._reloader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reloader
        for runner in self._runners:
            await runner.cleanup()
        await self.state.engine.close()
        log.info("server_stopped")


def _bound_port(site: web.TCPSite) -> int:
    server = site._server
    sockets = getattr(server, "sockets", None) or []
    return int(sockets[0].getsockname()[1]) if sockets else 0


async def serve(config_path: str) -> None:
    """Run until SIGTERM or SIGINT, then shut down gracefully."""
    server = RefereeServer(config_path)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await server.start()
    await stop.wait()
    log.info("shutdown_requested")
    await server.stop()
