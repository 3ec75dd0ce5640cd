"""Per-turn latency figures and the in-process registry that collects them.

All times are in milliseconds, measured on the server's clock (injectable, so tests can run
on virtual time). A stage that did not run in a turn is None, never 0. The registry also
feeds Prometheus collectors of its own (`CollectorRegistry` per registry, no globals), which
`/metrics` exposes.
"""

from __future__ import annotations

import asyncio
import logging
import statistics
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

log = logging.getLogger("voxloop.turn")


@dataclass
class TurnMetrics:
    session_id: str
    turn_id: int
    # End of user speech → the VAD/turn detector declaring the turn over (≈ the silence wait).
    vad_end_of_turn_ms: float | None = None
    stt_final_ms: float | None = None  # end of turn → final transcript
    llm_first_token_ms: float | None = None  # LLM request → first token
    tts_first_audio_ms: float | None = None  # first sentence to TTS → its first audio
    voice_to_voice_ms: float | None = None  # end of user speech → first agent audio sent
    reply_audio_s: float = 0.0
    interrupted: bool = False
    source: str = "voice"  # or "text"

    def as_dict(self) -> dict[str, float | int | bool | str | None]:
        out = asdict(self)
        for key, value in out.items():
            if isinstance(value, float):
                out[key] = round(value, 1)
        return out


STAGES = (
    "vad_end_of_turn_ms",
    "stt_final_ms",
    "llm_first_token_ms",
    "tts_first_audio_ms",
    "voice_to_voice_ms",
)


LAG_BUCKETS = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0)
LAG_PROBE_S = 0.1
_BUCKETS = (0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0)


class PrometheusMetrics:
    """The Prometheus view of the registry, in a collector registry of its own."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.stage = Histogram(
            "voxloop_stage_latency_seconds",
            "Latency of each pipeline stage per turn",
            ["stage"],
            buckets=_BUCKETS,
            registry=self.registry,
        )
        self.voice_to_voice = Histogram(
            "voxloop_voice_to_voice_seconds",
            "End of user speech to first agent audio sent",
            buckets=_BUCKETS,
            registry=self.registry,
        )
        self.turns = Counter("voxloop_turns", "Completed turns", registry=self.registry)
        self.interruptions = Counter(
            "voxloop_interruptions", "Replies cut by barge-in or interrupt", registry=self.registry
        )
        self.errors = Counter(
            "voxloop_errors", "Errors reported to clients", ["code"], registry=self.registry
        )
        self.loop_lag = Histogram(
            "voxloop_event_loop_lag_seconds",
            f"How late a {LAG_PROBE_S:g} s timer fires on the event loop: every frame of "
            "every session waits this long on a busy server",
            buckets=LAG_BUCKETS,
            registry=self.registry,
        )
        self.sessions = Gauge(
            "voxloop_active_sessions", "Connected sessions", registry=self.registry
        )

    def observe(self, m: TurnMetrics) -> None:
        self.turns.inc()
        if m.interrupted:
            self.interruptions.inc()
        for stage in STAGES[:-1]:
            value = getattr(m, stage)
            if value is not None:
                self.stage.labels(stage.removesuffix("_ms")).observe(value / 1000)
        if m.voice_to_voice_ms is not None:
            self.voice_to_voice.observe(m.voice_to_voice_ms / 1000)

    def track_sessions(self, count: Callable[[], int]) -> None:
        self.sessions.set_function(count)

    async def probe_loop_lag(self) -> None:
        """Runs for ever: all sessions share one event loop, so its lag is the clearest
        sign of a saturated server (it adds to every stage of every turn)."""
        loop = asyncio.get_running_loop()
        while True:
            due = loop.time() + LAG_PROBE_S
            await asyncio.sleep(LAG_PROBE_S)
            self.loop_lag.observe(max(0.0, loop.time() - due))

    def render(self) -> bytes:
        return generate_latest(self.registry)


@dataclass
class MetricsRegistry:
    """Keeps the recent turns and running counts; exporters read from here."""

    keep: int = 1000
    turns: deque[TurnMetrics] = field(default_factory=deque)
    counts: dict[str, int] = field(default_factory=dict)
    prometheus: PrometheusMetrics = field(default_factory=PrometheusMetrics)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def record_turn(self, metrics: TurnMetrics) -> None:
        with self._lock:
            self.turns.append(metrics)
            while len(self.turns) > self.keep:
                self.turns.popleft()
            self.count("turns")
            if metrics.interrupted:
                self.count("interruptions")
        self.prometheus.observe(metrics)
        log.info(
            "turn complete",
            extra={
                "session_id": metrics.session_id,
                "turn_id": metrics.turn_id,
                **metrics.as_dict(),
            },
        )

    def count(self, name: str, n: int = 1) -> None:
        self.counts[name] = self.counts.get(name, 0) + n

    def error(self, code: str) -> None:
        self.count(f"errors.{code}")
        self.prometheus.errors.labels(code).inc()

    def summary(self) -> dict[str, dict[str, float]]:
        """p50/p90/max per stage over the kept turns."""
        out: dict[str, dict[str, float]] = {}
        with self._lock:
            turns = list(self.turns)
        for stage in STAGES:
            values = sorted(v for t in turns if (v := getattr(t, stage)) is not None)
            if values:
                out[stage] = {
                    "p50": statistics.median(values),
                    "p90": values[min(len(values) - 1, int(0.9 * len(values)))],
                    "max": values[-1],
                    "n": len(values),
                }
        return out
