"""Ways of sending keys that several phases share: one at a time, everything once in batches, and Gatekeeper's
re-evaluation rounds."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from bench.infra.client import Client, Reply, check_all_allowed
from bench.infra.metrics import Measure, Phase
from bench.infra.server import ServerProcess
from bench.infra.util import BenchError, log


async def sequential(
    client: Client,
    servers: Sequence[ServerProcess],
    registry_pid: int | None,
    keys: Sequence[str],
    what: str,
    *,
    deadline: float,
    fresh: bool = False,
) -> Phase:
    """One 1-key request at a time; the latency of each. Every key must be allowed."""
    async with Measure(servers, registry_pid, Phase(what, deadline)) as phase:
        for key in keys:
            reply = await client.verify([key], fresh=fresh)
            check_all_allowed(reply, f"{what} {key}")
            phase.latencies.append(reply.latency)
            phase.keys += 1
    return phase


async def verify_all(
    client: Client,
    servers: Sequence[ServerProcess],
    registry_pid: int | None,
    keys: Sequence[str],
    batch: int,
    what: str,
    *,
    deadline: float,
    rounds: int = 3,
) -> Phase:
    """Verify every key once, ``batch`` keys per request over all keep-alive workers; keys the server names in
    ``systemError`` (deadline) are sent again, at most ``rounds`` rounds. Every verdict must be an allow."""
    async with Measure(servers, registry_pid, Phase(what, deadline)) as phase:
        pending = list(keys)
        for _ in range(rounds):
            queue = [pending[i : i + batch] for i in range(0, len(pending), batch)]
            retry: list[str] = []

            async def worker(w: int, queue: list[list[str]], retry: list[str]) -> None:
                while queue:
                    chunk = queue.pop()
                    reply = await client.verify(chunk, worker=w)
                    if reply.item_errors or reply.denied:
                        raise BenchError(f"{what}: {reply.problems()[:3]}")
                    phase.latencies.append(reply.latency)
                    phase.keys += len(reply.allowed)
                    retry.extend(reply.unanswered)

            await asyncio.gather(*(worker(w, queue, retry) for w in range(client.workers)))
            if not retry:
                break
            log(f"{what}: {len(retry)} keys unanswered within the deadline, sending them again")
            pending = retry
        else:
            raise BenchError(f"{what}: {len(pending)} keys still unanswered after {rounds} rounds")
    return phase


@dataclass
class Admission:
    """One admission request's keys, re-sent by Gatekeeper's caller until every key has an item."""

    keys: list[str]
    rounds: int = 0
    first_round_items: int = 0
    done_at: float | None = None
    replies: list[Reply] = field(default_factory=list)
    item_times: dict[str, float] = field(default_factory=dict)  # key -> when its item arrived


async def gatekeeper_rounds(
    client: Client,
    groups: Sequence[list[str]],
    *,
    started: float,
    resend_delay: float = 0.0,
    give_up_at: float,
    fresh: bool = True,
    on_reply: Callable[[Admission, Reply], None] | None = None,
) -> list[Admission]:
    """Send every group at once; whenever an answer comes back, keep the keys that got an item (Gatekeeper caches
    those) and send the rest again after ``resend_delay``, until every key has an item or ``give_up_at``
    (``time.monotonic()``, like ``started``) passes."""
    admissions = [Admission(list(g)) for g in groups]

    async def one(adm: Admission) -> None:
        pending = list(adm.keys)
        while pending and time.monotonic() < give_up_at:
            adm.rounds += 1
            reply = await client.verify(pending, fresh=fresh)
            adm.replies.append(reply)
            now = time.monotonic()
            answered = reply.answered
            if adm.rounds == 1:
                adm.first_round_items = len(answered)
            for key in answered:
                adm.item_times.setdefault(key, now - started)
            if on_reply is not None:
                on_reply(adm, reply)
            pending = [k for k in pending if k not in answered]
            if not pending:
                adm.done_at = now - started
                break
            if resend_delay:
                await asyncio.sleep(resend_delay)

    await asyncio.gather(*(one(a) for a in admissions))
    return admissions
