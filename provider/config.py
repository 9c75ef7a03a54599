"""Configuration: one YAML file for ``referee serve`` and ``referee verify``, parsed once into frozen objects.

Every problem is reported with its path (``verifiers[1].keys[0]: not a PEM public key``). YAML keys are
camelCase; attributes are snake_case; the conversion happens only in :mod:`provider.confignode`.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import ssl
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

from provider.confignode import Node, Problems, Secret
from provider.errors import ConfigError
from provider.files import read_regular
from provider.proxy import ProxySettings, proxy_settings
from provider.registry.matching import ImagePattern
from provider.specs import PolicySpec, StoreSpec, VerifierSpec, policy_types, store_types, verifier_types

API_VERSION = "referee.dev/v1alpha1"
MAX_CONFIG_BYTES = 4 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class Credentials:
    username: str | None = None
    password: Secret | None = None
    identity_token: Secret | None = None
    registry_token: Secret | None = None


@dataclass(frozen=True, slots=True)
class CredentialEntry:
    """Static credentials for images matching ``pattern`` (a pull secret or ``config.json`` ``auths`` key);
    ``source`` names where they came from (``registries.pullSecrets[1]``), for messages."""

    pattern: ImagePattern
    credentials: Credentials
    source: str


@dataclass(frozen=True, slots=True)
class TokenAttributes:
    """A provider's ``tokenAttributes``: the plugin wants Referee's service-account token for ``audience``."""

    audience: str
    require_service_account: bool
    cache_type: str
    required_annotation_keys: tuple[str, ...] = ()
    optional_annotation_keys: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class CredentialProviderSpec:
    """One ``providers[]`` entry of a kubelet ``CredentialProviderConfig``, resolved against Referee's settings."""

    name: str
    executable: str
    match_images: tuple[ImagePattern, ...]
    default_cache_duration: float
    api_version: str
    args: tuple[str, ...] = ()
    env: tuple[tuple[str, str], ...] = ()
    token_attributes: TokenAttributes | None = None
    token_file: str | None = None
    service_account_annotations: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class CredentialProvidersConfig:
    providers: tuple[CredentialProviderSpec, ...]
    exec_timeout: float = 10.0
    max_output_bytes: int = 1024 * 1024


@dataclass(frozen=True, slots=True)
class RegistryHostConfig:
    host: str
    plain_http: bool = False
    ca_pem: bytes | None = None
    credentials: Credentials | None = None
    max_concurrency: int | None = None
    referrers_api: str = "auto"
    token_realms: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class RegistriesConfig:
    allow: tuple[str, ...] = ()
    hosts: tuple[RegistryHostConfig, ...] = ()
    docker_credentials: dict[str, Credentials] = field(default_factory=dict)
    credential_helpers: frozenset[str] = frozenset()
    max_concurrency: int = 16
    request_timeout: float = 5.0
    max_attempts: int = 3
    referrers_api_memory: float = 3600.0
    cosign_legacy_tags: bool = True
    credential_entries: tuple[CredentialEntry, ...] = ()
    credential_providers: CredentialProvidersConfig | None = None
    proxy: ProxySettings = field(default_factory=ProxySettings)

    def host_config(self, host: str) -> RegistryHostConfig:
        for h in self.hosts:
            if h.host == host:
                return h
        return RegistryHostConfig(host=host)

    def is_allowed(self, registry: str, repository: str) -> bool:
        return matches_any(self.allow, registry, repository)


@dataclass(frozen=True, slots=True)
class TLSConfig:
    cert_file: str | None = None
    key_file: str | None = None
    client_ca_file: str | None = None
    client_auth: str = "require"
    allowed_client_names: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class DecisionLogConfig:
    """The decision log: one JSON line per key answered by ``/verify`` (docs/operations.md)."""

    enabled: bool = True
    output: str = "stdout"


