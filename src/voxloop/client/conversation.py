"""A caller who talks the way people do: several questions over one connection, each
answer heard to its end and a pause to think before the next.

`converse()` opens one WebSocket and keeps the microphone running for the whole call
(silence between the questions, as a live microphone sends). It streams each WAV at
real-time pace, waits for the turn's `metrics` and then until the reply has played at
real time (playback.py), thinks, and asks the next. Per turn it records what `talk()`
records for its one turn, and when each chunk of the reply arrived, so that a reply that
comes slower than it plays shows as an underrun.

A server that turns the caller away *refused* the turn, which is not a failure: an HTTP
503 to the handshake, a close with 1013 (at capacity: server/limits.py), or an error
event whose code says it is busy. A close refuses every turn not yet answered.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from voxloop.audio.formats import float_to_pcm16, read_audio
from voxloop.client.playback import Chunk, lateness_s, playback_end_s, played_s, underrun
from voxloop.client.streaming import (
    FRAME_MS,
    REFUSALS,
    REPORT_S,
    SIGNS_OF_SPEECH,
    speech_end_s,
    ws_url,
)
from voxloop.client.wires import WIRES, Frame, Wire

CLOSE_AT_CAPACITY = 1013  # as server/limits.py sends it; the client does not import the server
HTTP_AT_CAPACITY = 503
BUSY_CODES = frozenset({"busy", "capacity", "at_capacity", "server_busy"})


@dataclass
class Turn:
    """One question and what came back for it. Times are seconds on the call's clock
    (from its first microphone frame)."""

    question: str
    carries_text: bool = True
    asked_at_s: float | None = None  # None: never asked
    speech_end_s: float | None = None
    transcript: str = ""
    reply: str = ""
    turn_id: int | None = None
    chunks: list[Chunk] = field(default_factory=list)
    marks: dict[str, float] = field(default_factory=dict)
    server_metrics: dict[str, Any] = field(default_factory=dict)
    errors: list[dict[str, Any]] = field(default_factory=list)
    finished: bool = False  # its metrics came, or the server refused it
    refused: bool = False
    engaged: bool = False  # the server heard speech, or is answering
    quiet_from: float = 0.0  # the no-speech grace runs from here

    @property
    def status(self) -> str:
        if self.refused:
            return "refused"
        answered = bool(self.reply) or (not self.carries_text and bool(self.chunks))
        return "completed" if self.finished and answered and not self.errors else "failed"

    @property
    def reply_audio_s(self) -> float:
        return round(sum(seconds for _, seconds in self.chunks), 3)

    def client_metrics(self) -> dict[str, Any]:
        end = self.speech_end_s

        def since_end(key: str) -> float | None:
            if key not in self.marks or end is None:
                return None
            return round((self.marks[key] - end) * 1000, 1)

        late = lateness_s(self.chunks)
        span = self.chunks[-1][0] - self.chunks[0][0] if self.chunks else None
        return {
            "speech_end_s": round(end, 3) if end is not None else None,
            "reply_audio_span_s": round(span, 3) if span is not None else None,
            "final_transcript_ms": since_end("final_transcript"),
            "first_token_ms": since_end("first_token"),
            "voice_to_voice_ms": since_end("first_audio"),
            # Against a player started at the reply's first byte (playback.py).
            "worst_lateness_ms": round(late * 1000, 1) if late is not None else None,
            "underrun": underrun(self.chunks),
        }

    def as_dict(self) -> dict[str, Any]:
        return {
            "question": self.question,
            "status": self.status,
            "turn_id": self.turn_id,
            "transcript": self.transcript if self.carries_text else None,
            "reply": self.reply if self.carries_text else None,
            "reply_audio_s": self.reply_audio_s,
            "client": self.client_metrics(),
            "server": self.server_metrics,
            "errors": self.errors,
        }


@dataclass
class Conversation:
    session_id: str = ""
    turns: list[Turn] = field(default_factory=list)
    closed: dict[str, Any] | None = None  # how the connection ended, if the server ended it

    def end(self, why: dict[str, Any], *, refused: bool) -> None:
        """Every turn still unanswered is refused, or failed for `why`."""
        for turn in self.turns:
            if turn.finished:
                continue
            if refused:
                turn.refused = True
            elif not turn.errors:
                turn.errors.append(why)


class _Call:
    """What the server sent, filed under the turn it belongs to."""

    def __init__(self, wire: Wire, convo: Conversation) -> None:
        self.wire, self.convo = wire, convo
        self.current: Turn = convo.turns[0]
        self.over = False  # the connection closed, or the server refused our `start`
        self.last_turn_id = -1

    async def receive(self, ws: Any, clock: Callable[[], float]) -> None:
        from websockets.exceptions import ConnectionClosed

        try:
            async for message in ws:
                events, answers = self.wire.read(message)
                for frame in answers:
                    await ws.send(frame)
                for event in events:
                    self.saw(clock(), event)
        except ConnectionClosed:
            pass
        finally:
            self.over = True

    def saw(self, now: float, event: dict[str, Any] | bytes) -> None:
        turn = self.current
        if isinstance(event, bytes):
            if turn.asked_at_s is None or turn.finished:
                return  # not an answer to a question of ours
            rate = self.wire.output_rate or self.wire.rate
            turn.marks.setdefault("first_audio", now)
            turn.chunks.append((now, len(event) / 2 / rate))
            turn.engaged = True
            return
        kind = event.get("type")
        if kind == "session":
            self.convo.session_id = event.get("session_id", "")
        elif kind == "error":
            if event.get("code") in BUSY_CODES:
                turn.refused = turn.finished = True
            elif not turn.finished:
                turn.errors.append(event)
                if event.get("code") in REFUSALS:  # our `start` was refused: nothing comes
                    turn.finished = self.over = True
        elif turn.asked_at_s is not None and not turn.finished:
            self._turn_event(turn, now, event)

    def _turn_event(self, turn: Turn, now: float, event: dict[str, Any]) -> None:
        kind = event.get("type")
        if kind in SIGNS_OF_SPEECH or (
            kind == "status" and event.get("status") in ("thinking", "queued", "speaking")
        ):
            turn.engaged = True
        if kind == "final_transcript":
            if event.get("text"):
                turn.marks.setdefault("final_transcript", now)
                turn.transcript = event["text"]
            else:  # noise: no reply follows
                turn.engaged, turn.quiet_from = False, now
        elif kind == "llm_response":
            if event.get("delta"):
                turn.marks.setdefault("first_token", now)
            if event.get("is_complete"):
                turn.reply = event.get("content", "")
        elif kind == "metrics" and event.get("source") == "greeting":  # hello, not the answer
            turn.reply, turn.chunks, turn.engaged = "", [], False
            turn.marks.pop("first_audio", None)
            turn.quiet_from = now
        elif kind == "metrics":
            turn_id = event.get("turn_id")
            if isinstance(turn_id, int) and turn_id <= self.last_turn_id:
                return  # a late word on a turn already over
            self.last_turn_id = turn_id if isinstance(turn_id, int) else self.last_turn_id
            turn.turn_id, turn.server_metrics, turn.finished = turn_id, event, True


class _Mic:
    """The microphone: a 20 ms frame every 20 ms from the first, speech or silence, and
    `playback` reports for the reply being heard, as a browser's player sends them."""

    def __init__(self, ws: Any, wire: Wire, call: _Call) -> None:
        self.ws, self.wire, self.call = ws, wire, call
        self.frame_bytes = wire.rate * FRAME_MS // 1000 * 2
        self.silence = bytes(self.frame_bytes)
        self.t0 = time.monotonic()
        self.sent_s = 0.0  # audio time: what the server has been sent
        self.reported_at = -1.0
        self.last_report: tuple[int, float] = (0, 0.0)

    def now(self) -> float:
        return time.monotonic() - self.t0

    async def send(self, frames: list[Frame]) -> bool:
        """False once the server has closed the connection."""
        from websockets.exceptions import ConnectionClosed

        try:
            for frame in frames:
                await self.ws.send(frame)
        except ConnectionClosed:
            return False
        return True

    async def frame(self, pcm: bytes | None = None) -> bool:
        """One frame (silence by default), at real-time pace; False once the call is over."""
        if self.call.over or not await self.send(self.wire.audio(pcm or self.silence)):
            return False
        await self._report()
        self.sent_s += len(pcm or self.silence) / 2 / self.wire.rate
        ahead = self.sent_s - self.now()
        if ahead > 0:
            await asyncio.sleep(ahead)
        return True

    async def _report(self) -> None:
        """How much of the current reply has played, every REPORT_S while it changes."""
        turn = self.call.current
        now = self.now()
        if not turn.chunks or now - self.reported_at < REPORT_S:
            return
        report = (id(turn), played_s(turn.chunks, now))
        if report != self.last_report:
            self.reported_at, self.last_report = now, report
            await self.send(self.wire.played(report[1] * 1000))

    async def stream(self, pcm: bytes, turn: Turn) -> bool:
        """The question, frame by frame; stops early if the server refused the turn."""
        for i in range(0, len(pcm), self.frame_bytes):
            if turn.finished or not await self.frame(pcm[i : i + self.frame_bytes]):
                return not self.call.over
        return True

    async def silence_until(self, done: Callable[[], bool], until: float) -> bool:
        while not done() and self.now() < until:
            if not await self.frame():
                return False
        return True


