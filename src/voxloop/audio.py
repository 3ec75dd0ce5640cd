"""Audio formats at the edges: PCM16 bytes, float32 arrays, files, and resampling.

Inside voxloop, audio headed into a model is float32 mono in [-1, 1]; audio headed out is
int16. Conversions live here and nowhere else.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from voxloop.errors import AudioError

SUPPORTED_FILE_TYPES = (".wav", ".flac", ".ogg", ".oga", ".mp3")


def pcm16_to_float(data: bytes) -> np.ndarray:
    """Little-endian PCM16 bytes → float32 in [-1, 1). Rejects an odd byte count."""
    if len(data) % 2:
        raise AudioError(f"PCM16 audio needs an even number of bytes, got {len(data)}")
    return np.frombuffer(data, dtype="<i2").astype(np.float32) / 32768.0


def float_to_pcm16(samples: np.ndarray) -> np.ndarray:
    """float32 in [-1, 1] → int16, clipping instead of wrapping around."""
    return (np.clip(samples, -1.0, 32767 / 32768) * 32768.0).astype(np.int16)


def resample(samples: np.ndarray, from_rate: int, to_rate: int) -> np.ndarray:
    """High-quality one-shot sample-rate conversion (soxr); a no-op for equal rates."""
    if from_rate == to_rate or len(samples) == 0:
        return samples
    import soxr

    dtype = samples.dtype
    out = soxr.resample(samples, from_rate, to_rate, quality="HQ")
    return out.astype(dtype, copy=False)


class StreamResampler:
    """Chunk-by-chunk resampling that keeps filter state between chunks (no clicks)."""

    def __init__(self, from_rate: int, to_rate: int, dtype: str = "float32") -> None:
        self.from_rate = from_rate
        self.to_rate = to_rate
        self._stream = None
        if from_rate != to_rate:
            import soxr

            self._stream = soxr.ResampleStream(from_rate, to_rate, 1, dtype=dtype, quality="HQ")

    def push(self, samples: np.ndarray, last: bool = False) -> np.ndarray:
        if self._stream is None:
            return samples
        return self._stream.resample_chunk(samples, last=last)


def read_audio(path: str | Path, target_rate: int | None = None) -> tuple[np.ndarray, int]:
    """Decode wav/flac/ogg/mp3 to float32 mono, optionally resampled.

    Raises `AudioError` naming the file and the reason for anything unreadable.
    """
    import soundfile as sf

    path = Path(path)
    if not path.exists():
        raise AudioError(f"{path}: no such file")
    if path.is_dir():
        raise AudioError(f"{path}: is a directory, not an audio file")
    if path.suffix.lower() not in SUPPORTED_FILE_TYPES:
        kinds = ", ".join(s.lstrip(".") for s in SUPPORTED_FILE_TYPES)
        raise AudioError(f"{path}: unsupported audio type {path.suffix or '(none)'!r}; use {kinds}")
    try:
        data, rate = sf.read(str(path), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError) as exc:
        raise AudioError(f"{path}: cannot decode audio ({exc})") from None
    if data.shape[0] == 0:
        raise AudioError(f"{path}: contains no audio samples")
    mono = data.mean(axis=1).astype(np.float32)
    if target_rate is not None and target_rate != rate:
        mono = resample(mono, rate, target_rate)
        rate = target_rate
    return mono, rate


def write_wav(path: str | Path, pcm: np.ndarray, sample_rate: int) -> None:
    """Write int16 (or float32) mono samples as a 16-bit WAV file."""
    import soundfile as sf

    if pcm.dtype != np.int16:
        pcm = float_to_pcm16(pcm)
    sf.write(str(path), pcm, sample_rate, subtype="PCM_16")


def silence(seconds: float, sample_rate: int) -> np.ndarray:
    return np.zeros(round(seconds * sample_rate), dtype=np.float32)
