"""A reply that waits in a shared LLM's queue is told so and is not failed as a hang.

The user trial: a second live session made the first one's reply fail after 30 s
("nothing within 30 s before the first token") while it only waited for the shared model.
Here an LLM reports a place in its queue (`llm_queued`), waits on virtual time, then is
served (`llm_serving`): the client gets a `queued` status, a short spoken hold line once
the wait passes `session.hold_line_after_s`, and the answer; only a stall after serving,
or a queue past `session.llm_queue_timeout_s`, fails the turn.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence

from voxloop.protocol.messages import Text
from voxloop.providers.base import Message
from voxloop.telemetry.metrics import llm_queued, llm_serving
from voxloop.testing.fakes import FakeLLM, FakeTTS

from engine_helpers import Driver, make_services


class QueuedLLM(FakeLLM):
    """Keeps each request `queue_s` in line at `place`, then (if `hang_s`) goes quiet
    after it is served, then answers."""

    def __init__(self, replies: Sequence[str], queue_s: float, place: int = 2, hang_s=0.0):
        super().__init__(replies)
        self.queue_s, self.place, self.hang_s = queue_s, place, hang_s

    async def generate(self, messages: Sequence[Message], **kw) -> AsyncIterator[str]:
        llm_queued(self.place)
        await self.clock.sleep(self.queue_s)
        llm_serving()
        if self.hang_s:
            await self.clock.sleep(self.hang_s)
        async for token in super().generate(messages, **kw):
            yield token


async def _turn(llm: FakeLLM, seconds: float, **settings) -> tuple[Driver, FakeTTS]:
    tts = FakeTTS()
    d = await Driver.start(make_services(llm=llm, tts=tts, **settings))
    await d.session.handle(Text(content="What is the capital of France?"))
    await d.run_for(seconds, step_s=0.25)
    return d, tts


async def test_a_long_wait_in_the_queue_is_not_a_hang_and_the_user_is_told():
    d, tts = await _turn(QueuedLLM(["Paris is the capital."], queue_s=45.0), 50.0)
    statuses = [e for e in d.events("status") if e["status"] == "queued"]
    assert statuses and statuses[0]["position"] == 2
    assert not [e for e in d.events("error")], d.events("error")
    turn = d.session.state.history.turns[0]
    assert "Paris is the capital." in turn.assistant
    assert not turn.assistant.startswith("One moment")  # heard, but no answer: not remembered
    # The hold line came first, once, and the status left "queued" when it was served.
    assert tts.texts[0] == "One moment, please." and tts.texts.count("One moment, please.") == 1
    after = [e["status"] for e in d.events("status")]
    assert after.count("queued") == 1 and after[-1] == "listening"
    assert after[after.index("queued") + 1] in ("thinking", "speaking")


async def test_a_short_wait_says_no_hold_line():
    d, tts = await _turn(QueuedLLM(["Paris."], queue_s=1.0), 5.0)
    assert "One moment, please." not in tts.texts
    assert d.session.state.history.turns[0].assistant == "Paris."


async def test_no_hold_line_when_it_is_turned_off():
    _, tts = await _turn(QueuedLLM(["Paris."], queue_s=5.0), 8.0, session={"hold_line": ""})
    assert tts.texts == ["Paris."]


async def test_a_stall_after_being_served_still_fails_the_turn():
    # Served after 5 s in line, then silent for 40 s: the 30 s watchdog counts from serving.
    d, _ = await _turn(QueuedLLM(["Paris."], queue_s=5.0, hang_s=40.0), 45.0)
    errors = d.events("error")
    assert errors and "nothing within 30 s before the first token" in errors[0]["message"]


async def test_a_queue_that_never_moves_fails_after_its_own_limit():
    llm = QueuedLLM(["Paris."], queue_s=1000.0)
    d, _ = await _turn(llm, 70.0, session={"llm_queue_timeout_s": 60})
    errors = d.events("error")
    assert errors and "still queued after 60 s" in errors[0]["message"]
