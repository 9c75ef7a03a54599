"""Prometheus metrics (one registry per process, exposed on the health port at ``/metrics``), and the aiohttp
tracing hooks that time every registry request.

Every metric, its labels and what to do when it moves are in docs/operations.md. Label values are bounded:
endpoints, outcomes, results and reason codes are fixed sets; verifier, requirement and registry host names
come from the configuration; certificate subjects from the serving and client-CA files.

Counters on the request path are reached through :class:`Bound`, which resolves a label combination once
(``labels()`` takes a lock and builds a key on every call), so a key costs one ``inc()`` per counter.
"""

from __future__ import annotations

import asyncio
import time
from types import SimpleNamespace
from typing import Any

import aiohttp
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from yarl import URL

from provider import __version__

REGISTRY = CollectorRegistry(auto_describe=True)

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
# Finer around Gatekeeper's usual Provider timeouts (1-3 s), so p99 against 80 % of the timeout is meaningful.
_REQUEST_BUCKETS = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    0.75,
    1.0,
    1.5,
    2.0,
    2.5,
    3.0,
    4.0,
    5.0,
    10.0,
)


class Bound:
    """Children of a labelled metric, resolved once per label combination and kept."""

    __slots__ = ("_children", "_metric")

    def __init__(self, metric: Counter | Gauge | Histogram) -> None:
        self._metric = metric
        self._children: dict[tuple[str, ...], Any] = {}

    def __call__(self, *values: str) -> Any:
        child = self._children.get(values)
        if child is None:
            child = self._children[values] = self._metric.labels(*values)
        return child


BUILD_INFO = Gauge("referee_build_info", "Always 1; the running Referee version.", ["version"], registry=REGISTRY)
BUILD_INFO.labels(__version__).set(1)

# -- requests and decisions -------------------------------------------------------------------------------------

REQUEST_LATENCY = Histogram(
    "referee_request_duration_seconds",
    "Time to answer a ProviderRequest, by endpoint.",
    ["endpoint"],
    buckets=_REQUEST_BUCKETS,
    registry=REGISTRY,
)
REQUESTS = Counter(
    "referee_requests_total",
    "ProviderRequests answered, by endpoint and outcome (ok, partial, rejected).",
    ["endpoint", "outcome"],
    registry=REGISTRY,
)
KEYS = Counter(
    "referee_keys_total",
    "Keys answered, by endpoint and outcome (verify: allowed, denied, error, unfinished; mutate: pinned, error).",
    ["endpoint", "outcome"],
    registry=REGISTRY,
)
DECISIONS = Counter(
    "referee_decisions_total",
    "Keys answered by /verify, by result (allowed, denied, error, unavailable) and reason code.",
    ["result", "reason"],
    registry=REGISTRY,
)
UNMET_REQUIREMENTS = Counter(
    "referee_unmet_requirements_total",
    "Policy requirements (a required verifier or a rule) that a denied key did not meet, by requirement and "
    "reason code; one denial counts once per unmet requirement.",
    ["requirement", "reason"],
    registry=REGISTRY,
)
PROVIDER_TIMEOUT = Gauge(
    "referee_provider_timeout_seconds",
    "The Gatekeeper Provider timeout Referee answers within (server.providerTimeout, mutateProviderTimeout).",
    ["endpoint"],
    registry=REGISTRY,
)

# -- verification -----------------------------------------------------------------------------------------------

VERIFIER_DURATION = Histogram(
    "referee_verifier_duration_seconds",
    "Time spent in one verifier on one artifact, by verifier name and type and outcome.",
    ["verifier", "verifier_type", "outcome"],
    buckets=_LATENCY_BUCKETS,
    registry=REGISTRY,
)
IN_FLIGHT = Gauge("referee_verifications_in_flight", "Subject verifications currently running.", registry=REGISTRY)
PENDING = Gauge(
    "referee_verifications_pending",
    "Shared verifications and tag resolutions started and not finished (bounded by limits.maxPendingVerifications).",
    registry=REGISTRY,
)

