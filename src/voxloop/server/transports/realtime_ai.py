"""The `realtime-ai` profile of `/ws`: the wire format of the realtime-ai voice clients,
mapped onto the same session core as the native protocol (docs/protocol.md, "The
`realtime-ai` profile").

What differs from the native protocol:

- audio is 16 kHz PCM16 mono both ways, fixed: the client never negotiates a rate;
- every binary frame carries a header: the client's `[u32 timestamp ms][u32 flags]` (8
  bytes) before its PCM, ours `[u32 request id][u32 chunk seq][u32 timestamp ms]` (12
  bytes, little-endian) before the reply's PCM;
- the client knows a smaller set of events: transcripts say `content`, not `text`;
  `llm_response.content` is the reply so far, not a delta; `status` is one of listening,
  thinking, idle, error. Native events it does not know are not sent.

The client's flags (energy, silence, first chunk) are kept for diagnostics only: our own
VAD decides what is speech, so a client's silence detector cannot cut a user off.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from voxloop.protocol import messages as p
from voxloop.server.transports.profile import Frame, Profile

if TYPE_CHECKING:
    from voxloop.protocol.outbox import OutMessage
    from voxloop.session.session import Session

SAMPLE_RATE = 16000  # both ways; the client cannot ask for another
CLIENT_HEADER = struct.Struct("<II")  # timestamp ms, flags
SERVER_HEADER = struct.Struct("<III")  # request id, chunk seq, timestamp ms
FLAG_ENERGY = 0xFF  # bits 0-7: the client's energy estimate
FLAG_SILENCE = 1 << 8  # the client thinks this chunk is silence
FLAG_FIRST = 1 << 9  # the first chunk of the client's capture
U32 = 0xFFFFFFFF

# Control messages the client may send. `text_input` is the client's typed message;
# `text` (the native shape of the same) and `playback` are voxloop extensions.
CONTROL_TYPES = (
    "start",
    "stop",
    "reset",
    "interrupt",
    "clear_queues",
    "text_input",
    "text",
    "playback",
)
MAX_TEXT_CHARS = 8000  # the native `text`'s limit
# The native `start` fields a client may add (extension); the audio rates are fixed.
START_FIELDS = ("session_id", "user_id", "voice", "persona")

# Native event → the fields the client gets besides type, session_id and turn_id. Events
# not listed here are not sent (session, configured, pong, metrics, tool_calls,
# false_interruption, context_updated, ...).
EVENT_FIELDS: dict[str, tuple[str, ...]] = {
    "status": ("status",),
    "partial_transcript": ("content",),
    "final_transcript": ("content",),
    "llm_status": ("status",),
    "llm_response": ("content", "is_complete", "interrupted"),
    "tts_start": ("format", "sample_rate", "channels", "resumed"),
    "tts_end": (),
    "tts_stop": ("reason", "dropped_bytes"),
    "interrupt_acknowledged": (),
    "stop_acknowledged": (),
    "error": ("code", "message"),
}
# Native status → the client's; None: not sent. "speaking" has no counterpart: the client
# stays in "thinking" until the reply ends, and tts_start/tts_end tell it about the audio.
STATUS = {
    "listening": "listening",
    "thinking": "thinking",
    "queued": "thinking",  # still before the answer, only slower
    "idle": "idle",
    "speaking": None,
}


@dataclass(frozen=True)
class ClientFrame:
    """One client binary frame, header parsed."""

    timestamp_ms: int
    flags: int
    pcm: bytes

    @property
    def energy(self) -> int:
        return self.flags & FLAG_ENERGY

    @property
    def silence(self) -> bool:
        return bool(self.flags & FLAG_SILENCE)

    @property
    def first(self) -> bool:
        return bool(self.flags & FLAG_FIRST)


def parse_client_frame(data: bytes) -> ClientFrame:
    """Split and validate `[u32 timestamp][u32 flags][PCM16]`; ProtocolError if malformed."""
    if len(data) > p.MAX_FRAME_BYTES:
        raise p.ProtocolError(
            "frame_too_large",
            f"audio frame of {len(data)} bytes is over the {p.MAX_FRAME_BYTES}-byte limit",
        )
    if len(data) < CLIENT_HEADER.size:
        raise p.ProtocolError(
            "frame_too_short",
            f"an audio frame starts with an 8-byte header (u32 timestamp, u32 flags); "
            f"got {len(data)} bytes",
        )
    timestamp_ms, flags = CLIENT_HEADER.unpack_from(data)
    pcm = data[CLIENT_HEADER.size :]
    if len(pcm) % 2:
        raise p.ProtocolError(
            "odd_frame_length",
            f"PCM16 audio needs an even number of bytes after the 8-byte header, got {len(pcm)}",
        )
    return ClientFrame(timestamp_ms, flags, pcm)


@dataclass(frozen=True)
class ClearQueues:
    """The client's `clear_queues`, which has no native message (see `_clear_queues`)."""


