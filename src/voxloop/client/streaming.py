"""A protocol client: stream a WAV to a voxloop server like a live microphone would.

`talk()` sends the file at real-time pace in 20 ms frames, then keeps sending silence (as a
real microphone does) until the reply is complete. It records every event with the time
it arrived, keeps the agent's audio, reports playback progress as if it were playing the
audio in real time, and measures the latency figures on the client's own clock.

It gives up early, rather than waiting out its timeout, when nothing can come: the server
refused the start, closed the connection, or heard no speech in the file (nothing
happened for a short grace after the file was sent).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import numpy as np

from voxloop.audio.formats import float_to_pcm16, read_audio
from voxloop.client.wires import WIRES, Wire

FRAME_MS = 20
REPORT_S = 0.1  # playback progress goes to the server at most this often
# Errors that mean the server did not take our `start`, so no turn can ever come.
REFUSALS = frozenset({"unsupported_sample_rate", "bad_message", "bad_json", "not_started"})
# Events that show the server heard speech (or is answering it).
SIGNS_OF_SPEECH = frozenset(
    {"partial_transcript", "final_transcript", "speech_started"}  # heard
    | {"llm_status", "llm_response", "tts_start", "tool_calls"}  # answering
)


@dataclass
class TalkResult:
    session_id: str = ""
    transcript: str = ""
    reply: str = ""
    carries_text: bool = True  # False: the wire has no words (a phone line), only audio
    partials: list[str] = field(default_factory=list)
    audio: bytearray = field(default_factory=bytearray)
    audio_rate: int = 0
    audio_chunks: list[tuple[float, float]] = field(default_factory=list)  # (arrival, seconds)
    events: list[tuple[float, dict[str, Any]]] = field(default_factory=list)
    server_metrics: dict[str, Any] = field(default_factory=dict)
    client_metrics: dict[str, float | None] = field(default_factory=dict)
    errors: list[dict[str, Any]] = field(default_factory=list)
    reply_turn: int | None = None  # the turn whose complete text `reply` holds

    @property
    def reply_audio_s(self) -> float:
        return round(len(self.audio) / 2 / self.audio_rate, 3) if self.audio_rate else 0.0

    @property
    def answered(self) -> bool:
        """A reply came: its words, or (where the wire carries no words) its audio."""
        return bool(self.reply) or (not self.carries_text and bool(self.audio))

    def summary(self) -> list[str]:
        """The outcome for a person, honest about what the wire could not carry."""
        c, s = self.client_metrics, self.server_metrics
        if self.carries_text:
            lines = [f"you:   {self.transcript}", f"agent: {self.reply}"]
            words = (
                f", final transcript {_ms(c.get('final_transcript_ms'))}, first token "
                f"{_ms(c.get('first_token_ms'))}"
            )
        else:
            lines = [
                "you:   (not shown: a phone line carries no text)",
                f"agent: {self.reply_audio_s:.2f} s of reply audio received (no text: a "
                "phone line carries audio only)",
            ]
            words = ""
        lines.append(f"latency (client): voice-to-voice {_ms(c.get('voice_to_voice_ms'))}{words}")
        if any(key.endswith("_ms") for key in s):
            lines.append(
                f"latency (server): end of turn {_ms(s.get('vad_end_of_turn_ms'))}, STT "
                f"{_ms(s.get('stt_final_ms'))}, LLM first token "
                f"{_ms(s.get('llm_first_token_ms'))}, TTS first audio "
                f"{_ms(s.get('tts_first_audio_ms'))}, voice-to-voice "
                f"{_ms(s.get('voice_to_voice_ms'))}"
            )
            if parts := s.get("breakdown_ms"):  # the segments that add up to voice-to-voice
                named = ", ".join(f"{k} {_ms(v)}" for k, v in parts.items() if v)
                lines.append(f"voice-to-voice, segment by segment: {named}")
        else:
            lines.append("latency (server): not sent over this profile")
        return lines

    def as_dict(self) -> dict[str, Any]:
        """For `--json`; `transcript` and `reply` are null where the wire carries no text
        (unknown, not empty)."""
        return {
            "session_id": self.session_id,
            "transcript": self.transcript if self.carries_text else None,
            "reply": self.reply if self.carries_text else None,
            "reply_audio_s": self.reply_audio_s,
            "client": self.client_metrics,
            "server": self.server_metrics,
            "errors": self.errors,
        }


def _ms(value: float | None) -> str:
    return "n/a" if value is None else f"{value:g} ms"


def ws_url(url: str) -> str:
    """The WebSocket URL for what the user typed: http(s) becomes ws(s), and a bare
    `host:port/path` gets ws://. A ValueError names anything else."""
    if "://" not in url:
        url = "ws://" + url
    parts = urlsplit(url)
    scheme = {"http": "ws", "https": "wss", "ws": "ws", "wss": "wss"}.get(parts.scheme.lower())
    if scheme is None or not parts.netloc:
        raise ValueError(f"{url!r} is not a server URL; use ws://HOST:PORT/ws (or http://...)")
    return urlunsplit(parts._replace(scheme=scheme))


