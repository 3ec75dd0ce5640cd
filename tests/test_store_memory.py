"""The in-process store keeps the same listing rule as the others."""

from __future__ import annotations

from voxloop.store.base import SessionRecord, TurnRecord
from voxloop.store.memory import MemoryStore


async def test_a_session_without_turns_is_stored_but_not_listed():
    store = MemoryStore()
    await store.save_meta(SessionRecord("talked"))
    await store.append_turn("talked", TurnRecord(1, "q", "a"))
    await store.save_meta(SessionRecord("empty", persona="pirate"))
    page = await store.list_sessions()
    assert [m["session_id"] for m in page.sessions] == ["talked"] and page.total == 1
    assert (await store.load("empty")).persona == "pirate"  # still there to resume
    await store.append_turn("empty", TurnRecord(1, "q", "a"))
    assert (await store.list_sessions()).total == 2
