"""A small factory registry keyed by the configuration ``type`` string, one per extension seam."""

from __future__ import annotations

from collections.abc import Callable
from typing import Generic, TypeVar

F = TypeVar("F")


class PluginRegistry(Generic[F]):
    """Maps a ``type`` string to a plug-in instance. ``register`` decorates the plug-in class."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._plugins: dict[str, F] = {}

    def register(self, type_name: str) -> Callable[[type[F]], type[F]]:
        def decorate(cls: type[F]) -> type[F]:
            if type_name in self._plugins:
                raise ValueError(f"{self.kind} type {type_name!r} registered twice")
            self._plugins[type_name] = cls()
            return cls

        return decorate

    def get(self, type_name: str) -> F | None:
        return self._plugins.get(type_name)

    def names(self) -> list[str]:
        return sorted(self._plugins)
