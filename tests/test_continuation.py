"""A turn is not over until the agent has spoken (turns/continuation.py): speech that
resumes before the reply's first audio continues the turn; after it, it is a barge-in."""

from __future__ import annotations

from voxloop.testing.fakes import FakeLLM, FakeSTT, FakeTurnJudge, last_user

from engine_helpers import Driver, make_services, speech


def _services(first_token_s: float, **kw):
    def answer(messages) -> str:
        return "That is the whole line." if "failed" in last_user(messages) else "Only half."

    llm = FakeLLM(answer, first_token_s=first_token_s)
    stt = FakeSTT(["Ever tried.", "Ever failed."])
    return make_services(stt=stt, llm=llm, judge=FakeTurnJudge(0.95), **kw)


async def test_speech_before_the_reply_is_heard_continues_the_turn():
    d = await Driver.start(_services(first_token_s=1.5))
    await d.feed(speech(0.8, seed=1))
    await d.run_for(0.4)  # the judge ends the turn at the pause; the LLM is still thinking
    assert [e["text"] for e in d.events("final_transcript")] == ["Ever tried."]
    await d.feed(speech(0.8, seed=2))  # the reader goes on
    [continued] = d.events("turn_continued")
    assert (continued["turn_id"], continued["into"]) == (1, 2)
    await d.run_for(3.0)
    finals = [(e["turn_id"], e["text"]) for e in d.events("final_transcript")]
    assert finals[-1] == (2, "Ever tried. Ever failed.")
    # One answer, to everything that was said; the withdrawn reply left no trace.
    assert {m.turn_id for m in d.sent if m.audio is not None} == {2}
    assert not [e for e in d.events("llm_response") if e["turn_id"] == 1 and e["delta"]]
    history = d.session.state.history.turns
    assert [(t.user, t.assistant) for t in history] == [
        ("Ever tried. Ever failed.", "That is the whole line.")
    ]


async def test_partials_of_a_continued_turn_show_all_its_words():
    d = await Driver.start(_services(first_token_s=1.5))
    await d.feed(speech(0.8, seed=1))
    await d.run_for(0.4)
    await d.feed(speech(0.8, seed=2))
    partials = [e["text"] for e in d.events("partial_transcript") if e["turn_id"] == 2]
    assert partials and all(p.startswith("Ever tried. ") for p in partials)


async def test_speech_after_the_agent_was_heard_is_a_new_turn():
    d = await Driver.start(_services(first_token_s=0.0))
    await d.feed(speech(0.8, seed=1))
    await d.run_for(1.0)  # the answer is playing
    assert d.audio_bytes(1) > 0
    await d.feed(speech(0.8, seed=2))
    await d.run_for(3.0)
    assert d.events("turn_continued") == []
    finals = [(e["turn_id"], e["text"]) for e in d.events("final_transcript")]
    assert finals == [(1, "Ever tried."), (2, "Ever failed.")]


async def test_continuation_can_be_turned_off():
    d = await Driver.start(_services(first_token_s=1.5, turns={"continuation": False}))
    await d.feed(speech(0.8, seed=1))
    await d.run_for(0.4)
    await d.feed(speech(0.8, seed=2))
    await d.run_for(3.0)
    assert d.events("turn_continued") == []
    assert [e["text"] for e in d.events("final_transcript")] == ["Ever tried.", "Ever failed."]


async def test_speech_long_after_the_turn_ended_is_a_new_turn():
    d = await Driver.start(_services(first_token_s=6.0))
    await d.feed(speech(0.8, seed=1))
    await d.run_for(3.0)  # longer than continuation_window_s, and still no answer
    await d.feed(speech(0.8, seed=2))
    assert d.events("turn_continued") == []
