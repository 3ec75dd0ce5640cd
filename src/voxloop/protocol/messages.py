"""The voxloop WebSocket protocol, independent of any web framework.

Binary frames carry PCM16 mono audio; text frames carry JSON control messages and events.
This module parses and validates what clients send and builds what the server sends, so
the same rules serve every transport and can be tested without a server.
docs/protocol.md is the human version of this file.
"""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

MAX_FRAME_BYTES = 1 << 20  # 1 MiB
SUPPORTED_RATES = (8000, 16000, 24000, 48000)
DEFAULT_RATE = 16000
AUDIO_FORMAT = "pcm16"


class ProtocolError(Exception):
    """A bad message from a client. `code` is stable; clients may switch on it."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class _Msg(BaseModel):
    model_config = ConfigDict(extra="ignore")


class Start(_Msg):
    type: Literal["start"] = "start"
    sample_rate: int = DEFAULT_RATE
    output_sample_rate: int | None = None  # default: the TTS's own rate
    # Not checked here: the session checks both ids with `valid_session_id` (1-128 of
    # [A-Za-z0-9_.:-], store/base.py) and answers `bad_session_id` / `bad_user_id`, then
    # goes on with a new session; a length limit here would refuse the whole start instead.
    session_id: str | None = None
    user_id: str | None = None
    voice: str | None = Field(None, max_length=256)
    persona: str | None = Field(None, max_length=8000)


class Stop(_Msg):
    type: Literal["stop"] = "stop"


class Reset(_Msg):
    type: Literal["reset"] = "reset"


class Interrupt(_Msg):
    type: Literal["interrupt"] = "interrupt"


class Text(_Msg):
    type: Literal["text"] = "text"
    content: str = Field(min_length=1, max_length=8000)


class Playback(_Msg):
    """How much of the current reply's audio the client has played, in milliseconds."""

    type: Literal["playback"] = "playback"
    ms: float = Field(ge=0)
    turn_id: int | None = None


class Configure(_Msg):
    """Change a live session's settings; omitted fields stay as they are."""

    type: Literal["configure"] = "configure"
    persona: str | None = Field(None, max_length=8000)
    voice: str | None = Field(None, max_length=256)
    end_of_turn_silence_s: float | None = Field(None, ge=0.1, le=5.0)
    barge_in: bool | None = None


class Ping(_Msg):
    type: Literal["ping"] = "ping"
    t: Any = None  # echoed back in the pong, for round-trip measurement


ClientMessage = Start | Stop | Reset | Interrupt | Text | Playback | Configure | Ping
MESSAGE_TYPES: dict[str, type[_Msg]] = {
    "start": Start,
    "stop": Stop,
    "reset": Reset,
    "interrupt": Interrupt,
    "text": Text,
    "playback": Playback,
    "configure": Configure,
    "ping": Ping,
}


def load_json(raw: str | bytes) -> Any:
    """`json.loads` for untrusted text: every failure, nesting too deep for the parser's
    recursion included, is a `bad_json` ProtocolError rather than a crash of the loop."""
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ProtocolError("bad_json", f"malformed JSON: {exc}") from None
    except RecursionError:
        raise ProtocolError("bad_json", "malformed JSON: nested too deeply") from None


def parse_client_message(raw: str | bytes) -> ClientMessage:
    """Parse one JSON text frame. The name may be under `type` or `command`."""
    data = load_json(raw)
    if not isinstance(data, dict):
        raise ProtocolError("bad_json", "a control message must be a JSON object")
    name = data.get("type", data.get("command"))
    if not isinstance(name, str):
        raise ProtocolError("bad_message", "a control message needs a 'type' (or 'command')")
    cls = MESSAGE_TYPES.get(name)
    if cls is None:
        known = ", ".join(MESSAGE_TYPES)
        raise ProtocolError("unknown_type", f"unknown message type {name!r}; known: {known}")
    fields = {k: v for k, v in data.items() if k not in ("type", "command")}
    try:
        msg = cls.model_validate(fields)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or name}: {e['msg']}" for e in exc.errors()
        )
        raise ProtocolError("bad_message", f"invalid {name!r} message: {problems}") from None
    if isinstance(msg, Start):
        for name in ("sample_rate", "output_sample_rate"):
            rate = getattr(msg, name)
            if rate is not None and rate not in SUPPORTED_RATES:
                rates = ", ".join(map(str, SUPPORTED_RATES))
                raise ProtocolError(
                    "unsupported_sample_rate",
                    f"{name} {rate} is not supported; use one of {rates}",
                )
    return msg  # type: ignore[return-value]


def check_audio_frame(data: bytes, *, started: bool) -> None:
    """Validate one binary frame of PCM16 audio before it reaches the pipeline."""
    if not started:
        raise ProtocolError("not_started", "audio before 'start'; send a start message first")
    if len(data) > MAX_FRAME_BYTES:
        raise ProtocolError(
            "frame_too_large",
            f"audio frame of {len(data)} bytes is over the {MAX_FRAME_BYTES}-byte limit",
        )
    if len(data) % 2:
        raise ProtocolError(
            "odd_frame_length",
            f"PCM16 frames need an even number of bytes, got {len(data)}",
        )


def event(type_: str, session_id: str, turn_id: int | None = None, **fields: Any) -> dict:
    """A server → client JSON event. Every event names its session, and its turn if any."""
    out: dict[str, Any] = {"type": type_, "session_id": session_id}
    if turn_id is not None:
        out["turn_id"] = turn_id
    out.update(fields)
    return out


def audio_format(sample_rate: int) -> dict[str, Any]:
    return {"format": AUDIO_FORMAT, "sample_rate": sample_rate, "channels": 1}
