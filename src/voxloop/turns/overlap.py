"""The session's side of speech over the agent: pause the reply, let the words decide
(`bargein.py`), then cancel it or carry on.

An utterance that starts while the agent speaks moves through `Utterance.overlap`:
"" → "pending" (the agent is paused, the words are being checked) → "interrupt" (the
user has the floor: the reply is cancelled and the utterance is an ordinary turn) or
"dismissed" (a backchannel, the agent's echo or no words: the agent resumes, and the
utterance gets no answer unless its later words turn out to be an interruption after all).

"Echo" takes audio evidence: the session always keeps what it played (the `EchoGate`
given here), and the judge weighs how much of the utterance that explains. Without it,
words that are not backchannels are the user's, even if the agent said them too.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from functools import partial
from typing import Any

import numpy as np

from voxloop.config.turns import TurnSettings
from voxloop.hearing.echo import NO_EVIDENCE, EchoEvidence, EchoGate
from voxloop.hearing.listener import Listener
from voxloop.hearing.utterance import MODEL_RATE, Utterance
from voxloop.providers.base import transcribe_all
from voxloop.reply.pipeline import Reply
from voxloop.telemetry.metrics import MetricsRegistry
from voxloop.turns.bargein import (
    RECENT_S,
    Evidence,
    judge_overlap,
    overlap_verdict,
    watch_overlap,
)
from voxloop.turns.floor import Floor, Models, Plumbing

log = logging.getLogger("voxloop.turns.overlap")


class Overlaps:
    def __init__(
        self,
        floor: Floor,
        plumbing: Plumbing,
        *,
        listener: Listener,
        echo: EchoGate,
        models: Models,
        metrics: MetricsRegistry,
        turns: TurnSettings,
    ) -> None:
        self.floor, self.io, self.listener, self.echo = floor, plumbing, listener, echo
        self.models, self.metrics, self.turns = models, metrics, turns
        self._starts: dict[int, float] = {}  # turn id → its audio's start on the clock
        self._checks: set[asyncio.Task] = set()  # running checks of words over the agent

    def agent_text(self) -> str:
        reply = self.floor.reply or self.floor.last_reply
        return " ".join(reply.sentences) if reply is not None else ""

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        task = self.io.spawn(coro, "overlap")
        self._checks.add(task)
        task.add_done_callback(self._checks.discard)

    async def speech(self, utt: Utterance | None) -> None:
        """The user is talking while a reply is active (and barge-in is on): stop it, or
        pause it until the words say whether this is an interruption."""
        reply, turns = self.floor.reply, self.turns
        if (
            reply is None
            or reply.done
            or self.listener.speech_s < turns.barge_in_min_speech_s
            or (utt is not None and utt.overlap)
        ):
            return
        if turns.interruption == "vad" or utt is None or not reply.audio_started:
            await self.floor.interrupt("barge_in")
        elif reply.pause():
            log.debug("paused for speech over the reply", extra=self.io.log_extra(reply.turn_id))
            utt.overlap = "pending"
            self._place(utt)
            self._spawn(self._judge(reply, utt))

    def _place(self, utt: Utterance) -> None:
        """Note where the utterance's audio starts on the server's clock (the one the echo
        reference is kept on). It is the listener's current utterance, so its audio ends
        with what just arrived; the evidence's delay search absorbs the slack."""
        self._starts = {t: at for t, at in self._starts.items() if t > utt.turn_id - 4}
        heard_s = sum(len(a) for a in utt.audio) / MODEL_RATE
        self._starts[utt.turn_id] = self.io.clock.now() - heard_s

    def _echo(self, utt: Utterance) -> Evidence:
        """The echo evidence for stretches of `utt`'s audio (bargein.Evidence)."""
        start, reference = self._starts.get(utt.turn_id), self.echo

        def evidence(samples: np.ndarray, first: int) -> EchoEvidence:
            if start is None:
                return NO_EVIDENCE
            return reference.echo_evidence(samples, start + first / MODEL_RATE)

        return evidence

    async def _judge(self, reply: Reply, utt: Utterance) -> None:
        turns, ear = self.turns, self.listener
        try:
            result = await judge_overlap(
                reply,
                utt.samples,
                stt=self.models.stt,
                clock=self.io.clock,
                check_s=turns.interruption_check_s,
                timeout_s=turns.false_interruption_timeout_s,
                still_talking=lambda: ear.utterance is utt and ear.detector.talking,
                undecided=lambda: utt.overlap == "pending",
                speech_s=lambda: ear.detector.current_speech_s,
                first_after_s=turns.interruption_words_after_s,
                echo=self._echo(utt),
            )
        except Exception as exc:  # no words to go by: carry on speaking
            log.warning("overlap check failed: %r", exc, extra=self.io.log_extra())
            result = ("empty", "")
        if result is not None and utt.overlap == "pending":
            await self.settle(utt, *result)

    async def settle(self, utt: Utterance, verdict: str, text: str) -> None:
        """Act on what speech over the agent turned out to be."""
        log.debug(
            "speech over the reply: %s", verdict, extra=self.io.log_extra(utt.turn_id, text=text)
        )
        if verdict == "interrupt":
            utt.overlap = "interrupt"
            await self.floor.interrupt("barge_in")
            return
        utt.overlap = "dismissed"
        reply = self.floor.reply
        if reply is not None:
            reply.resume()
            if self.listener.utterance is utt:
                self._spawn(self._watch(reply, utt))
        self.metrics.count(f"false_interruptions.{verdict}")
        self.io.say("false_interruption", utt.turn_id, verdict=verdict, text=text)

    async def abandon(self, utt: Utterance) -> None:
        """Its words will never come (the STT gave up on them, and the checks here wait
        on the same STT): stop checking, and let a reply paused for them carry on."""
        checks = list(self._checks)
        for task in checks:
            task.cancel()
        await asyncio.gather(*checks, return_exceptions=True)
        if utt.overlap == "pending":
            await self.settle(utt, "empty", "")

    async def _watch(self, reply: Reply, utt: Utterance) -> None:
        """The speech went on after it was let go: an interruption may follow the echo."""
        ear = self.listener
        try:
            text = await watch_overlap(
                reply,
                utt.samples,
                stt=self.models.stt,
                clock=self.io.clock,
                every_s=2 * self.turns.interruption_check_s,
                still_on=lambda: utt.overlap == "dismissed" and ear.utterance is utt,
                still_talking=lambda: ear.detector.talking,
                echo=self._echo(utt),
            )
        except Exception as exc:  # the end of the utterance still gets its final check
            log.warning("overlap watch failed: %r", exc, extra=self.io.log_extra())
            return
        if text is not None and utt.overlap == "dismissed":
            await self.settle(utt, "interrupt", text)

    def partial(self, turn_id: int, text: str) -> None:
        """A streaming partial of the current utterance: it may already say "stop", or
        words that the played audio does not explain."""
        utt = self.listener.utterance
        if (
            utt is not None
            and utt.turn_id == turn_id
            and utt.overlap in ("pending", "dismissed")
            and self.floor.reply is not None
            and overlap_verdict(
                text,
                self.agent_text(),
                cut=(False, True),
                echo=lambda: self._echo(utt)(utt.samples(), 0),
            )
            == "interrupt"
        ):
            self._spawn(self.settle(utt, "interrupt", text))

    async def is_turn(self, utt: Utterance, final_text: str) -> bool:
        """The utterance ended: is it a turn of its own? Speech over the agent is one only
        if its words interrupt, or are not backchannels and the played audio does not
        explain them: then even a dismissed utterance is answered ("Fail again." let go
        as echo of "Try again."). A long dismissed stretch (echo) is judged by its latest
        words, as `watch_overlap` did while it went on; the rest was judged already."""
        if utt.overlap not in ("pending", "dismissed"):
            return True
        text, cut, first = final_text, (False, False), 0
        audio = utt.samples()
        window = int(RECENT_S * MODEL_RATE)
        if utt.overlap == "dismissed" and len(audio) > window:
            first = len(audio) - window
            text, cut = await self._recent_words(audio[first:]), (True, False)
        evidence = partial(self._echo(utt), audio[first:], first)
        self._starts.pop(utt.turn_id, None)
        verdict = overlap_verdict(text, self.agent_text(), cut=cut, echo=evidence)
        if verdict == "interrupt":
            await self.settle(utt, "interrupt", text)
            return True
        if utt.overlap == "pending":
            await self.settle(utt, verdict, text)
        return False

    async def _recent_words(self, audio: np.ndarray) -> str:
        try:
            return (await transcribe_all(self.models.stt, audio)).text.strip()
        except Exception as exc:
            log.warning("overlap check failed: %r", exc, extra=self.io.log_extra())
            return ""