def speech_end_s(audio: np.ndarray, rate: int, threshold_db: float = -40.0) -> float:
    """Where the last audible sound ends (the file may carry trailing silence)."""
    frame = max(1, rate // 100)
    n = len(audio) // frame
    if n == 0:
        return len(audio) / rate
    rms = np.sqrt(np.mean(audio[: n * frame].reshape(n, frame) ** 2, axis=1) + 1e-12)
    loud = np.nonzero(20 * np.log10(rms) > threshold_db)[0]
    return ((loud[-1] + 1) * frame / rate) if len(loud) else len(audio) / rate


class _Watch:
    """What the talk loop waits for, and when to stop waiting: a reply's end, a refusal,
    or a quiet grace after the file with no sign that the server heard speech."""

    def __init__(self, grace_s: float) -> None:
        self.grace_s = grace_s
        self.finished = asyncio.Event()
        self.engaged = False  # the server heard speech, or is answering
        self.quiet_since: float | None = None  # from the end of the file, or an empty turn

    def saw(self, now: float, event: dict[str, Any] | bytes) -> None:
        if isinstance(event, bytes):
            self.engaged = True
            return
        kind = event.get("type")
        greeted = kind == "metrics" and event.get("source") == "greeting"
        if greeted or (kind == "final_transcript" and not event.get("text")):
            self.engaged = False  # the greeting is over, or it was noise: no reply follows
            if self.quiet_since is not None:
                self.quiet_since = now
        elif kind in SIGNS_OF_SPEECH or (
            kind == "status" and event.get("status") in ("thinking", "speaking")
        ):
            self.engaged = True

    def file_sent(self, now: float) -> None:
        self.quiet_since = now

    def gave_up(self, now: float) -> bool:
        """Nothing was heard for the grace after the file: no reply is coming."""
        return (
            not self.engaged
            and self.quiet_since is not None
            and now - self.quiet_since >= self.grace_s
        )


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
    no_speech_s: float | None = None,
) -> TalkResult:
    """Talk through one of the wire profiles (wires.py); the native one by default.
    `no_speech_s`: how long after the file to wait for a sign of speech (default: the
    wire's own grace)."""
    import websockets

    wire = WIRES[profile](rate=sample_rate, persona=persona, session_id=session_id)
    sample_rate = wire.rate
    audio, rate = read_audio(audio_path, target_rate=sample_rate)
    pcm = float_to_pcm16(audio).tobytes()
    frame_bytes = sample_rate * FRAME_MS // 1000 * 2
    speech_end = speech_end_s(audio, rate)
    result = TalkResult(carries_text=wire.carries_text)
    watch = _Watch(wire.no_speech_grace_s if no_speech_s is None else no_speech_s)
    t0 = time.monotonic()  # reset when the first audio frame goes out: the audio timeline
    marks: dict[str, float] = {}

    async with websockets.connect(
        ws_url(url), max_size=None, open_timeout=30, compression=None
    ) as ws:
        opened = await _send(ws, wire.opening())

        async def receive() -> None:
            first_audio_at: float | None = None
            reported_at = -1.0
            async for message in ws:
                now = time.monotonic() - t0
                events, answers = wire.read(message)
                for frame in answers:
                    await ws.send(frame)
                for event in events:
                    watch.saw(now, event)
                    if isinstance(event, bytes):
                        marks["last_audio"] = now
                        if first_audio_at is None:
                            first_audio_at = now
                            marks.setdefault("first_audio", now)
                        result.audio.extend(event)
                        rate = wire.output_rate or sample_rate
                        result.audio_chunks.append((now, len(event) / 2 / rate))
                        if now - reported_at >= REPORT_S:  # as a browser's player does
                            reported_at = now
                            for frame in wire.played((now - first_audio_at) * 1000):
                                await ws.send(frame)
                    else:
                        _handle(result, marks, watch, now, event)

        receiver = asyncio.create_task(receive())
        t0 = time.monotonic()
        try:
            if opened:
                await _stream(ws, wire, pcm, frame_bytes, sample_rate, t0, realtime, watch)
            marks["audio_sent"] = time.monotonic() - t0
            watch.file_sent(marks["audio_sent"])
            silence = bytes(frame_bytes)
            sent_s = len(pcm) / 2 / sample_rate
            deadline = time.monotonic() + timeout_s
            while not watch.finished.is_set() and time.monotonic() < deadline:
                if receiver.done() or watch.gave_up(time.monotonic() - t0):
                    break
                if not await _send(ws, wire.audio(silence)):  # a live microphone keeps sending
                    break
                sent_s += FRAME_MS / 1000
                await _pace(t0, sent_s)
        finally:
            receiver.cancel()
            await asyncio.gather(receiver, return_exceptions=True)
        if not watch.finished.is_set():
            result.errors.append(_why_no_reply(ws, wire, watch, audio_path, timeout_s))

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


