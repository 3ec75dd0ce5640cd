"""From per-frame speech probabilities to speech segments.

Providers answer "is this 32 ms frame speech?"; callers want "where are the utterances?".
A short gap inside speech (under `min_silence_s`) does not split an utterance, and a blip
shorter than `min_speech_s` is not one.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from voxloop.providers.base import VADFrame


@dataclass(frozen=True)
class SpeechSegment:
    start_s: float
    end_s: float

    @property
    def duration_s(self) -> float:
        return self.end_s - self.start_s


def speech_segments(
    frames: Iterable[VADFrame], *, min_silence_s: float = 0.3, min_speech_s: float = 0.1
) -> list[SpeechSegment]:
    segments: list[SpeechSegment] = []
    start: float | None = None
    last_speech_end = 0.0
    for frame in frames:
        if frame.is_speech:
            if start is None:
                start = frame.start_s
            last_speech_end = frame.start_s + frame.duration_s
        elif start is not None and frame.start_s + frame.duration_s - last_speech_end >= (
            min_silence_s
        ):
            segments.append(SpeechSegment(start, last_speech_end))
            start = None
    if start is not None:
        segments.append(SpeechSegment(start, last_speech_end))
    return [s for s in segments if s.duration_s >= min_speech_s]
