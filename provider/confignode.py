"""Path-tracking reader for YAML configuration.

Every value is read through a :class:`Node`, which knows its path (``verifiers[1].keys[0]``), converts
snake_case attribute names to the camelCase keys used in YAML (the only place this happens), collects every
problem instead of stopping at the first, and rejects keys nobody read.
"""

from __future__ import annotations

import hashlib
import math
import re
import ssl
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, TypeVar

from provider.files import read_regular

T = TypeVar("T")

_MISSING: Any = object()
_DURATION_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_DURATION_PART_RE = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
_SIZE_RE = re.compile(r"^\s*(\d+)\s*(B|KiB|MiB|GiB|KB|MB|GB|k|M|G)?\s*$")
_SIZE_UNITS = {
    None: 1, "B": 1, "KiB": 1024, "MiB": 1024**2, "GiB": 1024**3,
    "KB": 1000, "MB": 1000**2, "GB": 1000**3, "k": 1000, "M": 1000**2, "G": 1000**3,
}  # fmt: skip
_DURATION_UNITS = {None: 1.0, "s": 1.0, "ms": 0.001, "m": 60.0, "h": 3600.0, "d": 86400.0}


def parse_duration(text: str) -> float | None:
    """Seconds from ``250ms``, ``3s``, ``5m``, ``1h``, ``7d``, a bare number of seconds, or a compound in
    decreasing units as Referee prints ages (``1d12h``, ``7d0h``, ``1h30m``); ``None`` when it is none of these."""
    m = _DURATION_RE.match(text)
    if m:
        return float(m.group(1)) * _DURATION_UNITS[m.group(2)]
    compact = text.strip()
    parts = _DURATION_PART_RE.findall(compact)
    if not parts or "".join(n + u for n, u in parts) != compact:
        return None
    order = ["d", "h", "m", "s", "ms"]
    ranks = [order.index(u) for _, u in parts]
    if ranks != sorted(set(ranks)):
        return None
    return sum(float(n) * _DURATION_UNITS[u] for n, u in parts)


def camel(name: str) -> str:
    """``max_blob_bytes`` → ``maxBlobBytes``."""
    head, *rest = name.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


