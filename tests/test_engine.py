"""The conversation engine on fake providers and virtual time: no sleeps, no models."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from voxloop.protocol.messages import Interrupt, Playback, Reset, Stop, Text
from voxloop.providers.base import AudioChunk
from voxloop.testing.fakes import FakeLLM, FakeSTT, FakeTTS

from engine_helpers import Driver, make_services, quiet, speech

LONG = (
    "This is the first sentence of a long answer. Here comes the second sentence now. "
    "And a third one follows it. The fourth sentence is here too. Finally the fifth one."
)


async def test_end_of_turn_after_the_configured_silence():
    svc = make_services(stt=FakeSTT(["hello there"]), llm=FakeLLM(["Hi! How can I help?"]))
    d = await Driver.start(svc)
    await d.feed(speech(1.0))
    await d.run_for(0.3)  # a pause shorter than the 0.5 s end-of-turn silence
    assert d.events("final_transcript") == []
    await d.run_for(0.4)
    finals = d.events("final_transcript")
    assert [e["text"] for e in finals] == ["hello there"]
    await d.run_for(3.0)
    types = d.types()
    for earlier, later in [
        ("final_transcript", "llm_response"),
        ("llm_response", "tts_start"),
        ("tts_start", "audio"),
        ("audio", "tts_end"),
        ("tts_end", "metrics"),
    ]:
        assert types.index(earlier) < types.index(later), (earlier, later, types)
    complete = [e for e in d.events("llm_response") if e["is_complete"]]
    assert complete[-1]["content"] == "Hi! How can I help?"
    assert d.events("status")[-1]["status"] == "listening"
    turn = d.session.state.history.turns[-1]
    assert (turn.user, turn.assistant, turn.interrupted) == (
        "hello there",
        "Hi! How can I help?",
        False,
    )


async def test_partials_arrive_before_the_final():
    svc = make_services(stt=FakeSTT(["the quick brown fox."]))
    d = await Driver.start(svc)
    await d.feed(speech(1.0))
    await d.run_for(0.7)
    partials = [e["text"] for e in d.events("partial_transcript")]
    assert partials == ["the", "the quick", "the quick brown"]
    assert d.types().index("partial_transcript") < d.types().index("final_transcript")


async def test_short_blip_is_not_a_turn():
    svc = make_services(end_of_turn_silence_s=0.5)
    d = await Driver.start(svc)
    await d.feed(speech(0.06))
    await d.run_for(1.0)
    assert d.events("final_transcript") == []
    assert svc.stt.calls == []


async def test_end_of_turn_silence_is_configurable():
    svc = make_services(turns={"end_of_turn_silence_s": 1.2})
    d = await Driver.start(svc)
    await d.feed(speech(0.5))
    await d.run_for(0.9)
    assert d.events("final_transcript") == []
    await d.run_for(0.5)
    assert len(d.events("final_transcript")) == 1


async def test_every_event_carries_session_and_turn_ids():
    d = await Driver.start(make_services())
    await d.feed(speech(0.5))
    await d.run_for(3.0)
    sid = d.session.session_id
    for e in d.events():
        assert e["session_id"] == sid
        if e["type"] in {"partial_transcript", "final_transcript", "llm_response", "tts_start"}:
            assert e["turn_id"] == 1, e


async def _speaking(reply: str = LONG, **kw) -> Driver:
    """A session whose agent is in the middle of a long spoken answer."""
    llm = FakeLLM([reply], token_s=0.1)
    d = await Driver.start(make_services(llm=llm, stt=FakeSTT(["tell me a story"]), **kw))
    await d.feed(speech(0.8))
    await d.run_for(0.6)  # end of turn
    await d.run_for(1.5)  # the agent talks for a while
    assert d.session.status == "speaking"
    return d


@pytest.mark.parametrize("mode", ["words", "vad"])
async def test_barge_in_cancels_llm_and_tts_and_keeps_what_was_heard(mode):
    d = await _speaking(turns={"interruption": mode})
    llm = d.session.services.llm
    tokens_before = llm.tokens_produced
    assert tokens_before < len(LONG.split())  # the LLM was still writing
    await d.feed(speech(0.3, seed=1))  # the user talks over the agent
    await d.run_for(0.1)
    stops = d.events("tts_stop")
    # The audio stops at once either way; "words" pauses until it hears a word, and the
    # words ("fake transcript of ...") make it an interruption.
    expected = ["paused", "barge_in"] if mode == "words" else ["barge_in"]
    assert [s["reason"] for s in stops] == expected
    first_stop = d.sent.index(next(m for m in d.sent if m.json == stops[0]))
    # Nothing of the old turn is sent after the stop, and the LLM stopped writing.
    after = d.sent[first_stop + 1 :]
    assert all(m.turn_id != 1 or (m.json and m.json["type"] != "tts_start") for m in after)
    assert not any(m.audio is not None and m.turn_id == 1 for m in after)
    tokens_at_stop = llm.tokens_by_request[0]
    await d.run_for(0.1)  # under the end-of-turn silence: the next turn has not started
    assert llm.tokens_by_request[0] == tokens_at_stop
    turn = d.session.state.history.turns[0]
    assert turn.interrupted
    assert turn.assistant, "some of the reply had been heard"
    assert LONG.startswith(turn.assistant.rstrip("."))
    assert len(turn.assistant) < len(LONG)
    # The interrupting speech is the next user turn.
    await d.run_for(0.4)
    assert [e["turn_id"] for e in d.events("final_transcript")] == [1, 2]


async def test_heard_text_follows_time_played():
    d = await _speaking(turns={"barge_in": False})
    reply = d.session.reply
    played_s = d.clock.now() - reply.played.frames[0].start
    await d.session.handle(Interrupt())
    await d.pump()
    heard = d.session.state.history.turns[0].assistant
    # FakeTTS speaks 50 ms per character: the heard text is about as long as the time played.
    expected_chars = played_s / 0.05
    assert abs(len(heard) - expected_chars) < 12, (heard, expected_chars)


async def test_client_playback_reports_override_the_estimate():
    d = await _speaking()
    reply = d.session.reply
    await d.session.handle(Playback(ms=0, turn_id=reply.turn_id))
    await d.session.handle(Interrupt())
    await d.pump()
    turn = d.session.state.history.turns[0]
    assert turn.interrupted
    assert turn.assistant == ""  # the client said it had played nothing


async def test_explicit_interrupt_is_acknowledged():
    d = await _speaking()
    await d.session.handle(Interrupt())
    await d.pump()
    types = d.types()
    assert "interrupt_acknowledged" in types
    assert types.index("tts_stop") < types.index("interrupt_acknowledged")
    assert d.session.status == "listening"


async def test_barge_in_can_be_turned_off():
    d = await _speaking(turns={"barge_in": False})
    await d.feed(speech(0.5, seed=2))
    assert d.events("tts_stop") == []
    assert d.session.status == "speaking"


class OrderedTTS(FakeTTS):
    """Sentence i is slow for i == 0 and fast after, so later ones finish first; its audio
    is filled with the value i + 1, so the order of playback can be read back."""

    def __init__(self) -> None:
        super().__init__()
        self.finished: list[str] = []

    async def synthesize(self, text: str):
        index = int(text.split()[1]) - 1
        await self.clock.sleep(1.0 if index == 0 else 0.05)
        self.finished.append(text)
        yield AudioChunk(np.full(1600, index + 1, dtype=np.int16), self.sample_rate)


async def test_sentences_play_in_order_even_if_synthesized_out_of_order():
    reply = "Sentence 1 is here. Sentence 2 is here. Sentence 3 is here."
    tts = OrderedTTS()
    d = await Driver.start(make_services(llm=FakeLLM([reply]), tts=tts, session={"synth_ahead": 3}))
    await d.session.handle(Text(content="go"))
    await d.run_for(3.0)
    assert tts.finished[0] != "Sentence 1 is here."  # finished out of order...
    values = [int(np.frombuffer(m.audio, dtype="<i2")[0]) for m in d.sent if m.audio is not None]
    assert values == sorted(values) and set(values) == {1, 2, 3}  # ...but played in order


async def test_text_input_runs_a_turn_without_audio():
    d = await Driver.start(make_services(llm=FakeLLM(["Four."])))
    await d.session.handle(Text(content="What is two plus two?"))
    await d.run_for(1.0)
    assert d.session.state.history.turns[0].user == "What is two plus two?"
    assert d.session.state.history.turns[0].assistant == "Four."
    assert d.audio_bytes() > 0
    assert d.events("metrics")[0]["source"] == "text"


async def test_history_reaches_the_llm():
    llm = FakeLLM(["First answer.", "Second answer."])
    d = await Driver.start(make_services(llm=llm))
    await d.session.handle(Text(content="one"))
    await d.run_for(2.0)
    await d.session.handle(Text(content="two"))
    await d.run_for(2.0)
    roles = [(m.role, m.content) for m in llm.requests[1]][1:]
    assert roles == [("user", "one"), ("assistant", "First answer."), ("user", "two")]


async def test_two_sessions_stay_isolated():
    llm = FakeLLM(lambda msgs: f"Got {msgs[-1].content}.")
    svc = make_services(llm=llm)
    a = await Driver.start(svc)
    b = await Driver.start(svc)
    # Interleave their audio frame by frame: A speaks 0.6 s, B speaks 1.2 s.
    audio_a = np.concatenate([speech(0.6), quiet(3.0)])
    audio_b = np.concatenate([speech(1.2, seed=3), quiet(2.4)])
    for i in range(0, len(audio_a), 320):
        a.session.feed_audio(audio_a[i : i + 320])
        b.session.feed_audio(audio_b[i : i + 320])
        await svc.clock.advance(0.02)
        await a.pump()
        await b.pump()
    ta = a.session.state.history.turns
    tb = b.session.state.history.turns
    assert len(ta) == len(tb) == 1
    assert ta[0].user != tb[0].user
    assert ta[0].assistant == f"Got {ta[0].user}."
    assert tb[0].assistant == f"Got {tb[0].user}."
    assert {e["session_id"] for e in a.events()} == {a.session.session_id}
    assert {e["session_id"] for e in b.events()} == {b.session.session_id}
    assert a.session.session_id != b.session.session_id


async def test_close_mid_reply_leaves_no_task_behind():
    before = asyncio.all_tasks()
    d = await _speaking()
    assert len(asyncio.all_tasks() - before) > 0
    await d.session.close()
    await d.pump()
    leftover = [t for t in asyncio.all_tasks() - before if not t.done()]
    assert leftover == []


async def test_llm_failure_reports_an_error_and_listens_again():
    class FailingLLM(FakeLLM):
        async def generate(self, messages, **kw):
            yield "Partial"
            raise RuntimeError("model crashed")

    d = await Driver.start(make_services(llm=FailingLLM()))
    await d.session.handle(Text(content="hi"))
    await d.run_for(1.0)
    errors = d.events("error")
    assert errors and errors[0]["code"] == "reply_failed"
    assert "model crashed" in errors[0]["message"]
    # Nothing had been said, so the agent says sorry (through the TTS), then listens.
    assert d.session.status == "speaking"
    await d.run_for(6.0)
    assert d.session.status == "listening"
    apology = d.session.services.settings.session.apology
    assert d.session.services.tts.texts == [apology]
    assert d.audio_bytes(1) > 0
    assert d.session.state.history.turns[-1].assistant == apology
    # The session still works afterwards.
    d.session.services.llm = FakeLLM(["Recovered."])
    await d.session.handle(Text(content="again"))
    await d.run_for(1.0)
    assert d.session.state.history.turns[-1].assistant == "Recovered."


async def test_reset_clears_history_and_stop_is_acknowledged():
    d = await _speaking()
    await d.session.handle(Reset())
    await d.pump()
    assert d.session.state.history.turns == []
    assert d.events("tts_stop")
    await d.session.handle(Stop())
    await d.pump()
    assert d.events("stop_acknowledged")
    assert d.session.status == "idle"
    d.session.handle_audio_frame(b"\x00\x00" * 160)
    await d.pump()
    assert d.events("error")[-1]["code"] == "not_started"


def _timed_services(**settings):
    return make_services(
        stt=FakeSTT(["hi"], latency_s=0.2),
        llm=FakeLLM(["Hello there."], first_token_s=0.3),
        tts=FakeTTS(latency_s=0.1),
        **settings,
    )


async def test_metrics_for_each_turn():
    d = await Driver.start(_timed_services(turns={"speculative_silence_s": 0}))
    await d.feed(speech(0.6))
    await d.run_for(3.0)
    m = d.events("metrics")[0]
    assert m["vad_end_of_turn_ms"] == pytest.approx(500, abs=40)
    assert m["stt_final_ms"] == pytest.approx(200, abs=25)
    assert m["llm_first_token_ms"] == pytest.approx(300, abs=25)
    assert m["tts_first_audio_ms"] == pytest.approx(100, abs=25)
    # end of speech → end of turn (0.5 s silence) → STT → LLM → TTS, give or take a frame
    assert m["voice_to_voice_ms"] == pytest.approx(500 + 200 + 300 + 100, abs=80)
    assert m["interrupted"] is False
    assert d.session.services.metrics.turns[-1].turn_id == 1


async def test_speculation_starts_the_reply_at_the_pause():
    d = await Driver.start(_timed_services(turns={"speculative_silence_s": 0.2}))
    await d.feed(speech(0.6))
    await d.run_for(3.0)
    m = d.events("metrics")[0]
    assert m["stt_final_ms"] == 0.0  # the transcript was ready before the turn ended
    # pause (0.2 s) → STT → LLM → TTS, instead of waiting for the full 0.5 s first
    assert m["voice_to_voice_ms"] == pytest.approx(200 + 200 + 300 + 100, abs=80)
    assert d.session.state.history.turns[0].assistant == "Hello there."


async def test_audio_is_held_until_the_turn_really_ends():
    # Everything is instant: the speculative reply is ready long before the turn ends.
    d = await Driver.start(make_services(llm=FakeLLM(["Quick."])))
    await d.feed(speech(0.6))
    await d.run_for(0.45)  # paused for 0.45 s: speculating, but not yet the end of the turn
    assert d.audio_bytes() == 0
    assert d.events("llm_response") == []
    await d.run_for(0.1)
    assert d.audio_bytes() > 0
    types = d.types()
    assert types.index("final_transcript") < types.index("llm_response")
    await d.run_for(1.0)
    m = d.events("metrics")[0]
    assert m["voice_to_voice_ms"] == pytest.approx(500, abs=40)


async def test_a_discarded_speculation_leaves_no_trace():
    llm = FakeLLM(lambda msgs: f"Answer to {msgs[-1].content}.", token_s=0.05)
    d = await Driver.start(make_services(llm=llm, stt=FakeSTT(["I want to book a table"])))
    await d.feed(speech(0.6))
    await d.run_for(0.3)  # a mid-sentence pause: speculation starts...
    assert len(llm.requests) == 1
    await d.feed(speech(0.6, seed=5))  # ...but the user goes on
    await d.run_for(2.5)
    assert len(llm.requests) == 2
    assert llm.tokens_by_request[0] < len("Answer to I want to book a table.".split())
    turns = d.session.state.history.turns
    assert len(turns) == 1  # one turn, from the whole utterance
    finals = d.events("final_transcript")
    assert len(finals) == 1
    # Nothing from the speculative run reached the client before the real final transcript.
    first_reply_event = d.types().index("llm_response")
    assert d.types().index("final_transcript") < first_reply_event
    assert len(d.events("metrics")) == 1


@pytest.mark.parametrize("rate", [8000, 24000, 48000])
async def test_other_input_rates_are_resampled(rate):
    svc = make_services(stt=FakeSTT())
    d = await Driver.start(svc, sample_rate=rate)
    loud = np.random.default_rng(0).uniform(-0.3, 0.3, rate).astype(np.float32)  # 1 s
    audio = np.concatenate([loud, np.zeros(int(0.7 * rate), np.float32)])
    step = rate // 50
    for i in range(0, len(audio), step):
        d.session.feed_audio(audio[i : i + step])
        await d.clock.advance(0.02)
    await d.pump()
    assert len(d.events("final_transcript")) == 1
    # STT saw 16 kHz audio: ~1 s of speech plus pre-roll and the closing silence.
    assert 1.0 <= svc.stt.calls[0] <= 1.0 + 0.3 + 0.6


async def test_a_pause_that_sounds_unfinished_waits_longer():
    d = await Driver.start(make_services(stt=FakeSTT(["I'd like to book a table for"])))
    await d.feed(speech(0.6))
    await d.run_for(0.9)  # longer than the usual 0.5 s, shorter than the 1.2 s for "for..."
    assert d.events("final_transcript") == []
    await d.feed(speech(0.5, seed=9))  # "...four people"
    await d.run_for(1.5)
    assert len(d.events("final_transcript")) == 1  # one turn, not two


async def test_a_finished_sentence_ends_at_the_usual_silence():
    d = await Driver.start(make_services(stt=FakeSTT(["Book a table for four."])))
    await d.feed(speech(0.6))
    await d.run_for(0.6)
    assert len(d.events("final_transcript")) == 1


class Speaker:
    """The client's loudspeaker: plays what the server sent, and leaks it into the mic."""

    def __init__(self, delay_s: float, gain_db: float) -> None:
        self.delay = int(delay_s * 16000)
        self.gain = 10 ** (gain_db / 20)
        self.played = np.zeros(0, np.float32)

    def take(self, sent) -> None:
        for m in sent:
            if m.audio is not None:
                pcm = np.frombuffer(m.audio, dtype="<i2").astype(np.float32) / 32768
                self.played = np.concatenate([self.played, pcm])

    def echo(self, start: int, n: int) -> np.ndarray:
        out = np.zeros(n, np.float32)
        for i in range(n):
            j = start + i - self.delay
            if 0 <= j < len(self.played):
                out[i] = self.played[j] * self.gain
        return out