def parse_control(raw: str | bytes) -> p.ClientMessage | ClearQueues:
    """Parse one client control message (a JSON text frame); ProtocolError if malformed.
    Pure, so the fuzzer and property tests can reach it without a session."""
    data = p.load_json(raw)
    if not isinstance(data, dict):
        raise p.ProtocolError("bad_json", "a control message must be a JSON object")
    name = data.get("type", data.get("command"))
    if not isinstance(name, str):
        raise p.ProtocolError("bad_message", "a control message needs a 'type'")
    if name not in CONTROL_TYPES:
        known = ", ".join(CONTROL_TYPES)
        raise p.ProtocolError("unknown_type", f"unknown message type {name!r}; known: {known}")
    if name == "clear_queues":
        return ClearQueues()
    if name == "text_input":
        return _text_input(data.get("text"))
    fields: dict[str, Any] = {k: v for k, v in data.items() if k not in ("type", "command")}
    if name == "start":
        fields = {k: fields[k] for k in START_FIELDS if k in fields}
        fields.update(sample_rate=SAMPLE_RATE, output_sample_rate=SAMPLE_RATE)
    # The native parser validates the fields and words the errors.
    return p.parse_client_message(json.dumps({**fields, "type": name}))


def _text_input(text: Any) -> p.Text:
    """The client's typed message, `{"type": "text_input", "text": ...}`: a text turn,
    the native `text` with its `content`."""
    if not isinstance(text, str) or not 1 <= len(text) <= MAX_TEXT_CHARS:
        raise p.ProtocolError(
            "bad_message",
            f"invalid 'text_input' message: text must be a string of 1-{MAX_TEXT_CHARS}"
            f" characters, got {_show(text)}",
        )
    return p.Text(content=text)


def _show(value: Any) -> str:
    """What the client sent, in JSON's words, without echoing it."""
    if isinstance(value, str):
        return f"{len(value)} characters"
    names = {bool: "a boolean", int: "a number", float: "a number", list: "an array"}
    return "nothing" if value is None else names.get(type(value), "an object")


def server_frame(request_id: int, seq: int, timestamp_ms: int, pcm: bytes) -> bytes:
    """`[u32 request id][u32 chunk seq][u32 timestamp ms]` then the PCM (values wrap)."""
    return SERVER_HEADER.pack(request_id & U32, seq & U32, timestamp_ms & U32) + pcm


@dataclass
class ClientAudioStats:
    """What the client's frame headers said, for diagnostics; nothing acts on it."""

    frames: int = 0
    pcm_bytes: int = 0
    flagged_silent: int = 0  # frames the client marked as silence
    first_chunks: int = 0  # frames with the first-chunk flag (one per client capture)
    last_timestamp_ms: int | None = None
    last_energy: int = 0

    def add(self, frame: ClientFrame) -> None:
        self.frames += 1
        self.pcm_bytes += len(frame.pcm)
        self.flagged_silent += frame.silence
        self.first_chunks += frame.first
        self.last_timestamp_ms = frame.timestamp_ms
        self.last_energy = frame.energy


