"""One agent reply: LLM → sentence splitter → TTS → paced audio out, as a cancellable unit.

`Reply` is the handle the session holds while the agent thinks and speaks. It streams the
LLM, cuts sentences as soon as they are certain, synthesizes them concurrently (at most
`synth_ahead` at once) and plays them strictly in order. Audio is paced so the client holds
only `lead_s` of unplayed audio: that keeps barge-in cheap and lets the server know what
has been heard. `interrupt()` is the single cancellation path: cancel the tasks, drop the
queued audio, tell the client (`tts_stop`), and keep in history only what was heard.
`pause()` stops the audio just as fast but keeps everything else, so that `resume()` can
go on from the first unheard sample when the "interruption" was only a backchannel.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from voxloop.audio.resample import LOW_LATENCY, StreamResampler
from voxloop.clock import Clock
from voxloop.memory.history import History
from voxloop.protocol.messages import audio_format, event
from voxloop.protocol.outbox import HeldOutbox, Outbox
from voxloop.providers.base import (
    AudioChunk,
    LLMProvider,
    Message,
    ToolCall,
    TTSProvider,
)
from voxloop.providers.stalls import Queue, checked_audio, guarded
from voxloop.reply.config import ReplyConfig
from voxloop.reply.playlog import PlayLog
from voxloop.reply.sentences import heard_words
from voxloop.reply.speakable import speakable
from voxloop.reply.spoken import UNGUARDED, SpokenText, ask_again
from voxloop.reply.tools import ToolBox, ask
from voxloop.store.base import TurnRecord
from voxloop.telemetry.metrics import TurnMetrics, on_llm_queued, on_llm_serving

log = logging.getLogger("voxloop.reply.pipeline")

FRAME_S = 0.04  # audio is sent in 40 ms frames: fine enough to stop quickly
MAX_TOOL_ROUNDS = 3  # tool calls, results, ask again: at most this many times a reply

TEXT_EVENTS = frozenset({"llm_status", "llm_response", "tool_calls"})


@dataclass
class Reply:
    session_id: str
    turn_id: int
    user_text: str
    llm: LLMProvider
    tts: TTSProvider
    outbox: Outbox | HeldOutbox
    clock: Clock
    history: History
    config: ReplyConfig
    metrics: TurnMetrics
    speech_end_at: float | None = None  # clock time the user stopped talking
    on_done: Callable[[Reply], None] | None = None
    on_error: Callable[[str, str, int], None] | None = None  # (code, message, turn_id)
    gate: asyncio.Event | None = None  # a speculative reply plays no audio until it is set
    speculative: bool = False  # True until the session adopts it (then its turn counts)
    on_audio: Callable[[np.ndarray, int, float], None] | None = None  # (pcm, rate, play start)

    text: str = ""
    sentences: list[str] = field(default_factory=list)
    record: TurnRecord | None = None  # the turn as heard, once the reply is over
    tools: ToolBox | None = None  # offered to an LLM that can call tools
    interrupted: bool = False
    audio_started: bool = False
    _replay: deque[tuple[int, np.ndarray]] = field(default_factory=deque)  # unheard, paused
    _running: asyncio.Event = field(default_factory=asyncio.Event)  # cleared while paused
    _restart: bool = False  # send tts_start again before the next frame (after a resume)
    _task: asyncio.Task[None] | None = None
    _children: set[asyncio.Task] = field(default_factory=set)
    _finished: bool = False
    _llm_queue: Queue = field(default_factory=lambda: Queue(120.0))  # set per reply in _produce
    _hold_timer: Any = None  # the hold line, said if the LLM's queue keeps us waiting
    _held: bool = False  # the hold line was said

    # -- lifecycle ------------------------------------------------------------------------

    def __post_init__(self) -> None:
        self._running.set()
        self.metrics.timeline.speech_end = self.speech_end_at
        self.played = PlayLog(self.clock)  # what was sent, and what of it was heard

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"reply-{self.turn_id}")

    @property
    def done(self) -> bool:
        return self._finished

    async def wait(self) -> None:
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def interrupt(self, reason: str = "interrupt") -> str | None:
        """Stop at once. Returns the text the user heard, or None if already finished."""
        if self._finished:
            return None
        self._finished = True
        self.interrupted = True
        await self._cancel_tasks()  # 1. cancel LLM and TTS
        dropped = self.outbox.drop_turn(self.turn_id)  # 2. drop the audio still queued
        self.outbox.control(  # 3. tell the client to flush its playback
            event("tts_stop", self.session_id, self.turn_id, reason=reason, dropped_bytes=dropped)
        )
        heard = self.heard_text()
        self.outbox.data(
            event(
                "llm_response",
                self.session_id,
                self.turn_id,
                delta="",
                content=heard,
                is_complete=True,
                interrupted=True,
            )
        )
        self._finish(heard)
        return heard

    async def close(self) -> None:
        """Cancel without telling anyone: the connection is gone."""
        self._finished = True
        await self._cancel_tasks()

    @property
    def paused(self) -> bool:
        return not self._running.is_set()

    def pause(self) -> bool:
        """Stop the audio now (the client flushes) but keep generating; `resume()` replays
        from the first unheard sample. False if there is nothing playing to pause."""
        if self._finished or self.paused or not self.audio_started:
            return False
        self._running.clear()
        unheard = self.played.cut(self.config.output_sample_rate)
        self._replay.extendleft(reversed(unheard))
        # Only the audio goes: the reply may carry on, and its text events still count.
        dropped = self.outbox.drop_turn(self.turn_id, keep_events=TEXT_EVENTS)
        self.outbox.control(
            event("tts_stop", self.session_id, self.turn_id, reason="paused", dropped_bytes=dropped)
        )
        return True

    def resume(self) -> None:
        """Carry on speaking from where the pause cut in (a new `tts_start`, resumed)."""
        if self.paused and not self._finished:
            self._restart = True
            self._running.set()

    async def _cancel_tasks(self) -> None:
        self._cancel_hold()
        tasks = [t for t in (self._task, *self._children) if t is not None and not t.done()]
        current = asyncio.current_task()
        tasks = [t for t in tasks if t is not current]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def _cancel_hold(self) -> None:
        if self._hold_timer is not None:
            self._hold_timer.cancel()

    def _finish(self, assistant_text: str) -> None:
        self._cancel_hold()
        hold = self.config.hold_line
        if self._held and hold and assistant_text.startswith(hold):
            # The hold line was heard, but it is no answer: kept out of the history, where
            # the model would learn to say it (and the next turn's cached prefix would break).
            assistant_text = assistant_text[len(hold) :].lstrip()
        self.metrics.interrupted = self.interrupted
        self.metrics.reply_audio_s = self.played.total_s()
        self.record = TurnRecord(
            self.turn_id,
            self.user_text,
            assistant_text,
            self.interrupted,
            self.metrics.as_dict(),
        )
        self.history.add(self.record)
        if self.on_done is not None:
            self.on_done(self)

    def _error(self, code: str, message: str) -> None:
        if self.on_error is not None:
            self.on_error(code, message, self.turn_id)
        else:
            self.outbox.control(
                event("error", self.session_id, self.turn_id, code=code, message=message)
            )

    # -- playback position ----------------------------------------------------------------

    def report_playback(self, ms: float) -> None:
        self.played.report(ms)

    def heard_seconds(self) -> list[float]:
        """Seconds of each sentence the user has heard by now."""
        return self.played.heard_seconds(len(self.sentences), self.paused)

    def heard_text(self) -> str:
        durations = self.played.sent_seconds(len(self.sentences))
        for index, pcm in self._replay:
            durations[index] += len(pcm) / self.config.output_sample_rate
        return heard_words(self.sentences, self.heard_seconds(), durations)

    # -- the work -------------------------------------------------------------------------

    def _spawn(self, coro, name: str) -> asyncio.Task:
        task = asyncio.create_task(coro, name=f"{name}-{self.turn_id}")
        self._children.add(task)
        task.add_done_callback(self._children.discard)
        return task

    async def _run(self) -> None:
        try:
            await self._produce()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a provider failed: report it, keep the session alive
            log.exception("reply failed", extra={"session_id": self.session_id})
            if self._finished:
                return
            await self._cancel_tasks()
            self.outbox.drop_turn(self.turn_id)
            if self.audio_started:
                self.outbox.control(
                    event("tts_stop", self.session_id, self.turn_id, reason="error")
                )
            self._error("reply_failed", f"the reply failed: {type(exc).__name__}: {exc}")
            if not self.audio_started and self.config.apology:
                await self._apologize(self.config.apology)
            if self._finished:  # interrupted while apologizing
                return
            self._finished = True
            self._finish(self.heard_text())

    async def _apologize(self, text: str) -> None:
        """The turn failed before a word was said: say so briefly instead of going quiet.
        It plays like any sentence (and can be interrupted like one)."""
        try:
            index = len(self.sentences)
            self.sentences.append(text)
            self.metrics.timeline.sentence(self.clock.now())
            chunks: asyncio.Queue[AudioChunk | None] = asyncio.Queue()
            queue: asyncio.Queue = asyncio.Queue()
            queue.put_nowait((index, chunks))
            queue.put_nowait(None)
            await self._synthesize(index, text, chunks, asyncio.Semaphore(1))
            await self._play(queue)
            if self.audio_started:
                self.outbox.data(event("tts_end", self.session_id, self.turn_id))
                await self.clock.sleep(self.played.play_end - self.clock.now())
        except Exception:  # even the apology failed: the error event has said it all
            log.exception("apology failed", extra={"session_id": self.session_id})

    async def _produce(self) -> None:
        sid, tid = self.session_id, self.turn_id
        self.outbox.control(event("status", sid, tid, status="thinking"))
        self.outbox.data(event("llm_status", sid, tid, status="started"))
        queue: asyncio.Queue[tuple[int, asyncio.Queue[AudioChunk | None]] | None] = asyncio.Queue()
        player = self._spawn(self._play(queue), "player")
        slots = asyncio.Semaphore(self.config.synth_ahead)
        early = self.config.early_first_clause and not self.config.sequential
        spoken = SpokenText(self.user_text, self.config.guards, early_first_clause=early)
        held: list[str] = []  # sequential: the whole answer goes to the TTS at once

        def enqueue(sentence: str) -> None:
            spoken_text = speakable(sentence)
            if not spoken_text:
                return
            index = len(self.sentences)
            self.sentences.append(spoken_text)
            self.metrics.timeline.sentence(self.clock.now())
            chunks: asyncio.Queue[AudioChunk | None] = asyncio.Queue()
            self._spawn(self._synthesize(index, spoken_text, chunks, slots), "tts")
            queue.put_nowait((index, chunks))

        def say(sentences: list[str]) -> None:
            for sentence in sentences:
                held.append(sentence) if self.config.sequential else enqueue(sentence)

        messages = self.history.messages(self.config.system_prompt, self.user_text)
        asked = self.clock.now()
        self.metrics.timeline.mark("asked", asked)
        if self.gate is None:
            self.metrics.timeline.mark("released", asked)  # a gated one: when it opens
        # A shared LLM says when it keeps our request waiting and when it starts on it
        # (for this task only).
        self._llm_queue = Queue(self.config.llm_queue_timeout_s)
        on_llm_queued(lambda place: self._queued(place, enqueue))
        on_llm_serving(self._served)
        try:
            fixed = self.config.safety.reply_for(self.user_text) if self.config.safety else None
            if fixed is not None:  # configured text: said whole, whatever its length
                spoken = SpokenText(self.user_text, UNGUARDED)
            await self._answer(messages, spoken, say, asked, fixed)
            say(spoken.flush())
            if not spoken.sentences and spoken.parrots and fixed is None:
                # Everything it said was the user's own sentence: ask once more, plainly.
                log.info("reply parroted the user; asking again")
                spoken = SpokenText(self.user_text, self.config.guards)
                await self._answer(ask_again(messages), spoken, say, asked, None)
                say(spoken.flush())
                if not spoken.sentences and spoken.parrots and self.config.guards.no_answer:
                    say([self.config.guards.no_answer])
            if held:
                enqueue(" ".join(held))
        finally:
            queue.put_nowait(None)
        if spoken.stopped:
            log.info("reply ended early: %s", spoken.stopped, extra={"session_id": sid})
        self.outbox.data(event("llm_status", sid, tid, status="done"))
        await player
        rate = self.config.output_sample_rate
        while not self._finished:
            await self._replay_unheard(rate)
            if self.audio_started:
                self.outbox.data(event("tts_end", sid, tid))
            # All audio is sent, but the client is still playing its buffered lead. Until
            # that has played, the reply can still be interrupted (or paused and resumed).
            await self.clock.sleep(self.played.play_end - self.clock.now())
            if not self.paused and not self._replay:
                break
        if self._finished:
            return
        self._finished = True
        said = " ".join(self.sentences)  # what the voice said: guards may have cut the text
        self.outbox.data(event("llm_response", sid, tid, delta="", content=said, is_complete=True))
        self._finish(said)

    async def _answer(
        self,
        messages: list[Message],
        spoken: SpokenText,
        say: Callable[[list[str]], None],
        asked: float,
        fixed: str | None,
    ) -> None:
        """Stream the LLM (or the fixed reply) through `spoken` into `say`, with tool rounds;
        stop reading as soon as a guard ends the reply."""
        sid, tid = self.session_id, self.turn_id
        for _ in range(MAX_TOOL_ROUNDS + 1):
            calls: list[ToolCall] = []
            stream = _once(fixed) if fixed is not None else self._ask(messages)
            async for item in stream:
                if isinstance(item, ToolCall):
                    calls.append(item)
                    continue
                if not self.text:
                    self.metrics.llm_first_token_ms = (self.clock.now() - asked) * 1000
                    self.metrics.timeline.mark("first_text", self.clock.now())
                self.text += item
                self.outbox.data(event("llm_response", sid, tid, delta=item, is_complete=False))
                say(spoken.push(item))
                if spoken.stopped:
                    await stream.aclose()  # stops the decoding
                    return
            if not calls:
                return
            results = await self._run_tools(calls, lambda text: say([text]))
            messages = [
                *messages,
                Message("assistant", "", tool_calls=tuple(calls)),
                *(
                    Message("tool", r, tool_call_id=c.id)
                    for c, r in zip(calls, results, strict=True)
                ),
            ]

    def _queued(self, place: int, say: Callable[[str], None]) -> None:
        """The shared LLM keeps us waiting: tell the client where we are, and say a short
        hold line if the wait goes on with nothing said yet."""
        self._llm_queue.waiting = True
        sid, tid = self.session_id, self.turn_id
        self.outbox.control(event("status", sid, tid, status="queued", position=place))
        hold = self.config.hold_line
        if hold and self._hold_timer is None:

            def hold_line() -> None:
                if self._llm_queue.waiting and not self.sentences and not self._finished:
                    self._held = True
                    say(hold)

            self._hold_timer = self.clock.call_later(self.config.hold_after_s, hold_line)

    def _served(self) -> None:
        now = self.clock.now()
        self.metrics.timeline.served(now)
        self._llm_queue.served_at = now
        if self._llm_queue.waiting:
            self._llm_queue.waiting = False
            self._cancel_hold()
            status = "speaking" if self.audio_started else "thinking"
            self.outbox.control(event("status", self.session_id, self.turn_id, status=status))

    async def _ask(self, messages: list[Message]) -> AsyncIterator[str | ToolCall]:
        """The LLM's stream, offered the tools where both sides can do it; a hang or
        anything but text and tool calls is an error (time in a shared LLM's queue is
        neither)."""
        self.metrics.timeline.asking(self.clock.now())
        stream = ask(self.llm, messages, self.tools, max_tokens=self.config.max_tokens)
        name = f"LLM {self.llm.name}"
        limit = self.config.llm_timeout_s
        async for item in guarded(stream, self.clock, limit, name, "token", self._llm_queue):
            if not isinstance(item, str | ToolCall):
                raise TypeError(f"{name} gave a {type(item).__name__}, not text")
            yield item

    async def _run_tools(self, calls: list[ToolCall], say: Callable[[str], None]) -> list[str]:
        """Run the tools the LLM asked for; a short filler if they are slow (tools.py)."""
        assert self.tools is not None
        self.outbox.data(
            event("tool_calls", self.session_id, self.turn_id, calls=[c.name for c in calls])
        )
        filler = self.config.filler

        def slow() -> None:
            if filler and not self.sentences:  # only if nothing has been said yet
                say(filler)

        started = self.clock.now()
        try:
            return await self.tools.run_all(
                calls, clock=self.clock, slow_after_s=self.config.filler_after_s, on_slow=slow
            )
        finally:
            self.metrics.timeline.tool_runs.append((started, self.clock.now()))

    async def _synthesize(
        self,
        index: int,
        text: str,
        out: asyncio.Queue[AudioChunk | None],
        slots: asyncio.Semaphore,
    ) -> None:
        try:
            async with slots:
                started = self.clock.now()
                first = True
                held: list[AudioChunk] = []
                stream = guarded(
                    self.tts.synthesize(text),
                    self.clock,
                    self.config.tts_timeout_s,
                    f"TTS {self.tts.name}",
                    "audio chunk",
                )
                async for chunk in stream:
                    chunk = checked_audio(chunk)
                    if first and index == 0:
                        self.metrics.tts_first_audio_ms = (self.clock.now() - started) * 1000
                    first = False
                    if self.config.sequential:
                        held.append(chunk)  # the baseline plays nothing until all is ready
                    else:
                        out.put_nowait(chunk)
                for chunk in held:
                    out.put_nowait(chunk)
        except Exception as exc:  # skip the sentence, say why, keep speaking the rest
            log.exception("TTS failed", extra={"session_id": self.session_id})
            self._error("tts_failed", f"could not speak a sentence: {type(exc).__name__}: {exc}")
        finally:
            out.put_nowait(None)

    async def _play(self, queue: asyncio.Queue) -> None:
        rate = self.config.output_sample_rate
        resampler: StreamResampler | None = None
        frame = max(1, int(rate * FRAME_S))
        while (item := await queue.get()) is not None:
            index, chunks = item
            while (chunk := await chunks.get()) is not None:
                self.metrics.timeline.mark("first_audio", self.clock.now())
                if chunk.sample_rate != rate:
                    if resampler is None or resampler.from_rate != chunk.sample_rate:
                        resampler = StreamResampler(
                            chunk.sample_rate, rate, dtype="int16", quality=LOW_LATENCY
                        )
                    pcm = resampler.push(chunk.pcm)
                else:
                    pcm = chunk.pcm
                for start in range(0, len(pcm), frame):
                    await self._send(index, pcm[start : start + frame], rate)
            if resampler is not None:  # the filter's tail: the sentence's last few ms
                tail = resampler.push(np.zeros(0, np.int16), last=True)
                resampler = None
                if len(tail):
                    await self._send(index, tail, rate)

    async def _send(self, sentence: int, pcm: np.ndarray, rate: int) -> None:
        await self._replay_unheard(rate)
        while not await self._send_frame(sentence, pcm, rate):
            await self._replay_unheard(rate)  # paused while it waited: the older audio first

    async def _replay_unheard(self, rate: int) -> None:
        """Wait while paused; after a resume, send again what the user did not hear."""
        while True:
            await self._running.wait()
            if not self._replay:
                return
            sentence, pcm = self._replay[0]
            if await self._send_frame(sentence, pcm, rate):
                self._replay.popleft()

    async def _send_frame(self, sentence: int, pcm: np.ndarray, rate: int) -> bool:
        """Pace one frame out to the client. False if a pause came while it waited."""
        if self.gate is not None and not self.gate.is_set():
            await self.gate.wait()
        now = self.clock.now()
        ahead = self.played.play_end - now
        if ahead > self.config.lead_s:
            await self.clock.sleep(ahead - self.config.lead_s)
            now = self.clock.now()
        if self.paused:
            return False
        if not self.audio_started or self._restart:
            if not self.audio_started and self.speech_end_at is not None:
                self.metrics.voice_to_voice_ms = (now - self.speech_end_at) * 1000
                self.metrics.timeline.mark("sent", now)
            fields = {"resumed": True} if self._restart else {}
            self.audio_started, self._restart = True, False
            self.outbox.control(event("status", self.session_id, self.turn_id, status="speaking"))
            self.outbox.data(
                event("tts_start", self.session_id, self.turn_id, **audio_format(rate), **fields)
            )
        start = self.played.add(sentence, pcm, rate)
        if self.on_audio is not None:
            self.on_audio(pcm, rate, start)
        self.outbox.audio(pcm.astype("<i2", copy=False).tobytes(), self.turn_id, sentence)
        return True


async def _once(text: str) -> AsyncIterator[str]:
    yield text