@dataclass(frozen=True, slots=True)
class ServerConfig:
    address: str = "0.0.0.0"  # noqa: S104 - a pod serves on all interfaces
    port: int = 8443
    health_address: str = "0.0.0.0"  # noqa: S104
    health_port: int = 8080
    tls: TLSConfig = field(default_factory=TLSConfig)
    provider_timeout: float = 2.0
    deadline_margin: float = 0.1
    mutate_provider_timeout: float = 1.0
    mutate_deadline_margin: float = 0.05
    mutate_keep_tag: bool = False
    max_keys: int = 1000
    max_body_bytes: int = 1024 * 1024
    reload_interval: float = 5.0
    keepalive_timeout: float = 120.0
    shutdown_grace: float = 10.0
    decision_log: DecisionLogConfig = field(default_factory=DecisionLogConfig)

    @property
    def verify_deadline(self) -> float:
        return max(0.05, self.provider_timeout - self.deadline_margin)

    @property
    def mutate_deadline(self) -> float:
        return max(0.05, self.mutate_provider_timeout - self.mutate_deadline_margin)


@dataclass(frozen=True, slots=True)
class SharedCacheConfig:
    """``cache.shared``: a Valkey/Redis cache shared by the replicas (docs/configuration.md#cacheshared)."""

    url: str
    hmac_key: bytes = field(repr=False)
    username: str | None = None
    password: Secret | None = None
    ca_pem: bytes | None = None
    cert_file: str | None = None
    key_file: str | None = None
    key_prefix: str = "referee:"
    connect_timeout: float = 0.5
    operation_timeout: float = 0.25
    lease_ttl: float = 3.0
    retry_interval: float = 5.0
    max_connections: int = 32

    @property
    def tls(self) -> bool:
        return self.url.startswith("rediss://")


@dataclass(frozen=True, slots=True)
class CacheConfig:
    verdict_ttl: float = 300.0
    verdict_max_entries: int = 10000
    tag_ttl: float = 10.0
    tag_max_entries: int = 10000
    tag_stale_if_error: float = 0.0
    content_max_bytes: int = 64 * 1024 * 1024
    shared: SharedCacheConfig | None = None


@dataclass(frozen=True, slots=True)
class LimitsConfig:
    max_manifest_bytes: int = 4 * 1024 * 1024
    max_blob_bytes: int = 16 * 1024 * 1024
    max_referrers: int = 64
    max_referrer_pages: int = 10
    max_nested_depth: int = 1
    nested_artifact_types: frozenset[str] = frozenset()
    verification_timeout: float = 10.0
    max_concurrent_verifications: int = 16
    max_pending_verifications: int = 1024


@dataclass(frozen=True, slots=True)
class MultiArchConfig:
    """Opt-ins for multi-platform images (docs/configuration.md, "Multi-platform images").

    ``index_covers_platforms``: a key ``name:tag@sha256:<platform manifest>`` whose own evidence does not allow it
    is allowed when the index ``tag`` names lists that digest and is allowed itself. ``platform_artifact_types``:
    referrers of these types attached to the platform manifests an index lists count as evidence for the index
    (at most ``max_platforms`` platforms)."""

    index_covers_platforms: bool = False
    platform_artifact_types: frozenset[str] = frozenset()
    max_platforms: int = 16


@dataclass(frozen=True, slots=True)
class Config:
    registries: RegistriesConfig
    stores: tuple[StoreSpec, ...]
    verifiers: tuple[VerifierSpec, ...]
    policy: PolicySpec
    server: ServerConfig
    cache: CacheConfig
    limits: LimitsConfig
    generation: str
    source: str | None = None
    sources: tuple[str, ...] = ()
    multi_arch: MultiArchConfig = field(default_factory=MultiArchConfig)
    decision_generation: str = ""
    """The generation without the sections that decide no verdict (``server``, ``cache``): the configuration part
    of the shared cache's keys, so replicas that differ only in ports or cache settings share verdicts."""

    def verifier(self, name: str) -> VerifierSpec | None:
        return next((v for v in self.verifiers if v.name == name), None)


