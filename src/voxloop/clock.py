"""An injectable clock, so the engine can run on virtual time in tests.

Code that waits or measures takes a `Clock` instead of calling `time`/`asyncio.sleep`
directly. `VirtualClock` makes time move only when a test says so: no real sleeps, and
timing-dependent behaviour becomes deterministic.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from collections.abc import Callable
from typing import Protocol


class Timer(Protocol):
    def cancel(self) -> object: ...


class Clock(Protocol):
    def now(self) -> float:
        """Seconds on a monotonic scale."""
        ...

    async def sleep(self, seconds: float) -> None: ...

    def call_later(self, seconds: float, callback: Callable[[], object]) -> Timer:
        """Run `callback` after `seconds`, unless the returned timer is cancelled first.
        Cheaper than a task that sleeps: watchdogs set one per token or audio chunk."""
        ...


class RealClock:
    def now(self) -> float:
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds))

    def call_later(self, seconds: float, callback: Callable[[], object]) -> Timer:
        return asyncio.get_running_loop().call_later(max(0.0, seconds), callback)


class VirtualClock:
    """Time advances only through `advance()`; sleepers wake in deadline order."""

    def __init__(self, start: float = 0.0) -> None:
        self._now = start
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._seq = itertools.count()

    def now(self) -> float:
        return self._now

    async def sleep(self, seconds: float) -> None:
        if seconds <= 0:
            await asyncio.sleep(0)
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (self._now + seconds, next(self._seq), fut))
        await fut

    def call_later(self, seconds: float, callback: Callable[[], object]) -> Timer:
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        fut.add_done_callback(lambda f: None if f.cancelled() else callback())
        heapq.heappush(self._sleepers, (self._now + max(0.0, seconds), next(self._seq), fut))
        return fut

    async def advance(self, seconds: float) -> None:
        """Move time forward, waking sleepers in order and letting woken tasks run."""
        target = self._now + seconds
        while True:
            await settle()
            if not self._sleepers or self._sleepers[0][0] > target:
                break
            deadline, _, fut = heapq.heappop(self._sleepers)
            self._now = max(self._now, deadline)
            if not fut.done():
                fut.set_result(None)
        self._now = target
        await settle()


async def settle(rounds: int = 20) -> None:
    """Let ready tasks run until the loop is quiet (a bounded number of passes)."""
    for _ in range(rounds):
        await asyncio.sleep(0)
