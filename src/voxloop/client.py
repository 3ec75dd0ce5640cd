"""A protocol client: stream a WAV to a voxloop server like a live microphone would.

`talk()` sends the file at real-time pace in 20 ms frames, then keeps sending silence (as a
real microphone does) until the reply is complete. It records every event with the time
it arrived, keeps the agent's audio, reports playback progress as if it were playing the
audio in real time, and measures the latency figures on the client's own clock.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from voxloop.audio import float_to_pcm16, read_audio
from voxloop.wires import WIRES

FRAME_MS = 20
REPORT_S = 0.1  # playback progress goes to the server at most this often


@dataclass
class TalkResult:
    session_id: str = ""
    transcript: str = ""
    reply: str = ""
    partials: list[str] = field(default_factory=list)
    audio: bytearray = field(default_factory=bytearray)
    audio_rate: int = 0
    events: list[tuple[float, dict[str, Any]]] = field(default_factory=list)
    server_metrics: dict[str, Any] = field(default_factory=dict)
    client_metrics: dict[str, float | None] = field(default_factory=dict)
    errors: list[dict[str, Any]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "session_id": self.session_id,
            "transcript": self.transcript,
            "reply": self.reply,
            "reply_audio_s": round(len(self.audio) / 2 / self.audio_rate, 3)
            if self.audio_rate
            else 0.0,
            "client": self.client_metrics,
            "server": self.server_metrics,
            "errors": self.errors,
        }


def speech_end_s(audio: np.ndarray, rate: int, threshold_db: float = -40.0) -> float:
    """Where the last audible sound ends (the file may carry trailing silence)."""
    frame = max(1, rate // 100)
    n = len(audio) // frame
    if n == 0:
        return len(audio) / rate
    rms = np.sqrt(np.mean(audio[: n * frame].reshape(n, frame) ** 2, axis=1) + 1e-12)
    loud = np.nonzero(20 * np.log10(rms) > threshold_db)[0]
    return ((loud[-1] + 1) * frame / rate) if len(loud) else len(audio) / rate


async def talk(
    url: str,
    audio_path: str | Path,
    *,
    sample_rate: int = 16000,
    timeout_s: float = 120.0,
    realtime: bool = True,
    persona: str | None = None,
    session_id: str | None = None,
    profile: str = "voxloop",
) -> TalkResult:
    """Talk through one of the wire profiles (wires.py); the native one by default."""
    import websockets

    wire = WIRES[profile](rate=sample_rate, persona=persona, session_id=session_id)
    sample_rate = wire.rate
    audio, rate = read_audio(audio_path, target_rate=sample_rate)
    pcm = float_to_pcm16(audio).tobytes()
    frame_bytes = sample_rate * FRAME_MS // 1000 * 2
    speech_end = speech_end_s(audio, rate)
    result = TalkResult()
    t0 = time.monotonic()  # reset when the first audio frame goes out: the audio timeline
    marks: dict[str, float] = {}
    done = asyncio.Event()

    async with websockets.connect(url, max_size=None, open_timeout=30, compression=None) as ws:
        for frame in wire.opening():
            await ws.send(frame)

        async def receive() -> None:
            first_audio_at: float | None = None
            reported_at = -1.0
            async for message in ws:
                now = time.monotonic() - t0
                events, answers = wire.read(message)
                for frame in answers:
                    await ws.send(frame)
                for event in events:
                    if isinstance(event, bytes):
                        marks["last_audio"] = now
                        if first_audio_at is None:
                            first_audio_at = now
                            marks.setdefault("first_audio", now)
                        result.audio.extend(event)
                        if now - reported_at >= REPORT_S:  # as a browser's player does
                            reported_at = now
                            for frame in wire.played((now - first_audio_at) * 1000):
                                await ws.send(frame)
                    else:
                        handle(now, event)

        def handle(now: float, event: dict[str, Any]) -> None:
            result.events.append((now, event))
            kind = event.get("type")
            if kind == "session":
                result.session_id = event.get("session_id", "")
            elif kind == "partial_transcript":
                marks.setdefault("first_partial", now)
                result.partials.append(event["text"])
            elif kind == "final_transcript" and event.get("text"):
                marks.setdefault("final_transcript", now)
                result.transcript = event["text"]
            elif kind == "llm_response":
                if event.get("delta"):
                    marks.setdefault("first_token", now)
                if event.get("is_complete"):
                    result.reply = event.get("content", "")
            elif kind == "tts_start":
                result.audio_rate = int(event["sample_rate"])
            elif kind == "metrics":
                result.server_metrics = event
                done.set()
            elif kind == "error":
                result.errors.append(event)

        receiver = asyncio.create_task(receive())
        t0 = time.monotonic()
        try:
            for i in range(0, len(pcm), frame_bytes):
                for frame in wire.audio(pcm[i : i + frame_bytes]):
                    await ws.send(frame)
                if realtime:
                    await _pace(t0, (i + frame_bytes) / 2 / sample_rate)
            marks["audio_sent"] = time.monotonic() - t0
            silence = bytes(frame_bytes)
            sent_s = len(pcm) / 2 / sample_rate
            deadline = time.monotonic() + timeout_s
            while not done.is_set() and time.monotonic() < deadline:
                for frame in wire.audio(silence):  # a live microphone keeps sending
                    await ws.send(frame)
                sent_s += FRAME_MS / 1000
                await _pace(t0, sent_s)
                if receiver.done():
                    break
            if not done.is_set():
                result.errors.append({"code": "timeout", "message": "no complete reply"})
        finally:
            receiver.cancel()
            await asyncio.gather(receiver, return_exceptions=True)

    end = speech_end  # client time at which the user's speech ended (sent in real time)

    def since_end(key: str) -> float | None:
        return round((marks[key] - end) * 1000, 1) if key in marks else None

    span = marks["last_audio"] - marks["first_audio"] if "first_audio" in marks else None
    result.client_metrics = {
        "speech_end_s": round(end, 3),
        # How long the reply's audio took to arrive; paced at real time, it is about the
        # audio's duration less the server's lead. Much longer means the server fell behind.
        "reply_audio_span_s": round(span, 3) if span is not None else None,
        "final_transcript_ms": since_end("final_transcript"),
        "first_token_ms": since_end("first_token"),
        "voice_to_voice_ms": since_end("first_audio"),
    }
    return result


async def _pace(t0: float, audio_s: float) -> None:
    ahead = audio_s - (time.monotonic() - t0)
    if ahead > 0:
        await asyncio.sleep(ahead)
