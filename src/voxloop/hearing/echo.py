"""Is it the user, or the agent's own voice coming back through a speakerphone?

The server knows exactly what it is playing. A microphone frame that one delayed, scaled
copy of that audio explains (most of its energy) is echo, not the user, so it must neither
start a turn nor interrupt the agent (`is_echo`, the opt-in frame gate).

Speech over the agent is only ever called its echo on that audio evidence
(`echo_evidence`, over a whole utterance): words that merely resemble the agent's own may
be the user's ("Fail again." over "Try again."), and a microphone with no echo path (a
headset, the browser's echo cancellation, a recording) never hears the agent at all.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np

from voxloop.audio.resample import StreamResampler

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
        evidence_delay_s: float = 1.0,
        echo_block: float = 0.6,
    ) -> None:
        self.max_delay_s = max_delay_s
        self.lead_s = lead_s
        self.explained = explained  # share of the frame's energy an echo must explain
        # What the echo leaves over below this level (about -46 dBFS) is the room's noise
        # floor, not a voice: a quiet tail of the agent's word is still echo.
        self.keep_s = keep_s
        self.min_rms = min_rms
        # A browser's or a phone's playback buffer adds 0.1-1.0 s before the room's delay.
        self.evidence_delay_s = evidence_delay_s
        self.echo_block = echo_block  # share of a 100 ms block an echo explains: echo alone
        self._chunks: deque[tuple[float, np.ndarray]] = deque()  # (start time, samples)
        self._forgotten_s = float("-inf")  # the reference before this time was dropped
        self._resampler: StreamResampler | None = None  # the agent's audio → 16 kHz

    def add_played(self, pcm: np.ndarray, rate: int, start_s: float) -> None:
        """Agent audio as sent to the client (int16 at `rate`), playing from `start_s`."""
        if self._resampler is None or self._resampler.from_rate != rate:
            self._resampler = StreamResampler(rate, RATE)
        self.add_reference(self._resampler.push(pcm.astype(np.float32) / 32768.0), start_s)

    def add_reference(self, samples: np.ndarray, start_s: float) -> None:
        """Agent audio (float32 at 16 kHz) that plays from `start_s` on. It replaces what
        was due to play from then on: audio sent ahead and then flushed (a pause, an
        interruption) never played."""
        while self._chunks and self._chunks[-1][0] >= start_s:
            self._chunks.pop()
        if self._chunks:
            last_start, last = self._chunks[-1]
            keep = max(0, round((start_s - last_start) * RATE))
            if keep == 0:
                self._chunks.pop()
            elif keep < len(last):
                self._chunks[-1] = (last_start, last[:keep])
        if len(samples):
            self._chunks.append((start_s, samples.astype(np.float32, copy=False)))
        while self._chunks and self._chunks[0][0] < start_s - self.keep_s:
            old_start, old = self._chunks.popleft()
            self._forgotten_s = max(self._forgotten_s, old_start + len(old) / RATE)

    def clear(self) -> None:
        self._chunks.clear()
        self._forgotten_s = float("-inf")

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
        best = _explained(frame.astype(np.float64), ref.astype(np.float64))
        share = min(1.0, best / energy)
        if share >= 0.3 and energy - best <= floor:
            return 1.0  # the echo is there, and what it leaves is only the noise floor
        return share

    def is_echo(self, frame: np.ndarray, frame_start_s: float) -> bool:
        if not self.playing_near(frame_start_s):
            return False
        return self.echo_share(frame, frame_start_s) >= self.explained

    def echo_evidence(
        self, samples: np.ndarray, start_s: float, *, block_s: float = 0.1, span_s: float = 3.0
    ) -> EchoEvidence:
        """How much of some speech the agent's played audio explains through one echo
        path. The path's delay, in `[-lead_s, evidence_delay_s]`, is the one that explains
        the most `block_s` blocks (an echo's delay holds still, chance likeness does not);
        each block may drift `DRIFT_S` from it (a playback buffer after a pause), and a few
        reflections after it count too. `samples` start at `start_s` on the reference's
        clock; only the latest `span_s` is measured, and only where the reference is still
        held."""
        block = round(block_s * RATE)
        n = min(len(samples), round(span_s * RATE)) // block * block
        if n == 0 or not self._chunks:
            return NO_EVIDENCE
        x = samples[len(samples) - n :].astype(np.float64)
        start_s += (len(samples) - n) / RATE
        delay, lead = round(self.evidence_delay_s * RATE), round(self.lead_s * RATE)
        # Mic sample i holds the reference at ref[i + k], k = delay - (the echo's delay).
        ref = self._window(start_s - delay / RATE, start_s + (n + lead) / RATE).astype(np.float64)
        if not np.any(ref):
            return NO_EVIDENCE
        blocks = x.reshape(-1, block)
        times = start_s + np.arange(len(blocks)) * block_s
        energy = np.einsum("ij,ij->i", blocks, blocks)
        floor = block * self.min_rms**2
        held = times - self.evidence_delay_s >= self._forgotten_s
        voiced = np.nonzero((energy >= floor) & held)[0]
        if not len(voiced):
            return NO_EVIDENCE
        energy = energy[voiced]
        curves = np.minimum(_block_curves(blocks[voiced], ref, voiced * block), energy[:, None])
        # Every block has one vote, whatever its loudness: a loud user's chance likeness
        # must not outvote the quiet echo that fills the rest of the stretch.
        shares = curves / energy[:, None]
        lags = _path(shares)
        taps = _taps(shares.sum(axis=0), lags)
        best = lags.start + np.argmax(curves[:, lags], axis=1)
        explained = np.array(
            [
                _explained_by(blocks[b], ref, b * block, taps, int(k))
                for b, k in zip(voiced, best, strict=True)
            ]
        )
        explained = np.minimum(explained, energy)
        # What the echo leaves over at the noise floor is no voice: the block is all echo.
        whole = (explained >= 0.3 * energy) & (energy - explained <= floor)
        explained = np.where(whole, energy, explained)
        return EchoEvidence(
            energy=float(explained.sum() / energy.sum()),
            time=float(np.mean(explained >= self.echo_block * energy)),
        )


@dataclass(frozen=True)
class EchoEvidence:
    """How much of some speech the agent's played audio explains (`echo_evidence`)."""

    energy: float = 0.0  # the share of its voiced energy: is it mostly the agent's echo?
    # The share of its voiced 100 ms blocks that are echo alone: is there an echo path in
    # it at all, beside what the user says?
    time: float = 0.0


NO_EVIDENCE = EchoEvidence()  # nothing played then, or no voiced sound


DRIFT_S = 0.02  # how far one block's delay may stray from the path's
TAPS = 3  # the direct path and the strongest reflections
REFLECT_S = 0.1  # how long after the direct path a reflection is looked for


def _lag_curve(x: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """For every lag k: the energy of `x` that a scaled `ref[k:k+len(x)]` explains."""
    n = len(x)
    size = 1 << int(np.ceil(np.log2(len(ref) + n)))
    corr = np.fft.irfft(np.fft.rfft(ref, size) * np.conj(np.fft.rfft(x, size)), size)
    corr = corr[: len(ref) - n + 1]
    cumulative = np.concatenate([[0.0], np.cumsum(ref**2)])
    ref_energy = cumulative[n:] - cumulative[:-n]
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(ref_energy > 1e-9, corr**2 / ref_energy, 0.0)


def _explained(x: np.ndarray, ref: np.ndarray) -> float:
    curve = _lag_curve(x, ref)
    return float(curve.max()) if len(curve) else 0.0


def _block_curves(blocks: np.ndarray, ref: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """`_lag_curve` of every block (its mic samples from `starts[i]`) over all the lags
    `ref` leaves room for, in one batch of FFTs."""
    n = blocks.shape[1]
    lags = len(ref) - (starts[-1] + n) + 1 if len(starts) else 0
    span = n + lags - 1
    segments = np.stack([ref[s : s + span] for s in starts])
    size = 1 << int(np.ceil(np.log2(span + n)))
    spectra = np.fft.rfft(segments, size) * np.conj(np.fft.rfft(blocks, size))
    corr = np.fft.irfft(spectra, size)[:, :lags]
    cumulative = np.concatenate([[0.0], np.cumsum(ref**2)])
    index = starts[:, None] + np.arange(lags)[None, :]
    ref_energy = cumulative[index + n] - cumulative[index]
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(ref_energy > 1e-9, corr**2 / ref_energy, 0.0)


def _path(curves: np.ndarray) -> slice:
    """The lags (±`DRIFT_S`) around the delay that explains the most of all the blocks,
    each block at its best within the drift."""
    width = round(DRIFT_S * RATE)
    bins = curves.shape[1] // width
    if bins == 0:
        return slice(0, curves.shape[1])
    binned = curves[:, : bins * width].reshape(len(curves), bins, width).max(axis=2)
    padded = np.pad(binned, ((0, 0), (1, 1)))
    near = np.maximum(np.maximum(padded[:, :-2], padded[:, 1:-1]), padded[:, 2:])
    best = int(np.argmax(near.sum(axis=0)))
    return slice(max(0, (best - 1) * width), min(curves.shape[1], (best + 2) * width))


def _taps(curve: np.ndarray, lags: slice) -> list[int]:
    """The echo path: its main lag (within `lags`), then the strongest peaks that come
    later (smaller k: a longer way round the room), each at least 2 ms from the others;
    as offsets from the main lag."""
    main = lags.start + int(np.argmax(curve[lags]))
    taps, gap = [main], round(0.002 * RATE)
    lo = max(0, main - round(REFLECT_S * RATE))
    rest = curve[lo : main + gap + 1].copy()
    for _ in range(TAPS - 1):
        for t in taps:
            rest[max(0, t - lo - gap) : max(0, t - lo + gap + 1)] = 0.0
        k = int(np.argmax(rest))
        if rest[k] <= 0.1 * curve[main]:
            break
        taps.append(lo + k)
    return [t - main for t in taps]


def _explained_by(x: np.ndarray, ref: np.ndarray, at: int, taps: list[int], lag: int) -> float:
    """The energy of block `x` (mic samples from `at`) that a mix of the echo path's taps
    explains, its main tap at `lag`."""
    n = len(x)
    cols = [ref[at + lag + t : at + lag + t + n] for t in taps if at + lag + t >= 0]
    cols = [c for c in cols if len(c) == n]
    if not cols:
        return 0.0
    basis = np.stack(cols, axis=1)
    gains, *_ = np.linalg.lstsq(basis, x, rcond=None)
    fit = basis @ gains
    return float(fit @ fit)
