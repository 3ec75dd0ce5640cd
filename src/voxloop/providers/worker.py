"""Run blocking model code off the event loop, one step at a time, and stop it on cancel.

Each loaded model owns one `ModelWorker`: a single thread that executes jobs in arrival
order. A streaming call is broken into steps (one `next()` on the engine's iterator per
job), so two sessions using the same model interleave step by step instead of one waiting
for the other's whole answer, and the model is only ever touched from one thread.

Cancelling the consumer stops work at the next step boundary: no further `next()` is
submitted and the engine's iterator is closed on the worker thread. That is what makes
cancellation *stop* llama.cpp or Piper rather than just discard what they produce.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

T = TypeVar("T")

_DONE = object()


class ModelWorker:
    """A single-threaded FIFO executor dedicated to one model."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"voxloop-{name}")
        self._lock = threading.Lock()
        self.steps_run = 0  # observable progress, used by tests of prompt cancellation
        self.pending = 0  # calls submitted and not finished (queued or running)

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """Run one blocking call on the model's thread."""
        loop = asyncio.get_running_loop()
        self.pending += 1
        try:
            return await loop.run_in_executor(self._executor, self._counted, fn, args)
        finally:
            self.pending -= 1

    @property
    def idle(self) -> bool:
        """Nothing queued or running: optional work (a partial transcript) may start."""
        return self.pending == 0

    def _counted(self, fn: Callable[..., T], args: tuple[Any, ...]) -> T:
        with self._lock:
            self.steps_run += 1
        return fn(*args)

    async def iterate(self, make_iter: Callable[[], Iterator[T]]) -> AsyncIterator[T]:
        """Drive a blocking iterator step by step on the model thread.

        `make_iter` is called on the worker thread too, since building the iterator may
        already start inference (faster-whisper does).
        """
        iterator: Iterator[T] | None = None
        try:
            iterator = await self.run(make_iter)
            while True:
                item = await self.run(_next_or_done, iterator)
                if item is _DONE:
                    return
                yield item
        finally:
            if iterator is not None:
                close = getattr(iterator, "close", None)
                if close is not None:
                    # Fire and forget: the close runs after any step already queued, on the
                    # thread that owns the model. Awaiting it here would delay cancellation.
                    self._executor.submit(_quiet, close)

    def shutdown(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)


def _next_or_done(iterator: Iterator[T]) -> T | object:
    return next(iterator, _DONE)


def _quiet(fn: Callable[[], Any]) -> None:
    # Closing a half-run engine generator must never crash the worker thread.
    with contextlib.suppress(Exception):
        fn()
