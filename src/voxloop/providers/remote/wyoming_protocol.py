"""The Wyoming protocol's framing, written here on asyncio streams so that speaking it costs
no dependency (Home Assistant's `wyoming-faster-whisper` and `wyoming-piper` speak it).

An event is one JSON line (UTF-8, `\\n`-terminated): `type`, optional `data` (an object),
`data_length`, `payload_length`, and since wyoming 1.x the sender's `version`. Then
`data_length` bytes of a JSON object that is merged over `data`, then `payload_length`
bytes of payload (PCM audio for `audio-chunk`). Both sides read with caps (`Limits`): a
peer that sends a 2 GB length must not make us allocate it.

A malformed line or data block leaves the stream in step (its end is known), so the
connection can go on; an oversized or truncated frame does not, so it ends the connection.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import numpy as np

from voxloop.errors import ProviderError
from voxloop.providers.base import ProviderInfo

# The reference implementation this one was checked against (tests/test_wyoming.py); it
# goes in every header, as the reference's own version does.
VERSION = "1.10.2"
DEFAULT_PORT = 10300  # wyoming-faster-whisper's; wyoming-piper's is 10200
SAMPLE_WIDTH = 2  # bytes: 16-bit PCM, the only sample format spoken here


@dataclass(frozen=True)
class Limits:
    """Caps on what one event may carry, against a broken or hostile peer."""

    header_bytes: int = 64 * 1024  # the JSON line (data usually follows it separately)
    data_bytes: int = 4 << 20  # the JSON block: a server's `info` can list many voices
    payload_bytes: int = 8 << 20  # one audio chunk: minutes of 16-bit audio


@dataclass
class Event:
    type: str
    data: dict[str, Any] = field(default_factory=dict)
    payload: bytes = b""


class ProtocolError(Exception):
    """The peer sent something that is not Wyoming. `code` names the kind of problem;
    `fatal`: the stream is out of step (or too big to skip), so the connection must end."""

    def __init__(self, message: str, code: str, *, fatal: bool = False) -> None:
        super().__init__(message)
        self.code = code
        self.fatal = fatal


def encode_event(event: Event) -> bytes:
    """The event as the reference writes it: the data as a separate JSON block."""
    header: dict[str, Any] = {"type": event.type, "version": VERSION}
    data = b""
    if event.data:
        data = json.dumps(event.data, ensure_ascii=False).encode("utf-8")
        header["data_length"] = len(data)
    if event.payload:
        header["payload_length"] = len(event.payload)
    line = json.dumps(header, ensure_ascii=False).encode("utf-8") + b"\n"
    return line + data + event.payload


async def write_event(writer: asyncio.StreamWriter, event: Event) -> None:
    writer.write(encode_event(event))
    await writer.drain()


async def read_event(reader: asyncio.StreamReader, limits: Limits | None = None) -> Event | None:
    """The next event, None at a clean end of stream, or a `ProtocolError`. The reader's
    own `limit` should be at least `limits.header_bytes` (it caps the line as it is read)."""
    limits = limits or Limits()
    try:
        line = await reader.readline()
    except ValueError:  # asyncio's stream limit: the line had no end within it
        raise ProtocolError(
            f"an event header with no end within {limits.header_bytes} bytes",
            "too_large",
            fatal=True,
        ) from None
    if not line:
        return None
    if not line.endswith(b"\n"):
        raise ProtocolError("the connection closed inside an event header", "truncated", fatal=True)
    if len(line) > limits.header_bytes:
        raise ProtocolError(
            f"an event header of {len(line)} bytes, over the {limits.header_bytes}-byte cap",
            "too_large",
            fatal=True,  # what it says follows it cannot be trusted
        )
    header = _header(line)
    # The frame is read to its end before anything else is checked: the stream stays in step.
    kind = header.get("type")
    data_length = _length(header, "data_length", limits.data_bytes)
    payload_length = _length(header, "payload_length", limits.payload_bytes)
    extra = await _exactly(reader, data_length, "data")
    payload = await _exactly(reader, payload_length, "payload")
    if not isinstance(kind, str) or not kind:
        raise ProtocolError("an event header needs a non-empty string 'type'", "bad_event")
    data = header.get("data")
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ProtocolError(f"{kind}: 'data' must be an object", "bad_event")
    if extra:
        data = {**data, **_object(extra, f"{kind}: the data block")}
    return Event(kind, data, payload)


def _header(line: bytes) -> dict[str, Any]:
    try:
        header = json.loads(line)
    except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError alike
        shown = line[:60].decode("utf-8", "replace").strip()
        raise ProtocolError(
            f"an event header that is not JSON ({exc}): {shown!r}", "bad_json"
        ) from None
    if not isinstance(header, dict):
        raise ProtocolError("an event header must be a JSON object with a 'type'", "bad_event")
    return header


def _length(header: dict[str, Any], key: str, cap: int) -> int:
    """A frame length from the header. A bad one leaves the frame's end unknown: fatal."""
    value = header.get(key)
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ProtocolError(f"{key} must be a byte count, not {value!r}", "bad_event", fatal=True)
    if value > cap:
        raise ProtocolError(
            f"{header.get('type')}: {key.split('_')[0]} of {value} bytes, over the {cap}-byte cap",
            "too_large",
            fatal=True,
        )
    return value


