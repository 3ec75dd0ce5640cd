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

from voxloop.audio import StreamResampler, pcm16_to_float
from voxloop.conversation import Canned, Conversation
from voxloop.listener import Heard, Listener, Utterance
from voxloop.metrics import TurnMetrics
from voxloop.outbox import HeldOutbox, Outbox
from voxloop.pipeline import Reply
from voxloop.providers.base import LLMProvider
from voxloop.reply_config import ReplyConfig
from voxloop.services import Services
from voxloop.stalls import stall_limit
from voxloop.store.base import ID_RULE, new_session_id, valid_session_id
from voxloop.store.memory import MemoryStore
from voxloop.transcripts import Transcripts
from voxloop.transport import protocol as p
from voxloop.turns.continuation import KEEP_AUDIO_S, Carried, continues
from voxloop.turns.detector import TurnConfig
from voxloop.turns.echo import EchoGate
from voxloop.turns.endpoint import REJUDGE_AFTER_S, Endpointing, PauseEvidence
from voxloop.turns.overlap import Overlaps
from voxloop.turns.speculation import Speculator

log = logging.getLogger("voxloop.session")


class Session:
    def __init__(self, services: Services) -> None:
        self.services = services
        self.clock = services.clock
        self.outbox = Outbox()
        self.state: Conversation | None = None
        self.turn_counter = 0
        self.reply: Reply | None = None
        self.overlaps = Overlaps(self)  # speech over the agent: pause, judge, go on or stop
        self.speculator = Speculator(self)  # replies started at a pause, held back
        self.transcripts = Transcripts(self)  # the end of a turn → its words, in time
        self._tasks: set[asyncio.Task] = set()
        self._not_started_reported = False
        self._greeted = False
        turns = services.settings.turns
        self.sequential = services.settings.session.mode == "sequential"
        policy = self._endpointing()
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
        self._echo_resampler: StreamResampler | None = None
        self.barge_in = turns.barge_in
        # A transport that reports the VAD itself (the OpenAI Realtime API's speech_started
        # and speech_stopped) hears what the session heard, once the session has acted on it.
        self.on_heard: Callable[[Heard, Utterance | None], None] | None = None
        self.end_of_turn_silence_s = turns.end_of_turn_silence_s
        self._answering: tuple[Carried, float] | None = None  # the voice turn being answered
        # What the current pause's judge and words say, and the wait they ask for.
        self.endpoint = PauseEvidence(policy, self._set_silence, turns.speculative_silence_s)
        self._provisional_id = new_session_id()  # until 'start' names or creates one
        self.output_rate = services.tts.sample_rate  # the client may ask for another
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
            self.outbox.control(self.event("pong", t=msg.t))
        elif self.state is None:
            self.error("not_started", f"{msg.type!r} before 'start'; send a start message first")
        elif isinstance(msg, p.Stop):
            await self._stop()
        elif isinstance(msg, p.Reset):
            await self.interrupt("reset")
            await self.speculator.drop()
            await self.listener.drop_utterance()
            self.state.reset()
            self._set_status("listening" if self.started else "idle")
        elif isinstance(msg, p.Interrupt):
            await self.interrupt("interrupt")
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
            await self.interrupt("text")
            self.turn_counter += 1
            turn_id = self.turn_counter
            await self.refresh_context()
            self.start_reply(turn_id, msg.content, None, source="text")
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
        if self.started:
            await self._stop(acknowledge=False)
        if self.state is None or (msg.session_id and msg.session_id != self.session_id):
            if self.state is not None:
                await self.state.close()
            self.state, resumed = await self._open(msg.session_id, msg.user_id)
        else:
            resumed = bool(self.state.history.turns)
        if msg.persona is not None:
            self.state.set_persona(msg.persona)
        if msg.voice is not None:
            self._set_voice(msg.voice)
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
        self._set_status("listening")
        greeting = self.state.persona.greeting
        if greeting and not resumed and not self.state.history.turns and not self._greeted:
            self._greeted = True
            self.turn_counter += 1
            self.start_reply(self.turn_counter, "", None, source="greeting", llm=Canned(greeting))

    async def _open(self, session_id: str | None, user_id: str | None) -> tuple[Conversation, bool]:
        """Resume the named session from the store, or start one."""
        if session_id and not valid_session_id(session_id):
            self.error("bad_session_id", f"session_id must be {ID_RULE}")
            session_id = None
        if user_id and not valid_session_id(user_id):
            self.error("bad_user_id", f"user_id must be {ID_RULE}")
            user_id = None
        sid = session_id or self._provisional_id
        settings = self.services.settings
        try:
            return await Conversation.open(
                self.services.store, settings, sid, self.error, user_id=user_id
            )
        except Exception as exc:  # the store is down: talk anyway, say it is not saved
            log.exception("cannot open the session in the store")
            self.error("store_unavailable", f"conversation not saved: {exc}")
            return await Conversation.open(MemoryStore(), settings, sid, self.error)

    def _configure(self, msg: p.Configure) -> None:
        assert self.state is not None
        if msg.persona is not None:
            self.state.set_persona(msg.persona)  # "" goes back to the default persona
        if msg.voice is not None:
            self._set_voice(msg.voice)
        if msg.end_of_turn_silence_s is not None:
            self.end_of_turn_silence_s = msg.end_of_turn_silence_s
            self.endpoint.policy = self._endpointing(msg.end_of_turn_silence_s)
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
        await self.interrupt("stop")
        await self.speculator.drop()
        await self.listener.drop_utterance()
        self.listener.stop()
        if acknowledge:
            self.outbox.control(self.event("stop_acknowledged"))
            self._set_status("idle")

    async def close(self) -> None:
        """The connection is gone: cancel everything, leave no task behind."""
        self.outbox.close()
        try:
            if self.reply is not None:
                await self.reply.close()
                self.reply = None
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
            finally:
                self.services.live_sessions.discard(self)  # only now is it really gone

    # -- audio → VAD → turns → STT --------------------------------------------------------

    def feed_audio(self, samples: np.ndarray) -> None:
        """Client audio (float32 at the client's rate), after the protocol checks."""
        self.listener.feed(samples)

    async def _on_heard(self, heard: Heard, utt: Utterance | None) -> None:
        if heard is Heard.SPEECH:
            await self.overlaps.speech(utt)
        elif heard is Heard.STARTED:
            if self.state is not None:
                self.state.cancel_summary()  # the LLM is needed for an answer now
            if self.reply is not None and not self.barge_in:
                return  # the agent has the floor; speech is ignored until it finishes
            if self.listener.utterance is None:
                self.turn_counter += 1
                opened = self.listener.open_utterance(self.turn_counter, stream=not self.sequential)
                await self._continue_into(opened)
        elif heard is Heard.PAUSED and utt is not None and utt.overlap in ("", "interrupt"):
            speech_s = utt.carried_speech_s() + self.listener.detector.current_speech_s
            pause = self.endpoint.paused(speech_s)
            if self.endpoint.policy.uses_judge:
                self.spawn(self._judge_pause(utt, pause), "end-of-turn")
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

    def _endpointing(self, silence_s: float | None = None) -> Endpointing:
        """The end-of-turn policy; the sequential baseline and a session without a judge
        fall back to a fixed silence and to the word rules."""
        turns = self.services.settings.turns
        mode = turns.end_of_turn
        if self.sequential:
            mode = "silence"
        elif mode in ("judge", "combined") and self.services.turn_judge is None:
            mode = "words"
        return Endpointing.from_settings(turns, silence_s=silence_s, mode=mode)

    async def _judge_pause(self, utt: Utterance, pause: int) -> None:
        """The learned end-of-turn judge on the utterance so far, its pause included; if it
        is unsure, once more after `REJUDGE_AFTER_S` more silence."""
        judge, endpoint = self.services.turn_judge, self.endpoint
        assert judge is not None
        for look in (1, 2):
            started = self.clock.now()
            try:
                probability = await judge.complete_probability(utt.context_samples())
            except Exception as exc:  # the fallback silence still ends the turn
                log.warning("end-of-turn judge failed: %r", exc, extra=self._extra(utt))
                return
            ms = round((self.clock.now() - started) * 1000, 1)
            extra = {**self._extra(utt), "probability": round(probability, 3), "ms": ms}
            log.debug("end-of-turn judge (look %d)", look, extra=extra)
            endpoint.judged(pause, probability)
            if probability >= endpoint.policy.complete_p or look == 2:
                return
            await self.clock.sleep(REJUDGE_AFTER_S)
            if not endpoint.current(pause):
                return  # the user went on, or the turn is over

    def _extra(self, utt: Utterance) -> dict[str, Any]:
        return {"session_id": self.session_id, "turn_id": utt.turn_id}

    def _on_agent_audio(self, pcm: np.ndarray, rate: int, start: float) -> None:
        """What the client is about to play is the echo reference for the microphone."""
        if self._echo_resampler is None or self._echo_resampler.from_rate != rate:
            self._echo_resampler = StreamResampler(rate, 16000)
        samples = self._echo_resampler.push(pcm.astype(np.float32) / 32768.0)
        self.echo_reference.add_reference(samples, start)

    async def _finish_utterance(self, utt: Utterance) -> None:
        metrics = TurnMetrics(self.session_id, utt.turn_id)
        ended_at = utt.ended_at or self.clock.now()
        if utt.speech_end_at is not None:
            metrics.vad_end_of_turn_ms = (ended_at - utt.speech_end_at) * 1000
        text = await self.transcripts.final_text(utt, metrics, ended_at)
        if await self._went_on(utt, text, ended_at):
            return  # the user is already talking again: this turn continues in that one
        if text is None:
            return  # the speculative reply took the turn, or the STT failed (reported)
        if not await self.overlaps.is_turn(utt, text):
            return  # a backchannel or the agent's echo: no answer of its own
        text = utt.joined(text)
        self.outbox.data(self.event("final_transcript", utt.turn_id, text=text))
        if not text:
            return  # noise or an empty utterance: nothing to answer
        await self.interrupt("new_turn")
        await self.refresh_context()
        self.start_reply(utt.turn_id, text, utt.speech_end_at, metrics=metrics)

    # -- continuation (turns/continuation.py) ---------------------------------------------

    @staticmethod
    def _carried(utt: Utterance, words: str) -> Carried:
        """`words`: the turn's whole text, any it carried itself included."""
        audio = utt.context_samples()[-int(KEEP_AUDIO_S * 16000) :]
        return Carried(utt.turn_id, words, audio, utt.carried_speech_s() + utt.speech_s)

    def _continues(self, ended_at: float) -> bool:
        turns = self.services.settings.turns
        reply = self.reply
        return continues(
            enabled=turns.continuation and not self.sequential,
            reply_audible=reply is not None and reply.audio_started,
            voice_turn=True,
            since_end_s=self.clock.now() - ended_at,
            window_s=turns.continuation_window_s,
        )

    async def _withdraw(self, turn_id: int, into: Utterance, carried: Carried) -> None:
        """Take back turn `turn_id`'s unheard reply; its words go on in `into`."""
        into.carried = carried  # first: its partials may come while the reply is cancelled
        reply = self.reply
        if reply is not None and reply.turn_id == turn_id:
            self.reply = None
            await reply.close()  # no history, no metrics: nobody heard it
            dropped = self.outbox.drop_turn(turn_id)
            if dropped:
                self.outbox.control(
                    self.event("tts_stop", turn_id, reason="continued", dropped_bytes=dropped)
                )
            self._set_status("listening")
        self._answering = None
        self.outbox.data(self.event("turn_continued", turn_id, into=into.turn_id))

    async def _continue_into(self, utt: Utterance) -> None:
        """New speech before the last turn's reply was heard: it continues that turn."""
        if self._answering is None:
            return
        carried, ended_at = self._answering
        reply = self.reply
        if reply is None or reply.done or reply.turn_id != carried.turn_id:
            self._answering = None  # answered (or superseded) already
            return
        if self._continues(ended_at):
            await self._withdraw(carried.turn_id, utt, carried)

    async def _went_on(self, utt: Utterance, text: str | None, ended_at: float) -> bool:
        """The turn's words are known; has the user gone on meanwhile? Then they belong to
        the utterance under way (and any reply already started for them is withdrawn).
        Otherwise they are remembered, in case the user goes on before the reply is heard."""
        reply = self.reply
        adopted = reply.user_text if reply and reply.turn_id == utt.turn_id else None
        words = utt.joined(text) if text is not None else adopted  # None: the STT failed
        if not words or utt.overlap in ("pending", "dismissed"):
            return False
        carried = self._carried(utt, words)
        newer = self.listener.utterance
        if newer is None or newer is utt or newer.carried is not None:
            self._answering = (carried, ended_at)
            return False
        if not self._continues(ended_at):
            return False
        await self._withdraw(utt.turn_id, newer, carried)
        return True

    # -- replies --------------------------------------------------------------------------

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
        metrics = metrics or TurnMetrics(self.session_id, turn_id)
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
        assert self.state is not None
        self.state.cancel_summary()  # the answer comes first
        settings = self.services.settings
        s_llm, s_tts = settings.llm, settings.tts
        config = ReplyConfig(
            system_prompt=self.state.system_prompt(),
            output_sample_rate=self.output_rate,
            lead_s=settings.session.output_lead_s,
            synth_ahead=settings.session.synth_ahead,
            early_first_clause=settings.session.early_first_clause and not self.sequential,
            sequential=self.sequential,
            apology=settings.session.apology or None,
            llm_timeout_s=stall_limit(llm or self.services.llm, s_llm.timeout_s, s_llm.retries),
            tts_timeout_s=stall_limit(self.services.tts, s_tts.timeout_s, s_tts.retries),
            filler=settings.tools.filler or None,
            filler_after_s=settings.tools.filler_after_s,
            max_tokens=settings.llm.max_tokens,  # the cap on a reply's length, for every LLM
            guards=settings.reply.guards(),
            safety=settings.safety.policy(),
        )
        return Reply(
            session_id=self.session_id,
            turn_id=turn_id,
            user_text=text,
            llm=llm or self.services.llm,
            tts=self.services.tts,
            outbox=outbox or self.outbox,
            clock=self.clock,
            history=self.state.history,
            config=config,
            metrics=metrics,
            speech_end_at=speech_end_at,
            on_done=self.reply_done,
            on_error=self.error,
            gate=gate,
            speculative=gate is not None,
            on_audio=self._on_agent_audio,
            tools=self.services.tools,
        )

    def reply_done(self, reply: Reply) -> None:
        if reply.speculative:
            return  # not adopted (yet): it never happened as far as anyone can tell
        self.overlaps.last_reply = reply
        self.services.metrics.record_turn(reply.metrics)
        figures = reply.metrics.as_dict()
        del figures["session_id"], figures["turn_id"]
        event = self.event("metrics", reply.turn_id, **figures)
        if self.state is not None and reply.record is not None:
            # `metrics` closes the turn for the client: send it once the turn is stored.
            self.state.turn_done(reply.record, then=lambda: self.outbox.data(event))
            self.state.summarize_later(self.services.llm)
        else:
            self.outbox.data(event)
        if self.reply is reply:
            self.reply = None
            self._set_status("listening" if self.started else "idle")

    def forget(self) -> None:
        """The stored conversation was deleted (REST): forget it here too, start afresh."""
        if self.state is not None:
            self.state.reset()

    async def refresh_context(self) -> None:
        """Another worker may have changed this session's context (PUT .../context)."""
        if self.services.shared_store and self.state is not None:
            await self.state.refresh()

    def apply_context(
        self, *, instructions: str | None, facts: list[str] | None, persona: str | None
    ) -> None:
        """New live context from the REST API: the next LLM call uses it."""
        if self.state is not None:
            self.state.set_context(instructions=instructions, facts=facts, persona=persona)
            self.outbox.data(self.event("context_updated", **self.state.context()))

    async def interrupt(self, reason: str) -> None:
        reply, self.reply = self.reply, None
        self.overlaps.last_reply = reply or self.overlaps.last_reply
        if reply is not None and not reply.done:
            await reply.interrupt(reason)
            self._set_status("listening" if self.started else "idle")

    # -- helpers --------------------------------------------------------------------------

    def event(self, type_: str, turn_id: int | None = None, **fields: Any) -> dict[str, Any]:
        return p.event(type_, self.session_id, turn_id, **fields)

    def _set_status(self, status: str) -> None:
        self.outbox.control(self.event("status", status=status))

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
