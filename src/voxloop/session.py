"""A conversation session: the per-connection state machine between a transport and the models.

Audio in → resample to 16 kHz → VAD → turn detection → streaming STT (partials) → at end of
turn, the final transcript starts a `Reply` (LLM → sentences → TTS → audio out). Speech
while a reply is active interrupts it (barge-in). Everything the session says goes through
its `Outbox`; transports only move bytes. Sessions share the loaded models (`Services`) and
nothing else.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from voxloop.audio import StreamResampler, pcm16_to_float
from voxloop.clock import Clock, RealClock
from voxloop.config import Settings
from voxloop.metrics import MetricsRegistry, TurnMetrics
from voxloop.outbox import Outbox
from voxloop.pipeline import Reply, ReplyConfig
from voxloop.providers.base import LLMProvider, STTProvider, Transcript, TTSProvider, VADProvider
from voxloop.providers.registry import ProviderPool
from voxloop.store.memory import MemoryStore, SessionState, new_session_id, valid_session_id
from voxloop.transport import protocol as p
from voxloop.turns import TurnConfig, TurnDetector, TurnEvent, TurnEventKind

log = logging.getLogger("voxloop.session")

MODEL_RATE = 16000


@dataclass
class Services:
    """What all sessions of a process share: the models, settings, clock, metrics, store."""

    settings: Settings
    vad: VADProvider
    stt: STTProvider
    llm: LLMProvider
    tts: TTSProvider
    clock: Clock = field(default_factory=RealClock)
    metrics: MetricsRegistry = field(default_factory=MetricsRegistry)
    store: MemoryStore = field(default_factory=MemoryStore)
    live_sessions: set[Session] = field(default_factory=set)
    pool: ProviderPool | None = None  # the owner of the providers, closed on shutdown


class _AudioQueue:
    """An async iterator over audio chunks that a producer feeds and closes."""

    def __init__(self) -> None:
        self._q: asyncio.Queue[np.ndarray | None] = asyncio.Queue()

    def put(self, chunk: np.ndarray) -> None:
        self._q.put_nowait(chunk)

    def close(self) -> None:
        self._q.put_nowait(None)

    async def __aiter__(self) -> AsyncIterator[np.ndarray]:
        while (chunk := await self._q.get()) is not None:
            yield chunk


@dataclass
class _Utterance:
    """The user's current utterance: its turn id, STT stream and when speech ended."""

    turn_id: int
    audio: _AudioQueue
    stt_task: asyncio.Task[Transcript | None]
    speech_end_at: float | None = None


