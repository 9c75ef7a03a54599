"""What the configuration says about each plug-in instance, and the registries that know each plug-in ``type``.

This module sits below the seams: :mod:`provider.config` parses into these specs and asks the registries to parse a
type's parameters, without importing stores, verifiers or policies; each seam module (``stores/base.py``,
``verifiers/base.py``, ``policies/base.py``) re-exports its spec and gives its registry the seam's precise plug-in
type. Plug-in modules register themselves when imported (:mod:`provider.registrations` says where each type lives).
"""

from __future__ import annotations

import enum
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


class Signature(enum.Enum):
    """Whether an artifact carries the signatures the policy requires on it."""

    NOT_REQUIRED = "not-required"
    PRESENT = "present"
    MISSING = "missing"
    UNKNOWN = "unknown"
    """Required and not verified, but some of the artifact's own referrers of a signing verifier could not be
    examined (a cap, an unfetchable or unreadable referrer, a listing that failed): it may be signed."""


store_types: PluginRegistry[Any] = PluginRegistry("store")
verifier_types: PluginRegistry[Any] = PluginRegistry("verifier")
policy_types: PluginRegistry[Any] = PluginRegistry("policy")
