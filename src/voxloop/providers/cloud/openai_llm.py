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
from voxloop.providers.base import Capabilities, Message, ProviderInfo, ToolCall, ToolSpec
from voxloop.providers.cloud.base import RemoteLLM


class OpenAICompatibleLLM(RemoteLLM):
    name = "openai"
    capabilities = Capabilities(local=False, tools=True)

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
            "messages": [_message(m) for m in messages],
            "stream": True,
            "max_tokens": max_tokens,
            "temperature": temperature,
        }

    def generate_with_tools(
        self,
        messages: Sequence[Message],
        tools: Sequence[ToolSpec],
        *,
        max_tokens: int | None = None,
        temperature: float | None = None,
    ) -> AsyncIterator[str | ToolCall]:
        request = self._build(messages, max_tokens, temperature)
        request["tools"] = [
            {
                "type": "function",
                "function": {
                    "name": t.name,
                    "description": t.description,
                    "parameters": t.parameters,
                },
            }
            for t in tools
        ]
        return self._resilient(request)

    async def _stream(self, body: dict) -> AsyncIterator[str | ToolCall]:
        httpx = self._httpx
        calls: dict[int, dict[str, str]] = {}  # tool calls arrive in pieces, by index
        try:
            async with self._client.stream("POST", self.url, json=body) as response:
                if response.status_code != 200:
                    raise _status_error(response, (await response.aread())[:300])
                async for line in response.aiter_lines():
                    delta = _parse_sse(line, self.url)
                    if delta is _DONE:
                        break
                    if not isinstance(delta, dict):
                        continue
                    if delta.get("content"):
                        yield delta["content"]
                    for piece in delta.get("tool_calls") or []:
                        call = calls.setdefault(
                            piece.get("index", 0), {"id": "", "name": "", "args": ""}
                        )
                        function = piece.get("function") or {}
                        call["id"] = piece.get("id") or call["id"]
                        call["name"] = function.get("name") or call["name"]
                        call["args"] += function.get("arguments") or ""
        except (httpx.TransportError, httpx.RemoteProtocolError) as exc:
            raise ProviderCallError(
                f"connection to {self.url} failed: {type(exc).__name__}: {exc}", retryable=True
            ) from exc
        for index in sorted(calls):
            call = calls[index]
            yield ToolCall(call["id"] or f"call_{index}", call["name"], call["args"])


_DONE = object()


def _parse_sse(line: str, url: str) -> dict | object | None:
    """One line of the event stream: the chunk's delta, `_DONE`, or None (nothing)."""
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
        delta = choices[0].get("delta") or {}
        if not isinstance(delta, dict):
            raise TypeError("delta is not an object")
        return delta
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


def _message(m: Message) -> dict[str, Any]:
    out: dict[str, Any] = {"role": m.role, "content": m.content}
    if m.tool_calls:
        out["tool_calls"] = [
            {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}
            for c in m.tool_calls
        ]
    if m.tool_call_id is not None:
        out["tool_call_id"] = m.tool_call_id
    return out
