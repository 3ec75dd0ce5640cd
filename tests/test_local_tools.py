"""Tool calls with the local model (local_tools.py), on a scripted stand-in for llama.cpp:
what is held back, parsed, re-asked and spoken. The real model's accuracy is measured by
`voxloop eval tools`, not here."""

from __future__ import annotations

from collections.abc import Sequence

from voxloop.providers.base import Message, ToolCall, ToolSpec
from voxloop.providers.local import local_tools
from voxloop.providers.local.local_tools import parse_calls

SPECS = [
    ToolSpec("calculate", "Arithmetic.", {"type": "object", "properties": {}}),
    ToolSpec("current_time", "The time.", {"type": "object", "properties": {}}),
]


class ScriptedLlama:
    """Answers each `_deltas` call with the next scripted list of deltas."""

    def __init__(self, *answers: list[str]) -> None:
        self.answers = list(answers)
        self.calls: list[tuple[list[Message], tuple[ToolSpec, ...]]] = []

    async def _deltas(self, messages, max_tokens, temperature, tools: Sequence[ToolSpec] = ()):
        self.calls.append((list(messages), tuple(tools)))
        for delta in self.answers.pop(0):
            yield delta


async def run(llm, messages, tools=SPECS) -> list:
    return [i async for i in local_tools.generate(llm, messages, tools, 80, None)]


ASK = [Message("system", "Be brief."), Message("user", "What is 17 times 3?")]


async def test_a_json_call_is_held_back_and_becomes_a_tool_call():
    llm = ScriptedLlama([" ", '{"name": "calc', 'ulate", "arguments": {"expression": "17*3"}}'])
    assert await run(llm, ASK) == [ToolCall("local_1", "calculate", '{"expression": "17*3"}')]
    assert llm.calls[0][1] == tuple(SPECS)


async def test_several_calls_one_per_line_and_arguments_as_text():
    text = (
        '<tool_call>{"name": "current_time", "arguments": {}}</tool_call>\n'
        '{"name": "calculate", "arguments": "{\\"expression\\": \\"1+1\\"}"}'
    )
    llm = ScriptedLlama([text])
    assert await run(llm, ASK) == [
        ToolCall("local_1", "current_time", "{}"),
        ToolCall("local_2", "calculate", '{"expression": "1+1"}'),
    ]


async def test_plain_text_streams_as_it_comes():
    llm = ScriptedLlama(["Fifty", "-one."])
    assert await run(llm, ASK) == ["Fifty", "-one."]


async def test_json_that_is_no_call_is_never_spoken_the_question_is_asked_again():
    llm = ScriptedLlama(['{"name": "launch_rockets", "arguments": {}}'], ["It is 51."])
    assert await run(llm, ASK) == ["It is 51."]
    assert llm.calls[1][1] == ()  # the second time without tools


async def test_after_the_results_the_answer_is_asked_for_as_text_without_tools():
    call = ToolCall("local_1", "calculate", '{"expression": "17*3"}')
    conversation = [
        *ASK,
        Message("assistant", "", tool_calls=(call,)),
        Message("tool", "51", tool_call_id="local_1"),
    ]
    llm = ScriptedLlama(["Seventeen times three is 51."])
    assert await run(llm, conversation) == ["Seventeen times three is 51."]
    sent, tools = llm.calls[0]
    assert tools == ()
    assert [m.role for m in sent] == ["system", "user", "user"]
    assert sent[-1].content == "(The calculate tool returned: 51. Answer the question with it.)"


def test_parse_ignores_broken_and_unknown_objects():
    assert parse_calls('{"name": "calculate", "arguments": {"expression": "1"', {"calculate"}) == []
    assert parse_calls('{"name": "other"}', {"calculate"}) == []
