"""What all sessions of a process share: the loaded models, settings, clock, metrics, store."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from voxloop.clock import Clock, RealClock
from voxloop.config.settings import Settings
from voxloop.providers.base import (
    LLMProvider,
    STTProvider,
    TTSProvider,
    TurnJudgeProvider,
    VADProvider,
)
from voxloop.providers.registry import ProviderPool
from voxloop.reply.tools import ToolBox
from voxloop.store.base import ResponseQueue, SessionStore
from voxloop.store.memory import MemoryStore
from voxloop.telemetry.metrics import MetricsRegistry


class LiveSession(Protocol):
    """A connected session, as the rest of the process sees it (REST, capacity, metrics)."""

    @property
    def session_id(self) -> str: ...

    @property
    def status(self) -> str: ...

    @property
    def owner(self) -> str | None:
        """The user it belongs to (None: the operator's)."""
        ...

    @property
    def closing(self) -> bool:
        """Its connection is gone and it is only finishing its last writes."""
        ...

    async def hand_over(self) -> None:
        """Another connection resumes this session: end this one, once it is stored."""
        ...

    def forget(self) -> None:
        """The stored conversation was deleted: start afresh."""
        ...

    def apply_context(
        self, *, instructions: str | None, facts: list[str] | None, persona: str | None
    ) -> None:
        """New live context from the REST API."""
        ...


class HandOver(Protocol):
    """Which worker has which session id live, shared by the workers of one Redis
    (store/redis_handover.py), so that a session is live on one connection at a time."""

    async def hold(self, session_id: str) -> None: ...

    async def release(self, session_id: str) -> None: ...

    async def claim(self, session_id: str) -> bool:
        """Have the worker that holds it end its connection; True once it has."""
        ...


@dataclass
class Services:
    """What all sessions of a process share: the models, settings, clock, metrics, store."""

    settings: Settings
    vad: VADProvider
    stt: STTProvider
    llm: LLMProvider
    tts: TTSProvider
    clock: Clock = field(default_factory=RealClock)
    metrics: MetricsRegistry = field(default_factory=MetricsRegistry)
    store: SessionStore = field(default_factory=MemoryStore)
    # Other processes write to this store too: re-read a session's context before replies.
    shared_store: bool = False
    events: ResponseQueue | None = None  # Redis mode: each session's events, for any worker
    tools: ToolBox | None = None  # what an LLM that can call tools is offered
    live_sessions: set[LiveSession] = field(default_factory=set)
    handover: HandOver | None = None  # Redis mode: the other workers' live sessions
    pool: ProviderPool | None = None  # the owner of the providers, closed on shutdown
    judge: TurnJudgeProvider | None = None  # given; else `turn_judge` loads the pool's

    def conversations(self) -> int:
        """The connected sessions that hold a conversation. One whose caller hung up is
        still finishing its last writes, and counts no more: a caller who reconnects at
        once (a reload) finds its seat free."""
        return sum(1 for s in self.live_sessions if not s.closing)

    @property
    def turn_judge(self) -> TurnJudgeProvider | None:
        """The end-of-turn judge: the one given, else the pool's (`turn_judge.provider`),
        loaded on first use; a server's start-up warm-up loads it with the other models.
        None when there is neither (services built by hand without one). A judge that
        cannot load raises its own error (`ModelFileError`, `MissingDependencyError`)."""
        if self.judge is None and self.pool is not None:
            self.judge = self.pool.get("turn")  # type: ignore[assignment]
        return self.judge
