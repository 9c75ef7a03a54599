"""What the configuration says about each plug-in instance, and the registries that know each plug-in ``type``.

This module sits below the seams: :mod:`provider.config` parses into these specs and asks the registries to parse a
type's parameters, without importing stores, verifiers or policies; each seam module (``stores/base.py``,
``verifiers/base.py``, ``policies/base.py``) re-exports its spec and gives its registry the seam's precise plug-in
type. Plug-in modules register themselves when imported (:mod:`provider.registrations` says where each type lives).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from provider.plugins import PluginRegistry


@dataclass(frozen=True, slots=True)
class StoreSpec:
    """A configured store (``stores[i]``)."""

    name: str
    type: str
    scopes: tuple[str, ...]
    params: Any


@dataclass(frozen=True, slots=True)
class VerifierSpec:
    """A configured verifier instance (``verifiers[i]`` in YAML)."""

    name: str
    type: str
    artifact_types: frozenset[str]
    scopes: tuple[str, ...]
    params: Any


@dataclass(frozen=True, slots=True)
class PolicySpec:
    """The configured policy (``policy``)."""

    type: str
    params: Any


store_types: PluginRegistry[Any] = PluginRegistry("store")
verifier_types: PluginRegistry[Any] = PluginRegistry("verifier")
policy_types: PluginRegistry[Any] = PluginRegistry("policy")
