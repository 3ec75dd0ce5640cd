"""The OpenAI-compatible LLM adapter and the resilience around it, against a local fake
server speaking the vendor's streaming wire format. Nothing here reaches the internet."""

from __future__ import annotations

import logging
import random
import time

import pytest
from starlette.testclient import TestClient

from fake_openai import ANSWER, fake_openai_server
from voxloop.clock import VirtualClock
from voxloop.config.settings import Settings
from voxloop.errors import CircuitOpenError, ProviderCallError
from voxloop.providers.base import Message
from voxloop.providers.cloud.openai_llm import OpenAICompatibleLLM
from voxloop.providers.fallback import FallbackLLM
from voxloop.providers.resilience import CircuitBreaker, RetryPolicy
from voxloop.server.app import create_app
from voxloop.testing.fakes import FakeLLM

from test_protocol import receive_until, start

MESSAGES = [Message("system", "Be brief."), Message("user", "What is the capital of France?")]
KEY = "sk-test-very-secret-123"


@pytest.fixture
def server():
    with fake_openai_server() as fake:
        yield fake


def llm(server, **policy) -> OpenAICompatibleLLM:
    defaults = {"attempts": 3, "base_s": 0.01, "cap_s": 0.1, "first_item_timeout_s": 2.0}
    return OpenAICompatibleLLM(
        base_url=server.url,
        model="test-model",
        api_key=KEY,
        policy=RetryPolicy(**{**defaults, **policy}),
    )


async def answer(provider) -> str:
    return "".join([d async for d in provider.generate(MESSAGES, max_tokens=20)])


async def test_streams_the_answer_and_sends_the_request_in_the_vendor_format(server):
    assert await answer(llm(server)) == ANSWER
    body = server.requests[0]
    assert body["model"] == "test-model" and body["stream"] is True and body["max_tokens"] == 20
    assert body["messages"][1] == {"role": "user", "content": "What is the capital of France?"}
    assert server.headers[0]["authorization"] == f"Bearer {KEY}"


@pytest.mark.parametrize("failures", [["429"], ["500", "500"]])
async def test_retryable_errors_are_retried(server, failures):
    server.script = list(failures)
    assert await answer(llm(server)) == ANSWER
    assert len(server.requests) == len(failures) + 1


async def test_a_client_error_is_not_retried(server):
    server.script = ["400"]
    with pytest.raises(ProviderCallError) as err:
        await answer(llm(server))
    assert err.value.status == 400 and not err.value.retryable
    assert "error 400" in str(err.value)
    assert len(server.requests) == 1


async def test_giving_up_after_the_last_attempt(server):
    server.script = ["500", "500", "500", "500"]
    with pytest.raises(ProviderCallError, match="500"):
        await answer(llm(server, attempts=3))
    assert len(server.requests) == 3


async def test_a_slow_first_byte_times_out(server):
    server.script = ["slow"]
    t0 = time.monotonic()
    with pytest.raises(ProviderCallError, match="before the first token"):
        await answer(llm(server, attempts=1, first_item_timeout_s=0.3))
    assert time.monotonic() - t0 < server.slow_s  # it did not wait for the server


async def test_a_connection_dropped_mid_stream_is_an_error_not_a_retry(server):
    server.script = ["drop"]
    seen: list[str] = []
    with pytest.raises(ProviderCallError, match="connection"):
        async for delta in llm(server).generate(MESSAGES):
            seen.append(delta)
    assert "".join(seen) == "Paris is"  # what came before the drop, and nothing twice
    assert len(server.requests) == 1


async def test_a_malformed_chunk_is_named(server):
    server.script = ["malformed"]
    with pytest.raises(ProviderCallError, match="malformed stream chunk"):
        await answer(llm(server))


async def test_the_key_is_never_logged(server, caplog):
    server.script = ["500", "500", "500"]
    caplog.set_level(logging.DEBUG)
    with pytest.raises(ProviderCallError) as err:
        await answer(llm(server))
    assert KEY not in caplog.text and KEY not in str(err.value)


