"""A local LLM through llama.cpp (llama-cpp-python), with the GGUF's own chat template.

Presets: `default` is Qwen2.5-Coder-1.5B-Instruct, assembled from its 22 chunk packages;
`fast` is Qwen2.5-Coder-0.5B-Instruct (six chunks); `tiny` is SmolLM2-135M (fast, but it
invents facts). `model_path` takes any GGUF instead.

One `Llama` object holds one KV cache, so generations are serialised with a FIFO lock, and
each token is one step on the model's worker thread: cancelling the consumer stops decoding
at the next token. llama.cpp keeps the longest common prompt prefix between calls, so the
system prompt and earlier history are not re-evaluated on every turn.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Self

from voxloop.errors import ModelFileError
from voxloop.providers.base import (
    Capabilities,
    LLMProvider,
    Message,
    ProviderInfo,
    ToolCall,
    ToolSpec,
    function_schema,
)
from voxloop.providers.local import local_tools
from voxloop.providers.local.modelfiles import LLM_PRESETS, Progress, resolve_model, rich_progress
from voxloop.providers.worker import ModelWorker
from voxloop.telemetry.metrics import llm_serving

if TYPE_CHECKING:
    from voxloop.config.settings import Settings


class LlamaLLM(LLMProvider):
    name = "llama"
    capabilities = Capabilities(streaming_output=True)

    def __init__(
        self,
        model_path: Path,
        *,
        label: str | None = None,
        n_ctx: int = 2048,
        threads: int = 2,
        max_tokens: int = 256,
        temperature: float = 0.3,
        seed: int | None = None,
        repeat_penalty: float = 1.0,
    ) -> None:
        from llama_cpp import Llama

        self.model_path = Path(model_path)
        if not self.model_path.is_file():
            raise ModelFileError(f"GGUF model not found: {self.model_path}")
        try:
            self._llama = Llama(
                model_path=str(self.model_path),
                n_ctx=n_ctx,
                n_threads=threads,
                n_threads_batch=threads,
                verbose=False,
            )
        except (ValueError, RuntimeError) as exc:
            raise ModelFileError(
                f"llama.cpp cannot load {self.model_path} ({exc}); is it a valid GGUF file?"
            ) from None
        self.label = label or self.model_path.name
        self.warm_prompt: str | None = None  # evaluated at warm-up, so its KV cache is ready
        self.max_tokens = max_tokens
        self.temperature = temperature
        self.seed = seed
        self.repeat_penalty = repeat_penalty
        self.worker = ModelWorker("llm")
        # asyncio locks belong to one event loop; the provider may outlive several.
        self._turn_locks: weakref.WeakKeyDictionary[Any, asyncio.Lock] = weakref.WeakKeyDictionary()

    @classmethod
    def from_settings(
        cls, settings: Settings, progress_factory: Callable[[str, int], Progress] | None = None
    ) -> Self:
        s = settings.llm
        path, label = model_file(settings, progress_factory)
        llm = cls(
            path,
            label=label,
            n_ctx=s.n_ctx,
            threads=s.threads,
            max_tokens=s.max_tokens,
            temperature=s.temperature,
            seed=s.seed,
            repeat_penalty=s.repeat_penalty,
        )
        if s.local_tools:
            llm.capabilities = Capabilities(streaming_output=True, tools=True)
        return llm

    def info(self) -> ProviderInfo:
        return ProviderInfo(
            name=self.name,
            model=f"{self.label} (llama.cpp)",
            size_bytes=self.model_path.stat().st_size,
            source=str(self.model_path),
        )

    def _stream(
        self,
        messages: list[dict[str, Any]],
        max_tokens: int,
        temperature: float,
        tools: list[dict[str, Any]] | None = None,
    ):
        if self.seed is not None:
            # A reused prompt prefix gives the first token's logits by another path, whose
            # rounding differs: enough to change a sampled reply. Same seed, same reply
            # costs evaluating the prompt afresh.
            self._llama.reset()
        return iter(
            self._llama.create_chat_completion(
                messages=messages,
                stream=True,
                max_tokens=max_tokens,
                temperature=temperature,
                tools=tools,
                seed=self.seed,
                repeat_penalty=self.repeat_penalty,
            )
        )

    async def generate(
        self,
        messages: Sequence[Message],
        *,
        max_tokens: int | None = None,
        temperature: float | None = None,
    ) -> AsyncIterator[str]:
        async for delta in self._deltas(messages, max_tokens, temperature):
            yield delta

    def generate_with_tools(
        self,
        messages: Sequence[Message],
        tools: Sequence[ToolSpec],
        *,
        max_tokens: int | None = None,
        temperature: float | None = None,
    ) -> AsyncIterator[str | ToolCall]:
        """Tools through the GGUF's own chat template (Qwen2.5 has one). Small models do
        not read tool results back well, so once results are in, the answer is asked for
        with the results as plain text and no tools (local_tools.py)."""
        return local_tools.generate(self, messages, tools, max_tokens, temperature)

    async def _deltas(
        self,
        messages: Sequence[Message],
        max_tokens: int | None,
        temperature: float | None,
        tools: Sequence[ToolSpec] = (),
    ) -> AsyncIterator[str]:
        payload = [{"role": m.role, "content": m.content} for m in messages]
        tokens = max_tokens or self.max_tokens
        temp = self.temperature if temperature is None else temperature
        schema = [function_schema(t) for t in tools] or None

        def make() -> Iterator[Any]:
            return self._stream(payload, tokens, temp, schema)

        loop = asyncio.get_running_loop()
        lock = self._turn_locks.setdefault(loop, asyncio.Lock())
        async with lock:
            llm_serving()  # the wait for the lock was the turn's queue, not the model's time
            async for chunk in self.worker.iterate(make):
                delta = chunk["choices"][0].get("delta", {}).get("content")
                if delta:
                    yield delta

    def expect_system_prompt(self, prompt: str) -> None:
        self.warm_prompt = prompt

    async def warmup(self) -> None:
        """One token with the default system prompt: llama.cpp keeps the longest common
        prompt prefix, so every session's first turn starts with that prompt evaluated."""
        messages = [Message("user", "Hi")]
        if self.warm_prompt:
            messages.insert(0, Message("system", self.warm_prompt))
        async for _ in self.generate(messages, max_tokens=1):
            pass

    def close(self) -> None:
        self.worker.shutdown()


def model_file(
    settings: Settings, progress_factory: Callable[[str, int], Progress] | None = None
) -> tuple[Path, str]:
    """The GGUF file the settings name (assembled and verified on first use), and its label."""
    s = settings.llm
    if s.model_path is not None:
        return s.model_path, s.model_path.name
    spec = LLM_PRESETS[s.preset]
    factory = progress_factory or rich_progress
    return resolve_model(spec, settings.resolved_cache_dir() / "models", factory), spec.name
