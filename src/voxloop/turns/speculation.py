"""A reply started at a pause, before anyone knows whether the user has finished.

The session transcribes and starts answering as soon as the user pauses, writing into a
held outbox behind a closed gate. If the pause turns out to be the end of the turn, the
session adopts the reply and releases it; if the user goes on talking, `discard()` cancels
everything it started and nothing of it reaches the client or the history.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import numpy as np

from voxloop.config.turns import TurnSettings
from voxloop.hearing.utterance import Utterance
from voxloop.protocol.outbox import HeldOutbox
from voxloop.providers.base import Transcript, transcribe_all
from voxloop.reply.pipeline import Reply
from voxloop.telemetry.metrics import TurnMetrics
from voxloop.turns.endpoint import PauseEvidence
from voxloop.turns.floor import Floor, Models, Plumbing
from voxloop.turns.words import sounds_unfinished

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


# Makes the held reply for a speculation: (turn id, its words, when the speech ended,
# its metrics, the held outbox, the gate that holds it back).
HeldReply = Callable[
    [int, str, float | None, TurnMetrics, HeldOutbox, asyncio.Event], Awaitable[Reply]
]


class Speculator:
    """The session's speculation: start a held reply at each pause, drop it if the user
    goes on, adopt it when the pause was the end of the turn."""

    def __init__(
        self,
        floor: Floor,
        plumbing: Plumbing,
        *,
        models: Models,
        endpoint: PauseEvidence,
        held_reply: HeldReply,
        turns: TurnSettings,
        sequential: bool = False,
    ) -> None:
        """`turns` is read at each pause (`speculative_silence_s` 0 turns speculation off);
        the sequential baseline never speculates."""
        self.floor, self.io, self.models, self.endpoint = floor, plumbing, models, endpoint
        self.held_reply, self.turns, self.sequential = held_reply, turns, sequential
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
        if self.sequential or self.turns.speculative_silence_s <= 0:
            return
        await self.drop()
        spec = Speculation(utt, HeldOutbox(self.io.outbox), pause)
        spec.task = self.io.spawn(self._run(spec, utt.samples()), "speculation")
        self._spec = spec

    async def _run(self, spec: Speculation, audio: np.ndarray) -> None:
        utt = spec.utterance
        try:
            spec.transcript = await transcribe_all(self.models.stt, audio)
        except Exception as exc:  # the utterance's own transcript will report it
            log.warning("speculative STT failed: %r", exc, extra=self.io.log_extra())
            return
        spec.transcript_at = self.io.clock.now()
        text = spec.transcript.text.strip()
        unfinished = sounds_unfinished(text)
        # "a table for..." is a pause, not the end: wait longer (and answer later); a
        # complete question may end sooner (turns/endpoint.py).
        self.endpoint.heard(spec.pause, text)
        extra = self.io.log_extra(
            utt.turn_id, text=text, audio_s=round(len(audio) / 16000, 3), unfinished=unfinished
        )
        log.debug("speculative transcript", extra=extra)
        if text and not unfinished:
            metrics = TurnMetrics(self.io.session_id(), utt.turn_id)
            spec.reply = await self.held_reply(
                utt.turn_id, utt.joined(text), utt.speech_end_at, metrics, spec.outbox, spec.gate
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
        clock = self.io.clock
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
        ready_at = spec.transcript_at or clock.now()
        metrics.stt_final_ms = max(0.0, ready_at - ended_at) * 1000
        metrics.timeline.mark("transcript", ready_at)
        self.io.say("final_transcript", utt.turn_id, text=text)
        if spec.reply is None:  # nothing heard, or it sounded unfinished: answer it now
            await spec.discard()
            if text:
                await self.floor.answer(utt.turn_id, text, utt.speech_end_at, metrics)
            return True
        await self.floor.interrupt("new_turn")
        reply = spec.reply
        reply.metrics.vad_end_of_turn_ms = metrics.vad_end_of_turn_ms
        reply.metrics.stt_final_ms = metrics.stt_final_ms
        reply.metrics.timeline.turn_end = metrics.timeline.turn_end
        reply.metrics.timeline.transcript = metrics.timeline.transcript
        reply.metrics.timeline.mark("released", clock.now())
        reply.speculative = False
        spec.release()  # its held events first, then whatever adopting it sends
        self.floor.adopt(reply)
        return True