def matches_any(patterns: tuple[str, ...], registry: str, repository: str) -> bool:
    """Glob patterns (``*`` and ``?``; brackets are literal, as in ``[::1]:5000``) matched against ``registry`` (no
    ``/`` in the pattern) or ``registry/repository``."""
    name = f"{registry}/{repository}"
    for pattern in patterns:
        target = name if "/" in pattern else registry
        if fnmatch.fnmatchcase(target, pattern.replace("[", "[[]")):
            return True
    return False


def normalise_registry_key(key: str) -> str:
    """``https://index.docker.io/v1/`` → ``docker.io``; ``http://host:5000/x`` → ``host:5000``."""
    host = key.split("://", 1)[-1].split("/", 1)[0]
    if host in ("index.docker.io", "registry-1.docker.io"):
        return "docker.io"
    return host


def _parse_docker_config(node: Node) -> tuple[dict[str, Credentials], frozenset[str], tuple[CredentialEntry, ...]]:
    from provider.registry.credential_config import read_docker_config  # local: it imports this module

    path = node.string("docker_config", None)
    if path is None:
        return {}, frozenset(), ()
    field_path = node.child_path("dockerConfig")
    parsed = read_docker_config(node.problems, path, field_path, field_path)
    if parsed is None:
        return {}, frozenset(), ()
    creds = {normalise_registry_key(key): entry.credentials for key, entry in parsed.entries}
    helpers = frozenset(h if h == "*" else normalise_registry_key(h) for h in parsed.helpers)
    return creds, helpers, tuple(entry for _, entry in parsed.entries)


def _parse_token_realms(node: Node) -> tuple[str, ...]:
    """Hosts (``host[:port]``) of token services that may receive this registry's credentials."""
    realms = node.str_list("token_realms")
    for i, realm in enumerate(realms):
        if "/" in realm or "@" in realm or "*" in realm or not realm:
            node.problems.add(f"{node.child_path('tokenRealms')}[{i}]", "must be a host or host:port, no wildcards")
    return tuple(r.lower().removesuffix(":443") for r in realms)


def _parse_registries(node: Node) -> RegistriesConfig:
    from provider.registry import credential_config  # local: it imports this module

    allow = node.str_list("allow")
    docker_credentials, helpers, docker_entries = _parse_docker_config(node)
    pull_secrets = credential_config.parse_pull_secrets(node)
    credential_providers = credential_config.parse_credential_providers(node)
    hosts: list[RegistryHostConfig] = []
    seen: set[str] = set()
    for h in node.nodes("hosts"):
        host = h.string("host")
        if host in seen:
            h.error(f"host {host!r} listed twice", "host")
        seen.add(host or "")
        plain_http = h.flag("plain_http", False)
        ca_pem = h.ca_bundle()
        if plain_http and ca_pem is not None:
            h.error("plainHttp and a CA bundle contradict each other", "plain_http")
        username = h.string("username", None)
        password = h.secret("password")
        token = h.secret("registry_token")
        credentials = None
        if username is not None or password is not None or token is not None:
            if (username is None) != (password is None):
                h.error("username and password go together", "username")
            credentials = Credentials(username=username, password=password, registry_token=token)
        hosts.append(
            RegistryHostConfig(
                host=host or "",
                plain_http=plain_http,
                ca_pem=ca_pem,
                credentials=credentials,
                max_concurrency=h.integer("max_concurrency", None, minimum=1, maximum=1024),
                referrers_api=h.string("referrers_api", "auto", choices=("auto", "always", "never")),
                token_realms=_parse_token_realms(h),
            )
        )
        h.finish()
    result = RegistriesConfig(
        allow=allow,
        hosts=tuple(hosts),
        docker_credentials=docker_credentials,
        credential_helpers=helpers,
        max_concurrency=node.integer("max_concurrency", 16, minimum=1, maximum=1024),
        request_timeout=node.duration("request_timeout", 5.0, minimum=0.01),
        max_attempts=node.integer("max_attempts", 3, minimum=1, maximum=10),
        referrers_api_memory=node.duration("referrers_api_memory", 3600.0),
        cosign_legacy_tags=node.flag("cosign_legacy_tags", True),
        credential_entries=pull_secrets + docker_entries,
        credential_providers=credential_providers,
        proxy=_parse_proxy_environment(node.problems),
    )
    node.finish()
    return result


