"""Fuzz the audio decoders: PCM16 bytes ↔ float (`pcm16_to_float`, `float_to_pcm16`) and
`read_audio` on arbitrary file contents.

Contract: PCM16 decoding is exact and total on even byte counts (odd ones are an
`AudioError`); float → PCM16 never wraps, warns or fails, NaN and ±inf included; a file that
libsndfile cannot read is an `AudioError` naming it, never a library exception.

    python fuzz/fuzz_audio.py -max_total_time=60 fuzz/seeds/audio
"""

from __future__ import annotations

import re
import tempfile
from pathlib import Path

import _common
import atheris
import numpy as np

with atheris.instrument_imports(include=["voxloop", "soundfile"]):
    import soundfile as sf

    from voxloop.audio.formats import (
        SUPPORTED_FILE_TYPES,
        float_to_pcm16,
        pcm16_to_float,
        read_audio,
    )
    from voxloop.errors import AudioError

# Inputs for read_audio: suffix byte, target-rate byte, then the file's bytes.
SUFFIXES = (*SUPPORTED_FILE_TYPES, ".WAV", ".txt", "")
TARGET_RATES = (None, 8000, 16000, 24000, 44100)


def check_pcm16(data: bytes) -> None:
    try:
        samples = pcm16_to_float(data)
    except AudioError:
        assert len(data) % 2
        return
    assert samples.dtype == np.float32 and samples.shape == (len(data) // 2,)
    assert np.all((samples >= -1.0) & (samples < 1.0))
    assert float_to_pcm16(samples).astype("<i2").tobytes() == data  # lossless both ways


def check_float(data: bytes, dtype: str) -> None:
    size = np.dtype(dtype).itemsize
    samples = np.frombuffer(data[: len(data) // size * size], dtype=dtype)
    pcm = float_to_pcm16(samples)  # warnings are errors here (see _common.run)
    assert pcm.dtype == np.int16 and pcm.shape == samples.shape
    with np.errstate(invalid="ignore"):
        finite = np.isfinite(samples)
        assert np.all(pcm[samples >= 1.0] == 32767) and np.all(pcm[samples <= -1.0] == -32768)
        assert np.all(pcm[np.isnan(samples)] == 0)
        # Monotonic: a larger sample never gives a smaller code (no wrap-around).
        order = np.argsort(samples[finite], kind="stable")
        assert np.all(np.diff(pcm[finite][order].astype(np.int32)) >= 0)


def check_file(data: bytes) -> None:
    suffix = SUFFIXES[data[0] % len(SUFFIXES)] if data else ".wav"
    rate = TARGET_RATES[data[1] % len(TARGET_RATES)] if len(data) > 1 else None
    with tempfile.TemporaryDirectory(prefix="voxloop-fuzz-") as folder:
        path = Path(folder) / f"input{suffix}"
        path.write_bytes(data[2:])
        try:
            audio, got_rate = read_audio(path, target_rate=rate)
            info = sf.info(str(path))
            _common.feature(f"{info.format}/{info.subtype}/{min(info.channels, 3)}")
        except AudioError as exc:
            assert str(path) in str(exc), exc  # the message names the file
            _common.feature(re.sub(r"\d+", "#", str(exc).replace(str(path), "")))
            return
    assert suffix.lower() in SUPPORTED_FILE_TYPES
    assert audio.dtype == np.float32 and audio.ndim == 1 and len(audio) > 0
    assert got_rate == rate if rate is not None else got_rate > 0


def test_one_input(data: bytes) -> None:
    mode, rest = _common.split_mode(data, 4)
    if mode == 0:
        check_pcm16(rest)
    elif mode == 1:
        check_float(rest, "<f4")
    elif mode == 2:
        check_float(rest, "<f8")
    else:
        check_file(rest)


if __name__ == "__main__":
    _common.run(test_one_input)
