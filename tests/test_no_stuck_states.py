"""Every path through a turn ends back at listening, whatever goes wrong on the way.

Each scenario drives a session into some state, perturbs it (a cancel, a provider error, a
pause, a disconnect...), and then checks the same things: no reply is left active, no
session task but the VAD loop is alive, the status says listening, and the next turn works.
"""

from __future__ import annotations

import asyncio

import pytest

from voxloop.protocol.messages import Interrupt, Reset, Start, Stop, Text
from voxloop.testing.fakes import FakeLLM, FakeSTT, FakeTTS

from engine_helpers import Driver, make_services, speech

LONG = "One sentence here. Another sentence there. A third one to finish the answer off."


class FailingLLM(FakeLLM):
    def __init__(self, after_tokens: int, **kw) -> None:
        super().__init__(**kw)
        self.after_tokens = after_tokens

    async def generate(self, messages, **kw):
        for i, word in enumerate(LONG.split()[: self.after_tokens]):
            yield word if i == 0 else " " + word
        raise RuntimeError("the model crashed")


class HangingLLM(FakeLLM):
    async def generate(self, messages, **kw):
        await asyncio.Event().wait()
        yield ""  # pragma: no cover


class FailingTTS(FakeTTS):
    async def synthesize(self, text):
        raise RuntimeError("voice file corrupt")
        yield  # pragma: no cover


class FailingSTT(FakeSTT):
    async def transcribe(self, audio):
        async for _ in audio:
            raise RuntimeError("decoder died")
        yield  # pragma: no cover


async def _voice_turn(d: Driver) -> None:
    await d.feed(speech(0.6))
    await d.run_for(0.7)


async def _text_turn(d: Driver) -> None:
    await d.session.handle(Text(content="tell me"))
    await d.pump()


async def interrupt_while_synthesizing(d):
    d.session.services.tts = FakeTTS(latency_s=2.0, clock=d.clock)
    await _text_turn(d)
    await d.run_for(0.5)
    assert d.session.status == "thinking"
    await d.session.handle(Interrupt())


async def interrupt_while_waiting_for_the_first_token(d):
    d.session.services.llm = FakeLLM([LONG], first_token_s=3.0, clock=d.clock)
    await _text_turn(d)
    await d.run_for(0.5)
    await d.session.handle(Interrupt())


async def interrupt_a_hanging_llm(d):
    d.session.services.llm = HangingLLM(clock=d.clock)
    await _text_turn(d)
    await d.run_for(2.0)
    await d.session.handle(Interrupt())


async def llm_error_before_any_token(d):
    d.session.services.llm = FailingLLM(0, clock=d.clock)
    await _text_turn(d)
    await d.run_for(1.0)
    assert d.events("error")[-1]["code"] == "reply_failed"


async def llm_error_while_speaking(d):
    d.session.services.llm = FailingLLM(6, clock=d.clock)
    await _text_turn(d)
    await d.run_for(1.0)
    assert d.events("error")[-1]["code"] == "reply_failed"


async def tts_error_on_every_sentence(d):
    d.session.services.tts = FailingTTS(clock=d.clock)
    await _text_turn(d)
    await d.run_for(1.0)
    assert d.events("error")[-1]["code"] == "tts_failed"


async def stt_error_mid_utterance(d):
    d.session.services.stt = d.session.listener.stt = FailingSTT(clock=d.clock)
    await _voice_turn(d)
    assert d.events("error")[-1]["code"] == "stt_failed"


async def barge_in_then_silence(d):
    await _text_turn(d)
    await d.run_for(1.0)
    await d.feed(speech(0.4, seed=5))  # "fake transcript ..." words: a real interruption
    await d.run_for(1.5)


async def pause_then_interrupt_message(d):
    _no_words(d)
    await _text_turn(d)
    await d.run_for(1.0)
    await d.feed(speech(0.3, seed=5))
    assert d.session.reply is not None and d.session.reply.paused
    await d.session.handle(Interrupt())


def _no_words(d: Driver) -> None:
    """From now on the STT hears no words: a pause holds until its timeout."""
    d.session.services.stt = d.session.listener.stt = FakeSTT([""] * 20, clock=d.clock)


async def pause_then_stop_and_start(d):
    _no_words(d)
    await _text_turn(d)
    await d.run_for(1.0)
    await d.feed(speech(0.3, seed=5))
    assert d.session.reply is not None and d.session.reply.paused
    await d.session.handle(Stop())
    await d.pump()
    assert d.session.status == "idle"
    await d.session.handle(Start())


async def reset_while_speaking(d):
    await _text_turn(d)
    await d.run_for(1.0)
    await d.session.handle(Reset())


async def text_while_speaking(d):
    await _text_turn(d)
    await d.run_for(1.0)
    await d.session.handle(Text(content="something else"))
    await d.run_for(8.0)


async def user_resumes_after_a_speculative_pause(d):
    await d.feed(speech(0.5))
    await d.run_for(0.3)  # a pause: a speculative reply starts, held back
    await d.feed(speech(0.5, seed=9))  # the user goes on: it is dropped
    await d.run_for(0.8)


SCENARIOS = [
    interrupt_while_synthesizing,
    interrupt_while_waiting_for_the_first_token,
    interrupt_a_hanging_llm,
    llm_error_before_any_token,
    llm_error_while_speaking,
    tts_error_on_every_sentence,
    stt_error_mid_utterance,
    barge_in_then_silence,
    pause_then_interrupt_message,
    pause_then_stop_and_start,
    reset_while_speaking,
    text_while_speaking,
    user_resumes_after_a_speculative_pause,
]


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda f: f.__name__)
async def test_every_path_returns_to_listening(scenario):
    clock_services = make_services(llm=FakeLLM([LONG], token_s=0.05))
    d = await Driver.start(clock_services)
    await scenario(d)
    await d.run_for(10.0)  # long enough for anything still legitimately running to finish
    s = d.session
    assert s.reply is None or s.reply.done
    assert s.status == "listening"
    assert d.events("status")[-1]["status"] == "listening"
    assert [t.get_name().split("-")[0] for t in s._tasks if not t.done()] == ["vad"]
    # ...and the next turn works end to end.
    s.services.llm = FakeLLM(["All good."], clock=d.clock)
    s.services.tts = FakeTTS(clock=d.clock)
    await s.handle(Text(content="are you there?"))
    await d.run_for(3.0)
    assert s.state.history.turns[-1].assistant == "All good."
    assert s.status == "listening"


async def test_a_disconnect_while_paused_leaves_nothing_behind():
    before = asyncio.all_tasks()
    d = await Driver.start(make_services(llm=FakeLLM([LONG], token_s=0.05)))
    _no_words(d)
    await _text_turn(d)
    await d.run_for(1.0)
    await d.feed(speech(0.3, seed=5))
    assert d.session.reply.paused
    await d.session.close()
    await d.pump()
    assert [t for t in asyncio.all_tasks() - before if not t.done()] == []
