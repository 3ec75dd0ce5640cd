"""Turn detection: from VAD frames to "the user started talking" and "the user is done".

Time here is *audio* time (frame offsets), not wall-clock time, so the same audio always
gives the same turns, whatever the machine's load, and tests need no clock at all.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from voxloop.providers.base import VADFrame

TALKING_GAP_S = 0.15  # a shorter silence is a gap between syllables, not a pause


class TurnEventKind(Enum):
    SPEECH_STARTED = "speech_started"  # enough speech to count as the user talking
    SPEECH_PAUSED = "speech_paused"  # a short silence: the turn *may* be over (speculate)
    SPEECH_RESUMED = "speech_resumed"  # talking again after a pause: it was not over
    TURN_ENDED = "turn_ended"  # silence long enough to end the user's turn


@dataclass(frozen=True)
class TurnEvent:
    kind: TurnEventKind
    speech_start_s: float  # audio time of the first speech frame of this utterance
    speech_end_s: float | None = None  # audio time where speech stopped (TURN_ENDED only)
    speech_s: float = 0.0  # speech heard in the utterance (TURN_ENDED only; pauses excluded)


@dataclass
class TurnConfig:
    end_of_turn_silence_s: float = 0.5
    min_speech_s: float = 0.15  # shorter bursts (clicks, coughs) do not start a turn
    max_candidate_gap_s: float = 0.2  # silence that abandons a not-yet-confirmed start
    pause_s: float = 0.0  # silence that reports SPEECH_PAUSED; 0 turns pauses off


class TurnDetector:
    """A small state machine: silence → candidate → speech → (silence long enough) → silence."""

    def __init__(self, config: TurnConfig | None = None) -> None:
        self.config = config or TurnConfig()
        self.reset()

    def reset(self) -> None:
        self.state = "silence"
        self._paused = False
        self._start_s = 0.0
        self._speech_s = 0.0  # accumulated speech within the current utterance
        self._last_speech_end_s = 0.0
        self._last_frame_end_s = 0.0

    @property
    def talking(self) -> bool:
        """In an utterance and speaking right now (not in a pause within it)."""
        gap = self._last_frame_end_s - self._last_speech_end_s
        return self.state == "speech" and gap < TALKING_GAP_S

    @property
    def in_speech(self) -> bool:
        return self.state == "speech"

    @property
    def speech_start_s(self) -> float:
        """Audio time of the first speech frame of the current utterance."""
        return self._start_s

    @property
    def current_speech_s(self) -> float:
        """Speech heard so far in the current utterance (0 when silent)."""
        return self._speech_s if self.state != "silence" else 0.0

    def push(self, frame: VADFrame) -> TurnEvent | None:
        cfg = self.config
        end = frame.start_s + frame.duration_s
        self._last_frame_end_s = end
        if frame.is_speech:
            if self.state == "silence":
                self.state, self._start_s, self._speech_s = "candidate", frame.start_s, 0.0
            self._speech_s += frame.duration_s
            self._last_speech_end_s = end
            if self.state == "candidate" and self._speech_s >= cfg.min_speech_s - 1e-9:
                self.state = "speech"
                return TurnEvent(TurnEventKind.SPEECH_STARTED, self._start_s)
            if self._paused:
                self._paused = False
                return TurnEvent(TurnEventKind.SPEECH_RESUMED, self._start_s)
            return None
        gap = end - self._last_speech_end_s
        if self.state == "candidate" and gap >= cfg.max_candidate_gap_s - 1e-9:
            self.reset()
        elif self.state == "speech" and gap >= cfg.end_of_turn_silence_s - 1e-9:
            event = TurnEvent(
                TurnEventKind.TURN_ENDED, self._start_s, self._last_speech_end_s, self._speech_s
            )
            self.reset()
            return event
        elif (
            self.state == "speech"
            and cfg.pause_s > 0
            and not self._paused
            and gap >= cfg.pause_s - 1e-9
        ):
            self._paused = True
            return TurnEvent(TurnEventKind.SPEECH_PAUSED, self._start_s, self._last_speech_end_s)
        return None
