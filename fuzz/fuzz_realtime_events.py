"""Fuzz the OpenAI Realtime profile's pure parser: `apply_session_update`, which reads a
client's `session.update` in either dialect (GA or beta).

Contract: any JSON value gives a new session config (and the voice asked for) or a
`RealtimeError`; the config passed in is never changed; what is accepted can be sent back
as JSON in both dialects.

    python fuzz/fuzz_realtime_events.py -max_total_time=60 fuzz/seeds/realtime_events
"""

from __future__ import annotations

import json

import _common
import atheris

with atheris.instrument_imports(include=["voxloop"]):
    from voxloop.server.transports.realtime_events import RealtimeError
    from voxloop.server.transports.realtime_session import SessionConfig, apply_session_update

KEYS = sorted(
    {
        "type", "instructions", "modalities", "output_modalities", "tools", "voice", "audio",
        "input", "output", "format", "rate", "audio/pcm", "pcm16", "realtime",
        "input_audio_format", "output_audio_format", "turn_detection", "server_vad",
        "semantic_vad", "create_response", "idle_timeout_ms", "silence_duration_ms",
        "threshold", "prefix_padding_ms", "eagerness", "interrupt_response", "transcription",
        "input_audio_transcription", "noise_reduction", "input_audio_noise_reduction",
        "temperature", "speed", "max_response_output_tokens", "max_output_tokens",
    }
)  # fmt: skip


def check(update: object) -> None:
    cfg = SessionConfig(id="sess_x", model="voxloop", instructions="be brief", voice="default")
    before = (cfg.as_json(False), cfg.as_json(True))
    try:
        new, voice = apply_session_update(cfg, update)
    except RealtimeError as exc:
        assert exc.code and exc.message
        return
    finally:
        assert (cfg.as_json(False), cfg.as_json(True)) == before, "the input config changed"
    assert voice is None or isinstance(voice, str)
    assert isinstance(new.instructions, str) and len(new.instructions) <= 8000
    json.dumps(new.as_json(False))
    json.dumps(new.as_json(True))


def test_one_input(data: bytes) -> None:
    mode, rest = _common.split_mode(data, 2)
    if mode == 0:
        try:
            update = json.loads(rest)
        except (ValueError, RecursionError):
            return  # not JSON: realtime.py answers that before this parser runs
        check(update.get("session", update) if isinstance(update, dict) else update)
    else:
        fdp = atheris.FuzzedDataProvider(rest)
        as_object = fdp.ConsumeBool()
        check(_common.json_object(fdp, KEYS) if as_object else _common.json_value(fdp, KEYS))


if __name__ == "__main__":
    _common.run(test_one_input)
