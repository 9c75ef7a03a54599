"""Version ordering per package ecosystem, and the range syntax of package deny-lists.

Versions of a known purl type (:data:`SCHEMES`: ``alpm``, ``apk``, ``cargo``, ``composer``, ``conan``, ``deb``,
``gem``, ``golang``, ``hex``, ``maven``, ``npm``, ``nuget``, ``pypi``, ``rpm``) are compared with that ecosystem's
rules by `univers <https://github.com/aboutcode-org/univers>`_ (Go's ``v`` prefix, Maven's qualifiers such as
``2.0.0-M1`` < ``2.0.0`` and ``1.0.Final`` = ``1.0``, PEP 440, Debian and RPM epochs and tildes, …). Versions of
any other type, of a package without a purl, or that are not valid for their type's scheme use the generic
ordering below.

Generic ordering (``compare_versions`` without a known scheme), in the spirit of rpm/dpkg ``vercmp`` with
semver/PEP 440 pre-releases:

1. An epoch ``N:`` prefix is compared first (absent = 0).
2. A ``~`` starts a pre-release (Debian): ``1.0~rc1`` < ``1.0``.
3. The rest is split into runs of digits and runs of letters; every other character separates. Runs are
   compared pairwise: numbers numerically (leading zeros ignored), letters case-insensitively (the known
   pre-release words ``dev`` < ``alpha``/``a`` < ``beta``/``b`` < ``pre``/``preview`` < ``rc``/``c`` by rank),
   and a number is newer than letters at the same position.
4. When one version runs out, the longer one is *older* if its next run is a pre-release word
   (``1.0.0-rc.1`` < ``1.0.0``, ``1.0a1`` < ``1.0``, ``3.1_rc2`` < ``3.1``; the one-letter words ``a``/``b``/``c``
   only when a number follows) and *newer* otherwise (``1.2.3-r1`` > ``1.2.3``, ``1.0.post1`` > ``1.0``,
   ``1.0.2k`` > ``1.0.2``, ``1.0.1b`` > ``1.0.1``).

Build metadata is not special (``1.0+b1`` > ``1.0``). Ranges (``parse_range``): constraints joined by ``,``
(all must hold) and alternatives joined by ``||`` (any may hold); a constraint is an operator (``=``, ``==``,
``!=``, ``<``, ``<=``, ``>``, ``>=``) followed by a version, or a bare version meaning ``==``; ``*`` matches
every version. Example: ``>=1.0,<1.2.5 || ==2.0.0``.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from typing import Any

from univers.version_range import RANGE_CLASS_BY_SCHEMES
from univers.versions import InvalidVersion

from provider.metadata.common import MetadataError

SCHEMES = frozenset(
    {"alpm", "apk", "cargo", "composer", "conan", "deb", "gem", "golang", "hex", "maven", "npm", "nuget", "pypi", "rpm"}
)

_RUN = re.compile(r"\d+|[a-zA-Z]+")
_EPOCH = re.compile(r"^(\d+):(.*)$")
_PRE = {"dev": 0, "snapshot": 0, "alpha": 1, "a": 1, "beta": 2, "b": 2, "pre": 3, "preview": 3, "rc": 4, "c": 4}
_CONSTRAINT = re.compile(r"^\s*(==|=|!=|<=|>=|<|>)?\s*(\S+)\s*$")


def _runs(version: str) -> list[str]:
    return _RUN.findall(version)


def _compare_runs(a: list[str], b: list[str]) -> int:
    for x, y in zip(a, b, strict=False):
        if x.isdigit() and y.isdigit():
            diff = int(x) - int(y)
            if diff:
                return 1 if diff > 0 else -1
        elif x.isdigit() != y.isdigit():
            return 1 if x.isdigit() else -1
        else:
            xl, yl = x.lower(), y.lower()
            if xl in _PRE and yl in _PRE and _PRE[xl] != _PRE[yl]:
                return 1 if _PRE[xl] > _PRE[yl] else -1
            if xl != yl:
                return 1 if xl > yl else -1
    if len(a) == len(b):
        return 0
    longer, sign = (a, 1) if len(a) > len(b) else (b, -1)
    return -sign if _is_pre_release(longer, min(len(a), len(b))) else sign


def _is_pre_release(runs: list[str], index: int) -> bool:
    """A pre-release word at ``index``; the one-letter forms (``a1``, ``b2``, ``c3``) only before a number, so
    OpenSSL-style letter suffixes (``1.0.1b``) stay newer than ``1.0.1``."""
    word = runs[index].lower()
    if word not in _PRE:
        return False
    return len(word) > 1 or (index + 1 < len(runs) and runs[index + 1].isdigit())


@functools.lru_cache(maxsize=8192)
def _scheme_version(scheme: str, text: str) -> Any:
    """``text`` as a univers version of ``scheme``, or None when it is not valid there."""
    version_class: Any = RANGE_CLASS_BY_SCHEMES[scheme].version_class
    try:
        return version_class(text.strip())
    except (InvalidVersion, ValueError, TypeError, AttributeError, IndexError):
        return None


def valid_version(text: str, scheme: str | None) -> bool:
    """Whether ``text`` is a version of ``scheme`` (any non-empty text for an unknown or absent scheme)."""
    if scheme not in SCHEMES:
        return bool(text.strip())
    return _scheme_version(scheme, text) is not None


def compare_versions(a: str, b: str, scheme: str | None = None) -> int:
    """-1, 0 or 1 as ``a`` is older than, equal to or newer than ``b``: by the ecosystem's rules when ``scheme`` (a
    purl type) is in :data:`SCHEMES` and both are valid there, by the generic ordering otherwise."""
    if scheme in SCHEMES:
        va, vb = _scheme_version(scheme, a), _scheme_version(scheme, b)
        if va is not None and vb is not None:
            return 1 if va > vb else -1 if va < vb else 0
    return _generic_compare(a, b)


def same_version(a: str, b: str, scheme: str | None) -> bool:
    """The same version: equal text, or (for a known scheme) equal by the ecosystem's rules, e.g. Go's ``v0.15.0``
    and ``0.15.0`` or Maven's ``1.0.Final`` and ``1.0``."""
    if a == b:
        return True
    if scheme not in SCHEMES:
        return False
    va, vb = _scheme_version(scheme, a), _scheme_version(scheme, b)
    return va is not None and vb is not None and bool(va == vb)


