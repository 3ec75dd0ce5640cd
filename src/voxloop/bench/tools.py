"""`voxloop eval tools`: does the configured LLM pick the right tool, and is the answer
right? A fixed set of questions, each with the tool it needs (or none) and a word the
spoken answer must contain. It runs the real tool loop: a call, the tool, the answer."""

from __future__ import annotations

import time
from typing import Any

from voxloop.config.settings import Settings
from voxloop.providers.base import LLMProvider, Message, ToolCall
from voxloop.providers.registry import ProviderPool
from voxloop.reply.tools import ToolBox, default_toolbox

# (question, the tool it needs or None, a word the answer must hold or None)
CASES: list[tuple[str, str | None, str | None]] = [
    ("What is 17 times 3?", "calculate", "51"),
    ("What's the square root of 1764?", "calculate", "42"),
    ("What is 12.5 percent of 640?", "calculate", "80"),
    ("How much is 1234 plus 4321?", "calculate", "5555"),
    ("What time is it?", "current_time", None),
    ("What day is it today?", "current_time", None),
    ("What's today's date?", "current_time", None),
    ("What is the capital of France?", None, "Paris"),
    ("Tell me a joke.", None, None),
    ("Who wrote Hamlet?", None, "Shakespeare"),
]
SYSTEM = "You are a friendly voice assistant. Answer in one to three short spoken sentences."


async def _one(llm: LLMProvider, box: ToolBox, question: str) -> tuple[list[ToolCall], str]:
    messages = [Message("system", SYSTEM), Message("user", question)]
    items = [i async for i in llm.generate_with_tools(messages, box.specs(), max_tokens=80)]
    calls = [i for i in items if isinstance(i, ToolCall)]
    text = "".join(i for i in items if isinstance(i, str))
    if calls:
        results = [await box.run(c) for c in calls]
        messages.append(Message("assistant", text, tool_calls=tuple(calls)))
        messages += [
            Message("tool", r, tool_call_id=c.id) for c, r in zip(calls, results, strict=True)
        ]
        text = "".join(
            [i async for i in llm.generate_with_tools(messages, box.specs(), max_tokens=80)]
        )
    return calls, text


async def eval_tools(settings: Settings) -> dict[str, Any]:
    settings = settings.model_copy(deep=True)
    settings.llm.local_tools = True  # the point is to measure them
    pool = ProviderPool(settings)
    llm = pool.get("llm")
    assert isinstance(llm, LLMProvider)
    if not llm.capabilities.tools:
        raise SystemExit(f"the LLM {llm.name!r} cannot call tools")
    box = default_toolbox()
    rows, right_tool, right_answer = [], 0, 0
    try:
        for question, tool, word in CASES:
            started = time.perf_counter()
            calls, text = await _one(llm, box, question)
            chose = calls[0].name if calls else None
            good = word is None or word.lower() in text.lower()
            right_tool += chose == tool
            right_answer += good
            rows.append(
                {
                    "question": question,
                    "expected_tool": tool,
                    "tool": chose,
                    "arguments": [c.arguments for c in calls],
                    "answer": text,
                    "answer_ok": good,
                    "seconds": round(time.perf_counter() - started, 2),
                }
            )
    finally:
        pool.close()
    return {
        "llm": llm.info().model,
        "cases": len(CASES),
        "right_tool": right_tool,
        "right_answer": right_answer,
        "rows": rows,
    }
