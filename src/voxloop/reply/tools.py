"""Tools the agent can call: a registry with a decorator, and the built-ins (the time, a
safe calculator, web search through Tavily).

    toolbox = ToolBox()

    @toolbox.tool
    def weather(city: str) -> str:
        "Today's weather in a city."
        ...

A tool is a plain function (sync or async) with annotated `str`/`int`/`float`/`bool`
parameters; its docstring is what the LLM reads. Sync tools run on a thread and every
call has a timeout, so a tool never holds up the audio. Whatever a tool raises goes back
to the LLM as an error text: the conversation goes on.
"""

from __future__ import annotations

import ast
import asyncio
import datetime as dt
import inspect
import json
import math
import operator
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from voxloop.clock import Clock
from voxloop.providers.base import LLMProvider, Message, ToolCall, ToolSpec

_JSON_TYPES = {str: "string", int: "integer", float: "number", bool: "boolean"}


@dataclass(frozen=True)
class Tool:
    spec: ToolSpec
    fn: Callable[..., Any]


class ToolBox:
    def __init__(self, timeout_s: float = 8.0) -> None:
        self.timeout_s = timeout_s
        self._tools: dict[str, Tool] = {}

    def tool(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        """Register `fn` as a tool (see the module docstring)."""
        self._tools[fn.__name__] = Tool(_spec(fn), fn)
        return fn

    def specs(self) -> list[ToolSpec]:
        return [t.spec for t in self._tools.values()]

    def __len__(self) -> int:
        return len(self._tools)

    async def run(self, call: ToolCall) -> str:
        """The tool's answer as text for the LLM, or an error text; never raises."""
        tool = self._tools.get(call.name)
        if tool is None:
            return f"error: no tool named {call.name!r}; tools: {', '.join(self._tools)}"
        try:
            args = json.loads(call.arguments or "{}")
            if not isinstance(args, dict):
                raise ValueError("arguments must be a JSON object")
            # Small models invent extra arguments; the tool's own signature decides.
            known = tool.spec.parameters["properties"]
            args = {k: v for k, v in args.items() if k in known}
            if inspect.iscoroutinefunction(tool.fn):
                result = await asyncio.wait_for(tool.fn(**args), self.timeout_s)
            else:
                result = await asyncio.wait_for(asyncio.to_thread(tool.fn, **args), self.timeout_s)
        except TimeoutError:
            return f"error: {call.name} took longer than {self.timeout_s:.0f} s"
        except Exception as exc:
            return f"error: {call.name} failed: {type(exc).__name__}: {exc}"
        return result if isinstance(result, str) else json.dumps(result)

    async def run_all(
        self,
        calls: list[ToolCall],
        *,
        clock: Clock,
        slow_after_s: float,
        on_slow: Callable[[], None],
    ) -> list[str]:
        """Run the calls concurrently (off the audio path); `on_slow` fires once if they
        are still running after `slow_after_s` (the agent says "One moment.")."""
        work = asyncio.ensure_future(asyncio.gather(*(self.run(c) for c in calls)))

        async def watch() -> None:
            await clock.sleep(slow_after_s)
            if not work.done():
                on_slow()

        watcher = asyncio.ensure_future(watch())
        try:
            return list(await work)
        finally:
            watcher.cancel()
            work.cancel()


def ask(
    llm: LLMProvider, messages: Sequence[Message], tools: ToolBox | None, *, max_tokens: int | None
) -> AsyncIterator[str | ToolCall]:
    """The LLM's stream, offered the tools where both sides can do it."""
    if tools is not None and len(tools) and llm.capabilities.tools:
        return llm.generate_with_tools(messages, tools.specs(), max_tokens=max_tokens)
    return llm.generate(messages, max_tokens=max_tokens)


def _spec(fn: Callable[..., Any]) -> ToolSpec:
    properties: dict[str, dict[str, str]] = {}
    required: list[str] = []
    for name, param in inspect.signature(fn).parameters.items():
        hint = param.annotation if param.annotation is not inspect.Parameter.empty else str
        if isinstance(hint, str):  # `from __future__ import annotations`
            hint = {"str": str, "int": int, "float": float, "bool": bool}.get(hint, str)
        properties[name] = {"type": _JSON_TYPES.get(hint, "string")}
        if param.default is inspect.Parameter.empty:
            required.append(name)
    description = inspect.getdoc(fn) or fn.__name__.replace("_", " ")
    parameters = {"type": "object", "properties": properties, "required": required}
    return ToolSpec(fn.__name__, description, parameters)


# -- built-ins ------------------------------------------------------------------------


def current_time() -> str:
    """The current local date and time."""
    return dt.datetime.now().astimezone().strftime("%A %d %B %Y, %H:%M %Z")


_BINARY = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: operator.pow,
}
_UNARY = {ast.UAdd: operator.pos, ast.USub: operator.neg}
_FUNCTIONS = {
    "sqrt": math.sqrt,
    "abs": abs,
    "round": round,
    "log": math.log,
    "sin": math.sin,
    "cos": math.cos,
    "tan": math.tan,
}
_CONSTANTS = {"pi": math.pi, "e": math.e}


