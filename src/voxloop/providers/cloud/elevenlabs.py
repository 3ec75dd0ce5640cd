"""ElevenLabs text-to-speech, streamed: `POST /v1/text-to-speech/{voice_id}/stream` with
`output_format=pcm_<rate>` returns raw mono PCM16 that is passed on chunk by chunk as it
arrives, with the same retries, timeouts and breaker as every remote provider.

Defaults: the model is `eleven_flash_v2_5` (ElevenLabs' low-latency model) and the voice
is `JBFqnCBsd6RMkjVDRZzb` ("George", a premade voice every account has, used in the
vendor's own examples). `tts.voice` takes any voice id; `tts.sample_rate` must be one of
the vendor's PCM rates (`PCM_RATES`; 44.1 kHz needs a Pro plan or above).

Why httpx and not the official `elevenlabs` SDK (checked at 2.78): the endpoint is one
POST answered with raw bytes, so the SDK would add nothing but cost something. It
re-chunks the audio into 1024-byte pieces (holding back the tail of every network read
until the next one arrives, which delays the first audio when it is short), lets httpx's
own exceptions through anyway, turns errors into a generic `ApiError` that still has to
be translated, and pulls in `requests` and `websockets` and ~0.6 s of imports. Over httpx
the bytes go out as they come and errors map directly onto `ProviderCallError`.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Self
from urllib.parse import quote

from voxloop.clock import Clock, RealClock
from voxloop.config.models import CLOUD_TTS_RATE
from voxloop.config.settings import ConfigError, Settings, reveal
from voxloop.errors import MissingDependencyError, ProviderCallError
from voxloop.providers.base import AudioChunk, Capabilities, ProviderInfo, TTSProvider
from voxloop.providers.cloud.http import pcm_chunks, retry_after_s
from voxloop.providers.resilience import CircuitBreaker, RetryPolicy, resilient_stream

if TYPE_CHECKING:
    import httpx

DEFAULT_URL = "https://api.elevenlabs.io"
DEFAULT_VOICE = "JBFqnCBsd6RMkjVDRZzb"  # "George", premade
DEFAULT_MODEL = "eleven_flash_v2_5"
PCM_RATES = (8000, 16000, 22050, 24000, 32000, 44100, 48000)  # the pcm_* output formats


class ElevenLabsTTS(TTSProvider):
    name = "elevenlabs"
    capabilities = Capabilities(local=False)
    sample_rate = 24000

    def __init__(
        self,
        *,
        base_url: str = DEFAULT_URL,
        voice: str = DEFAULT_VOICE,
        model: str = DEFAULT_MODEL,
        api_key: str | None = None,
        sample_rate: int = 24000,
        policy: RetryPolicy | None = None,
        clock: Clock | None = None,
    ) -> None:
        if sample_rate not in PCM_RATES:
            valid = ", ".join(str(r) for r in PCM_RATES)
            raise ConfigError(
                f"tts.sample_rate = {sample_rate} is not a PCM rate ElevenLabs offers; "
                f"use one of {valid}"
            )
        try:
            import httpx
        except ImportError as exc:
            raise MissingDependencyError(
                "ElevenLabs TTS needs httpx: pip install 'voxloop[cloud]'"
            ) from exc
        self._httpx = httpx
        self.sample_rate = sample_rate
        self.model, self.voice_id = model, voice
        self.url = f"{base_url.rstrip('/')}/v1/text-to-speech/{quote(voice, safe='')}/stream"
        self._key = api_key
        headers = {"xi-api-key": api_key} if api_key else {}
        self.client = httpx.AsyncClient(headers=headers, timeout=httpx.Timeout(30.0))
        self.policy = policy or RetryPolicy()
        self.clock = clock or RealClock()
        self.breaker = CircuitBreaker(clock=self.clock)

    @classmethod
    def from_settings(cls, settings: Settings) -> Self:
        s = settings.tts
        return cls(
            base_url=s.base_url or DEFAULT_URL,
            voice=s.voice or DEFAULT_VOICE,
            model=s.model or DEFAULT_MODEL,
            api_key=reveal(s.api_key),
            sample_rate=s.sample_rate or CLOUD_TTS_RATE,
            policy=RetryPolicy.for_stage(s),
        )

    def info(self) -> ProviderInfo:
        return ProviderInfo(self.name, f"{self.model} ({self.voice_id})", source=self.url)

    async def synthesize(self, text: str) -> AsyncIterator[AudioChunk]:
        if not text.strip():
            return  # nothing to say: the API would refuse it with a 400
        body = {"text": text, "model_id": self.model}
        stream = resilient_stream(
            lambda: self._speech(body),
            name=f"TTS at {self.url}",
            policy=self.policy,
            breaker=self.breaker,
            clock=self.clock,
        )
        try:
            async for chunk in stream:
                yield chunk
        finally:
            await stream.aclose()  # closing us closes the HTTP response at once

    async def _speech(self, body: dict[str, str]) -> AsyncIterator[AudioChunk]:
        params = {"output_format": f"pcm_{self.sample_rate}"}
        try:
            async with self.client.stream("POST", self.url, params=params, json=body) as response:
                if response.status_code != 200:
                    raise self._status_error(response, (await response.aread())[:2000])
                async for chunk in pcm_chunks(response.aiter_bytes(), self.sample_rate):
                    yield chunk
        except self._httpx.TransportError as exc:
            raise ProviderCallError(
                self._scrub(f"connection to {self.url} failed: {type(exc).__name__}: {exc}"),
                retryable=True,
            ) from exc

    def _status_error(self, response: httpx.Response, body: bytes) -> ProviderCallError:
        """429 and 5xx are worth retrying; any other status (401 bad key, 400 bad voice or
        text, 422 bad request) will not get better by asking again."""
        status = response.status_code
        return ProviderCallError(
            self._scrub(f"ElevenLabs at {self.url} answered {status}: {vendor_detail(body)}"),
            retryable=status == 429 or status >= 500,
            status=status,
            retry_after_s=retry_after_s(response.headers.get("retry-after")),
        )

    def _scrub(self, message: str) -> str:
        """The key never appears in a message, even if something echoes it back."""
        return message.replace(self._key, "***") if self._key else message


def vendor_detail(body: bytes) -> str:
    """The readable part of an ElevenLabs error: `{"detail": {"status", "message"}}`, or
    FastAPI's list of validation problems for a 422, or the raw text."""
    text = body.decode("utf-8", "replace").strip()
    try:
        detail = json.loads(text)["detail"]
    except (ValueError, KeyError, TypeError):
        return text[:300] or "(no body)"
    if isinstance(detail, dict):
        message = str(detail.get("message") or detail)
        return f"{message} ({detail['status']})" if detail.get("status") else message
    if isinstance(detail, list):
        problems = []
        for item in detail:
            if isinstance(item, dict):
                where = ".".join(str(p) for p in item.get("loc") or ())
                problems.append(f"{where}: {item.get('msg', '')}" if where else str(item))
            else:
                problems.append(str(item))
        return "; ".join(problems)[:300]
    return str(detail)[:300]
