"""Fuzz the G.711 μ-law codec that Twilio Media Streams audio goes through.

Contract: decoding accepts any bytes (one sample per byte); encoding accepts any int16
samples; re-encoding a decoded code gives the code back (0x7F, "negative zero", becomes
0xFF); decoding an encoded sample is within half a quantisation step of it.

    python fuzz/fuzz_mulaw.py -max_total_time=60 fuzz/seeds/mulaw
"""

from __future__ import annotations

import _common
import atheris
import numpy as np

with atheris.instrument_imports(include=["voxloop"]):
    from voxloop.server.transports import mulaw


def max_error(pcm: np.ndarray) -> np.ndarray:
    """Half the step of the segment a sample falls in, plus what clipping at 32635 cuts."""
    magnitude = np.abs(pcm.astype(np.int32))
    clipped = np.minimum(magnitude, mulaw.CLIP)
    step = 2 ** (np.floor(np.log2(clipped + mulaw.BIAS)).astype(np.int32) - 4)
    return step // 2 + (magnitude - clipped)


def check_decode(data: bytes) -> None:
    pcm = mulaw.decode(data)
    assert pcm.dtype == np.int16 and pcm.shape == (len(data),)
    assert mulaw.to_pcm16(data) == pcm.astype("<i2").tobytes()
    floats = mulaw.decode_float(data)
    assert np.array_equal(floats, pcm / np.float32(32768.0))
    expected = bytes(mulaw.SILENCE if b == 0x7F else b for b in data)
    assert mulaw.encode(pcm) == expected


def check_encode(data: bytes) -> None:
    pcm = np.frombuffer(data[: len(data) // 2 * 2], dtype="<i2")
    codes = mulaw.encode(pcm)
    assert len(codes) == len(pcm) and mulaw.from_pcm16(pcm.tobytes()) == codes
    back = mulaw.decode(codes).astype(np.int32)
    error = np.abs(back - pcm.astype(np.int32))
    assert np.all(error <= max_error(pcm)), (pcm, back)
    assert np.all(np.sign(back) * np.sign(pcm) >= 0)  # never flips the sign


def test_one_input(data: bytes) -> None:
    mode, rest = _common.split_mode(data, 2)
    if mode == 0:
        check_decode(rest)
    else:
        check_encode(rest)


if __name__ == "__main__":
    _common.run(test_one_input)