class Session:
    def __init__(self, services: Services) -> None:
        self.services = services
        self.clock = services.clock
        self.outbox = Outbox()
        self.state: SessionState | None = None
        self.turn_counter = 0
        self.reply: Reply | None = None
        self._utterance: _Utterance | None = None
        self._tasks: set[asyncio.Task] = set()
        self._vad_audio: _AudioQueue | None = None
        self._resampler: StreamResampler | None = None
        self._samples_in = 0  # 16 kHz samples received since start
        self._recent: deque[np.ndarray] = deque()  # audio kept for the pre-roll
        self._recent_samples = 0
        self._arrivals: deque[tuple[int, float]] = deque()  # (sample index, clock time)
        self._not_started_reported = False
        turns = services.settings.turns
        self.detector = TurnDetector(
            TurnConfig(
                end_of_turn_silence_s=turns.end_of_turn_silence_s, min_speech_s=turns.min_speech_s
            )
        )
        self.barge_in = turns.barge_in
        self._provisional_id = new_session_id()  # until 'start' names or creates one
        services.live_sessions.add(self)

    @property
    def session_id(self) -> str:
        return self.state.session_id if self.state else self._provisional_id

    @property
    def started(self) -> bool:
        return self._vad_audio is not None

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
            await self._drop_utterance()
            self.state.history.clear()
            self.detector.reset()
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
        self.detector.reset()
        self._resampler = StreamResampler(msg.sample_rate, MODEL_RATE)
        self._samples_in = 0
        self._recent.clear()
        self._recent_samples = 0
        self._arrivals.clear()
        self._not_started_reported = False
        self._vad_audio = _AudioQueue()
        self._spawn(self._run_vad(self._vad_audio), "vad")
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
            self.detector.config.end_of_turn_silence_s = msg.end_of_turn_silence_s
        if msg.barge_in is not None:
            self.barge_in = msg.barge_in
        self.outbox.control(self._event("configured", **self.options()))

    def options(self) -> dict[str, Any]:
        """The live session's adjustable settings, as `configured` reports them."""
        assert self.state is not None
        return {
            "persona": self.state.persona or self.services.settings.llm.system_prompt,
            "voice": self.state.voice or "default",
            "end_of_turn_silence_s": self.detector.config.end_of_turn_silence_s,
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
        await self._drop_utterance()
        if self._vad_audio is not None:
            self._vad_audio.close()
            self._vad_audio = None
        if acknowledge:
            self.outbox.control(self._event("stop_acknowledged"))
            self._set_status("idle")

    async def close(self) -> None:
        """The connection is gone: cancel everything, leave no task behind."""
        if self.reply is not None:
            await self.reply.close()
            self.reply = None
        tasks = [t for t in self._tasks if not t.done()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._utterance = None
        self._vad_audio = None
        self.outbox.close()
        self.services.live_sessions.discard(self)
        if self.state is not None:
            self.state.last_seen = self.clock.now()

    # -- audio → VAD → turns → STT --------------------------------------------------------

    def feed_audio(self, samples: np.ndarray) -> None:
        """Queue client audio (float32 at the client's rate) for VAD and, if open, STT."""
        if self._vad_audio is None or self._resampler is None:
            return
        audio = self._resampler.push(samples)
        if not len(audio):
            return
        self._samples_in += len(audio)
        self._arrivals.append((self._samples_in, self.clock.now()))
        while len(self._arrivals) > 500:
            self._arrivals.popleft()
        self._recent.append(audio)
        self._recent_samples += len(audio)
        keep = int(self.services.settings.turns.preroll_s * MODEL_RATE) + MODEL_RATE
        while self._recent and self._recent_samples - len(self._recent[0]) >= keep:
            self._recent_samples -= len(self._recent.popleft())
        self._vad_audio.put(audio)
        if self._utterance is not None:
            self._utterance.audio.put(audio)

    def _clock_at(self, audio_s: float) -> float:
        """When (on our clock) the audio at `audio_s` arrived."""
        sample = int(audio_s * MODEL_RATE)
        for index, at in self._arrivals:
            if index >= sample:
                return at
        return self.clock.now()

    async def _run_vad(self, audio: _AudioQueue) -> None:
        cfg = self.services.settings.turns
        async for frame in self.services.vad.detect(audio):
            event = self.detector.push(frame)
            reply = self.reply
            if (
                reply is not None
                and not reply.done
                and self.barge_in
                and self.detector.current_speech_s >= cfg.barge_in_min_speech_s
            ):
                await self._interrupt("barge_in")
                if self._utterance is None and self.detector.state != "silence":
                    self._open_utterance()
            if event is not None:
                await self._on_turn_event(event)

    async def _on_turn_event(self, event: TurnEvent) -> None:
        if event.kind is TurnEventKind.SPEECH_STARTED:
            if self.reply is not None and not self.barge_in:
                return  # the agent has the floor; speech is ignored until it finishes
            if self._utterance is None:
                self._open_utterance()
            return
        utt = self._utterance
        if utt is None:
            return
        self._utterance = None
        assert event.speech_end_s is not None
        utt.speech_end_at = self._clock_at(event.speech_end_s)
        utt.audio.close()
        self._spawn(self._finish_utterance(utt, self.clock.now()), "stt-final")

    def _open_utterance(self) -> None:
        self.turn_counter += 1
        audio = _AudioQueue()
        preroll = int(self.services.settings.turns.preroll_s * MODEL_RATE)
        start = max(0, int(self.detector.speech_start_s * MODEL_RATE) - preroll)
        recent = np.concatenate(list(self._recent)) if self._recent else np.zeros(0, np.float32)
        first_recent = self._samples_in - len(recent)
        audio.put(recent[max(0, start - first_recent) :])
        task = self._spawn(self._transcribe(self.turn_counter, audio), "stt")
        self._utterance = _Utterance(self.turn_counter, audio, task)

    async def _transcribe(self, turn_id: int, audio: _AudioQueue) -> Transcript | None:
        final: Transcript | None = None
        try:
            async for result in self.services.stt.transcribe(audio):
                if result.is_final:
                    final = result
                elif result.text:
                    self.outbox.data(self._event("partial_transcript", turn_id, text=result.text))
        except Exception as exc:  # the STT failed: say so, the session carries on listening
            log.exception("STT failed", extra={"session_id": self.session_id})
            self.error("stt_failed", f"speech recognition failed: {exc}", turn_id)
        return final

    async def _finish_utterance(self, utt: _Utterance, ended_at: float) -> None:
        metrics = TurnMetrics(self.session_id, utt.turn_id)
        if utt.speech_end_at is not None:
            metrics.vad_end_of_turn_ms = (ended_at - utt.speech_end_at) * 1000
        final = await utt.stt_task
        metrics.stt_final_ms = (self.clock.now() - ended_at) * 1000
        text = final.text.strip() if final else ""
        self.outbox.data(self._event("final_transcript", utt.turn_id, text=text))
        if not text:
            return  # noise or an empty utterance: nothing to answer
        await self._interrupt("new_turn")
        self._start_reply(utt.turn_id, text, utt.speech_end_at, metrics=metrics)

    async def _drop_utterance(self) -> None:
        utt, self._utterance = self._utterance, None
        if utt is not None:
            utt.stt_task.cancel()
            await asyncio.gather(utt.stt_task, return_exceptions=True)
        self.detector.reset()

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
        assert self.state is not None
        svc = self.services
        metrics = metrics or TurnMetrics(self.session_id, turn_id)
        metrics.source = source
        config = ReplyConfig(
            system_prompt=self.state.persona or svc.settings.llm.system_prompt,
            output_sample_rate=svc.tts.sample_rate,
            lead_s=svc.settings.session.output_lead_s,
            synth_ahead=svc.settings.session.synth_ahead,
            early_first_clause=svc.settings.session.early_first_clause,
        )
        self.reply = Reply(
            session_id=self.session_id,
            turn_id=turn_id,
            user_text=text,
            llm=svc.llm,
            tts=svc.tts,
            outbox=self.outbox,
            clock=self.clock,
            history=self.state.history,
            config=config,
            metrics=metrics,
            speech_end_at=speech_end_at,
            on_done=self._reply_done,
            on_error=self.error,
        )
        self.reply.start()

    def _reply_done(self, reply: Reply) -> None:
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
