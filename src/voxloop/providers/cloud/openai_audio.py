"""OpenAI's speech endpoints (and compatible servers): transcription for STT, speech for
TTS, through the official `openai` SDK (its own retries off), with the same retries,
timeouts and breaker as the LLM adapters.

- STT (`/audio/transcriptions`) is a batch API: the utterance is sent once, at its end,
  as a WAV file; there are no partial transcripts.
- TTS (`/audio/speech`, `response_format=pcm`) streams raw 24 kHz PCM16, which is passed
  on chunk by chunk as it arrives. A compatible server is asked for 24 kHz explicitly
  (`sample_rate`): speaches, for one, sends its voice's own rate otherwise.
- A local server needs no key (a placeholder is sent) and names its models its own way:
  `stt.model` / `tts.model` carry them through unchanged.
"""

from __future__ import annotations

import io
import wave
from collections.abc import AsyncIterable, AsyncIterator
from typing import Any, Self

import numpy as np

from voxloop.clock import Clock, RealClock
from voxloop.config.settings import Settings, reveal
from voxloop.errors import MissingDependencyError
from voxloop.providers.base import (
    AudioChunk,
    Capabilities,
    ProviderInfo,
    STTProvider,
    Transcript,
    TTSProvider,
)
from voxloop.providers.cloud.base import sdk_error
from voxloop.providers.cloud.http import pcm_chunks
from voxloop.providers.resilience import CircuitBreaker, RetryPolicy, resilient_stream

DEFAULT_URL = "https://api.openai.com/v1"
SPEECH_RATE = 24000  # what `response_format=pcm` returns


class _OpenAIAudio:
    """The SDK client, retry policy and breaker both adapters share."""

    def __init__(
        self, base_url: str, api_key: str | None, policy: RetryPolicy, clock: Clock | None
    ) -> None:
        try:
            import openai
        except ImportError as exc:
            raise MissingDependencyError(
                "OpenAI speech needs the openai package: pip install 'voxloop[cloud]'"
            ) from exc
        self.sdk = openai
        self.base_url = base_url.rstrip("/")
        self.client = openai.AsyncOpenAI(
            api_key=api_key or "no-key", base_url=self.base_url, max_retries=0, timeout=30.0
        )
        self.policy = policy
        self.clock = clock or RealClock()
        self.breaker = CircuitBreaker(clock=self.clock)

    @staticmethod
    def from_stage(settings: Settings, stage) -> dict:
        return {
            "base_url": stage.base_url or DEFAULT_URL,
            "api_key": reveal(stage.api_key),
            "policy": RetryPolicy.for_stage(stage),
        }

    def stream(self, make, name: str):
        return resilient_stream(
            make, name=name, policy=self.policy, breaker=self.breaker, clock=self.clock
        )


def wav_bytes(samples: np.ndarray, rate: int) -> bytes:
    pcm = (np.clip(samples, -1.0, 1.0) * 32767).astype("<i2")
    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm.tobytes())
    return out.getvalue()


class OpenAISTT(STTProvider):
    name = "openai"
    capabilities = Capabilities(streaming_input=True, streaming_output=False, local=False)

    def __init__(
        self,
        *,
        base_url: str = DEFAULT_URL,
        model: str = "gpt-4o-mini-transcribe",
        api_key: str | None = None,
        language: str | None = "en",
        policy: RetryPolicy | None = None,
        clock: Clock | None = None,
    ) -> None:
        self.http = _OpenAIAudio(base_url, api_key, policy or RetryPolicy(), clock)
        self.model, self.language = model, language
        self.url = f"{self.http.base_url}/audio/transcriptions"

    @classmethod
    def from_settings(cls, settings: Settings) -> Self:
        s = settings.stt
        return cls(
            model=s.model or "gpt-4o-mini-transcribe",
            language=s.language,
            **_OpenAIAudio.from_stage(settings, s),
        )

    def info(self) -> ProviderInfo:
        return ProviderInfo(self.name, self.model, source=self.url)

    async def transcribe(self, audio: AsyncIterable[np.ndarray]) -> AsyncIterator[Transcript]:
        chunks = [chunk.astype(np.float32, copy=False) async for chunk in audio]
        samples = np.concatenate(chunks) if chunks else np.zeros(0, np.float32)
        if len(samples) < self.sample_rate // 10:  # under 100 ms: nothing to send
            yield Transcript("", is_final=True, language=self.language)
            return
        body = wav_bytes(samples, self.sample_rate)
        async for text in self.http.stream(lambda: self._post(body), f"STT at {self.url}"):
            yield Transcript(text.strip(), is_final=True, language=self.language)

    async def _post(self, wav: bytes) -> AsyncIterator[str]:
        extra = {"language": self.language} if self.language else {}
        try:
            result = await self.http.client.audio.transcriptions.create(
                model=self.model,
                file=("utterance.wav", wav, "audio/wav"),
                response_format="json",
                **extra,
            )
        except Exception as exc:
            raise sdk_error(exc, self.http.sdk, self.url) from exc
        yield str(result.text)


class OpenAITTS(TTSProvider):
    name = "openai"
    capabilities = Capabilities(local=False)
    sample_rate = SPEECH_RATE

    def __init__(
        self,
        *,
        base_url: str = DEFAULT_URL,
        model: str = "gpt-4o-mini-tts",
        voice: str = "alloy",
        api_key: str | None = None,
        policy: RetryPolicy | None = None,
        clock: Clock | None = None,
    ) -> None:
        self.http = _OpenAIAudio(base_url, api_key, policy or RetryPolicy(), clock)
        self.model, self.voice_name = model, voice
        self.url = f"{self.http.base_url}/audio/speech"

    @classmethod
    def from_settings(cls, settings: Settings) -> Self:
        s = settings.tts
        return cls(
            model=s.model or "gpt-4o-mini-tts",
            voice=s.voice or "alloy",
            **_OpenAIAudio.from_stage(settings, s),
        )

    def info(self) -> ProviderInfo:
        return ProviderInfo(self.name, f"{self.model} ({self.voice_name})", source=self.url)

    def synthesize(self, text: str) -> AsyncIterator[AudioChunk]:
        body = self.speech_request(text)
        return self.http.stream(lambda: self._speech(body), f"TTS at {self.url}")

    def speech_request(self, text: str) -> dict[str, Any]:
        """The SDK call's arguments for `text`."""
        body: dict[str, Any] = {
            "model": self.model,
            "input": text,
            "voice": self.voice_name,
            "response_format": "pcm",
        }
        if self.http.base_url != DEFAULT_URL:
            # A compatible server (speaches, ...) sends PCM at its voice's own rate unless it
            # is asked for one; OpenAI's own is always 24 kHz, so only others are asked.
            body["extra_body"] = {"sample_rate": SPEECH_RATE}
        return body

    async def _speech(self, body: dict) -> AsyncIterator[AudioChunk]:
        speech = self.http.client.audio.speech.with_streaming_response
        try:
            async with speech.create(**body) as response:
                async for chunk in pcm_chunks(response.iter_bytes(), SPEECH_RATE):
                    yield chunk
        except Exception as exc:
            raise sdk_error(exc, self.http.sdk, self.url) from exc
