"""Fuzz the `realtime-ai` profile's parsers: the 8-byte audio frame header
(`parse_client_frame`) and the JSON control messages (`parse_control`).

Contract: any binary or text frame yields a parsed value or a `ProtocolError` with a known
code; a parsed frame's fields are exactly what the header and the bytes after it say.

    python fuzz/fuzz_realtime_ai.py -max_total_time=60 fuzz/seeds/realtime_ai
"""

from __future__ import annotations

import struct

import _common
import atheris

with atheris.instrument_imports(include=["voxloop"]):
    from voxloop.protocol import messages as p
    from voxloop.server.transports import realtime_ai as rai

FRAME_CODES = {"frame_too_large", "frame_too_short", "odd_frame_length"}
CONTROL_CODES = {"bad_json", "bad_message", "unknown_type", "unsupported_sample_rate"}
KEYS = sorted({"type", "command", "content", "ms", "turn_id", *rai.START_FIELDS})


def check_frame(data: bytes) -> None:
    try:
        frame = rai.parse_client_frame(data)
    except p.ProtocolError as exc:
        assert exc.code in FRAME_CODES, exc.code
        return
    assert 8 <= len(data) <= p.MAX_FRAME_BYTES and len(data) % 2 == 0
    assert (frame.timestamp_ms, frame.flags) == struct.unpack_from("<II", data)
    assert frame.pcm == data[8:]
    assert 0 <= frame.energy <= 255 and frame.silence in (True, False)
    # What the server sends back parses with the same layout, counters wrapped to u32.
    out = rai.server_frame(frame.timestamp_ms, frame.flags, frame.timestamp_ms << 1, frame.pcm)
    assert struct.unpack_from("<III", out)[2] == (frame.timestamp_ms << 1) & rai.U32
    assert out[12:] == frame.pcm


def check_control(raw: str | bytes) -> None:
    try:
        msg = rai.parse_control(raw)
    except p.ProtocolError as exc:
        assert exc.code in CONTROL_CODES, exc.code
        _common.feature(_common.error_shape(exc.message))  # pydantic-core's paths are in Rust
        return
    assert isinstance(msg, rai.ClearQueues) or msg.type in rai.CONTROL_TYPES
    _common.feature(f"ok:{type(msg).__name__}")
    if isinstance(msg, p.Start):  # the profile's audio is fixed, whatever the client says
        assert msg.sample_rate == msg.output_sample_rate == rai.SAMPLE_RATE


def test_one_input(data: bytes) -> None:
    mode, rest = _common.split_mode(data, 5)
    fdp = atheris.FuzzedDataProvider(rest)
    if mode == 0:
        check_frame(rest)
    elif mode == 1:
        check_control(rest)
    elif mode == 2:
        obj = _common.json_object(fdp, KEYS)
        if fdp.ConsumeBool():
            obj["type"] = fdp.PickValueInList([*rai.CONTROL_TYPES, "ping", "configure"])
        check_control(_common.dumps(obj))
    elif mode == 4:
        check_control(_common.deep_json(fdp, fdp.PickValueInList(["content", "type", "ms"])))
    else:  # frames around the size limit, which the 4 KiB default inputs never reach
        size = fdp.ConsumeIntInRange(p.MAX_FRAME_BYTES - 2, p.MAX_FRAME_BYTES + 2)
        check_frame(fdp.ConsumeBytes(8).ljust(size, b"\x00"))


if __name__ == "__main__":
    _common.run(test_one_input)
