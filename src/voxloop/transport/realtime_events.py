"""The OpenAI Realtime API's objects and event names, in both of its dialects.

The generally available API (the `openai` SDK's `client.realtime`) and the older beta
(`client.beta.realtime`, which sends `OpenAI-Beta: realtime=v1`) differ in a few event
names and in the shape of the session, response and item objects. This module builds them
for either dialect and reads a `session.update` in either shape, so realtime.py only
deals with the conversation. No web framework here: plain dicts in, JSON text frames out.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass, field, replace
from typing import Any

RATE = 24000  # the Realtime API's only PCM rate
MAX_INSTRUCTIONS = 8000  # the native persona's limit

# GA name → beta name, for the events that were renamed at GA.
BETA_NAMES = {
    "response.output_audio.delta": "response.audio.delta",
    "response.output_audio.done": "response.audio.done",
    "response.output_audio_transcript.delta": "response.audio_transcript.delta",
    "response.output_audio_transcript.done": "response.audio_transcript.done",
}

# OpenAI's built-in voice names: accepted so that unmodified clients work; all of them
# speak with the server's own voice.
OPENAI_VOICES = frozenset(
    "alloy ash ballad coral echo sage shimmer verse marin cedar fable onyx nova".split()
)


class RealtimeError(Exception):
    """A client event the server cannot honour; becomes an `error` event."""

    def __init__(
        self, code: str, message: str, param: str | None = None, kind: str = "invalid_request_error"
    ) -> None:
        super().__init__(message)
        self.code, self.message, self.param, self.kind = code, message, param, kind


def new_id(prefix: str) -> str:
    """An id in OpenAI's style (`item_…`, `resp_…`, `event_…`)."""
    return f"{prefix}_{secrets.token_hex(10)}"


def wants_beta(openai_beta_header: str, subprotocols: list[str]) -> bool:
    """Beta clients announce themselves: the SDK and servers with `OpenAI-Beta:
    realtime=v1`, browsers with the `openai-beta.realtime-v1` subprotocol."""
    return "realtime=v1" in openai_beta_header.replace(" ", "") or (
        "openai-beta.realtime-v1" in subprotocols
    )


@dataclass
class TurnDetection:
    type: str = "server_vad"  # or "semantic_vad" (accepted, served by the same detector)
    threshold: float = 0.5
    prefix_padding_ms: int = 300
    silence_duration_ms: int = 500
    interrupt_response: bool = True
    eagerness: str = "auto"

    def as_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "type": self.type,
            "create_response": True,
            "interrupt_response": self.interrupt_response,
        }
        if self.type == "semantic_vad":
            out["eagerness"] = self.eagerness
        else:
            out.update(
                threshold=self.threshold,
                prefix_padding_ms=self.prefix_padding_ms,
                silence_duration_ms=self.silence_duration_ms,
                idle_timeout_ms=None,
            )
        return out


@dataclass
class SessionConfig:
    """What the client sees as its session; the native session holds the real settings."""

    id: str
    model: str
    instructions: str
    voice: str
    turn_detection: TurnDetection | None = field(default_factory=TurnDetection)
    transcription: dict[str, Any] | None = None
    noise_reduction: dict[str, Any] | None = None
    temperature: float = 0.8
    speed: float = 1.0
    max_output_tokens: int | str = "inf"

    def as_json(self, beta: bool) -> dict[str, Any]:
        td = self.turn_detection.as_json() if self.turn_detection else None
        if beta:
            return {
                "id": self.id,
                "object": "realtime.session",
                "model": self.model,
                "modalities": ["audio", "text"],
                "instructions": self.instructions,
                "voice": self.voice,
                "input_audio_format": "pcm16",
                "output_audio_format": "pcm16",
                "input_audio_transcription": self.transcription,
                "input_audio_noise_reduction": self.noise_reduction,
                "turn_detection": td,
                "tools": [],
                "tool_choice": "auto",
                "temperature": self.temperature,
                "speed": self.speed,
                "max_response_output_tokens": self.max_output_tokens,
            }
        pcm = {"type": "audio/pcm", "rate": RATE}
        return {
            "type": "realtime",
            "object": "realtime.session",
            "id": self.id,
            "model": self.model,
            "output_modalities": ["audio"],
            "instructions": self.instructions,
            "audio": {
                "input": {
                    "format": pcm,
                    "transcription": self.transcription,
                    "noise_reduction": self.noise_reduction,
                    "turn_detection": td,
                },
                "output": {"format": pcm, "voice": self.voice, "speed": self.speed},
            },
            "tools": [],
            "tool_choice": "auto",
            "max_output_tokens": self.max_output_tokens,
            "tracing": None,
            "truncation": "auto",
            "prompt": None,
            "include": None,
        }


