"""G.711 μ-law, the telephone network's 8-bit audio (Twilio Media Streams speak only this).

Two lookup tables built once with numpy: 256 codes → PCM16, and all 65536 PCM16 values →
codes (the classic 16-bit encoder: bias 0x84, clip at 32635, 3-bit segment, 4-bit
mantissa, all bits inverted). A table lookup is the whole codec, so no dependency is needed.
"""

from __future__ import annotations

import numpy as np

BIAS = 0x84
CLIP = 32635
SILENCE = 0xFF  # the code of PCM 0


def _decode_table() -> np.ndarray:
    code = ~np.arange(256, dtype=np.int32) & 0xFF
    exponent = (code >> 4) & 0x07
    magnitude = (((code & 0x0F) << 3) + BIAS << exponent) - BIAS
    return np.where(code & 0x80, -magnitude, magnitude).astype(np.int16)


def _encode_table() -> np.ndarray:
    pcm = np.arange(-32768, 32768, dtype=np.int32)
    sign = np.where(pcm < 0, 0x80, 0)
    magnitude = np.minimum(np.abs(pcm), CLIP) + BIAS  # 132 ... 32767: segments 0-7
    exponent = np.floor(np.log2(magnitude)).astype(np.int32) - 7
    mantissa = (magnitude >> (exponent + 3)) & 0x0F
    table = np.empty(65536, dtype=np.uint8)
    table[pcm & 0xFFFF] = ~(sign | (exponent << 4) | mantissa) & 0xFF
    return table  # indexed by the PCM16 sample's bits read as uint16


DECODE = _decode_table()
DECODE_FLOAT = (DECODE / 32768.0).astype(np.float32)
ENCODE = _encode_table()


def encode(pcm: np.ndarray) -> bytes:
    """int16 samples → μ-law bytes."""
    return ENCODE[np.ascontiguousarray(pcm, dtype="<i2").view("<u2")].tobytes()


def decode(data: bytes) -> np.ndarray:
    """μ-law bytes → int16 samples."""
    return DECODE[np.frombuffer(data, dtype=np.uint8)]


def decode_float(data: bytes) -> np.ndarray:
    """μ-law bytes → float32 in [-1, 1), what the models take."""
    return DECODE_FLOAT[np.frombuffer(data, dtype=np.uint8)]


def from_pcm16(data: bytes) -> bytes:
    """Little-endian PCM16 bytes → μ-law bytes (half as many)."""
    return encode(np.frombuffer(data, dtype="<i2"))


def to_pcm16(data: bytes) -> bytes:
    """μ-law bytes → little-endian PCM16 bytes (twice as many)."""
    return decode(data).astype("<i2", copy=False).tobytes()
