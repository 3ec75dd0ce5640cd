"""What a conversation store keeps, and the contract every backend (memory, SQLite, Redis)
fulfils.

A session's live state is in the `Session` object while it is connected; the store is
where it goes between connections and across processes. Everything is plain data
(`SessionRecord`, `TurnRecord`), JSON-friendly, so any backend can hold it. All methods are
async: the SQLite store runs its statements on its own thread and Redis is a network
call, and neither may hold up the audio loop.
"""

from __future__ import annotations

import re
import secrets
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol


@dataclass
class TurnRecord:
    """One turn as stored: what the user said and what the agent was heard to say."""

    turn_id: int
    user: str
    assistant: str = ""
    interrupted: bool = False
    metrics: dict[str, float | bool | str | None] = field(default_factory=dict)
    created_at: float = field(default_factory=time.time)


# What a session (or user) id may be: it goes into Redis keys, file names of exports and
# HTTP headers, so no spaces, slashes or control characters. `fullmatch`, not `match`
# with `$`: `$` also matches before a trailing newline.
ID_RULE = "1-128 of [A-Za-z0-9_.:-]"
ID_PATTERN = r"^[A-Za-z0-9_.:-]{1,128}$"  # for pydantic fields (no trailing newline: `\Z`)
_ID = re.compile(r"[A-Za-z0-9_.:-]{1,128}")


def new_session_id() -> str:
    """16 URL-safe characters ([A-Za-z0-9_-]): always a valid id."""
    return secrets.token_urlsafe(12)


def valid_session_id(session_id: object) -> bool:
    return isinstance(session_id, str) and _ID.fullmatch(session_id) is not None


@dataclass
class SessionRecord:
    """A conversation: who, with which persona and context, what was said, and the summary
    of the turns that no longer fit the memory window."""

    session_id: str
    user_id: str | None = None
    persona: str | None = None  # persona name or inline system prompt; None: the default
    voice: str | None = None
    instructions: str | None = None  # live context (PUT /api/sessions/{id}/context)
    facts: list[str] = field(default_factory=list)
    summary: str = ""  # of turns[:summarized_upto]
    summarized_upto: int = 0  # turn_id of the last turn the summary covers
    cleared_upto: int = 0  # a `reset` forgot the turns up to this turn_id (kept for export)
    created_at: float = field(default_factory=time.time)
    updated_at: float = field(default_factory=time.time)
    turns: list[TurnRecord] = field(default_factory=list)

    def meta(self) -> dict[str, Any]:
        """Everything but the turns (what a session listing shows)."""
        out = asdict(self)
        del out["turns"]
        out["turn_count"] = len(self.turns)
        return out

    def to_json(self) -> dict[str, Any]:
        out = self.meta()
        out["turns"] = [asdict(t) for t in self.turns]
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> SessionRecord:
        data = dict(data)
        data.pop("turn_count", None)
        turns = [TurnRecord(**t) for t in data.pop("turns", [])]
        return cls(**data, turns=turns)


@dataclass
class Page:
    sessions: list[dict[str, Any]]  # SessionRecord.meta() of each
    total: int
    offset: int
    limit: int


class SessionStore(Protocol):
    """Where conversations live between connections. Writes are ordered per session."""

    async def load(self, session_id: str) -> SessionRecord | None:
        """The session with all its turns, or None."""

    async def load_meta(self, session_id: str) -> SessionRecord | None:
        """The session without its turns (cheap: read before every reply)."""

    async def save_meta(self, record: SessionRecord) -> None:
        """Create or update everything but the turns (persona, context, summary...)."""

    async def append_turn(self, session_id: str, turn: TurnRecord) -> None:
        """Add one completed turn (the session exists). Durable once this returns."""

    async def list_sessions(self, *, offset: int = 0, limit: int = 50) -> Page:
        """Newest first (by `updated_at`), only sessions with at least one turn: a
        connection that never got to a turn (a refused start, a silent microphone) leaves
        no entry in the listing. It is still stored, so it can be loaded and resumed."""

    async def user_sessions(self, user_id: str, *, limit: int = 5) -> list[SessionRecord]:
        """A user's most recent sessions, newest first, with their turns."""

    async def delete(self, session_id: str) -> bool:
        """Forget a session and its turns. False if there was no such session."""

    async def purge(self, older_than: float) -> int:
        """Delete sessions not updated since `older_than` (epoch seconds); how many."""

    async def close(self) -> None: ...


class ResponseQueue(Protocol):
    """Each session's outgoing events (JSON, not audio), strictly in order, readable from
    any worker: a client that reconnects elsewhere can catch up on what it missed."""

    async def push(self, session_id: str, event: dict[str, Any]) -> str:
        """Append one event; returns its id (ids increase within a session)."""

    async def read(
        self, session_id: str, after: str | None = None, limit: int = 1000
    ) -> list[tuple[str, dict[str, Any]]]:
        """Events after the id `after` (all when None), oldest first."""

    async def drop(self, session_id: str) -> None: ...

    async def close(self) -> None: ...
