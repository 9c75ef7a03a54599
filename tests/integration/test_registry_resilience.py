"""The registry client under trouble, on the real registry behind the referrers test double (which injects delays
and statuses per path): a hanging repository does not starve its registry, a throttling registry is paused instead of
stormed, and the referrers-API probe is made once per registry, not once per key (issues #19 item 1, #23 items 2-3).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from provider import deadline
from provider.config import load_config
from provider.executor import Engine
from tests.integration.conftest import SignedSet
from tests.support.content import cosign_sign_legacy, make_image, push_image
from tests.support.referee import write_config
from tests.support.referrers_proxy import ReferrersProxy


def _engine_config(
    tmp_path: Path, proxy: ReferrersProxy, key_file: Path, cache: dict[str, Any] | None = None, **host: Any
) -> Path:
    doc: dict[str, Any] = {
        "registries": {
            "allow": ["127.0.0.1:*"],
            "hosts": [{"host": proxy.host, "plainHttp": True, **host}],
            "requestTimeout": "30s",
        },
        "verifiers": [{"name": "cosign-ci", "type": "cosign", "keys": [str(key_file)]}],
        "policy": {"type": "required-verifiers", "required": ["cosign-ci"]},
        "cache": cache or {"verdictTtl": 0, "tagTtl": 0},
    }
    return write_config(tmp_path / "referee.yaml", doc)


@pytest.fixture
async def engines() -> AsyncIterator[list[Engine]]:
    made: list[Engine] = []
    yield made
    for engine in made:
        await engine.close()


def _signed_images(proxy: ReferrersProxy, signed: SignedSet, repo: str, count: int) -> list[str]:
    refs = []
    for i in range(count):
        image = make_image(f"{repo}/{i}")
        push_image(proxy.url, repo, f"v{i}", image)
        cosign_sign_legacy(proxy.url, repo, image["digest"], signed.key)
        refs.append(f"{proxy.host}/{repo}:v{i}")
    return refs


async def _verify_all(engine: Engine, keys: list[str], budget: float) -> dict[str, Any]:
    with deadline.deadline_after(budget):
        outcomes = await asyncio.gather(*(engine.verify_key(k) for k in keys))
    return {o.key: o for o in outcomes}


async def test_a_hanging_repository_does_not_starve_other_repositories_on_its_registry(
    referrers_proxy: ReferrersProxy, signed_set: SignedSet, tmp_path: Path, engines: list[Engine]
) -> None:
    proxy = referrers_proxy
    [healthy] = _signed_images(proxy, signed_set, "resilience/healthy", 1)
    hanging = [f"{proxy.host}/resilience/hanging:v{i}" for i in range(20)]
    proxy.path_delays["/resilience/hanging/"] = 20.0
    engine = Engine(load_config(_engine_config(tmp_path, proxy, signed_set.key_file, maxConcurrency=16)))
    engines.append(engine)
    outcomes = await _verify_all(engine, [*hanging, healthy], 3.0)
    assert outcomes[healthy].verdict is not None and outcomes[healthy].verdict.allowed, outcomes[healthy]
    assert all(outcomes[k].error is not None and outcomes[k].error.transient for k in hanging)


async def test_a_throttling_registry_is_paused_not_stormed(
    referrers_proxy: ReferrersProxy, signed_set: SignedSet, tmp_path: Path, engines: list[Engine]
) -> None:
    proxy = referrers_proxy
    refs = _signed_images(proxy, signed_set, "resilience/storm", 30)
    engine = Engine(load_config(_engine_config(tmp_path, proxy, signed_set.key_file, referrersApi="never")))
    engines.append(engine)
    proxy.log.clear()
    proxy.status_override["/resilience/storm/"] = (429, {"Retry-After": "10"}, 10_000)
    outcomes = await _verify_all(engine, refs, 1.5)
    assert all(o.error is not None and o.error.transient for o in outcomes.values())
    assert any("Retry-After" in o.error.message for o in outcomes.values())
    # Only the requests already in flight when the first 429 arrived reached the registry (at most one slot
    # share of maxConcurrency 16); every later attempt failed fast without sending.
    sent = sum(1 for _, path in proxy.log if "/resilience/storm/" in path)
    assert sent <= 8, sent

    # A short pause that ends before the deadline is waited out, without holding a slot.
    proxy.status_override["/resilience/storm/"] = (429, {"Retry-After": "1"}, 1)
    fresh = Engine(load_config(_engine_config(tmp_path, proxy, signed_set.key_file, referrersApi="never")))
    engines.append(fresh)
    outcome = (await _verify_all(fresh, refs[:1], 4.0))[refs[0]]
    assert outcome.verdict is not None and outcome.verdict.allowed, outcome


async def test_the_referrers_api_probe_is_made_once_per_registry_not_once_per_key(
    referrers_proxy: ReferrersProxy, signed_set: SignedSet, tmp_path: Path, engines: list[Engine]
) -> None:
    proxy = referrers_proxy
    refs = _signed_images(proxy, signed_set, "resilience/probe", 12)
    proxy.mode = "404"
    proxy.log.clear()
    engine = Engine(load_config(_engine_config(tmp_path, proxy, signed_set.key_file)))
    engines.append(engine)
    outcomes = await _verify_all(engine, refs, 10.0)
    assert all(o.verdict is not None and o.verdict.allowed for o in outcomes.values()), outcomes
    assert proxy.count("referrers") == 1


async def test_a_blob_read_fault_is_not_cached_as_a_plain_denial(
    referrers_proxy: ReferrersProxy, signed_set: SignedSet, tmp_path: Path, engines: list[Engine]
) -> None:
    """Issue #19 item 3: wrong bytes for the signature payload make the verdict a denial that says it could not read
    its evidence, cached only briefly — the first verification after the fault clears (and the short TTL) allows."""
    proxy = referrers_proxy
    repo = "resilience/corrupt"
    image = make_image(f"{repo}/0")
    push_image(proxy.url, repo, "v0", image)
    signature = cosign_sign_legacy(proxy.url, repo, image["digest"], signed_set.key)
    key = f"{proxy.host}/{repo}:v0"
    cache = {"verdictTtl": "300s", "tagTtl": "5s"}
    config = load_config(_engine_config(tmp_path, proxy, signed_set.key_file, cache, referrersApi="never"))
    clock = [100.0]
    engine = Engine(config, monotonic=lambda: clock[0])
    engines.append(engine)
    proxy.corrupt_paths.add(f"/v2/{repo}/blobs/{signature.layer['digest']}")
    denied = await engine.verify_key(key)
    assert denied.verdict is not None and not denied.verdict.allowed, denied
    assert denied.verdict.complete is False
    assert any("could not be read: DIGEST_MISMATCH" in note for note in denied.verdict.notes)
    assert (await engine.verify_key(key)).cached is True
    proxy.corrupt_paths.clear()
    clock[0] += 6
    allowed = await engine.verify_key(key)
    assert allowed.verdict is not None and allowed.verdict.allowed and not allowed.cached, allowed


async def test_stale_if_error_serves_known_tags_through_a_registry_pause_and_only_within_its_window(
    referrers_proxy: ReferrersProxy, signed_set: SignedSet, tmp_path: Path, engines: list[Engine]
) -> None:
    """Issue #23 item 4: once a tag's resolution expired, a throttled registry (429, ``Retry-After: 10``) must not
    turn an already verified image into a failure inside ``cache.tagStaleIfError``: the stale resolution is served
    without waiting out the pause (the request's deadline is 1.5 s) and without sending anything while paused;
    outside the window, or with the window off, the key fails as transient (fail closed)."""
    proxy = referrers_proxy
    refs = _signed_images(proxy, signed_set, "resilience/stale", 3)
    cache = {"verdictTtl": "1h", "tagTtl": "10s", "tagStaleIfError": "60s"}
    clock = [1000.0]
    config = load_config(_engine_config(tmp_path, proxy, signed_set.key_file, cache, referrersApi="never"))
    engine = Engine(config, monotonic=lambda: clock[0])
    engines.append(engine)
    first = await _verify_all(engine, refs, 10.0)
    assert all(o.verdict is not None and o.verdict.allowed for o in first.values()), first

    clock[0] += 30  # every tag resolution expired 20 s ago; the stale window runs until 70 s after resolving
    proxy.log.clear()
    proxy.status_override["/resilience/stale/"] = (429, {"Retry-After": "10"}, 10_000)
    outcome = (await _verify_all(engine, refs[:1], 1.5))[refs[0]]
    assert outcome.verdict is not None and outcome.verdict.allowed, outcome
    assert len(proxy.log) == 1  # the one HEAD that learnt about the storm
    # The registry is paused now: the other known tags are answered from the stale window without a request, even
    # when their jobs start well into the pause (a job's own deadline, verificationTimeout, would let it wait).
    await asyncio.sleep(0.1)
    rest = await _verify_all(engine, refs[1:], 1.5)
    assert all(o.verdict is not None and o.verdict.allowed for o in rest.values()), rest
    assert len(proxy.log) == 1
    # /mutate pins to the stale digest too (the Assigns then pin exactly what was verified).
    with deadline.deadline_after(0.9):
        _, descriptor = await engine.resolve_key(refs[0])
    assert descriptor.digest == first[refs[0]].verdict.digest  # type: ignore[union-attr]

    clock[0] += 60  # past tagTtl + tagStaleIfError: nothing known-good is left to serve
    expired = asyncio.ensure_future(engine.verify_key(refs[0]))
    await asyncio.wait({expired}, timeout=1.5)  # what a request would wait; its answer would name the key to retry
    assert not expired.done() or expired.result().verdict is None, expired.result()
    expired.cancel()

    window_off = {"verdictTtl": "1h", "tagTtl": "10s"}
    no_window = load_config(_engine_config(tmp_path, proxy, signed_set.key_file, window_off, referrersApi="never"))
    proxy.status_override.clear()
    plain = Engine(no_window, monotonic=lambda: clock[0])
    engines.append(plain)
    assert (await plain.verify_key(refs[0])).verdict is not None
    clock[0] += 30
    proxy.status_override["/resilience/stale/"] = (429, {"Retry-After": "10"}, 10_000)
    failed = (await _verify_all(plain, refs[:1], 1.5))[refs[0]]
    assert failed.verdict is None and failed.error is not None and failed.error.transient, failed
