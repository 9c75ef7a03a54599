"""The answer deadline under a busy event loop (#23 item 5, #19 item 5): the work's stopping point is read again
while a request waits (the lag grows with the cold work it waits on), unfinished keys are let go without waiting
for their cancellation, and the clock starts when the request's first byte arrived."""

from __future__ import annotations

import asyncio
import time
from types import SimpleNamespace
from typing import Any

from provider.server import app, protocol
from provider.server.budget import COST_SAFETY, MIN_BUDGET, PER_KEY_RESERVE, AnswerCost, work_deadline
from provider.server.connections import request_arrival


async def test_waiting_stops_when_the_stopping_point_moves_earlier() -> None:
    never = asyncio.Event()
    finished = asyncio.Event()
    checks = 0

    def stop_at() -> float:
        nonlocal checks
        checks += 1
        # Far away at first; then the loop got busy (the lag grew) and the work must stop now.
        return time.monotonic() + (3600.0 if checks == 1 else -1.0)

    async def work(key: str) -> str:
        if key == "fast":
            finished.set()
            return "done"
        try:
            await never.wait()
        except asyncio.CancelledError:
            await asyncio.sleep(3600)  # a slow cancellation must not hold the answer
            raise
        return "late"

    done, pending = await asyncio.wait_for(app._run_keys(["fast", "slow", "fast"], stop_at, work), 60)
    assert done == {"fast": "done"} and pending == {"slow"}
    assert checks >= 2


async def test_every_key_done_answers_without_waiting_for_the_stopping_point() -> None:
    async def work(key: str) -> str:
        return key.upper()

    done, pending = await app._run_keys(["a", "b"], lambda: time.monotonic() + 3600.0, work)
    assert done == {"a": "A", "b": "B"} and not pending


def test_the_stopping_point_reserves_lag_and_batch_but_leaves_a_minimum() -> None:
    assert work_deadline(100.0, 2.9, 50, 0.2) == 100.0 + 2.9 - 0.2 - 50 * PER_KEY_RESERVE
    assert work_deadline(100.0, 2.9, 10, 5.0) == 100.0 + MIN_BUDGET


def _request(protocol: Any) -> Any:
    return SimpleNamespace(protocol=protocol)


def test_the_clock_starts_at_the_first_byte_the_connection_noted() -> None:
    earlier = time.monotonic() - 0.5
    assert request_arrival(_request(SimpleNamespace(request_arrival=earlier))) == earlier
    now = time.monotonic()
    for conn in (SimpleNamespace(request_arrival=None), SimpleNamespace(), None):
        assert request_arrival(_request(conn)) >= now
    assert request_arrival(_request(SimpleNamespace(request_arrival=now + 10))) < now + 10  # never in the future


def test_the_system_error_lists_only_as_many_keys_as_it_can_show() -> None:
    retry = {f"registry.example/app:v{i}": "DEADLINE_EXCEEDED: not finished within 1.90s" for i in range(2000)}
    full = "; ".join(f"{k}: {v}" for k, v in retry.items())
    prefix = "2000 of 2000 keys not answered, retry: "
    assert len(app._listed(retry)) < len(full) // 10
    assert protocol.encode_response([], prefix + app._listed(retry)) == protocol.encode_response([], prefix + full)


def test_the_per_key_reserve_follows_what_answering_large_requests_cost() -> None:
    cost = AnswerCost(window=3)
    assert cost.per_key == PER_KEY_RESERVE
    cost.observe(5, 1.0)  # a small request's fixed costs say nothing per key
    assert cost.per_key == PER_KEY_RESERVE
    cost.observe(1000, 0.2)  # 200 µs per key on a machine short of CPU
    assert cost.per_key == COST_SAFETY * 0.0002
    for _ in range(3):
        cost.observe(1000, 0.001)
    assert cost.per_key == PER_KEY_RESERVE  # the slow one left the window
    deadline_now = work_deadline(0.0, 2.9, 1000, 0.0, 0.0004)
    assert deadline_now == 2.9 - 0.4