_UNSET = object()


def _get(obj: Any, *path: str) -> Any:
    """obj[path[0]][path[1]]…, or _UNSET where a step is missing (None is a value)."""
    for key in path:
        if not isinstance(obj, dict) or key not in obj:
            return _UNSET
        obj = obj[key]
    return obj


def _check_format(value: Any, param: str) -> None:
    if value is _UNSET or value is None:
        return
    if isinstance(value, str):  # beta: "pcm16" | "g711_ulaw" | "g711_alaw"
        if value != "pcm16":
            raise RealtimeError(
                "unsupported_audio_format",
                f"{param} {value!r} is not supported; voxloop speaks pcm16 (24 kHz mono) only",
                param,
            )
        return
    if isinstance(value, dict):  # GA: {"type": "audio/pcm", "rate": 24000}
        kind, rate = value.get("type", "audio/pcm"), value.get("rate", RATE)
        if kind == "audio/pcm" and rate == RATE:
            return
        raise RealtimeError(
            "unsupported_audio_format",
            f"{param} {value!r} is not supported; use {{'type': 'audio/pcm', 'rate': 24000}}"
            " (PCM16, 24 kHz mono)",
            param,
        )
    raise RealtimeError("invalid_value", f"{param} must be a string or an object", param)


def _turn_detection(value: Any, current: TurnDetection | None, param: str) -> TurnDetection | None:
    if value is None:
        return None  # manual: the client commits and asks for each response
    if not isinstance(value, dict):
        raise RealtimeError("invalid_value", f"{param} must be an object or null", param)
    kind = value.get("type", "server_vad")
    if kind not in ("server_vad", "semantic_vad"):
        raise RealtimeError(
            "invalid_value", f"{param}.type {kind!r}: use server_vad, semantic_vad or null", param
        )
    if value.get("create_response") is False:
        raise RealtimeError(
            "unsupported_value",
            f"{param}.create_response false is not supported: with voice activity detection"
            " voxloop always answers; use turn_detection null to commit and ask for each"
            " response yourself",
            f"{param}.create_response",
        )
    if value.get("idle_timeout_ms") is not None:
        raise RealtimeError(
            "unsupported_value",
            f"{param}.idle_timeout_ms is not supported",
            f"{param}.idle_timeout_ms",
        )
    td = replace(current) if current else TurnDetection()
    td.type = kind
    silence = value.get("silence_duration_ms")
    if silence is not None:
        if not isinstance(silence, int | float) or not 100 <= silence <= 5000:
            raise RealtimeError(
                "invalid_value",
                f"{param}.silence_duration_ms must be between 100 and 5000",
                f"{param}.silence_duration_ms",
            )
        td.silence_duration_ms = int(silence)
    for name in ("threshold", "prefix_padding_ms", "eagerness"):
        if value.get(name) is not None:
            setattr(td, name, value[name])  # reported back; the server's own VAD decides
    if value.get("interrupt_response") is not None:
        td.interrupt_response = bool(value["interrupt_response"])
    return td