def _parse_proxy_environment(problems: Problems) -> ProxySettings:
    """HTTPS_PROXY, HTTP_PROXY and NO_PROXY (:mod:`provider.proxy`); a value that cannot be used is a problem of
    the configuration, so that ``referee config check`` and a reload report it."""
    settings, found = proxy_settings()
    for problem in found:
        problems.add("", problem)
    return settings


def _parse_plugin_list(node: Node, key: str, registry: Any, build: Any) -> list[Any]:
    out: list[Any] = []
    names: set[str] = set()
    for item in node.nodes(key):
        name = item.string("name")
        type_name = item.string("type")
        if name in names:
            item.error(f"duplicate name {name!r}", "name")
        names.add(name or "")
        plugin = registry.get(type_name) if type_name else None
        if type_name and plugin is None:
            item.error(f"unknown type {type_name!r}; known: {', '.join(registry.names())}", "type")
        spec = build(item, name or "", type_name or "", plugin)
        if spec is not None:
            out.append(spec)
        item.finish()
    return out


def _build_verifier(item: Node, name: str, type_name: str, plugin: Any) -> VerifierSpec | None:
    defaults = tuple(sorted(plugin.default_artifact_types)) if plugin else ()
    artifact_types = frozenset(item.str_list("artifact_types", defaults))
    scopes = item.str_list("scopes", ("*",))
    params = plugin.parse_params(item) if plugin else None
    if plugin is None:
        item.ignore_rest()
        return None
    return VerifierSpec(name=name, type=type_name, artifact_types=artifact_types, scopes=scopes, params=params)


def _build_store(item: Node, name: str, type_name: str, plugin: Any) -> StoreSpec | None:
    scopes = item.str_list("scopes", ("*",))
    if plugin is None:
        item.ignore_rest()
        return None
    return StoreSpec(name=name, type=type_name, scopes=scopes, params=plugin.parse_params(item))


def _parse_tls(node: Node) -> TLSConfig:
    def path(name: str) -> str | None:
        value = node.string(name, None)
        if value is None:
            return None
        resolved = node.problems.resolve(value)
        if not resolved.is_file():
            node.error(f"{value} does not exist or is not a file", name)
        return str(resolved)

    tls = TLSConfig(
        cert_file=path("cert_file"),
        key_file=path("key_file"),
        client_ca_file=path("client_ca_file"),
        client_auth=node.string("client_auth", "require", choices=("require", "disabled")),
        allowed_client_names=node.str_list("allowed_client_names"),
    )
    if tls.allowed_client_names and tls.client_auth == "disabled":
        node.error("needs client certificates: it cannot be used with clientAuth: disabled", "allowed_client_names")
    node.finish()
    return tls


def _parse_decision_log(node: Node) -> DecisionLogConfig:
    d = DecisionLogConfig()
    decision_log = DecisionLogConfig(
        enabled=node.flag("enabled", d.enabled),
        output=node.string("output", d.output, choices=("stdout", "stderr")),
    )
    node.finish()
    return decision_log