async def _talk_with_echo(d: Driver, seconds: float, speaker: Speaker, user=None) -> None:
    """Feed the microphone: the speaker's echo (plus the user, if any), in real-time steps."""
    step = 320
    for k in range(int(seconds * 50)):
        chunk = speaker.echo(k * step, step)
        if user is not None and k * step < len(user):
            chunk[: len(user[k * step : (k + 1) * step])] += user[k * step : (k + 1) * step]
        d.session.feed_audio(chunk)
        await d.clock.advance(0.02)
        speaker.take(await d.pump())


@pytest.mark.parametrize("suppression", [True, False])
async def test_the_agent_does_not_interrupt_itself_through_echo(suppression):
    llm = FakeLLM([LONG], token_s=0.01)
    svc = make_services(llm=llm, turns={"echo_suppression": suppression})
    d = await Driver.start(svc)
    await d.session.handle(Text(content="tell me a story"))
    speaker = Speaker(delay_s=0.08, gain_db=-6)
    await _talk_with_echo(d, 3.0, speaker)
    stopped = d.events("tts_stop")
    if suppression:
        assert stopped == [], "the agent's own voice interrupted it"
        assert d.session.status == "speaking"
    else:  # the baseline, to show the test can tell the difference
        assert "barge_in" in [s["reason"] for s in stopped]


async def test_the_user_still_interrupts_over_the_echo():
    svc = make_services(llm=FakeLLM([LONG], token_s=0.01), turns={"echo_suppression": True})
    d = await Driver.start(svc)
    await d.session.handle(Text(content="tell me a story"))
    speaker = Speaker(delay_s=0.08, gain_db=-10)
    await _talk_with_echo(d, 1.0, speaker)
    assert d.events("tts_stop") == []
    await _talk_with_echo(d, 1.0, speaker, user=speech(0.6, seed=4))
    assert [e["reason"] for e in d.events("tts_stop")] == ["paused", "barge_in"]
