"""Tool calling: the registry, the built-in tools, the reply's tool loop, and the
OpenAI-compatible adapter's tool calls against the local fake server."""

from __future__ import annotations

import asyncio
import json

import pytest

from fake_openai import fake_openai_server
from voxloop.protocol.messages import Text
from voxloop.providers.base import Message, ToolCall
from voxloop.providers.cloud.anthropic_llm import AnthropicLLM
from voxloop.providers.cloud.openai_llm import OpenAICompatibleLLM
from voxloop.reply.tools import ToolBox, calculate, default_toolbox, tavily_search
from voxloop.testing.fakes import FakeToolLLM

from engine_helpers import Driver, make_services


@pytest.mark.parametrize(
    "expression, value",
    [
        ("17 * 3", "51"),
        ("2 ** 10", "1024"),
        ("-(3 + 4) / 2", "-3.5"),
        ("sqrt(16) + pi", "7.141592654"),
    ],
)
def test_the_calculator(expression, value):
    assert calculate(expression) == value


@pytest.mark.parametrize(
    "expression",
    [
        "__import__('os').system('ls')",
        "open('x')",
        "(1).__class__",
        "a + 1",
        "9 ** 9 ** 9",
        "1" * 300,
    ],
)
def test_the_calculator_refuses_anything_but_arithmetic(expression):
    with pytest.raises((ValueError, SyntaxError)):
        calculate(expression)


def test_the_decorator_derives_the_schema():
    box = ToolBox()

    @box.tool
    def book_table(people: int, time: str, outside: bool = False) -> str:
        """Book a table at the restaurant."""
        return "booked"

    (spec,) = box.specs()
    assert spec.name == "book_table" and spec.description == "Book a table at the restaurant."
    assert spec.parameters["properties"] == {
        "people": {"type": "integer"},
        "time": {"type": "string"},
        "outside": {"type": "boolean"},
    }
    assert spec.parameters["required"] == ["people", "time"]


async def test_a_tool_that_fails_answers_with_an_error_text():
    box = ToolBox(timeout_s=0.2)

    @box.tool
    def broken() -> str:
        """Always fails."""
        raise RuntimeError("database down")

    @box.tool
    async def stuck() -> str:
        """Never answers."""
        await asyncio.Event().wait()
        return ""

    assert await box.run(ToolCall("1", "broken", "{}")) == (
        "error: broken failed: RuntimeError: database down"
    )
    assert "longer than" in await box.run(ToolCall("2", "stuck", "{}"))
    assert "no tool named 'nope'" in await box.run(ToolCall("3", "nope", "{}"))
    assert "failed" in await box.run(ToolCall("4", "broken", "{not json"))


async def test_arguments_the_tool_does_not_take_are_dropped():
    """Small models invent arguments (the schema itself, say); the signature decides."""
    box = default_toolbox()
    invented = json.dumps({"expression": "2+2", "type": "object", "properties": {}})
    assert await box.run(ToolCall("1", "calculate", invented)) == "4"
    assert "UTC" in await box.run(ToolCall("2", "current_time", '{"type": "string"}'))


async def test_the_reply_runs_the_tool_and_answers_with_its_result():
    llm = FakeToolLLM(
        [
            ["Let me work that out. ", ToolCall("c1", "calculate", '{"expression": "17 * 3"}')],
            ["Seventeen times three is 51."],
        ]
    )
    svc = make_services(llm=llm)
    svc.tools = default_toolbox()
    d = await Driver.start(svc)
    await d.session.handle(Text(content="what is 17 times 3?"))
    await d.run_for(10.0)
    assert [s.name for s in llm.offered] == ["current_time", "calculate"]
    second = llm.requests[1]
    assert second[-2] == Message(
        "assistant", "", tool_calls=(llm_call := second[-2].tool_calls[0],)
    )
    assert llm_call.name == "calculate"
    assert second[-1] == Message("tool", "51", tool_call_id="c1")
    assert d.events("tool_calls")[0]["calls"] == ["calculate"]
    spoken = d.session.services.tts.texts
    assert spoken == ["Let me work that out.", "Seventeen times three is 51."]
    turn = d.session.state.history.turns[-1]
    assert turn.assistant == "Let me work that out. Seventeen times three is 51."


