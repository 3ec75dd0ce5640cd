"""Conversation memory: the token window, the background summary, interrupted turns."""

from __future__ import annotations

import asyncio

from voxloop.memory.history import History, estimate_tokens, summarize
from voxloop.protocol.messages import Text
from voxloop.store.base import TurnRecord
from voxloop.testing.fakes import FakeLLM, FakeSTT

from engine_helpers import Driver, make_services, speech


def _turn(i: int, words: int = 40, **kw) -> TurnRecord:
    return TurnRecord(i, f"question {i} " + "word " * words, f"answer {i} " + "word " * words, **kw)


def test_the_window_keeps_the_newest_turns_that_fit_the_budget():
    h = History(budget_tokens=300)
    for i in range(1, 11):
        h.add(_turn(i))
    window = h.window()
    cost = sum(estimate_tokens(t.user) + estimate_tokens(t.assistant) for t in window)
    assert cost <= 300
    assert [t.turn_id for t in window] == list(range(11 - len(window), 11))
    assert len(window) < 10  # some did not fit
    # The rest is what a summary must cover.
    assert [t.turn_id for t in h.overflow()] == list(range(1, 11 - len(window)))
    h.summarized_upto = 2
    assert h.overflow()[0].turn_id == 3


def test_messages_are_the_window_after_the_system_prompt():
    h = History(budget_tokens=10_000)
    h.add(TurnRecord(1, "hi", "hello"))
    h.add(TurnRecord(2, "tell me a story", "Once upon a", interrupted=True))
    msgs = h.messages("SYSTEM", "go on")
    assert [(m.role, m.content) for m in msgs] == [
        ("system", "SYSTEM"),
        ("user", "hi"),
        ("assistant", "hello"),
        ("user", "tell me a story"),
        ("assistant", "Once upon a"),  # only what was heard
        ("user", "go on"),
    ]


def test_reset_forgets_turns_and_summary():
    h = History(summary="old", summarized_upto=3)
    h.add(TurnRecord(4, "a", "b"))
    h.clear()
    assert h.window() == [] and h.summary == "" and h.cleared_upto == 4


async def test_summarize_marks_interrupted_replies_and_keeps_old_notes():
    llm = FakeLLM(["The user likes tea."])
    summary = await summarize(
        llm, "The user is Ann.", [TurnRecord(1, "I like tea", "Tea is", interrupted=True)]
    )
    assert summary == "The user likes tea."
    prompt = llm.requests[0][-1].content
    assert "The user is Ann." in prompt
    assert "User: I like tea" in prompt
    assert "Assistant (interrupted): Tea is" in prompt


async def test_long_conversations_are_summarized_in_the_background():
    replies = [f"Answer number {i} " + "blah " * 30 for i in range(8)]
    llm = FakeLLM(lambda msgs: _reply_or_summary(msgs, replies))
    svc = make_services(llm=llm, session={"memory_tokens": 250})
    d = await Driver.start(svc)
    for i in range(8):
        await d.session.handle(Text(content=f"question {i} " + "more " * 20))
        await d.run_for(15.0)
    conv = d.session.state
    assert conv.history.summary == "SUMMARY"
    assert conv.history.summarized_upto > 0
    # The next reply's system prompt carries the summary, and its history is the window.
    await d.session.handle(Text(content="and now?"))
    await d.run_for(15.0)
    last = [m for m in llm.requests if "keep short notes" not in m[0].content][-1]
    assert "Earlier in this conversation: SUMMARY" in last[0].content
    assert len(last) < 2 * 9 + 2
    # It was stored with the session.
    record = await svc.store.load(d.session.session_id)
    assert record.summary == "SUMMARY" and record.summarized_upto > 0


def _reply_or_summary(messages, replies):
    if "keep short notes" in messages[0].content:
        return "SUMMARY"
    return replies.pop(0) if replies else "ok"


async def test_a_summary_never_delays_a_reply():
    """The user starts talking while a summary runs: it is cancelled on the spot."""
    started = asyncio.Event()

    class SlowSummaries(FakeLLM):
        async def generate(self, messages, **kw):
            if "keep short notes" in messages[0].content:
                started.set()
                await asyncio.Event().wait()  # would never finish
            async for delta in super().generate(messages, **kw):
                yield delta

    llm = SlowSummaries([" ".join(f"x{i}" for i in range(40))] * 10)  # no loop: not cut
    svc = make_services(llm=llm, stt=FakeSTT(["what next"]), session={"memory_tokens": 60})
    d = await Driver.start(svc)
    for i in range(3):
        await d.session.handle(Text(content=f"question {i} " + "more " * 20))
        await d.run_for(10.0)
    assert started.is_set()
    task = d.session.state._summary_task
    assert task is not None and not task.done()
    await d.feed(speech(0.5))  # the user speaks: the summary gives way
    assert d.session.state._summary_task is None
    await d.run_for(0.6)
    assert d.events("final_transcript")[-1]["text"] == "what next"
    assert d.session.status in ("thinking", "speaking")
