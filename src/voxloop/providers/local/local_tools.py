"""Tool calls with a small local model, through the GGUF's chat template.

Qwen2.5's template lists the tools in the system prompt and the model answers a call as a
JSON object `{"name": ..., "arguments": {...}}` (one per line for several). The reply is
therefore held back while it starts with `{`: either it parses as calls, or the same
question is asked again without tools, so raw JSON is never spoken.

Measured on Qwen2.5-Coder-0.5B (docs/providers.md): it picks the right tool for some
questions and not others, and after a tool result it tends to call tools again instead
of answering. So the round after the results asks for a plain answer, with the results
written into the conversation as text. Opt-in (`llm.local_tools`), because a wrong call
makes a worse answer than no tool at all.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Sequence
from typing import Protocol

from voxloop.providers.base import Message, ToolCall, ToolSpec, tools_as_text


class StreamsText(Protocol):
    """What the tool calling needs of the LLM (`LlamaLLM`): its raw stream of text."""

    def _deltas(
        self,
        messages: Sequence[Message],
        max_tokens: int | None,
        temperature: float | None,
        tools: Sequence[ToolSpec] = (),
    ) -> AsyncIterator[str]: ...


async def generate(
    llm: StreamsText,
    messages: Sequence[Message],
    tools: Sequence[ToolSpec],
    max_tokens: int | None,
    temperature: float | None,
) -> AsyncIterator[str | ToolCall]:
    if not tools or any(m.role == "tool" for m in _since_last_user(messages)):
        async for delta in llm._deltas(tools_as_text(messages), max_tokens, temperature):
            yield delta
        return
    held: list[str] = []
    mode = ""  # decided at the first visible text: "call" (held back) or "text" (spoken)
    stream = llm._deltas(tools_as_text(messages), max_tokens, temperature, tools)
    try:
        async for delta in stream:
            if not mode:
                if not delta.strip():
                    continue
                mode = "call" if delta.lstrip().startswith(("{", "<")) else "text"
            if mode == "call":
                held.append(delta)
            else:
                yield delta
    finally:
        await stream.aclose()
    if not held:
        return
    calls = parse_calls("".join(held), {t.name for t in tools})
    if calls:
        for call in calls:
            yield call
        return
    # Not a call after all (or a call of no such tool): answer without tools.
    async for delta in llm._deltas(tools_as_text(messages), max_tokens, temperature):
        yield delta


def _since_last_user(messages: Sequence[Message]) -> Sequence[Message]:
    for i in range(len(messages) - 1, -1, -1):
        if messages[i].role == "user":
            return messages[i + 1 :]
    return messages


def parse_calls(text: str, names: set[str]) -> list[ToolCall]:
    """Every `{"name": ..., "arguments": ...}` object in `text` naming a known tool."""
    text = text.replace("<tool_call>", " ").replace("</tool_call>", " ")
    decoder = json.JSONDecoder()
    calls: list[ToolCall] = []
    i = 0
    while (start := text.find("{", i)) != -1:
        try:
            obj, end = decoder.raw_decode(text, start)
        except ValueError:
            break
        i = end
        if isinstance(obj, dict) and obj.get("name") in names:
            args = obj.get("arguments", {})
            if isinstance(args, str):  # some templates send the arguments as JSON text
                try:
                    args = json.loads(args)
                except ValueError:
                    args = {}
            arguments = json.dumps(args if isinstance(args, dict) else {})
            calls.append(ToolCall(f"local_{len(calls) + 1}", obj["name"], arguments))
    return calls