def _parse_server(node: Node) -> ServerConfig:
    d = ServerConfig()
    server = ServerConfig(
        address=node.string("address", d.address),
        port=node.integer("port", d.port, minimum=0, maximum=65535),
        health_address=node.string("health_address", d.health_address),
        health_port=node.integer("health_port", d.health_port, minimum=0, maximum=65535),
        tls=_parse_tls(node.node("tls")),
        provider_timeout=node.duration("provider_timeout", d.provider_timeout, minimum=0.1),
        deadline_margin=node.duration("deadline_margin", d.deadline_margin),
        mutate_provider_timeout=node.duration("mutate_provider_timeout", d.mutate_provider_timeout, minimum=0.1),
        mutate_deadline_margin=node.duration("mutate_deadline_margin", d.mutate_deadline_margin),
        mutate_keep_tag=node.flag("mutate_keep_tag", d.mutate_keep_tag),
        max_keys=node.integer("max_keys", d.max_keys, minimum=1, maximum=100000),
        max_body_bytes=node.size("max_body_bytes", d.max_body_bytes, minimum=1024),
        reload_interval=node.duration("reload_interval", d.reload_interval, minimum=0.05),
        keepalive_timeout=node.duration("keepalive_timeout", d.keepalive_timeout),
        shutdown_grace=node.duration("shutdown_grace", d.shutdown_grace),
        decision_log=_parse_decision_log(node.node("decision_log")),
    )
    if server.deadline_margin >= server.provider_timeout:
        node.error("must be smaller than providerTimeout", "deadline_margin")
    if server.mutate_deadline_margin >= server.mutate_provider_timeout:
        node.error("must be smaller than mutateProviderTimeout", "mutate_deadline_margin")
    node.finish()
    return server


def _parse_cache(node: Node) -> CacheConfig:
    d = CacheConfig()
    cache = CacheConfig(
        verdict_ttl=node.duration("verdict_ttl", d.verdict_ttl),
        verdict_max_entries=node.integer("verdict_max_entries", d.verdict_max_entries, minimum=0),
        tag_ttl=node.duration("tag_ttl", d.tag_ttl),
        tag_max_entries=node.integer("tag_max_entries", d.tag_max_entries, minimum=0),
        tag_stale_if_error=node.duration("tag_stale_if_error", d.tag_stale_if_error),
        content_max_bytes=node.size("content_max_bytes", d.content_max_bytes),
        shared=_parse_shared_cache(node.node("shared")) if node.has("shared") else None,
    )
    node.finish()
    return cache


MIN_HMAC_KEY_BYTES = 32


def _parse_shared_url(node: Node) -> str | None:
    """``redis://host[:port][/db]`` or ``rediss://…`` (TLS). Credentials and query options are refused: the
    password belongs in a file, and query options could turn TLS verification off."""
    url = node.string("url")
    if url is None:
        return None
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number in range
    except ValueError as exc:
        node.error(f"not a valid URL: {exc}", "url")
        return None
    problem = None
    if parts.scheme not in ("redis", "rediss"):
        problem = "must start with redis:// or rediss:// (TLS)"
    elif parts.username is not None or parts.password is not None:
        problem = "must not carry credentials: use username and passwordFile"
    elif not parts.hostname:
        problem = "names no host"
    elif parts.query or parts.fragment:
        problem = "must not carry query options or a fragment (TLS and timeouts are set by Referee's settings)"
    elif parts.path not in ("", "/") and not (parts.path[1:].isdigit() and int(parts.path[1:]) < 1024):
        problem = "the path may only be a database number (/0)"
    if problem is not None:
        node.error(problem, "url")
        return None
    return str(url)