async def _exactly(reader: asyncio.StreamReader, count: int, what: str) -> bytes:
    if not count:
        return b""
    try:
        return await reader.readexactly(count)
    except asyncio.IncompleteReadError as exc:
        raise ProtocolError(
            f"the connection closed after {len(exc.partial)} of the {count} {what} bytes",
            "truncated",
            fatal=True,
        ) from None


def _object(raw: bytes, what: str) -> dict[str, Any]:
    try:
        value = json.loads(raw)
    except ValueError as exc:
        raise ProtocolError(f"{what} is not JSON ({exc})", "bad_json") from None
    if not isinstance(value, dict):
        raise ProtocolError(f"{what} must be a JSON object", "bad_event")
    return value


# -- audio -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class AudioFormat:
    rate: int
    width: int = SAMPLE_WIDTH
    channels: int = 1

    @classmethod
    def from_data(cls, data: dict[str, Any], event: str) -> AudioFormat:
        """The format an `audio-start` or `audio-chunk` declares, checked."""
        values = []
        for key, low, high in (("rate", 1000, 384000), ("width", 1, 4), ("channels", 1, 16)):
            value = data.get(key)
            if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
                raise ProtocolError(
                    f"{event}: {key} must be a whole number from {low} to {high}, not {value!r}",
                    "bad_audio",
                )
            values.append(value)
        return cls(*values)

    def data(self) -> dict[str, int]:
        return {"rate": self.rate, "width": self.width, "channels": self.channels}


def pcm16_mono(payload: bytes, fmt: AudioFormat) -> np.ndarray:
    """An `audio-chunk` payload as int16 mono (channels averaged), or a `ProtocolError`."""
    if fmt.width != SAMPLE_WIDTH:
        raise ProtocolError(
            f"audio-chunk: {8 * fmt.width}-bit audio; only 16-bit PCM (width 2) is accepted",
            "bad_audio",
        )
    frame = SAMPLE_WIDTH * fmt.channels
    if len(payload) % frame:
        raise ProtocolError(
            f"audio-chunk: {len(payload)} bytes is not a whole number of {frame}-byte frames "
            f"({fmt.channels} channel(s) of 16-bit samples)",
            "bad_audio",
        )
    samples = np.frombuffer(payload, dtype="<i2")
    if fmt.channels > 1:
        mixed = samples.reshape(-1, fmt.channels).astype(np.int32).mean(axis=1)
        return mixed.astype(np.int16)
    return samples.astype(np.int16)


# -- info ----------------------------------------------------------------------------------


def info_data(
    stt: ProviderInfo | None, tts: ProviderInfo | None, language: str, version: str
) -> dict[str, Any]:
    """An `info` answer's data for one asr and one tts program (None: not served), with
    every field the reference requires (name, attribution, installed, description and
    version on each program, model and voice)."""

    def artifact(name: str, description: str, version: str | None = None) -> dict[str, Any]:
        return {
            "name": name,
            "attribution": {"name": "voxloop", "url": "https://pypi.org/project/voxloop/"},
            "installed": True,
            "description": description,
            "version": version,
        }

    data: dict[str, Any] = {k: [] for k in ("asr", "tts", "handle", "intent", "wake", "mic", "snd")}
    if stt is not None:
        model = {**artifact(stt.model, f"{stt.name}: {stt.model}"), "languages": [language]}
        program = artifact(f"voxloop-{stt.name}", "voxloop's speech-to-text", version)
        data["asr"] = [
            {
                **program,
                "models": [model],
                "supports_transcript_streaming": False,
                "requires_external_vad": True,
            }
        ]
    if tts is not None:
        voice = {**artifact(tts.model, f"{tts.name}: {tts.model}"), "languages": [language]}
        program = artifact(f"voxloop-{tts.name}", "voxloop's text-to-speech", version)
        voices = [{**voice, "speakers": None}]
        data["tts"] = [{**program, "voices": voices, "supports_synthesize_streaming": False}]
    return data


# -- addresses -------------------------------------------------------------------------------


def tcp_address(url: str | None, setting: str) -> tuple[str, int]:
    """(host, port) from `tcp://host:port`, or a `ProviderError` that names the setting."""
    example = f"e.g. {setting}=tcp://127.0.0.1:{DEFAULT_PORT}"
    if not url:
        raise ProviderError(f"{setting} is not set: give the Wyoming server's address, {example}")
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError as exc:
        raise ProviderError(
            f"{setting}={url!r} is not a valid address ({exc}); {example}"
        ) from None
    if parts.scheme != "tcp":
        raise ProviderError(
            f"{setting}={url!r}: a Wyoming server is addressed as tcp://host:port; {example}"
        )
    if not parts.hostname or port is None or parts.path not in ("", "/"):
        raise ProviderError(
            f"{setting}={url!r} needs a host and a port and nothing else; {example}"
        )
    return parts.hostname, port
