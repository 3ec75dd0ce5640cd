"""`voxloop bench load --pace natural`: callers who talk for several turns over one
connection, hear each answer out and think before asking again.

The client (client/conversation.py) is checked against a scripted server whose reply
audio comes in time, too slowly, or not at all (the server is busy or full), so that an
underrun and a refusal must show; the benchmark then runs end to end on fake providers.
"""

from __future__ import annotations

import asyncio
import json
from http import HTTPStatus
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

from voxloop.audio.formats import write_wav
from voxloop.bench.load import summarize_load
from voxloop.bench.load_natural import natural_callers, parse_think, summarize_natural
from voxloop.bench.server import running_server
from voxloop.client.conversation import converse
from voxloop.client.playback import lateness_s, playback_end_s, played_s, underrun

RATE = 16000
CHUNK_S = 0.1
REPLY_CHUNKS = 5  # 0.5 s of reply audio per turn


# --- the playback clock ---------------------------------------------------------------


def test_chunks_in_time_are_never_late():
    chunks = [(0.0, 0.1), (0.01, 0.1), (0.15, 0.1)]  # the last is due at 0.2
    assert lateness_s(chunks) == 0.0 and not underrun(chunks)
    assert playback_end_s(chunks) == pytest.approx(0.3)


def test_lateness_is_against_a_clock_started_at_the_first_byte():
    """Each chunk 50 ms later than the last was due: a player would gap three times, and
    the lateness grows (0.05, 0.10, 0.15 s) instead of staying at one gap's length."""
    chunks = [(0.15 * i, 0.1) for i in range(4)]
    assert lateness_s(chunks) == pytest.approx(0.15)
    assert underrun(chunks)
    assert playback_end_s(chunks) == pytest.approx(0.45 + 0.1)  # waits out each gap
    assert not underrun([(0.0, 0.1), (0.11, 0.1)])  # 10 ms: within the measurement's slack


def test_played_follows_a_player_that_waits_out_gaps():
    chunks = [(0.0, 0.1), (0.3, 0.1)]
    assert played_s(chunks, 0.05) == pytest.approx(0.05)
    assert played_s(chunks, 0.2) == pytest.approx(0.1)  # the gap: nothing more to play
    assert played_s(chunks, 0.35) == pytest.approx(0.15)
    assert played_s(chunks, 1.0) == pytest.approx(0.2)
    assert lateness_s([]) is None and playback_end_s([]) is None and not underrun([])


def test_think_time_is_fixed_or_a_range():
    assert parse_think("2") == (2.0, 2.0)
    assert parse_think("1.5-4") == (1.5, 4.0)
    for bad in ("soon", "4-1.5", "-1"):
        with pytest.raises(ValueError):
            parse_think(bad)


# --- the summary ----------------------------------------------------------------------


def _turn(status: str, v2v: float | None = 600.0, late: float | None = 0.0, **client: Any):
    return {
        "status": status,
        "client": {"voice_to_voice_ms": v2v, "worst_lateness_ms": late, **client},
        "server": {"voice_to_voice_ms": v2v},
        "errors": [] if status != "failed" else [{"code": "timeout"}],
    }


def test_a_refused_turn_is_counted_apart_and_does_not_break_real_time():
    callers = [
        {"turns": [_turn("completed"), _turn("completed", 700.0)]},
        {"turns": [_turn("refused", None, None), _turn("refused", None, None)]},
    ]
    run = summarize_natural(callers, eot_ms=500)
    assert (run["turns_attempted"], run["turns_completed"]) == (4, 2)
    assert (run["turns_failed"], run["turns_refused"]) == (0, 2)
    assert run["sessions"] == 2 and run["sessions_served"] == 1 and run["completed"] == 1
    assert run["client_voice_to_voice_ms"]["n"] == 2
    assert run["overhead_over_silence_ms"]["p50"] == 100.0
    assert run["underruns"] == 0 and run["realtime_held"] is True
    assert [t["voice_to_voice_ms"] for t in run["worst_turns"]] == [700.0, 600.0]


@pytest.mark.parametrize(
    "spoiler",
    [
        _turn("failed", None, None),  # one failed turn
        _turn("completed", 2500.0),  # p90 over 2 s (two of two turns slow)
        _turn("completed", 600.0, 180.0, underrun=True),  # the audio came too slowly
    ],
)
def test_real_time_does_not_hold_with_a_failure_a_slow_p90_or_an_underrun(spoiler):
    slow = spoiler["client"]["voice_to_voice_ms"] == 2500.0
    callers = [{"turns": [_turn("completed", 2500.0 if slow else 600.0), spoiler]}]
    run = summarize_natural(callers, eot_ms=500)
    assert run["realtime_held"] is False
    if spoiler["client"].get("underrun"):
        assert run["underruns"] == 1 and run["worst_lateness_ms"] == 180.0
        assert run["worst_turns"][0]["worst_lateness_ms"] == 180.0  # the underrun first


