"""Continuous batching for llama.cpp: the replies of several conversations decode together.

One `Llama` context holds one KV cache, so the serial provider answers one request at a
time, and when sessions take turns it evaluates each one's history again. Here one context
holds `slots` sequences in a unified KV cache, and each step evaluates, in one
`llama_decode`, the next token of every reply under way plus a chunk of the oldest prompt
still being read. On a CPU, decoding is bound by reading the weights, so four sequences in
one step cost far less than four steps, and a new turn's prompt is read while the other
replies keep flowing. A slot keeps its conversation's tokens when the reply ends: the next
turn of that conversation reads only what is new. A prefix another slot holds (the system
prompt) is copied, not evaluated again.

The engine runs on its own thread and touches the context from nowhere else. Requests come
in through `submit` and report back through their `deliver` callback (on that thread).
"""

from __future__ import annotations

import codecs
import ctypes
import logging
import random
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

Kind = Literal["served", "text", "done", "error"]
log = logging.getLogger(__name__)
PENALTY_LAST_N = 64  # the tokens the repeat penalty looks back on, as llama-cpp-python's


@dataclass(frozen=True)
class Sampling:
    max_tokens: int
    temperature: float
    repeat_penalty: float = 1.0
    seed: int | None = None
    top_k: int = 40  # llama-cpp-python's chat-completion defaults
    top_p: float = 0.95
    min_p: float = 0.05


@dataclass(eq=False)
class Request:
    """One generation: its prompt tokens, how to sample, and where its output goes."""

    tokens: list[int]
    sampling: Sampling
    deliver: Callable[[Kind, Any], None]
    cancelled: bool = False
    order: int = 0  # arrival, for serving prompts oldest first
    read: int = 0  # prompt tokens in the KV cache
    generated: int = 0
    next_token: int | None = None  # sampled, to be evaluated in the next step
    sampler: Any = None
    decoder: Any = field(default_factory=lambda: codecs.getincrementaldecoder("utf-8")("ignore"))

    @property
    def reading(self) -> bool:
        return self.read < len(self.tokens)


@dataclass(eq=False)
class _Slot:
    seq: int
    tokens: list[int] = field(default_factory=list)  # what the KV cache holds for `seq`
    request: Request | None = None
    used_at: float = 0.0


def common_prefix(a: list[int], b: list[int]) -> int:
    n = min(len(a), len(b))
    for i in range(n):
        if a[i] != b[i]:
            return i
    return n


