"""What waits for a client is bounded: one that stops reading is dropped once more than
`limits.max_outbox_bytes` of audio and events wait for it, instead of holding them all in
the server's memory until the send timeout cuts it."""

from __future__ import annotations

from voxloop.clock import settle
from voxloop.protocol.messages import Start, Text
from voxloop.protocol.outbox import JSON_BYTES, Outbox
from voxloop.session.session import Session
from voxloop.testing.fakes import FakeLLM, FakeTTS

from engine_helpers import make_services, quiet

STORY = "Once upon a time there was a long story that went on and on. " * 20


def test_the_outbox_refuses_what_does_not_fit_and_says_so_once():
    told: list[int] = []
    box = Outbox(max_bytes=3000, on_overflow=told.append)
    box.control({"type": "status"})
    box.audio(b"\0" * 2000, turn_id=1)
    assert box.waiting_bytes == 2000 + JSON_BYTES
    box.get_nowait()  # the status goes: room for its size again
    box.audio(b"\0" * 900, turn_id=1)
    assert told == [] and len(box) == 2
    box.audio(b"\0" * 200, turn_id=1)  # over
    box.control({"type": "error"})
    assert told == [3000] and len(box) == 2 and box.overflowed
    assert box.drop_turn(1) == 2900 and box.waiting_bytes == 0


def test_unbounded_by_default():
    box = Outbox()
    for _ in range(100):
        box.audio(b"\0" * 100_000, turn_id=1)
    assert box.waiting_bytes == 10_000_000 and not box.overflowed


async def _unread_reply(max_outbox_bytes: int) -> Session:
    """A session whose long reply nobody takes from the outbox."""
    services = make_services(
        llm=FakeLLM([STORY]),
        tts=FakeTTS(sample_rate=48000, ms_per_char=60),
        limits={"max_outbox_bytes": max_outbox_bytes},
    )
    session = Session(services)
    await session.handle(Start(sample_rate=16000))
    await session.handle(Text(content="tell me a story"))
    for _ in range(400):  # 20 s of virtual time, the microphone sending silence
        session.feed_audio(quiet(0.05))
        await services.clock.advance(0.05)
        await settle()
    return session


async def test_a_client_that_does_not_read_is_dropped_past_the_bound():
    session = await _unread_reply(256 << 10)
    assert session.ending.is_set()
    code, reason, abort = session.ended_with
    assert code == 1008 and "too slow" in reason and "max_outbox_bytes" in reason and abort
    assert session.outbox.waiting_bytes <= 256 << 10
    await session.close()


async def test_a_reply_that_fits_is_kept_whole():
    session = await _unread_reply(64 << 20)
    assert not session.ending.is_set()
    assert session.outbox.waiting_bytes > 256 << 10  # the same reply, all of it waiting
    await session.close()
