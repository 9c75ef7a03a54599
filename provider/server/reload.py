"""Configuration hot reload that never stalls the event loop and never applies a file caught mid-write.

Each ``server.reloadInterval`` the configuration file and every file it references are ``stat``-ed (cheap, on the
event loop). Only when something changed — or once a minute, in case a rewrite kept size and mtime — are they read,
in a worker thread; only when their bytes changed is the file parsed, also in a worker thread. A change is applied
only after it has *settled*: the files' size, inode and mtime must be the same across two looks a moment apart
(editors and ConfigMap updates write in steps). Anything that goes wrong keeps the last good configuration and is
reported in ``/readyz`` as ``lastReloadError``.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Callable
from pathlib import Path

import structlog

from provider.config import Config, load_config_bytes
from provider.errors import ConfigError
from provider.files import read_regular, signature

log = structlog.get_logger("referee.reload")

FULL_CHECK_EVERY = 60.0
MAX_SETTLE = 0.5
_MAX_SOURCE_BYTES = 64 * 1024 * 1024


def _digest(paths: tuple[str, ...], max_config_bytes: int) -> tuple[str, bytes]:
    """Digest of the files' bytes, and the bytes of the first (the configuration)."""
    h = hashlib.sha256()
    first = b""
    for i, p in enumerate(paths):
        try:
            data = read_regular(Path(p), max_config_bytes if i == 0 else _MAX_SOURCE_BYTES)
        except OSError as exc:
            data = f"unreadable: {exc}".encode()
        if i == 0:
            first = data
        h.update(p.encode() + b"\0" + hashlib.sha256(data).digest())
    return h.hexdigest(), first


class ConfigReloader:
    """Decides when the configuration file changed and parses it off the event loop."""

    def __init__(self, path: str, current: Config, *, max_config_bytes: int, monotonic: Callable[[], float]) -> None:
        self._path = path
        self._max_config_bytes = max_config_bytes
        self._monotonic = monotonic
        self._paths = self._watched(current)
        self._signature = signature(self._paths)
        self._digest: str | None = None  # unknown until the first full check reads the files
        self._last_full = monotonic()

    def _watched(self, config: Config) -> tuple[str, ...]:
        return (self._path, *(s for s in config.sources if s != self._path))

    async def poll(self, settle: float) -> Config | None:
        """A newly parsed configuration when the files changed (and settled); ``None`` when nothing changed or
        the change has not settled yet. Raises :class:`ConfigError` (any failure is turned into one)."""
        now = self._monotonic()
        first = signature(self._paths)
        if first == self._signature and now - self._last_full < FULL_CHECK_EVERY:
            return None
        if first != self._signature:
            await asyncio.sleep(min(settle, MAX_SETTLE))
            if signature(self._paths) != first:
                log.info("config_change_settling", path=self._path)
                return None
        self._last_full = now
        digest, raw = await asyncio.to_thread(_digest, self._paths, self._max_config_bytes)
        if digest == self._digest:
            self._signature = first
            return None
        try:
            config = await asyncio.to_thread(self._parse, raw)
        except ConfigError:
            self._remember(first, digest)
            raise
        except Exception as exc:  # a bug or a file that breaks the parser must not break the server
            self._remember(first, digest)
            raise ConfigError([f"cannot load the configuration: {type(exc).__name__}: {str(exc)[:200]}"]) from None
        paths = self._watched(config)
        # When the set of referenced files changed, their digest is not known yet: the next full check reads them
        # again (and finds the same generation, or a later change).
        self._remember(signature(paths), digest if paths == self._paths else None)
        self._paths = paths
        return config

    def _parse(self, raw: bytes) -> Config:
        if len(raw) > self._max_config_bytes:
            raise ConfigError([f"{self._path} is larger than {self._max_config_bytes} bytes"])
        return load_config_bytes(raw, Path(self._path).resolve().parent, self._path)

    def _remember(self, sig: tuple[tuple[str, int, int, int, int], ...], digest: str | None) -> None:
        self._signature = sig
        self._digest = digest