class Secret:
    """A string that never shows itself in logs, reprs or error messages."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


class Problems:
    """Shared sink for problems, plus the fingerprint of every file read (for the config generation)."""

    def __init__(self, base_dir: Path) -> None:
        self.items: list[str] = []
        self.base_dir = base_dir
        self.fingerprint = hashlib.sha256()
        self.sources: list[str] = []
        self.files: list[tuple[str, str, bytes]] = []
        """``(node path, resolved path, SHA-256)`` of every file read, for fingerprints of parts of the file."""

    def add(self, path: str, message: str) -> None:
        self.items.append(f"{path}: {message}" if path else message)

    def read_file(self, path: str, node_path: str, max_bytes: int = 16 * 1024 * 1024) -> bytes | None:
        resolved = self.resolve(path)
        self.sources.append(str(resolved))
        try:
            data = read_regular(resolved, max_bytes)
        except (OSError, ValueError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            self.add(node_path, f"cannot read {path}: {reason}")
            return None
        if len(data) > max_bytes:
            self.add(node_path, f"{path} is larger than {max_bytes} bytes")
            return None
        digest = hashlib.sha256(data).digest()
        self.fingerprint.update(str(resolved).encode() + b"\0" + digest)
        self.files.append((node_path, str(resolved), digest))
        return data

    def resolve(self, path: str) -> Path:
        p = Path(path)
        return p if p.is_absolute() else self.base_dir / p


class Node:
    """A YAML mapping at a known path. Reads mark keys as used; :meth:`finish` rejects the rest."""

    def __init__(self, data: object, path: str, problems: Problems) -> None:
        self.path = path
        self.problems = problems
        self._used: set[str] = set()
        if data is None:
            data = {}
        if not isinstance(data, Mapping):
            problems.add(path, f"expected a mapping, got {_kind(data)}")
            data = {}
        self._data: Mapping[str, Any] = data

    def child_path(self, key: str | int) -> str:
        if isinstance(key, int):
            return f"{self.path}[{key}]"
        return f"{self.path}.{key}" if self.path else key

    def error(self, message: str, name: str | None = None) -> None:
        self.problems.add(self.child_path(camel(name)) if name else self.path, message)

    def has(self, name: str) -> bool:
        return camel(name) in self._data

    def misspelled(self, key: str) -> tuple[bool, Any]:
        """A key that is *not* a parameter here (e.g. a CLI flag written as YAML), read only to explain the
        mistake: ``(present, value)``. It is marked read so that :meth:`finish` does not also call it unknown, and
        it is no parameter of the chart schema (``scripts/gen_chart_schema.py`` records only parameter reads)."""
        if key not in self._data:
            return False, None
        self._used.add(key)
        return True, self._data[key]

    def raw(self, name: str, default: Any = None) -> Any:
        key = camel(name)
        self._used.add(key)
        return self._data.get(key, default)

    def _get(self, name: str, default: Any, kinds: tuple[type, ...], kind_name: str) -> Any:
        key = camel(name)
        self._used.add(key)
        if key not in self._data or self._data[key] is None:
            if default is _MISSING:
                self.problems.add(self.child_path(key), "required")
                return None
            return default
        value = self._data[key]
        if not isinstance(value, kinds) or (bool not in kinds and isinstance(value, bool)):
            self.problems.add(self.child_path(key), f"expected {kind_name}, got {_kind(value)}")
            return None if default is _MISSING else default
        return value

    def string(self, name: str, default: Any = _MISSING, choices: tuple[str, ...] | None = None) -> Any:
        value = self._get(name, default, (str,), "a string")
        if isinstance(value, str) and choices is not None and value not in choices:
            self.error(f"must be one of {', '.join(choices)}; got {value!r}", name)
            return default if default is not _MISSING else choices[0]
        return value

    def flag(self, name: str, default: bool) -> bool:
        value = self._get(name, default, (bool,), "true or false")
        return bool(value)

    def integer(
        self, name: str, default: Any = _MISSING, minimum: int | None = None, maximum: int | None = None
    ) -> Any:
        value = self._get(name, default, (int,), "an integer")
        if isinstance(value, int):
            if minimum is not None and value < minimum:
                self.error(f"must be at least {minimum}", name)
            if maximum is not None and value > maximum:
                self.error(f"must be at most {maximum}", name)
        return value

    def duration(self, name: str, default: float, minimum: float = 0.0) -> float:
        """Seconds from a duration string (:func:`parse_duration`) or a bare number of seconds."""
        value = self._get(name, default, (int, float, str), "a duration such as 3s or 250ms")
        if isinstance(value, str):
            parsed = parse_duration(value)
            if parsed is None:
                self.error(f"invalid duration {value!r} (use e.g. 250ms, 3s, 5m, 1h, 7d, 1d12h)", name)
                return default
            value = parsed
        seconds = float(value)
        if not math.isfinite(seconds):
            self.error(f"must be a finite duration, got {value!r}", name)
            return default
        if seconds < minimum:
            self.error(f"must be at least {minimum}s", name)
        return seconds

    def size(self, name: str, default: int, minimum: int = 0) -> int:
        """Bytes from ``4MiB``, ``512KiB``, ``1GB`` or a bare integer."""
        value = self._get(name, default, (int, str), "a size such as 4MiB")
        if isinstance(value, str):
            m = _SIZE_RE.match(value)
            if not m:
                self.error(f"invalid size {value!r} (use e.g. 512KiB, 4MiB)", name)
                return default
            value = int(m.group(1)) * _SIZE_UNITS[m.group(2)]
        if value < minimum:
            self.error(f"must be at least {minimum} bytes", name)
        return int(value)

    def str_list(self, name: str, default: tuple[str, ...] = ()) -> tuple[str, ...]:
        value = self._get(name, default, (list, tuple), "a list of strings")
        out: list[str] = []
        for i, item in enumerate(value or ()):
            if isinstance(item, str) and item:
                out.append(item)
            else:
                self.problems.add(f"{self.child_path(camel(name))}[{i}]", "expected a non-empty string")
        return tuple(out)

    def node(self, name: str) -> Node:
        key = camel(name)
        self._used.add(key)
        return Node(self._data.get(key), self.child_path(key), self.problems)

    def items(self, name: str) -> Iterator[tuple[str, Any]]:
        """Yield ``(path, value)`` for each element of a list value."""
        key = camel(name)
        value = self._get(name, [], (list,), "a list")
        for i, item in enumerate(value or []):
            yield f"{self.child_path(key)}[{i}]", item

    def nodes(self, name: str) -> list[Node]:
        return [Node(item, path, self.problems) for path, item in self.items(name)]

    def secret(self, name: str) -> Secret | None:
        """A secret given inline (``password``) or by file (``passwordFile``)."""
        inline = self._get(name, None, (str,), "a string")
        file_name = f"{name}_file"
        path = self._get(file_name, None, (str,), "a file path")
        if inline is not None and path is not None:
            self.error(f"give either {camel(name)} or {camel(file_name)}, not both", name)
        if path is not None:
            data = self.problems.read_file(path, self.child_path(camel(file_name)), max_bytes=64 * 1024)
            return None if data is None else Secret(data.decode("utf-8", "replace").strip())
        return None if inline is None else Secret(inline)

    def ca_bundle(self, name: str = "ca") -> bytes | None:
        """``<name>`` / ``<name>File``: PEM CA certificates (at most 1 MiB), checked to load as a trust store."""
        pem, _ = self.file_or_inline(name, max_bytes=1024 * 1024)
        if pem is not None:
            try:
                ssl.create_default_context(cadata=pem.decode("ascii"))
            except (ssl.SSLError, ValueError, TypeError):
                self.error("not a PEM CA certificate bundle", f"{name}_file" if self.has(f"{name}_file") else name)
        return pem

    def file_or_inline(self, name: str, max_bytes: int = 16 * 1024 * 1024) -> tuple[bytes | None, str | None]:
        """Content given inline as ``<name>`` (PEM text) or by path as ``<name>File``. Returns (data, path)."""
        inline = self._get(name, None, (str,), "a string")
        file_name = f"{name}_file"
        path = self._get(file_name, None, (str,), "a file path")
        if inline is not None and path is not None:
            self.error(f"give either {camel(name)} or {camel(file_name)}, not both", name)
        if path is not None:
            return self.problems.read_file(path, self.child_path(camel(file_name)), max_bytes), path
        return (None if inline is None else inline.encode()), None

    def parse_each(self, name: str, parse: Callable[[object, str], T | None]) -> tuple[T, ...]:
        """Apply ``parse(value, path)`` to each element of a list; ``None`` results are dropped."""
        out: list[T] = []
        for path, item in self.items(name):
            result = parse(item, path)
            if result is not None:
                out.append(result)
        return tuple(out)

    def ignore_rest(self) -> None:
        """Mark every key as read (used when the whole mapping is already known to be invalid)."""
        self._used.update(self._data)

    def finish(self) -> None:
        for key in self._data:
            if key not in self._used:
                hint = ""
                if isinstance(key, str) and "_" in key:
                    hint = f" (keys are camelCase: {camel(key)})"
                self.problems.add(self.child_path(str(key)), f"unknown key{hint}")


def _kind(value: object) -> str:
    if value is None:
        return "null"
    return {
        bool: "a boolean",
        int: "a number",
        float: "a number",
        str: "a string",
        list: "a list",
        dict: "a mapping",
    }.get(type(value), type(value).__name__)
