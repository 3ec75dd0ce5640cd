"""Deepgram, the parts both stages share (the API root, errors, the retry policy) and Aura
text-to-speech over HTTP (`/v1/speak`, raw linear16 streamed as it arrives). Live
speech-to-text over the WebSocket is in deepgram_listen.py.

Why not `deepgram-sdk` (7.x): its async streaming client sits on the deprecated
`websockets.legacy` API, its message iterator skips frames it cannot parse with a log line,
its handshake errors drop Retry-After and carry the request headers (the API key among
them), and what matters most here, reconnecting mid-utterance with the unfinalized audio
replayed, is ours to write anyway. The wire format is a few JSON messages, so `websockets`
and `httpx` speak it directly.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any, Self

from voxloop.clock import Clock, RealClock
from voxloop.config.models import CLOUD_TTS_RATE
from voxloop.config.settings import Settings, reveal
from voxloop.errors import MissingDependencyError, ProviderCallError, ProviderError
from voxloop.providers.base import AudioChunk, Capabilities, ProviderInfo, TTSProvider
from voxloop.providers.cloud.http import pcm_chunks, retry_after_s
from voxloop.providers.resilience import CircuitBreaker, RetryPolicy, resilient_stream

API_URL = "https://api.deepgram.com"
DEFAULT_VOICE = "aura-2-thalia-en"
SPEAK_RATES = (8000, 16000, 24000, 32000, 48000)  # what linear16 output allows


class DeepgramTTS(TTSProvider):
    name = "deepgram"
    capabilities = Capabilities(local=False)

    def __init__(
        self,
        *,
        base_url: str = API_URL,
        api_key: str | None = None,
        voice: str = DEFAULT_VOICE,
        sample_rate: int = 24000,
        policy: RetryPolicy | None = None,
        clock: Clock | None = None,
    ) -> None:
        try:
            import httpx
        except ImportError as exc:
            raise MissingDependencyError(
                "Deepgram TTS needs httpx: pip install 'voxloop[cloud]'"
            ) from exc
        if sample_rate not in SPEAK_RATES:
            raise ProviderError(
                f"Deepgram speaks linear16 at {', '.join(map(str, SPEAK_RATES))} Hz, not "
                f"{sample_rate}: set tts.sample_rate to one of them"
            )
        self.httpx = httpx
        self.voice, self.sample_rate = voice, sample_rate
        self.policy = policy or RetryPolicy()
        self.clock = clock or RealClock()
        self.breaker = CircuitBreaker(clock=self.clock)
        self._key = api_key
        self.url = f"{api_root(base_url, {'ws': 'http', 'wss': 'https'})}/v1/speak"
        self.where = f"Deepgram TTS at {self.url}"
        headers = {"Authorization": f"Token {api_key}"} if api_key else {}
        timeout = httpx.Timeout(30.0, connect=self.policy.first_item_timeout_s)
        self.client = httpx.AsyncClient(headers=headers, timeout=timeout)

    @classmethod
    def from_settings(cls, settings: Settings) -> Self:
        s = settings.tts
        return cls(
            base_url=s.base_url or API_URL,
            api_key=reveal(s.api_key),
            voice=s.voice or s.model or DEFAULT_VOICE,  # Deepgram's model is the voice
            sample_rate=s.sample_rate or CLOUD_TTS_RATE,
            policy=RetryPolicy.for_stage(s),
        )

    def info(self) -> ProviderInfo:
        return ProviderInfo(self.name, self.voice, source=self.url)

    def synthesize(self, text: str) -> AsyncIterator[AudioChunk]:
        return resilient_stream(
            lambda: self._speak(text),
            name=self.where,
            policy=self.policy,
            breaker=self.breaker,
            clock=self.clock,
        )

    async def _speak(self, text: str) -> AsyncIterator[AudioChunk]:
        if not text.strip():
            return  # Deepgram answers 400 to empty text
        params = {
            "model": self.voice,
            "encoding": "linear16",
            "sample_rate": str(self.sample_rate),
            "container": "none",  # raw PCM, no WAV header to strip
        }
        try:
            async with self.client.stream(
                "POST", self.url, params=params, json={"text": text}
            ) as response:
                if response.status_code != 200:
                    body = await response.aread()
                    raise status_error(
                        response.status_code, response.headers, body, self.where, self._key, "tts"
                    )
                async for chunk in pcm_chunks(response.aiter_bytes(), self.sample_rate):
                    yield chunk
        except self.httpx.TransportError as exc:
            raise ProviderCallError(
                f"connection to {self.where} failed: {type(exc).__name__}: {exc}", retryable=True
            ) from exc


def api_root(url: str, schemes: dict[str, str]) -> str:
    """The API root in the scheme this transport needs; a trailing /v1 is tolerated."""
    url = url.rstrip("/")
    url = url.removesuffix("/v1")
    scheme, sep, rest = url.partition("://")
    return f"{schemes.get(scheme, scheme)}{sep}{rest}" if sep else url


def status_error(
    status: int, headers: Any, body: bytes | None, where: str, key: str | None, stage: str
) -> ProviderCallError:
    """An HTTP error answer as a `ProviderCallError` that says what to fix; the key, should
    the answer echo it, is masked."""
    text = (body or b"").decode("utf-8", "replace").strip()
    try:
        parsed = json.loads(text)
        text = str(parsed.get("err_msg") or parsed.get("reason") or text)
    except (ValueError, AttributeError):
        pass
    detail = headers.get("dg-error") or text[:200]
    message = f"{where} answered {status}" + (f" ({detail})" if detail else "")
    if status in (401, 403):
        message += f": the API key was refused; check {stage}.api_key"
    elif status == 400:
        message += f": the request was refused; check {stage}.model and the other {stage} settings"
    if key and len(key) >= 8:  # a real key; masking a letter would garble the message
        message = message.replace(key, "***")
    return ProviderCallError(
        message,
        retryable=status == 429 or status >= 500,
        status=status,
        retry_after_s=retry_after_s(headers.get("retry-after")),
    )