def _parse_shared_cache(node: Node) -> SharedCacheConfig | None:
    url = _parse_shared_url(node)
    key_path = node.string("hmac_key_file")
    hmac_key = None
    if key_path is not None:
        data = node.problems.read_file(key_path, node.child_path("hmacKeyFile"), max_bytes=4096)
        if data is not None:
            hmac_key = data.strip()
            if len(hmac_key) < MIN_HMAC_KEY_BYTES:
                node.error(
                    f"{key_path} holds {len(hmac_key)} bytes; at least {MIN_HMAC_KEY_BYTES} are needed", "hmac_key_file"
                )
                hmac_key = None
    username = node.secret("username")
    password = node.secret("password")
    ca_pem = node.ca_bundle()
    cert_file = _existing_file(node, "cert_file")
    key_file = _existing_file(node, "key_file")
    if (cert_file is None) != (key_file is None):
        node.error("certFile and keyFile go together", "cert_file")
    elif cert_file is not None and key_file is not None:
        try:
            ssl.create_default_context().load_cert_chain(cert_file, key_file)
        except (ssl.SSLError, OSError):
            node.error("not a PEM certificate and its private key", "cert_file")
    d = SharedCacheConfig(url="", hmac_key=b"")
    operation_timeout = node.duration("operation_timeout", d.operation_timeout, minimum=0.001)
    lease_ttl = node.duration("lease_ttl", d.lease_ttl, minimum=0.3)
    shared = SharedCacheConfig(
        url=url or "",
        hmac_key=hmac_key or b"",
        username=username.reveal() if username is not None else None,
        password=password,
        ca_pem=ca_pem,
        cert_file=cert_file,
        key_file=key_file,
        key_prefix=node.string("key_prefix", d.key_prefix),
        connect_timeout=node.duration("connect_timeout", d.connect_timeout, minimum=0.01),
        operation_timeout=operation_timeout,
        lease_ttl=lease_ttl,
        retry_interval=node.duration("retry_interval", d.retry_interval, minimum=0.1),
        max_connections=node.integer("max_connections", d.max_connections, minimum=1, maximum=1024),
    )
    if url is not None and not shared.tls and (ca_pem is not None or cert_file is not None):
        node.error("CA and client certificate need a rediss:// (TLS) url", "url")
    if lease_ttl < 3 * operation_timeout:
        node.error("must be at least 3 times operationTimeout (the holder renews it every third)", "lease_ttl")
    node.finish()
    if url is None or hmac_key is None:
        return None
    return shared


def _existing_file(node: Node, name: str) -> str | None:
    value = node.string(name, None)
    if value is None:
        return None
    resolved = node.problems.resolve(value)
    if not resolved.is_file():
        node.error(f"{value} does not exist or is not a file", name)
        return None
    return str(resolved)


def _parse_limits(node: Node) -> LimitsConfig:
    d = LimitsConfig()
    limits = LimitsConfig(
        max_manifest_bytes=node.size("max_manifest_bytes", d.max_manifest_bytes, minimum=1024),
        max_blob_bytes=node.size("max_blob_bytes", d.max_blob_bytes, minimum=1024),
        max_referrers=node.integer("max_referrers", d.max_referrers, minimum=1, maximum=10000),
        max_referrer_pages=node.integer("max_referrer_pages", d.max_referrer_pages, minimum=1, maximum=1000),
        max_nested_depth=node.integer("max_nested_depth", d.max_nested_depth, minimum=0, maximum=5),
        nested_artifact_types=frozenset(node.str_list("nested_artifact_types")),
        verification_timeout=node.duration("verification_timeout", d.verification_timeout, minimum=0.1),
        max_concurrent_verifications=node.integer(
            "max_concurrent_verifications", d.max_concurrent_verifications, minimum=1, maximum=1024
        ),
        max_pending_verifications=node.integer(
            "max_pending_verifications", d.max_pending_verifications, minimum=1, maximum=100000
        ),
    )
    node.finish()
    return limits


# Signatures bind one digest: a signature on a platform manifest says nothing about an index listing it (anyone can
# write an index that lists a signed platform beside one of theirs), so it never counts for an index.
_SIGNATURE_TYPES = frozenset(
    {
        "application/vnd.dev.cosign.artifact.sig.v1+json",
        "application/vnd.dev.cosign.simplesigning.v1+json",
        "application/vnd.cncf.notary.signature",
        "application/vnd.dev.sigstore.bundle.v0.3+json",
    }
)


