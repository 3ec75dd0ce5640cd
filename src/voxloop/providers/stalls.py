"""Watchdogs for providers: a model that hangs, crawls or talks garbage must end its
turn with a clear error, never freeze it. `deadline` works on the session's clock, so
virtual time in the tests runs it out exactly as real time does."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import TypeVar

import numpy as np

from voxloop.clock import Clock
from voxloop.errors import ProviderCallError
from voxloop.providers.base import AudioChunk, Provider
from voxloop.providers.resilience import RetryPolicy

LOCAL_STALL_S = 30.0  # a local model's floor in `stall_limit`
MIN_TTS_RATE, MAX_TTS_RATE = 4000, 384_000  # audio outside this is a broken TTS, not a voice

T = TypeVar("T")


class Stalled(TimeoutError):
    """A `deadline` ran out."""


@dataclass
class Queue:
    """Whether a stream waits in a shared model's queue, and for at most how long: a wait
    in line is not a hang, so `guarded` starts counting once it is served."""

    limit_s: float
    waiting: bool = False
    served_at: float | None = None  # the wait ended: the first item's time counts from here


@contextlib.asynccontextmanager
async def deadline(
    clock: Clock, seconds: float | None, queue: Queue | None = None
) -> AsyncIterator[None]:
    """`asyncio.timeout` on `clock`, so that virtual time can run it out too: raises
    `Stalled` if the block takes longer than `seconds` (None: no limit). While `queue`
    says it waits, the time does not count, up to the queue's own limit."""
    if seconds is None:
        yield
        return
    task = asyncio.current_task()
    assert task is not None
    expired = False
    queued_until = clock.now() + queue.limit_s if queue is not None else 0.0

    def alarm() -> None:
        nonlocal expired, timer
        now = clock.now()
        if queue is not None and queue.waiting and now < queued_until:
            timer = clock.call_later(min(seconds, queued_until - now), alarm)
            return
        if queue is not None and queue.served_at is not None and queue.served_at + seconds > now:
            timer = clock.call_later(queue.served_at + seconds - now, alarm)
            return
        expired = True
        task.cancel()

    timer = clock.call_later(seconds, alarm)
    try:
        yield
    except asyncio.CancelledError:
        if expired and task.uncancel() == 0:
            raise Stalled(f"nothing within {seconds:g} s") from None
        raise
    else:
        if expired:  # the block swallowed our cancellation: it must not count later
            task.uncancel()
    finally:
        timer.cancel()


def stall_limit(provider: Provider, timeout_s: float, retries: int) -> float:
    """How long a turn waits for a provider's next item (token, audio, transcript)
    before it gives up on it. A local provider has no timeout of its own, so it gets the
    stage's `timeout_s`, but at least `LOCAL_STALL_S`: on a busy machine it may wait its
    turn for the shared model, which is slow, not hung. A remote one applies `timeout_s`
    itself, with retries, and this only backs it up once those have had their time (for
    a fallback chain, each member's in turn). Without it a hung provider would hang the
    turn for ever."""
    members = getattr(provider, "providers", None)
    if not isinstance(members, list) or not members:
        members = [provider]
    return sum(
        max(timeout_s, LOCAL_STALL_S)
        if p.capabilities.local
        else (retries + 1) * (timeout_s + RetryPolicy.cap_s)  # its tries and backoffs
        for p in members
    )


async def guarded(
    stream: AsyncIterator[T],
    clock: Clock,
    limit_s: float | None,
    what: str,
    unit: str,
    queue: Queue | None = None,
) -> AsyncIterator[T]:
    """`stream`, but a provider error if it goes `limit_s` without an item (before the
    first, or between two): a hung provider ends the turn instead of freezing it. Time
    in `queue` does not count."""
    started = False
    try:
        while True:
            try:
                async with deadline(clock, limit_s, queue):
                    item = await anext(stream)
            except StopAsyncIteration:
                return
            except Stalled:
                if queue is not None and queue.waiting:
                    raise ProviderCallError(
                        f"{what}: still queued after {max(queue.limit_s, limit_s or 0):g} s "
                        "(the server is "
                        "busier than it can serve)",
                        retryable=False,
                    ) from None
                where = f"between {unit}s" if started else f"before the first {unit}"
                raise ProviderCallError(
                    f"{what}: nothing within {limit_s:g} s {where}", retryable=False
                ) from None
            started = True
            yield item
    finally:
        aclose = getattr(stream, "aclose", None)
        if aclose is not None:
            await aclose()


def checked_audio(chunk: object) -> AudioChunk:
    """A TTS chunk as the contract has it (int16 mono PCM at a sane rate), or a clear
    error: anything else would reach the client as noise, or crash the player."""
    if not isinstance(chunk, AudioChunk):
        raise TypeError(f"the TTS gave a {type(chunk).__name__}, not an AudioChunk")
    pcm, rate = chunk.pcm, chunk.sample_rate
    if not isinstance(pcm, np.ndarray) or pcm.dtype.kind != "i" or pcm.dtype.itemsize != 2:
        kind = pcm.dtype if isinstance(pcm, np.ndarray) else type(pcm).__name__
        raise TypeError(f"the TTS gave {kind} audio; the contract is int16 PCM")
    if pcm.ndim != 1:
        raise ValueError(f"the TTS gave audio of shape {pcm.shape}; the contract is mono")
    if not isinstance(rate, int | np.integer) or not MIN_TTS_RATE <= rate <= MAX_TTS_RATE:
        raise ValueError(f"the TTS gave audio at {rate!r} Hz")
    return chunk
