"""Listening: client audio → 16 kHz → VAD → turn events, with a streaming STT per utterance.

The listener owns everything about the *user's* side of a session: resampling, a short
audio history for the pre-roll, the VAD stream, the turn detector, and the STT stream of
the current utterance (whose partial transcripts it reports). It decides nothing about
replies: it hands `Heard` events to the session, which does.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from enum import Enum

import numpy as np

from voxloop.audio.resample import LOW_LATENCY, StreamResampler
from voxloop.clock import Clock
from voxloop.hearing.detector import TurnConfig, TurnDetector, TurnEvent, TurnEventKind
from voxloop.hearing.echo import EchoGate
from voxloop.hearing.utterance import MODEL_RATE, AudioQueue, Utterance
from voxloop.providers.base import (
    STTProvider,
    Transcript,
    VADFrame,
    VADProvider,
    checked_transcript,
)

log = logging.getLogger("voxloop.hearing.listener")


class Heard(Enum):
    SPEECH = "speech"  # a speech frame while an utterance (or candidate) is under way
    STARTED = "started"
    PAUSED = "paused"
    RESUMED = "resumed"
    ENDED = "ended"


Handler = Callable[[Heard, "Utterance | None"], Awaitable[None]]
PartialSink = Callable[[int, str], None]


class Listener:
    def __init__(
        self,
        vad: VADProvider,
        stt: STTProvider,
        clock: Clock,
        config: TurnConfig,
        *,
        preroll_s: float,
        on_partial: PartialSink,
        on_stt_error: Callable[[int, Exception], None],
    ) -> None:
        self.vad, self.stt, self.clock = vad, stt, clock
        self.detector = TurnDetector(config)
        self.preroll_s = preroll_s
        self.on_partial = on_partial
        self.on_stt_error = on_stt_error
        self.utterance: Utterance | None = None
        self.echo: EchoGate | None = None  # set by the session to ignore its own voice
        self.echo_frames = 0  # speech frames dismissed as echo (observability)
        self._vad_audio: AudioQueue | None = None
        self._resampler: StreamResampler | None = None
        self._samples_in = 0
        self._recent: deque[np.ndarray] = deque()
        self._recent_samples = 0
        self._arrivals: deque[tuple[int, float]] = deque()  # (sample index, clock time)

    @property
    def active(self) -> bool:
        return self._vad_audio is not None

    @property
    def speech_s(self) -> float:
        return self.detector.current_speech_s

    def start(self, sample_rate: int) -> None:
        self._resampler = StreamResampler(sample_rate, MODEL_RATE, quality=LOW_LATENCY)
        self._samples_in = 0
        self._recent.clear()
        self._recent_samples = 0
        self._arrivals.clear()
        self.detector.reset()
        self._vad_audio = AudioQueue()

    def stop(self) -> None:
        if self._vad_audio is not None:
            self._vad_audio.close()
            self._vad_audio = None

    def feed(self, samples: np.ndarray) -> None:
        """Client audio (float32 at the client's rate) for VAD and the open utterance."""
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
        keep = int(self.preroll_s * MODEL_RATE) + MODEL_RATE
        while self._recent and self._recent_samples - len(self._recent[0]) >= keep:
            self._recent_samples -= len(self._recent.popleft())
        self._vad_audio.put(audio)
        if self.utterance is not None:
            self.utterance.stream.put(audio)
            self.utterance.audio.append(audio)

    def clock_at(self, audio_s: float) -> float:
        """When (on our clock) the audio at `audio_s` arrived."""
        sample = int(audio_s * MODEL_RATE)
        for index, at in self._arrivals:
            if index >= sample:
                return at
        return self.clock.now()

    async def run(self, handle: Handler) -> None:
        """The VAD loop: runs until `stop()`; reports what it hears to `handle`."""
        audio = self._vad_audio
        if audio is None:
            return
        async for frame in self.vad.detect(audio):
            if frame.is_speech and self.echo is not None and self._is_echo(frame):
                self.echo_frames += 1
                frame = VADFrame(frame.start_s, frame.duration_s, frame.probability, False)
            event = self.detector.push(frame)
            if event is not None:
                await self._report(event, handle)
            # After the event: the utterance a SPEECH_STARTED opens is there to see.
            if self.detector.state != "silence" and frame.is_speech:
                await handle(Heard.SPEECH, self.utterance)

    async def _report(self, event: TurnEvent, handle: Handler) -> None:
        utt = self.utterance
        if event.kind is TurnEventKind.SPEECH_STARTED:
            await handle(Heard.STARTED, utt)
        elif utt is None:
            return  # speech the session chose to ignore
        elif event.kind is TurnEventKind.SPEECH_PAUSED:
            utt.speech_end_at = self.clock_at(event.speech_end_s or 0.0)
            await handle(Heard.PAUSED, utt)
        elif event.kind is TurnEventKind.SPEECH_RESUMED:
            utt.speech_end_at = None
            await handle(Heard.RESUMED, utt)
        else:
            self.utterance = None
            utt.speech_s = event.speech_s
            utt.speech_end_at = self.clock_at(event.speech_end_s or 0.0)
            utt.ended_at = self.clock.now()
            utt.stream.close()
            await handle(Heard.ENDED, utt)

    def _is_echo(self, frame: VADFrame) -> bool:
        """Is this speech frame just the agent's own voice coming back?"""
        assert self.echo is not None
        start = round(frame.start_s * MODEL_RATE)
        samples = self._samples(start, start + round(frame.duration_s * MODEL_RATE))
        if samples is None:
            return False
        # The frame's audio arrived when its last chunk did; place it on our clock.
        at = self.clock_at(frame.start_s + frame.duration_s) - frame.duration_s
        return self.echo.is_echo(samples, at)

    def _samples(self, start: int, end: int) -> np.ndarray | None:
        """16 kHz samples [start, end) of the stream, if still in the recent buffer."""
        first = self._samples_in - self._recent_samples
        if start < first or end > self._samples_in:
            return None
        recent = np.concatenate(list(self._recent))
        return recent[start - first : end - first]

    def open_utterance(self, turn_id: int, stream: bool = True) -> Utterance:
        """Collect the speech under way, with the pre-roll before it, and (if `stream`)
        feed it to a streaming STT as it arrives."""
        queue = AudioQueue()
        preroll = int(self.preroll_s * MODEL_RATE)
        start = max(0, int(self.detector.speech_start_s * MODEL_RATE) - preroll)
        recent = np.concatenate(list(self._recent)) if self._recent else np.zeros(0, np.float32)
        first_recent = self._samples_in - len(recent)
        head = recent[max(0, start - first_recent) :]
        queue.put(head)
        task = (
            asyncio.create_task(self._transcribe(turn_id, queue), name=f"stt-{turn_id}")
            if stream
            else None
        )
        self.utterance = Utterance(turn_id, queue, task, audio=[head])
        return self.utterance

    async def drop_utterance(self) -> None:
        utt, self.utterance = self.utterance, None
        if utt is not None and utt.stt_task is not None:
            utt.stt_task.cancel()
            await asyncio.gather(utt.stt_task, return_exceptions=True)
        self.detector.reset()

    async def _transcribe(self, turn_id: int, stream: AudioQueue) -> Transcript | None:
        final: Transcript | None = None
        try:
            async for result in self.stt.transcribe(stream):
                checked_transcript(result)
                if result.is_final:
                    final = result
                elif result.text:
                    self.on_partial(turn_id, result.text)
        except Exception as exc:  # the STT failed: the session reports it and listens on
            log.exception("STT failed")
            self.on_stt_error(turn_id, exc)
        return final