def calculate(expression: str) -> str:
    """Evaluate an arithmetic expression, e.g. "17.5 * 3 / 100" or "sqrt(2) ** 3"."""
    if len(expression) > 200:
        raise ValueError("expression too long")
    value = _evaluate(ast.parse(expression, mode="eval").body)
    return f"{value:.10g}" if isinstance(value, float) else str(value)


def _evaluate(node: ast.AST) -> float | int:
    """Numbers, + - * / // % **, unary signs, a few math functions and constants: nothing
    else parses (no names, attributes, calls of anything else: no `eval`)."""
    if isinstance(node, ast.Constant) and type(node.value) in (int, float):
        return node.value
    if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
        left, right = _evaluate(node.left), _evaluate(node.right)
        if isinstance(node.op, ast.Pow) and (abs(right) > 100 or abs(left) > 1e6):
            raise ValueError("power too large")
        return _BINARY[type(node.op)](left, right)
    if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
        return _UNARY[type(node.op)](_evaluate(node.operand))
    if isinstance(node, ast.Name) and node.id in _CONSTANTS:
        return _CONSTANTS[node.id]
    if (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id in _FUNCTIONS
        and not node.keywords
        and len(node.args) <= 2
    ):
        return _FUNCTIONS[node.func.id](*(_evaluate(a) for a in node.args))
    raise ValueError(f"not allowed in a calculation: {ast.dump(node)[:60]}")


def tavily_search(api_key: str, base_url: str = "https://api.tavily.com") -> Callable[..., Any]:
    """A `web_search` tool backed by Tavily's search API."""

    async def web_search(query: str) -> str:
        """Search the web for current information; returns a short answer and sources."""
        import httpx

        async with httpx.AsyncClient(timeout=8.0) as client:
            response = await client.post(
                f"{base_url.rstrip('/')}/search",
                headers={"Authorization": f"Bearer {api_key}"},
                json={"query": query, "max_results": 3, "include_answer": True},
            )
        if response.status_code != 200:
            raise RuntimeError(f"Tavily answered {response.status_code}")
        data = response.json()
        results = [
            f"{r.get('title', '')}: {r.get('content', '')[:300]}" for r in data.get("results", [])
        ]
        return json.dumps({"answer": data.get("answer"), "results": results})

    return web_search


def default_toolbox(*, tavily_api_key: str | None = None, tavily_url: str | None = None) -> ToolBox:
    """The built-in tools (web search only with a Tavily key)."""
    box = ToolBox()
    box.tool(current_time)
    box.tool(calculate)
    if tavily_api_key:
        box.tool(tavily_search(tavily_api_key, tavily_url or "https://api.tavily.com"))
    return box
