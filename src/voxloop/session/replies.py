"""The agent's floor in a session: which reply holds it, and the acts that start, adopt,
withdraw, interrupt and finish replies.

It is the `Floor` the turn helpers act on (turns/floor.py), and owns the session's side of
each reply: its config from the settings, its record in the conversation once it is done,
its metrics, and the status the client sees (listening, thinking, speaking).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import numpy as np

from voxloop.memory.conversation import Conversation
from voxloop.protocol.outbox import HeldOutbox, Outbox
from voxloop.providers.base import LLMProvider
from voxloop.reply.config import ReplyConfig
from voxloop.reply.pipeline import Reply
from voxloop.session.services import Services
from voxloop.telemetry.metrics import TurnMetrics
from voxloop.turns.floor import Plumbing


class Replies:
    def __init__(
        self,
        services: Services,
        plumbing: Plumbing,
        *,
        conversation: Callable[[], Conversation | None],
        output_rate: Callable[[], int],
        listening: Callable[[], bool],
        on_audio: Callable[[np.ndarray, int, float], None],
        sequential: bool = False,
    ) -> None:
        """`conversation`, `output_rate`, `listening`: the session's, as they are now (a
        'start' changes them); `on_audio`: what is about to play (the echo reference)."""
        self.services, self.io = services, plumbing
        self._conversation, self._output_rate, self._listening = (
            conversation,
            output_rate,
            listening,
        )
        self.on_audio, self.sequential = on_audio, sequential
        self.reply: Reply | None = None  # the reply that has the floor
        self.last_reply: Reply | None = None  # what the agent said last, for echo checks

    @property
    def status(self) -> str:
        """idle (not started), listening, thinking (reply without audio yet) or speaking."""
        if self.reply is not None and not self.reply.done:
            return "speaking" if self.reply.audio_started else "thinking"
        return "listening" if self._listening() else "idle"

    def set_status(self, status: str | None = None) -> None:
        """Tell the client the status (by default, the one it is now)."""
        self.io.outbox.control(self.io.event("status", status=status or self.status))

    def start_reply(
        self,
        turn_id: int,
        text: str,
        speech_end_at: float | None,
        *,
        metrics: TurnMetrics | None = None,
        source: str = "voice",
        llm: LLMProvider | None = None,
    ) -> None:
        metrics = metrics or TurnMetrics(self.io.session_id(), turn_id)
        metrics.source = source
        self.reply = self.make_reply(turn_id, text, speech_end_at, metrics, llm=llm)
        self.reply.start()

    def make_reply(
        self,
        turn_id: int,
        text: str,
        speech_end_at: float | None,
        metrics: TurnMetrics,
        *,
        outbox: Outbox | HeldOutbox | None = None,
        gate: asyncio.Event | None = None,
        llm: LLMProvider | None = None,
    ) -> Reply:
        state = self._conversation()
        assert state is not None
        state.cancel_summary()  # the answer comes first
        svc = self.services
        llm = llm or svc.llm
        config = ReplyConfig.for_session(
            svc.settings,
            system_prompt=state.system_prompt(),
            output_sample_rate=self._output_rate(),
            sequential=self.sequential,
            llm=llm,
            tts=svc.tts,
        )
        return Reply(
            session_id=self.io.session_id(),
            turn_id=turn_id,
            user_text=text,
            llm=llm,
            tts=svc.tts,
            outbox=outbox or self.io.outbox,
            clock=self.io.clock,
            history=state.history,
            config=config,
            metrics=metrics,
            speech_end_at=speech_end_at,
            on_done=self.reply_done,
            on_error=self.io.error,
            gate=gate,
            speculative=gate is not None,
            on_audio=self.on_audio,
            tools=svc.tools,
        )

    async def held_reply(
        self,
        turn_id: int,
        text: str,
        speech_end_at: float | None,
        metrics: TurnMetrics,
        outbox: HeldOutbox,
        gate: asyncio.Event,
    ) -> Reply:
        """A reply made at a pause, writing into `outbox` behind `gate` (speculation.py)."""
        await self.refresh_context()
        return self.make_reply(turn_id, text, speech_end_at, metrics, outbox=outbox, gate=gate)

    # -- the acts of `Floor` ----------------------------------------------------------------

    async def answer(
        self, turn_id: int, text: str, speech_end_at: float | None, metrics: TurnMetrics
    ) -> None:
        await self.interrupt("new_turn")
        await self.refresh_context()
        self.start_reply(turn_id, text, speech_end_at, metrics=metrics)

    def adopt(self, reply: Reply) -> None:
        self.reply = reply
        if reply.done:  # it finished while held (no audio at all)
            self.reply_done(reply)

    async def withdraw(self, turn_id: int) -> None:
        reply = self.reply
        if reply is not None and reply.turn_id == turn_id:
            self.reply = None
            await reply.close()  # no history, no metrics: nobody heard it
            dropped = self.io.outbox.drop_turn(turn_id)
            if dropped:
                stop = self.io.event("tts_stop", turn_id, reason="continued", dropped_bytes=dropped)
                self.io.outbox.control(stop)
            self.set_status("listening")

    async def interrupt(self, reason: str) -> None:
        reply, self.reply = self.reply, None
        self.last_reply = reply or self.last_reply
        if reply is not None and not reply.done:
            await reply.interrupt(reason)
            self.set_status()

    # --------------------------------------------------------------------------------------

    def reply_done(self, reply: Reply) -> None:
        if reply.speculative:
            return  # not adopted (yet): it never happened as far as anyone can tell
        self.last_reply = reply
        self.services.metrics.record_turn(reply.metrics)
        figures = reply.metrics.as_dict()
        del figures["session_id"], figures["turn_id"]
        event = self.io.event("metrics", reply.turn_id, **figures)
        state = self._conversation()
        if state is not None and reply.record is not None:
            # `metrics` closes the turn for the client: send it once the turn is stored.
            state.turn_done(reply.record, then=lambda: self.io.outbox.data(event))
            state.summarize_later(self.services.llm)
        else:
            self.io.outbox.data(event)
        if self.reply is reply:
            self.reply = None
            self.set_status()

    async def refresh_context(self) -> None:
        """Another worker may have changed this session's context (PUT .../context)."""
        state = self._conversation()
        if self.services.shared_store and state is not None:
            await state.refresh()
