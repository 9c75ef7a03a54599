"""Prometheus metrics (one registry per process, exposed on the health port at ``/metrics``)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

REGISTRY = CollectorRegistry(auto_describe=True)

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

REQUEST_LATENCY = Histogram(
    "referee_request_duration_seconds",
    "Time to answer a ProviderRequest, by endpoint.",
    ["endpoint"],
    buckets=_LATENCY_BUCKETS,
    registry=REGISTRY,
)
REQUESTS = Counter(
    "referee_requests_total",
    "ProviderRequests answered, by endpoint and outcome.",
    ["endpoint", "outcome"],
    registry=REGISTRY,
)
KEYS = Counter(
    "referee_keys_total",
    "Keys answered, by endpoint and outcome (allowed, denied, error, unfinished).",
    ["endpoint", "outcome"],
    registry=REGISTRY,
)
VERIFIER_DURATION = Histogram(
    "referee_verifier_duration_seconds",
    "Time spent in one verifier on one artifact, by verifier name and type and outcome.",
    ["verifier", "verifier_type", "outcome"],
    buckets=_LATENCY_BUCKETS,
    registry=REGISTRY,
)
REGISTRY_REQUESTS = Counter(
    "referee_registry_requests_total",
    "HTTP requests sent to registries and token services, by host, method and status.",
    ["host", "method", "status"],
    registry=REGISTRY,
)
CACHE_EVENTS = Counter(
    "referee_cache_events_total",
    "Cache lookups by cache and result (hit, miss).",
    ["cache", "result"],
    registry=REGISTRY,
)
IN_FLIGHT = Gauge("referee_verifications_in_flight", "Subject verifications currently running.", registry=REGISTRY)
CONFIG_RELOADS = Counter(
    "referee_config_reloads_total", "Configuration reload attempts by result.", ["result"], registry=REGISTRY
)
CONFIG_GENERATION = Gauge(
    "referee_config_info", "The configuration generation in force.", ["generation"], registry=REGISTRY
)
CREDENTIAL_PROVIDER_EXECS = Counter(
    "referee_credential_provider_execs_total",
    "Runs of kubelet credential provider plugins, by provider and outcome (success, error).",
    ["provider", "outcome"],
    registry=REGISTRY,
)
