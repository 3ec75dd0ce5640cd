"""Resampling: whole arrays (soxr), and streams chunk by chunk without clicks at the seams."""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np


def resample(samples: np.ndarray, from_rate: int, to_rate: int) -> np.ndarray:
    """High-quality one-shot sample-rate conversion (soxr); a no-op for equal rates."""
    if from_rate == to_rate or len(samples) == 0:
        return samples
    import soxr

    dtype = samples.dtype
    out = soxr.resample(samples, from_rate, to_rate, quality="HQ")
    return out.astype(dtype, copy=False)


LOW_LATENCY = "low-latency"  # a StreamResampler quality: see _SincStream


class StreamResampler:
    """Chunk-by-chunk resampling that keeps filter state between chunks (no clicks).

    `quality` is a soxr preset (QQ, LQ, MQ, HQ, VHQ) or "low-latency" (`_SincStream`):
    soxr's stream works in FFT blocks and, fed 20 ms chunks, holds back 10-115 ms of
    output (HQ); "low-latency" holds back nothing and delays by about 3 ms."""

    def __init__(
        self, from_rate: int, to_rate: int, dtype: str = "float32", quality: str = "HQ"
    ) -> None:
        self.from_rate = from_rate
        self.to_rate = to_rate
        self._stream = None
        if from_rate != to_rate and quality == LOW_LATENCY:
            self._stream = _SincStream(from_rate, to_rate)
        elif from_rate != to_rate:
            import soxr

            self._stream = soxr.ResampleStream(from_rate, to_rate, 1, dtype=dtype, quality=quality)

    def push(self, samples: np.ndarray, last: bool = False) -> np.ndarray:
        if self._stream is None:
            return samples
        return self._stream.resample_chunk(samples, last=last)


@lru_cache(maxsize=16)
def _sinc_bank(from_rate: int, to_rate: int) -> tuple[int, int, np.ndarray, float]:
    """(up, down, polyphase filter bank [phase, tap], delay in seconds) for a rate pair.

    A Kaiser-windowed sinc, 80 dB down, whose 800 Hz transition band straddles the lower
    rate's Nyquist frequency (-600/+200 Hz): flat to 3.4 kHz at 8 kHz, the telephone band.
    Its length, hence its delay (about 3 ms), depends only on that width, not the rates."""
    attenuation_db, below_hz, above_hz = 80.0, 600.0, 200.0
    gcd = math.gcd(from_rate, to_rate)
    up, down = to_rate // gcd, from_rate // gcd
    nyquist = min(from_rate, to_rate) / 2
    rate = from_rate * up  # the rate the prototype filter runs at (zero-stuffed input)
    width = (below_hz + above_hz) / rate
    taps = -(-(math.ceil((attenuation_db - 7.95) / (14.36 * width)) + 1) // up)  # per phase
    n = taps * up
    cutoff = (nyquist + (above_hz - below_hz) / 2) / rate
    t = np.arange(n) - (n - 1) / 2
    h = np.sinc(2 * cutoff * t) * np.kaiser(n, 0.1102 * (attenuation_db - 8.7))
    h *= up / h.sum()  # unity gain through every phase
    return up, down, h.reshape(taps, up).T.copy(), (n - 1) / 2 / rate


class _SincStream:
    """Streaming polyphase resampler with the interface of soxr's `ResampleStream`.

    Every output sample is computed as soon as the input it needs has arrived, so the
    only latency is the filter's group delay (`delay_s`, about 3 ms). `last=True` pads the
    delay's worth of silence to flush the tail, then starts afresh."""

    def __init__(self, from_rate: int, to_rate: int) -> None:
        self.up, self.down, self._bank, self.delay_s = _sinc_bank(from_rate, to_rate)
        self.from_rate = from_rate
        self._taps = self._bank.shape[1]
        self._reset()

    def _reset(self) -> None:
        self._history = np.zeros(self._taps - 1)
        self._consumed = 0  # input samples so far
        self._produced = 0  # output samples so far

    def resample_chunk(self, x: np.ndarray, last: bool = False) -> np.ndarray:
        data = np.nan_to_num(x.astype(np.float64))  # one NaN would poison the history
        if last:
            data = np.concatenate([data, np.zeros(math.ceil(self.delay_s * self.from_rate))])
        buf = np.concatenate([self._history, data])
        total = self._consumed + len(data)
        # Output n needs input floor(n * down / up): all of those below `total` are ready.
        n = np.arange(self._produced, -(-total * self.up // self.down), dtype=np.int64)
        base, phase = np.divmod(n * self.down, self.up)
        local = base - self._consumed + self._taps - 1  # the newest input's index in buf
        window = buf[local[:, None] - np.arange(self._taps)[None, :]]
        y = np.einsum("ij,ij->i", window, self._bank[phase])
        self._produced += len(n)
        self._consumed = total
        self._history = buf[len(buf) - self._taps + 1 :]
        if last:
            self._reset()
        if np.issubdtype(x.dtype, np.integer):
            info = np.iinfo(x.dtype)
            return np.clip(np.rint(y), info.min, info.max).astype(x.dtype)
        return y.astype(x.dtype)