def _thinker(think_s: float | Callable[[], float]) -> Callable[[], float]:
    return think_s if callable(think_s) else (lambda: float(think_s))


async def converse(
    url: str,
    questions: Sequence[str | Path],
    *,
    think_s: float | Callable[[], float] = 0.0,
    timeout_s: float = 120.0,
    sample_rate: int = 16000,
    profile: str = "voxloop",
    no_speech_s: float | None = None,
) -> Conversation:
    """Ask `questions` in turn over one connection; `think_s` (seconds, or a function
    drawing them) is the pause between hearing an answer out and asking the next.
    `timeout_s`: per turn, from the end of its question."""
    import websockets
    from websockets.exceptions import InvalidHandshake, InvalidStatus

    wire = WIRES[profile](rate=sample_rate)
    convo = Conversation(turns=[Turn(Path(q).name, wire.carries_text) for q in questions])
    if not convo.turns:
        return convo
    try:
        ws = await websockets.connect(ws_url(url), max_size=None, open_timeout=30, compression=None)
    except InvalidStatus as exc:
        status = exc.response.status_code
        why = {"code": "http", "status": status, "message": f"the handshake got HTTP {status}"}
        convo.end(why, refused=status == HTTP_AT_CAPACITY)
        return convo
    except (OSError, TimeoutError, InvalidHandshake) as exc:
        convo.end({"code": "connect", "message": f"{type(exc).__name__}: {exc}"}, refused=False)
        return convo
    async with ws:
        await _call(ws, wire, convo, questions, _thinker(think_s), timeout_s, no_speech_s)
    return convo


