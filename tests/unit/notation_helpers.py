"""Shared helpers for the notation unit tests: configuration from dicts, and one-call verification."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

from provider.confignode import Node, Problems
from provider.oci import Descriptor
from provider.verifiers.base import VerifierResult
from provider.verifiers.notation.config import NotationParams, parse_params
from provider.verifiers.notation.revocation import RevocationChecker
from provider.verifiers.notation.verify import verify_signature
from tests.support.paths import VECTORS as SHARED_VECTORS

VECTORS = SHARED_VECTORS / "notation"
NOW = dt.datetime(2026, 11, 23, tzinfo=dt.UTC)
JWS = "application/jose+json"
COSE = "application/cose"


def params(config: dict[str, Any], base: Path = Path("/")) -> NotationParams:
    problems = Problems(base)
    parsed = parse_params(Node(config, "verifiers[0]", problems))
    assert not problems.items, problems.items
    return parsed


def config_problems(config: dict[str, Any], base: Path = Path("/")) -> list[str]:
    problems = Problems(base)
    parse_params(Node(config, "verifiers[0]", problems))
    return problems.items


def policy(
    stores: list[str], identities: list[str] | None = None, level: str = "strict", **verification: Any
) -> dict[str, Any]:
    return {
        "version": "1.0",
        "trustPolicies": [
            {
                "name": "test",
                "registryScopes": ["*"],
                "signatureVerification": {"level": level, **verification},
                "trustStores": stores,
                "trustedIdentities": identities or ["*"],
            }
        ],
    }


async def verify(
    p: NotationParams,
    envelope: bytes,
    media_type: str,
    target: Descriptor,
    *,
    now: dt.datetime = NOW,
    repository: str = "registry.example/app",
) -> VerifierResult:
    async def load() -> bytes:
        return envelope

    return await verify_signature(
        p,
        RevocationChecker(p.revocation),
        repository=repository,
        target=target,
        now=now,
        media_type=media_type,
        load=load,
    )
