"""The OpenAI Realtime API's session object, and `session.update` read field by field in
either dialect (GA or beta; see realtime_events.py): what voxloop honours, what it accepts
and reports back, and what it refuses with an error naming the field."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from voxloop.transport.realtime_events import (
    MAX_INSTRUCTIONS,
    RATE,
    RealtimeError,
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