def _parse_multi_arch(node: Node) -> MultiArchConfig:
    d = MultiArchConfig()
    types = node.str_list("platform_artifact_types")
    for i, artifact_type in enumerate(types):
        if artifact_type in _SIGNATURE_TYPES or artifact_type.startswith("application/vnd.dev.sigstore.bundle"):
            node.problems.add(
                f"{node.child_path('platformArtifactTypes')}[{i}]",
                f"{artifact_type} is a signature type: a signature on a platform manifest does not cover an index "
                "that lists it (sign the index; cosign sign --recursive signs both)",
            )
    multi_arch = MultiArchConfig(
        index_covers_platforms=node.flag("index_covers_platforms", d.index_covers_platforms),
        platform_artifact_types=frozenset(types),
        max_platforms=node.integer("max_platforms", d.max_platforms, minimum=1, maximum=64),
    )
    node.finish()
    return multi_arch


def _parse_policy(node: Node, verifier_names: frozenset[str]) -> PolicySpec:
    type_name = node.string("type", None)
    if type_name is None:
        node.finish()
        return PolicySpec(type="deny-all", params=None)
    plugin = policy_types.get(type_name)
    if plugin is None:
        node.error(f"unknown type {type_name!r}; known: {', '.join(policy_types.names())}", "type")
        node.ignore_rest()
        node.finish()
        return PolicySpec(type=type_name, params=None)
    params = plugin.parse_params(node, verifier_names)
    node.finish()
    return PolicySpec(type=type_name, params=params)


def _cross_check(problems: Problems, verifiers: list[VerifierSpec], policy: PolicySpec) -> None:
    """Checks that need the whole configuration: a verifier plug-in may define
    ``check_configuration(spec, verifiers, policy) -> list[str]`` (problems under ``verifiers[i]``)."""
    for i, spec in enumerate(verifiers):
        plugin = verifier_types.get(spec.type)
        check = getattr(plugin, "check_configuration", None)
        if check is None:
            continue
        for problem in check(spec, tuple(verifiers), policy):
            problems.add(f"verifiers[{i}]", problem)


def _parse_attestors(root: Node, taken: set[str]) -> list[VerifierSpec]:
    """The top-level ``attestors`` list, as verifier specs of type ``attestor`` (its plug-in is imported only when the
    list is there); attestors and verifiers share one namespace."""
    out: list[VerifierSpec] = []
    for item in root.nodes("attestors"):
        name = item.string("name")
        if name in taken:
            item.error(f"duplicate name {name!r} (attestors and verifiers share one namespace)", "name")
        taken.add(name or "")
        spec = _build_verifier(item, name or "", "attestor", verifier_types.get("attestor"))
        if spec is not None:
            out.append(spec)
        item.finish()
    return out


def parse_config(document: object, base_dir: Path, raw: bytes = b"", source: str | None = None) -> Config:
    """Parse a loaded YAML document; raise :class:`ConfigError` listing every problem."""
    from provider import registrations

    registrations.load()
    problems = Problems(base_dir)
    problems.fingerprint.update(raw)
    root = Node(document, "", problems)
    api_version = root.string("api_version", API_VERSION)
    if api_version != API_VERSION:
        root.error(f"unsupported apiVersion {api_version!r}; expected {API_VERSION}", "api_version")
    registries = _parse_registries(root.node("registries"))
    stores = _parse_plugin_list(root, "stores", store_types, _build_store)
    if not root.has("stores"):
        stores = [StoreSpec(name="registry", type="registry", scopes=("*",), params=None)]
    verifiers = _parse_plugin_list(root, "verifiers", verifier_types, _build_verifier)
    verifiers += _parse_attestors(root, {v.name for v in verifiers})
    policy = _parse_policy(root.node("policy"), frozenset(v.name for v in verifiers))
    server = _parse_server(root.node("server"))
    cache = _parse_cache(root.node("cache"))
    limits = _parse_limits(root.node("limits"))
    multi_arch = _parse_multi_arch(root.node("multi_arch"))
    root.finish()
    _cross_check(problems, verifiers, policy)
    if problems.items:
        raise ConfigError(problems.items)
    return Config(
        registries=registries,
        stores=tuple(stores),
        verifiers=tuple(verifiers),
        policy=policy,
        server=server,
        cache=cache,
        limits=limits,
        generation=problems.fingerprint.hexdigest()[:16],
        source=source,
        sources=tuple(dict.fromkeys(problems.sources)),
        multi_arch=multi_arch,
        decision_generation=_decision_generation(document, problems),
    )


