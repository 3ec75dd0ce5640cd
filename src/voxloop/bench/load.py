"""`voxloop bench load`: many concurrent sessions over real WebSockets on loopback.

Two paces. *Burst* (the default, the worst case): every session streams one spoken
question at real-time pace (starts staggered over `ramp_s`), waits for the whole reply,
and records its latency. *Natural* (load_natural.py): every caller holds one connection
for several turns, hears each answer out and thinks before asking again. Real time
*holds* (burst) when every session completes without errors, voice-to-voice p90 stays
under 2 s, and reply audio arrives no slower than it plays (no growing backlog); the
natural pace's rule is in its module. With fake providers, the voice-to-voice time less
the end-of-turn silence is the framework's own overhead.
"""

from __future__ import annotations

import asyncio
import random
import threading
import time
from pathlib import Path
from typing import Any

from voxloop.bench.latency import machine
from voxloop.bench.load_natural import THINK_S, natural_callers, summarize_natural
from voxloop.bench.questions import QUESTIONS, question_wavs
from voxloop.bench.server import RunningServer, running_server
from voxloop.bench.stats import summarize
from voxloop.client.conversation import BUSY_CODES, CLOSE_AT_CAPACITY, HTTP_AT_CAPACITY
from voxloop.client.playback import lateness_s, underrun
from voxloop.client.streaming import talk
from voxloop.config.settings import Settings
from voxloop.server import runtime

REALTIME_V2V_P90_MS = 2000.0
BACKLOG_SLACK_S = 0.5  # reply audio may arrive this much slower than it plays
PACES = ("burst", "natural")
NATURAL_RAMP_S = 10.0  # about one natural turn: callers start spread over it


class _Sampler:
    """Samples the server's CPU time and memory in a thread while the load runs."""

    def __init__(self, server: RunningServer) -> None:
        self.server = server
        self.rss: list[int] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.cpu_start = self.cpu_end = 0.0
        self.wall = 0.0

    def __enter__(self) -> _Sampler:
        first = self.server.usage()
        self.cpu_start = first[0] if first else 0.0
        self._t0 = time.monotonic()
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(0.5):
            usage = self.server.usage()
            if usage:
                self.rss.append(usage[1])

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        last = self.server.usage()
        self.cpu_end = last[0] if last else 0.0
        self.wall = time.monotonic() - self._t0

    def report(self) -> dict[str, Any] | None:
        if self.server.pid is None:
            return None
        return {
            "cpu_percent_of_one_core": round(100 * (self.cpu_end - self.cpu_start) / self.wall, 1),
            "rss_mb_max": round(max(self.rss) / 2**20, 1) if self.rss else None,
            "rss_mb_first": round(self.rss[0] / 2**20, 1) if self.rss else None,
        }


async def _session(url: str, wav: Path, delay_s: float, timeout_s: float) -> dict[str, Any]:
    from websockets.exceptions import InvalidStatus

    await asyncio.sleep(delay_s)
    try:
        result = await talk(url, wav, timeout_s=timeout_s)
    except Exception as exc:  # a refused or dropped connection is a result, not a crash
        refused = isinstance(exc, InvalidStatus) and exc.response.status_code == HTTP_AT_CAPACITY
        return {"error": f"{type(exc).__name__}: {exc}", "refused": refused}
    late = lateness_s(result.audio_chunks)
    return {
        "client": result.client_metrics,
        "server": result.server_metrics,
        "reply_audio_s": len(result.audio) / 2 / result.audio_rate if result.audio_rate else 0.0,
        "errors": result.errors,
        "ok": bool(result.reply) and not result.errors,
        "refused": any(_refusal(e) for e in result.errors),
        "worst_lateness_ms": round(late * 1000, 1) if late is not None else None,
        "underrun": underrun(result.audio_chunks),
    }


def _refusal(error: dict[str, Any]) -> bool:
    """The server turned the caller away (at capacity), which is not a failure to serve."""
    return error.get("close_code") == CLOSE_AT_CAPACITY or error.get("code") in BUSY_CODES


def _lag_buckets(server: RunningServer) -> dict[float, float] | None:
    """The server's event-loop lag histogram (cumulative counts by upper bound), from
    /metrics; None where it cannot be read (a remote server with auth on, say)."""
    import httpx
    from prometheus_client.parser import text_string_to_metric_families

    base = server.url.replace("ws://", "http://", 1).replace("wss://", "https://", 1)
    base = base.split("/ws", 1)[0]
    try:
        text = httpx.get(f"{base}/metrics", timeout=5).raise_for_status().text
    except httpx.HTTPError:
        return None
    for family in text_string_to_metric_families(text):
        if family.name == "voxloop_event_loop_lag_seconds":
            return {
                float(sample.labels["le"]): sample.value
                for sample in family.samples
                if sample.name.endswith("_bucket")
            }
    return None


def loop_lag(before: dict[float, float] | None, after: dict[float, float] | None) -> Any:
    """What the lag probes saw during the run: how many, the share later than 10, 50 and
    100 ms, and the bucket bound under which 50 % and 99 % of them fell."""
    if not before or not after:
        return None
    counts = {le: after[le] - before.get(le, 0.0) for le in sorted(after)}
    total = counts[float("inf")]
    if not total:
        return None

    def over(ms: float) -> float:
        return round(1 - counts[ms / 1000] / total, 3)

    def bound(q: float) -> float | None:
        le = next(le for le, c in counts.items() if c >= q * total)
        return None if le == float("inf") else le * 1000

    return {
        "probes": int(total),
        "over_10ms": over(10),
        "over_50ms": over(50),
        "over_100ms": over(100),
        "p50_under_ms": bound(0.5),
        "p99_under_ms": bound(0.99),
    }


