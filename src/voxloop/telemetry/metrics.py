"""Per-turn latency figures and the in-process registry that collects them.

All times are in milliseconds, measured on the server's clock (injectable, so tests can run
on virtual time). A stage that did not run in a turn is None, never 0. The stage figures
time one provider call each, so they overlap (a speculative reply asks the LLM before the
turn ends) and leave gaps (the LLM writing its first sentence); `breakdown_ms` is what adds
up: it splits the voice-to-voice time into `SEGMENTS` that tile it exactly (`Timeline`).
The registry also feeds Prometheus collectors of its own (`CollectorRegistry` per registry,
no globals), which `/metrics` exposes.
"""

from __future__ import annotations

import asyncio
import logging
import math
import statistics
import threading
from collections import deque
from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass, field, fields

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

log = logging.getLogger("voxloop.turn")

# Where voice-to-voice goes, in pipeline order. Each millisecond between the end of the
# user's speech and the first agent audio sent belongs to the earliest step not yet done.
SEGMENTS = (
    "end_of_turn",  # end of speech → the turn detector ends the turn (the silence wait)
    "stt",  # → the final transcript, where that comes after the end of the turn
    "wait",  # → the LLM asked and the reply let go: overlap check, old reply stopped...
    "llm_queue",  # waiting for a shared LLM busy with another request (`llm_serving`)
    "llm",  # → the first token: the model's own time
    "tools",  # tool calls running, before the first sentence
    "first_sentence",  # → the first speakable sentence complete: tokens it took
    "tts",  # → its first audio
    "send",  # → the first audio frame sent to the client
)

# The milestones that end each segment, in pipeline order (several may end the same one).
_MILESTONES = (
    ("turn_end", "end_of_turn"),
    ("transcript", "stt"),
    ("asked", "wait"),
    ("released", "wait"),
    ("first_text", "llm"),
    ("first_sentence", "first_sentence"),
    ("first_audio", "tts"),
    ("sent", "send"),
)
_CARVED = ("llm", "first_sentence")  # the LLM's segments, from which queue and tools come


@dataclass
class Timeline:
    """When (clock seconds) each step of a turn happened on the way to its first audio;
    None: not (yet) in this turn. Each is the first time it happened (`mark`)."""

    speech_end: float | None = None  # the user stopped talking
    turn_end: float | None = None  # the turn detector ended the turn
    transcript: float | None = None  # the final transcript was ready
    asked: float | None = None  # the LLM request was sent
    released: float | None = None  # a speculative reply was let go (its gate opened)
    first_text: float | None = None  # first token, or a sentence needing none (a filler)
    first_sentence: float | None = None  # the first speakable sentence went to the TTS
    first_audio: float | None = None  # the player had the first audio
    sent: float | None = None  # the first audio frame went to the client
    llm_waits: list[tuple[float, float]] = field(default_factory=list)  # queued for the LLM
    tool_runs: list[tuple[float, float]] = field(default_factory=list)

    _asking: float | None = field(default=None, repr=False)  # an LLM request not yet served

    def mark(self, name: str, at: float) -> None:
        if getattr(self, name) is None:
            setattr(self, name, at)

    def sentence(self, at: float) -> None:
        """A sentence went to the TTS. The first is also the reply's first words: a
        filler or an apology can come before any token."""
        self.mark("first_text", at)
        self.mark("first_sentence", at)

    def asking(self, at: float) -> None:
        """An LLM request is sent (each tool round sends one)."""
        self._asking = at

    def served(self, at: float) -> None:
        """A shared LLM starts on the request (`llm_serving`): the wait was a queue."""
        if self._asking is not None:
            self.llm_waits.append((self._asking, at))
            self._asking = None

    def segments(self) -> dict[str, float] | None:
        """Milliseconds of `SEGMENTS`, summing to sent - speech_end; None without both.
        Steps can overlap (a speculative reply works while the turn detector waits), so
        each moment goes to the earliest segment whose step was not done by then."""
        start, end = self.speech_end, self.sent
        if start is None or end is None or end < start:
            return None
        out = dict.fromkeys(SEGMENTS, 0.0)
        bound = start
        for name, segment in _MILESTONES:
            at = getattr(self, name)
            nxt = bound if at is None else min(max(bound, at), end)
            spent = nxt - bound
            if segment in _CARVED:
                queue = _overlap(self.llm_waits, bound, nxt)
                tools = _overlap(self.tool_runs, bound, nxt)
                out["llm_queue"] += queue * 1000
                out["tools"] += tools * 1000
                spent = max(0.0, spent - queue - tools)
            out[segment] += spent * 1000
            bound = nxt
        return out

    def rounded_segments(self) -> dict[str, float] | None:
        """`segments()` to 0.1 ms, rounded so that they still add up to the total (largest
        remainders get the spare tenths)."""
        parts = self.segments()
        if parts is None or self.sent is None or self.speech_end is None:
            return None
        total = round(round((self.sent - self.speech_end) * 1000, 1) * 10)  # as v2v rounds
        tenths = {k: math.floor(v * 10) for k, v in parts.items()}
        spare = total - sum(tenths.values())
        by_remainder = sorted(parts, key=lambda k: parts[k] * 10 - tenths[k], reverse=True)
        for key in by_remainder[: max(0, spare)]:
            tenths[key] += 1
        return {k: v / 10 for k, v in tenths.items()}


def _overlap(spans: list[tuple[float, float]], start: float, end: float) -> float:
    return sum(max(0.0, min(b, end) - max(a, start)) for a, b in spans)


_SERVING: ContextVar[Callable[[], None] | None] = ContextVar("voxloop_llm_serving", default=None)


def llm_serving() -> None:
    """An LLM provider that serves one request at a time (a local model that all sessions
    share) calls this as it starts on a request: the wait before is the turn's queue
    (`llm_queue`), not the model's time. A no-op outside a reply."""
    callback = _SERVING.get()
    if callback is not None:
        callback()


_QUEUED: ContextVar[Callable[[int], None] | None] = ContextVar("voxloop_llm_queued", default=None)


def llm_queued(place: int) -> None:
    """A shared LLM has to keep the request waiting (`place` in its queue, 1 = next): the
    reply tells the user, and its watchdog does not count the wait as a hang."""
    callback = _QUEUED.get()
    if callback is not None:
        callback(place)


def on_llm_queued(callback: Callable[[int], None]) -> None:
    """What `llm_queued` calls in the current task and the tasks it starts."""
    _QUEUED.set(callback)


def on_llm_serving(callback: Callable[[], None]) -> None:
    """What `llm_serving` calls in the current task and the tasks it starts."""
    _SERVING.set(callback)


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
    # When each step happened: what `breakdown` splits voice-to-voice by. Not sent as such.
    timeline: Timeline = field(default_factory=Timeline, repr=False, compare=False)

    def breakdown(self) -> dict[str, float] | None:
        """Voice-to-voice split into `SEGMENTS` (ms, summing to it); None without one."""
        return self.timeline.segments()

    def as_dict(self) -> dict[str, float | int | bool | str | dict[str, float] | None]:
        out: dict[str, float | int | bool | str | dict[str, float] | None] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name != "timeline":
                out[f.name] = round(value, 1) if isinstance(value, float) else value
        out["breakdown_ms"] = self.timeline.rounded_segments()
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
        self.segment = Histogram(
            "voxloop_voice_to_voice_segment_seconds",
            "Where each voice turn's voice-to-voice time went: the segments add up to it",
            ["segment"],
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
        for segment, ms in (m.breakdown() or {}).items():
            self.segment.labels(segment).observe(ms / 1000)

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