# -- registries -------------------------------------------------------------------------------------------------

REGISTRY_REQUESTS = Counter(
    "referee_registry_requests_total",
    "HTTP requests sent to registries and token services, by host, method and status.",
    ["host", "method", "status"],
    registry=REGISTRY,
)
REGISTRY_LATENCY = Histogram(
    "referee_registry_request_duration_seconds",
    "Time from sending an HTTP request to a registry, token service or blob store to its response headers, "
    "by the host of the URL.",
    ["host"],
    buckets=_LATENCY_BUCKETS,
    registry=REGISTRY,
)
REGISTRY_FAILURES = Counter(
    "referee_registry_request_failures_total",
    "HTTP requests to registries, token services or blob stores that got no response (refused, reset, TLS "
    "failure, timeout), by the host of the URL and the error.",
    ["host", "error"],
    registry=REGISTRY,
)

# -- caches -----------------------------------------------------------------------------------------------------

CACHE_EVENTS = Counter(
    "referee_cache_events_total",
    "Cache lookups by cache (verdict, tag, subject, content), tier (local: this process; shared: cache.shared) and "
    "result (hit, miss).",
    ["cache", "tier", "result"],
    registry=REGISTRY,
)
SHARED_CACHE_LOCAL_ONLY = Gauge(
    "referee_shared_cache_local_only",
    "1 while the shared cache (cache.shared) is configured but failed or was too slow (three operations in a row): "
    "Referee answers from its own cache only and reconnects by itself; 0 otherwise (also without a shared cache).",
    registry=REGISTRY,
)
SHARED_CACHE_ERRORS = Counter(
    "referee_shared_cache_errors_total",
    "Shared cache operations that failed or exceeded cache.shared.operationTimeout, by operation (get, set, lease, "
    "publish).",
    ["operation"],
    registry=REGISTRY,
)
SHARED_CACHE_REJECTED = Counter(
    "referee_shared_cache_rejected_entries_total",
    "Shared cache entries and leases ignored, by reason: signature (not sealed with this installation's key, or "
    "copied from another key), expired, malformed, mismatch (for another image), oversize.",
    ["reason"],
    registry=REGISTRY,
)
SHARED_CACHE_WAITS = Counter(
    "referee_shared_cache_waits_total",
    "Cold keys that found another replica resolving their reference or verifying their digest (a lease), by how the "
    "wait ended: verdict (the verdict arrived), takeover (a lease ended without its entry: this replica did the work).",
    ["outcome"],
    registry=REGISTRY,
)

# -- configuration and TLS --------------------------------------------------------------------------------------

CONFIG_RELOADS = Counter(
    "referee_config_reloads_total",
    "Configuration reloads by result (applied; rejected: counted once per distinct bad file).",
    ["result"],
    registry=REGISTRY,
)
CONFIG_GENERATION = Gauge(
    "referee_config_info", "The configuration generation in force.", ["generation"], registry=REGISTRY
)
CONFIG_LAST_RELOAD_OK = Gauge(
    "referee_config_last_reload_successful",
    "1 when the configuration file on disk is the one in force, 0 while a changed file is rejected.",
    registry=REGISTRY,
)
CONFIG_LAST_RELOAD_TIME = Gauge(
    "referee_config_last_reload_success_timestamp_seconds",
    "When the configuration in force was loaded (start or last applied reload), as Unix time.",
    registry=REGISTRY,
)
TLS_RELOADS = Counter(
    "referee_tls_reloads_total",
    "Serving TLS reloads (certificate, key, client CA files) by result (applied, rejected).",
    ["result"],
    registry=REGISTRY,
)
TLS_LAST_RELOAD_OK = Gauge(
    "referee_tls_last_reload_successful",
    "1 when the TLS files on disk are the ones serving, 0 while changed files are rejected.",
    registry=REGISTRY,
)
CERTIFICATE_EXPIRY = Gauge(
    "referee_tls_certificate_expiration_timestamp_seconds",
    "notAfter of each certificate serving (certificate=serving: the chain in certFile) or trusted for "
    "Gatekeeper's client certificate (certificate=client_ca: the bundle in clientCaFile), as Unix time.",
    ["certificate", "subject", "serial"],
    registry=REGISTRY,
)

