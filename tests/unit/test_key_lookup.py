"""What a key means under a configuration generation is worked out once (#23 item 6: the warm path parsed every key
and walked the stores for every request); the memo is bounded and never outlives its generation."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from provider import executor
from provider.cache import ContentCache
from provider.config import parse_config
from provider.errors import ReferenceInvalidError
from provider.executor import Engine, Runtime
from provider.oci import Descriptor


def _runtime(generation: str = "g1") -> Runtime:
    config = parse_config({"registries": {"allow": ["ghcr.io/*"]}, "policy": {"type": "deny-all"}}, Path.cwd())
    return Runtime(dataclasses.replace(config, generation=generation), ContentCache(0))


def test_a_key_is_parsed_once_and_its_cache_keys_carry_the_generation() -> None:
    runtime = _runtime()
    first = runtime.lookup("ghcr.io/org/app:v1")
    assert runtime.lookup("ghcr.io/org/app:v1") is first
    assert first.ref.tag == "v1" and not first.by_digest
    assert first.resolution_key == (f"{first.store.name}/{runtime.generation}", "ghcr.io/org/app:v1")
    pinned = runtime.lookup("ghcr.io/org/app@sha256:" + "a" * 64)
    assert pinned.by_digest and pinned.verdict_prefix == (pinned.store.name, "ghcr.io/org/app", "")


def test_a_key_that_is_not_a_reference_fails_every_time_and_is_not_remembered() -> None:
    runtime = _runtime()
    for _ in range(2):
        with pytest.raises(ReferenceInvalidError):
            runtime.lookup("ghcr.io/org/app:bad tag")
    assert "ghcr.io/org/app:bad tag" not in runtime._lookups


def test_the_memo_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(executor, "MAX_LOOKUPS", 10)
    runtime = _runtime()
    for i in range(35):
        runtime.lookup(f"ghcr.io/org/app:v{i}")
        assert len(runtime._lookups) <= 10
    assert runtime.lookup("ghcr.io/org/app:v34").ref.tag == "v34"


def test_another_generation_has_its_own_memo() -> None:
    old, new = _runtime("g1"), _runtime("g2")
    assert old.generation != new.generation
    assert old.lookup("ghcr.io/org/app:v1").resolution_key != new.lookup("ghcr.io/org/app:v1").resolution_key


async def test_the_lookups_cache_keys_are_the_ones_the_engine_stores_under() -> None:
    """A memo that computed another key than the engine would make every warm key a miss (or, worse, a hit on
    another key's entry): the resolution and verdict keys must be exactly the engine's."""
    config = parse_config({"registries": {"allow": ["ghcr.io/*"]}, "policy": {"type": "deny-all"}}, Path.cwd())
    engine = Engine(config)
    try:
        runtime = engine.runtime
        descriptor = Descriptor(
            media_type="application/vnd.oci.image.manifest.v1+json", digest="sha256:" + "b" * 64, size=1
        )
        for key in (
            "ghcr.io/org/app:v1",
            "ghcr.io/org/app@sha256:" + "a" * 64,
            "ghcr.io/org/app:v1@sha256:" + "a" * 64,
        ):
            lookup = runtime.lookup(key)
            _, resolution_key = engine._resolution_key(runtime, lookup.store, lookup.ref)
            assert lookup.resolution_key == resolution_key
            verdict_key = engine._verdict_key(runtime, lookup.store, lookup.ref, descriptor)
            assert (*lookup.verdict_prefix, descriptor.digest, runtime.generation) == verdict_key
    finally:
        await engine.close()