async def _call(
    ws: Any,
    wire: Wire,
    convo: Conversation,
    questions: Sequence[str | Path],
    think: Callable[[], float],
    timeout_s: float,
    no_speech_s: float | None,
) -> None:
    call = _Call(wire, convo)
    mic = _Mic(ws, wire, call)
    grace_s = wire.no_speech_grace_s if no_speech_s is None else no_speech_s
    receiver = asyncio.create_task(call.receive(ws, mic.now))
    try:
        if await mic.send(wire.opening()):
            for turn, path in zip(convo.turns, questions, strict=True):
                call.current = turn
                if turn is not convo.turns[0]:
                    await mic.silence_until(lambda t=turn: t.finished, mic.now() + think())
                if call.over or not await _ask(mic, turn, path, timeout_s, grace_s):
                    break
    finally:
        receiver.cancel()
        await asyncio.gather(receiver, return_exceptions=True)
    code = getattr(ws, "close_code", None)
    if code is not None and call.over:
        reason = getattr(ws, "close_reason", "") or "no reason given"
        convo.closed = {"code": code, "reason": reason}
        why = {"code": "closed", "message": f"the server closed the connection ({code}: {reason})"}
        convo.end(why, refused=code == CLOSE_AT_CAPACITY)
    else:
        why = {"code": "not_asked", "message": "the call ended before this turn"}
        convo.end(why, refused=False)


async def _ask(mic: _Mic, turn: Turn, path: str | Path, timeout_s: float, grace_s: float) -> bool:
    """One turn: the question, the wait for its answer, and the answer heard to its end.
    False once the call is over."""
    if turn.finished:  # refused while we were thinking
        return True
    audio, rate = read_audio(path, target_rate=mic.wire.rate)
    turn.asked_at_s = mic.sent_s
    turn.speech_end_s = mic.sent_s + speech_end_s(audio, rate)
    if not await mic.stream(float_to_pcm16(audio).tobytes(), turn):
        return False
    turn.quiet_from = sent = mic.now()
    deadline = sent + timeout_s
    while not turn.finished and mic.now() < deadline:
        if not turn.engaged and mic.now() - max(sent, turn.quiet_from) >= grace_s:
            why = f"no speech was heard in {turn.question}"
            turn.errors.append({"code": "no_speech", "message": why})
            return True
        if not await mic.frame():
            return False
    if not turn.finished:
        turn.errors.append({"code": "timeout", "message": f"no complete reply in {timeout_s:g} s"})
        return True
    end = playback_end_s(turn.chunks)  # a caller hears the answer out before speaking again
    if end is None:
        return True
    if not await mic.silence_until(lambda: False, end):
        return False
    return await mic.send(mic.wire.played(turn.reply_audio_s * 1000))  # as a player ends
