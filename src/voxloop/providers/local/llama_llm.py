"""A local LLM through llama.cpp (llama-cpp-python), with the GGUF's own chat template.

Presets: `default` is Qwen2.5-Coder-1.5B-Instruct, assembled from its 22 chunk packages;
`fast` is Qwen2.5-Coder-0.5B-Instruct (six chunks); `tiny` is SmolLM2-135M (fast, but it
invents facts). `model_path` takes any GGUF instead.

With `parallel` above 1 (the default), the sessions' requests share one context of that many
sequences and decode together (`llama_batch.py`): each conversation keeps its own cache, so
its next turn reads only what is new. A fixed `seed` (same prompt, same reply) needs the
serial path: one `Llama` object, one KV cache, generations serialised with a FIFO lock and
each token one step on the model's worker thread. On both, cancelling the consumer stops
decoding at the next token.
"""

from __future__ import annotations

import asyncio
import contextlib
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
from voxloop.providers.local.llama_batch import BatchEngine, Kind, Request, Sampling
from voxloop.providers.local.llama_capacity import measure_conversations
from voxloop.providers.local.modelfiles import LLM_PRESETS, Progress, resolve_model, rich_progress
from voxloop.providers.worker import ModelWorker
from voxloop.telemetry.metrics import llm_queued, llm_serving

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
        parallel: int = 1,
        cpu_backend: str = "auto",
    ) -> None:
        from llama_cpp import Llama

        from voxloop.providers.local.llama_backends import load_cpu_backend

        self.model_path = Path(model_path)
        if not self.model_path.is_file():
            raise ModelFileError(f"GGUF model not found: {self.model_path}")
        self.backend = load_cpu_backend(cpu_backend)
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
        self._queued = 0  # requests waiting for the serial path's lock
        self._capacity: int | None = None
        self._formatter = chat_formatter(self._llama) if parallel > 1 and seed is None else None
        self.engine = (
            BatchEngine(self._llama, slots=parallel, n_ctx_per_slot=n_ctx, threads=threads)
            if self._formatter is not None
            else None
        )

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
            parallel=s.parallel,
            cpu_backend=s.cpu_backend,
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

        if self.engine is not None:
            async for delta in self._batched(payload, tokens, temp, schema):
                yield delta
            return

        def make() -> Iterator[Any]:
            return self._stream(payload, tokens, temp, schema)

        loop = asyncio.get_running_loop()
        lock = self._turn_locks.setdefault(loop, asyncio.Lock())
        if lock.locked() or self._queued:  # (a woken waiter holds its place unlocked)
            llm_queued(self._queued + 1)
        self._queued += 1
        try:
            await lock.acquire()
        finally:
            self._queued -= 1
        try:
            llm_serving()  # the wait for the lock was the turn's queue, not the model's time
            async for chunk in self.worker.iterate(make):
                delta = chunk["choices"][0].get("delta", {}).get("content")
                if delta:
                    yield delta
        finally:
            lock.release()

    async def _batched(
        self,
        payload: list[dict[str, Any]],
        max_tokens: int,
        temperature: float,
        tools: list[dict[str, Any]] | None,
    ) -> AsyncIterator[str]:
        """The request through the batch engine: its prompt rendered by the GGUF's chat
        template, its tokens passed back from the engine's thread."""
        assert self.engine is not None and self._formatter is not None
        rendered = self._formatter(messages=payload, tools=tools)
        prompt = self._llama.tokenize(
            rendered.prompt.encode("utf-8"), add_bos=not rendered.added_special, special=True
        )
        loop = asyncio.get_running_loop()
        out: asyncio.Queue[tuple[Kind, Any]] = asyncio.Queue()

        def deliver(kind: Kind, value: Any) -> None:
            with contextlib.suppress(RuntimeError):  # the loop is closed: nobody listens
                loop.call_soon_threadsafe(out.put_nowait, (kind, value))

        sampling = Sampling(max_tokens, temperature, self.repeat_penalty)
        request = Request(prompt, sampling, deliver)
        place = self.engine.submit(request)
        if place:
            llm_queued(place)
        try:
            while True:
                kind, value = await out.get()
                if kind == "text":
                    yield value
                elif kind == "served":
                    llm_serving()
                elif kind == "error":
                    raise value
                else:
                    return
        finally:
            self.engine.cancel(request)

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

    async def conversations(self) -> int | None:
        """Measured once: the most callers who stop talking at the same moment whose first
        words the model still writes in time (llama_capacity.py). The serial path answers
        one at a time."""
        if self._capacity is None:
            self._capacity = await measure_conversations(self, self.engine, self.warm_prompt)
        return self._capacity

    def close(self) -> None:
        self.worker.shutdown()
        if self.engine is not None:
            self.engine.close()


def chat_formatter(llama: Any) -> Any:
    """The GGUF's own chat template as llama-cpp-python renders it for a chat completion,
    or None for a model without one (which then takes the serial path)."""
    template = getattr(llama, "metadata", {}).get("tokenizer.chat_template")
    if llama.chat_format != "chat_template.default" or not template:
        return None
    from llama_cpp.llama_chat_format import Jinja2ChatFormatter

    def text(token: int) -> str:
        return llama._model.token_get_text(token) if token != -1 else ""

    return Jinja2ChatFormatter(
        template=template, eos_token=text(llama.token_eos()), bos_token=text(llama.token_bos())
    )


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