def apply_session_update(cfg: SessionConfig, s: Any) -> tuple[SessionConfig, str | None]:
    """The session after `session.update` (either dialect's shape), and the voice asked
    for (None: unchanged). Raises RealtimeError, changing nothing, for what is unsupported."""
    if not isinstance(s, dict):
        raise RealtimeError("invalid_value", "session must be an object", "session")
    new = replace(cfg)
    if s.get("type", "realtime") != "realtime":
        raise RealtimeError(
            "unsupported_value",
            f"session.type {s.get('type')!r} is not supported; only 'realtime'",
            "session.type",
        )
    for param in ("modalities", "output_modalities"):
        modes = s.get(param)
        if modes is not None and not isinstance(modes, list):
            raise RealtimeError(
                "invalid_value",
                f"session.{param} must be a list, got {modes!r}",
                f"session.{param}",
            )
        if modes is not None and "audio" not in modes:
            raise RealtimeError(
                "unsupported_value",
                f"session.{param} {modes!r}: text-only responses are not supported;"
                " voxloop always answers with audio (and its transcript)",
                f"session.{param}",
            )
    if s.get("tools"):
        raise RealtimeError(
            "unsupported_value", "session.tools: function calling is not supported", "session.tools"
        )
    _check_format(s.get("input_audio_format", _UNSET), "session.input_audio_format")
    _check_format(s.get("output_audio_format", _UNSET), "session.output_audio_format")
    _check_format(_get(s, "audio", "input", "format"), "session.audio.input.format")
    _check_format(_get(s, "audio", "output", "format"), "session.audio.output.format")

    instructions = s.get("instructions")
    if instructions is not None:
        if not isinstance(instructions, str) or len(instructions) > MAX_INSTRUCTIONS:
            raise RealtimeError(
                "invalid_value",
                f"session.instructions must be a string of at most {MAX_INSTRUCTIONS} characters",
                "session.instructions",
            )
        new.instructions = instructions
    for path in (("turn_detection",), ("audio", "input", "turn_detection")):
        value = _get(s, *path)
        if value is not _UNSET:
            new.turn_detection = _turn_detection(
                value, cfg.turn_detection, "session." + ".".join(path)
            )
    for path, name in (
        (("input_audio_transcription",), "transcription"),
        (("audio", "input", "transcription"), "transcription"),
        (("input_audio_noise_reduction",), "noise_reduction"),
        (("audio", "input", "noise_reduction"), "noise_reduction"),
        (("temperature",), "temperature"),
        (("speed",), "speed"),
        (("audio", "output", "speed"), "speed"),
        (("max_response_output_tokens",), "max_output_tokens"),
        (("max_output_tokens",), "max_output_tokens"),
    ):
        value = _get(s, *path)
        if value is not _UNSET and (
            value is not None or name in ("transcription", "noise_reduction")
        ):
            setattr(new, name, value)  # accepted and reported back; see docs/protocol.md
    voice = s.get("voice")
    if (v := _get(s, "audio", "output", "voice")) is not _UNSET:
        voice = v
    if voice is not None and not isinstance(voice, str):
        raise RealtimeError(
            "unsupported_value", "custom voice objects are not supported", "session.voice"
        )
    return new, voice


# -- items and responses ---------------------------------------------------------------------


def user_item(
    item_id: str, *, text: str | None = None, transcript: str | None = None, status: str
) -> dict[str, Any]:
    """A user message: typed text, or audio (whose transcript may not be known yet)."""
    part = (
        {"type": "input_text", "text": text}
        if text is not None
        else {"type": "input_audio", "transcript": transcript}
    )
    return {
        "id": item_id,
        "object": "realtime.item",
        "type": "message",
        "role": "user",
        "status": status,
        "content": [part],
    }


def assistant_item(
    item_id: str, beta: bool, *, status: str, transcript: str | None = None
) -> dict[str, Any]:
    content = []
    if transcript is not None:
        content.append({"type": "audio" if beta else "output_audio", "transcript": transcript})
    return {
        "id": item_id,
        "object": "realtime.item",
        "type": "message",
        "role": "assistant",
        "status": status,
        "content": content,
    }


def usage_zero() -> dict[str, Any]:
    """Tokens are not counted: zeros, so that clients adding them up keep working."""
    return {
        "total_tokens": 0,
        "input_tokens": 0,
        "output_tokens": 0,
        "input_token_details": {"text_tokens": 0, "audio_tokens": 0, "cached_tokens": 0},
        "output_token_details": {"text_tokens": 0, "audio_tokens": 0},
    }


def response_object(
    response_id: str,
    beta: bool,
    cfg: SessionConfig,
    *,
    status: str,
    output: list[dict[str, Any]],
    status_details: dict[str, Any] | None = None,
    metadata: dict[str, Any] | None = None,
) -> dict[str, Any]:
    out: dict[str, Any] = {
        "object": "realtime.response",
        "id": response_id,
        "status": status,
        "status_details": status_details,
        "output": output,
        "conversation_id": "conv_" + cfg.id.removeprefix("sess_"),
        "metadata": metadata,
        "usage": usage_zero() if status != "in_progress" else None,
        "max_output_tokens": cfg.max_output_tokens,
    }
    if beta:
        out.update(
            modalities=["audio", "text"],
            voice=cfg.voice,
            output_audio_format="pcm16",
            temperature=cfg.temperature,
        )
    else:
        out.update(
            output_modalities=["audio"],
            audio={"output": {"format": {"type": "audio/pcm", "rate": RATE}, "voice": cfg.voice}},
        )
    return out


