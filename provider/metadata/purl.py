"""Package URLs (``pkg:type/namespace/name@version?qualifiers#subpath``), parsed per the purl specification.

A small reader instead of a dependency: Referee only needs the components and the type-specific
normalisations that matter for matching (type lower-cased; ``github``/``bitbucket`` namespace and name
lower-cased; ``pypi`` names lower-cased with ``_`` read as ``-``). Matching compares names case-insensitively:
for deny-lists and VEX subcomponents a false match denies, a missed match would allow.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import unquote

_TYPE_RE = re.compile(r"^[a-zA-Z.+-][a-zA-Z0-9.+-]*$")
_DIGEST_RE = re.compile(r"^(sha256|sha384|sha512):([0-9a-fA-F]{32,128})$")


@dataclass(frozen=True, slots=True)
class PackageURL:
    type: str
    namespace: str | None
    name: str
    version: str | None = None
    qualifiers: Mapping[str, str] = field(default_factory=dict)
    subpath: str | None = None

    def key(self) -> tuple[str, str, str]:
        """Type, namespace and name, case-folded: the identity of the package across versions."""
        return self.type, (self.namespace or "").casefold(), self.name.casefold()

    def __str__(self) -> str:
        ns = f"{self.namespace}/" if self.namespace else ""
        version = f"@{self.version}" if self.version else ""
        return f"pkg:{self.type}/{ns}{self.name}{version}"


def parse_purl(value: object) -> PackageURL | None:
    """The package URL in ``value``, or None when it is not one."""
    if not isinstance(value, str):
        return None
    raw = value.strip()
    if raw[:4].lower() != "pkg:":
        return None
    raw = raw[4:].lstrip("/")
    raw, _, subpath = raw.partition("#")
    raw, _, query = raw.partition("?")
    type_name, slash, rest = raw.partition("/")
    if not slash or not _TYPE_RE.match(type_name):
        return None
    type_name = type_name.lower()
    version: str | None = None
    if "@" in rest:
        rest, _, encoded_version = rest.rpartition("@")
        version = unquote(encoded_version) or None
    segments = [unquote(s) for s in rest.strip("/").split("/") if s]
    if not segments:
        return None
    name = segments[-1]
    namespace = "/".join(segments[:-1]) or None
    qualifiers: dict[str, str] = {}
    for pair in query.split("&") if query else ():
        key, _, val = pair.partition("=")
        if key and val:
            qualifiers[key.lower()] = unquote(val)
    if type_name in ("github", "bitbucket"):
        name = name.lower()
        namespace = namespace.lower() if namespace else None
    elif type_name == "pypi":
        name = name.lower().replace("_", "-")
    sub = "/".join(s for s in subpath.split("/") if s not in ("", ".", "..")) or None
    return PackageURL(type_name, namespace, name, version, qualifiers, sub)


def purl_matches(pattern: PackageURL, candidate: PackageURL, *, compare_version: bool = True) -> bool:
    """Does ``candidate`` fall under ``pattern``? Type, namespace and name must be equal (names compared
    case-insensitively); the version only when the pattern has one (and ``compare_version``); every qualifier
    and the subpath only when the pattern gives them."""
    if pattern.key() != candidate.key():
        return False
    if compare_version and pattern.version is not None and not versions_equal(pattern.version, candidate.version):
        return False
    for key, val in pattern.qualifiers.items():
        if candidate.qualifiers.get(key) != val:
            return False
    return pattern.subpath is None or pattern.subpath == candidate.subpath


def versions_equal(a: str | None, b: str | None) -> bool:
    """Exact version equality; digests (``sha256:...``) compare case-insensitively."""
    if a is None or b is None:
        return a is b
    if _DIGEST_RE.match(a) and _DIGEST_RE.match(b):
        return a.lower() == b.lower()
    return a == b


def digest_of(purl: PackageURL) -> str | None:
    """The content digest a purl pins (``pkg:oci/app@sha256%3A<hex>`` → ``sha256:<hex>``), lower-cased."""
    if purl.version and _DIGEST_RE.match(purl.version):
        return purl.version.lower()
    return None
