"""Per-turn metrics that add up: the `breakdown_ms` of a turn tiles its voice-to-voice.

Each test scripts a delay into one stage, on fake providers and virtual time, and checks
that the segments sum to `voice_to_voice_ms` and that the delay lands in its own segment.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence

import pytest

from voxloop.protocol.messages import Text
from voxloop.providers.base import Message, ToolCall
from voxloop.reply.tools import ToolBox
from voxloop.telemetry.metrics import SEGMENTS, Timeline, TurnMetrics, llm_serving
from voxloop.testing.fakes import FakeLLM, FakeSTT, FakeToolLLM, FakeTTS
from voxloop.testing.faults import Fault, FaultyLLM

from engine_helpers import Driver, make_services, speech

FRAME_MS = 60  # the driver feeds 20-50 ms steps and the VAD sees 32 ms frames


def _breakdown(m: dict) -> dict[str, float]:
    parts = m["breakdown_ms"]
    assert parts is not None, m
    assert list(parts) == list(SEGMENTS)
    assert all(v >= 0 for v in parts.values()), parts
    # Rounded so that the parts add up exactly (to the tenth of a millisecond).
    assert round(sum(parts.values()), 1) == m["voice_to_voice_ms"], (parts, m)
    return parts


def _others(parts: dict[str, float], *named: str) -> float:
    return sum(v for k, v in parts.items() if k not in named)


async def _one_voice_turn(svc, seconds: float = 15.0) -> dict:
    d = await Driver.start(svc)
    await d.feed(speech(0.6))
    await d.run_for(seconds)
    (m,) = d.events("metrics")
    return m


async def test_the_reported_shape_a_slow_first_sentence_is_named():
    # The user's trial: a question (0.35 s end-of-turn), its speculative transcript ready
    # before the end of the turn (stt 0), a fast first token, fast TTS, and ~10 s of
    # voice-to-voice. The stages said nothing of the LLM writing 30 words before its
    # first sentence ended; now `first_sentence` holds those ~9 s.
    words = " ".join(f"w{i}" for i in range(30))  # distinct words: a loop would be cut
    llm = FakeLLM([f"So {words} done. Then more."], first_token_s=0.347, token_s=0.3)
    svc = make_services(
        stt=FakeSTT(["what is the capital of France?"]),
        llm=llm,
        tts=FakeTTS(latency_s=0.154),
    )
    m = await _one_voice_turn(svc, 20.0)
    assert m["stt_final_ms"] == 0.0
    assert m["llm_first_token_ms"] == pytest.approx(347, abs=1)
    assert m["tts_first_audio_ms"] == pytest.approx(154, abs=1)
    stages = sum(m[k] for k in ("vad_end_of_turn_ms", "stt_final_ms", "llm_first_token_ms"))
    stages += m["tts_first_audio_ms"]
    assert m["voice_to_voice_ms"] - stages > 8000  # what the old fields left unnamed
    parts = _breakdown(m)
    assert parts["end_of_turn"] == pytest.approx(350, abs=FRAME_MS)
    # 32 more tokens: the sentence's own 31 and the next, which shows the "." ends it.
    assert parts["first_sentence"] == pytest.approx(32 * 300, abs=FRAME_MS)
    assert parts["tts"] == pytest.approx(154, abs=1)
    # The LLM was asked at the 0.2 s pause: of its 347 ms, only what came after the end
    # of the turn (0.35 s) was waited for.
    assert parts["llm"] == pytest.approx(200 + 347 - 350, abs=FRAME_MS)
    assert _others(parts, "end_of_turn", "first_sentence", "tts", "llm") < FRAME_MS


async def test_each_stage_delay_lands_in_its_own_segment():
    svc = make_services(
        stt=FakeSTT(["hi"], latency_s=0.2),
        llm=FakeLLM(["Well then here we go. More."], first_token_s=0.3, token_s=0.1),
        tts=FakeTTS(latency_s=0.15),
        turns={"speculative_silence_s": 0},
    )
    m = await _one_voice_turn(svc)
    parts = _breakdown(m)
    assert parts["end_of_turn"] == pytest.approx(500, abs=FRAME_MS)
    assert parts["end_of_turn"] == m["vad_end_of_turn_ms"]
    assert parts["stt"] == pytest.approx(200, abs=1)
    assert parts["llm"] == pytest.approx(300, abs=1)
    # 4 more words, and the next that shows the "." ends the sentence: 100 ms each
    assert parts["first_sentence"] == pytest.approx(5 * 100, abs=1)
    assert parts["tts"] == pytest.approx(150, abs=1)
    assert _others(parts, "end_of_turn", "stt", "llm", "first_sentence", "tts") < 1


async def test_a_speculative_reply_ready_early_leaves_only_the_end_of_turn():
    svc = make_services(stt=FakeSTT(["Tell me a joke."]), llm=FakeLLM(["Quick."]))
    m = await _one_voice_turn(svc, 3.0)
    parts = _breakdown(m)
    assert parts["end_of_turn"] == pytest.approx(400, abs=FRAME_MS)  # a finished statement
    assert _others(parts, "end_of_turn") < 1


async def test_a_speculative_transcript_late_after_the_turn_ends_counts_as_stt():
    # The speculative STT takes 0.6 s from the 0.2 s pause: it ends after the 0.5 s turn
    # end, and only that part is the STT's in the breakdown.
    svc = make_services(stt=FakeSTT(["hello"], latency_s=0.6), llm=FakeLLM(["Hi."]), tts=FakeTTS())
    m = await _one_voice_turn(svc, 3.0)
    parts = _breakdown(m)
    assert parts["end_of_turn"] == pytest.approx(500, abs=FRAME_MS)
    assert parts["stt"] == pytest.approx(300, abs=FRAME_MS)
    assert _others(parts, "end_of_turn", "stt") < 1


class SharedLLM(FakeLLM):
    """One model for all sessions, one request at a time, as the local llama.cpp is: it
    says when it starts on a request (`llm_serving`)."""

    def __init__(self, *args, **kw) -> None:
        super().__init__(*args, **kw)
        self.lock = asyncio.Lock()

    async def generate(
        self, messages: Sequence[Message], *, max_tokens=None, temperature=None
    ) -> AsyncIterator[str]:
        async with self.lock:
            llm_serving()
            async for token in super().generate(messages, max_tokens=max_tokens):
                yield token


async def test_a_turn_that_waits_behind_another_session_shows_the_queue():
    ten = "One two three four five six seven eight nine ten."
    llm = SharedLLM(lambda messages: ten, token_s=0.2)
    svc = make_services(stt=FakeSTT(["hi"]), llm=llm, turns={"speculative_silence_s": 0})
    other = await Driver.start(svc)
    await other.session.handle(Text(content="talk to me"))  # holds the model for 1.8 s
    d = await Driver.start(svc)
    await d.feed(speech(0.6))  # the turn ends at ~1.1 s, while the other reply is written
    await d.run_for(8.0)
    (m,) = d.events("metrics")
    parts = _breakdown(m)
    assert parts["llm_queue"] == pytest.approx(1800 - 1100, abs=FRAME_MS)
    # The wait is the queue's, not the model's: the `llm` segment is the model's own time.
    assert parts["llm"] < 1
    assert m["llm_first_token_ms"] == pytest.approx(parts["llm_queue"], abs=1)
    await other.run_for(0.1)
    (first,) = other.events("metrics")
    assert first["breakdown_ms"] is None  # a typed turn has no voice-to-voice


@pytest.mark.parametrize(
    ("filler", "tools_ms"),
    # The filler is said 0.6 s into the 2 s tool call: then that is the first audio.
    [("One moment.", 600), ("", 2000)],
)
async def test_slow_tools_with_and_without_the_filler(filler, tools_ms):
    llm = FakeToolLLM([[ToolCall("c1", "lookup", "{}")], ["Found it."]])
    svc = make_services(
        stt=FakeSTT(["look it up"]),
        llm=llm,
        turns={"speculative_silence_s": 0},
        tools={"filler": filler} if not filler else {},
    )
    box = ToolBox()

    @box.tool
    async def lookup() -> str:
        """Takes a while."""
        await svc.clock.sleep(2.0)
        return "the answer"

    svc.tools = box
    m = await _one_voice_turn(svc, 6.0)
    parts = _breakdown(m)
    if filler:
        assert svc.tts.texts[0] == filler  # the default filler
    assert parts["tools"] == pytest.approx(tools_ms, abs=1)
    assert _others(parts, "end_of_turn", "tools") < 1


async def test_a_stalled_llm_and_its_apology():
    # The LLM never answers: the watchdog gives up after its limit, the apology is said.
    llm = FaultyLLM(["never"], fault=Fault("hang"))
    svc = make_services(stt=FakeSTT(["hello"]), llm=llm, turns={"speculative_silence_s": 0})
    m = await _one_voice_turn(svc, 40.0)
    parts = _breakdown(m)
    assert parts["llm"] == pytest.approx(30_000, abs=1)  # the local floor of the stall limit
    assert _others(parts, "end_of_turn", "llm") < 1


def test_overlapping_steps_go_to_the_earliest_unfinished_one():
    # A speculative reply: asked, first token and sentence all before the turn ended
    # (1.0 s); the TTS still busy until 1.3 s, the gate opened at 1.1 s.
    t = Timeline(
        speech_end=0.0,
        turn_end=1.0,
        transcript=0.3,
        asked=0.35,
        released=1.1,
        first_text=0.6,
        first_sentence=0.9,
        first_audio=1.3,
        sent=1.3,
        llm_waits=[(0.35, 0.5)],  # all before the turn ended: nobody waited for it
    )
    parts = t.segments()
    assert parts == pytest.approx(
        {**dict.fromkeys(SEGMENTS, 0.0), "end_of_turn": 1000, "wait": 100, "tts": 200}
    )


def test_missing_steps_pass_their_time_on_and_no_audio_means_no_breakdown():
    t = Timeline(speech_end=10.0, turn_end=10.5, first_audio=11.0)
    assert t.segments() is None  # nothing was sent: no voice-to-voice to split
    t.sent = 11.25
    parts = t.segments()
    assert parts is not None
    assert parts["end_of_turn"] == pytest.approx(500)
    assert parts["tts"] == pytest.approx(500)  # no transcript, LLM... marks: all since
    assert parts["send"] == pytest.approx(250)
    assert sum(parts.values()) == pytest.approx(1250)


def test_rounded_parts_add_up_exactly():
    # Nine thirds of a tenth: plain rounding would lose or gain a tenth of a millisecond.
    t = Timeline(speech_end=0.0)
    for i, name in enumerate(
        ("turn_end", "transcript", "asked", "first_text", "first_sentence", "first_audio")
    ):
        setattr(t, name, (i + 1) * 0.00103333)
    t.sent = 0.0072333
    metrics = TurnMetrics("s", 1, voice_to_voice_ms=7.2333, timeline=t)
    out = metrics.as_dict()
    assert "timeline" not in out
    assert round(sum(out["breakdown_ms"].values()), 1) == out["voice_to_voice_ms"] == 7.2


def test_llm_serving_outside_a_reply_does_nothing():
    llm_serving()  # e.g. a warm-up or a summary on the shared model: no turn to charge


def test_the_latency_bench_reports_segments_that_add_up():
    from voxloop.bench.latency import report

    def turn(v2v: float, parts: dict[str, float]) -> dict:
        split = {**dict.fromkeys(SEGMENTS, 0.0), **parts}
        server = {"voice_to_voice_ms": v2v}
        return {"client": {}, "server": server, "breakdown_ms": split, "errors": [], "reply": "x"}

    turns = [
        turn(1000.0, {"end_of_turn": 500.0, "llm": 500.0}),
        turn(3000.0, {"end_of_turn": 500.0, "first_sentence": 2500.0}),
    ]
    out = report(turns, eot_silence_ms=500.0)
    means = {k: v["mean"] for k, v in out["server_breakdown_ms"].items()}
    assert means["first_sentence"] == 1250.0
    assert sum(means.values()) == out["server"]["voice_to_voice_ms"]["mean"] == 2000.0


async def test_the_local_llm_says_when_a_queued_request_starts():
    # llama.cpp serves one request at a time for all sessions; no model is needed to see
    # that a second request is only served (and its queue ends) once the first is done.
    import weakref

    from voxloop.providers.local.llama_llm import LlamaLLM
    from voxloop.providers.worker import ModelWorker
    from voxloop.telemetry.metrics import on_llm_queued, on_llm_serving

    llm = LlamaLLM.__new__(LlamaLLM)  # the serial path (a fixed seed, or parallel = 1)
    llm.engine, llm._queued = None, 0
    llm._turn_locks = weakref.WeakKeyDictionary()
    llm.max_tokens, llm.temperature, llm.seed = 8, 0.0, None
    llm.worker = ModelWorker("llm-test")
    chunks = [{"choices": [{"delta": {"content": w}}]} for w in ("a", " b", " c")]
    llm._stream = lambda *args: iter(chunks)
    seen: list[str] = []

    async def ask(name: str) -> None:
        on_llm_queued(lambda place: seen.append(f"{name} queued at {place}"))
        on_llm_serving(lambda: seen.append(f"{name} served"))
        async for _ in llm.generate([Message("user", "hi")]):
            pass
        seen.append(f"{name} done")

    try:
        await asyncio.gather(ask("first"), ask("second"))
    finally:
        llm.worker.shutdown()
    assert seen == [
        "first served",
        "second queued at 1",
        "first done",
        "second served",
        "second done",
    ]
