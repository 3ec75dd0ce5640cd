"""Wyoming STT and TTS: speech models served by another process or host (`voxloop
serve-models`, Home Assistant's `wyoming-faster-whisper` and `wyoming-piper`), so that
several workers share one copy of the models.

One TCP connection per request, as the reference servers expect (wyoming-faster-whisper
closes after its transcript):

- STT: `transcribe`, `audio-start`, `audio-chunk`s as the utterance arrives (a streaming
  server can work while the user speaks), `audio-stop`, then the server's `transcript`.
  The audio is kept: if the connection fails before the transcript, the whole utterance
  is sent again on a new one, within `stt.retries`.
- TTS: `synthesize`, then `audio-start`, `audio-chunk`s, `audio-stop`. Audio arrives at
  the voice's rate; it is passed on at `tts.sample_rate` (default 22,050 Hz, Piper's),
  resampled if the voice speaks at another.

Closing either generator closes its connection: the server sees the end of the stream.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import AsyncIterable, AsyncIterator
from typing import Any, Self

import numpy as np

from voxloop.audio.formats import float_to_pcm16
from voxloop.audio.resample import LOW_LATENCY, StreamResampler
from voxloop.clock import Clock
from voxloop.config.settings import Settings
from voxloop.errors import ProviderCallError
from voxloop.providers.base import (
    AudioChunk,
    Capabilities,
    ProviderInfo,
    STTProvider,
    Transcript,
    TTSProvider,
)
from voxloop.providers.remote.wyoming_client import Connection, WyomingRemote
from voxloop.providers.remote.wyoming_protocol import (
    AudioFormat,
    Event,
    Limits,
    ProtocolError,
    pcm16_mono,
)
from voxloop.providers.resilience import RetryPolicy

log = logging.getLogger(__name__)

PIPER_RATE = 22050  # what wyoming-piper's medium voices speak: no resampling by default
MIN_SAMPLES = 1600  # 100 ms at 16 kHz: less is not worth a request
RESEND_CHUNK_BYTES = 32000  # one second of 16 kHz audio per chunk when sending it again


class WyomingSTT(STTProvider):
    name = "wyoming"
    capabilities = Capabilities(streaming_input=True, streaming_output=False, local=False)
    sample_rate = 16000

    def __init__(
        self,
        *,
        base_url: str | None,
        language: str | None = "en",
        model: str | None = None,
        policy: RetryPolicy | None = None,
        clock: Clock | None = None,
        limits: Limits | None = None,
    ) -> None:
        self.remote = WyomingRemote(
            base_url, setting="stt.base_url", kind="STT", policy=policy, clock=clock, limits=limits
        )
        self.language, self.model = language, model

    @classmethod
    def from_settings(cls, settings: Settings) -> Self:
        s = settings.stt
        return cls(
            base_url=s.base_url,
            language=s.language,
            model=s.model,
            policy=RetryPolicy.for_stage(s),
        )

    def info(self) -> ProviderInfo:
        return self.remote.info(self.name)

    async def warmup(self) -> None:
        await self.remote.warmup("asr")

    def _request(self) -> Event:
        data = {"language": self.language} if self.language else {}
        if self.model:
            data["name"] = self.model
        return Event("transcribe", data)

    def _chunk(self, pcm: bytes) -> Event:
        return Event("audio-chunk", AudioFormat(self.sample_rate).data(), pcm)

    async def _start(self) -> Connection:
        conn = await self.remote.connect()
        try:
            await conn.send(self._request())
            await conn.send(Event("audio-start", AudioFormat(self.sample_rate).data()))
        except BaseException:
            conn.close()
            raise
        return conn

    async def _finish(self, conn: Connection) -> str:
        await conn.send(Event("audio-stop"))
        timeout = self.remote.policy.first_item_timeout_s
        try:
            event = await asyncio.wait_for(conn.receive_type("transcript"), timeout)
        except TimeoutError:
            raise ProviderCallError(
                f"{self.remote.where}: no transcript within {timeout:g} s", retryable=True
            ) from None
        return str(event.data.get("text") or "").strip()

    async def transcribe(self, audio: AsyncIterable[np.ndarray]) -> AsyncIterator[Transcript]:
        tape: list[bytes] = []  # the utterance, for a second try
        live: Connection | None = None
        failure: ProviderCallError | None = None
        breaker = self.remote.breaker
        try:
            breaker.check(self.remote.where)
            try:
                live = await self._start()
            except ProviderCallError as exc:
                breaker.failure()
                if not exc.retryable:
                    raise
                failure = exc
            async for chunk in audio:
                pcm = float_to_pcm16(np.asarray(chunk, dtype=np.float32)).astype("<i2").tobytes()
                if not pcm:
                    continue
                tape.append(pcm)
                if live is not None:
                    try:
                        await live.send(self._chunk(pcm))
                    except ProviderCallError as exc:
                        breaker.failure()
                        live.close()
                        failure, live = exc, None
            if sum(map(len, tape)) // 2 < MIN_SAMPLES:
                yield Transcript("", is_final=True, language=self.language)
                return
            if live is not None:
                try:
                    text = await self._finish(live)
                except ProviderCallError as exc:
                    breaker.failure()
                    if not exc.retryable:
                        raise
                    failure = exc
                else:
                    breaker.success()
                    yield Transcript(text, is_final=True, language=self.language)
                    return
            assert failure is not None
            async for text in self._again(b"".join(tape), failure):
                yield Transcript(text, is_final=True, language=self.language)
        finally:
            if live is not None:
                live.close()

    async def _again(self, pcm: bytes, failure: ProviderCallError) -> AsyncIterator[str]:
        """The utterance sent whole on a new connection, in the tries the live one left."""
        policy = self.remote.policy
        if policy.attempts < 2:
            raise failure
        log.info("%s; sending the utterance again", failure)
        await self.remote.clock.sleep(policy.delay(0, failure))
        rest = dataclasses.replace(policy, attempts=policy.attempts - 1)
        async for text in self.remote.stream(lambda: self._whole(pcm), rest):
            yield text

    async def _whole(self, pcm: bytes) -> AsyncIterator[str]:
        conn = await self._start()
        try:
            for start in range(0, len(pcm), RESEND_CHUNK_BYTES):
                await conn.send(self._chunk(pcm[start : start + RESEND_CHUNK_BYTES]))
            yield await self._finish(conn)
        finally:
            conn.close()


class WyomingTTS(TTSProvider):
    name = "wyoming"
    capabilities = Capabilities(local=False)

    def __init__(
        self,
        *,
        base_url: str | None,
        voice: str | None = None,
        sample_rate: int = PIPER_RATE,
        policy: RetryPolicy | None = None,
        clock: Clock | None = None,
        limits: Limits | None = None,
    ) -> None:
        self.remote = WyomingRemote(
            base_url, setting="tts.base_url", kind="TTS", policy=policy, clock=clock, limits=limits
        )
        self.voice_name = voice
        self.sample_rate = sample_rate

    @classmethod
    def from_settings(cls, settings: Settings) -> Self:
        s = settings.tts
        return cls(
            base_url=s.base_url,
            voice=s.voice,
            sample_rate=s.sample_rate or PIPER_RATE,
            policy=RetryPolicy.for_stage(s),
        )

    def info(self) -> ProviderInfo:
        return self.remote.info(self.name)

    async def warmup(self) -> None:
        await self.remote.warmup("tts")

    def synthesize(self, text: str) -> AsyncIterator[AudioChunk]:
        return self.remote.stream(lambda: self._speak(text))

    async def _speak(self, text: str) -> AsyncIterator[AudioChunk]:
        if not text.strip():
            return
        conn = await self.remote.connect()
        try:
            request: dict[str, Any] = {"text": text}
            if self.voice_name:
                request["voice"] = {"name": self.voice_name}
            await conn.send(Event("synthesize", request))
            async for chunk in self._audio(conn):
                yield chunk
        finally:
            conn.close()

    async def _audio(self, conn: Connection) -> AsyncIterator[AudioChunk]:
        """The answer's audio at `sample_rate`, up to its `audio-stop`."""
        started: AudioFormat | None = None
        resampler: StreamResampler | None = None
        try:
            while (event := await conn.receive()).type != "audio-stop":
                if event.type == "audio-start":
                    started = AudioFormat.from_data(event.data, "audio-start")
                    continue
                if event.type != "audio-chunk":
                    continue
                fmt = started if started and "rate" not in event.data else None
                fmt = fmt or AudioFormat.from_data(event.data, "audio-chunk")
                pcm = pcm16_mono(event.payload, fmt)
                if fmt.rate != self.sample_rate:
                    if resampler is None or resampler.from_rate != fmt.rate:
                        resampler = StreamResampler(
                            fmt.rate, self.sample_rate, dtype="int16", quality=LOW_LATENCY
                        )
                    pcm = resampler.push(pcm)
                if len(pcm):
                    yield AudioChunk(pcm, self.sample_rate)
        except ProtocolError as exc:
            raise ProviderCallError(
                f"{conn.where} sent bad audio: {exc}", retryable=False
            ) from None
        if resampler is not None:  # the filter's last few milliseconds
            tail = resampler.push(np.zeros(0, np.int16), last=True)
            if len(tail):
                yield AudioChunk(tail, self.sample_rate)
