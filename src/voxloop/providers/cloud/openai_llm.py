"""Any OpenAI-compatible chat-completions endpoint: OpenAI, Groq, xAI, DeepSeek, Ollama,
vLLM, llama.cpp's server... Streams server-sent events over httpx; no SDK needed.

Errors become `ProviderCallError`s that say whether a retry makes sense (429, 5xx, a
dropped connection) or not (any other 4xx: a bad key or model name will not get better).
Retries, timeouts and the circuit breaker come from `resilience.py`. The key is sent as a
bearer token and never logged.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Sequence
from typing import Any, Self

from voxloop.config import Settings
from voxloop.errors import MissingDependencyError, ProviderCallError
from voxloop.providers.base import Message, ProviderInfo
from voxloop.providers.cloud.base import RemoteLLM


class OpenAICompatibleLLM(RemoteLLM):
    name = "openai"

    def __init__(self, *, base_url: str, api_key: str | None = None, **common: Any) -> None:
        super().__init__(**common)
        try:
            import httpx
        except ImportError as exc:
            raise MissingDependencyError(
                "the OpenAI-compatible LLM needs httpx: pip install 'voxloop[cloud]'"
            ) from exc
        self.url = base_url.rstrip("/") + "/chat/completions"
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._client = httpx.AsyncClient(headers=headers, timeout=httpx.Timeout(30.0))
        self._httpx = httpx

    @classmethod
    def from_settings(cls, settings: Settings) -> Self:
        return cls(
            base_url=settings.llm.base_url or "https://api.openai.com/v1",
            model=settings.llm.model or "gpt-4o-mini",
            api_key=cls.api_key(settings),
            **cls.common_settings(settings),
        )

    @property
    def endpoint(self) -> str:
        return self.url

    def info(self) -> ProviderInfo:
        return ProviderInfo(self.name, self.model, source=self.url)

    def _request(
        self, messages: Sequence[Message], max_tokens: int, temperature: float
    ) -> dict[str, Any]:
        return {
            "model": self.model,
            "messages": [{"role": m.role, "content": m.content} for m in messages],
            "stream": True,
            "max_tokens": max_tokens,
            "temperature": temperature,
        }

    async def _stream(self, body: dict) -> AsyncIterator[str]:
        httpx = self._httpx
        try:
            async with self._client.stream("POST", self.url, json=body) as response:
                if response.status_code != 200:
                    raise _status_error(response, (await response.aread())[:300])
                async for line in response.aiter_lines():
                    delta = _parse_sse(line, self.url)
                    if delta is _DONE:
                        return
                    if delta:
                        yield delta
        except (httpx.TransportError, httpx.RemoteProtocolError) as exc:
            raise ProviderCallError(
                f"connection to {self.url} failed: {type(exc).__name__}: {exc}", retryable=True
            ) from exc


_DONE = object()


def _parse_sse(line: str, url: str) -> str | object | None:
    """One line of the event stream: a text delta, `_DONE`, or None (nothing to say)."""
    line = line.strip()
    if not line.startswith("data:"):
        return None  # blank separators, comments, other SSE fields
    data = line[5:].strip()
    if data == "[DONE]":
        return _DONE
    try:
        chunk = json.loads(data)
        choices = chunk.get("choices") or []
        if not choices:
            return None  # e.g. a final usage-only chunk
        return (choices[0].get("delta") or {}).get("content") or None
    except (ValueError, AttributeError, TypeError) as exc:
        raise ProviderCallError(
            f"{url} sent a malformed stream chunk: {data[:120]!r}", retryable=False
        ) from exc


def _status_error(response, body: bytes) -> ProviderCallError:
    status = response.status_code
    retry_after = response.headers.get("retry-after")
    try:
        seconds = float(retry_after) if retry_after is not None else None
    except ValueError:
        seconds = None
    text = body.decode("utf-8", "replace").strip()
    return ProviderCallError(
        f"{response.url} answered {status}: {text}",
        retryable=status == 429 or status >= 500,
        status=status,
        retry_after_s=seconds,
    )
