"""`voxloop bench soak`: many sessions talking for minutes, to see what a long run leaks.

Every simulated user asks a question, waits for the whole answer, hangs up, and calls
again after a short pause, for the whole run: sessions are created and torn down all the
time, and stored in SQLite as by default. The server's resident memory is sampled
throughout; after the warm-up (the first fifth of the run, at least a minute) it should
stay flat. Reported: turns and errors,
latency early and late in the run (drift), the memory curve and its growth.
"""

from __future__ import annotations

import asyncio
import random
import statistics
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from voxloop.bench.latency import machine
from voxloop.bench.questions import QUESTIONS, question_wavs
from voxloop.bench.server import RunningServer, running_server
from voxloop.bench.stats import summarize
from voxloop.client.streaming import talk
from voxloop.config.settings import Settings
from voxloop.server import runtime

GROWTH_LIMIT_PERCENT = 10.0
WINDOW_S = 30.0  # memory is compared as medians over windows this long


class _Memory:
    """(seconds since start, RSS bytes, CPU seconds) of the server, every `every_s`."""

    def __init__(self, server: RunningServer, every_s: float = 2.0) -> None:
        self.server, self.every_s = server, every_s
        self.samples: list[tuple[float, int, float]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> _Memory:
        self.t0 = time.monotonic()
        self._thread.start()
        return self

    def _run(self) -> None:
        while True:
            usage = self.server.usage()
            if usage:
                self.samples.append((time.monotonic() - self.t0, usage[1], usage[0]))
            if self._stop.wait(self.every_s):
                return

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def median_rss(self, start_s: float, end_s: float) -> float | None:
        window = [rss for t, rss, _ in self.samples if start_s <= t <= end_s]
        return statistics.median(window) if window else None


async def _caller(
    url: str, wavs: list[Path], until: float, rng: random.Random, out: list[dict[str, Any]]
) -> None:
    await asyncio.sleep(rng.uniform(0, 5))  # do not all call at once
    while time.monotonic() < until:
        started = time.monotonic()
        try:
            result = await talk(url, rng.choice(wavs), timeout_s=60)
            ok = bool(result.reply) and not result.errors
            out.append(
                {
                    "at": started,
                    "ok": ok,
                    "v2v_ms": result.client_metrics.get("voice_to_voice_ms"),
                    "errors": result.errors[:2],
                }
            )
        except Exception as exc:  # a refused or dropped connection is a result
            out.append({"at": started, "ok": False, "errors": [f"{type(exc).__name__}: {exc}"]})
        await asyncio.sleep(rng.uniform(0.2, 1.0))


def bench_soak(
    *,
    sessions: int = 50,
    minutes: float = 10.0,
    providers: str = "fake",
    url: str | None = None,
    cache_dir: Path | None = None,
) -> dict[str, Any]:
    settings = Settings()
    wavs = question_wavs(QUESTIONS, cache_dir or settings.resolved_cache_dir() / "bench")
    duration = minutes * 60
    warmup = min(max(60.0, duration / 5), duration / 2)
    results: list[dict[str, Any]] = []
    # The default store, SQLite on disk: the memory store the other benchmarks use keeps
    # every conversation in the process (up to 10,000), which would read as a leak here.
    store = tempfile.TemporaryDirectory(prefix="voxloop-soak-")
    env = {"VOXLOOP_STORE__BACKEND": "sqlite", "VOXLOOP_STORE__PATH": f"{store.name}/soak.db"}
    with (
        store,
        running_server(url, providers=providers, env=env) as server,
        _Memory(server) as memory,
        runtime.gc_tuned(),  # as in bench load: the callers' pauses are not the server's
    ):
        t0 = time.monotonic()
        until = t0 + duration

        async def everyone() -> None:
            rng = random.Random(sessions)
            await asyncio.gather(
                *(
                    _caller(server.url, wavs, until, random.Random(rng.random()), results)
                    for _ in range(sessions)
                )
            )

        asyncio.run(everyone())
        elapsed = time.monotonic() - t0
    after_warmup = memory.median_rss(warmup, warmup + WINDOW_S)
    at_end = memory.median_rss(elapsed - WINDOW_S, elapsed)
    growth = (
        round(100 * (at_end - after_warmup) / after_warmup, 2) if after_warmup and at_end else None
    )
    third = duration / 3
    early = [r["v2v_ms"] for r in results if r["ok"] and r["at"] - t0 < third]
    late = [r["v2v_ms"] for r in results if r["ok"] and r["at"] - t0 >= 2 * third]
    failures = [r for r in results if not r["ok"]]
    cpu = memory.samples[-1][2] - memory.samples[0][2] if len(memory.samples) > 1 else None
    return {
        "benchmark": "soak",
        "providers": providers,
        "machine": machine(),
        "sessions": sessions,
        "minutes": minutes,
        "turns": len(results),
        "failed_turns": len(failures),
        "failures": [f["errors"] for f in failures[:5]],
        "client_voice_to_voice_ms_first_third": summarize(early),
        "client_voice_to_voice_ms_last_third": summarize(late),
        "server_cpu_percent_of_one_core": round(100 * cpu / elapsed, 1) if cpu else None,
        "rss_mb_after_warmup": round(after_warmup / 2**20, 1) if after_warmup else None,
        "rss_mb_at_end": round(at_end / 2**20, 1) if at_end else None,
        "rss_growth_percent": growth,
        "warmup_s": warmup,
        "rss_mb_every_30s": [
            round(rss / 2**20, 1)
            for t, rss, _ in memory.samples
            if int(t // WINDOW_S) != int((t - memory.every_s) // WINDOW_S)
        ],
        "passed": not failures and growth is not None and growth < GROWTH_LIMIT_PERCENT,
    }
