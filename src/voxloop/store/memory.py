"""In-process session store: resume a session by id while the process lives."""

from __future__ import annotations

import re
import secrets
import time
from dataclasses import dataclass, field

from voxloop.history import History

_ID = re.compile(r"^[A-Za-z0-9_.:-]{1,128}$")


def new_session_id() -> str:
    return secrets.token_urlsafe(12)


def valid_session_id(session_id: str) -> bool:
    return bool(_ID.match(session_id))


@dataclass
class SessionState:
    session_id: str
    history: History = field(default_factory=History)
    persona: str | None = None
    voice: str | None = None
    last_seen: float = field(default_factory=time.time)


class MemoryStore:
    def __init__(self, max_sessions: int = 10_000) -> None:
        self._sessions: dict[str, SessionState] = {}
        self.max_sessions = max_sessions

    def get(self, session_id: str) -> SessionState | None:
        return self._sessions.get(session_id)

    def create(self, session_id: str | None = None, max_turns: int = 20) -> SessionState:
        state = SessionState(session_id or new_session_id(), History(max_turns=max_turns))
        self._sessions[state.session_id] = state
        if len(self._sessions) > self.max_sessions:  # forget the least recently seen
            oldest = min(self._sessions.values(), key=lambda s: s.last_seen)
            del self._sessions[oldest.session_id]
        return state

    def delete(self, session_id: str) -> None:
        self._sessions.pop(session_id, None)

    def __len__(self) -> int:
        return len(self._sessions)
