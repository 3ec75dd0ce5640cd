"""A reply started at a pause, before anyone knows whether the user has finished.

The session transcribes and starts answering as soon as the user pauses, writing into a
held outbox behind a closed gate. If the pause turns out to be the end of the turn, the
session adopts the reply and releases it; if the user goes on talking, `discard()` cancels
everything it started and nothing of it reaches the client or the history.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from voxloop.listener import Utterance
from voxloop.metrics import TurnMetrics
from voxloop.outbox import HeldOutbox
from voxloop.pipeline import Reply
from voxloop.providers.base import Transcript, transcribe_all
from voxloop.turns.words import sounds_unfinished

if TYPE_CHECKING:
    from voxloop.session import Session

log = logging.getLogger("voxloop.turns.speculation")


@dataclass
class Speculation:
    """A reply started at a pause, before the turn is known to be over."""

    utterance: Utterance
    outbox: HeldOutbox
    pause: int  # the pause it was started at (its words are evidence for that pause)
    gate: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task | None = None
    transcript: Transcript | None = None
    transcript_at: float | None = None
    reply: Reply | None = None

    def release(self) -> None:
        self.outbox.release()
        self.gate.set()

    async def discard(self) -> None:
        """Cancel everything it started; it leaves nothing in history or on the wire."""
        if self.task is not None and not self.task.done():
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)
        if self.reply is not None:
            await self.reply.close()
        self.outbox.discard()


class Speculator:
    """The session's speculation: start a held reply at each pause, drop it if the user
    goes on, adopt it when the pause was the end of the turn."""

    def __init__(self, session: Session) -> None:
        self.s = session
        self._spec: Speculation | None = None

    def take(self, utt: Utterance) -> Speculation | None:
        """The speculation made for this utterance, if any (it is no longer current)."""
        spec = self._spec
        if spec is None or spec.utterance is not utt:
            return None
        self._spec = None
        return spec

    async def start(self, utt: Utterance, pause: int) -> None:
        """The user paused (pause number `pause`, endpoint.PauseEvidence): transcribe and
        start answering now, holding the answer back until the pause turns out to be the
        end of the turn."""
        s = self.s
        if s.sequential or s.services.settings.turns.speculative_silence_s <= 0:
            return
        await self.drop()
        spec = Speculation(utt, HeldOutbox(s.outbox), pause)
        spec.task = s.spawn(self._run(spec, utt.samples()), "speculation")
        self._spec = spec

    async def _run(self, spec: Speculation, audio: np.ndarray) -> None:
        s = self.s
        try:
            spec.transcript = await transcribe_all(s.services.stt, audio)
        except Exception as exc:  # the utterance's own transcript will report it
            log.warning("speculative STT failed: %r", exc, extra={"session_id": s.session_id})
            return
        spec.transcript_at = s.clock.now()
        text = spec.transcript.text.strip()
        unfinished = sounds_unfinished(text)
        # "a table for..." is a pause, not the end: wait longer (and answer later); a
        # complete question may end sooner (turns/endpoint.py).
        s.endpoint.heard(spec.pause, text)
        log.debug(
            "speculative transcript",
            extra={
                "session_id": s.session_id,
                "turn_id": spec.utterance.turn_id,
                "text": text,
                "audio_s": round(len(audio) / 16000, 3),
                "unfinished": unfinished,
            },
        )
        if text and not unfinished:
            await s.refresh_context()
            spec.reply = s.make_reply(
                spec.utterance.turn_id,
                spec.utterance.joined(text),
                spec.utterance.speech_end_at,
                TurnMetrics(s.session_id, spec.utterance.turn_id),
                outbox=spec.outbox,
                gate=spec.gate,
            )
            spec.reply.start()

    async def drop(self) -> None:
        spec, self._spec = self._spec, None
        if spec is not None:
            await spec.discard()

    async def adopt(
        self, spec: Speculation, utt: Utterance, metrics: TurnMetrics, ended_at: float
    ) -> bool:
        """The pause was the end of the turn: release the speculative reply, if it is sound."""
        s = self.s
        try:
            await spec.task
        except Exception:  # fall back to the ordinary path
            await spec.discard()
            return False
        if spec.transcript is None:  # its STT failed: the ordinary path reports why
            await spec.discard()
            return False
        if utt.stt_task is not None:  # the streaming transcript is not needed any more
            utt.stt_task.cancel()
        text = utt.joined(spec.transcript.text.strip() if spec.transcript else "")
        ready_at = spec.transcript_at or s.clock.now()
        metrics.stt_final_ms = max(0.0, ready_at - ended_at) * 1000
        metrics.timeline.mark("transcript", ready_at)
        s.outbox.data(s.event("final_transcript", utt.turn_id, text=text))
        if spec.reply is None:  # nothing heard, or it sounded unfinished: answer it now
            await spec.discard()
            if text:
                await s.interrupt("new_turn")
                await s.refresh_context()
                s.start_reply(utt.turn_id, text, utt.speech_end_at, metrics=metrics)
            return True
        await s.interrupt("new_turn")
        reply = spec.reply
        reply.metrics.vad_end_of_turn_ms = metrics.vad_end_of_turn_ms
        reply.metrics.stt_final_ms = metrics.stt_final_ms
        reply.metrics.timeline.turn_end = metrics.timeline.turn_end
        reply.metrics.timeline.transcript = metrics.timeline.transcript
        reply.metrics.timeline.mark("released", s.clock.now())
        reply.speculative = False
        s.reply = reply
        spec.release()
        if reply.done:  # it finished while held (no audio at all)
            s.reply_done(reply)
        return True