# -- bound children for the request path ------------------------------------------------------------------------

requests = Bound(REQUESTS)
request_latency = Bound(REQUEST_LATENCY)
keys = Bound(KEYS)
decisions = Bound(DECISIONS)
unmet_requirements = Bound(UNMET_REQUIREMENTS)
cache_events = Bound(CACHE_EVENTS)
registry_latency = Bound(REGISTRY_LATENCY)
registry_failures = Bound(REGISTRY_FAILURES)
shared_cache_errors = Bound(SHARED_CACHE_ERRORS)
shared_cache_rejected = Bound(SHARED_CACHE_REJECTED)

# Series for every known label value exist from the start (at 0), so rate() and increase() see the first event.
for _endpoint, _outcomes in (("verify", ("ok", "partial", "rejected")), ("mutate", ("ok", "partial", "rejected"))):
    for _outcome in _outcomes:
        requests(_endpoint, _outcome)
for _outcome in ("allowed", "denied", "error", "unfinished"):
    keys("verify", _outcome)
for _outcome in ("pinned", "error"):
    keys("mutate", _outcome)
for _result in ("applied", "rejected"):
    CONFIG_RELOADS.labels(_result)
    TLS_RELOADS.labels(_result)


# -- registry request timing through aiohttp's tracing hooks ----------------------------------------------------


def host_label(url: URL) -> str:
    """``host[:port]`` of ``url`` (the port only when the URL names one); never the user information."""
    host = url.raw_host or ""
    if ":" in host:
        host = f"[{host}]"
    port = url.explicit_port
    return f"{host}:{port}" if port else host


async def _request_started(session: Any, ctx: SimpleNamespace, params: aiohttp.TraceRequestStartParams) -> None:
    ctx.started = time.monotonic()


async def _request_answered(session: Any, ctx: SimpleNamespace, params: aiohttp.TraceRequestEndParams) -> None:
    registry_latency(host_label(params.url)).observe(time.monotonic() - ctx.started)


async def _request_failed(session: Any, ctx: SimpleNamespace, params: aiohttp.TraceRequestExceptionParams) -> None:
    if isinstance(params.exception, asyncio.CancelledError):
        return  # the caller gave up (its deadline passed): not the registry's failure
    host = host_label(params.url)
    started = getattr(ctx, "started", None)
    if started is not None:
        registry_latency(host).observe(time.monotonic() - started)
    registry_failures(host, type(params.exception).__name__).inc()


def registry_trace() -> aiohttp.TraceConfig:
    """For the registry client's ``aiohttp.ClientSession(trace_configs=[...])``: one latency sample per HTTP
    request (to its response headers) and a failure count for requests that got no response, covering
    manifests, blobs, referrers, tokens and redirects in one place."""
    trace = aiohttp.TraceConfig()
    trace.on_request_start.append(_request_started)
    trace.on_request_end.append(_request_answered)
    trace.on_request_exception.append(_request_failed)
    return trace


STALE_RESOLUTIONS = Counter(
    "referee_stale_tag_resolutions_total",
    "Tag resolutions served from the stale-if-error window (cache.tagStaleIfError) while the registry failed.",
    registry=REGISTRY,
)
CREDENTIAL_PROVIDER_EXECS = Counter(
    "referee_credential_provider_execs_total",
    "Runs of kubelet credential provider plugins, by provider and outcome (success, error).",
    ["provider", "outcome"],
    registry=REGISTRY,
)
