"""Speech over the agent: pause at once, then the words decide (bargein.py)."""

from __future__ import annotations

import pytest

from voxloop.hearing.echo import EchoEvidence
from voxloop.testing.fakes import FakeLLM, FakeSTT
from voxloop.turns.bargein import foreign_words, overlap_verdict

from engine_helpers import Driver, make_services, speech

AGENT = (
    "Sure, here is what I found. The museum opens at nine in the morning and closes at six "
    "in the evening, and on Sundays it stays open until eight."
)
# What the audio says (hearing/echo.py): all the agent's echo; a user's sound amid it (a
# backchannel in the echo); the user over a faint echo.
ECHO = EchoEvidence(energy=0.95, time=1.0)
AMID_ECHO = EchoEvidence(energy=0.3, time=0.8)
FAINT = EchoEvidence(energy=0.2, time=0.1)

LONG = (
    "This is the first sentence of a long answer. Here comes the second sentence now. "
    "And a third one follows it. The fourth sentence is here too. Finally the fifth one."
)


@pytest.mark.parametrize(
    "heard, verdict",
    [
        ("", "empty"),
        ("  ", "empty"),
        ("Mm-hmm.", "backchannel"),
        ("Uh-huh.", "backchannel"),
        ("Yeah, right.", "backchannel"),
        ("Okay.", "backchannel"),
        # The agent's own words, but nothing in the audio says it is its echo: the user's.
        ("The museum opens at 9 in the morning", "interrupt"),
        ("Tuesday", "interrupt"),
        ("Wait, stop.", "interrupt"),
        ("No, I meant Tuesday.", "interrupt"),
        ("Hold on a second.", "interrupt"),
        ("yeah but what about Monday", "interrupt"),
        ("I want the opening hours for Monday", "interrupt"),
    ],
)
def test_overlap_verdict(heard, verdict):
    assert overlap_verdict(heard, AGENT) == verdict


@pytest.mark.parametrize(
    "heard",
    [
        "The museum opens at 9 in the morning",  # digits match the spoken words
        "on Sunday's it stays open",  # a near miss on faint audio is still echo
    ],
)
def test_the_agents_words_are_echo_only_when_the_audio_says_so(heard):
    assert overlap_verdict(heard, AGENT, echo=ECHO) == "echo"
    assert overlap_verdict(heard, AGENT, echo=FAINT) == "interrupt"
    assert overlap_verdict(heard, AGENT) == "interrupt"
    # A "mm-hmm" amid the echo: the agent's words are the echo's, and no word is the user's.
    assert overlap_verdict(heard, AGENT, echo=AMID_ECHO) == "backchannel"


def test_fail_again_over_try_again_is_the_users_without_echo_evidence():
    """Issue 17: "again" is the agent's word and "fail" a single foreign one; with no echo
    path the words are the user's, not the agent's echo."""
    assert overlap_verdict("Fail again.", "Try again.") == "interrupt"
    assert overlap_verdict("Fail again.", "Try again.", echo=FAINT) == "interrupt"
    assert overlap_verdict("Fail again.", "Try again.", echo=ECHO) == "echo"


def test_the_evidence_is_measured_only_when_the_words_leave_it_open():
    asked = []

    def evidence() -> EchoEvidence:
        asked.append(1)
        return ECHO

    assert overlap_verdict("Mm-hmm.", AGENT, echo=evidence) == "backchannel"
    assert overlap_verdict("Wait, stop.", AGENT, echo=evidence) == "interrupt"
    assert asked == []
    assert overlap_verdict("in the morning", AGENT, echo=evidence) == "echo"
    assert asked == [1]


def test_a_word_cut_off_at_the_edge_is_not_the_users_yet():
    # A streaming partial ("the mus..."): the last word may still change.
    assert overlap_verdict("the", AGENT, cut=(False, True)) == "backchannel"
    assert overlap_verdict("yeah the", AGENT, cut=(False, True)) == "backchannel"
    assert overlap_verdict("stop", AGENT, cut=(False, True)) == "interrupt"


def test_foreign_words_are_the_ones_the_agent_did_not_say():
    assert foreign_words("okay the museum on Tuesday", AGENT) == ["tuesday"]
    assert foreign_words("stop", "") == ["stop"]


def test_a_word_cut_off_at_the_edge_of_the_audio_does_not_count_unless_it_is_a_cue():
    assert foreign_words("here is what I found the music", AGENT, cut=(False, True)) == []
    assert foreign_words("here is what I found the music", AGENT) == ["music"]
    assert foreign_words("in the morning stop", AGENT, cut=(True, True)) == ["stop"]
    assert foreign_words("lunch and closes at six", AGENT, cut=(True, False)) == []


