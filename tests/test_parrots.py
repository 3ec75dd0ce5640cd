"""A reply that only repeats the user's words is asked again, and never ends in silence."""

from __future__ import annotations

from voxloop.config.reply import NO_ANSWER
from voxloop.testing.fakes import FakeLLM, FakeSTT, last_user

from engine_helpers import Driver, make_services, speech


def _parrot(messages) -> str:
    return last_user(messages).split("\n")[0]  # the user's words, without the nudge


async def _said(llm: FakeLLM, **settings) -> str:
    stt = FakeSTT(["Mary rolled the barrel."])
    d = await Driver.start(make_services(stt=stt, llm=llm, **settings))
    await d.feed(speech(1.0))
    await d.run_for(4.0)
    done = [e for e in d.events("llm_response") if e["is_complete"]]
    return done[-1]["content"]


async def test_a_model_that_only_parrots_gets_the_fallback_line_spoken():
    assert await _said(FakeLLM(_parrot)) == NO_ANSWER


async def test_asked_again_a_model_that_answers_is_heard():
    answers = iter(["Mary rolled the barrel.", "That sounds like hard work."])
    assert await _said(FakeLLM(lambda m: next(answers))) == "That sounds like hard work."


async def test_the_fallback_line_can_be_turned_off():
    assert await _said(FakeLLM(_parrot), reply={"no_answer": ""}) == ""
