"""Limits that keep one client (or too many) from taking the server down: sessions per
process, connections and messages per IP per second. Each refusal is immediate and says
which limit it hit; nothing waits in a queue.

Rates use token buckets: `rate` per second on average, bursts of up to `burst`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

CLOSE_TRY_AGAIN_LATER = 1013  # WebSocket: the server is at capacity
CLOSE_POLICY = 1008  # WebSocket: a limit was broken
CLOSE_TOO_BIG = 1009  # WebSocket: a frame over the size limit


@dataclass
class Bucket:
    rate: float
    burst: float
    tokens: float = -1.0
    at: float = 0.0

    def take(self, now: float, cost: float = 1.0) -> bool:
        if self.tokens < 0:
            self.tokens, self.at = self.burst, now
        self.tokens = min(self.burst, self.tokens + (now - self.at) * self.rate)
        self.at = now
        if self.tokens >= cost:
            self.tokens -= cost
            return True
        return False


@dataclass
class RateLimiter:
    """One bucket per key (an IP address). Idle buckets are forgotten, so a flood of
    addresses cannot grow it without bound."""

    rate: float
    burst: float
    clock: Callable[[], float] = time.monotonic
    max_keys: int = 100_000
    _buckets: dict[str, Bucket] = field(default_factory=dict)

    def allow(self, key: str, cost: float = 1.0) -> bool:
        if self.rate <= 0:
            return True  # 0 turns the limit off
        now = self.clock()
        bucket = self._buckets.get(key)
        if bucket is None:
            if len(self._buckets) >= self.max_keys:
                self._forget_idle(now)
            bucket = self._buckets[key] = Bucket(self.rate, self.burst)
        return bucket.take(now, cost)

    def _forget_idle(self, now: float) -> None:
        full_after = self.burst / self.rate
        for key in [k for k, b in self._buckets.items() if now - b.at > full_after]:
            del self._buckets[key]
        if len(self._buckets) >= self.max_keys:  # all busy: drop the oldest half
            for key in sorted(self._buckets, key=lambda k: self._buckets[k].at)[
                : self.max_keys // 2
            ]:
                del self._buckets[key]

    def __len__(self) -> int:
        return len(self._buckets)
