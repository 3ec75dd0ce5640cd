"""A conversation session: the per-connection state machine between a transport and the models.

The `Listener` turns audio into turn events (VAD → turn detection → streaming STT). At the
end of a turn the final transcript starts a `Reply` (LLM → sentences → TTS → audio out).
At a shorter pause the session *speculates*: it transcribes and starts the reply at once,
holding its output back, and releases it the moment the pause becomes the end of the turn
(or drops it without a trace if the user goes on). Speech while a reply is active
interrupts it (barge-in). Everything the session says goes through its `Outbox`;
transports only move bytes. Sessions share the loaded models (`Services`) and nothing else.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any

import numpy as np

from voxloop.audio.formats import pcm16_to_float
from voxloop.hearing.detector import TurnConfig
from voxloop.hearing.echo import EchoGate
from voxloop.hearing.listener import Heard, Listener
from voxloop.hearing.utterance import Utterance
from voxloop.memory.conversation import Canned, Conversation
from voxloop.protocol import messages as p
from voxloop.protocol.outbox import Outbox
from voxloop.reply.pipeline import Reply
from voxloop.session.principal import OPERATOR, Forbidden, Principal, check_owner
from voxloop.session.replies import Replies
from voxloop.session.services import Services
from voxloop.session.takeover import hold, take_over
from voxloop.store.base import new_session_id
from voxloop.telemetry.metrics import TurnMetrics
from voxloop.turns.continuation import Continuation
from voxloop.turns.endpoint import Endpointing, PauseEvidence, judge_pause
from voxloop.turns.floor import Plumbing
from voxloop.turns.overlap import Overlaps
from voxloop.turns.speculation import Speculator
from voxloop.turns.transcripts import Transcripts

log = logging.getLogger("voxloop.session.session")

CLOSE_POLICY = 1008  # WebSocket close code: the client broke a limit
HAND_OVER_S = 5.0  # the longest a resuming connection waits for the one it takes over


class Session:
    def __init__(self, services: Services, principal: Principal = OPERATOR) -> None:
        """`principal`: whom the connection acts for (session/principal.py); the
        transport may set it later, before the `start` (a Twilio call's token)."""
        self.services = services
        self.principal = principal
        self.clock = services.clock
        self.outbox = Outbox(services.settings.limits.max_outbox_bytes, self._overflowed)
        self.state: Conversation | None = None
        self.turn_counter = 0
        self._tasks: set[asyncio.Task] = set()
        self._not_started_reported = False
        self._greeted = False
        turns = services.settings.turns
        self.sequential = services.settings.session.mode == "sequential"
        policy = Endpointing.for_session(
            turns, sequential=self.sequential, has_judge=services.turn_judge is not None
        )
        self.listener = Listener(
            services.vad,
            services.stt,
            self.clock,
            TurnConfig(
                end_of_turn_silence_s=policy.wait(),
                min_speech_s=turns.min_speech_s,
                pause_s=0.0 if self.sequential else turns.speculative_silence_s,
            ),
            preroll_s=turns.preroll_s,
            on_partial=self._on_partial,
            on_stt_error=lambda turn_id, exc: self.error(
                "stt_failed", f"speech recognition failed: {exc}", turn_id
            ),
        )
        # What the agent played, always: speech over it is judged its echo only on this
        # evidence (turns/overlap.py). The listener's frame gate is opt-in.
        self.echo_reference = EchoGate()
        self.listener.echo = self.echo_reference if turns.echo_suppression else None
        self.barge_in = turns.barge_in
        # A transport that reports the VAD itself (the OpenAI Realtime API's speech_started
        # and speech_stopped) hears what the session heard, once the session has acted on it.
        self.on_heard: Callable[[Heard, Utterance | None], None] | None = None
        self.end_of_turn_silence_s = turns.end_of_turn_silence_s
        # What the current pause's judge and words say, and the wait they ask for.
        self.endpoint = PauseEvidence(policy, self._set_silence, turns.speculative_silence_s)
        self._provisional_id = new_session_id()  # until 'start' names or creates one
        # Set (by `end`): the transport closes the connection with `ended_with`. A newer
        # connection that resumes this session id takes it over that way.
        self.ending = asyncio.Event()
        self.ended_with: tuple[int, str, bool] = (1000, "", False)  # code, reason, abort
        self._closed = asyncio.Event()  # set once `close` is done (its last writes too)
        self.closing = False  # set first thing in `close`: it holds no seat any more
        self._helpers(services)
        self.output_rate = services.tts.sample_rate  # the client may ask for another
        services.live_sessions.add(self)

    @property
    def session_id(self) -> str:
        return self.state.session_id if self.state else self._provisional_id

    @property
    def owner(self) -> str | None:
        """The user the session belongs to (None: the operator's)."""
        return self.state.record.user_id if self.state else self.principal.user

    @property
    def started(self) -> bool:
        return self.listener.active

    @property
    def status(self) -> str:
        """idle (not started), listening, thinking (reply without audio yet) or speaking."""
        return self.replies.status

    @property
    def reply(self) -> Reply | None:
        """The reply that has the floor, if any."""
        return self.replies.reply

    # -- inputs from the transport --------------------------------------------------------

    async def handle_text_frame(self, raw: str | bytes) -> None:
        try:
            msg = p.parse_client_message(raw)
        except p.ProtocolError as exc:
            self.error(exc.code, exc.message)
            return
        await self.handle(msg)

    def handle_audio_frame(self, data: bytes) -> None:
        try:
            p.check_audio_frame(data, started=self.started)
        except p.ProtocolError as exc:
            if exc.code != "not_started" or not self._not_started_reported:
                self.error(exc.code, exc.message)
            self._not_started_reported |= exc.code == "not_started"
            return
        self.feed_audio(pcm16_to_float(data))

    async def handle(self, msg: p.ClientMessage) -> None:
        if isinstance(msg, p.Start):
            await self._start(msg)
        elif isinstance(msg, p.Ping):
            self.outbox.control(self.event("pong", t=msg.t))
        elif self.state is None:
            self.error("not_started", f"{msg.type!r} before 'start'; send a start message first")
        elif isinstance(msg, p.Stop):
            await self._stop()
        elif isinstance(msg, p.Reset):
            await self.replies.interrupt("reset")
            await self.speculator.drop()
            await self.listener.drop_utterance()
            self.state.reset()
            self.replies.set_status("listening" if self.started else "idle")
        elif isinstance(msg, p.Interrupt):
            await self.replies.interrupt("interrupt")
            self.outbox.control(self.event("interrupt_acknowledged"))
        elif isinstance(msg, p.Configure):
            self._configure(msg)
        elif isinstance(msg, p.Text):
            limit = self.services.settings.limits.max_text_chars
            if len(msg.content) > limit:
                self.error(
                    "text_too_long",
                    f"text of {len(msg.content)} characters is over the {limit}-character "
                    "limit (limits.max_text_chars)",
                )
                return
            await self.replies.interrupt("text")
            self.turn_counter += 1
            turn_id = self.turn_counter
            await self.replies.refresh_context()
            self.replies.start_reply(turn_id, msg.content, None, source="text")
        elif (
            isinstance(msg, p.Playback)
            and self.reply is not None
            and msg.turn_id in (None, self.reply.turn_id)
        ):
            self.reply.report_playback(msg.ms)

    def error(self, code: str, message: str, turn_id: int | None = None) -> None:
        log.warning("client error %s: %s", code, message, extra={"session_id": self.session_id})
        self.services.metrics.error(code)
        self.outbox.control(self.event("error", turn_id, code=code, message=message))

    # -- start / stop ---------------------------------------------------------------------

    async def _start(self, msg: p.Start) -> None:
        svc = self.services
        try:  # whose it is, before anything is stopped, opened or taken over
            session_id, user_id = self.principal.names(msg.session_id, msg.user_id)
            if session_id and session_id != self.session_id:
                await check_owner(self.principal, session_id, svc.live_sessions, svc.store)
        except Forbidden as refused:
            self.error("forbidden", refused.message)
            self.end(refused.code, refused.message)
            return
        if self.started:
            await self._stop(acknowledge=False)
        if self.state is None or (session_id and session_id != self.session_id):
            if self.state is not None:
                await self.state.close()
                await hold(svc.handover, self.state.session_id, False)
            if session_id:
                await take_over(self, session_id, svc.live_sessions, svc.handover)
            self.state, resumed = await Conversation.resume(
                svc.store,
                svc.settings,
                session_id,
                self.error,
                user_id=user_id,
                new_id=self._provisional_id,
            )
        else:
            resumed = bool(self.state.history.turns)
        if msg.persona is not None:
            self.state.set_persona(msg.persona)
        if msg.voice is not None:
            self._set_voice(msg.voice)
        await hold(svc.handover, self.session_id, True)
        self.turn_counter = max(self.turn_counter, self.state.last_turn_id)
        self._not_started_reported = False
        self.output_rate = msg.output_sample_rate or svc.tts.sample_rate
        self.listener.start(msg.sample_rate)
        self.spawn(self.listener.run(self._on_heard), "vad")
        self.outbox.control(
            self.event(
                "session",
                input=p.audio_format(msg.sample_rate),
                output=p.audio_format(self.output_rate),
                resumed=resumed,
                turns=len(self.state.history.turns),
                options=self.options(),
            )
        )
        self.replies.set_status("listening")
        greeting = self.state.persona.greeting
        if greeting and not resumed and not self.state.history.turns and not self._greeted:
            self._greeted = True
            self.turn_counter += 1
            self.replies.start_reply(
                self.turn_counter, "", None, source="greeting", llm=Canned(greeting)
            )

    def _configure(self, msg: p.Configure) -> None:
        assert self.state is not None
        if msg.persona is not None:
            self.state.set_persona(msg.persona)  # "" goes back to the default persona
        if msg.voice is not None:
            self._set_voice(msg.voice)
        if msg.end_of_turn_silence_s is not None:
            self.end_of_turn_silence_s = msg.end_of_turn_silence_s
            self.endpoint.policy = Endpointing.for_session(
                self.services.settings.turns,
                sequential=self.sequential,
                has_judge=self.services.turn_judge is not None,
                silence_s=msg.end_of_turn_silence_s,
            )
            self.endpoint.reset()
        if msg.barge_in is not None:
            self.barge_in = msg.barge_in
        self.outbox.control(self.event("configured", **self.options()))

    def options(self) -> dict[str, Any]:
        """The live session's adjustable settings, as `configured` reports them."""
        assert self.state is not None
        return {
            **self.state.options(),
            "voice": self.state.record.voice or "default",
            "end_of_turn_silence_s": self.end_of_turn_silence_s,
            "barge_in": self.barge_in,
        }

    def _set_voice(self, voice: str) -> None:
        assert self.state is not None
        tts = self.services.tts
        known = {"default", tts.name, getattr(tts, "voice_name", "default")}
        if voice in known:
            self.state.record.voice = voice
            self.state.save_meta()
        else:
            choices = ", ".join(sorted(known))
            self.error("unknown_voice", f"unknown voice {voice!r}; available: {choices}")

    async def _stop(self, acknowledge: bool = True) -> None:
        await self.replies.interrupt("stop")
        await self.speculator.drop()
        await self.listener.drop_utterance()
        self.listener.stop()
        if acknowledge:
            self.outbox.control(self.event("stop_acknowledged"))
            self.replies.set_status("idle")

    async def close(self) -> None:
        """The connection is gone: cancel everything, leave no task behind."""
        self.closing = True
        self.outbox.close()
        try:
            reply, self.replies.reply = self.replies.reply, None
            if reply is not None:
                await reply.close()
            await self.speculator.drop()
            await self.listener.drop_utterance()
        finally:
            self.listener.stop()
            tasks = [t for t in self._tasks if not t.done()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            try:
                if self.state is not None:
                    await self.state.close()  # the last turn's write finishes before we go
                    await hold(self.services.handover, self.session_id, False)
            finally:
                self.services.live_sessions.discard(self)  # only now is it really gone
                self._closed.set()

    def end(self, code: int, reason: str, abort: bool = False) -> None:
        """Have the transport close the connection with this WebSocket close code (or
        reset it, `abort`: a client that does not read would never take a close frame)."""
        if not self.ending.is_set():
            self.ended_with = (code, reason, abort)
            self.ending.set()

    def _overflowed(self, max_bytes: int) -> None:
        reason = f"client too slow: over {max_bytes} bytes waiting for it (limits.max_outbox_bytes)"
        log.warning(reason, extra={"session_id": self.session_id})
        self.end(CLOSE_POLICY, reason, abort=True)

    async def hand_over(self, timeout_s: float = HAND_OVER_S) -> None:
        """Another connection resumes this session: end this one (its transport closes
        it) and wait until its last turn is stored, so that the newer one reads it all."""
        self.end(1000, "taken over: the session was resumed on another connection")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._closed.wait(), timeout_s)

    # -- audio → VAD → turns → STT --------------------------------------------------------

    def feed_audio(self, samples: np.ndarray) -> None:
        """Client audio (float32 at the client's rate), after the protocol checks."""
        self.listener.feed(samples)

    async def _on_heard(self, heard: Heard, utt: Utterance | None) -> None:
        if heard is Heard.SPEECH:
            if self.barge_in:
                await self.overlaps.speech(utt)
        elif heard is Heard.STARTED:
            if self.state is not None:
                self.state.cancel_summary()  # the LLM is needed for an answer now
            if self.reply is not None and not self.barge_in:
                return  # the agent has the floor; speech is ignored until it finishes
            if self.listener.utterance is None:
                self.turn_counter += 1
                opened = self.listener.open_utterance(self.turn_counter, stream=not self.sequential)
                await self.continuation.continue_into(opened)
        elif heard is Heard.PAUSED and utt is not None and utt.overlap in ("", "interrupt"):
            speech_s = utt.carried_speech_s() + self.listener.detector.current_speech_s
            pause = self.endpoint.paused(speech_s)
            judge = self.services.turn_judge if self.endpoint.policy.uses_judge else None
            if judge is not None:
                audio, extra = utt.context_samples, self._extra(utt)
                check = judge_pause(judge, audio, self.endpoint, pause, self.clock, extra)
                self.spawn(check, "end-of-turn")
            await self.speculator.start(utt, pause)
        elif heard is Heard.RESUMED:
            self._wait_normally()
            await self.speculator.drop()
        elif heard is Heard.ENDED and utt is not None:
            self._wait_normally()
            self.spawn(self._finish_utterance(utt), "turn-end")
        if self.on_heard is not None and heard is not Heard.SPEECH:
            self.on_heard(heard, utt or self.listener.utterance)

    def _on_partial(self, turn_id: int, text: str) -> None:
        utt = self.listener.utterance
        if utt is not None and utt.turn_id == turn_id:
            text = utt.joined(text)
        self.outbox.data(self.event("partial_transcript", turn_id, text=text))
        self.overlaps.partial(turn_id, text)

    def _wait_normally(self) -> None:
        """The pause is over: forget what was known about it."""
        self.endpoint.reset()

    def _set_silence(self, seconds: float) -> None:
        self.listener.detector.config.end_of_turn_silence_s = seconds

    def _extra(self, utt: Utterance) -> dict[str, Any]:
        return {"session_id": self.session_id, "turn_id": utt.turn_id}

    async def _finish_utterance(self, utt: Utterance) -> None:
        metrics = TurnMetrics(self.session_id, utt.turn_id)
        ended_at = utt.ended_at or self.clock.now()
        if utt.speech_end_at is not None:
            metrics.vad_end_of_turn_ms = (ended_at - utt.speech_end_at) * 1000
        text = await self.transcripts.final_text(utt, metrics, ended_at)
        if await self.continuation.went_on(utt, text, ended_at):
            return  # the user is already talking again: this turn continues in that one
        if text is None:
            return  # the speculative reply took the turn, or the STT failed (reported)
        if not await self.overlaps.is_turn(utt, text):
            return  # a backchannel or the agent's echo: no answer of its own
        text = utt.joined(text)
        self.outbox.data(self.event("final_transcript", utt.turn_id, text=text))
        if not text:
            return  # noise or an empty utterance: nothing to answer
        await self.replies.answer(utt.turn_id, text, utt.speech_end_at, metrics)

    def forget(self) -> None:
        """The stored conversation was deleted (REST): forget it here too, start afresh."""
        if self.state is not None:
            self.state.reset()

    def apply_context(
        self, *, instructions: str | None, facts: list[str] | None, persona: str | None
    ) -> None:
        """New live context from the REST API: the next LLM call uses it."""
        if self.state is not None:
            self.state.set_context(instructions=instructions, facts=facts, persona=persona)
            self.outbox.data(self.event("context_updated", **self.state.context()))

    # -- helpers --------------------------------------------------------------------------

    def _helpers(self, services: Services) -> None:
        """The turn helpers, each given the floor (this session) and the plumbing only."""
        settings = services.settings
        turns, limits, s_stt = settings.turns, settings.limits, settings.stt
        io = Plumbing(
            self.clock, self.outbox, self.event, self.error, self.spawn, lambda: self.session_id
        )
        # The agent's floor: which reply holds it; starts, adopts, withdraws, interrupts.
        self.replies = floor = Replies(
            services,
            io,
            conversation=lambda: self.state,
            output_rate=lambda: self.output_rate,
            listening=lambda: self.started,
            on_audio=self.echo_reference.add_played,
            sequential=self.sequential,
        )
        # Speech over the agent: pause, judge, go on or stop.
        self.overlaps = Overlaps(
            floor,
            io,
            listener=self.listener,
            echo=self.echo_reference,
            models=services,
            metrics=services.metrics,
            turns=turns,
        )
        # Replies started at a pause, held back.
        self.speculator = Speculator(
            floor,
            io,
            models=services,
            endpoint=self.endpoint,
            held_reply=floor.held_reply,
            turns=turns,
            sequential=self.sequential,
        )
        # The end of a turn → its words, in time.
        self.transcripts = Transcripts(
            io,
            models=services,
            stt=s_stt,
            limits=limits,
            speculator=self.speculator,
            overlaps=self.overlaps,
        )
        # Speech before the reply was heard continues the turn.
        self.continuation = Continuation(
            floor,
            io,
            listener=self.listener,
            turns=turns,
            sequential=self.sequential,
        )

    def event(self, type_: str, turn_id: int | None = None, **fields: Any) -> dict[str, Any]:
        return p.event(type_, self.session_id, turn_id, **fields)

    @property
    def tasks(self) -> set[asyncio.Task]:
        """The session's running tasks (spawned with `spawn`)."""
        return self._tasks

    def spawn(self, coro, name: str) -> asyncio.Task:
        task = asyncio.create_task(coro, name=f"{name}-{self.session_id}")
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            exc = task.exception()
            log.error("session task %s failed: %r", task.get_name(), exc)
            with contextlib.suppress(Exception):
                self.error("internal", f"internal error in {task.get_name()}: {exc}")
