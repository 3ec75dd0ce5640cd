"""Anthropic's Messages API through the official `anthropic` SDK, streamed.

The SDK's own retries are off: `resilience.py` retries (429, 529 and other 5xx,
connection errors; never other 4xx), times out and trips the breaker the same way for
every remote provider. The key goes to the SDK and is never logged.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Sequence
from typing import Any, Self

from voxloop.config.settings import Settings
from voxloop.errors import MissingDependencyError
from voxloop.providers.base import Capabilities, Message, ProviderInfo, ToolCall, ToolSpec
from voxloop.providers.cloud.base import RemoteLLM, sdk_error


def to_anthropic(messages: Sequence[Message]) -> tuple[str, list[dict[str, Any]]]:
    """Our messages as (system, turns): the API takes the system prompt apart and wants
    turns that alternate and start with the user (a greeting may have come first). Tool
    calls become `tool_use` blocks, their results `tool_result` blocks of a user turn."""
    system = "\n".join(m.content for m in messages if m.role == "system")
    turns: list[dict[str, Any]] = []
    for m in messages:
        blocks = _blocks(m)
        if m.role == "system" or not blocks:
            continue
        role = "user" if m.role == "tool" else m.role
        if turns and turns[-1]["role"] == role:
            turns[-1]["content"].extend(blocks)
        else:
            turns.append({"role": role, "content": blocks})
    if turns and turns[0]["role"] != "user":
        turns.insert(0, {"role": "user", "content": [_text("(The conversation begins.)")]})
    for turn in turns:  # plain text turns stay plain strings
        if all(b["type"] == "text" for b in turn["content"]):
            turn["content"] = "\n".join(b["text"] for b in turn["content"])
    return system, turns


def _text(text: str) -> dict[str, Any]:
    return {"type": "text", "text": text}


def _blocks(m: Message) -> list[dict[str, Any]]:
    if m.role == "tool":
        return [{"type": "tool_result", "tool_use_id": m.tool_call_id, "content": m.content}]
    blocks = [_text(m.content)] if m.content else []
    for call in m.tool_calls:
        blocks.append({"type": "tool_use", "id": call.id, "name": call.name, "input": _args(call)})
    return blocks


def _args(call: ToolCall) -> dict[str, Any]:
    """The call's arguments as an object (the API wants one, even for unparsable text)."""
    try:
        value = json.loads(call.arguments or "{}")
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


class AnthropicLLM(RemoteLLM):
    name = "anthropic"
    capabilities = Capabilities(local=False, tools=True)

    def __init__(
        self, *, api_key: str | None = None, base_url: str | None = None, **common: Any
    ) -> None:
        super().__init__(**common)
        try:
            import anthropic
        except ImportError as exc:
            raise MissingDependencyError(
                "the Anthropic LLM needs the anthropic package: pip install 'voxloop[cloud]'"
            ) from exc
        self._sdk = anthropic
        self._client = anthropic.AsyncAnthropic(
            api_key=api_key or "missing-key", base_url=base_url, max_retries=0
        )

    @classmethod
    def from_settings(cls, settings: Settings) -> Self:
        return cls(
            model=settings.llm.model or "claude-haiku-4-5",
            api_key=cls.api_key(settings),
            base_url=settings.llm.base_url,
            **cls.common_settings(settings),
        )

    @property
    def endpoint(self) -> str:
        return str(self._client.base_url)

    def info(self) -> ProviderInfo:
        return ProviderInfo(self.name, self.model, source=self.endpoint)

    def _request(
        self, messages: Sequence[Message], max_tokens: int, temperature: float
    ) -> dict[str, Any]:
        system, turns = to_anthropic(messages)
        # No temperature: current Anthropic models and SDKs no longer take one.
        request: dict[str, Any] = {
            "model": self.model,
            "max_tokens": max_tokens,
            "messages": turns,
            "stream": True,
        }
        if system:
            request["system"] = system
        return request

    def _tool(self, tool: ToolSpec) -> dict[str, Any]:
        return {"name": tool.name, "description": tool.description, "input_schema": tool.parameters}

    async def _stream(self, request: dict[str, Any]) -> AsyncIterator[str | ToolCall]:
        sdk = self._sdk
        calls: dict[int, list[str]] = {}  # block index → [id, name, JSON text so far]
        try:
            stream = await self._client.messages.create(**request)
            async with stream:
                async for event in stream:
                    if event.type == "content_block_start":
                        block = event.content_block
                        if block.type == "tool_use":
                            calls[event.index] = [block.id, block.name, ""]
                    elif event.type == "content_block_delta":
                        delta = event.delta
                        if delta.type == "text_delta" and delta.text:
                            yield delta.text
                        elif delta.type == "input_json_delta" and event.index in calls:
                            calls[event.index][2] += delta.partial_json
                    # message_start, ping, content_block_stop, message_delta: nothing to say
        except Exception as exc:
            raise sdk_error(exc, sdk, "Anthropic") from exc
        for index in sorted(calls):
            call_id, name, arguments = calls[index]
            yield ToolCall(call_id, name, arguments or "{}")
