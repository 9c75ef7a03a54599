"""The work budget of a request (issue #19 item 5, #23 item 5): time is reserved for answering in proportion to the
batch, and for the event-loop lag measured recently, so a large batch on a busy loop still answers in time."""

from __future__ import annotations

import asyncio
import time

import pytest

from provider.server.budget import MIN_BUDGET, PER_KEY_RESERVE, LoopLag, work_deadline


def test_the_budget_reserves_time_per_key_and_for_lag() -> None:
    assert work_deadline(0.0, 1.9, 1, 0.0) == 1.9 - PER_KEY_RESERVE
    assert work_deadline(0.0, 0.95, 1000, 0.0) == 0.95 - 1000 * PER_KEY_RESERVE
    assert work_deadline(0.0, 1.9, 50, 0.2) < work_deadline(0.0, 1.9, 50, 0.0) - 0.19
    assert work_deadline(0.0, 0.2, 10_000, 0.5) == MIN_BUDGET
    assert work_deadline(0.0, 0.01, 1, 0.0) == 0.01  # never more than the time actually left
    assert work_deadline(5.0, 1.9, 1, 0.0) == pytest.approx(5.0 + 1.9 - PER_KEY_RESERVE)  # from the arrival


async def test_loop_lag_sees_a_blocked_event_loop() -> None:
    lag = LoopLag(interval=0.01, window=50)
    lag.start()
    try:
        await asyncio.sleep(0.05)
        quiet = lag.recent
        time.sleep(0.2)  # the event loop is blocked, as by a burst of CPU work
        await asyncio.sleep(0.05)
        assert lag.recent >= max(0.15, quiet)
    finally:
        await lag.stop()