def test_misheard_echo_with_one_or_two_odd_words_is_still_echo():
    # When the audio shows it is the agent's own voice: one or two odd words are misreads.
    assert overlap_verdict("and causes that sex in the evening", AGENT, echo=ECHO) == "echo"
    assert overlap_verdict("Tuesday", AGENT, echo=ECHO) == "echo"
    assert overlap_verdict("mm-hmm causes that sex", AGENT, echo=AMID_ECHO) == "backchannel"
    # Three are the user's, whatever the audio says.
    assert overlap_verdict("a table for Tuesday please", AGENT, echo=ECHO) == "interrupt"


async def _speaking(stt_script, **settings):
    llm = FakeLLM([LONG], token_s=0.05)
    d = await Driver.start(make_services(llm=llm, stt=FakeSTT(stt_script), **settings))
    await d.feed(speech(0.8))
    await d.run_for(0.6)  # end of turn
    await d.run_for(1.5)  # the agent talks for a while
    assert d.session.status == "speaking"
    return d


async def _full_reply_bytes() -> int:
    d = await _speaking(["tell me a story"], turns={"barge_in": False})
    await d.run_for(12.0)
    assert d.session.status == "listening"
    return d.audio_bytes(1)


@pytest.mark.parametrize(
    "words, verdict",
    [
        ("mm-hmm", "backchannel"),
        ("", "empty"),
        # ("the first sentence of a long answer", "echo") needs an echo path in the mic:
        # tests/test_echo_evidence.py.
    ],
)
async def test_a_false_interruption_resumes_where_the_agent_paused(words, verdict):
    full = await _full_reply_bytes()
    d = await _speaking(["tell me a story", words])
    await d.feed(speech(0.4, seed=1))  # over the agent
    assert [s["reason"] for s in d.events("tts_stop")] == ["paused"]
    reply = d.session.reply
    heard_s = sum(p.duration for p in reply.played.frames[: reply.played.banked])
    assert heard_s > 0
    await d.run_for(1.0)  # the words (or none) come in: nothing to stop for
    resumed = [e for e in d.events("tts_start") if e.get("resumed")]
    assert len(resumed) == 1
    assert [e["verdict"] for e in d.events("false_interruption")] == [verdict]
    await d.run_for(12.0)
    # It finished its answer, uninterrupted, and the backchannel got no answer of its own.
    assert d.session.status == "listening"
    turns = d.session.state.history.turns
    assert [(t.turn_id, t.interrupted) for t in turns] == [(1, False)]
    assert turns[0].assistant == LONG
    assert [e["turn_id"] for e in d.events("final_transcript")] == [1]
    assert len(d.session.services.llm.requests) == 1
    # What was heard before the pause plus what came after it is the whole reply:
    # nothing lost, nothing said twice.
    restart = next(i for i, m in enumerate(d.sent) if m.json and m.json.get("resumed"))
    after_resume = sum(len(m.audio) for m in d.sent[restart:] if m.audio is not None)
    assert abs(heard_s * 16000 * 2 + after_resume - full) <= 2 * 640


async def test_a_real_word_turns_the_pause_into_an_interruption():
    d = await _speaking(["tell me a story", "wait stop"])
    await d.feed(speech(0.4, seed=1))
    await d.run_for(0.3)
    assert [s["reason"] for s in d.events("tts_stop")] == ["paused", "barge_in"]
    assert d.events("false_interruption") == []
    await d.run_for(1.0)
    assert [e["text"] for e in d.events("final_transcript")] == ["tell me a story", "wait stop"]
    assert d.session.state.history.turns[0].interrupted


async def test_the_agents_words_with_no_echo_path_are_the_users_turn():
    """The words match the reply, but the microphone carries no trace of its audio (a
    headset): the user said them, so they interrupt and get an answer."""
    d = await _speaking(["tell me a story", "the first sentence of a long answer"])
    await d.feed(speech(0.4, seed=1))
    await d.run_for(1.0)
    assert [s["reason"] for s in d.events("tts_stop")] == ["paused", "barge_in"]
    assert d.events("false_interruption") == []
    assert [e["turn_id"] for e in d.events("final_transcript")] == [1, 2]
    assert len(d.session.services.llm.requests) == 2


async def test_vad_mode_stops_for_a_backchannel_too():
    d = await _speaking(["tell me a story", "mm-hmm"], turns={"interruption": "vad"})
    await d.feed(speech(0.4, seed=1))
    assert [s["reason"] for s in d.events("tts_stop")] == ["barge_in"]


async def test_a_paused_reply_that_hears_nothing_resumes_after_the_timeout():
    script = ["tell me a story"] + [""] * 10  # the later looks at the sound find no words
    d = await _speaking(script, turns={"false_interruption_timeout_s": 0.6})
    await d.feed(speech(2.0, seed=3))  # a long sound that never becomes words
    assert [e["verdict"] for e in d.events("false_interruption")] == ["empty"]
    assert any(e.get("resumed") for e in d.events("tts_start"))
    assert d.session.status == "speaking"