def _handle(
    result: TalkResult, marks: dict[str, float], watch: _Watch, now: float, event: dict[str, Any]
) -> None:
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
            result.reply, result.reply_turn = event.get("content", ""), event.get("turn_id")
    elif kind == "tts_start":
        result.audio_rate = int(event["sample_rate"])
    elif kind == "metrics" and event.get("source") == "greeting":  # hello, not the answer
        if result.reply_turn == event.get("turn_id"):
            result.reply, result.reply_turn = "", None
    elif kind == "metrics":
        result.server_metrics = event
        watch.finished.set()
    elif kind == "error" and not watch.finished.is_set():
        result.errors.append(event)
        if event.get("code") in REFUSALS:
            watch.finished.set()  # the start was refused: nothing more will come


async def _stream(
    ws: Any,
    wire: Wire,
    pcm: bytes,
    frame_bytes: int,
    rate: int,
    t0: float,
    realtime: bool,
    watch: _Watch,
) -> None:
    """The file, frame by frame (at real-time pace), until it ends or the talk is over."""
    for i in range(0, len(pcm), frame_bytes):
        if watch.finished.is_set() or not await _send(ws, wire.audio(pcm[i : i + frame_bytes])):
            return
        if realtime:
            await _pace(t0, (i + frame_bytes) / 2 / rate)


async def _send(ws: Any, frames: list[str | bytes]) -> bool:
    """False once the server has closed the connection."""
    from websockets.exceptions import ConnectionClosed

    try:
        for frame in frames:
            await ws.send(frame)
    except ConnectionClosed:
        return False
    return True


def _why_no_reply(
    ws: Any, wire: Wire, watch: _Watch, audio_path: str | Path, timeout_s: float
) -> dict[str, str]:
    """The error that says why the talk ended without a reply."""
    code = getattr(ws, "close_code", None)
    if code is not None:
        reason = getattr(ws, "close_reason", "") or "no reason given"
        message = f"the server closed the connection ({code}: {reason})"
        return {"code": "closed", "message": message, "close_code": code}
    if not watch.engaged and watch.quiet_since is not None:
        name = Path(audio_path).name
        if not wire.carries_text:
            return {
                "code": "no_reply",
                "message": f"no reply within {watch.grace_s:g} s of the end of {name} (a "
                "phone line does not say whether speech was heard)",
            }
        return {
            "code": "no_speech",
            "message": f"no speech was heard in {name}: nothing to answer",
        }
    return {"code": "timeout", "message": f"no complete reply within {timeout_s:g} s"}


async def _pace(t0: float, audio_s: float) -> None:
    ahead = audio_s - (time.monotonic() - t0)
    if ahead > 0:
        await asyncio.sleep(ahead)