def test_backoff_is_full_jitter_and_honours_retry_after():
    policy = RetryPolicy(base_s=0.2, cap_s=2.0, rng=random.Random(1))
    plain = ProviderCallError("x", retryable=True)
    delays = [policy.delay(attempt, plain) for attempt in range(8) for _ in range(50)]
    assert all(0 <= d <= 2.0 for d in delays)
    assert max(policy.delay(0, plain) for _ in range(200)) <= 0.2
    assert len({round(d, 6) for d in delays}) > 100  # jittered, not fixed steps
    asked = ProviderCallError("x", retryable=True, retry_after_s=1.5)
    assert policy.delay(0, asked) >= 1.5
    assert policy.delay(0, ProviderCallError("x", retryable=True, retry_after_s=60)) == 2.0


def test_the_breaker_opens_skips_and_closes_again():
    clock = VirtualClock()
    breaker = CircuitBreaker(threshold=2, cooldown_s=10, clock=clock)
    breaker.failure()
    breaker.check("llm")  # one failure: still closed
    breaker.failure()
    assert breaker.state == "open"
    with pytest.raises(CircuitOpenError, match="skipped"):
        breaker.check("llm")
    clock._now += 10
    assert breaker.state == "half-open"
    breaker.check("llm")  # one trial call may go through
    breaker.failure()  # ...and fails: open again at once
    assert breaker.state == "open"
    clock._now += 10
    breaker.success()
    assert breaker.state == "closed" and breaker.failures == 0


async def test_fallback_switches_within_the_timeout(server):
    server.script = ["slow"]
    chain = FallbackLLM([llm(server, attempts=1, first_item_timeout_s=0.3), FakeLLM(["Local."])])
    t0 = time.monotonic()
    assert await answer(chain) == "Local."
    assert time.monotonic() - t0 < server.slow_s


async def test_an_open_circuit_is_skipped_without_a_call(server):
    server.script = ["500"]
    primary = llm(server, attempts=1)
    breakers = [CircuitBreaker(threshold=1), CircuitBreaker(threshold=1)]
    chain = FallbackLLM([primary, FakeLLM(["Local."] * 3)], breakers)
    assert await answer(chain) == "Local."
    assert len(server.requests) == 1
    assert await answer(chain) == "Local."
    assert len(server.requests) == 1  # the dead provider was not called again


async def test_fallback_never_switches_in_the_middle_of_an_answer(server):
    server.script = ["drop"]
    chain = FallbackLLM([llm(server), FakeLLM(["Local."])])
    with pytest.raises(ProviderCallError):
        await answer(chain)


def _reply_through_the_server(llm_settings: dict, text: str) -> str:
    """One text turn through a server built from settings alone (fakes for the rest)."""
    settings = Settings(
        vad={"provider": "fake"},
        stt={"provider": "fake"},
        tts={"provider": "fake"},
        llm=llm_settings,
        store={"backend": "memory"},
    )
    app = create_app(settings, warmup=False)
    with TestClient(app) as client, client.websocket_connect("/ws") as ws:
        start(ws)
        ws.send_json({"type": "text", "content": text})
        events = receive_until(ws, "metrics")
    return next(
        e["content"]
        for e in events
        if isinstance(e, dict) and e["type"] == "llm_response" and e["is_complete"]
    )


def test_config_alone_switches_the_server_to_an_openai_compatible_llm(server):
    llm_settings = {"provider": "openai", "base_url": server.url, "model": "m", "api_key": KEY}
    assert _reply_through_the_server(llm_settings, "What is the capital of France?") == ANSWER
    assert server.requests[0]["messages"][-1]["content"] == "What is the capital of France?"


def test_a_fallback_chain_from_config(server):
    server.script = ["400"]
    llm_settings = {
        "provider": "openai",
        "base_url": server.url,
        "model": "m",
        "fallback": ["fake"],
    }
    # The fake LLM took over.
    assert _reply_through_the_server(llm_settings, "hello") == "You said: hello"
