"""How long a request may work before it must start answering.

The answer is due ``providerTimeout - deadlineMargin`` after the request arrived, but after the work stops there is
still work to do: encoding every item, metrics and logs — in proportion to the batch — and, on a busy event loop,
the wait before this request's code runs again at all. The budget reserves both: per key, what answering took per key
in recent large requests (:class:`AnswerCost`, at least ``PER_KEY_RESERVE``), and the event-loop lag measured over
the last seconds (:class:`LoopLag`). The lag is read again while the request waits
(:func:`work_deadline` is re-evaluated every ``RECHECK`` seconds): the cold work a request waits for is what makes
the loop busy, so the lag at its start says little about the lag at its end."""

from __future__ import annotations

import asyncio
import collections

PER_KEY_RESERVE = 0.00005
MIN_BUDGET = 0.05
RECHECK = 0.1
COST_SAFETY = 1.5
COST_MIN_KEYS = 20


class AnswerCost:
    """Wall-clock seconds per key that building the answer took after the work stopped (encoding, metrics, logs),
    the worst of the last ``window`` requests of at least ``COST_MIN_KEYS`` keys; ``per_key`` reserves 1.5 times that,
    and never less than ``PER_KEY_RESERVE``. Wall-clock, so a machine short of CPU reserves more."""

    def __init__(self, window: int = 50) -> None:
        self._samples: collections.deque[float] = collections.deque(maxlen=window)

    def observe(self, keys: int, seconds: float) -> None:
        if keys >= COST_MIN_KEYS:
            self._samples.append(seconds / keys)

    @property
    def per_key(self) -> float:
        return max(PER_KEY_RESERVE, COST_SAFETY * max(self._samples, default=0.0))


class LoopLag:
    """Samples how late a timer fires on this event loop; ``recent`` is the worst lag of the last ``window``
    samples (``interval`` apart, 5 s by default)."""

    def __init__(self, interval: float = 0.05, window: int = 100) -> None:
        self._interval = interval
        self._samples: collections.deque[float] = collections.deque(maxlen=window)
        self._task: asyncio.Task[None] | None = None

    @property
    def recent(self) -> float:
        return max(self._samples, default=0.0)

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.ensure_future(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            before = loop.time()
            await asyncio.sleep(self._interval)
            self._samples.append(max(0.0, loop.time() - before - self._interval))


def work_deadline(started: float, answer_due: float, keys: int, lag: float, per_key: float = PER_KEY_RESERVE) -> float:
    """When (``time.monotonic()``) the work of a request that arrived at ``started`` must stop, given the lag now."""
    return started + max(min(MIN_BUDGET, answer_due), answer_due - lag - keys * per_key)