def _measured(server: RunningServer, job: Any) -> tuple[Any, dict[str, Any] | None]:
    """Run `job` (a coroutine) against the server, sampling its CPU, memory and loop lag."""
    lag_before = _lag_buckets(server)
    with _Sampler(server) as sampler:
        results = asyncio.run(job)
    usage = sampler.report()
    if usage is not None:
        usage["event_loop_lag"] = loop_lag(lag_before, _lag_buckets(server))
    return results, usage


def run_load(
    server: RunningServer, sessions: int, wavs: list[Path], ramp_s: float, timeout_s: float
) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
    rng = random.Random(sessions)

    async def all_sessions() -> list[dict[str, Any]]:
        jobs = [
            _session(server.url, wavs[i % len(wavs)], rng.uniform(0, ramp_s), timeout_s)
            for i in range(sessions)
        ]
        return await asyncio.gather(*jobs)

    return _measured(server, all_sessions())


def summarize_load(results: list[dict[str, Any]], eot_ms: float) -> dict[str, Any]:
    ok = [r for r in results if r.get("ok")]
    v2v = [r["client"].get("voice_to_voice_ms") for r in ok]
    server_v2v = [r["server"].get("voice_to_voice_ms") for r in ok]
    backlog = [
        r["client"]["reply_audio_span_s"] - r["reply_audio_s"]
        for r in ok
        if r["client"].get("reply_audio_span_s") is not None
    ]
    late = [r["worst_lateness_ms"] for r in results if r.get("worst_lateness_ms") is not None]
    refused = sum(1 for r in results if r.get("refused"))
    v2v_stats = summarize(v2v)
    held = (
        len(ok) == len(results)
        and v2v_stats is not None
        and v2v_stats["p90"] < REALTIME_V2V_P90_MS
        and all(b < BACKLOG_SLACK_S for b in backlog)
    )
    return {
        "sessions": len(results),
        "completed": len(ok),
        "failures": [r.get("error") or r.get("errors") for r in results if not r.get("ok")][:5],
        "client_voice_to_voice_ms": v2v_stats,
        "server_voice_to_voice_ms": summarize(server_v2v),
        "overhead_over_silence_ms": summarize(v - eot_ms for v in server_v2v if v is not None),
        "reply_audio_late_s": summarize(backlog),
        "realtime_held": held,
        # Added with the natural pace (their meaning as there); `held` above ignores them.
        "pace": "burst",
        "refused": refused,
        "sessions_served": len(results) - refused,
        "underruns": sum(1 for r in results if r.get("underrun")),
        "worst_lateness_ms": max(late) if late else None,
    }


def bench_load(
    *,
    sessions: list[int],
    providers: str = "fake",
    url: str | None = None,
    ramp_s: float | None = None,
    timeout_s: float = 120.0,
    cache_dir: Path | None = None,
    pace: str = "burst",
    turns: int = 4,
    think_s: tuple[float, float] = THINK_S,
    admit: int | None = None,
) -> dict[str, Any]:
    """`ramp_s` defaults to 2 s (burst) or NATURAL_RAMP_S; `turns` and `think_s` are the
    natural pace's (per caller, and the pause before each question after the first).
    `admit`: the server's `limits.conversations` (default: what it measures itself), to
    see what happens past the capacity it would admit."""
    if pace not in PACES:
        raise ValueError(f"pace must be burst or natural, not {pace!r}")
    ramp = ramp_s if ramp_s is not None else (2.0 if pace == "burst" else NATURAL_RAMP_S)
    settings = Settings()
    eot_ms = settings.turns.end_of_turn_silence_s * 1000
    wavs = question_wavs(QUESTIONS, cache_dir or settings.resolved_cache_dir() / "bench")
    runs = []
    for n in sessions:
        # The simulated users run in this process: its collection pauses would hold their
        # audio back, and the server would be charged for the wait.
        env = {"VOXLOOP_LIMITS__CONVERSATIONS": str(admit)} if admit else None
        with running_server(url, providers=providers, env=env) as server, runtime.gc_tuned():
            if pace == "burst":
                results, usage = run_load(server, n, wavs, ramp, timeout_s)
                summary = summarize_load(results, eot_ms)
            else:
                job = natural_callers(
                    server.url,
                    n,
                    wavs,
                    turns=turns,
                    ramp_s=ramp,
                    think_s=think_s,
                    timeout_s=timeout_s,
                )
                callers, usage = _measured(server, job)
                summary = summarize_natural(callers, eot_ms)
        runs.append({**summary, "server_process": usage})
    held = [r["sessions_served"] for r in runs if r["realtime_held"]]
    report: dict[str, Any] = {
        "benchmark": "load",
        "providers": providers,
        "machine": machine(),
        "runs": runs,
        "max_sessions_holding_realtime": max(held) if held else 0,
        "pace": pace,
        "ramp_s": ramp,
        "admit": admit or "measured by the server",
    }
    if pace == "natural":
        report.update(turns_per_caller=turns, think_s=list(think_s))
    return report
