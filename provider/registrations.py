"""Imports every built-in plug-in module so its factories register themselves by ``type``."""

from __future__ import annotations

import importlib

BUILTIN_MODULES = (
    "provider.stores.registry",
    "provider.stores.oci_layout",
    "provider.stores.grafeas",
    "provider.stores.lookaside",
    "provider.verifiers.cosign",
    "provider.verifiers.notation",
    "provider.verifiers.sigstore_bundle",
    "provider.verifiers.attestation",
    "provider.verifiers.sbom",
    "provider.verifiers.vulnreport",
    "provider.verifiers.vex",
    "provider.verifiers.schema",
    "provider.verifiers.pgp",
    "provider.verifiers.pkix",
    "provider.verifiers.attestor",
    "provider.policies.required",
    "provider.policies.rules",
)


def load() -> None:
    for module in BUILTIN_MODULES:
        importlib.import_module(module)