def _generic_compare(a: str, b: str) -> int:
    ma, mb = _EPOCH.match(a.strip()), _EPOCH.match(b.strip())
    ea, ra = (int(ma.group(1)), ma.group(2)) if ma else (0, a.strip())
    eb, rb = (int(mb.group(1)), mb.group(2)) if mb else (0, b.strip())
    if ea != eb:
        return 1 if ea > eb else -1
    main_a, tilde_a, pre_a = ra.partition("~")
    main_b, tilde_b, pre_b = rb.partition("~")
    result = _compare_runs(_runs(main_a), _runs(main_b))
    if result:
        return result
    if tilde_a and tilde_b:
        return _generic_compare(pre_a, pre_b)
    if tilde_a or tilde_b:
        return -1 if tilde_a else 1
    return 0


@dataclass(frozen=True, slots=True)
class Constraint:
    op: str
    version: str

    def holds(self, version: str, scheme: str | None = None) -> bool:
        c = compare_versions(version, self.version, scheme)
        return {
            "==": c == 0,
            "!=": c != 0,
            "<": c < 0,
            "<=": c <= 0,
            ">": c > 0,
            ">=": c >= 0,
        }[self.op]


@dataclass(frozen=True, slots=True)
class VersionRange:
    """Alternatives of conjunctions; empty alternatives = every version."""

    alternatives: tuple[tuple[Constraint, ...], ...]
    text: str

    def contains(self, version: str | None, scheme: str | None = None) -> bool:
        """Whether ``version`` (of the ecosystem ``scheme``, a purl type) is in the range. An unknown version is in
        every range except ``!=`` ones: a deny-list must not be escaped by leaving the version out."""
        if not self.alternatives:
            return True
        if version is None or not version.strip():
            return any(all(c.op != "!=" for c in alt) for alt in self.alternatives)
        return any(all(c.holds(version, scheme) for c in alt) for alt in self.alternatives)


def parse_range(text: str, scheme: str | None = None) -> VersionRange:
    """Parse the range syntax described in the module docstring; :class:`MetadataError` when invalid, or when a
    bound is not a version of ``scheme`` (a known purl type)."""
    stripped = text.strip()
    if stripped in ("", "*"):
        return VersionRange((), stripped or "*")
    alternatives: list[tuple[Constraint, ...]] = []
    for alternative in stripped.split("||"):
        constraints: list[Constraint] = []
        for part in alternative.split(","):
            m = _CONSTRAINT.match(part)
            if not m or not _RUN.search(m.group(2)):
                raise MetadataError(f"invalid version constraint {part.strip()!r} in {text!r}")
            op = m.group(1) or "=="
            if not valid_version(m.group(2), scheme):
                raise MetadataError(f"{m.group(2)!r} in {text!r} is not a valid {scheme} version")
            constraints.append(Constraint("==" if op == "=" else op, m.group(2)))
        alternatives.append(tuple(constraints))
    return VersionRange(tuple(alternatives), stripped)
