"""The local LLM's batch engine on real weights: replies of several conversations decode
together, each conversation keeps its own cache, and a closed stream stops at once.

The mechanics run on the tiny preset (SmolLM2-135M, fast); the answers that matter run on
the default model, as a user gets it (four questions at the same moment)."""

from __future__ import annotations

import asyncio
import time

import pytest

from voxloop.config.settings import Settings
from voxloop.hearing.wer import normalize
from voxloop.providers.base import Message

pytestmark = pytest.mark.models

SYSTEM = "You are a helpful assistant. Answer in one short sentence."


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from voxloop.providers.local.llama_llm import LlamaLLM

    cache = tmp_path_factory.mktemp("cache")
    llm = LlamaLLM.from_settings(Settings(llm={"preset": "tiny", "parallel": 3}, cache_dir=cache))
    assert llm.engine is not None
    yield llm
    llm.close()


def ask(question: str) -> list[Message]:
    return [Message("system", SYSTEM), Message("user", question)]


async def _collect(llm, messages, max_tokens=24, stamps=None) -> str:
    out = []
    async for delta in llm.generate(messages, max_tokens=max_tokens, temperature=0.0):
        if stamps is not None:
            stamps.append(time.perf_counter())
        out.append(delta)
    return "".join(out)


def test_replies_decode_together(tiny):
    engine = tiny.engine
    questions = ["Name a colour.", "Name an animal.", "Name a city."]

    async def run():
        stamps = [[] for _ in questions]
        before = engine.steps
        texts = await asyncio.gather(
            *(_collect(tiny, ask(q), 24, s) for q, s in zip(questions, stamps, strict=True))
        )
        return texts, stamps, engine.steps - before

    texts, stamps, steps = asyncio.run(run())
    assert all(t.strip() for t in texts), texts
    pieces = sum(len(s) for s in stamps)
    # One step per token of the longest reply (plus the prompts' chunks), not one per token
    # of every reply: the sequences shared their steps.
    assert steps < pieces, (steps, pieces)
    # Interleaved: every reply had begun before the first of them was over.
    first_done = min(s[-1] for s in stamps)
    assert all(s[0] < first_done for s in stamps)


def test_a_closed_stream_stops_decoding_and_frees_its_slot(tiny):
    engine = tiny.engine

    async def run():
        gen = tiny.generate(ask("Count from one to two hundred, in words."), max_tokens=200)
        got = [d async for d in _take(gen, 3)]
        await gen.aclose()
        await asyncio.sleep(0.3)  # let the engine reach its next step
        steps = engine.steps
        await asyncio.sleep(0.5)  # a decoder still running would take many more by now
        return got, steps, engine.steps

    got, before, after = asyncio.run(run())
    assert len(got) == 3
    assert after == before, "decoding went on after the stream was closed"
    assert engine.busy() == 0


async def _take(gen, n):
    i = 0
    async for item in gen:
        yield item
        i += 1
        if i == n:
            return


def test_the_next_turn_reads_only_what_is_new(tiny):
    engine = tiny.engine

    async def run():
        first = ask("Name five colours, please.")
        answer = await _collect(tiny, first)
        first_prompt = engine.last_prompt_tokens
        # Other conversations in between, as many as there are other slots: none may take
        # the first conversation's cache while an empty slot is free.
        await asyncio.gather(*(_collect(tiny, ask(f"Name a fruit, {i}.")) for i in range(2)))
        second = [*first, Message("assistant", answer), Message("user", "And three more?")]
        read_before = engine.prompt_tokens_read
        await _collect(tiny, second)
        return engine.prompt_tokens_read - read_before, engine.last_prompt_tokens, first_prompt

    read, total, first_prompt = asyncio.run(run())
    # Its whole first prompt (and most of the answer) came from its own cache.
    assert read <= total - first_prompt, f"read {read} of {total} prompt tokens again"


def test_closing_the_engine_ends_what_it_was_serving_with_an_error(tmp_path):
    from voxloop.providers.local.llama_llm import LlamaLLM

    llm = LlamaLLM.from_settings(
        Settings(llm={"preset": "tiny", "parallel": 2}, cache_dir=tmp_path)
    )

    async def run():
        stream = llm.generate(ask("Count from one to two hundred."), max_tokens=200)
        await anext(stream)
        await asyncio.to_thread(llm.close)
        async for _ in stream:
            pass

    with pytest.raises(RuntimeError, match="closed"):
        asyncio.run(run())
    llm.close()  # a second close does nothing (no double free)


def test_a_prompt_longer_than_a_conversation_context_is_a_clear_error(tiny):
    async def run():
        return await _collect(tiny, ask("word " * 5000))

    with pytest.raises(ValueError, match="context holds 2048"):
        asyncio.run(run())
    assert tiny.engine.busy() == 0


def test_capacity_is_measured_within_the_slots(tiny):
    n = asyncio.run(tiny.conversations())
    assert 1 <= n <= 3
    assert asyncio.run(tiny.conversations()) == n  # measured once


def test_four_everyday_questions_at_the_same_moment_on_the_default_model(real_settings):
    from voxloop.providers.local.llama_llm import LlamaLLM

    settings = real_settings.model_copy(
        update={"llm": real_settings.llm.model_copy(update={"seed": None, "parallel": 4})}
    )
    llm = LlamaLLM.from_settings(settings)
    assert llm.engine is not None
    cases = {
        "What is the capital of France?": "paris",
        "How many legs does a spider have?": "eight",
        "What is the opposite of hot?": "cold",
        "What colour is a ripe banana?": "yellow",
    }
    system = settings.llm.system_prompt

    async def run():
        llm.expect_system_prompt(system)
        await llm.warmup()
        return await asyncio.gather(
            *(_collect(llm, [Message("system", system), Message("user", q)], 40) for q in cases)
        )

    try:
        replies = asyncio.run(run())
    finally:
        llm.close()
    for (question, word), reply in zip(cases.items(), replies, strict=True):
        assert word in normalize(reply), (question, reply)
