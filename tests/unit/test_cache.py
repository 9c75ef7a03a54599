"""Caches: content by digest bounded by bytes, TTL maps, and in-flight sharing."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest

from provider.cache import ContentCache, SingleFlight, TTLMap

# -- ContentCache --------------------------------------------------------------------------------------------------


def test_content_cache_round_trip() -> None:
    cache = ContentCache(max_bytes=1024)
    cache.put("sha256:a", b"hello")
    assert cache.get("sha256:a") == b"hello"
    assert cache.get("sha256:b") is None


def test_content_cache_bounded_by_bytes_evicts() -> None:
    cache = ContentCache(max_bytes=100)
    blobs = {f"sha256:{i}": bytes([i]) * 40 for i in range(5)}
    for digest, data in blobs.items():
        cache.put(digest, data)
        held = sum(len(d) for k in blobs if (d := cache.get(k)) is not None)
        assert held <= 100
    assert cache.get("sha256:4") == blobs["sha256:4"]  # the newest is kept
    assert cache.get("sha256:0") is None  # the oldest went


def test_content_cache_ignores_entries_larger_than_the_bound() -> None:
    cache = ContentCache(max_bytes=10)
    cache.put("sha256:small", b"12345")
    cache.put("sha256:big", b"x" * 11)
    assert cache.get("sha256:big") is None
    assert cache.get("sha256:small") == b"12345"  # a too-large entry does not flush the cache


def test_content_cache_disabled_with_zero() -> None:
    cache = ContentCache(max_bytes=0)
    cache.put("sha256:a", b"x")
    assert cache.get("sha256:a") is None


def test_content_cache_counts_bytes_not_entries() -> None:
    cache = ContentCache(max_bytes=1000)
    for i in range(50):
        cache.put(f"sha256:{i}", b"y" * 10)
    assert all(cache.get(f"sha256:{i}") is not None for i in range(50))  # 500 bytes fit


# -- TTLMap --------------------------------------------------------------------------------------------------------


class FakeTimer:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_ttl_map_expiry() -> None:
    timer = FakeTimer()
    m: TTLMap[str, int] = TTLMap("test", max_entries=10, ttl=5.0, timer=timer)
    m.put("a", 1)
    assert m.get("a") == 1
    timer.now = 4.9
    assert m.get("a") == 1
    timer.now = 5.1
    assert m.get("a") is None
    assert len(m) == 0


def test_ttl_map_each_entry_has_its_own_clock() -> None:
    timer = FakeTimer()
    m: TTLMap[str, int] = TTLMap("test", max_entries=10, ttl=10.0, timer=timer)
    m.put("a", 1)
    timer.now = 6.0
    m.put("b", 2)
    timer.now = 11.0
    assert m.get("a") is None
    assert m.get("b") == 2


def test_ttl_map_bounded_by_entries() -> None:
    timer = FakeTimer()
    m: TTLMap[int, int] = TTLMap("test", max_entries=3, ttl=100.0, timer=timer)
    for i in range(10):
        m.put(i, i)
    assert len(m) <= 3
    assert m.get(9) == 9


def test_ttl_map_clear() -> None:
    m: TTLMap[str, int] = TTLMap("test", max_entries=3, ttl=100.0, timer=FakeTimer())
    m.put("a", 1)
    m.clear()
    assert m.get("a") is None


@pytest.mark.parametrize(("max_entries", "ttl"), [(0, 10.0), (10, 0.0), (10, -1.0)])
def test_ttl_map_disabled(max_entries: int, ttl: float) -> None:
    m: TTLMap[str, int] = TTLMap("test", max_entries=max_entries, ttl=ttl, timer=FakeTimer())
    m.put("a", 1)
    assert m.get("a") is None
    assert len(m) == 0


# -- SingleFlight --------------------------------------------------------------------------------------------------


async def test_single_flight_runs_once_for_concurrent_callers() -> None:
    flight: SingleFlight[str, int] = SingleFlight()
    calls = 0
    release = asyncio.Event()

    async def compute() -> int:
        nonlocal calls
        calls += 1
        await release.wait()
        return 42

    callers = [asyncio.ensure_future(flight.run("k", compute)) for _ in range(5)]
    await asyncio.sleep(0)
    assert len(flight) == 1
    release.set()
    assert await asyncio.gather(*callers) == [42] * 5
    assert calls == 1
    assert len(flight) == 0  # forgotten once done


async def test_single_flight_different_keys_run_separately() -> None:
    flight: SingleFlight[str, str] = SingleFlight()
    calls: list[str] = []

    def make(key: str) -> Callable[[], Awaitable[str]]:
        async def compute() -> str:
            calls.append(key)
            await asyncio.sleep(0)
            return key.upper()

        return compute

    results = await asyncio.gather(flight.run("a", make("a")), flight.run("b", make("b")))
    assert results == ["A", "B"]
    assert sorted(calls) == ["a", "b"]


async def test_single_flight_recomputes_after_completion() -> None:
    flight: SingleFlight[str, int] = SingleFlight()
    calls = 0

    async def compute() -> int:
        nonlocal calls
        calls += 1
        return calls

    assert await flight.run("k", compute) == 1
    assert await flight.run("k", compute) == 2


async def test_single_flight_cancelled_caller_does_not_cancel_shared_work() -> None:
    flight: SingleFlight[str, str] = SingleFlight()
    started = asyncio.Event()
    release = asyncio.Event()
    calls = 0
    finished = False

    async def compute() -> str:
        nonlocal calls, finished
        calls += 1
        started.set()
        await release.wait()
        finished = True
        return "done"

    first = asyncio.ensure_future(flight.run("k", compute))
    second = asyncio.ensure_future(flight.run("k", compute))
    await started.wait()
    first.cancel()
    with pytest.raises(asyncio.CancelledError):
        await first
    release.set()
    assert await second == "done"
    assert finished
    assert calls == 1


async def test_single_flight_work_survives_when_its_only_caller_gives_up() -> None:
    flight: SingleFlight[str, str] = SingleFlight()
    release = asyncio.Event()
    finished = asyncio.Event()
    calls = 0

    async def compute() -> str:
        nonlocal calls
        calls += 1
        await release.wait()
        finished.set()
        return "late"

    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.01):
            await flight.run("k", compute)
    # a caller that arrives while the work is still running joins it instead of starting again
    joiner = asyncio.ensure_future(flight.run("k", compute))
    await asyncio.sleep(0)
    release.set()
    assert await joiner == "late"
    assert finished.is_set()
    assert calls == 1


async def test_single_flight_exception_reaches_every_caller() -> None:
    flight: SingleFlight[str, int] = SingleFlight()
    release = asyncio.Event()
    calls = 0

    async def compute() -> int:
        nonlocal calls
        calls += 1
        await release.wait()
        raise ValueError("boom")

    callers = [asyncio.ensure_future(flight.run("k", compute)) for _ in range(3)]
    await asyncio.sleep(0)
    release.set()
    results = await asyncio.gather(*callers, return_exceptions=True)
    assert all(isinstance(r, ValueError) for r in results)
    assert calls == 1
    assert len(flight) == 0


async def test_single_flight_cancel_all() -> None:
    flight: SingleFlight[str, int] = SingleFlight()
    started = asyncio.Event()

    async def compute() -> int:
        started.set()
        await asyncio.sleep(3600)
        return 1

    caller = asyncio.ensure_future(flight.run("k", compute))
    await started.wait()
    await flight.cancel_all()
    with pytest.raises(asyncio.CancelledError):
        await caller
    assert len(flight) == 0


def test_ttl_map_entry_lifetime_can_be_shorter_never_longer() -> None:
    """An entry taken from elsewhere (the shared cache) is kept only for what is left of its lifetime."""
    timer = FakeTimer()
    m: TTLMap[str, int] = TTLMap("test", max_entries=10, ttl=10.0, timer=timer)
    m.put("short", 1, ttl=2.0)
    m.put("long", 2, ttl=60.0)
    m.put("none", 3, ttl=0.0)
    timer.now = 1.9
    assert (m.get("short"), m.get("long"), m.get("none")) == (1, 2, None)
    timer.now = 2.1
    assert m.get("short") is None and m.get("long") == 2
    timer.now = 10.1
    assert m.get("long") is None
