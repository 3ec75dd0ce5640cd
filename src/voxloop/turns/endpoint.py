"""When is the user done? The silence that ends a turn, from what is known at a pause.

At a short pause (`turns.speculative_silence_s`) two kinds of evidence come in, at
different times: the end-of-turn judge's probability that the utterance is complete (an
audio model reading intonation and rhythm, tens of milliseconds) and the words so far (the
speculative transcript, a Whisper decode later). `Endpointing.wait` turns whatever is known
into the silence after the speech that ends the turn; the session asks again when more is
known. The policy was chosen with `voxloop eval turns` on real human recordings
(docs/benchmarks.md, "Turn-taking on real speech"):

- `silence`: a fixed silence (`normal_s`), the VAD-only baseline;
- `words`: the word rules (`words.end_of_turn_silence`): longer after "a table for...",
  shorter after a complete question;
- `judge`: end at once when the judge says complete, else wait `max_silence_s`;
- `combined` (the default): words that sound unfinished always wait; otherwise the judge's
  "complete" ends the turn at once, a complete question ends it soon whatever the judge
  says (the model misjudges some flatly spoken questions), and anything else waits for
  `max_silence_s`, the longest silence any turn needs.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from voxloop.clock import Clock
from voxloop.providers.base import TurnJudgeProvider
from voxloop.turns.words import end_of_turn_silence, sounds_complete_question, sounds_unfinished

if TYPE_CHECKING:
    from voxloop.config.turns import TurnSettings

log = logging.getLogger("voxloop.turns.endpoint")

# An unsure judge looks again once the silence is this much longer: more silence after the
# last word is evidence too, and the model reads it (docs/benchmarks.md).
REJUDGE_AFTER_S = 0.2

Mode = Literal["silence", "words", "judge", "combined"]
MODES: tuple[Mode, ...] = ("silence", "words", "judge", "combined")


@dataclass(frozen=True)
class Endpointing:
    mode: Mode = "combined"
    normal_s: float = 0.5  # silence that ends a turn with no other evidence (and `silence`)
    unfinished_s: float = 1.2  # after words that sound unfinished
    question_s: float = 0.35  # after a complete question
    finished_s: float = 0.4  # after a complete-sounding statement (`words`)
    complete_p: float = 0.5  # the judge's probability that counts as "complete"
    max_silence_s: float = 1.0  # the judge modes' fallback: every turn ends after this
    long_speech_s: float = 6.0  # combined: an utterance this long is someone reading, telling
    long_silence_s: float = 1.2  # ... and only this much silence ends it (see `wait`)

    @classmethod
    def from_settings(
        cls, turns: TurnSettings, *, silence_s: float | None = None, mode: Mode | None = None
    ) -> Endpointing:
        """The policy of `turns`; `silence_s` (a client's `end_of_turn_silence_s`) replaces
        both the fixed silence and the fallback: a client that asks for patience gets it."""
        return cls(
            mode=mode or turns.end_of_turn,
            normal_s=silence_s or turns.end_of_turn_silence_s,
            unfinished_s=turns.unfinished_silence_s,
            question_s=turns.question_silence_s,
            finished_s=turns.finished_silence_s,
            complete_p=turns.complete_probability,
            max_silence_s=silence_s or turns.max_silence_s,
            long_speech_s=turns.long_speech_s,
            long_silence_s=max(silence_s or 0.0, turns.long_silence_s),
        )

    @classmethod
    def for_session(
        cls,
        turns: TurnSettings,
        *,
        sequential: bool,
        has_judge: bool,
        silence_s: float | None = None,
    ) -> Endpointing:
        """A session's policy: the sequential baseline waits a fixed silence, and a session
        without a judge (services built by hand) falls back to the word rules."""
        mode = turns.end_of_turn
        if sequential:
            mode = "silence"
        elif mode in ("judge", "combined") and not has_judge:
            mode = "words"
        return cls.from_settings(turns, silence_s=silence_s, mode=mode)

    @property
    def uses_judge(self) -> bool:
        return self.mode in ("judge", "combined")

    @property
    def uses_words(self) -> bool:
        return self.mode in ("words", "combined")

    def wait(
        self,
        *,
        words: str | None = None,
        probability: float | None = None,
        speech_s: float = 0.0,
    ) -> float:
        """Seconds of silence after the speech that end the turn, given the transcript at
        the pause (None: not known yet), the judge's probability (None: not known yet, or
        no judge) and how long the utterance has gone on. 0 means "now": the caller ends the
        turn as soon as it knows.

        In `combined`, someone who has talked for `long_speech_s` without a break is reading
        aloud or telling something: their pauses at commas and full stops sound complete to
        the model (it was trained on conversational turns) and to the word rules, so only
        `long_silence_s` of silence, or a question, ends the turn."""
        if self.mode == "silence":
            return self.normal_s
        if self.mode == "words":
            if words is None:
                return self.normal_s
            return end_of_turn_silence(
                words,
                normal=self.normal_s,
                unfinished=self.unfinished_s,
                question=self.question_s,
                finished=self.finished_s,
            )
        complete = probability is not None and probability >= self.complete_p
        if self.mode == "judge":
            return 0.0 if complete else self.max_silence_s
        text = (words or "").strip()
        if speech_s >= self.long_speech_s:
            if text and sounds_complete_question(text):
                return self.question_s
            return self.long_silence_s
        if text and sounds_unfinished(text):
            return max(self.unfinished_s, self.max_silence_s)
        if complete:
            return 0.0
        if text and sounds_complete_question(text):
            return self.question_s
        return self.max_silence_s


class PauseEvidence:
    """What is known about the current pause, and the silence it asks the detector for.

    The judge and the words arrive in either order; each one re-applies the policy through
    `set_silence` (the turn detector's end-of-turn silence). A pause that ends (speech
    resumed, or the turn ended) goes back to the policy's wait with nothing known, and
    evidence that still comes in for it (by its number, from `paused`) is ignored."""

    def __init__(self, policy: Endpointing, set_silence: Callable[[float], None], floor_s: float):
        self.policy = policy
        self._set = set_silence
        self.floor_s = floor_s  # the pause at which evidence is gathered: never wait less
        self.pause = 0  # numbers the pauses; the current one is open while `open`
        self.open = False
        self.probability: float | None = None
        self.words: str | None = None
        self.speech_s = 0.0

    def paused(self, speech_s: float) -> int:
        """A pause after `speech_s` of speech: gather evidence for it (its number)."""
        self.pause += 1
        self.open, self.probability, self.words = True, None, None
        self.speech_s = speech_s
        self._apply()
        return self.pause

    def current(self, pause: int) -> bool:
        return self.open and pause == self.pause

    def judged(self, pause: int, probability: float) -> None:
        if self.current(pause):
            self.probability = probability
            self._apply()

    def heard(self, pause: int, words: str) -> None:
        if self.current(pause):
            self.words = words
            self._apply()

    def reset(self) -> None:
        self.open, self.probability, self.words = False, None, None
        self.speech_s = 0.0
        self._apply()

    def _apply(self) -> None:
        wait = self.policy.wait(
            words=self.words, probability=self.probability, speech_s=self.speech_s
        )
        self._set(max(wait, self.floor_s))


async def judge_pause(
    judge: TurnJudgeProvider,
    audio: Callable[[], np.ndarray],
    evidence: PauseEvidence,
    pause: int,
    clock: Clock,
    log_extra: dict[str, Any],
) -> None:
    """The learned end-of-turn judge on the utterance so far (`audio()`, its pause
    included), as evidence for pause number `pause`; if it is unsure, once more after
    `REJUDGE_AFTER_S` more silence. A failing judge leaves the fallback silence to end it."""
    for look in (1, 2):
        started = clock.now()
        try:
            probability = await judge.complete_probability(audio())
        except Exception as exc:
            log.warning("end-of-turn judge failed: %r", exc, extra=log_extra)
            return
        ms = round((clock.now() - started) * 1000, 1)
        extra = {**log_extra, "probability": round(probability, 3), "ms": ms}
        log.debug("end-of-turn judge (look %d)", look, extra=extra)
        evidence.judged(pause, probability)
        if probability >= evidence.policy.complete_p or look == 2:
            return
        await clock.sleep(REJUDGE_AFTER_S)
        if not evidence.current(pause):
            return  # the user went on, or the turn is over
