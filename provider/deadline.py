"""The current operation's deadline, carried in a context variable so retries and back-off respect it."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from contextvars import ContextVar

from provider.errors import DeadlineExceededError

_DEADLINE: ContextVar[float | None] = ContextVar("referee_deadline", default=None)


def remaining() -> float | None:
    """Seconds left before the current deadline, or ``None`` when there is none."""
    deadline = _DEADLINE.get()
    if deadline is None:
        return None
    return deadline - asyncio.get_running_loop().time()


@contextlib.contextmanager
def deadline_after(seconds: float) -> Iterator[None]:
    """Set a deadline ``seconds`` from now (never later than an enclosing one) for the enclosed code."""
    now = asyncio.get_running_loop().time()
    current = _DEADLINE.get()
    candidate = now + seconds
    token = _DEADLINE.set(candidate if current is None else min(current, candidate))
    try:
        yield
    finally:
        _DEADLINE.reset(token)


@contextlib.contextmanager
def fresh(seconds: float) -> Iterator[None]:
    """Set a deadline ``seconds`` from now, replacing any inherited one (for work that outlives a request)."""
    token = _DEADLINE.set(asyncio.get_running_loop().time() + seconds)
    try:
        yield
    finally:
        _DEADLINE.reset(token)


def exceeded(what: str) -> DeadlineExceededError:
    return DeadlineExceededError(f"deadline reached during {what}")
