"""Fallback chains, one per stage: the first provider that starts answering wins.

A provider that fails before its first item (or whose circuit is open) hands over to the
next one. After the first item an error ends the stream: the LLM's half-spoken sentence or
the TTS's half-played audio cannot be continued by another provider without saying things
twice. STT is the exception, because its partial transcripts are never spoken: the chain
keeps every audio chunk of the utterance and replays it into the next STT, so a provider
that dies mid-utterance loses no words.

Every chain looks like one provider of its stage to the rest of the engine.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterable, AsyncIterator, Callable, Sequence
from dataclasses import replace
from typing import Generic, TypeVar

import numpy as np

from voxloop.audio.resample import StreamResampler
from voxloop.errors import ProviderCallError
from voxloop.providers.base import (
    AudioChunk,
    LLMProvider,
    Message,
    Provider,
    ProviderInfo,
    STTProvider,
    ToolCall,
    ToolSpec,
    Transcript,
    TTSProvider,
    tools_as_text,
)
from voxloop.providers.resilience import CircuitBreaker

T = TypeVar("T")
P = TypeVar("P", bound=Provider)


class _Chain(Generic[P]):
    """The providers, one breaker each, and the loop that tries them in order."""

    stage = "provider"

    def __init__(self, providers: Sequence[P], breakers: Sequence[CircuitBreaker] | None) -> None:
        if not providers:
            raise ValueError("a fallback chain needs at least one provider")
        self.providers = list(providers)
        self.breakers = list(breakers) if breakers else [CircuitBreaker() for _ in providers]

    def info(self) -> ProviderInfo:
        chain = " → ".join(f"{p.name}:{p.info().model}" for p in self.providers)
        return ProviderInfo("fallback", chain)

    async def first_that_starts(
        self, start: Callable[[P], AsyncIterator[T]], *, keep_going: bool = False
    ) -> AsyncIterator[T]:
        """Items of the first provider whose stream starts. With `keep_going`, a failure
        after the first item still moves on (the caller made that safe)."""
        errors: list[str] = []
        for provider, breaker in zip(self.providers, self.breakers, strict=True):
            if breaker.state == "open":
                errors.append(f"{provider.name}: skipped (circuit open)")
                continue
            stream = start(provider)
            started = False
            try:
                async for item in stream:
                    if not started:
                        breaker.success()
                    started = True
                    yield item
                if not started:
                    breaker.success()
                return
            except Exception as exc:
                if started and not keep_going:
                    raise  # half an answer was heard: the next provider cannot continue it
                breaker.failure()
                errors.append(f"{provider.name}: {exc}")
            finally:
                await stream.aclose()
        raise ProviderCallError(
            f"every {self.stage} provider failed: " + "; ".join(errors), retryable=False
        )

    async def warmup(self) -> None:
        for provider in self.providers:
            # A remote provider may be down at start; the chain copes.
            with contextlib.suppress(Exception):
                await provider.warmup()

    def close(self) -> None:
        for provider in self.providers:
            provider.close()


class FallbackLLM(_Chain[LLMProvider], LLMProvider):
    """LLMs in order. Tools are offered to the members that can call them; the others
    answer without tools."""

    name = "fallback"
    stage = "LLM"

    def __init__(
        self,
        providers: Sequence[LLMProvider],
        breakers: Sequence[CircuitBreaker] | None = None,
    ) -> None:
        super().__init__(providers, breakers)
        tools = any(p.capabilities.tools for p in self.providers)
        self.capabilities = replace(self.providers[0].capabilities, tools=tools)

    def expect_system_prompt(self, prompt: str) -> None:
        for provider in self.providers:
            provider.expect_system_prompt(prompt)

    async def conversations(self) -> int | None:
        return await self.providers[0].conversations()  # the one that answers when all is well

    def generate(
        self,
        messages: Sequence[Message],
        *,
        max_tokens: int | None = None,
        temperature: float | None = None,
    ) -> AsyncIterator[str]:
        return self.first_that_starts(
            lambda p: p.generate(messages, max_tokens=max_tokens, temperature=temperature)
        )

    def generate_with_tools(
        self,
        messages: Sequence[Message],
        tools: Sequence[ToolSpec],
        *,
        max_tokens: int | None = None,
        temperature: float | None = None,
    ) -> AsyncIterator[str | ToolCall]:
        def start(p: LLMProvider) -> AsyncIterator[str | ToolCall]:
            if p.capabilities.tools:
                return p.generate_with_tools(
                    messages, tools, max_tokens=max_tokens, temperature=temperature
                )
            return p.generate(tools_as_text(messages), max_tokens=max_tokens)

        return self.first_that_starts(start)


class FallbackSTT(_Chain[STTProvider], STTProvider):
    """STTs in order. The utterance's audio is kept and replayed into the next STT when
    one fails before its final transcript."""

    name = "fallback"
    stage = "STT"

    def __init__(
        self, providers: Sequence[STTProvider], breakers: Sequence[CircuitBreaker] | None = None
    ) -> None:
        super().__init__(providers, breakers)
        rates = {p.sample_rate for p in self.providers}
        if len(rates) > 1:
            raise ValueError(f"an STT fallback chain needs one input rate, got {sorted(rates)}")
        self.sample_rate = self.providers[0].sample_rate
        self.capabilities = self.providers[0].capabilities

    async def transcribe(self, audio: AsyncIterable[np.ndarray]) -> AsyncIterator[Transcript]:
        tape = _Tape(audio)
        try:
            async for result in self.first_that_starts(
                lambda p: _until_final(p.transcribe(tape.replay())), keep_going=True
            ):
                yield result
        finally:
            await tape.close()


async def _until_final(results: AsyncIterator[Transcript]) -> AsyncIterator[Transcript]:
    """An STT stream that must end with a final transcript; ending without one is a
    failure the chain can hand over."""
    try:
        async for result in results:
            yield result
            if result.is_final:
                return
    finally:
        await results.aclose()
    raise ProviderCallError("the STT ended without a final transcript", retryable=True)


class _Tape:
    """Reads the audio once, in its own task, and lets each STT of the chain hear all of
    it from the start. (A failing STT may be cancelled while it waits for audio; that
    must not break the source for the next one.)"""

    def __init__(self, source: AsyncIterable[np.ndarray]) -> None:
        self.source = source
        self.chunks: list[np.ndarray] = []
        self.ended = False
        self._grown = asyncio.Event()
        self._pump: asyncio.Task[None] | None = None

    async def replay(self) -> AsyncIterator[np.ndarray]:
        if self._pump is None:
            self._pump = asyncio.create_task(self._read(), name="stt-fallback-tape")
        i = 0
        while True:
            if i < len(self.chunks):
                yield self.chunks[i]
                i += 1
            elif self.ended:
                return
            else:
                await self._grown.wait()

    async def _read(self) -> None:
        try:
            async for chunk in self.source:
                self.chunks.append(chunk)
                self._wake()
        finally:
            self.ended = True
            self._wake()

    def _wake(self) -> None:
        self._grown.set()
        self._grown = asyncio.Event()

    async def close(self) -> None:
        if self._pump is not None:
            self._pump.cancel()
            await asyncio.gather(self._pump, return_exceptions=True)


class FallbackTTS(_Chain[TTSProvider], TTSProvider):
    """TTSs in order; audio from a member with another rate is resampled to the first
    member's rate, which is what the session announced to its client."""

    name = "fallback"
    stage = "TTS"

    def __init__(
        self, providers: Sequence[TTSProvider], breakers: Sequence[CircuitBreaker] | None = None
    ) -> None:
        super().__init__(providers, breakers)
        self.sample_rate = self.providers[0].sample_rate
        self.capabilities = self.providers[0].capabilities

    def synthesize(self, text: str) -> AsyncIterator[AudioChunk]:
        return self.first_that_starts(lambda p: _at_rate(p.synthesize(text), self.sample_rate))


async def _at_rate(chunks: AsyncIterator[AudioChunk], rate: int) -> AsyncIterator[AudioChunk]:
    resampler: StreamResampler | None = None
    try:
        async for chunk in chunks:
            if chunk.sample_rate == rate:
                yield chunk
                continue
            if resampler is None:
                resampler = StreamResampler(chunk.sample_rate, rate, dtype="int16")
            pcm = resampler.push(chunk.pcm.astype(np.int16, copy=False))
            if len(pcm):
                yield AudioChunk(pcm, rate)
        if resampler is not None:
            tail = resampler.push(np.zeros(0, np.int16), last=True)
            if len(tail):
                yield AudioChunk(tail, rate)
    finally:
        await chunks.aclose()