def test_burst_summary_keeps_its_fields_and_counts_refusals():
    ok = {
        "ok": True,
        "client": {"voice_to_voice_ms": 600.0, "reply_audio_span_s": 1.5},
        "server": {"voice_to_voice_ms": 590.0},
        "reply_audio_s": 2.0,
        "worst_lateness_ms": 0.0,
    }
    full = {"ok": False, "errors": [{"code": "closed", "close_code": 1013}], "refused": True}
    run = summarize_load([ok, full], eot_ms=500)
    for key in ("sessions", "completed", "failures", "client_voice_to_voice_ms",
                "server_voice_to_voice_ms", "overhead_over_silence_ms", "reply_audio_late_s",
                "realtime_held"):  # fmt: skip
        assert key in run
    assert run["completed"] == 1 and run["realtime_held"] is False  # as before
    assert run["refused"] == 1 and run["sessions_served"] == 1 and run["underruns"] == 0


# --- the client against a scripted server ---------------------------------------------


def _questions(tmp_path: Path, n: int) -> list[Path]:
    """Short "questions": 0.1 s of silence, 0.3 s of tone, 0.05 s of silence."""
    t = np.arange(int(0.3 * RATE)) / RATE
    tone = 0.3 * np.sin(2 * np.pi * 300 * t)
    audio = np.concatenate([np.zeros(1600), tone, np.zeros(800)]).astype(np.float32)
    paths = []
    for i in range(n):
        paths.append(tmp_path / f"q{i}.wav")
        write_wav(paths[-1], audio, RATE)
    return paths


class Scripted:
    """A server that answers each burst of sound (after 0.1 s of quiet) with 0.5 s of
    audio: all at once (`fast`), a chunk every 0.15 s (`slow`: each 50 ms late), or an
    error `busy` for the first turn; `full` closes with 1013, `http503` refuses the
    handshake."""

    def __init__(self, mode: str) -> None:
        self.mode = mode
        self.reply_sent_at: list[float] = []
        self.question_heard_at: list[float] = []
        self.playback_ms: list[float] = []

    def process_request(self, connection: Any, request: Any) -> Any:
        if self.mode == "http503":
            return connection.respond(HTTPStatus.SERVICE_UNAVAILABLE, "full\n")
        return None

    async def handler(self, ws: Any) -> None:
        loop = asyncio.get_running_loop()
        await ws.recv()  # start
        if self.mode == "full":
            await ws.close(1013, "server at capacity (1 sessions); retry after 5 s")
            return
        await ws.send(json.dumps({"type": "session", "session_id": "s1"}))
        loud, quiet, turn = False, 0, 0
        async for message in ws:
            if isinstance(message, str):
                event = json.loads(message)
                if event.get("type") == "playback":
                    self.playback_ms.append(event["ms"])
                continue
            rms = np.sqrt(np.mean(np.frombuffer(message, np.int16).astype(float) ** 2))
            if rms > 1000:
                if not loud:
                    self.question_heard_at.append(loop.time())
                loud, quiet = True, 0
            elif loud:
                quiet += 1
                if quiet == 5:
                    loud, turn = False, turn + 1
                    await self._answer(ws, turn)
                    self.reply_sent_at.append(loop.time())

    async def _answer(self, ws: Any, turn: int) -> None:
        if self.mode == "busy" and turn == 1:
            await ws.send(json.dumps({"type": "error", "code": "busy", "message": "full"}))
            return
        await ws.send(json.dumps({"type": "final_transcript", "turn_id": turn, "text": "hi"}))
        await ws.send(json.dumps({"type": "tts_start", "turn_id": turn, "sample_rate": RATE}))
        tone = (3000 * np.sin(np.arange(int(CHUNK_S * RATE)) / 5)).astype(np.int16).tobytes()
        for _ in range(REPLY_CHUNKS):
            await ws.send(tone)
            await asyncio.sleep(0.15 if self.mode == "slow" else 0)
        for event in (
            {"type": "llm_response", "turn_id": turn, "content": "hello", "is_complete": True},
            {"type": "metrics", "turn_id": turn, "voice_to_voice_ms": 100.0},
        ):
            await ws.send(json.dumps(event))