@dataclass
class Response:
    """One Realtime response: the reply of one native turn."""

    id: str = field(default_factory=lambda: new_id("resp"))
    item_id: str = field(default_factory=lambda: new_id("item"))
    announced: bool = False
    transcript: str = ""  # the transcript deltas so far
    cut: str | None = None  # the native tts_stop reason that ended it early
    error: dict[str, Any] | None = None
    metadata: dict[str, Any] | None = None
    previous_item: str | None = None  # the conversation item before its own

    def ids(self) -> dict[str, Any]:
        return {
            "response_id": self.id,
            "item_id": self.item_id,
            "output_index": 0,
            "content_index": 0,
        }


class Emitter:
    """Server events as text frames in the client's dialect. It also keeps the order of
    the conversation's items, for their `previous_item_id`."""

    def __init__(self, beta: bool) -> None:
        self.beta = beta
        self.last_item: str | None = None

    def event(self, kind: str, **fields: Any) -> str:
        if self.beta:
            kind = BETA_NAMES.get(kind, kind)
        return json.dumps({"type": kind, "event_id": new_id("event"), **fields})

    def error(self, exc: RealtimeError, client_event_id: str | None = None) -> str:
        error = {
            "type": exc.kind,
            "code": exc.code,
            "message": exc.message,
            "param": exc.param,
            "event_id": client_event_id,
        }
        return self.event("error", error=error)

    def item_added(self, item: dict[str, Any], *, done: bool) -> list[str]:
        """A new conversation item: beta `created`; GA `added` (and `done` if complete)."""
        previous, self.last_item = self.last_item, item["id"]
        if self.beta:
            return [self.event("conversation.item.created", previous_item_id=previous, item=item)]
        frames = [self.event("conversation.item.added", previous_item_id=previous, item=item)]
        return frames + (self.item_done(item, previous) if done else [])

    def item_done(self, item: dict[str, Any], previous: str | None) -> list[str]:
        if self.beta:
            return []
        return [self.event("conversation.item.done", previous_item_id=previous, item=item)]

    def user_audio(
        self, item_id: str, transcript: str | None, seconds: float, failure: str | None = None
    ) -> list[str]:
        """Committed audio: the user's item and its transcription (or why it failed)."""
        previous = self.last_item
        frames = [
            self.event("input_audio_buffer.committed", previous_item_id=previous, item_id=item_id),
            *self.item_added(user_item(item_id, status="completed"), done=False),
        ]
        ids = {"item_id": item_id, "content_index": 0}
        if transcript is None:
            error = {"type": "transcription_error", "code": "stt_failed", "message": failure}
            kind = "conversation.item.input_audio_transcription.failed"
            return [*frames, self.event(kind, **ids, error=error)]
        usage = {"type": "duration", "seconds": round(seconds, 3)}
        kind = "conversation.item.input_audio_transcription.completed"
        frames.append(self.event(kind, **ids, transcript=transcript, usage=usage))
        item = user_item(item_id, transcript=transcript, status="completed")
        return frames + self.item_done(item, previous)

    def response_started(self, resp: Response, cfg: SessionConfig) -> list[str]:
        resp.announced, resp.previous_item = True, self.last_item
        item = assistant_item(resp.item_id, self.beta, status="in_progress")
        created = response_object(
            resp.id, self.beta, cfg, status="in_progress", output=[], metadata=resp.metadata
        )
        part = {"type": "audio", "transcript": ""}
        return [
            self.event("response.created", response=created),
            self.event(
                "response.output_item.added", response_id=resp.id, output_index=0, item=item
            ),
            *self.item_added(item, done=False),
            self.event("response.content_part.added", **resp.ids(), part=part),
        ]

    def response_done(
        self,
        resp: Response,
        cfg: SessionConfig,
        status: str,
        details: dict[str, Any] | None,
        transcript: str,
    ) -> list[str]:
        item_status = "completed" if status == "completed" else "incomplete"
        item = assistant_item(resp.item_id, self.beta, status=item_status, transcript=transcript)
        done = response_object(
            resp.id,
            self.beta,
            cfg,
            status=status,
            output=[item],
            status_details=details,
            metadata=resp.metadata,
        )
        ids = resp.ids()
        part = {"type": "audio", "transcript": transcript}
        return [
            self.event("response.output_audio.done", **ids),
            self.event("response.output_audio_transcript.done", **ids, transcript=transcript),
            self.event("response.content_part.done", **ids, part=part),
            self.event("response.output_item.done", response_id=resp.id, output_index=0, item=item),
            *self.item_done(item, resp.previous_item),
            self.event("response.done", response=done),
        ]
