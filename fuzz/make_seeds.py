"""Write the seed corpora under fuzz/seeds/ (checked in; rerun after changing a harness's
input layout). Seeds are small valid inputs that let the fuzzer start past the first
parse error: `python fuzz/make_seeds.py`. Only the Ogg seed differs between runs (its
stream serial number is random)."""

from __future__ import annotations

import io
import json
import struct
from pathlib import Path

import numpy as np
import soundfile as sf

SEEDS = Path(__file__).parent / "seeds"


def _audio_file(fmt: str, subtype: str | None, samples: np.ndarray, rate: int = 8000) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, samples, rate, format=fmt, subtype=subtype)
    return buf.getvalue()


def _json(mode: int, obj: object) -> bytes:
    return bytes([mode]) + json.dumps(obj).encode()


def protocol() -> dict[str, bytes]:
    return {
        "start": _json(0, {"type": "start", "sample_rate": 16000, "session_id": "abc"}),
        "text": _json(0, {"command": "text", "content": "hello"}),
        "playback": _json(0, {"type": "playback", "ms": 12.5, "turn_id": 3}),
        "configure": _json(0, {"type": "configure", "end_of_turn_silence_s": 0.5, "voice": "v"}),
        "ping": _json(0, {"type": "ping", "t": [1, {"a": None}]}),
        "frame": bytes([4]) + b"\x01\x00\x00\x00",
    }


def realtime_ai() -> dict[str, bytes]:
    header = struct.pack("<II", 1234, 77 | 1 << 8)
    return {
        "frame": b"\x00" + header + b"\x01\x00\xff\x7f",
        "header_only": b"\x00" + struct.pack("<II", 0, 1 << 9),
        "start": _json(1, {"type": "start", "sample_rate": 8000, "session_id": "s1"}),
        "clear_queues": _json(1, {"type": "clear_queues"}),
        "text": _json(1, {"command": "text", "content": "hi"}),
        "playback": _json(1, {"type": "playback", "ms": 100}),
    }


def audio() -> dict[str, bytes]:
    tone = (0.5 * np.sin(np.arange(40) / 3)).astype(np.float32)
    odd = tone.copy()
    odd[3], odd[5] = np.nan, np.inf
    # read_audio inputs: mode 3, suffix index (0: .wav, 1: .flac, 2: .ogg), rate index.
    files = {
        "wav_pcm16": (0, _audio_file("WAV", "PCM_16", tone)),
        "wav_float_nan": (0, _audio_file("WAV", "FLOAT", odd)),
        "wav_stereo": (0, _audio_file("WAV", "PCM_U8", np.stack([tone, -tone], axis=1))),
        "aiff_as_wav": (0, _audio_file("AIFF", "PCM_16", tone)),
        "au_as_wav": (0, _audio_file("AU", "ULAW", tone)),
        "flac": (1, _audio_file("FLAC", "PCM_16", tone)),
        "ogg": (2, _audio_file("OGG", "VORBIS", np.tile(tone, 20))),
    }
    seeds = {name: bytes([3, suffix, 2]) + data for name, (suffix, data) in files.items()}
    seeds["pcm16"] = b"\x00" + np.array([0, 1, -1, 32767, -32768], "<i2").tobytes()
    seeds["float32"] = b"\x01" + np.array([0.5, -1.5, np.nan, np.inf], "<f4").tobytes()
    seeds["float64"] = b"\x02" + np.array([1.0, -1.0, 1e300, -0.0], "<f8").tobytes()
    return seeds


def mulaw() -> dict[str, bytes]:
    return {
        "codes": b"\x00" + bytes(range(256)),
        "pcm16": b"\x01" + np.array([0, 1, -1, 32767, -32768, 32635], "<i2").tobytes(),
    }


def text() -> dict[str, bytes]:
    samples = [
        "Hello there. Dr. Smith paid $3.14 for it! Really?",
        "1. First item\n2. Second one... and more.",
        'He said "stop." Then, after a long pause, e.g. a minute, he left.',
        "J. R. R. Tolkien wrote it (in 1937). It sold well!?",
        "No terminator, but a comma, here; and — a dash",
    ]
    # Mode byte (0: whole-vs-chunks, 1: early first clause), then the text.
    return {f"text{i}": bytes([i % 2]) + s.encode() for i, s in enumerate(samples)}


def config() -> dict[str, bytes]:
    toml = (
        b'log_level = "DEBUG"\n[llm]\npreset = "tiny"\napi_key = "sk-secret"\n'
        b'fallback = ["llama"]\n[server]\nport = 8111\n[turns]\nbarge_in = false\n'
    )
    return {
        "toml": b"\x00" + toml,
        "toml_bad_value": b"\x00[vad]\nthreshold = 7\n[stt]\npreset = 'huge'\n",
        "env": b"\x01VOXLOOP_SERVER__PORT=9000\nVOXLOOP_LLM__API_KEY=sk-env\n",
        "env_json": b'\x01VOXLOOP_STT__FALLBACK=["whisper"]\nVOXLOOP_VAD={"threshold": 0.2}\n',
        "dotenv": b"\x02VOXLOOP_TTS__SPEED=1.5\nVOXLOOP_REDIS_URL=redis://x\n",
    }


def realtime_events() -> dict[str, bytes]:
    ga = {
        "type": "realtime",
        "instructions": "Be brief.",
        "output_modalities": ["audio"],
        "audio": {
            "input": {
                "format": {"type": "audio/pcm", "rate": 24000},
                "turn_detection": {"type": "server_vad", "silence_duration_ms": 400},
            },
            "output": {"voice": "alloy", "speed": 1.1},
        },
    }
    beta = {
        "modalities": ["audio", "text"],
        "input_audio_format": "pcm16",
        "turn_detection": None,
        "voice": "verse",
        "max_response_output_tokens": "inf",
    }
    return {"ga": _json(0, ga), "beta": _json(0, beta)}


def twilio() -> dict[str, bytes]:
    from voxloop.server.transports.twilio import TwilioCall

    call = TwilioCall("MZ0123", "CA0123")
    call.account_sid = "AC0123"  # fixed, so that rerunning this changes nothing
    pcm = np.array([0, 1000, -1000, 32000] * 100, "<i2").tobytes()
    frames = [call.connected(), call.start({"user_id": "u1"}), *call.media(pcm)]
    frames += [call.mark("1:0"), call.dtmf("5"), call.stop()]
    # Mode 1: messages one per line; mode 3: the webhook (bytes for FuzzedDataProvider).
    return {
        "call": b"\x01" + "\n".join(frames).encode(),
        "start": b"\x00" + call.start({"session_id": "abc"}).encode(),
        "webhook": b"\x03" + b"From=%2B15550100&CallSid=CA1&To=x" + bytes(range(40)),
    }


def main() -> None:
    for name, make in (
        ("protocol", protocol),
        ("realtime_ai", realtime_ai),
        ("audio", audio),
        ("mulaw", mulaw),
        ("text", text),
        ("config", config),
        ("realtime_events", realtime_events),
        ("twilio", twilio),
    ):
        folder = SEEDS / name
        folder.mkdir(parents=True, exist_ok=True)
        for old in folder.iterdir():
            old.unlink()
        for seed, data in make().items():
            (folder / seed).write_bytes(data)


if __name__ == "__main__":
    main()
