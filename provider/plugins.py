"""A small factory registry keyed by the configuration ``type`` string, one per extension seam."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Generic, TypeVar

F = TypeVar("F")


class PluginRegistry(Generic[F]):
    """Maps a ``type`` string to a plug-in instance. ``register`` decorates the plug-in class; ``provide`` names the
    module that registers a type, imported the first time the type is asked for (so a command imports only the
    plug-ins its configuration uses)."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._plugins: dict[str, F] = {}
        self._modules: dict[str, str] = {}

    def provide(self, type_name: str, module: str) -> None:
        self._modules.setdefault(type_name, module)

    def register(self, type_name: str) -> Callable[[type[F]], type[F]]:
        def decorate(cls: type[F]) -> type[F]:
            if type_name in self._plugins:
                raise ValueError(f"{self.kind} type {type_name!r} registered twice")
            self._plugins[type_name] = cls()
            return cls

        return decorate

    def get(self, type_name: str) -> F | None:
        plugin = self._plugins.get(type_name)
        if plugin is None and type_name in self._modules:
            importlib.import_module(self._modules[type_name])
            plugin = self._plugins.get(type_name)
        return plugin

    def names(self) -> list[str]:
        return sorted(set(self._plugins) | set(self._modules))
