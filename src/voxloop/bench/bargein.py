"""`voxloop bench bargein`: interrupt long answers at random points, time the stop.

Each trial asks for a long answer, lets the agent speak for a random while, then plays an
interruption ("Wait, stop, that is enough.") into the microphone stream. Barge-in latency
is measured on the client: onset of the interrupting speech (first audible sample sent)
→ the first `tts_stop` received (the agent's audio stops: a pause while the words are
checked, or the cancel itself); the cancel (`tts_stop` with reason `barge_in`) is timed
too. It also counts the agent audio bytes that still arrived after the onset and after the
first `tts_stop`.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from pathlib import Path
from typing import Any

import numpy as np

from voxloop.audio.formats import float_to_pcm16
from voxloop.bench.latency import machine
from voxloop.bench.questions import INTERRUPTION, LONG_ANSWER, load, question_wavs
from voxloop.bench.server import running_server
from voxloop.bench.stats import summarize
from voxloop.client.streaming import FRAME_MS, speech_end_s
from voxloop.config.settings import Settings

RATE = 16000
FRAME_BYTES = RATE * FRAME_MS // 1000 * 2


def _onset_s(audio: np.ndarray) -> float:
    """Where the first audible sound starts (mirror of `speech_end_s`)."""
    return len(audio) / RATE - speech_end_s(audio[::-1].copy(), RATE)


async def trial(url: str, question: np.ndarray, stop: np.ndarray, delay_s: float) -> dict:
    import websockets

    question_pcm = float_to_pcm16(question).tobytes()
    stop_pcm = float_to_pcm16(stop).tobytes()
    onset_offset = _onset_s(stop)
    marks: dict[str, float] = {}
    audio_bytes = {"after_onset": 0, "after_stop": 0, "total": 0}
    speaking = asyncio.Event()
    stopped = asyncio.Event()
    cancelled = asyncio.Event()
    done = asyncio.Event()
    t0 = time.monotonic()

    async with websockets.connect(url, max_size=None) as ws:
        await ws.send(json.dumps({"type": "start", "sample_rate": RATE}))

        async def receive() -> None:
            async for message in ws:
                now = time.monotonic()
                if isinstance(message, bytes):
                    audio_bytes["total"] += len(message)
                    if "onset" in marks and now >= marks["onset"]:
                        audio_bytes["after_onset"] += len(message)
                    if stopped.is_set():
                        audio_bytes["after_stop"] += len(message)
                    speaking.set()
                    continue
                event = json.loads(message)
                if event["type"] == "tts_stop" and "onset" in marks:
                    marks.setdefault("stop", now)
                    stopped.set()
                    if event.get("reason") != "paused":
                        marks.setdefault("cancel", now)
                        cancelled.set()
                elif event["type"] == "metrics" and cancelled.is_set():
                    done.set()

        receiver = asyncio.create_task(receive())
        sent = 0.0
        try:
            for i in range(0, len(question_pcm), FRAME_BYTES):
                await ws.send(question_pcm[i : i + FRAME_BYTES])
                sent += FRAME_MS / 1000
                await _pace(t0, sent)
            silence = bytes(FRAME_BYTES)
            while not speaking.is_set() and time.monotonic() - t0 < 120:
                await ws.send(silence)
                sent += FRAME_MS / 1000
                await _pace(t0, sent)
            talk_until = time.monotonic() + delay_s
            while time.monotonic() < talk_until:
                await ws.send(silence)
                sent += FRAME_MS / 1000
                await _pace(t0, sent)
            start = time.monotonic()
            marks["onset"] = start + onset_offset
            for i in range(0, len(stop_pcm), FRAME_BYTES):
                await ws.send(stop_pcm[i : i + FRAME_BYTES])
                sent += FRAME_MS / 1000
                await _pace(t0, sent)
            deadline = time.monotonic() + 10
            while not cancelled.is_set() and time.monotonic() < deadline:
                await ws.send(silence)
                sent += FRAME_MS / 1000
                await _pace(t0, sent)
            await asyncio.sleep(0.3)  # catch any audio still in flight after the stop
        finally:
            receiver.cancel()
            await asyncio.gather(receiver, return_exceptions=True)

    def since_onset(mark: str) -> float | None:
        return round((marks[mark] - marks["onset"]) * 1000, 1) if mark in marks else None

    return {
        "delay_s": round(delay_s, 2),
        "bargein_ms": since_onset("stop"),
        "cancel_ms": since_onset("cancel"),
        "audio_bytes": audio_bytes,
    }


async def _pace(t0: float, audio_s: float) -> None:
    ahead = audio_s - (time.monotonic() - t0)
    if ahead > 0:
        await asyncio.sleep(ahead)


def bench_bargein(
    *,
    trials: int = 10,
    providers: str = "embedded",
    url: str | None = None,
    seed: int = 7,
    max_delay_s: float = 3.0,
    cache_dir: Path | None = None,
) -> dict[str, Any]:
    settings = Settings()
    wavs = question_wavs(
        [LONG_ANSWER, INTERRUPTION], cache_dir or settings.resolved_cache_dir() / "bench"
    )
    question, stop = load(wavs[0]), load(wavs[1])
    rng = random.Random(seed)
    delays = [rng.uniform(0.3, max_delay_s) for _ in range(trials)]
    env = {"VOXLOOP_LLM__MAX_TOKENS": "200"}
    if providers == "fake":
        # The fake STT hears no real words ("fake transcript of 1.9 seconds") and the fake
        # LLM repeats the user's, so the words check would call it echo: time the VAD path.
        env["VOXLOOP_TURNS__INTERRUPTION"] = "vad"
    with running_server(url, providers=providers, env=env) as server:

        async def run_all() -> list[dict]:
            return [await trial(server.url, question, stop, d) for d in delays]

        results = asyncio.run(run_all())
    return {
        "benchmark": "bargein",
        "providers": providers,
        "machine": machine(),
        "settings": {
            "barge_in_min_speech_s": settings.turns.barge_in_min_speech_s,
            "interruption": env.get("VOXLOOP_TURNS__INTERRUPTION", settings.turns.interruption),
        },
        "bargein_ms": summarize(r["bargein_ms"] for r in results),
        "cancel_ms": summarize(r["cancel_ms"] for r in results),
        "missed": sum(1 for r in results if r["cancel_ms"] is None),
        "audio_bytes_after_onset": summarize(r["audio_bytes"]["after_onset"] for r in results),
        "audio_bytes_after_stop": summarize(r["audio_bytes"]["after_stop"] for r in results),
        "per_trial": results,
    }
