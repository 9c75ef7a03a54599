"""Image patterns matched the way the kubelet matches them.

Used for a credential provider's ``matchImages``, the keys of its response ``auth`` map, and the keys of
pull secrets and Docker ``config.json`` files. A pattern is ``host[:port][/path]``:

- the host is compared label by label (same number of labels); each label may be a glob (``*.azurecr.io``,
  ``k8s.*.io``, ``app*.example.com``) matching one label only, so ``*.io`` does not match ``a.b.io``;
- a port, when present, must be equal; a pattern without a port matches only images without one;
- the path must be a prefix of the image's repository, compared segment by segment (``quay.io/team``
  matches ``quay.io/team/app`` but not ``quay.io/teammates/app``; the kubelet compares characters).

Globs are allowed in the host only. Hand-written: no library implements the kubelet's rules.
"""

from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass

_GLOB_CHARS = re.compile(r"[*?\[\]]")
_PORT_RE = re.compile(r"[0-9]{1,5}")
_LABEL_RE = re.compile(r"[A-Za-z0-9*?\[\]!_-]+")
_DOCKER_HUB_ALIASES = frozenset({"index.docker.io", "registry-1.docker.io"})


@dataclass(frozen=True, slots=True)
class ImagePattern:
    """A parsed pattern; ``text`` is what was written."""

    text: str
    labels: tuple[str, ...]
    port: str | None
    path: tuple[str, ...]

    @property
    def specificity(self) -> tuple[int, int]:
        """Larger is more specific: a longer path first, then fewer wildcard host labels."""
        return len(self.path), -sum(1 for label in self.labels if _GLOB_CHARS.search(label))

    def matches(self, registry: str, repository: str) -> bool:
        """Whether an image in ``registry`` (``host[:port]``) and ``repository`` matches."""
        host, port = split_host(registry)
        if port != self.port:
            return False
        labels = _labels(host)
        if len(labels) != len(self.labels):
            return False
        if self.path and tuple(repository.split("/")[: len(self.path)]) != self.path:
            return False
        return all(_label_matches(glob, label) for glob, label in zip(self.labels, labels, strict=True))


def split_host(registry: str) -> tuple[str, str | None]:
    """``host:port`` → (``host``, ``port``); IPv6 literals keep their brackets."""
    if registry.startswith("["):
        end = registry.find("]")
        if end != -1:
            rest = registry[end + 1 :]
            return registry[: end + 1], rest[1:] if rest.startswith(":") else None
    host, sep, port = registry.rpartition(":")
    if sep and host:
        return host, port
    return registry, None


def _labels(host: str) -> tuple[str, ...]:
    host = host.lower()
    if host.startswith("["):
        return (host,)
    return tuple(host.split("."))


def _label_matches(glob: str, label: str) -> bool:
    if glob.startswith("[") and glob.endswith("]") and ":" in glob:  # an IPv6 literal, not a character class
        return glob == label
    return fnmatch.fnmatchcase(label, glob)


def parse_pattern(text: str) -> ImagePattern:
    """Parse ``[scheme://]host[:port][/path]``; raise ``ValueError`` with a reason."""
    rest = text.strip()
    if "://" in rest:
        scheme, _, rest = rest.partition("://")
        if scheme.lower() not in ("http", "https"):
            raise ValueError(f"unsupported scheme {scheme!r}")
    host_port, _, path_text = rest.partition("/")
    if not host_port:
        raise ValueError("no host")
    host, port = split_host(host_port)
    if port is not None and not _PORT_RE.fullmatch(port):
        raise ValueError(f"invalid port {port!r} (globs are allowed in the host only)")
    labels = _labels(host)
    if not host.startswith("["):
        for label in labels:
            if not label or not _LABEL_RE.fullmatch(label):
                raise ValueError(f"invalid host {host!r}")
    if host.lower() in _DOCKER_HUB_ALIASES:
        labels = ("docker", "io")
    segments = tuple(s for s in path_text.split("/") if s)
    for segment in segments:
        if _GLOB_CHARS.search(segment):
            raise ValueError(f"glob in path segment {segment!r} (globs are allowed in the host only)")
    return ImagePattern(text=text, labels=labels, port=port, path=segments)


def parse_docker_config_key(key: str) -> ImagePattern:
    """A Docker ``config.json`` / pull-secret ``auths`` key: like :func:`parse_pattern`, but a leading
    ``/v1/`` or ``/v2/`` in the path is the registry API, not a repository (``https://index.docker.io/v1/``)."""
    rest = key.strip()
    scheme = ""
    if "://" in rest:
        scheme, _, rest = rest.partition("://")
        scheme += "://"
    host_port, sep, path_text = rest.partition("/")
    if sep and (path_text == "v1" or path_text == "v2" or path_text.startswith(("v1/", "v2/"))):
        path_text = path_text[2:]
    pattern = parse_pattern(f"{scheme}{host_port}/{path_text}" if path_text.strip("/") else f"{scheme}{host_port}")
    return ImagePattern(text=key, labels=pattern.labels, port=pattern.port, path=pattern.path)
