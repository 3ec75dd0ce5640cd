"""The SQLite store: round trips, paging, deletion, retention, and a turn that survives
`kill -9` of a real server process."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
import urllib.request

import pytest

from voxloop.bench.server import running_server
from voxloop.store.base import SessionRecord, TurnRecord
from voxloop.store.sqlite import SQLiteStore


@pytest.fixture
async def store(tmp_path):
    s = SQLiteStore(tmp_path / "c.db")
    yield s
    await s.close()


async def test_round_trip(store):
    rec = SessionRecord("s1", user_id="ann", persona="tutor", facts=["a", "b"], summary="x")
    await store.save_meta(rec)
    await store.append_turn("s1", TurnRecord(1, "hi", "hello", False, {"voice_to_voice_ms": 812.5}))
    await store.append_turn("s1", TurnRecord(2, "story", "Once", True, {}))
    loaded = await store.load("s1")
    assert loaded is not None
    assert (loaded.user_id, loaded.persona, loaded.facts, loaded.summary) == (
        "ann",
        "tutor",
        ["a", "b"],
        "x",
    )
    assert [(t.turn_id, t.user, t.assistant, t.interrupted) for t in loaded.turns] == [
        (1, "hi", "hello", False),
        (2, "story", "Once", True),
    ]
    assert loaded.turns[0].metrics == {"voice_to_voice_ms": 812.5}
    assert await store.load("missing") is None


async def test_paging_and_user_sessions(store):
    for i in range(7):
        await store.save_meta(SessionRecord(f"s{i}", user_id="u" if i % 2 else None))
        await store.append_turn(f"s{i}", TurnRecord(1, f"q{i}", f"a{i}", created_at=1000.0 + i))
    pages = [await store.list_sessions(offset=o, limit=3) for o in (0, 3, 6)]
    assert [[m["session_id"] for m in p.sessions] for p in pages] == [
        ["s6", "s5", "s4"],
        ["s3", "s2", "s1"],
        ["s0"],
    ]
    assert {p.total for p in pages} == {7}
    assert pages[0].sessions[0]["turn_count"] == 1
    mine = await store.user_sessions("u", limit=2)
    assert [r.session_id for r in mine] == ["s5", "s3"]
    assert mine[0].turns[0].user == "q5"


async def test_delete_and_retention(store):
    await store.save_meta(SessionRecord("doomed"))
    await store.append_turn("doomed", TurnRecord(1, "q", "a"))
    assert await store.delete("doomed") is True
    assert await store.delete("doomed") is False
    assert await store.load("doomed") is None
    now = time.time()
    for sid, age_days in (("ancient", 40), ("recent", 1)):
        await store.save_meta(SessionRecord(sid))
        await store.append_turn(sid, TurnRecord(1, "q", "a"))
        await store.save_meta(SessionRecord(sid, updated_at=now - age_days * 86400))
    await store.save_meta(SessionRecord("ancient-and-empty", updated_at=now - 40 * 86400))
    assert await store.purge(now - 30 * 86400) == 2
    assert [m["session_id"] for m in (await store.list_sessions()).sessions] == ["recent"]


async def test_an_unusable_database_path_is_named(tmp_path):
    (tmp_path / "file").write_text("not a folder")
    with pytest.raises(RuntimeError, match=r"conversation database .*file/c\.db"):
        SQLiteStore(tmp_path / "file" / "c.db")


async def _one_turn(url: str, session_id: str, text: str) -> dict:
    import websockets

    async with websockets.connect(url) as ws:
        await ws.send(json.dumps({"type": "start", "session_id": session_id}))
        await ws.send(json.dumps({"type": "text", "content": text}))
        async for message in ws:
            if isinstance(message, str) and json.loads(message)["type"] == "metrics":
                return json.loads(message)
    raise AssertionError("no metrics")


def test_a_completed_turn_survives_kill_9(tmp_path):
    env = {"VOXLOOP_STORE__BACKEND": "sqlite", "VOXLOOP_STORE__PATH": str(tmp_path / "c.db")}
    with running_server(providers="fake", env=env) as server:
        asyncio.run(_one_turn(server.url, "crash-me", "remember the blue door"))
        os.kill(server.pid, signal.SIGKILL)  # no shutdown, no flush: the turn must be on disk
    with running_server(providers="fake", env=env) as again:
        url = f"http://127.0.0.1:{again.port}/api/sessions/crash-me"
        with urllib.request.urlopen(url, timeout=10) as response:
            record = json.loads(response.read())
    assert [(t["user"], t["assistant"]) for t in record["turns"]] == [
        ("remember the blue door", "You said: remember the blue door")
    ]


async def test_load_meta_leaves_the_turns_out(store):
    await store.save_meta(SessionRecord("m", instructions="Be brief."))
    await store.append_turn("m", TurnRecord(1, "q", "a"))
    meta = await store.load_meta("m")
    assert meta.instructions == "Be brief." and meta.turns == []
    assert await store.load_meta("missing") is None


async def test_a_session_without_turns_is_stored_but_not_listed(store):
    """A refused or silent attempt must not fill the listing with empty sessions; it can
    still be read and resumed, and it is listed from its first turn."""
    await store.save_meta(SessionRecord("talked"))
    await store.append_turn("talked", TurnRecord(1, "q", "a"))
    for i in range(3):
        await store.save_meta(SessionRecord(f"empty-{i}", persona="pirate"))
    page = await store.list_sessions()
    assert [m["session_id"] for m in page.sessions] == ["talked"] and page.total == 1
    assert (await store.load("empty-0")).persona == "pirate"
    await store.append_turn("empty-0", TurnRecord(1, "q", "a"))
    page = await store.list_sessions()
    assert [m["session_id"] for m in page.sessions] == ["empty-0", "talked"]
    assert page.total == 2
