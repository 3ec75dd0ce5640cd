"""Fuzz the native /ws protocol: `parse_client_message` and `check_audio_frame`.

Contract: for any text or bytes a client can send, the parser returns one of the client
message models or raises `ProtocolError` with a known code; anything else would end the
connection instead of answering with an `error` event.

    python fuzz/fuzz_protocol.py -max_total_time=60 fuzz/seeds/protocol
"""

from __future__ import annotations

import json

import _common
import atheris

with atheris.instrument_imports(include=["voxloop"]):
    from voxloop.protocol import messages as p

CODES = {"bad_json", "bad_message", "unknown_type", "unsupported_sample_rate"}
FRAME_CODES = {"not_started", "frame_too_large", "odd_frame_length"}
MESSAGES = tuple(p.MESSAGE_TYPES.values())
KEYS = sorted(
    {"type", "command"}
    | {name for cls in MESSAGES for name in cls.model_fields}
    | set(p.MESSAGE_TYPES)
)


def check_message(raw: str | bytes) -> None:
    try:
        msg = p.parse_client_message(raw)
    except p.ProtocolError as exc:
        assert exc.code in CODES, exc.code
        assert isinstance(exc.message, str) and exc.message
        _common.feature(_common.error_shape(exc.message))  # pydantic-core's paths are in Rust
        return
    assert isinstance(msg, MESSAGES), type(msg)
    _common.feature(f"ok:{msg.type}:{sorted(msg.model_fields_set)}")
    if isinstance(msg, p.Start):
        assert msg.sample_rate in p.SUPPORTED_RATES
        assert msg.output_sample_rate in (None, *p.SUPPORTED_RATES)
    if isinstance(msg, p.Text):
        assert 1 <= len(msg.content) <= 8000
    if isinstance(msg, p.Playback):
        assert msg.ms >= 0  # NaN fails this too
    # What was accepted can be echoed back (a ping's `t` is, in the pong).
    json.dumps(msg.model_dump())


def check_frame(fdp: atheris.FuzzedDataProvider) -> None:
    started = fdp.ConsumeBool()
    size = fdp.ConsumeIntInRange(0, p.MAX_FRAME_BYTES + 3)
    data = bytes(size) if fdp.ConsumeBool() else fdp.ConsumeBytes(size)
    try:
        p.check_audio_frame(data, started=started)
    except p.ProtocolError as exc:
        assert exc.code in FRAME_CODES, exc.code
        return
    assert started and len(data) % 2 == 0 and len(data) <= p.MAX_FRAME_BYTES


def test_one_input(data: bytes) -> None:
    mode, rest = _common.split_mode(data, 6)
    fdp = atheris.FuzzedDataProvider(rest)
    if mode == 0:
        check_message(rest)  # raw bytes, as a seed file holds them
    elif mode == 1:
        check_message(fdp.ConsumeUnicode(atheris.ALL_REMAINING))  # surrogates included
    elif mode == 2:
        obj = _common.json_object(fdp, KEYS)
        if fdp.ConsumeBool():
            obj["type"] = fdp.PickValueInList([*p.MESSAGE_TYPES, "bogus"])
        check_message(_common.dumps(obj))
    elif mode == 3:
        check_message(_common.dumps(_common.json_value(fdp, KEYS)))
    elif mode == 4:
        check_frame(fdp)
    else:
        check_message(_common.deep_json(fdp, fdp.PickValueInList(["t", "type", "content"])))


if __name__ == "__main__":
    _common.run(test_one_input)
