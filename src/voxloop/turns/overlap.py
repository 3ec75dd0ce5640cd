"""The session's side of speech over the agent: pause the reply, let the words decide
(`bargein.py`), then cancel it or carry on.

An utterance that starts while the agent speaks moves through `Utterance.overlap`:
"" → "pending" (the agent is paused, the words are being checked) → "interrupt" (the
user has the floor: the reply is cancelled and the utterance is an ordinary turn) or
"dismissed" (a backchannel, the agent's echo or no words: the agent resumes, and the
utterance gets no answer unless its later words turn out to be an interruption after all).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import numpy as np

from voxloop.listener import MODEL_RATE, Utterance
from voxloop.pipeline import Reply
from voxloop.providers.base import transcribe_all
from voxloop.turns.bargein import RECENT_S, judge_overlap, overlap_verdict, watch_overlap

if TYPE_CHECKING:
    from voxloop.session import Session

log = logging.getLogger("voxloop.turns.overlap")


class Overlaps:
    def __init__(self, session: Session) -> None:
        self.s = session
        self.last_reply: Reply | None = None  # what the agent said last, for echo checks

    @property
    def _turns(self):
        return self.s.services.settings.turns

    def agent_text(self) -> str:
        reply = self.s.reply or self.last_reply
        return " ".join(reply.sentences) if reply is not None else ""

    async def speech(self, utt: Utterance | None) -> None:
        """The user is talking while a reply is active: stop it, or pause it until the
        words say whether this is an interruption."""
        s, reply, turns = self.s, self.s.reply, self._turns
        if (
            reply is None
            or reply.done
            or not s.barge_in
            or s.listener.speech_s < turns.barge_in_min_speech_s
            or (utt is not None and utt.overlap)
        ):
            return
        if turns.interruption == "vad" or utt is None or not reply.audio_started:
            await s.interrupt("barge_in")
        elif reply.pause():
            log.debug("paused for speech over the reply", extra=self._extra(reply.turn_id))
            utt.overlap = "pending"
            s.spawn(self._judge(reply, utt), "overlap")

    async def _judge(self, reply: Reply, utt: Utterance) -> None:
        s, turns = self.s, self._turns
        try:
            result = await judge_overlap(
                reply,
                utt.samples,
                stt=s.services.stt,
                clock=s.clock,
                check_s=turns.interruption_check_s,
                timeout_s=turns.false_interruption_timeout_s,
                still_talking=lambda: s.listener.utterance is utt and s.listener.detector.talking,
                undecided=lambda: utt.overlap == "pending",
                speech_s=lambda: s.listener.detector.current_speech_s,
                first_after_s=turns.interruption_words_after_s,
            )
        except Exception as exc:  # no words to go by: carry on speaking
            log.warning("overlap check failed: %r", exc, extra=self._extra())
            result = ("empty", "")
        if result is not None and utt.overlap == "pending":
            await self.settle(utt, *result)

    async def settle(self, utt: Utterance, verdict: str, text: str) -> None:
        """Act on what speech over the agent turned out to be."""
        s = self.s
        log.debug(
            "speech over the reply: %s", verdict, extra={**self._extra(utt.turn_id), "text": text}
        )
        if verdict == "interrupt":
            utt.overlap = "interrupt"
            await s.interrupt("barge_in")
            return
        utt.overlap = "dismissed"
        if s.reply is not None:
            s.reply.resume()
            if s.listener.utterance is utt:
                s.spawn(self._watch(s.reply, utt), "overlap")
        s.services.metrics.count(f"false_interruptions.{verdict}")
        s.outbox.data(s.event("false_interruption", utt.turn_id, verdict=verdict, text=text))

    async def _watch(self, reply: Reply, utt: Utterance) -> None:
        """The speech went on after it was let go: an interruption may follow the echo."""
        s = self.s
        try:
            text = await watch_overlap(
                reply,
                utt.samples,
                stt=s.services.stt,
                clock=s.clock,
                every_s=2 * self._turns.interruption_check_s,
                still_on=lambda: utt.overlap == "dismissed" and s.listener.utterance is utt,
                still_talking=lambda: s.listener.detector.talking,
            )
        except Exception as exc:  # the end of the utterance still gets its final check
            log.warning("overlap watch failed: %r", exc, extra=self._extra())
            return
        if text is not None and utt.overlap == "dismissed":
            await self.settle(utt, "interrupt", text)

    def partial(self, turn_id: int, text: str) -> None:
        """A streaming partial of the current utterance: it may already say "stop"."""
        utt = self.s.listener.utterance
        if (
            utt is not None
            and utt.turn_id == turn_id
            and utt.overlap in ("pending", "dismissed")
            and self.s.reply is not None
            and overlap_verdict(text, self.agent_text(), cut=(False, True)) == "interrupt"
        ):
            self.s.spawn(self.settle(utt, "interrupt", text), "overlap")

    async def is_turn(self, utt: Utterance, final_text: str) -> bool:
        """The utterance ended: is it a turn of its own? Speech over the agent is one only
        if its words interrupt. A long dismissed stretch (echo) is judged by its latest
        words, as `watch_overlap` did while it went on; the rest was judged already."""
        if utt.overlap not in ("pending", "dismissed"):
            return True
        text, cut = final_text, (False, False)
        audio = utt.samples()
        window = int(RECENT_S * MODEL_RATE)
        if utt.overlap == "dismissed" and len(audio) > window:
            text, cut = await self._recent_words(audio[-window:]), (True, False)
        verdict = overlap_verdict(text, self.agent_text(), cut=cut)
        if verdict == "interrupt":
            await self.settle(utt, "interrupt", text)
            return True
        if utt.overlap == "pending":
            await self.settle(utt, verdict, text)
        return False

    async def _recent_words(self, audio: np.ndarray) -> str:
        try:
            return (await transcribe_all(self.s.services.stt, audio)).text.strip()
        except Exception as exc:
            log.warning("overlap check failed: %r", exc, extra=self._extra())
            return ""

    def _extra(self, turn_id: int | None = None) -> dict:
        return {"session_id": self.s.session_id, "turn_id": turn_id}
