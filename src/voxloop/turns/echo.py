"""Is it the user, or the agent's own voice coming back through a speakerphone?

The server knows exactly what it is playing. A microphone frame that one delayed, scaled
copy of that audio explains (most of its energy) is echo, not the user, so it must neither
start a turn nor interrupt the agent.
"""

from __future__ import annotations

from collections import deque

import numpy as np

RATE = 16000


class EchoGate:
    """Decides whether microphone frames are explained by the agent's own recent audio.

    Times are seconds on any one clock shared by `add_reference` and `is_echo` (the
    server's clock in a session, audio time in the evaluator). The echo path's delay is
    searched over `[-lead_s, max_delay_s]` around the reference's play time, which covers
    the acoustic delay and our uncertainty about when the client really played it.
    """

    def __init__(
        self,
        *,
        max_delay_s: float = 0.35,
        lead_s: float = 0.1,
        explained: float = 0.75,
        keep_s: float = 4.0,
        min_rms: float = 0.005,
    ) -> None:
        self.max_delay_s = max_delay_s
        self.lead_s = lead_s
        self.explained = explained  # share of the frame's energy an echo must explain
        # What the echo leaves over below this level (about -46 dBFS) is the room's noise
        # floor, not a voice: a quiet tail of the agent's word is still echo.
        self.keep_s = keep_s
        self.min_rms = min_rms
        self._chunks: deque[tuple[float, np.ndarray]] = deque()  # (start time, samples)

    def add_reference(self, samples: np.ndarray, start_s: float) -> None:
        """Agent audio (float32 at 16 kHz) that plays from `start_s` on."""
        if len(samples):
            self._chunks.append((start_s, samples.astype(np.float32, copy=False)))
        while self._chunks and self._chunks[0][0] < start_s - self.keep_s:
            self._chunks.popleft()

    def clear(self) -> None:
        self._chunks.clear()

    def playing_near(self, t: float) -> bool:
        """Is there reference audio within the echo window of time `t`?"""
        for start, samples in self._chunks:
            end = start + len(samples) / RATE
            if start - self.lead_s <= t and t <= end + self.max_delay_s:
                return True
        return False

    def _window(self, start_s: float, end_s: float) -> np.ndarray:
        n = round((end_s - start_s) * RATE)
        out = np.zeros(max(n, 0), dtype=np.float32)
        for chunk_start, samples in self._chunks:
            offset = round((chunk_start - start_s) * RATE)
            lo, hi = max(0, offset), min(n, offset + len(samples))
            if lo < hi:
                out[lo:hi] += samples[lo - offset : hi - offset]
        return out

    def echo_share(self, frame: np.ndarray, frame_start_s: float) -> float:
        """The largest share of the frame's energy that one delayed, scaled copy of the
        reference explains (0 = none of it, 1 = all of it). What the echo leaves over must
        itself be loud enough to be a voice, or the frame counts as fully explained."""
        energy = float(np.dot(frame, frame))
        floor = len(frame) * self.min_rms**2
        if energy < 1e-12:
            return 1.0  # digital silence
        # The mic frame at t holds the reference from t - max_delay to t + lead.
        ref = self._window(
            frame_start_s - self.max_delay_s, frame_start_s + self.lead_s + len(frame) / RATE
        )
        if not len(ref) or not np.any(ref):
            return 0.0
        n = len(frame)
        size = 1 << int(np.ceil(np.log2(len(ref) + n)))
        corr = np.fft.irfft(np.fft.rfft(ref, size) * np.conj(np.fft.rfft(frame, size)), size)
        corr = corr[: len(ref) - n + 1]  # <frame, ref[k:k+n]> for every lag k
        cumulative = np.concatenate([[0.0], np.cumsum(ref.astype(np.float64) ** 2)])
        ref_energy = cumulative[n:] - cumulative[:-n]
        with np.errstate(divide="ignore", invalid="ignore"):
            explained = np.where(ref_energy > 1e-9, corr**2 / ref_energy, 0.0)
        best = float(explained.max())
        share = min(1.0, best / energy)
        if share >= 0.3 and energy - best <= floor:
            return 1.0  # the echo is there, and what it leaves is only the noise floor
        return share

    def is_echo(self, frame: np.ndarray, frame_start_s: float) -> bool:
        if not self.playing_near(frame_start_s):
            return False
        return self.echo_share(frame, frame_start_s) >= self.explained
