"""Where each built-in plug-in ``type`` lives. The module is imported the first time its type is looked up, so
``referee verify`` with a cosign-only configuration never imports the Notary, SBOM or OpenPGP code."""

from __future__ import annotations

STORES = {
    "registry": "provider.stores.registry",
    "oci-layout": "provider.stores.oci_layout",
    "grafeas": "provider.stores.grafeas",
    "lookaside": "provider.stores.lookaside",
}
VERIFIERS = {
    "cosign": "provider.verifiers.cosign",
    "notation": "provider.verifiers.notation",
    "sigstore-bundle": "provider.verifiers.sigstore_bundle",
    "attestation": "provider.verifiers.attestation",
    "sbom": "provider.verifiers.sbom",
    "vulnerability-report": "provider.verifiers.vulnreport",
    "vex": "provider.verifiers.vex",
    "schema": "provider.verifiers.schema",
    "pgp": "provider.verifiers.pgp",
    "pkix": "provider.verifiers.pkix",
    "attestor": "provider.verifiers.attestor",
}
POLICIES = {
    "required-verifiers": "provider.policies.required",
    "deny-all": "provider.policies.required",
    "rules": "provider.policies.rules",
}


def load() -> None:
    """Declare every built-in type to its registry (idempotent, imports no plug-in)."""
    from provider.policies.base import policy_types
    from provider.stores.base import store_types
    from provider.verifiers.base import verifier_types

    for registry, modules in ((store_types, STORES), (verifier_types, VERIFIERS), (policy_types, POLICIES)):
        for type_name, module in modules.items():
            registry.provide(type_name, module)
