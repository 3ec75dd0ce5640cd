"""The Anthropic adapter (official SDK) against a local server speaking the Messages
streaming format."""

from __future__ import annotations

import logging

import pytest

from fake_openai import ANSWER, fake_openai_server
from voxloop.errors import ProviderCallError
from voxloop.providers.base import Message
from voxloop.providers.cloud.anthropic_llm import AnthropicLLM, to_anthropic
from voxloop.providers.resilience import RetryPolicy

KEY = "sk-ant-test-secret-456"
MESSAGES = [Message("system", "Be brief."), Message("user", "What is the capital of France?")]


@pytest.fixture
def server():
    with fake_openai_server() as fake:
        yield fake


def llm(server, **policy) -> AnthropicLLM:
    defaults = {"attempts": 3, "base_s": 0.01, "cap_s": 0.1, "first_item_timeout_s": 2.0}
    return AnthropicLLM(
        model="claude-test",
        api_key=KEY,
        base_url=server.url.removesuffix("/v1"),
        policy=RetryPolicy(**{**defaults, **policy}),
    )


async def answer(provider) -> str:
    return "".join([d async for d in provider.generate(MESSAGES, max_tokens=30)])


def test_messages_become_alternating_turns_with_the_system_prompt_apart():
    system, turns = to_anthropic(
        [
            Message("system", "Be brief."),
            Message("assistant", "Hello! How can I help?"),  # a greeting came first
            Message("user", "hi"),
            Message("user", "are you there?"),
        ]
    )
    assert system == "Be brief."
    assert [t["role"] for t in turns] == ["user", "assistant", "user"]
    assert turns[2]["content"] == "hi\nare you there?"


async def test_streams_the_answer_in_the_vendor_format(server):
    assert await answer(llm(server)) == ANSWER
    body = server.requests[0]
    assert body["system"] == "Be brief." and body["stream"] is True and body["max_tokens"] == 30
    assert body["messages"] == [{"role": "user", "content": "What is the capital of France?"}]
    sent = server.headers[0]
    # The key travels as x-api-key or (newer SDKs) as a bearer token.
    assert sent.get("x-api-key") == KEY or sent.get("authorization") == f"Bearer {KEY}"
    assert "anthropic-version" in server.headers[0]


@pytest.mark.parametrize("failures", [["429"], ["529", "529"]])
async def test_rate_limits_and_overload_are_retried(server, failures):
    server.script = list(failures)
    assert await answer(llm(server)) == ANSWER
    assert len(server.requests) == len(failures) + 1


async def test_a_bad_request_is_not_retried(server):
    server.script = ["400"]
    with pytest.raises(ProviderCallError) as err:
        await answer(llm(server))
    assert err.value.status == 400 and not err.value.retryable
    assert len(server.requests) == 1


async def test_a_slow_first_byte_times_out(server):
    server.script = ["slow"]
    with pytest.raises(ProviderCallError, match="before the first token"):
        await answer(llm(server, attempts=1, first_item_timeout_s=0.3))


@pytest.mark.parametrize("mode", ["drop", "error_event"])
async def test_a_stream_that_breaks_midway_is_an_error_not_a_retry(server, mode):
    server.script = [mode]
    seen: list[str] = []
    with pytest.raises(ProviderCallError):
        async for delta in llm(server).generate(MESSAGES):
            seen.append(delta)
    assert "".join(seen) == "Paris is"
    assert len(server.requests) == 1


async def test_the_key_is_never_logged(server, caplog):
    server.script = ["529", "529", "529"]
    caplog.set_level(logging.DEBUG)
    with pytest.raises(ProviderCallError) as err:
        await answer(llm(server))
    assert KEY not in caplog.text and KEY not in str(err.value)
