"""Fair shares of a bounded resource: at most ``limit`` holders at once, and one group (a repository) never more
than ``share`` of them, so a group whose work hangs cannot starve the others."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator


class SharedSlots:
    """``async with slots.slot(group):`` — FIFO within the limit and within each group's share."""

    def __init__(self, limit: int, share: float = 0.5) -> None:
        self.limit = limit
        self._all = asyncio.Semaphore(limit)
        self._group_limit = max(1, int(limit * share + 0.5))
        self._groups: dict[str, tuple[asyncio.Semaphore, int]] = {}

    @contextlib.asynccontextmanager
    async def slot(self, group: str) -> AsyncIterator[None]:
        semaphore, users = self._groups.get(group, (None, 0))
        if semaphore is None:
            semaphore = asyncio.Semaphore(self._group_limit)
        self._groups[group] = (semaphore, users + 1)
        try:
            async with semaphore, self._all:
                yield
        finally:
            semaphore, users = self._groups[group]
            if users <= 1:
                del self._groups[group]
            else:
                self._groups[group] = (semaphore, users - 1)

    def __len__(self) -> int:
        """Groups currently holding or waiting for a slot."""
        return len(self._groups)
