"""In-process conversation store: nothing survives a restart. For tests and for anyone who
wants no disk writes at all (`VOXLOOP_STORE__BACKEND=memory`)."""

from __future__ import annotations

import copy
import time
from dataclasses import replace
from typing import Any

from voxloop.store.base import Page, SessionRecord, TurnRecord


class MemoryStore:
    def __init__(self, max_sessions: int = 10_000) -> None:
        self._sessions: dict[str, SessionRecord] = {}
        self.max_sessions = max_sessions

    async def load(self, session_id: str) -> SessionRecord | None:
        record = self._sessions.get(session_id)
        return copy.deepcopy(record) if record is not None else None

    async def load_meta(self, session_id: str) -> SessionRecord | None:
        record = self._sessions.get(session_id)
        return copy.deepcopy(replace(record, turns=[])) if record is not None else None

    async def save_meta(self, record: SessionRecord) -> None:
        old = self._sessions.get(record.session_id)
        new = copy.deepcopy(record)
        new.turns = old.turns if old is not None else []
        self._sessions[record.session_id] = new
        if len(self._sessions) > self.max_sessions:  # forget the least recently updated
            oldest = min(self._sessions.values(), key=lambda s: s.updated_at)
            del self._sessions[oldest.session_id]

    async def append_turn(self, session_id: str, turn: TurnRecord) -> None:
        record = self._sessions.get(session_id)
        if record is not None:
            record.turns.append(copy.deepcopy(turn))
            record.updated_at = max(time.time(), turn.created_at)

    async def list_sessions(self, *, offset: int = 0, limit: int = 50) -> Page:
        talked = [s for s in self._sessions.values() if s.turns]
        ordered = sorted(talked, key=lambda s: (-s.updated_at, s.session_id))
        metas: list[dict[str, Any]] = [s.meta() for s in ordered[offset : offset + limit]]
        return Page(metas, len(ordered), offset, limit)

    async def user_sessions(self, user_id: str, *, limit: int = 5) -> list[SessionRecord]:
        mine = [s for s in self._sessions.values() if s.user_id == user_id]
        mine.sort(key=lambda s: -s.updated_at)
        return [copy.deepcopy(s) for s in mine[:limit]]

    async def delete(self, session_id: str) -> bool:
        return self._sessions.pop(session_id, None) is not None

    async def purge(self, older_than: float) -> int:
        old = [sid for sid, s in self._sessions.items() if s.updated_at < older_than]
        for sid in old:
            del self._sessions[sid]
        return len(old)

    async def close(self) -> None:
        self._sessions.clear()

    def __len__(self) -> int:
        return len(self._sessions)
