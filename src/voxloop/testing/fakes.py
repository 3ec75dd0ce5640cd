"""Scripted fake providers for every stage.

They implement the real contracts with trivial, deterministic logic, take an injectable
clock for any simulated latency (zero by default), and record what they were asked to do
so tests can assert on it. The registry knows them as "fake" for every stage, which is
also what `--providers fake` benchmarks run on.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator, Callable, Sequence

import numpy as np

from voxloop.clock import Clock, RealClock
from voxloop.providers.base import (
    AudioChunk,
    Capabilities,
    LLMProvider,
    Message,
    ProviderInfo,
    STTProvider,
    ToolCall,
    Transcript,
    TTSProvider,
    TurnJudgeProvider,
    VADFrame,
    VADProvider,
)


class FakeVAD(VADProvider):
    """Energy threshold per 32 ms frame: loud is speech. Real logic, no model."""

    name = "fake"
    capabilities = Capabilities(streaming_input=True)

    def __init__(self, rms_threshold: float = 0.01) -> None:
        self.rms_threshold = rms_threshold

    def info(self) -> ProviderInfo:
        return ProviderInfo(self.name, "energy threshold")

    async def detect(self, audio: AsyncIterable[np.ndarray]) -> AsyncIterator[VADFrame]:
        pending = np.zeros(0, dtype=np.float32)
        done = 0
        n = self.frame_samples
        async for chunk in audio:
            pending = np.concatenate([pending, chunk.astype(np.float32, copy=False)])
            while len(pending) >= n:
                frame, pending = pending[:n], pending[n:]
                rms = float(np.sqrt(frame.dot(frame) / n))
                prob = min(1.0, rms / (2 * self.rms_threshold))
                yield VADFrame(done / self.sample_rate, n / self.sample_rate, prob, prob >= 0.5)
                done += n


class FakeSTT(STTProvider):
    """Returns scripted transcripts, one per utterance; partials are growing prefixes,
    one more word per `partial_every_s` of audio while it streams.

    An utterance is recognised by its first samples, so a second look at the same speech
    (the session's speculative transcription) gets the same script entry.
    """

    name = "fake"
    capabilities = Capabilities(streaming_input=True, partials=True)

    def __init__(
        self,
        script: Sequence[str] = (),
        *,
        latency_s: float = 0.0,
        partial_every_s: float = 0.3,
        clock: Clock | None = None,
    ) -> None:
        self.script = list(script)
        self.latency_s = latency_s
        self.partial_every_s = partial_every_s
        self.clock = clock or RealClock()
        self.calls: list[float] = []  # seconds of audio per call
        self._texts: dict[bytes, str] = {}

    def info(self) -> ProviderInfo:
        return ProviderInfo(self.name, "scripted")

    def _text_for(self, head: np.ndarray) -> str | None:
        key = head[:800].tobytes()
        if key not in self._texts and self.script:
            self._texts[key] = self.script.pop(0)
        return self._texts.get(key)

    async def transcribe(self, audio: AsyncIterable[np.ndarray]) -> AsyncIterator[Transcript]:
        samples, head, text, shown = 0, np.zeros(0, np.float32), None, 0
        step = int(self.partial_every_s * self.sample_rate)
        async for chunk in audio:
            if len(head) < 800:
                head = np.concatenate([head, chunk[: 800 - len(head)]])
            samples += len(chunk)
            if text is None and len(head) >= 800:
                text = self._text_for(head)
            words = text.split() if text else []
            while text and samples >= (shown + 1) * step and shown + 1 < len(words):
                shown += 1
                yield Transcript(" ".join(words[:shown]), is_final=False)
        seconds = samples / self.sample_rate
        self.calls.append(seconds)
        if text is None:
            text = self._text_for(head) or f"fake transcript of {seconds:.1f} seconds"
        if self.latency_s:
            await self.clock.sleep(self.latency_s)
        yield Transcript(text, is_final=True, language="en")


class FakeLLM(LLMProvider):
    """Streams a scripted reply word by word, optionally with a per-token delay."""

    name = "fake"

    def __init__(
        self,
        replies: Sequence[str] | Callable[[Sequence[Message]], str] = (),
        *,
        first_token_s: float = 0.0,
        token_s: float = 0.0,
        clock: Clock | None = None,
    ) -> None:
        self.replies = replies if callable(replies) else list(replies)
        self.first_token_s = first_token_s
        self.token_s = token_s
        self.clock = clock or RealClock()
        self.requests: list[list[Message]] = []
        self.tokens_produced = 0
        self.tokens_by_request: list[int] = []

    def info(self) -> ProviderInfo:
        return ProviderInfo(self.name, "scripted")

    def _reply(self, messages: Sequence[Message]) -> str:
        if callable(self.replies):
            return self.replies(messages)
        if self.replies:
            return self.replies.pop(0)
        return f"You said: {last_user(messages)}"

    async def generate(
        self,
        messages: Sequence[Message],
        *,
        max_tokens: int | None = None,
        temperature: float | None = None,
    ) -> AsyncIterator[str]:
        self.requests.append(list(messages))
        self.tokens_by_request.append(0)
        request = len(self.tokens_by_request) - 1
        words = self._reply(messages).split(" ")
        if max_tokens is not None:
            words = words[:max_tokens]
        if self.first_token_s:
            await self.clock.sleep(self.first_token_s)
        for i, word in enumerate(words):
            if i and self.token_s:
                await self.clock.sleep(self.token_s)
            self.tokens_produced += 1
            self.tokens_by_request[request] += 1
            yield word if i == 0 else " " + word


class MemoryEchoLLM(FakeLLM):
    """Says how much conversation it was given, so a test can see the history arrive
    (e.g. in a server process on another worker): "2 earlier messages. You said: hi"."""

    name = "memory-echo"

    def _reply(self, messages: Sequence[Message]) -> str:
        earlier = sum(1 for m in messages[:-1] if m.role != "system")
        return f"{earlier} earlier messages. You said: {messages[-1].content}"


class FakeToolLLM(FakeLLM):
    """Plays scripted rounds: each call of `generate_with_tools` yields the next round's
    items, text deltas and `ToolCall`s, so a test can drive the tool loop exactly."""

    name = "fake-tools"
    capabilities = Capabilities(tools=True)

    def __init__(self, rounds: Sequence[Sequence[str | ToolCall]], **kw) -> None:
        super().__init__(**kw)
        self.rounds = [list(r) for r in rounds]

    async def generate_with_tools(
        self, messages, tools, *, max_tokens=None, temperature=None
    ) -> AsyncIterator[str | ToolCall]:
        self.requests.append(list(messages))
        self.offered = list(tools)
        for item in self.rounds.pop(0) if self.rounds else ["Done."]:
            if self.token_s:
                await self.clock.sleep(self.token_s)
            yield item


class FakeTTS(TTSProvider):
    """A quiet tone whose length follows the text (`ms_per_char`), in 100 ms chunks."""

    name = "fake"

    def __init__(
        self,
        *,
        sample_rate: int = 16000,
        ms_per_char: float = 50.0,
        latency_s: float | Callable[[str], float] = 0.0,
        clock: Clock | None = None,
    ) -> None:
        self.sample_rate = sample_rate
        self.ms_per_char = ms_per_char
        self.latency_s = latency_s
        self.clock = clock or RealClock()
        self.texts: list[str] = []

    def info(self) -> ProviderInfo:
        return ProviderInfo(self.name, f"tone ({self.sample_rate} Hz)")

    async def synthesize(self, text: str) -> AsyncIterator[AudioChunk]:
        self.texts.append(text)
        delay = self.latency_s(text) if callable(self.latency_s) else self.latency_s
        if delay:
            await self.clock.sleep(delay)
        total = int(len(text) * self.ms_per_char / 1000 * self.sample_rate)
        t = np.arange(total) / self.sample_rate
        pcm = (0.1 * np.sin(2 * np.pi * 220 * t) * 32767).astype(np.int16)
        step = self.sample_rate // 10
        for start in range(0, total, step):
            yield AudioChunk(pcm[start : start + step], self.sample_rate)


class FakeTurnJudge(TurnJudgeProvider):
    """Scripted P(turn complete): a constant, a list played in order (its last value then
    repeats), or a function of the audio. Records the seconds of audio of each call."""

    name = "fake"
    capabilities = Capabilities(streaming_output=False)

    def __init__(
        self, probabilities: float | Sequence[float] | Callable[[np.ndarray], float] = 1.0
    ) -> None:
        if isinstance(probabilities, int | float):
            probabilities = [float(probabilities)]
        self.probabilities = probabilities if callable(probabilities) else list(probabilities)
        self.calls: list[float] = []

    def info(self) -> ProviderInfo:
        return ProviderInfo(self.name, "scripted")

    async def complete_probability(self, audio: np.ndarray) -> float:
        self.calls.append(len(audio) / self.sample_rate)
        if callable(self.probabilities):
            return float(self.probabilities(audio))
        if len(self.probabilities) > 1:
            return self.probabilities.pop(0)
        return self.probabilities[0] if self.probabilities else 1.0


def last_user(messages: Sequence[Message]) -> str:
    """The latest user message's text ("" if there is none)."""
    return next((m.content for m in reversed(messages) if m.role == "user"), "")
