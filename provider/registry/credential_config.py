"""Parsing the credential sources named in ``registries``: Docker ``config.json`` / pull-secret files
(``registries.dockerConfig``, ``registries.pullSecrets``) and kubelet credential providers
(``registries.credentialProviders``: a ``CredentialProviderConfig`` file or directory plus a plugin directory).

Called by :mod:`provider.config` while it parses ``registries``; every problem is reported with its path.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

import yaml

from provider.config import (
    CredentialEntry,
    CredentialProvidersConfig,
    CredentialProviderSpec,
    Credentials,
    TokenAttributes,
)
from provider.confignode import Node, Problems, Secret
from provider.registry.matching import ImagePattern, parse_docker_config_key, parse_pattern

MAX_DOCKER_CONFIG_BYTES = 1024 * 1024
MAX_PROVIDER_CONFIG_BYTES = 1024 * 1024
CONFIG_API_VERSIONS = ("kubelet.config.k8s.io/v1", "kubelet.config.k8s.io/v1beta1", "kubelet.config.k8s.io/v1alpha1")
PLUGIN_API_VERSIONS = (
    "credentialprovider.kubelet.k8s.io/v1",
    "credentialprovider.kubelet.k8s.io/v1beta1",
    "credentialprovider.kubelet.k8s.io/v1alpha1",
)
TOKEN_API_VERSION = "credentialprovider.kubelet.k8s.io/v1"
CACHE_TYPES = ("ServiceAccount", "Token")
_GO_DURATION_RE = re.compile(r"([0-9]*(?:\.[0-9]*)?)(ns|us|µs|μs|ms|s|m|h)")
_GO_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "μs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
_ANNOTATION_KEY_RE = re.compile(
    r"(?:[a-z0-9]([-a-z0-9]*[a-z0-9])?(?:\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?"
)


def parse_go_duration(text: str) -> float:
    """Seconds from a Go ``time.Duration`` string (``12h``, ``5m0s``, ``1.5h``, ``300ms``, ``0``) as
    ``metav1.Duration`` writes and reads them; raise ``ValueError`` otherwise. Negative values are refused."""
    value = text.strip()
    if value in ("0", "+0"):
        return 0.0
    if value.startswith("-"):
        raise ValueError(f"negative duration {text!r}")
    value = value.removeprefix("+")
    pos, total = 0, 0.0
    while pos < len(value):
        m = _GO_DURATION_RE.match(value, pos)
        if not m or m.end() == pos or m.group(1) in ("", "."):
            raise ValueError(f"invalid duration {text!r} (Go syntax, e.g. 12h, 5m0s, 300ms)")
        total += float(m.group(1)) * _GO_UNITS[m.group(2)]
        pos = m.end()
    if not value:
        raise ValueError("empty duration")
    return total


# -- Docker config.json and pull secrets ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DockerConfigFile:
    entries: tuple[tuple[str, CredentialEntry], ...]
    helpers: frozenset[str]


def read_docker_config(problems: Problems, path: str, field_path: str, source: str) -> DockerConfigFile | None:
    """Read a Docker ``config.json``, a ``kubernetes.io/dockerconfigjson`` Secret file or a legacy
    ``.dockercfg`` (a bare ``auths`` map, recognised by its file name). A directory is the mount of a pull
    secret: its ``.dockerconfigjson`` (else ``.dockercfg``) is read. Returns ``(key, entry)`` pairs in file order,
    and the registries named by ``credHelpers`` (``*`` for ``credsStore``)."""
    resolved = problems.resolve(path)
    if resolved.is_dir():
        for name in (".dockerconfigjson", ".dockercfg"):
            if (resolved / name).is_file():
                path = str(resolved / name)
                break
        else:
            problems.add(field_path, f"{path} is a directory without .dockerconfigjson or .dockercfg")
            return None
    data = problems.read_file(path, field_path, max_bytes=MAX_DOCKER_CONFIG_BYTES)
    if data is None:
        return None
    try:
        doc = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        problems.add(field_path, f"{path} is not JSON: {exc}")
        return None
    if not isinstance(doc, dict):
        problems.add(field_path, f"{path}: expected a JSON object")
        return None
    auths = doc.get("auths", doc if ".dockercfg" in Path(path).name else {})
    if ".dockerconfigjson" in doc:
        inner = doc[".dockerconfigjson"]
        if not isinstance(inner, dict):
            problems.add(field_path, f"{path}: .dockerconfigjson must be an object (decode the Secret first)")
            return None
        auths = inner.get("auths", {})
    if not isinstance(auths, dict):
        problems.add(field_path, f"{path}: auths must be an object")
        return None
    entries: list[tuple[str, CredentialEntry]] = []
    for key, entry in auths.items():
        credentials = _auth_entry(problems, field_path, path, key, entry)
        if credentials is None:
            continue
        try:
            pattern = parse_docker_config_key(key)
        except ValueError as exc:
            problems.add(field_path, f"{path}: auths key {key!r}: {exc}")
            continue
        entries.append((key, CredentialEntry(pattern=pattern, credentials=credentials, source=source)))
    helpers = set(doc.get("credHelpers") or {}) if isinstance(doc.get("credHelpers"), dict) else set()
    if doc.get("credsStore"):
        helpers.add("*")
    return DockerConfigFile(entries=tuple(entries), helpers=frozenset(helpers))


def _auth_entry(problems: Problems, field_path: str, path: str, key: str, entry: object) -> Credentials | None:
    if not isinstance(entry, dict):
        problems.add(field_path, f"{path}: auths[{key!r}] must be an object")
        return None
    username, password = entry.get("username"), entry.get("password")
    if isinstance(entry.get("auth"), str) and entry["auth"]:
        try:
            username, _, password = base64.b64decode(entry["auth"]).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            problems.add(field_path, f"{path}: auths[{key!r}].auth is not base64 of user:password")
            return None
    identity = entry.get("identitytoken")
    registry_token = entry.get("registrytoken")
    return Credentials(
        username=username if isinstance(username, str) and username else None,
        password=Secret(password) if isinstance(password, str) and password else None,
        identity_token=Secret(identity) if isinstance(identity, str) and identity else None,
        registry_token=Secret(registry_token) if isinstance(registry_token, str) and registry_token else None,
    )


def parse_pull_secrets(node: Node) -> tuple[CredentialEntry, ...]:
    """``registries.pullSecrets``: files (or Secret mount directories), earlier ones first."""
    out: list[CredentialEntry] = []
    for i, path in enumerate(node.str_list("pull_secrets")):
        field_path = f"{node.child_path('pullSecrets')}[{i}]"
        parsed = read_docker_config(node.problems, path, field_path, field_path)
        if parsed is not None:
            out.extend(entry for _, entry in parsed.entries)
    return tuple(out)


# -- kubelet credential providers ---------------------------------------------------------------------------------


def parse_credential_providers(registries: Node) -> CredentialProvidersConfig | None:
    """``registries.credentialProviders``; ``None`` when the key is absent."""
    if not registries.has("credential_providers"):
        return None
    section = registries.node("credential_providers")
    config_path = section.string("config")
    bin_dir = section.string("bin_dir")
    exec_timeout = section.duration("exec_timeout", 10.0, minimum=0.01)
    max_output = section.size("max_output_bytes", 1024 * 1024, minimum=1024)
    tokens: dict[str, str] = {}
    for item in section.nodes("service_account_tokens"):
        audience = item.string("audience")
        token_path = item.string("path")
        if audience in tokens:
            item.error(f"audience {audience!r} listed twice", "audience")
        if audience and token_path:
            resolved = item.problems.resolve(token_path)
            if not resolved.is_file():
                item.error(f"{token_path} does not exist or is not a file", "path")
            tokens[audience] = str(resolved)
        item.finish()
    annotations = _string_map(section, "service_account_annotations")
    providers: tuple[CredentialProviderSpec, ...] = ()
    resolved_bin = section.problems.resolve(bin_dir) if bin_dir is not None else None
    if bin_dir is not None and resolved_bin is not None and not resolved_bin.is_dir():
        section.error(f"{bin_dir} does not exist or is not a directory", "bin_dir")
    elif config_path is not None and resolved_bin is not None:
        providers = _read_provider_config(section, config_path, resolved_bin, tokens, annotations)
    section.finish()
    return CredentialProvidersConfig(providers=providers, exec_timeout=exec_timeout, max_output_bytes=max_output)


def _string_map(node: Node, name: str) -> dict[str, str]:
    value = node.raw(name, None)
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
        node.error("expected a mapping of strings to strings", name)
        return {}
    return dict(value)


def _config_files(problems: Problems, config_path: str, field_path: str) -> list[Path]:
    """The file, or (as the kubelet does) every ``*.json``/``*.yaml``/``*.yml`` of a directory in name order."""
    resolved = problems.resolve(config_path)
    if resolved.is_dir():
        files = sorted(p for p in resolved.iterdir() if p.suffix in (".json", ".yaml", ".yml") and p.is_file())
        if not files:
            problems.add(field_path, f"{config_path}: no .json, .yaml or .yml files in the directory")
        return files
    return [resolved]


def _read_provider_config(
    section: Node, config_path: str, bin_dir: Path, tokens: dict[str, str], annotations: dict[str, str]
) -> tuple[CredentialProviderSpec, ...]:
    field_path = section.child_path("config")
    problems = section.problems
    specs: list[CredentialProviderSpec] = []
    names: set[str] = set()
    for file in _config_files(problems, config_path, field_path):
        data = problems.read_file(str(file), field_path, max_bytes=MAX_PROVIDER_CONFIG_BYTES)
        if data is None:
            continue
        try:
            doc = yaml.safe_load(data)
        except yaml.YAMLError as exc:
            problems.add(field_path, f"{file}: not valid YAML or JSON: {getattr(exc, 'problem', None) or exc}")
            continue
        local = Problems(problems.base_dir)
        root = Node(doc, "", local)
        api_version = root.string("api_version")
        if api_version is not None and api_version not in CONFIG_API_VERSIONS:
            root.error(f"unsupported apiVersion {api_version!r}; expected one of {', '.join(CONFIG_API_VERSIONS)}")
        if root.string("kind") not in (None, "CredentialProviderConfig"):
            root.error("kind must be CredentialProviderConfig", "kind")
        items = root.nodes("providers")
        if not items and not local.items:
            root.error("at least one provider is required", "providers")
        for item in items:
            spec = _provider(item, bin_dir, tokens, annotations)
            if spec is not None:
                if spec.name in names:
                    item.error(f"duplicate provider name {spec.name!r}", "name")
                names.add(spec.name)
                specs.append(spec)
            item.finish()
        root.finish()
        for problem in local.items:
            problems.add(field_path, f"{file}: {problem}")
    return tuple(specs)


def _provider(
    item: Node, bin_dir: Path, tokens: dict[str, str], annotations: dict[str, str]
) -> CredentialProviderSpec | None:
    name = item.string("name")
    if name is not None and (not name or "/" in name or " " in name or name in (".", "..")):
        item.error("must be a file name (no '/', no spaces, not '.' or '..')", "name")
        name = None
    executable = None
    if name is not None:
        candidate = bin_dir / name
        if not candidate.is_file() or not os.access(candidate, os.X_OK):
            item.error(f"no executable {name} in {bin_dir}", "name")
        else:
            executable = str(candidate)
    match_images: list[ImagePattern] = []
    for i, text in enumerate(item.str_list("match_images")):
        try:
            match_images.append(parse_pattern(text))
        except ValueError as exc:
            item.problems.add(f"{item.child_path('matchImages')}[{i}]", f"invalid pattern {text!r}: {exc}")
    if not item.raw("match_images"):
        item.error("at least one pattern is required", "match_images")
    default_cache = _go_duration(item, "default_cache_duration")
    api_version = item.string("api_version")
    if api_version is not None and api_version not in PLUGIN_API_VERSIONS:
        item.error(f"unsupported apiVersion {api_version!r}; expected one of {', '.join(PLUGIN_API_VERSIONS)}")
    args = item.str_list("args")
    env: list[tuple[str, str]] = []
    for e in item.nodes("env"):
        env_name, env_value = e.string("name"), e.string("value", "")
        if env_name:
            env.append((env_name, env_value))
        e.finish()
    token_attributes: TokenAttributes | None = None
    token_file: str | None = None
    sa_annotations: tuple[tuple[str, str], ...] = ()
    if item.has("token_attributes"):
        token_attributes = _token_attributes(item.node("token_attributes"), api_version)
        if token_attributes is not None:
            token_file, sa_annotations = _service_account(item, token_attributes, tokens, annotations)
    if name is None or executable is None or default_cache is None or api_version is None or not match_images:
        return None
    return CredentialProviderSpec(
        name=name,
        executable=executable,
        match_images=tuple(match_images),
        default_cache_duration=default_cache,
        api_version=api_version,
        args=args,
        env=tuple(env),
        token_attributes=token_attributes,
        token_file=token_file,
        service_account_annotations=sa_annotations,
    )


def _go_duration(node: Node, name: str) -> float | None:
    value = node.string(name)
    if value is None:
        return None
    try:
        return parse_go_duration(value)
    except ValueError as exc:
        node.error(str(exc), name)
        return None


def _token_attributes(node: Node, api_version: str | None) -> TokenAttributes | None:
    audience = node.string("service_account_token_audience")
    require = node.raw("require_service_account", None)
    if not isinstance(require, bool):
        node.error("required: true or false", "require_service_account")
    cache_type = node.string("cache_type")
    if cache_type is not None and cache_type not in CACHE_TYPES:
        node.error(f"must be one of {', '.join(CACHE_TYPES)}; got {cache_type!r}", "cache_type")
    required = node.str_list("required_service_account_annotation_keys")
    optional = node.str_list("optional_service_account_annotation_keys")
    for key_name, keys in (
        ("required_service_account_annotation_keys", required),
        ("optional_service_account_annotation_keys", optional),
    ):
        for key in keys:
            if not _ANNOTATION_KEY_RE.fullmatch(key.lower()) or len(key) > 317:
                node.error(f"{key!r} is not a valid annotation key", key_name)
        if len(set(keys)) != len(keys):
            node.error("duplicate keys", key_name)
    if set(required) & set(optional):
        node.error("annotation keys cannot be both required and optional")
    if require is False and required:
        node.error("requireServiceAccount cannot be false when requiredServiceAccountAnnotationKeys is set")
    if api_version is not None and api_version != TOKEN_API_VERSION:
        node.error(f"tokenAttributes needs apiVersion {TOKEN_API_VERSION}")
    node.finish()
    if audience is None or not isinstance(require, bool) or cache_type not in CACHE_TYPES:
        return None
    return TokenAttributes(
        audience=audience,
        require_service_account=require,
        cache_type=str(cache_type),
        required_annotation_keys=required,
        optional_annotation_keys=optional,
    )


def _service_account(
    item: Node, attributes: TokenAttributes, tokens: dict[str, str], annotations: dict[str, str]
) -> tuple[str | None, tuple[tuple[str, str], ...]]:
    """Referee's own service account stands for the pod's: its projected token for the audience
    (``serviceAccountTokens``) and its annotations (``serviceAccountAnnotations``)."""
    token_file = tokens.get(attributes.audience)
    if token_file is None and attributes.require_service_account:
        item.error(
            f"requires a service account token for audience {attributes.audience!r}: add it to "
            "registries.credentialProviders.serviceAccountTokens",
            "token_attributes",
        )
    missing = [k for k in attributes.required_annotation_keys if k not in annotations]
    if missing:
        item.error(
            f"requires the service account annotations {', '.join(missing)}: add them to "
            "registries.credentialProviders.serviceAccountAnnotations",
            "token_attributes",
        )
    wanted = attributes.required_annotation_keys + attributes.optional_annotation_keys
    return token_file, tuple((k, annotations[k]) for k in wanted if k in annotations)
