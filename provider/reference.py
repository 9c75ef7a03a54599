"""Image references with Docker normalisation, and digests.

Grammar from distribution/distribution's reference package; normalisation as docker, containerd and the
kubelet do it (``nginx`` → ``docker.io/library/nginx:latest``).
"""

from __future__ import annotations

import hashlib
import hmac
import re
from dataclasses import dataclass

from provider.errors import DigestMismatchError, ReferenceInvalidError

DOCKER_HUB = "docker.io"
DOCKER_HUB_API = "registry-1.docker.io"

_COMPONENT = r"[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*"
_REPOSITORY_RE = re.compile(rf"{_COMPONENT}(?:/{_COMPONENT})*")
_TAG_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,127}")
_HOST_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_HOST_RE = re.compile(rf"(?:{_HOST_COMPONENT}(?:\.{_HOST_COMPONENT})*|\[[0-9a-fA-F:]+\])(?::[0-9]{{1,5}})?")
_DIGEST_ALGORITHMS = {"sha256": 64, "sha512": 128}
_DIGEST_RE = re.compile(r"([a-z0-9]+(?:[.+_-][a-z0-9]+)*):([a-zA-Z0-9=_-]+)")
MAX_REFERENCE_LENGTH = 512
MAX_NAME_LENGTH = 255


def parse_digest(value: str) -> str:
    """Validate ``algorithm:hex`` and return it; only sha256 and sha512 are supported."""
    m = _DIGEST_RE.fullmatch(value)
    if not m:
        raise ReferenceInvalidError(f"invalid digest {value!r}")
    algorithm, encoded = m.groups()
    length = _DIGEST_ALGORITHMS.get(algorithm)
    if length is None:
        raise ReferenceInvalidError(f"unsupported digest algorithm {algorithm!r} (sha256, sha512)")
    if len(encoded) != length or not re.fullmatch(r"[0-9a-f]+", encoded):
        raise ReferenceInvalidError(f"invalid {algorithm} digest {value!r}: want {length} lower-case hex digits")
    return value


def compute_digest(data: bytes, algorithm: str = "sha256") -> str:
    return f"{algorithm}:{hashlib.new(algorithm, data).hexdigest()}"


def verify_digest(data: bytes, expected: str, what: str) -> None:
    """Raise DigestMismatchError unless ``data`` hashes to ``expected``."""
    algorithm = expected.partition(":")[0]
    if algorithm not in _DIGEST_ALGORITHMS:
        raise DigestMismatchError(f"{what}: unsupported digest algorithm in {expected!r}")
    actual = compute_digest(data, algorithm)
    if not hmac.compare_digest(actual, expected):
        raise DigestMismatchError(f"{what}: content hashes to {actual}, expected {expected}")


def referrers_tag(digest: str) -> str:
    """The referrers tag-schema tag for ``digest`` (``sha256:abc`` → ``sha256-abc``)."""
    algorithm, _, encoded = digest.partition(":")
    tag = f"{algorithm[:32]}-{encoded[:64]}"
    return re.sub(r"[^A-Za-z0-9_.-]", "-", tag)


@dataclass(frozen=True, slots=True)
class ImageRef:
    """A normalised image reference. ``digest`` wins over ``tag`` when both are present."""

    registry: str
    repository: str
    tag: str | None = None
    digest: str | None = None

    @property
    def name(self) -> str:
        """``registry/repository``, the key for scopes and trust policies."""
        return f"{self.registry}/{self.repository}"

    @property
    def api_host(self) -> str:
        return DOCKER_HUB_API if self.registry == DOCKER_HUB else self.registry

    @property
    def reference(self) -> str:
        """What to ask the registry for: the digest if known, else the tag."""
        if self.digest:
            return self.digest
        return self.tag or "latest"

    def with_digest(self, digest: str) -> ImageRef:
        return ImageRef(self.registry, self.repository, self.tag, digest)

    def pinned(self, keep_tag: bool = False) -> str:
        """``registry/repo@digest`` (or ``registry/repo:tag@digest`` with ``keep_tag``)."""
        if not self.digest:
            raise ReferenceInvalidError(f"{self} is not pinned to a digest")
        tag = f":{self.tag}" if keep_tag and self.tag else ""
        return f"{self.name}{tag}@{self.digest}"

    def __str__(self) -> str:
        out = self.name
        if self.tag:
            out += f":{self.tag}"
        if self.digest:
            out += f"@{self.digest}"
        return out


def _is_registry_host(component: str) -> bool:
    return "." in component or ":" in component or component == "localhost" or component != component.lower()


def parse_reference(value: str) -> ImageRef:
    """Parse and normalise an image reference; raise ReferenceInvalidError with the reason."""
    if not isinstance(value, str) or not value:
        raise ReferenceInvalidError("empty image reference")
    if len(value) > MAX_REFERENCE_LENGTH:
        raise ReferenceInvalidError(f"image reference longer than {MAX_REFERENCE_LENGTH} characters")
    if value != value.strip() or any(c.isspace() for c in value):
        raise ReferenceInvalidError(f"image reference {value!r} contains whitespace")
    rest, at, digest = value.partition("@")
    if at:
        parse_digest(digest)
    tag: str | None = None
    slash = rest.rfind("/")
    colon = rest.rfind(":")
    if colon > slash:
        rest, tag = rest[:colon], rest[colon + 1 :]
        if not _TAG_RE.fullmatch(tag):
            raise ReferenceInvalidError(f"invalid tag {tag!r} in {value!r}")
    first, sep, remainder = rest.partition("/")
    if sep and _is_registry_host(first):
        registry, path = first, remainder
        if not _HOST_RE.fullmatch(registry):
            raise ReferenceInvalidError(f"invalid registry host {registry!r} in {value!r}")
        port = registry.rsplit(":", 1)[1] if ":" in registry.rsplit("]", 1)[-1] else None
        if port is not None and not 1 <= int(port) <= 65535:
            raise ReferenceInvalidError(f"invalid registry port {port} in {value!r} (1-65535)")
    else:
        registry, path = DOCKER_HUB, rest
    if registry in ("index.docker.io", "registry-1.docker.io"):
        registry = DOCKER_HUB
    if registry == DOCKER_HUB and "/" not in path:
        path = f"library/{path}"
    if not path or not _REPOSITORY_RE.fullmatch(path):
        raise ReferenceInvalidError(
            f"invalid repository {path!r} in {value!r}: lower-case letters, digits and separators only"
        )
    if len(registry) + 1 + len(path) > MAX_NAME_LENGTH:
        raise ReferenceInvalidError(f"repository name in {value!r} is longer than {MAX_NAME_LENGTH} characters")
    if not tag and not at:
        tag = "latest"
    return ImageRef(registry=registry, repository=path, tag=tag, digest=digest if at else None)
