"""`voxloop bench llm-cpu`: the LLM on each CPU variant of the llama.cpp build this CPU runs.

What `llm.cpu_backend: auto` was chosen on (providers/local/llama_backends.py): how fast
each variant reads a prompt and decodes, alone and with four conversations decoding
together, and how long four new turns asked at the same moment wait for their first
clause. A backend, once loaded, stays in its process, so each variant runs in a child.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from typing import Any

PROMPT = "The quick brown fox jumps over the lazy dog. " * 30


def bench_llm_cpu(variants: tuple[str, ...] = (), timeout_s: float = 600.0) -> dict[str, Any]:
    from voxloop.providers.local.llama_backends import choose, scores

    scored = scores()
    runnable = [name for name, score in sorted(scored.items(), key=lambda kv: kv[1]) if score]
    wanted = [v for v in variants if v in runnable] if variants else runnable
    report: dict[str, Any] = {
        "variants_runnable": runnable,
        "auto": choose("auto", scored) if scored else "linked",
        "results": {},
    }
    for name in wanted or ["auto"]:
        done = subprocess.run(
            [sys.executable, "-m", "voxloop.bench.llm_cpu", name],
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=False,
        )
        lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
        if done.returncode != 0 or not lines:
            tail = (done.stderr.strip().splitlines() or ["no output"])[-1]
            report["results"][name] = {"error": f"exit {done.returncode}: {tail}"}
        else:
            report["results"][name] = json.loads(lines[-1])
    return report


def _child(variant: str) -> dict[str, Any]:
    import llama_cpp

    from voxloop.config.settings import Settings
    from voxloop.providers.local.llama_backends import load_cpu_backend
    from voxloop.providers.local.llama_capacity import first_words_s
    from voxloop.providers.local.llama_llm import LlamaLLM

    settings = Settings(llm={"cpu_backend": variant})
    llm = LlamaLLM.from_settings(settings)
    out: dict[str, Any] = {"backend": load_cpu_backend(variant), "model": llm.label}
    bare = llm._llama
    tokens = bare.tokenize(PROMPT.encode())
    for n in (32, 256):
        bare.reset()
        started = time.perf_counter()
        bare.eval(tokens[:n])
        out[f"prompt_{n}_tokens_per_s"] = round(n / (time.perf_counter() - started), 1)
    bare.reset()
    bare.eval(tokens[:32])
    started = time.perf_counter()
    for token in tokens[32:64]:
        bare.eval([token])
    out["decode_tokens_per_s"] = round(32 / (time.perf_counter() - started), 1)
    bare.reset()
    if llm.engine is not None:
        system = settings.llm.system_prompt
        llm.expect_system_prompt(system)
        asyncio.run(_engine_figures(llm, system, first_words_s, out))
    llm.close()
    out["cpu_features"] = llama_cpp.llama_print_system_info().decode(errors="replace")
    return out


async def _engine_figures(llm: Any, system: str, first_words_s: Any, out: dict) -> None:
    await llm.warmup()
    for n in (1, 4):
        out[f"first_clause_{n}_at_once_s"] = round(await first_words_s(llm, n, system), 2)
    engine = llm.engine
    steps, started = engine.steps, time.perf_counter()
    from voxloop.providers.base import Message

    async def reply(i: int) -> int:
        count = 0
        messages = [Message("system", system), Message("user", f"Count from {i} to 60.")]
        async for _ in llm.generate(messages, max_tokens=48, temperature=0.0):
            count += 1
        return count

    pieces = sum(await asyncio.gather(*(reply(i) for i in range(4))))
    seconds = time.perf_counter() - started
    out["four_replies_pieces_per_s"] = round(pieces / seconds, 1)
    out["four_replies_ms_per_step"] = round(1000 * seconds / max(1, engine.steps - steps), 1)


if __name__ == "__main__":
    print(json.dumps(_child(sys.argv[1])))
