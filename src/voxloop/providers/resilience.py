"""Calling providers that can fail: timeouts, retries with backoff, a circuit breaker, and
a fallback chain.

Streams are special: once the first token (or audio chunk) has been passed on, a failure
cannot be retried or handed to the next provider without saying things twice, so all of
this applies *until the first item*; after that an error ends the stream.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from voxloop.clock import Clock, RealClock
from voxloop.errors import CircuitOpenError, ProviderCallError

T = TypeVar("T")


@dataclass
class RetryPolicy:
    attempts: int = 3  # calls in all, the first included
    base_s: float = 0.2
    cap_s: float = 2.0
    first_item_timeout_s: float = 10.0  # request → first token
    idle_timeout_s: float = 10.0  # between tokens
    rng: random.Random = field(default_factory=random.Random)

    @classmethod
    def for_stage(cls, stage: Any) -> RetryPolicy:
        """The policy a `[stt]`, `[llm]` or `[tts]` section asks for: `retries` more tries,
        `timeout_s` for the first item and between items."""
        return cls(
            attempts=stage.retries + 1,
            first_item_timeout_s=stage.timeout_s,
            idle_timeout_s=stage.timeout_s,
        )

    def delay(self, attempt: int, error: ProviderCallError) -> float:
        """Full jitter: uniform in [0, min(cap, base·2^attempt)]; a server's Retry-After
        wins when it asks for longer (capped, so one provider cannot stall a turn)."""
        jitter = self.rng.uniform(0, min(self.cap_s, self.base_s * 2**attempt))
        if error.retry_after_s is not None:
            return max(jitter, min(error.retry_after_s, self.cap_s))
        return jitter


class CircuitBreaker:
    """After `threshold` failures in a row the provider is skipped (open) for
    `cooldown_s`; then one call may try it (half-open): success closes the circuit."""

    def __init__(self, threshold: int = 3, cooldown_s: float = 30.0, clock: Clock | None = None):
        self.threshold, self.cooldown_s = threshold, cooldown_s
        self.clock = clock or RealClock()
        self.failures = 0
        self.opened_at: float | None = None

    @property
    def state(self) -> str:
        if self.opened_at is None:
            return "closed"
        return "half-open" if self.clock.now() - self.opened_at >= self.cooldown_s else "open"

    def check(self, name: str) -> None:
        if self.state == "open":
            raise CircuitOpenError(
                f"{name} failed {self.failures} times in a row; skipped for "
                f"{self.cooldown_s - (self.clock.now() - (self.opened_at or 0)):.0f} s more"
            )

    def success(self) -> None:
        self.failures, self.opened_at = 0, None

    def failure(self) -> None:
        self.failures += 1
        if self.failures >= self.threshold or self.state == "half-open":
            self.opened_at = self.clock.now()


async def resilient_stream(
    make: Callable[[], AsyncIterator[T]],
    *,
    name: str,
    policy: RetryPolicy,
    breaker: CircuitBreaker | None = None,
    clock: Clock | None = None,
) -> AsyncIterator[T]:
    """Items of `make()`, retried on retryable errors until the first item arrives, with a
    timeout for the first item and between items."""
    clock = clock or RealClock()
    for attempt in range(policy.attempts):
        if breaker is not None:
            breaker.check(name)
        stream = make()
        started = False
        try:
            while True:
                timeout = policy.idle_timeout_s if started else policy.first_item_timeout_s
                try:
                    item = await asyncio.wait_for(anext(stream), timeout)
                except StopAsyncIteration:
                    break
                except TimeoutError:
                    where = "between tokens" if started else "before the first token"
                    raise ProviderCallError(
                        f"{name}: no answer within {timeout:.1f} s {where}", retryable=True
                    ) from None
                if not started and breaker is not None:
                    breaker.success()
                started = True
                yield item
            if breaker is not None and not started:
                breaker.success()
            return
        except ProviderCallError as exc:
            if breaker is not None:
                breaker.failure()
            if started or not exc.retryable or attempt + 1 >= policy.attempts:
                raise
            await clock.sleep(policy.delay(attempt, exc))
        finally:
            await stream.aclose()
