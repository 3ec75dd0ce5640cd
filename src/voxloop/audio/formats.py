"""Sample formats and audio files: PCM16 bytes, float32 arrays, WAV/FLAC/OGG/MP3 on disk."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from voxloop.audio.resample import resample
from voxloop.errors import AudioError

SUPPORTED_FILE_TYPES = (".wav", ".flac", ".ogg", ".oga", ".mp3")


def pcm16_to_float(data: bytes) -> np.ndarray:
    """Little-endian PCM16 bytes → float32 in [-1, 1). Rejects an odd byte count."""
    if len(data) % 2:
        raise AudioError(f"PCM16 audio needs an even number of bytes, got {len(data)}")
    return np.frombuffer(data, dtype="<i2").astype(np.float32) / 32768.0


def float_to_pcm16(samples: np.ndarray) -> np.ndarray:
    """float32 in [-1, 1] → int16, clipping instead of wrapping around. NaN (a broken
    model's output) becomes silence: casting it to int16 is undefined in numpy."""
    clipped = np.clip(samples, -1.0, 32767 / 32768)
    return (np.nan_to_num(clipped, nan=0.0, copy=False) * 32768.0).astype(np.int16)


_READ_BLOCK_FRAMES = 1 << 14  # x up to 1024 channels x 4 bytes: at most 64 MiB


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
        with sf.SoundFile(str(path)) as f:
            rate = f.samplerate
            # Block by block until the decoder runs dry: a corrupt header can claim
            # billions of frames, and `sf.read` allocates all of them up front.
            blocks = [np.zeros((0, f.channels), dtype=np.float32)]
            while len(block := f.read(_READ_BLOCK_FRAMES, dtype="float32", always_2d=True)):
                blocks.append(block)
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError) as exc:
        raise AudioError(f"{path}: cannot decode audio ({exc})") from None
    data = np.concatenate(blocks)
    if data.shape[0] == 0:
        raise AudioError(f"{path}: contains no audio samples")
    if not np.isfinite(data).all():  # only float files can; the models would read noise
        raise AudioError(f"{path}: contains NaN or infinite samples (corrupt float audio?)")
    mono = data.mean(axis=1).astype(np.float32)
    if target_rate is not None and target_rate != rate:
        mono = resample(mono, rate, target_rate)
        if len(mono) == 0:  # a few samples at a header's absurd rate resample to none
            raise AudioError(f"{path}: too short to resample from {rate} Hz to {target_rate} Hz")
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
