"""Whisper-style log-mel features in plain numpy, the input Smart Turn v3 was trained on.

The model was trained on Hugging Face's `WhisperFeatureExtractor` output for an 8 s
window, so the numbers must match that recipe, not merely resemble it: the waveform is
normalised to zero mean and unit variance first, then a centred (reflect-padded) 400-point
STFT with a periodic Hann window and a 160-sample hop, the power spectrum through 80
Slaney-scale mel filters (0-8 kHz, area-normalised), log10 with a 1e-10 floor, the last
frame dropped, everything clamped to 8 decades below the loudest value and mapped by
(x + 4) / 4. A test pins the result to reference values of the model's own extractor.

Computed in float64 (the reference promotes too); about 10 ms for 8 s on one core.
"""

from __future__ import annotations

import functools

import numpy as np

RATE = 16000
N_FFT = 400
HOP = 160
N_MELS = 80
WINDOW_S = 8.0
WINDOW_SAMPLES = int(RATE * WINDOW_S)  # 128,000
FRAMES = WINDOW_SAMPLES // HOP  # 800
_NORM_EPS = 1e-7
_FLOOR = 1e-10


def last_window(audio: np.ndarray, samples: int = WINDOW_SAMPLES) -> np.ndarray:
    """The last `samples` of `audio` as float32; shorter audio is padded with zeros on the
    left, so the end of the utterance always sits at the end of the window."""
    x = np.asarray(audio, dtype=np.float32).reshape(-1)[-samples:]
    if len(x) < samples:
        x = np.concatenate([np.zeros(samples - len(x), dtype=np.float32), x])
    return x


def _hz_to_mel(hz: np.ndarray | float) -> np.ndarray:
    """Slaney's mel scale: linear (3 mel per 200 Hz) below 1 kHz, logarithmic above."""
    hz = np.asarray(hz, dtype=np.float64)
    above = 15.0 + np.log(np.maximum(hz, 1e-12) / 1000.0) * (27.0 / np.log(6.4))
    return np.where(hz < 1000.0, hz * 3.0 / 200.0, above)


def _mel_to_hz(mel: np.ndarray) -> np.ndarray:
    mel = np.asarray(mel, dtype=np.float64)
    above = 1000.0 * np.exp((mel - 15.0) * (np.log(6.4) / 27.0))
    return np.where(mel < 15.0, mel * 200.0 / 3.0, above)


@functools.cache
def mel_filters() -> np.ndarray:
    """(80, 201) triangular filters on the rFFT bins, each scaled to unit area (Slaney)."""
    edges = _mel_to_hz(np.linspace(0.0, float(_hz_to_mel(RATE / 2)), N_MELS + 2))
    bins = np.linspace(0.0, RATE / 2, N_FFT // 2 + 1)
    low, centre, high = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    rising = (bins - low) / (centre - low)
    falling = (high - bins) / (high - centre)
    triangles = np.maximum(0.0, np.minimum(rising, falling))
    return triangles * (2.0 / (high - low))


@functools.cache
def _hann() -> np.ndarray:
    n = np.arange(N_FFT, dtype=np.float64)
    return 0.5 - 0.5 * np.cos(2.0 * np.pi * n / N_FFT)  # periodic, as torch.hann_window


def log_mel(window: np.ndarray) -> np.ndarray:
    """(80, 800) float32 features of exactly `WINDOW_SAMPLES` samples (see `last_window`)."""
    x = np.asarray(window, dtype=np.float32).reshape(-1)
    if len(x) != WINDOW_SAMPLES:
        raise ValueError(f"expected {WINDOW_SAMPLES} samples, got {len(x)}")
    # Normalised in float32, as the reference does, before the spectrum goes to float64.
    x = (x - x.mean()) / np.sqrt(x.var() + np.float32(_NORM_EPS))
    padded = np.pad(x.astype(np.float64), N_FFT // 2, mode="reflect")
    # One frame every HOP samples; the last (801st) frame is not part of the recipe.
    frames = np.lib.stride_tricks.sliding_window_view(padded, N_FFT)[::HOP][:FRAMES]
    power = np.abs(np.fft.rfft(frames * _hann(), axis=-1)) ** 2  # (800, 201)
    logs = np.log10(np.maximum(mel_filters() @ power.T, _FLOOR))
    logs = np.maximum(logs, logs.max() - 8.0)
    return ((logs + 4.0) / 4.0).astype(np.float32)