async def test_a_slow_tool_gets_a_filler_first():
    llm = FakeToolLLM([[ToolCall("c1", "slow_lookup", "{}")], ["Found it."]])
    svc = make_services(llm=llm)
    box = ToolBox()

    @box.tool
    async def slow_lookup() -> str:
        """Takes a while."""
        await svc.clock.sleep(2.0)
        return "the answer"

    svc.tools = box
    d = await Driver.start(svc)
    await d.session.handle(Text(content="look it up"))
    await d.run_for(10.0)
    assert d.session.services.tts.texts == ["One moment.", "Found it."]


async def test_the_openai_adapter_streams_tool_calls_and_sends_results_back():
    with fake_openai_server() as server:
        server.script = ["tool"]
        llm = OpenAICompatibleLLM(base_url=server.url, model="m")
        items = [
            i
            async for i in llm.generate_with_tools(
                [Message("user", "what is 17 times 3?")], default_toolbox().specs()
            )
        ]
        assert items == [ToolCall("call_1", "calculate", '{"expression": "17 * 3"}')]
        tools = server.requests[0]["tools"]
        assert {t["function"]["name"] for t in tools} == {"current_time", "calculate"}
        # The results go back in the vendor's format.
        follow_up = [
            Message("user", "what is 17 times 3?"),
            Message("assistant", "", tool_calls=tuple(items)),
            Message("tool", "51", tool_call_id="call_1"),
        ]
        text = "".join([i async for i in llm.generate_with_tools(follow_up, [])])
        assert text == "Paris is the capital of France."
        sent = server.requests[1]["messages"]
        assert sent[1]["tool_calls"][0]["function"]["name"] == "calculate"
        assert sent[2] == {"role": "tool", "content": "51", "tool_call_id": "call_1"}


async def test_the_anthropic_adapter_streams_tool_use_and_sends_results_back():
    with fake_openai_server() as server:
        server.script = ["tool"]
        llm = AnthropicLLM(base_url=server.url.removesuffix("/v1"), model="m", api_key="k")
        question = [Message("system", "Be brief."), Message("user", "what is 17 times 3?")]
        items = [i async for i in llm.generate_with_tools(question, default_toolbox().specs())]
        call = ToolCall("toolu_1", "calculate", '{"expression": "17 * 3"}')
        assert items == ["Let me work that out.", call]
        tools = server.requests[0]["tools"]
        assert {t["name"] for t in tools} == {"current_time", "calculate"}
        assert tools[1]["input_schema"]["required"] == ["expression"]
        follow_up = [
            *question,
            Message("assistant", "Let me work that out.", tool_calls=(call,)),
            Message("tool", "51", tool_call_id="toolu_1"),
        ]
        text = "".join([i async for i in llm.generate_with_tools(follow_up, [])])
        assert text == "Paris is the capital of France."
        sent = server.requests[1]["messages"]
        assert sent[1] == {
            "role": "assistant",
            "content": [
                {"type": "text", "text": "Let me work that out."},
                {
                    "type": "tool_use",
                    "id": "toolu_1",
                    "name": "calculate",
                    "input": {"expression": "17 * 3"},
                },
            ],
        }
        assert sent[2] == {
            "role": "user",
            "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "51"}],
        }


async def test_web_search_goes_through_tavily():
    with fake_openai_server() as server:
        search = tavily_search("tvly-secret", server.url.removesuffix("/v1"))
        result = json.loads(await search("weather in Rome"))
        assert result["answer"] == "It is sunny in Rome."
        assert server.requests[0]["query"] == "weather in Rome"
        assert server.headers[0]["authorization"] == "Bearer tvly-secret"
    assert [t.name for t in default_toolbox(tavily_api_key="k").specs()][-1] == "web_search"