class BatchEngine:
    """`slots` sequences of one model, decoded together on one thread."""

    def __init__(
        self,
        llama: Any,
        *,
        slots: int = 4,
        n_ctx_per_slot: int = 2048,
        threads: int = 2,
        prefill_chunk: int = 32,
    ) -> None:
        import llama_cpp as lc

        from voxloop.errors import ModelFileError

        self._lc = lc
        self._llama = llama
        self.slots = [_Slot(seq) for seq in range(slots)]
        self.n_ctx_per_slot = n_ctx_per_slot
        self.prefill_chunk = prefill_chunk
        self.n_batch = max(512, prefill_chunk + slots)
        params = lc.llama_context_default_params()
        params.n_ctx = slots * n_ctx_per_slot
        params.n_batch = params.n_ubatch = self.n_batch
        params.n_seq_max = slots
        params.n_threads = params.n_threads_batch = threads
        params.kv_unified = True  # a prefix copied between sequences shares its cells
        params.no_perf = True
        self._ctx = lc.llama_init_from_model(llama._model.model, params)
        if not self._ctx:
            raise ModelFileError(f"llama.cpp could not make a context of {slots} sequences")
        self._mem = lc.llama_get_memory(self._ctx)
        self._vocab = lc.llama_model_get_vocab(llama._model.model)
        self._batch = lc.llama_batch_init(self.n_batch, 0, 1)
        self._buf = ctypes.create_string_buffer(64)
        self._waiting: deque[Request] = deque()
        self._cond = threading.Condition()
        self._closed = False
        self._orders = 0
        self.steps = 0  # observable progress, for tests
        self.prompt_tokens_read = 0  # prompt tokens evaluated (not taken from a cache)
        self.last_prompt_tokens = 0
        self._thread = threading.Thread(target=self._run, name="voxloop-llm-batch", daemon=True)
        self._thread.start()

    # -- the caller's side ---------------------------------------------------------------

    def submit(self, request: Request) -> int:
        """Queue a request; its place in the queue for a slot (0: it has one at once)."""
        limit = self.n_ctx_per_slot - 1
        if len(request.tokens) > limit:
            raise ValueError(
                f"the prompt is {len(request.tokens)} tokens; a conversation's context "
                f"holds {self.n_ctx_per_slot}"
            )
        if not request.tokens:
            raise ValueError("the prompt is empty")
        with self._cond:
            if self._closed:
                raise RuntimeError("the LLM is closed")
            position = len(self._waiting) + 1 - self._free_slot_count()
            self._orders += 1
            request.order = self._orders
            self._waiting.append(request)
            self._cond.notify()
        return max(0, position)

    def cancel(self, request: Request) -> None:
        """Stop a request at the next step (its slot keeps what it has read)."""
        request.cancelled = True
        with self._cond:
            self._cond.notify()

    def busy(self) -> int:
        """Requests being served or waiting."""
        with self._cond:
            return len(self._waiting) + sum(s.request is not None for s in self.slots)

    def close(self) -> None:
        """Stop the engine; what was still waiting or being served ends with an error."""
        with self._cond:
            if self._closed:
                return
            self._closed = True
            self._cond.notify()
        self._thread.join(timeout=30)
        if self._thread.is_alive():
            return  # a decode is stuck; leaking the context beats freeing it under it
        closed = RuntimeError("the LLM was closed")
        with self._cond:
            while self._waiting:
                self._waiting.popleft().deliver("error", closed)
        for slot in self.slots:
            if slot.request is not None:
                slot.request.deliver("error", closed)
                self._release(slot)
        self._lc.llama_batch_free(self._batch)
        self._lc.llama_free(self._ctx)

    # -- the engine thread ---------------------------------------------------------------

    def _free_slot_count(self) -> int:
        return sum(s.request is None for s in self.slots)

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._closed and not self._waiting and not self._serving():
                    self._cond.wait()
                if self._closed:
                    return
                self._admit()
            try:
                self._step()
            except Exception as exc:  # a failed decode fails what it carried, not the engine
                log.exception("LLM batch step failed")
                for slot in self.slots:
                    if slot.request is not None:
                        slot.request.deliver("error", exc)
                        self._release(slot, forget=True)

    def _serving(self) -> bool:
        return any(s.request is not None for s in self.slots)

    def _admit(self) -> None:
        """Give waiting requests free slots, oldest first; each starts from the longest
        prefix of its prompt that is already in the cache."""
        while self._waiting:
            request = self._waiting[0]
            if request.cancelled:
                self._waiting.popleft()
                continue
            free = [s for s in self.slots if s.request is None]
            if not free:
                return
            self._waiting.popleft()
            tokens = request.tokens
            # The free slot whose cache this turn loses least of (its own conversation's, or
            # an empty one), the longest idle among equals; the donor below supplies a
            # prefix another slot holds (the system prompt).
            slot = min(
                free, key=lambda s: (len(s.tokens) - common_prefix(s.tokens, tokens), s.used_at)
            )
            keep = min(common_prefix(slot.tokens, tokens), len(tokens) - 1)
            donor = max(self.slots, key=lambda s: common_prefix(s.tokens, tokens))
            given = min(common_prefix(donor.tokens, tokens), len(tokens) - 1)
            lc = self._lc
            if donor is not slot and given > keep:
                lc.llama_memory_seq_rm(self._mem, slot.seq, -1, -1)
                lc.llama_memory_seq_cp(self._mem, donor.seq, slot.seq, 0, given)
                slot.tokens = donor.tokens[:given]
            elif lc.llama_memory_seq_rm(self._mem, slot.seq, keep, -1):
                slot.tokens = slot.tokens[:keep]
            else:  # the model's memory cannot drop a tail: start the sequence afresh
                lc.llama_memory_seq_rm(self._mem, slot.seq, -1, -1)
                slot.tokens = []
            request.read = len(slot.tokens)
            self.last_prompt_tokens = len(tokens)
            self.prompt_tokens_read += len(tokens) - request.read
            request.sampler = self._sampler(request)
            slot.request = request
            request.deliver("served", None)

    def _sampler(self, request: Request) -> Any:
        lc, s = self._lc, request.sampling
        chain = lc.llama_sampler_chain_init(lc.llama_sampler_chain_default_params())
        if s.repeat_penalty != 1.0:
            lc.llama_sampler_chain_add(
                chain, lc.llama_sampler_init_penalties(PENALTY_LAST_N, s.repeat_penalty, 0, 0)
            )
        if s.temperature <= 0:
            lc.llama_sampler_chain_add(chain, lc.llama_sampler_init_greedy())
        else:
            lc.llama_sampler_chain_add(chain, lc.llama_sampler_init_top_k(s.top_k))
            lc.llama_sampler_chain_add(chain, lc.llama_sampler_init_top_p(s.top_p, 1))
            lc.llama_sampler_chain_add(chain, lc.llama_sampler_init_min_p(s.min_p, 1))
            lc.llama_sampler_chain_add(chain, lc.llama_sampler_init_temp(s.temperature))
            seed = s.seed if s.seed is not None else random.getrandbits(31)
            lc.llama_sampler_chain_add(chain, lc.llama_sampler_init_dist(seed))
        for token in request.tokens[-PENALTY_LAST_N:]:
            lc.llama_sampler_accept(chain, token)
        return chain

    def _release(self, slot: _Slot, *, forget: bool = False) -> None:
        request = slot.request
        slot.request = None
        slot.used_at = time.monotonic()
        if forget:  # the cache may not hold what `tokens` says
            self._lc.llama_memory_seq_rm(self._mem, slot.seq, -1, -1)
            slot.tokens = []
        if request is not None and request.sampler is not None:
            self._lc.llama_sampler_free(request.sampler)
            request.sampler = None

    def _step(self) -> None:
        for slot in self.slots:
            if slot.request is not None and slot.request.cancelled:
                self._release(slot)
        # (slot, token, wants logits): every reply's next token, then prompt chunks
        plan: list[tuple[_Slot, int, bool]] = []
        for slot in self.slots:
            r = slot.request
            if r is not None and not r.reading and r.next_token is not None:
                plan.append((slot, r.next_token, True))
        budget = self.prefill_chunk if plan else self.n_batch
        reading = [s for s in self.slots if s.request is not None and s.request.reading]
        for slot in sorted(reading, key=lambda s: s.request.order if s.request else 0):
            r = slot.request
            assert r is not None
            take = min(budget, len(r.tokens) - r.read)
            for j in range(take):
                at = r.read + j
                plan.append((slot, r.tokens[at], at == len(r.tokens) - 1))
            budget -= take
            if budget <= 0:
                break
        if not plan:
            return
        self._decode(plan)
        self.steps += 1
        for index, (slot, token, wants) in enumerate(plan):
            slot.tokens.append(token)
            r = slot.request
            assert r is not None
            if r.reading:
                r.read += 1
            if wants:
                self._sample(slot, r, index)

    def _decode(self, plan: list[tuple[_Slot, int, bool]]) -> None:
        lc, batch = self._lc, self._batch
        batch.n_tokens = len(plan)
        placed: dict[int, int] = {}  # tokens of each sequence already in this batch
        for i, (slot, token, wants) in enumerate(plan):
            batch.token[i] = token
            batch.pos[i] = len(slot.tokens) + placed.get(slot.seq, 0)
            placed[slot.seq] = placed.get(slot.seq, 0) + 1
            batch.n_seq_id[i] = 1
            batch.seq_id[i][0] = slot.seq
            batch.logits[i] = wants
        rc = lc.llama_decode(self._ctx, batch)
        if rc == 1:  # no room in the cache: drop what idle slots keep, then try once more
            for slot in self.slots:
                if slot.request is None and slot.tokens:
                    lc.llama_memory_seq_rm(self._mem, slot.seq, -1, -1)
                    slot.tokens = []
            rc = lc.llama_decode(self._ctx, batch)
        if rc != 0:
            raise RuntimeError(f"llama_decode failed ({rc}) on a batch of {len(plan)} tokens")

    def _sample(self, slot: _Slot, r: Request, index: int) -> None:
        lc = self._lc
        token = lc.llama_sampler_sample(r.sampler, self._ctx, index)
        r.generated += 1
        if lc.llama_vocab_is_eog(self._vocab, token):
            self._finish(slot, r)
            return
        text = r.decoder.decode(self._piece(token))
        if text:
            r.deliver("text", text)
        r.next_token = token
        if r.generated >= r.sampling.max_tokens or len(slot.tokens) + 1 >= self.n_ctx_per_slot:
            self._finish(slot, r)

    def _piece(self, token: int) -> bytes:
        """The token's bytes (a UTF-8 character may span two tokens)."""
        n = self._lc.llama_token_to_piece(self._vocab, token, self._buf, len(self._buf), 0, False)
        if n < 0:  # longer than the buffer: -n is its size
            self._buf = ctypes.create_string_buffer(-n)
            n = self._lc.llama_token_to_piece(self._vocab, token, self._buf, -n, 0, False)
        return self._buf.raw[:n]

    def _finish(self, slot: _Slot, r: Request) -> None:
        tail = r.decoder.decode(b"", final=True)
        if tail:
            r.deliver("text", tail)
        r.deliver("done", None)
        self._release(slot)
