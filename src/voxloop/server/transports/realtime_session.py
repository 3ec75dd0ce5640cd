"""The OpenAI Realtime API's session object, and `session.update` (and `response.create`'s
parameters) read field by field in either dialect (GA or beta; see realtime_events.py):
what voxloop honours, what it accepts and reports back, and what it refuses with an error
naming the field. A field of the wrong JSON type is refused too, never passed on: it
would fail deeper down, as a server error, or be echoed back to the client as it came."""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any

RATE = 24000  # the Realtime API's only PCM rate
MAX_INSTRUCTIONS = 8000  # the native persona's limit


class RealtimeError(Exception):
    """A client event the server cannot honour; becomes an `error` event."""

    def __init__(
        self, code: str, message: str, param: str | None = None, kind: str = "invalid_request_error"
    ) -> None:
        super().__init__(message)
        self.code, self.message, self.param, self.kind = code, message, param, kind


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
EAGERNESS = ("low", "medium", "high", "auto")


def _get(obj: Any, *path: str) -> Any:
    """obj[path[0]][path[1]]…, or _UNSET where a step is missing (None is a value)."""
    for key in path:
        if not isinstance(obj, dict) or key not in obj:
            return _UNSET
        obj = obj[key]
    return obj


def show(value: Any) -> str:
    """A client's value in an error message, cut short: it may be of any size."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _invalid(param: str, expected: str, value: Any) -> RealtimeError:
    return RealtimeError("invalid_value", f"{param} must be {expected}, got {show(value)}", param)


def expect_number(value: Any, param: str, low: float = -math.inf, high: float = math.inf) -> float:
    """A finite JSON number (not a boolean) within [low, high]."""
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or not low <= value <= high
    ):
        bounds = "" if math.isinf(low) and math.isinf(high) else f" from {low:g} to {high:g}"
        raise _invalid(param, "a number" + bounds, value)
    return value


def expect_int(value: Any, param: str, low: int = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise _invalid(param, f"an integer of at least {low}", value)
    return value


def expect_str(value: Any, param: str) -> str:
    if not isinstance(value, str):
        raise _invalid(param, "a string", value)
    return value


def _expect_bool(value: Any, param: str) -> bool:
    if not isinstance(value, bool):
        raise _invalid(param, "true or false", value)
    return value


def _expect_object(value: Any, param: str, *, nullable: bool = False) -> None:
    if not (isinstance(value, dict) or (nullable and value is None)):
        raise _invalid(param, "an object or null" if nullable else "an object", value)


def _check_modalities(value: Any, param: str) -> None:
    if not isinstance(value, list) or not all(isinstance(m, str) for m in value):
        raise _invalid(param, "a list of strings", value)
    if "audio" not in value:
        raise RealtimeError(
            "unsupported_value",
            f"{param} {show(value)}: text-only responses are not supported;"
            " voxloop always answers with audio (and its transcript)",
            param,
        )


def _check_tools(value: Any, param: str) -> None:
    if value is None:
        return
    if not isinstance(value, list):
        raise _invalid(param, "a list", value)
    if value:
        raise RealtimeError(
            "unsupported_value", f"{param}: function calling is not supported", param
        )


def _max_tokens(value: Any, param: str) -> int | str:
    if value == "inf":
        return "inf"
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 4096:
        raise _invalid(param, 'an integer from 1 to 4096 or "inf"', value)
    return value


def _check_format(value: Any, param: str) -> None:
    if value is _UNSET or value is None:
        return
    if isinstance(value, str):  # beta: "pcm16" | "g711_ulaw" | "g711_alaw"
        if value != "pcm16":
            raise RealtimeError(
                "unsupported_audio_format",
                f"{param} {show(value)} is not supported; voxloop speaks pcm16 (24 kHz mono) only",
                param,
            )
        return
    if isinstance(value, dict):  # GA: {"type": "audio/pcm", "rate": 24000}
        kind, rate = value.get("type", "audio/pcm"), value.get("rate", RATE)
        if kind == "audio/pcm" and rate == RATE:
            return
        raise RealtimeError(
            "unsupported_audio_format",
            f"{param} {show(value)} is not supported; use {{'type': 'audio/pcm', 'rate': 24000}}"
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
            "invalid_value",
            f"{param}.type {show(kind)}: use server_vad, semantic_vad or null",
            param,
        )
    create = value.get("create_response")
    if create is not None:
        _expect_bool(create, f"{param}.create_response")
    if create is False:
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
        name = f"{param}.silence_duration_ms"
        td.silence_duration_ms = int(expect_number(silence, name, 100, 5000))
    # Reported back; the server's own VAD decides.
    if (threshold := value.get("threshold")) is not None:
        td.threshold = expect_number(threshold, f"{param}.threshold", 0.0, 1.0)
    if (padding := value.get("prefix_padding_ms")) is not None:
        td.prefix_padding_ms = expect_int(padding, f"{param}.prefix_padding_ms")
    if (eagerness := value.get("eagerness")) is not None:
        if eagerness not in EAGERNESS:
            raise _invalid(f"{param}.eagerness", " or ".join(map(repr, EAGERNESS)), eagerness)
        td.eagerness = eagerness
    if (interrupt := value.get("interrupt_response")) is not None:
        td.interrupt_response = _expect_bool(interrupt, f"{param}.interrupt_response")
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
            f"session.type {show(s.get('type'))} is not supported; only 'realtime'",
            "session.type",
        )
    for path in (("audio",), ("audio", "input"), ("audio", "output")):
        if (value := _get(s, *path)) is not _UNSET:
            _expect_object(value, "session." + ".".join(path))
    for param in ("modalities", "output_modalities"):
        if s.get(param) is not None:
            _check_modalities(s[param], f"session.{param}")
    _check_tools(s.get("tools"), "session.tools")
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
    ):
        if (value := _get(s, *path)) is not _UNSET:
            _expect_object(value, "session." + ".".join(path), nullable=True)
            setattr(new, name, value)  # accepted and reported back; see docs/protocol.md
    for path, name in (
        (("temperature",), "temperature"),
        (("speed",), "speed"),
        (("audio", "output", "speed"), "speed"),
        (("max_response_output_tokens",), "max_output_tokens"),
        (("max_output_tokens",), "max_output_tokens"),
    ):
        value = _get(s, *path)
        if value is _UNSET or value is None:
            continue
        param = "session." + ".".join(path)
        if name == "max_output_tokens":
            new.max_output_tokens = _max_tokens(value, param)
        else:
            setattr(new, name, expect_number(value, param))  # reported back, no effect
    voice = s.get("voice")
    param = "session.voice"
    if (v := _get(s, "audio", "output", "voice")) is not _UNSET:
        voice, param = v, "session.audio.output.voice"
    if isinstance(voice, dict):
        raise RealtimeError("unsupported_value", "custom voice objects are not supported", param)
    if voice is not None:
        expect_str(voice, param)
    return new, voice


def read_response_params(params: Any) -> dict[str, Any]:
    """`response.create`'s `response` (None: none given), checked field by field:
    what is honoured or ignored must at least be of its type; what is unsupported is
    refused. Returns the parameters."""
    if params is None:
        return {}
    _expect_object(params, "response")
    conversation = params.get("conversation")
    if conversation is not None and expect_str(conversation, "response.conversation") != "auto":
        raise RealtimeError(
            "unsupported_value",
            "out-of-band responses are not supported (conversation must be 'auto')",
            "response.conversation",
        )
    if params.get("input") is not None:
        raise RealtimeError(
            "unsupported_value", "response.input is not supported", "response.input"
        )
    _check_tools(params.get("tools"), "response.tools")
    for name in ("output_modalities", "modalities"):
        if params.get(name) is not None:
            _check_modalities(params[name], f"response.{name}")
    if (metadata := params.get("metadata")) is not None:
        _expect_object(metadata, "response.metadata")
    # Ignored (docs/protocol.md), but a client's mistake all the same.
    for name in ("instructions", "voice"):
        if params.get(name) is not None:
            expect_str(params[name], f"response.{name}")
    if params.get("temperature") is not None:
        expect_number(params["temperature"], "response.temperature")
    for name in ("max_output_tokens", "max_response_output_tokens"):
        if params.get(name) is not None:
            _max_tokens(params[name], f"response.{name}")
    return params
