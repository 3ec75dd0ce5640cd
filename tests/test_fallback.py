"""Fallback chains for STT, TTS and the LLM (tools included), and chains built from config."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterable, AsyncIterator

import numpy as np
import pytest

from voxloop.config.settings import Settings
from voxloop.errors import ProviderCallError
from voxloop.hearing.utterance import AudioQueue
from voxloop.providers.base import (
    AudioChunk,
    Message,
    ProviderInfo,
    STTProvider,
    ToolCall,
    ToolSpec,
    Transcript,
    TTSProvider,
)
from voxloop.providers.fallback import FallbackLLM, FallbackSTT, FallbackTTS
from voxloop.providers.registry import ProviderPool
from voxloop.providers.resilience import CircuitBreaker
from voxloop.testing.fakes import FakeLLM, FakeToolLLM, FakeTTS

CHUNK = 1600  # 100 ms at 16 kHz


def chunk(i: int) -> np.ndarray:
    return np.full(CHUNK, i / 100, np.float32)


class CountingSTT(STTProvider):
    """Hears everything and says which chunks it heard."""

    name = "counting"

    def __init__(self) -> None:
        self.heard: list[int] = []

    def info(self) -> ProviderInfo:
        return ProviderInfo(self.name, "test")

    async def transcribe(self, audio: AsyncIterable[np.ndarray]) -> AsyncIterator[Transcript]:
        async for c in audio:  # chunks that waited together arrive joined (AudioQueue)
            self.heard.extend(round(float(v) * 100) for v in c[::CHUNK])
            yield Transcript(f"{len(self.heard)} chunks", is_final=False)
        yield Transcript(" ".join(map(str, self.heard)), is_final=True)


class DroppingSTT(STTProvider):
    """Reads audio in a task (as a WebSocket STT does) and drops while that task waits
    for more."""

    name = "dropping"

    def __init__(self, after: int) -> None:
        self.after = after
        self.heard = 0

    def info(self) -> ProviderInfo:
        return ProviderInfo(self.name, "test")

    async def transcribe(self, audio: AsyncIterable[np.ndarray]) -> AsyncIterator[Transcript]:
        enough = asyncio.Event()

        async def read() -> None:
            async for _ in audio:
                self.heard += 1
                if self.heard >= self.after:
                    enough.set()

        reader = asyncio.create_task(read())
        await enough.wait()
        yield Transcript("half", is_final=False)
        await asyncio.sleep(0)  # the reader is now waiting for the next chunk
        reader.cancel()
        raise ProviderCallError("connection dropped", retryable=True)


async def feed(queue: AudioQueue, n: int) -> None:
    for i in range(n):
        queue.put(chunk(i))
        await asyncio.sleep(0.001)
    queue.close()


async def test_stt_fallback_replays_the_whole_utterance_into_the_next_stt():
    second = CountingSTT()
    chain = FallbackSTT([DroppingSTT(after=3), second])
    queue = AudioQueue()
    producer = asyncio.create_task(feed(queue, 8))
    results = [r async for r in chain.transcribe(queue)]
    await producer
    assert results[0].text == "half"  # the first STT's partial came through
    assert results[-1] == Transcript("0 1 2 3 4 5 6 7", is_final=True)
    assert second.heard == list(range(8))  # nothing lost, nothing twice
    assert [t.get_name() for t in asyncio.all_tasks() if "stt-fallback" in t.get_name()] == []


async def test_stt_ending_without_a_final_hands_over():
    class Mute(CountingSTT):
        async def transcribe(self, audio):
            async for _ in audio:
                pass
            if False:
                yield

    chain = FallbackSTT([Mute(), CountingSTT()])
    queue = AudioQueue()
    await feed(queue, 3)
    assert [r async for r in chain.transcribe(queue)][-1].text == "0 1 2"


async def test_stt_chain_with_every_member_down_names_each_failure():
    chain = FallbackSTT([DroppingSTT(after=1), DroppingSTT(after=1)])
    queue = AudioQueue()
    await feed(queue, 3)
    with pytest.raises(ProviderCallError, match=r"every STT provider failed: dropping: .*dropped"):
        [r async for r in chain.transcribe(queue)]


class DeadTTS(TTSProvider):
    name = "dead"
    sample_rate = 24000

    def info(self) -> ProviderInfo:
        return ProviderInfo(self.name, "test")

    async def synthesize(self, text: str) -> AsyncIterator[AudioChunk]:
        raise ProviderCallError("503 from the TTS", retryable=True)
        yield  # pragma: no cover


async def test_tts_fallback_speaks_at_the_first_members_rate():
    backup = FakeTTS(sample_rate=16000, ms_per_char=100)
    chain = FallbackTTS([DeadTTS(), backup])
    assert chain.sample_rate == 24000
    chunks = [c async for c in chain.synthesize("Hello there.")]
    assert {c.sample_rate for c in chunks} == {24000}
    total = sum(len(c.pcm) for c in chunks)
    expected = int(len("Hello there.") * 0.1 * 24000)  # 1.2 s, resampled 16 → 24 kHz
    assert abs(total - expected) <= 24  # within 1 ms
    assert backup.texts == ["Hello there."]


async def test_tts_open_circuit_is_skipped():
    dead = DeadTTS()
    calls = 0
    original = dead.synthesize

    def counting(text):
        nonlocal calls
        calls += 1
        return original(text)

    dead.synthesize = counting  # type: ignore[method-assign]
    chain = FallbackTTS([dead, FakeTTS()], [CircuitBreaker(threshold=1), CircuitBreaker()])
    for _ in range(3):
        assert [c async for c in chain.synthesize("Hi.")]
    assert calls == 1


class BrokenToolLLM(FakeToolLLM):
    async def generate_with_tools(self, messages, tools, *, max_tokens=None, temperature=None):
        raise ProviderCallError("500 from the LLM", retryable=True)
        yield  # pragma: no cover


SPEC = ToolSpec("calculate", "Arithmetic.", {"type": "object", "properties": {}})


async def test_llm_chain_offers_tools_to_the_members_that_can_call_them():
    call = ToolCall("c1", "calculate", '{"expression": "1+1"}')
    backup = FakeToolLLM([[call]])
    chain = FallbackLLM([BrokenToolLLM([]), backup])
    assert chain.capabilities.tools
    items = [i async for i in chain.generate_with_tools([Message("user", "1+1?")], [SPEC])]
    assert items == [call] and backup.offered == [SPEC]


async def test_a_member_without_tools_answers_from_the_tool_results_as_text():
    plain = FakeLLM(lambda messages: "Heard: " + messages[-1].content)
    chain = FallbackLLM([BrokenToolLLM([]), plain])
    call = ToolCall("c1", "calculate", "{}")
    conversation = [
        Message("user", "1+1?"),
        Message("assistant", "", tool_calls=(call,)),
        Message("tool", "2", tool_call_id="c1"),
    ]
    text = "".join([i async for i in chain.generate_with_tools(conversation, [SPEC])])
    assert text == "Heard: (The calculate tool returned: 2. Answer the question with it.)"
    assert [m.role for m in plain.requests[0]] == ["user", "user"]


def test_the_pool_builds_a_chain_for_each_stage_with_a_fallback():
    settings = Settings(
        vad={"provider": "fake"},
        stt={"provider": "fake", "fallback": ["fake"]},
        llm={"provider": "fake", "fallback": ["fake"]},
        tts={"provider": "fake", "fallback": ["fake"]},
    )
    pool = ProviderPool(settings)
    assert isinstance(pool.get("stt"), FallbackSTT)
    assert isinstance(pool.get("llm"), FallbackLLM)
    assert isinstance(pool.get("tts"), FallbackTTS)
    assert pool.get("tts") is pool.get("tts")  # one chain per process
    assert "fake:" in pool.get("stt").info().model


def _closed_port_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}/v1"


def test_a_whole_turn_survives_dead_cloud_stt_and_tts_by_config_alone():
    """The cloud STT and TTS are unreachable: the chains hand the turn to the fallbacks."""
    from fastapi.testclient import TestClient

    from voxloop.server.app import create_app

    from test_protocol import receive_until, start

    dead = _closed_port_url()
    remote = {"base_url": dead, "retries": 0, "timeout_s": 2.0, "fallback": ["fake"]}
    settings = Settings(
        vad={"provider": "fake"},
        stt={"provider": "openai", **remote},
        tts={"provider": "openai", **remote},
        llm={"provider": "fake"},
        store={"backend": "memory"},
    )
    rng = np.random.default_rng(0)
    speech = (rng.uniform(-0.3, 0.3, 16000) * 32767).astype("<i2").tobytes()
    quiet = bytes(2 * 16000 * 2)  # past any end-of-turn wait (turns.max_silence_s is 1 s)
    app = create_app(settings, warmup=False)
    with TestClient(app) as client, client.websocket_connect("/ws") as ws:
        session = start(ws)
        for audio in (speech, quiet):
            for i in range(0, len(audio), 640):
                ws.send_bytes(audio[i : i + 640])
        events = receive_until(ws, "metrics")
    said = [e for e in events if isinstance(e, dict)]
    finals = [e["text"] for e in said if e["type"] == "final_transcript"]
    assert finals and finals[0].startswith("fake transcript of")
    assert not [e for e in said if e["type"] == "error"]
    # The session announced the first TTS's rate; the fallback voice was resampled to it.
    assert session["output"]["sample_rate"] == 24000
    assert next(e for e in said if e["type"] == "tts_start")["sample_rate"] == 24000
    assert sum(len(e) for e in events if isinstance(e, bytes)) > 0