class RealtimeAIProfile(Profile):
    """One realtime-ai connection: header-framed 16 kHz audio and the client's events."""

    name = "realtime-ai"

    def __init__(self) -> None:
        self.stats = ClientAudioStats()
        self._opened_at: float | None = None  # server frame timestamps count from here
        self._audio_turn: int | None = None  # the reply whose audio is going out
        self._seq = 0  # its next chunk number
        self._replies: dict[int, str] = {}  # turn id → reply text so far
        self._voiced: set[int] = set()  # turns whose audio has begun: their text is shown

    async def open(self, session: Session) -> list[Frame]:
        self._opened_at = session.clock.now()
        return []

    # -- client → server ------------------------------------------------------------------

    async def on_bytes(self, session: Session, data: bytes) -> list[Frame]:
        try:
            frame = parse_client_frame(data)
        except p.ProtocolError as exc:
            session.error(exc.code, exc.message)
            return []
        self.stats.add(frame)
        if frame.pcm:  # a header alone (a keep-alive) has nothing to hear
            session.handle_audio_frame(frame.pcm)  # says `not_started` once, before start
        return []

    async def on_text(self, session: Session, raw: str) -> list[Frame]:
        try:
            await self._control(session, raw)
        except p.ProtocolError as exc:
            session.error(exc.code, exc.message)
        return []

    async def _control(self, session: Session, raw: str) -> None:
        msg = parse_control(raw)
        if isinstance(msg, ClearQueues):
            await self._clear_queues(session)
        else:
            await session.handle(msg)

    async def _clear_queues(self, session: Session) -> None:
        """Cut the reply and drop its queued audio, like `interrupt` but without its
        acknowledgement; the answer is always a `status`, so the client knows it is done."""
        cutting = session.reply is not None and not session.reply.done
        await session.replies.interrupt("clear_queues")  # tts_stop and status, if a reply was cut
        if not cutting:
            session.outbox.control(session.event("status", status=session.status))

    # -- server → client ------------------------------------------------------------------

    def render(self, session: Session, msg: OutMessage) -> list[Frame]:
        if msg.audio is not None:
            return self._audio(session, msg)
        if msg.json is None:
            return []
        return [json.dumps(out) for out in self._events(msg.json)]

    def _audio(self, session: Session, msg: OutMessage) -> list[Frame]:
        if not msg.audio:
            return []  # a header alone would read as an empty chunk: send nothing
        turn = msg.turn_id or 0
        if turn != self._audio_turn:
            self._audio_turn, self._seq = turn, 0
        seq, self._seq = self._seq, self._seq + 1
        if self._opened_at is None:
            self._opened_at = session.clock.now()
        elapsed_ms = int((session.clock.now() - self._opened_at) * 1000)
        return [server_frame(turn, seq, elapsed_ms, msg.audio)]

    def _events(self, native: dict[str, Any]) -> list[dict[str, Any]]:
        """The client's messages for one native event. A reply's text is shown with its
        voice: `llm_response` waits for the turn's `tts_start`, which brings the text so
        far. The client has no way to take back text it has shown, so a reply cut before
        it was spoken (its text never heard) shows nothing at all, instead of its text and
        then an empty `llm_response`."""
        kind, turn = native.get("type"), native.get("turn_id")
        key = turn if turn is not None else -1
        out = self._event(native)
        if kind == "llm_response" and out is not None:
            out["content"] = self._reply_text(key, native)
            if out.get("is_complete"):
                shown = key in self._voiced
                self._voiced.discard(key)
                if not shown and native.get("interrupted"):
                    return []  # cut before a word was spoken: nothing to show or close
            elif key not in self._voiced:
                return []  # held until the reply's voice starts
        events = [out] if out is not None else []
        if kind == "tts_start" and out is not None and key not in self._voiced:
            self._voiced.add(key)
            if text := self._replies.get(key):  # the text so far, with the first audio
                ids = {k: out[k] for k in ("session_id", "turn_id") if k in out}
                events.append(
                    {"type": "llm_response", **ids, "content": text, "is_complete": False}
                )
        elif kind == "error" and native.get("code") == "reply_failed" and key not in self._voiced:
            self._replies.pop(key, None)  # never spoken: its apology must not bring it
        elif kind == "metrics":  # the turn is over (a failed one sends no completion)
            self._voiced.discard(key)
            self._replies.pop(key, None)
        return events

    def _event(self, native: dict[str, Any]) -> dict[str, Any] | None:
        kind = native.get("type")
        keep = EVENT_FIELDS.get(kind) if isinstance(kind, str) else None
        if keep is None:
            return None
        source = dict(native)
        turn = native.get("turn_id")
        if kind == "status":
            status = STATUS.get(native.get("status", ""))
            if status is None:
                return None
            source["status"] = status
        elif kind in ("partial_transcript", "final_transcript"):
            source["content"] = native.get("text", "")
        out: dict[str, Any] = {"type": kind, "session_id": native.get("session_id")}
        if turn is not None:
            out["turn_id"] = turn
        out.update({k: source[k] for k in keep if k in source})
        return out

    def _reply_text(self, key: int, native: dict[str, Any]) -> str:
        """The reply so far: deltas add up; the complete message's `content` is the
        whole reply (or, if it was cut, what the user heard) and closes the turn."""
        if native.get("is_complete"):
            self._replies.pop(key, None)
            return str(native.get("content") or "")
        text = self._replies.get(key, "") + str(native.get("delta") or "")
        self._replies[key] = text
        return text
