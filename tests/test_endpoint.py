"""The end-of-turn policy (turns/endpoint.py) on its own, and in a session with a scripted
judge on virtual time."""

from __future__ import annotations

import pytest

from voxloop.testing.fakes import FakeLLM, FakeSTT, FakeTurnJudge
from voxloop.turns.endpoint import Endpointing, PauseEvidence

from engine_helpers import Driver, make_services, speech

COMBINED = Endpointing(
    mode="combined",
    normal_s=0.5,
    unfinished_s=1.2,
    question_s=0.35,
    complete_p=0.5,
    max_silence_s=1.0,
    long_speech_s=6.0,
    long_silence_s=1.2,
)


def test_silence_and_words_modes_ignore_the_judge():
    silence = Endpointing(mode="silence", normal_s=0.5)
    assert silence.wait(probability=1.0, words="What time is it?") == 0.5
    words = Endpointing(mode="words", normal_s=0.5, unfinished_s=1.2, question_s=0.35)
    assert words.wait(probability=1.0) == 0.5
    assert words.wait(words="I'd like a table for") == 1.2
    assert words.wait(words="What time is it now?") == 0.35


def test_judge_mode_ends_at_once_or_waits_for_the_fallback():
    judge = Endpointing(mode="judge", complete_p=0.5, max_silence_s=1.0)
    assert judge.wait(probability=0.9) == 0.0
    assert judge.wait(probability=0.2) == 1.0
    assert judge.wait() == 1.0  # nothing known yet


@pytest.mark.parametrize(
    ("words", "probability", "speech_s", "expected"),
    [
        (None, 0.9, 1.0, 0.0),  # the model is sure, the words are not in yet: now
        (None, 0.1, 1.0, 1.0),  # unsure: the fallback
        ("I'd like to book a table for", 0.9, 1.0, 1.2),  # unfinished words veto the model
        ("What is the boiling point of water?", 0.1, 2.0, 0.35),  # a question ends soon
        ("The weather is nice today.", 0.2, 2.0, 1.0),
        (None, 0.99, 7.0, 1.2),  # seven seconds of speech: someone reading, wait longer
        ("Is this the end of the poem, then?", 0.99, 7.0, 0.35),  # but a question ends it
    ],
)
def test_combined_policy(words, probability, speech_s, expected):
    assert COMBINED.wait(words=words, probability=probability, speech_s=speech_s) == expected


def test_pause_evidence_applies_each_arrival_and_ignores_stale_ones():
    waits: list[float] = []
    evidence = PauseEvidence(COMBINED, waits.append, floor_s=0.2)
    pause = evidence.paused(speech_s=1.0)
    evidence.judged(pause, 0.95)
    assert waits[-1] == 0.2  # "now", but never less than the pause it was judged at
    evidence.heard(pause, "Send a message to")
    assert waits[-1] == 1.2  # the words came in and veto
    evidence.reset()
    evidence.judged(pause, 0.95)  # a late answer for a pause that is over changes nothing
    assert waits[-1] == 1.0
    later = evidence.paused(speech_s=2.0)  # the same utterance pauses again
    evidence.judged(pause, 0.95)  # the first pause's answer is not this one's
    assert waits[-1] == 1.0 and later != pause


def test_a_client_asking_for_patience_gets_it():
    from voxloop.config.settings import Settings

    policy = Endpointing.from_settings(Settings().turns, silence_s=2.0)
    assert policy.wait(probability=0.1) == 2.0
    assert policy.wait(probability=0.99) == 0.0  # the model may still end it sooner


async def test_a_sure_judge_ends_the_turn_at_the_pause():
    judge = FakeTurnJudge(0.95)
    svc = make_services(stt=FakeSTT(["book me a taxi"]), llm=FakeLLM(["Done."]), judge=judge)
    d = await Driver.start(svc)
    await d.feed(speech(1.0))
    await d.run_for(0.3)  # the judge runs at the 0.2 s pause and says "complete"
    assert judge.calls and judge.calls[0] >= 1.0
    assert [e["text"] for e in d.events("final_transcript")] == ["book me a taxi"]


async def test_an_unsure_judge_waits_for_the_longest_silence():
    judge = FakeTurnJudge(0.1)
    svc = make_services(stt=FakeSTT(["so what I was thinking"]), judge=judge)
    d = await Driver.start(svc)
    await d.feed(speech(1.0))
    await d.run_for(0.8)  # past the old 0.5 s silence, short of the 1.0 s fallback
    assert d.events("final_transcript") == []
    await d.run_for(0.4)
    assert len(d.events("final_transcript")) == 1


async def test_a_failing_judge_leaves_the_fallback_to_end_the_turn():
    def broken(audio):
        raise RuntimeError("model crashed")

    svc = make_services(stt=FakeSTT(["hello"]), judge=FakeTurnJudge(broken))
    d = await Driver.start(svc)
    await d.feed(speech(0.8))
    await d.run_for(1.3)
    assert [e["text"] for e in d.events("final_transcript")] == ["hello"]
    assert not d.events("error")


async def test_without_a_judge_the_word_rules_decide():
    svc = make_services(stt=FakeSTT(["hello there"]))
    d = await Driver.start(svc)
    assert d.session.endpoint.policy.mode == "words"


async def test_an_unsure_judge_looks_again_after_more_silence():
    judge = FakeTurnJudge([0.2, 0.9])
    svc = make_services(stt=FakeSTT(["is it raining"]), judge=judge)
    d = await Driver.start(svc)
    await d.feed(speech(1.0))
    await d.run_for(0.3)
    assert d.events("final_transcript") == [] and len(judge.calls) == 1
    await d.run_for(0.3)  # the second look, 0.2 s later, is sure: well before 1.0 s
    assert len(judge.calls) == 2 and judge.calls[1] > judge.calls[0]
    assert len(d.events("final_transcript")) == 1
