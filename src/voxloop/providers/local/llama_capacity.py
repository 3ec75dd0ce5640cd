"""How many conversations the local LLM can answer at once in real time, measured.

What a caller feels is the wait for the first words. The voice-to-voice budget is 2 s;
the end of the turn, the transcript and the first audio take about 0.8 s of it on the
reference machine, which leaves the LLM `FIRST_WORDS_BUDGET_S` to read a new turn and
write the first clause (`FIRST_WORDS_TOKENS`). The measure asks `n` new turns at the same
moment, as `n` callers who stop talking together would, and takes the slowest one's time
to its first clause, from one up to the engine's slot count while it fits. The other stages
share the CPU in real use and are not running here, so the figure is an upper bound:
`voxloop bench load --pace natural` tells what holds (docs/benchmarks.md).
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from voxloop.providers.base import LLMProvider, Message

FIRST_WORDS_BUDGET_S = 1.2
FIRST_WORDS_TOKENS = 8  # "The capital of France is Paris." is about as long
# A new turn as it reaches the LLM: a question of ordinary length after the system prompt.
PROBES = [
    "Could you tell me what the weather is usually like in Lisbon in the spring?",
    "What is a good way to keep basil fresh for a week in the kitchen?",
    "How long should I boil an egg if I want the yolk to stay soft?",
    "Why do cats sleep so much of the day, and is that healthy for them?",
]

log = logging.getLogger(__name__)


async def first_words_s(llm: LLMProvider, n: int, system_prompt: str | None = None) -> float:
    """Seconds until the slowest of `n` simultaneous new turns has its first clause. Each
    turn opens with its own words, so no cache of an earlier round holds it."""

    async def one(i: int) -> float:
        messages = [Message("user", f"Caller {n}.{i + 1}: {PROBES[i % len(PROBES)]}")]
        if system_prompt:
            messages.insert(0, Message("system", system_prompt))
        started = time.perf_counter()
        stream = llm.generate(messages, max_tokens=FIRST_WORDS_TOKENS, temperature=0.0)
        async for _ in stream:
            pass
        return time.perf_counter() - started

    return max(await asyncio.gather(*(one(i) for i in range(n))))


async def measure_conversations(
    llm: LLMProvider, engine: Any, system_prompt: str | None = None
) -> int:
    """The most callers whose first words all fit the budget, counting up from one (at
    least 1: a server that answers nobody is no use; one caller on a machine too slow for
    the budget is then told the truth by the latency)."""
    if engine is None:
        return 1  # the serial path: a second caller waits for the first one's whole reply
    fits = 1
    for n in range(1, len(engine.slots) + 1):
        took = await first_words_s(llm, n, system_prompt)
        log.info("LLM: %d new turns at once, first words after %.2f s", n, took)
        if took > FIRST_WORDS_BUDGET_S:
            break
        fits = n
    return fits
