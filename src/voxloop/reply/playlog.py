"""What a reply's listener has heard: every frame of audio sent, placed on the client's
playback timeline, corrected by the client's own playback reports when it sends them.

This is what makes barge-in honest: an interrupted reply goes into the history with only
the words that were played, and a paused reply resumes from the first sample that was
not heard (the unheard samples of the last few seconds are kept for that).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from voxloop.clock import Clock

KEEP_PLAYED_S = 3.0  # samples kept this long after they play, in case a pause must replay them


@dataclass
class Played:
    """One frame of audio as the client will play it (in the client's playback timeline)."""

    sentence: int
    start: float  # clock time at which the client starts playing it
    duration: float
    pcm: np.ndarray | None = None  # kept while unheard, so a pause can replay it


class PlayLog:
    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.frames: list[Played] = []
        self.banked = 0  # frames[:banked] were heard before a pause
        self.pruned = 0  # frames[:pruned] have let go of their samples (long since played)
        self.play_end = 0.0  # clock time the client will have played everything sent
        self.reported: tuple[float, float] | None = None  # (ms played, clock time of report)

    def add(self, sentence: int, pcm: np.ndarray, rate: int) -> float:
        """A frame goes out now; returns the clock time the client will start playing it."""
        now = self.clock.now()
        duration = len(pcm) / rate
        start = max(now, self.play_end)
        self.play_end = start + duration
        self.frames.append(Played(sentence, start, duration, pcm))
        while self.pruned < len(self.frames) and (
            self.frames[self.pruned].start < now - KEEP_PLAYED_S
        ):
            self.frames[self.pruned].pcm = None
            self.pruned += 1
        return start

    def report(self, ms: float) -> None:
        """The client says how much of the audio since the last (re)start it has played."""
        self.reported = (ms, self.clock.now())

    def segment_heard(self, paused: bool) -> list[float]:
        """Seconds heard of each frame since the last (re)start of the audio stream."""
        now = self.clock.now()
        frames = self.frames[self.banked :]
        if self.reported is None:
            return [min(p.duration, max(0.0, now - p.start)) for p in frames]
        # The client's word beats our estimate; extrapolate from its last report.
        ms, at = self.reported
        budget = ms / 1000 + (max(0.0, now - at) if not paused else 0.0)
        out = []
        for p in frames:
            take = min(p.duration, max(0.0, budget))
            out.append(take)
            budget -= take
        return out

    def heard_seconds(self, sentences: int, paused: bool) -> list[float]:
        """Seconds of each sentence the user has heard by now."""
        heard = [0.0] * sentences
        for p in self.frames[: self.banked]:
            heard[p.sentence] += p.duration
        for p, seconds in zip(self.frames[self.banked :], self.segment_heard(paused), strict=True):
            heard[p.sentence] += seconds
        return heard

    def sent_seconds(self, sentences: int) -> list[float]:
        """Seconds of each sentence sent to the client (heard or not)."""
        sent = [0.0] * sentences
        for p in self.frames:
            sent[p.sentence] += p.duration
        return sent

    def total_s(self) -> float:
        return sum(p.duration for p in self.frames)

    def cut(self, rate: int) -> list[tuple[int, np.ndarray]]:
        """The audio stops now (a pause): keep what was heard, return the samples sent
        but not heard (sentence, pcm), oldest first, to replay on resume."""
        budget = sum(self.segment_heard(paused=True))
        heard: list[Played] = []
        unheard: list[tuple[int, np.ndarray]] = []
        for p in self.frames[self.banked :]:
            if budget >= p.duration - 1e-9:
                heard.append(Played(p.sentence, p.start, p.duration))
                budget -= p.duration
                continue
            cut = int(max(0.0, budget) * rate) if p.pcm is not None else 0
            if cut:
                heard.append(Played(p.sentence, p.start, cut / rate))
            if p.pcm is not None:
                unheard.append((p.sentence, p.pcm[cut:]))
            budget = 0.0
        self.frames[self.banked :] = heard
        self.banked = self.pruned = len(self.frames)
        self.reported = None
        self.play_end = self.clock.now()
        return unheard