async def _converse_with(mode: str, tmp_path: Path, think_s: float = 0.3):
    from websockets.asyncio.server import serve

    server = Scripted(mode)
    async with serve(server.handler, "127.0.0.1", 0, process_request=server.process_request) as s:
        port = s.sockets[0].getsockname()[1]
        convo = await converse(
            f"ws://127.0.0.1:{port}/ws", _questions(tmp_path, 2), think_s=think_s, timeout_s=5
        )
    return convo, server


async def test_a_caller_hears_each_answer_out_and_thinks_before_asking_again(tmp_path):
    convo, server = await _converse_with("fast", tmp_path)
    assert [t.status for t in convo.turns] == ["completed", "completed"], convo.turns
    first, second = convo.turns
    assert convo.session_id == "s1" and first.turn_id == 1 and second.turn_id == 2
    metrics = first.client_metrics()
    assert metrics["worst_lateness_ms"] == 0.0 and metrics["underrun"] is False
    assert first.reply_audio_s == pytest.approx(0.5) and metrics["voice_to_voice_ms"] > 0
    # The second question starts once the first answer has played (0.5 s) and a 0.3 s
    # pause has passed, not when its audio arrived (all at once).
    # (Tolerances for a loaded machine: without the wait both are about 0.4 s less.)
    assert second.asked_at_s >= first.marks["first_audio"] + 0.5 + 0.3 - 0.2
    gap = server.question_heard_at[1] - server.reply_sent_at[0]
    assert gap >= 0.5 + 0.3 - 0.05
    assert server.playback_ms and max(server.playback_ms) == pytest.approx(500, abs=1)


async def test_a_reply_slower_than_its_playback_is_an_underrun(tmp_path):
    convo, _ = await _converse_with("slow", tmp_path, think_s=0.0)
    assert [t.status for t in convo.turns] == ["completed", "completed"]
    for turn in convo.turns:
        metrics = turn.client_metrics()
        assert metrics["underrun"] is True
        assert 100 <= metrics["worst_lateness_ms"] <= 1000  # 4 × 50 ms, plus scheduling


@pytest.mark.parametrize("mode", ["busy", "full", "http503"])
async def test_a_server_that_turns_the_caller_away_refused_the_turns(mode, tmp_path):
    convo, _ = await _converse_with(mode, tmp_path, think_s=0.0)
    statuses = [t.status for t in convo.turns]
    if mode == "busy":  # the error refuses one turn; the caller asks again, and is served
        assert statuses == ["refused", "completed"]
    else:
        assert statuses == ["refused", "refused"]
    if mode == "full":
        assert convo.closed["code"] == 1013


# --- end to end, fake providers -------------------------------------------------------


def test_natural_pace_two_callers_two_turns_with_fakes(tmp_path):
    from voxloop.bench.cli import bench_app

    out = tmp_path / "natural.json"
    result = CliRunner().invoke(
        bench_app,
        ["load", "--sessions", "2", "--pace", "natural", "--turns", "2", "--think-s",
         "0.2-0.5", "--ramp", "0.5", "--providers", "fake", "--json", str(out)],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    report = json.loads(out.read_text())
    assert report["pace"] == "natural" and report["turns_per_caller"] == 2
    run = report["runs"][0]
    assert run["turns_attempted"] == 4 and run["turns_completed"] == 4, run["failures"]
    assert run["turns_failed"] == 0 and run["turns_refused"] == 0
    assert run["client_voice_to_voice_ms"]["n"] == 4 and run["reply_lateness_ms"]["n"] == 4
    assert isinstance(run["underruns"], int) and isinstance(run["realtime_held"], bool)
    assert run["server_process"]["rss_mb_max"] > 0
    assert report["max_sessions_holding_realtime"] in (0, 2)


def test_a_full_server_refuses_the_second_caller(tmp_path):
    """With room for one session, the caller who comes while the first still talks is
    refused (close 1013): counted as refused, not failed."""
    from voxloop.bench.questions import QUESTIONS, question_wavs
    from voxloop.config.settings import Settings

    wavs = question_wavs(QUESTIONS[:2], Settings().resolved_cache_dir() / "bench")
    env = {"VOXLOOP_LIMITS__MAX_SESSIONS": "1"}
    with running_server(providers="fake", env=env) as server:
        job = natural_callers(
            server.url, 2, wavs, turns=1, ramp_s=1.0, think_s=(0.0, 0.0), timeout_s=30
        )
        callers = asyncio.run(job)
    run = summarize_natural(callers, eot_ms=500)
    assert (run["turns_completed"], run["turns_refused"], run["turns_failed"]) == (1, 1, 0)
    assert run["sessions_served"] == 1
    assert callers[1]["closed"]["code"] == 1013