NON_DECIDING_SECTIONS = ("server", "cache")


def _decision_generation(document: object, problems: Problems) -> str:
    """A fingerprint of everything that can decide a verdict: the document without ``server`` and ``cache``, and
    the content of every file read outside them (by where the document names it, not where it is mounted)."""
    h = hashlib.sha256(b"referee-decision-generation/v1\0")
    if isinstance(document, dict):
        document = {k: v for k, v in document.items() if k not in NON_DECIDING_SECTIONS}
    h.update(json.dumps(_canonical(document), separators=(",", ":")).encode())
    for node_path, _, digest in problems.files:
        if node_path.split(".", 1)[0].split("[", 1)[0] in NON_DECIDING_SECTIONS:
            continue
        h.update(b"\0" + node_path.encode() + b"\0" + digest)
    return h.hexdigest()[:16]


def _canonical(value: object) -> object:
    """JSON-encodable and independent of key order (YAML mappings may have keys of any type)."""
    if isinstance(value, dict):
        return sorted(([repr(k), _canonical(v)] for k, v in value.items()), key=lambda kv: str(kv[0]))
    if isinstance(value, list | tuple):
        return [_canonical(v) for v in value]
    if value is None or isinstance(value, bool | int | float | str):
        return [type(value).__name__, value]
    return [type(value).__name__, repr(value)]


def load_config(path: str | Path) -> Config:
    """Read, parse and validate a configuration file."""
    p = Path(path)
    try:
        raw = read_regular(p, MAX_CONFIG_BYTES)
    except OSError as exc:
        raise ConfigError([f"cannot read {p}: {exc.strerror or exc}"]) from None
    if len(raw) > MAX_CONFIG_BYTES:
        raise ConfigError([f"{p} is larger than {MAX_CONFIG_BYTES} bytes"])
    return load_config_bytes(raw, p.resolve().parent, str(p))


class _StrictLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that refuses duplicate keys (PyYAML keeps the last one silently)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            try:
                duplicate = key in seen
            except TypeError:
                continue  # an unhashable key: the base constructor reports it
            if duplicate:
                mark = key_node.start_mark
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {str(key)[:80]!r} (line {mark.line + 1})", mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def _load_yaml(raw: bytes) -> object:
    try:
        return yaml.load(raw, Loader=_StrictLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError([f"not valid YAML{where}: {getattr(exc, 'problem', None) or exc}"]) from None
    except RecursionError:
        raise ConfigError(["not usable YAML: nested too deeply"]) from None
    except ValueError as exc:  # e.g. an integer of thousands of digits (int conversion limit)
        raise ConfigError([f"not usable YAML: {str(exc)[:120]}"]) from None


def load_config_bytes(raw: bytes, base_dir: Path, source: str | None = None) -> Config:
    """Parse configuration bytes. An empty document is refused: it would configure an empty allow list and no
    policy, i.e. deny every image — what a file caught mid-write looks like."""
    document = _load_yaml(raw)
    if document is None:
        raise ConfigError([f"{source or 'the configuration'} is empty (no YAML document); refusing to apply it"])
    try:
        return parse_config(document, base_dir, raw, source)
    except RecursionError:
        raise ConfigError(["not usable YAML: nested too deeply"]) from None
