"""The default conversation store: one SQLite file, no server.

Every statement runs on the store's own thread, one at a time, so writes keep their
order and the event loop (and with it the audio) never waits on the disk. The database
is in WAL mode and each write commits at once: a completed turn survives `kill -9` of the
server (only losing power could cost the last moments).
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict
from pathlib import Path
from typing import Any, TypeVar

from voxloop.store.base import Page, SessionRecord, TurnRecord

T = TypeVar("T")

SCHEMA = """
CREATE TABLE IF NOT EXISTS sessions (
    session_id TEXT PRIMARY KEY,
    user_id TEXT,
    meta TEXT NOT NULL,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS sessions_updated ON sessions(updated_at);
CREATE INDEX IF NOT EXISTS sessions_user ON sessions(user_id, updated_at);
CREATE TABLE IF NOT EXISTS turns (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    session_id TEXT NOT NULL REFERENCES sessions(session_id) ON DELETE CASCADE,
    turn_id INTEGER NOT NULL,
    user_text TEXT NOT NULL,
    assistant_text TEXT NOT NULL,
    interrupted INTEGER NOT NULL,
    metrics TEXT NOT NULL,
    created_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS turns_session ON turns(session_id, seq);
"""

# Everything of a SessionRecord but these lives in the `meta` JSON column.
_COLUMNS = ("session_id", "user_id", "created_at", "updated_at", "turns")


class SQLiteStore:
    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="voxloop-sqlite")
        self._local = threading.local()
        self._connections: list[sqlite3.Connection] = []
        try:
            self._run_sync(self._init)
        except (sqlite3.Error, OSError) as exc:
            self._executor.shutdown()
            raise RuntimeError(f"cannot open the conversation database {self.path}: {exc}") from exc

    # -- plumbing -------------------------------------------------------------------------

    def _db(self) -> sqlite3.Connection:
        db = getattr(self._local, "db", None)
        if db is None:
            db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")  # durable across a process crash in WAL
            db.execute("PRAGMA foreign_keys=ON")
            db.execute("PRAGMA busy_timeout=5000")  # another worker process may be writing
            self._local.db = db
            self._connections.append(db)
        return db

    def _init(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db().executescript(SCHEMA)

    def _run_sync(self, fn: Callable[[], T]) -> T:
        return self._executor.submit(fn).result()

    async def _run(self, fn: Callable[[], T]) -> T:
        return await asyncio.wrap_future(self._executor.submit(fn))

    # -- reading --------------------------------------------------------------------------

    @staticmethod
    def _record(row: tuple, turns: list[TurnRecord]) -> SessionRecord:
        session_id, user_id, meta, created_at, updated_at = row
        fields: dict[str, Any] = json.loads(meta)
        return SessionRecord(
            session_id=session_id,
            user_id=user_id,
            created_at=created_at,
            updated_at=updated_at,
            turns=turns,
            **fields,
        )

    def _turns(self, session_id: str) -> list[TurnRecord]:
        rows = self._db().execute(
            "SELECT turn_id, user_text, assistant_text, interrupted, metrics, created_at "
            "FROM turns WHERE session_id = ? ORDER BY seq",
            (session_id,),
        )
        return [
            TurnRecord(t, u, a, bool(i), json.loads(m), c) for t, u, a, i, m, c in rows.fetchall()
        ]

    def _load(self, session_id: str, turns: bool = True) -> SessionRecord | None:
        row = (
            self._db()
            .execute(
                "SELECT session_id, user_id, meta, created_at, updated_at FROM sessions "
                "WHERE session_id = ?",
                (session_id,),
            )
            .fetchone()
        )
        if not row:
            return None
        return self._record(row, self._turns(session_id) if turns else [])

    async def load(self, session_id: str) -> SessionRecord | None:
        return await self._run(lambda: self._load(session_id))

    async def load_meta(self, session_id: str) -> SessionRecord | None:
        return await self._run(lambda: self._load(session_id, turns=False))

    async def list_sessions(self, *, offset: int = 0, limit: int = 50) -> Page:
        def query() -> Page:
            db = self._db()
            talked = "EXISTS (SELECT 1 FROM turns t WHERE t.session_id = s.session_id)"
            total = db.execute(f"SELECT COUNT(*) FROM sessions s WHERE {talked}").fetchone()[0]
            rows = db.execute(
                "SELECT s.session_id, s.user_id, s.meta, s.created_at, s.updated_at, "
                "(SELECT COUNT(*) FROM turns t WHERE t.session_id = s.session_id) "
                f"FROM sessions s WHERE {talked} "
                "ORDER BY s.updated_at DESC, s.session_id LIMIT ? OFFSET ?",
                (limit, offset),
            ).fetchall()
            sessions = []
            for *row, count in rows:
                meta = self._record(tuple(row), []).meta()
                meta["turn_count"] = count
                sessions.append(meta)
            return Page(sessions, total, offset, limit)

        return await self._run(query)

    async def user_sessions(self, user_id: str, *, limit: int = 5) -> list[SessionRecord]:
        def query() -> list[SessionRecord]:
            rows = (
                self._db()
                .execute(
                    "SELECT session_id, user_id, meta, created_at, updated_at FROM sessions "
                    "WHERE user_id = ? ORDER BY updated_at DESC LIMIT ?",
                    (user_id, limit),
                )
                .fetchall()
            )
            return [self._record(row, self._turns(row[0])) for row in rows]

        return await self._run(query)

    # -- writing --------------------------------------------------------------------------

    async def save_meta(self, record: SessionRecord) -> None:
        meta = {k: v for k, v in asdict(record).items() if k not in _COLUMNS}
        values = (
            record.session_id,
            record.user_id,
            json.dumps(meta),
            record.created_at,
            record.updated_at,
        )

        def write() -> None:
            self._db().execute(
                "INSERT INTO sessions (session_id, user_id, meta, created_at, updated_at) "
                "VALUES (?, ?, ?, ?, ?) ON CONFLICT(session_id) DO UPDATE SET "
                "user_id = excluded.user_id, meta = excluded.meta, "
                "updated_at = excluded.updated_at",
                values,
            )

        await self._run(write)

    async def append_turn(self, session_id: str, turn: TurnRecord) -> None:
        values = (
            session_id,
            turn.turn_id,
            turn.user,
            turn.assistant,
            int(turn.interrupted),
            json.dumps(turn.metrics),
            turn.created_at,
        )

        def write() -> None:
            db = self._db()
            with db:  # one transaction: the turn and the session's new updated_at
                db.execute("BEGIN")
                db.execute(
                    "INSERT INTO turns (session_id, turn_id, user_text, assistant_text, "
                    "interrupted, metrics, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    values,
                )
                db.execute(
                    "UPDATE sessions SET updated_at = ? WHERE session_id = ?",
                    (max(time.time(), turn.created_at), session_id),
                )

        await self._run(write)

    async def delete(self, session_id: str) -> bool:
        def write() -> bool:
            cursor = self._db().execute("DELETE FROM sessions WHERE session_id = ?", (session_id,))
            return cursor.rowcount > 0

        return await self._run(write)

    async def purge(self, older_than: float) -> int:
        def write() -> int:
            cursor = self._db().execute("DELETE FROM sessions WHERE updated_at < ?", (older_than,))
            return cursor.rowcount

        return await self._run(write)

    async def close(self) -> None:
        def close_all() -> None:
            for db in self._connections:
                db.close()
            self._connections.clear()

        await self._run(close_all)
        self._executor.shutdown(wait=True)
