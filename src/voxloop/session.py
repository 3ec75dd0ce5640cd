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
from typing import Any

import numpy as np

from voxloop.audio import StreamResampler, pcm16_to_float
from voxloop.listener import Heard, Listener, Utterance
from voxloop.metrics import TurnMetrics
from voxloop.outbox import HeldOutbox, Outbox
from voxloop.pipeline import Reply, ReplyConfig
from voxloop.providers.base import (
    Transcript,
    transcribe_all,
)
from voxloop.services import Services
from voxloop.speculation import Speculation
from voxloop.store.memory import SessionState, new_session_id, valid_session_id
from voxloop.transport import protocol as p
from voxloop.turns import TurnConfig
from voxloop.turntaking import EchoGate, end_of_turn_silence, sounds_unfinished

log = logging.getLogger("voxloop.session")


class Session:
    def __init__(self, services: Services) -> None:
        self.services = services
        self.clock = services.clock
        self.outbox = Outbox()
        self.state: SessionState | None = None
        self.turn_counter = 0
        self.reply: Reply | None = None
        self._spec: Speculation | None = None
        self._tasks: set[asyncio.Task] = set()
        self._not_started_reported = False
        turns = services.settings.turns
        self.sequential = services.settings.session.mode == "sequential"
        self.listener = Listener(
            services.vad,
            services.stt,
            self.clock,
            TurnConfig(
                end_of_turn_silence_s=turns.end_of_turn_silence_s,
                min_speech_s=turns.min_speech_s,
                pause_s=0.0 if self.sequential else turns.speculative_silence_s,
            ),
            preroll_s=turns.preroll_s,
            on_partial=lambda turn_id, text: self.outbox.data(
                self._event("partial_transcript", turn_id, text=text)
            ),
            on_stt_error=lambda turn_id, exc: self.error(
                "stt_failed", f"speech recognition failed: {exc}", turn_id
            ),
        )
        self.listener.echo = EchoGate() if turns.echo_suppression else None
        self._echo_resampler: StreamResampler | None = None
        self.barge_in = turns.barge_in
        self.end_of_turn_silence_s = turns.end_of_turn_silence_s
        self._provisional_id = new_session_id()  # until 'start' names or creates one
        services.live_sessions.add(self)

    @property
    def session_id(self) -> str:
        return self.state.session_id if self.state else self._provisional_id

    @property
    def started(self) -> bool:
        return self.listener.active

    @property
    def status(self) -> str:
        """idle (not started), listening, thinking (reply without audio yet) or speaking."""
        if self.reply is not None and not self.reply.done:
            return "speaking" if self.reply.audio_started else "thinking"
        return "listening" if self.started else "idle"

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
            self.outbox.control(self._event("pong", t=msg.t))
        elif self.state is None:
            self.error("not_started", f"{msg.type!r} before 'start'; send a start message first")
        elif isinstance(msg, p.Stop):
            await self._stop()
        elif isinstance(msg, p.Reset):
            await self._interrupt("reset")
            await self._drop_speculation()
            await self.listener.drop_utterance()
            self.state.history.clear()
            self._set_status("listening" if self.started else "idle")
        elif isinstance(msg, p.Interrupt):
            await self._interrupt("interrupt")
            self.outbox.control(self._event("interrupt_acknowledged"))
        elif isinstance(msg, p.Configure):
            self._configure(msg)
        elif isinstance(msg, p.Text):
            await self._interrupt("text")
            self.turn_counter += 1
            self._start_reply(self.turn_counter, msg.content, None, source="text")
        elif (
            isinstance(msg, p.Playback)
            and self.reply is not None
            and msg.turn_id in (None, self.reply.turn_id)
        ):
            self.reply.report_playback(msg.ms)

    def error(self, code: str, message: str, turn_id: int | None = None) -> None:
        log.warning("client error %s: %s", code, message, extra={"session_id": self.session_id})
        self.services.metrics.error(code)
        self.outbox.control(self._event("error", turn_id, code=code, message=message))

    # -- start / stop ---------------------------------------------------------------------

    async def _start(self, msg: p.Start) -> None:
        svc = self.services
        if self.started:
            await self._stop(acknowledge=False)
        if self.state is None or (msg.session_id and msg.session_id != self.session_id):
            self.state = self._resume_or_create(msg.session_id)
        if msg.persona is not None:
            self.state.persona = msg.persona
        if msg.voice is not None:
            self._set_voice(msg.voice)
        self.turn_counter = max((t.turn_id for t in self.state.history.turns), default=0)
        self._not_started_reported = False
        self.listener.start(msg.sample_rate)
        self._spawn(self.listener.run(self._on_heard), "vad")
        self.outbox.control(
            self._event(
                "session",
                input=p.audio_format(msg.sample_rate),
                output=p.audio_format(svc.tts.sample_rate),
                resumed=bool(self.state.history.turns),
                turns=len(self.state.history.turns),
                options=self.options(),
            )
        )
        self._set_status("listening")

    def _resume_or_create(self, session_id: str | None) -> SessionState:
        store = self.services.store
        if session_id and not valid_session_id(session_id):
            self.error("bad_session_id", "session_id must be 1-128 of [A-Za-z0-9_.:-]")
            session_id = None
        state = store.get(session_id) if session_id else None
        if state is None:
            state = store.create(
                session_id or self._provisional_id,
                self.services.settings.session.max_history_turns,
            )
        return state

    def _configure(self, msg: p.Configure) -> None:
        assert self.state is not None
        if msg.persona is not None:
            self.state.persona = msg.persona or None  # "" goes back to the default prompt
        if msg.voice is not None:
            self._set_voice(msg.voice)
        if msg.end_of_turn_silence_s is not None:
            self.end_of_turn_silence_s = msg.end_of_turn_silence_s
            self.listener.detector.config.end_of_turn_silence_s = msg.end_of_turn_silence_s
        if msg.barge_in is not None:
            self.barge_in = msg.barge_in
        self.outbox.control(self._event("configured", **self.options()))

    def options(self) -> dict[str, Any]:
        """The live session's adjustable settings, as `configured` reports them."""
        assert self.state is not None
        return {
            "persona": self.state.persona or self.services.settings.llm.system_prompt,
            "voice": self.state.voice or "default",
            "end_of_turn_silence_s": self.end_of_turn_silence_s,
            "barge_in": self.barge_in,
        }

    def _set_voice(self, voice: str) -> None:
        assert self.state is not None
        tts = self.services.tts
        known = {"default", tts.name, getattr(tts, "voice_name", "default")}
        if voice in known:
            self.state.voice = voice
        else:
            choices = ", ".join(sorted(known))
            self.error("unknown_voice", f"unknown voice {voice!r}; available: {choices}")

    async def _stop(self, acknowledge: bool = True) -> None:
        await self._interrupt("stop")
        await self._drop_speculation()
        await self.listener.drop_utterance()
        self.listener.stop()
        if acknowledge:
            self.outbox.control(self._event("stop_acknowledged"))
            self._set_status("idle")

    async def close(self) -> None:
        """The connection is gone: cancel everything, leave no task behind."""
        self.services.live_sessions.discard(self)
        self.outbox.close()
        if self.state is not None:
            self.state.last_seen = self.clock.now()
        try:
            if self.reply is not None:
                await self.reply.close()
                self.reply = None
            await self._drop_speculation()
            await self.listener.drop_utterance()
        finally:
            self.listener.stop()
            tasks = [t for t in self._tasks if not t.done()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    # -- audio → VAD → turns → STT --------------------------------------------------------

    def feed_audio(self, samples: np.ndarray) -> None:
        """Client audio (float32 at the client's rate), after the protocol checks."""
        self.listener.feed(samples)

    async def _on_heard(self, heard: Heard, utt: Utterance | None) -> None:
        if heard is Heard.SPEECH:
            reply = self.reply
            if (
                reply is not None
                and not reply.done
                and self.barge_in
                and self.listener.speech_s >= self.services.settings.turns.barge_in_min_speech_s
            ):
                await self._interrupt("barge_in")
        elif heard is Heard.STARTED:
            if self.reply is not None and not self.barge_in:
                return  # the agent has the floor; speech is ignored until it finishes
            if self.listener.utterance is None:
                self.turn_counter += 1
                self.listener.open_utterance(self.turn_counter, stream=not self.sequential)
        elif heard is Heard.PAUSED and utt is not None:
            await self._speculate(utt)
        elif heard is Heard.RESUMED:
            self._wait_normally()
            await self._drop_speculation()
        elif heard is Heard.ENDED and utt is not None:
            self._wait_normally()
            self._spawn(self._finish_utterance(utt), "turn-end")

    def _wait_normally(self) -> None:
        """Undo a longer wait for an unfinished-sounding pause."""
        self.listener.detector.config.end_of_turn_silence_s = self.end_of_turn_silence_s

    def _on_agent_audio(self, pcm: np.ndarray, rate: int, start: float) -> None:
        """What the client is about to play is the echo reference for the microphone."""
        if self.listener.echo is None:
            return
        if self._echo_resampler is None or self._echo_resampler.from_rate != rate:
            self._echo_resampler = StreamResampler(rate, 16000)
        samples = self._echo_resampler.push(pcm.astype(np.float32) / 32768.0)
        self.listener.echo.add_reference(samples, start)

    async def _speculate(self, utt: Utterance) -> None:
        """The user paused: transcribe and start answering now, holding the answer back
        until the pause turns out to be the end of the turn."""
        if self.sequential or self.services.settings.turns.speculative_silence_s <= 0:
            return
        await self._drop_speculation()
        spec = Speculation(utt, HeldOutbox(self.outbox))
        spec.task = self._spawn(self._run_speculation(spec, utt.samples()), "speculation")
        self._spec = spec

    async def _run_speculation(self, spec: Speculation, audio: np.ndarray) -> None:
        spec.transcript = await transcribe_all(self.services.stt, audio)
        spec.transcript_at = self.clock.now()
        text = spec.transcript.text.strip()
        turns = self.services.settings.turns
        unfinished = sounds_unfinished(text)
        # "a table for..." is a pause, not the end: wait longer (and answer later); a
        # complete question may end sooner.
        self.listener.detector.config.end_of_turn_silence_s = end_of_turn_silence(
            text,
            normal=self.end_of_turn_silence_s,
            unfinished=turns.unfinished_silence_s,
            question=turns.question_silence_s,
        )
        log.debug(
            "speculative transcript",
            extra={
                "session_id": self.session_id,
                "turn_id": spec.utterance.turn_id,
                "text": text,
                "audio_s": round(len(audio) / 16000, 3),
                "unfinished": unfinished,
            },
        )
        if text and not unfinished:
            spec.reply = self._make_reply(
                spec.utterance.turn_id,
                text,
                spec.utterance.speech_end_at,
                TurnMetrics(self.session_id, spec.utterance.turn_id),
                outbox=spec.outbox,
                gate=spec.gate,
            )
            spec.reply.start()

    async def _drop_speculation(self) -> None:
        spec, self._spec = self._spec, None
        if spec is not None:
            await spec.discard()

    async def _finish_utterance(self, utt: Utterance) -> None:
        metrics = TurnMetrics(self.session_id, utt.turn_id)
        ended_at = utt.ended_at or self.clock.now()
        if utt.speech_end_at is not None:
            metrics.vad_end_of_turn_ms = (ended_at - utt.speech_end_at) * 1000
        spec = self._spec if self._spec is not None and self._spec.utterance is utt else None
        if spec is not None:
            self._spec = None
            if await self._adopt(spec, utt, metrics, ended_at):
                return
        if utt.stt_task is not None:
            final = await utt.stt_task
        else:  # sequential: the whole utterance at once
            final = await self._transcribe_safely(utt)
        metrics.stt_final_ms = (self.clock.now() - ended_at) * 1000
        text = final.text.strip() if final else ""
        self.outbox.data(self._event("final_transcript", utt.turn_id, text=text))
        if not text:
            return  # noise or an empty utterance: nothing to answer
        await self._interrupt("new_turn")
        self._start_reply(utt.turn_id, text, utt.speech_end_at, metrics=metrics)

    async def _adopt(
        self, spec: Speculation, utt: Utterance, metrics: TurnMetrics, ended_at: float
    ) -> bool:
        """The pause was the end of the turn: release the speculative reply, if it is sound."""
        try:
            await spec.task
        except Exception:  # fall back to the ordinary path
            await spec.discard()
            return False
        if utt.stt_task is not None:  # the streaming transcript is not needed any more
            utt.stt_task.cancel()
        text = spec.transcript.text.strip() if spec.transcript else ""
        ready_at = spec.transcript_at or self.clock.now()
        metrics.stt_final_ms = max(0.0, ready_at - ended_at) * 1000
        self.outbox.data(self._event("final_transcript", utt.turn_id, text=text))
        if spec.reply is None:  # nothing heard, or it sounded unfinished: answer it now
            await spec.discard()
            if text:
                await self._interrupt("new_turn")
                self._start_reply(utt.turn_id, text, utt.speech_end_at, metrics=metrics)
            return True
        await self._interrupt("new_turn")
        reply = spec.reply
        reply.metrics.vad_end_of_turn_ms = metrics.vad_end_of_turn_ms
        reply.metrics.stt_final_ms = metrics.stt_final_ms
        reply.speculative = False
        self.reply = reply
        spec.release()
        if reply.done:  # it finished while held (no audio at all)
            self._reply_done(reply)
        return True

    async def _transcribe_safely(self, utt: Utterance) -> Transcript | None:
        try:
            return await transcribe_all(self.services.stt, utt.samples())
        except Exception as exc:
            self.error("stt_failed", f"speech recognition failed: {exc}", utt.turn_id)
            return None

    # -- replies --------------------------------------------------------------------------

    def _start_reply(
        self,
        turn_id: int,
        text: str,
        speech_end_at: float | None,
        *,
        metrics: TurnMetrics | None = None,
        source: str = "voice",
    ) -> None:
        metrics = metrics or TurnMetrics(self.session_id, turn_id)
        metrics.source = source
        self.reply = self._make_reply(turn_id, text, speech_end_at, metrics)
        self.reply.start()

    def _make_reply(
        self,
        turn_id: int,
        text: str,
        speech_end_at: float | None,
        metrics: TurnMetrics,
        *,
        outbox: Outbox | HeldOutbox | None = None,
        gate: asyncio.Event | None = None,
    ) -> Reply:
        assert self.state is not None
        settings = self.services.settings
        config = ReplyConfig(
            system_prompt=self.state.persona or settings.llm.system_prompt,
            output_sample_rate=self.services.tts.sample_rate,
            lead_s=settings.session.output_lead_s,
            synth_ahead=settings.session.synth_ahead,
            early_first_clause=settings.session.early_first_clause and not self.sequential,
            sequential=self.sequential,
        )
        return Reply(
            session_id=self.session_id,
            turn_id=turn_id,
            user_text=text,
            llm=self.services.llm,
            tts=self.services.tts,
            outbox=outbox or self.outbox,
            clock=self.clock,
            history=self.state.history,
            config=config,
            metrics=metrics,
            speech_end_at=speech_end_at,
            on_done=self._reply_done,
            on_error=self.error,
            gate=gate,
            speculative=gate is not None,
            on_audio=self._on_agent_audio,
        )

    def _reply_done(self, reply: Reply) -> None:
        if reply.speculative:
            return  # not adopted (yet): it never happened as far as anyone can tell
        self.services.metrics.record_turn(reply.metrics)
        figures = reply.metrics.as_dict()
        del figures["session_id"], figures["turn_id"]
        self.outbox.data(self._event("metrics", reply.turn_id, **figures))
        if self.reply is reply:
            self.reply = None
            self._set_status("listening" if self.started else "idle")

    async def _interrupt(self, reason: str) -> None:
        reply, self.reply = self.reply, None
        if reply is not None and not reply.done:
            await reply.interrupt(reason)
            self._set_status("listening" if self.started else "idle")

    # -- helpers --------------------------------------------------------------------------

    def _event(self, type_: str, turn_id: int | None = None, **fields: Any) -> dict[str, Any]:
        return p.event(type_, self.session_id, turn_id, **fields)

    def _set_status(self, status: str) -> None:
        self.outbox.control(self._event("status", status=status))

    def _spawn(self, coro, name: str) -> asyncio.Task:
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
