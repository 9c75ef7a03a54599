"""The ``attestor`` type: a Binary Authorization-style attestor as one named verifier.

An attestor is a set of keys (OpenPGP and/or PKIX) and, usually, the Grafeas note its attestations are attached
to. It is satisfied when any one attestation by any of its keys verifies for the image digest, so a policy names
it like any verifier (``required-verifiers``, ``rules``). Attestors are written in the top-level ``attestors``
list of the configuration (parsed in :mod:`provider.config`); ``verifiers[]`` with ``type: attestor`` is the same thing.
"""

from __future__ import annotations

from dataclasses import dataclass

from provider.attestations import NOTE_NAME
from provider.confignode import Node
from provider.verifiers.base import VerifierSpec, verifier_types
from provider.verifiers.claims import (
    DEFAULT_ARTIFACT_TYPES,
    AttestationVerifier,
    ClaimPolicy,
    SignatureChecker,
    parse_claim_policy,
)
from provider.verifiers.pgp import PgpChecker, PgpKey, parse_pgp_keys
from provider.verifiers.pkix import PkixChecker, PkixKey, parse_pkix_keys


@dataclass(frozen=True, slots=True)
class AttestorParams:
    note: str | None
    pgp_keys: tuple[PgpKey, ...]
    pkix_keys: tuple[PkixKey, ...]
    claims: ClaimPolicy


def parse_note(node: Node, name: str) -> str | None:
    note: str | None = node.string(name, None)
    if note is not None and not NOTE_NAME.match(note):
        node.error(f"{note!r} is not a note name (projects/<project>/notes/<note>)", name)
    return note


@verifier_types.register("attestor")
class AttestorPlugin:
    default_artifact_types = DEFAULT_ARTIFACT_TYPES

    def parse_params(self, node: Node) -> AttestorParams:
        note = parse_note(node, "note")
        before = len(node.problems.items)
        pgp_keys = parse_pgp_keys(node, "pgp_keys")
        pkix_keys = parse_pkix_keys(node, "pkix_keys")
        if not pgp_keys and not pkix_keys and len(node.problems.items) == before:
            node.error("an attestor needs at least one key in pgpKeys or pkixKeys", "pgp_keys")
        claims = parse_claim_policy(node, "matchRepository")
        return AttestorParams(note=note, pgp_keys=pgp_keys, pkix_keys=pkix_keys, claims=claims)

    def create(self, spec: VerifierSpec) -> AttestationVerifier:
        params: AttestorParams = spec.params
        checkers: list[SignatureChecker] = []
        if params.pkix_keys:
            checkers.append(PkixChecker(params.pkix_keys))
        if params.pgp_keys:
            checkers.append(PgpChecker(params.pgp_keys))
        notes = frozenset({params.note}) if params.note else frozenset()
        return AttestationVerifier(spec, checkers, notes, params.claims)
