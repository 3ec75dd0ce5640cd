"""Any OpenAI-compatible chat-completions endpoint: OpenAI, Groq, xAI, DeepSeek, Ollama,
vLLM, llama.cpp's server... through the official `openai` SDK, streamed.

The SDK's own retries are off: `resilience.py` retries (429, 5xx, a dropped connection;
never any other 4xx: a bad key or model name will not get better), times out and trips
the breaker the same way for every remote provider. The key goes to the SDK as a bearer
token and is never logged.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Any, Self

from voxloop.config.settings import Settings
from voxloop.errors import MissingDependencyError
from voxloop.providers.base import (
    Capabilities,
    Message,
    ProviderInfo,
    ToolCall,
    ToolSpec,
    function_schema,
)
from voxloop.providers.cloud.base import RemoteLLM, sdk_error


class OpenAICompatibleLLM(RemoteLLM):
    name = "openai"
    capabilities = Capabilities(local=False, tools=True)

    def __init__(self, *, base_url: str, api_key: str | None = None, **common: Any) -> None:
        super().__init__(**common)
        try:
            import openai
        except ImportError as exc:
            raise MissingDependencyError(
                "the OpenAI-compatible LLM needs the openai package: pip install 'voxloop[cloud]'"
            ) from exc
        self._sdk = openai
        self.url = base_url.rstrip("/") + "/chat/completions"
        # Local servers (Ollama, vLLM, llama.cpp) need no key; the SDK insists on one.
        self._client = openai.AsyncOpenAI(
            api_key=api_key or "no-key", base_url=base_url, max_retries=0, timeout=30.0
        )

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

    def _tool(self, tool: ToolSpec) -> dict[str, Any]:
        return function_schema(tool)

    async def _stream(self, request: dict) -> AsyncIterator[str | ToolCall]:
        calls: dict[int, list[str]] = {}  # tool calls arrive in pieces, by index: id, name, args
        try:
            stream = await self._client.chat.completions.create(**request)
            async with stream:
                async for chunk in stream:
                    if not chunk.choices:
                        continue  # e.g. a final usage-only chunk
                    delta = chunk.choices[0].delta
                    if delta.content:
                        yield delta.content
                    for piece in delta.tool_calls or []:
                        call = calls.setdefault(piece.index or 0, ["", "", ""])
                        function = piece.function
                        call[0] = piece.id or call[0]
                        call[1] = (function.name if function else None) or call[1]
                        call[2] += (function.arguments if function else None) or ""
        except Exception as exc:
            raise sdk_error(exc, self._sdk, f"OpenAI-compatible LLM at {self.url}") from exc
        for index in sorted(calls):
            call_id, name, arguments = calls[index]
            yield ToolCall(call_id or f"call_{index}", name, arguments)


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
