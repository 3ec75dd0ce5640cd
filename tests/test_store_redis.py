"""The Redis conversation store and response queue, against a real redis-server."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis

from redis_server import redis_prefix, redis_url  # noqa: F401
from voxloop.errors import VoxloopError
from voxloop.store.base import SessionRecord, TurnRecord
from voxloop.store.redis import (
    RedisResponseQueue,
    RedisStore,
    StoreUnavailableError,
    redact_url,
)


@pytest.fixture
async def store(redis_url: str, redis_prefix: str) -> AsyncIterator[RedisStore]:  # noqa: F811
    s = RedisStore(redis_url, ttl_s=60, prefix=redis_prefix)
    yield s
    await s.close()


@pytest.fixture
async def queue(redis_url: str, redis_prefix: str) -> AsyncIterator[RedisResponseQueue]:  # noqa: F811
    q = RedisResponseQueue(redis_url, ttl_s=60, prefix=redis_prefix)
    yield q
    await q.close()


def _record(session_id: str, *, updated_at: float | None = None, **kw) -> SessionRecord:
    now = time.time()
    return SessionRecord(session_id, created_at=now, updated_at=updated_at or now, **kw)


async def test_round_trip_with_turns(store: RedisStore) -> None:
    record = _record(
        "s:1",
        user_id="alice",
        persona="pirate",
        voice="joe",
        instructions="Be brief.",
        facts=["likes tea", "lives in Oslo"],
        summary="They talked about tea.",
        summarized_upto=1,
    )
    await store.save_meta(record)
    turns = [
        TurnRecord(1, "hello", "hi there", metrics={"ttfa_ms": 412.5, "ok": True, "x": None}),
        TurnRecord(2, "tell me a story", "Once upon", interrupted=True, metrics={"n": "a"}),
    ]
    for turn in turns:
        await store.append_turn("s:1", turn)
    record.turns = turns

    loaded = await store.load("s:1")
    assert loaded is not None
    assert loaded.turns == turns
    assert loaded.turns[1].interrupted is True
    expected = record.to_json()
    got = loaded.to_json()
    assert got["updated_at"] >= expected["updated_at"]  # append_turn touches it
    expected["updated_at"] = got["updated_at"]
    assert got == expected
    assert await store.load("nope") is None


async def test_save_meta_updates_without_touching_turns(store: RedisStore) -> None:
    await store.save_meta(_record("s1", persona="a"))
    await store.append_turn("s1", TurnRecord(1, "hi", "hello"))
    await store.save_meta(_record("s1", persona="b", summary="greeted"))
    loaded = await store.load("s1")
    assert loaded is not None
    assert (loaded.persona, loaded.summary, len(loaded.turns)) == ("b", "greeted", 1)


async def test_append_to_unknown_session_is_dropped(
    store: RedisStore,
    redis_prefix: str,  # noqa: F811
) -> None:
    await store.append_turn("ghost", TurnRecord(1, "hi"))
    assert await store.load("ghost") is None
    assert await store.client.exists(f"{redis_prefix}session:{{ghost}}:turns") == 0
    assert (await store.list_sessions()).total == 0


async def test_concurrent_appends_keep_each_sessions_order(
    redis_url: str,  # noqa: F811
    redis_prefix: str,  # noqa: F811
) -> None:
    """Six sessions, each with its own producer appending 100 turns in order, all at once
    through two store objects (two "workers"): every session gets exactly its own turns,
    in its own order."""
    workers = [RedisStore(redis_url, ttl_s=60, prefix=redis_prefix) for _ in range(2)]
    sessions = [f"sess-{i}" for i in range(6)]
    for sid in sessions:
        await workers[0].save_meta(_record(sid))

    async def produce(index: int, sid: str) -> None:
        for n in range(100):
            await workers[(index + n) % 2].append_turn(sid, TurnRecord(n, f"{sid} says {n}"))

    await asyncio.gather(*(produce(i, sid) for i, sid in enumerate(sessions)))
    for sid in sessions:
        loaded = await workers[1].load(sid)
        assert loaded is not None
        assert [(t.turn_id, t.user) for t in loaded.turns] == [
            (n, f"{sid} says {n}") for n in range(100)
        ]
    for w in workers:
        await w.close()


async def _with_turn(store: RedisStore, record: SessionRecord) -> None:
    """Save a session that has one turn (only those are listed), keeping its updated_at."""
    await store.save_meta(record)
    await store.append_turn(record.session_id, TurnRecord(1, "hi"))
    await store.save_meta(record)  # append_turn made it the newest: back to its own time


async def test_paging_newest_first(store: RedisStore) -> None:
    base = time.time() - 100
    for i in range(7):
        await _with_turn(store, _record(f"p{i}", updated_at=base + i))
    await store.append_turn("p6", TurnRecord(2, "again"))  # p6 stays newest

    pages = [await store.list_sessions(offset=o, limit=3) for o in (0, 3, 6)]
    assert [[s["session_id"] for s in p.sessions] for p in pages] == [
        ["p6", "p5", "p4"],
        ["p3", "p2", "p1"],
        ["p0"],
    ]
    assert {p.total for p in pages} == {7}
    assert (pages[0].offset, pages[0].limit) == (0, 3)
    first = pages[0].sessions[0]
    assert first["turn_count"] == 2 and "turns" not in first
    assert pages[1].sessions[0]["turn_count"] == 1
    assert (await store.list_sessions(offset=10, limit=3)).sessions == []


async def test_a_session_without_turns_is_stored_but_not_listed(store: RedisStore) -> None:
    """A refused or silent attempt leaves no entry in the listing; the session can still be
    read and resumed, and it is listed from its first turn. (Its keys expire by TTL.)"""
    await _with_turn(store, _record("talked"))
    for i in range(3):
        await store.save_meta(_record(f"empty-{i}", persona="pirate"))
    page = await store.list_sessions()
    assert [s["session_id"] for s in page.sessions] == ["talked"] and page.total == 1
    loaded = await store.load("empty-0")
    assert loaded is not None and loaded.persona == "pirate"
    await store.save_meta(_record("empty-0", persona="parrot"))  # a change: still unlisted
    assert (await store.list_sessions()).total == 1
    await store.append_turn("empty-0", TurnRecord(1, "ahoy"))
    page = await store.list_sessions()
    assert [s["session_id"] for s in page.sessions] == ["empty-0", "talked"]
    assert page.total == 2


async def test_delete(store: RedisStore, queue: RedisResponseQueue) -> None:
    await store.save_meta(_record("d1", user_id="bob"))
    await store.append_turn("d1", TurnRecord(1, "secret"))
    await queue.push("d1", {"type": "transcript", "text": "secret"})
    assert await store.delete("d1") is True
    assert await store.load("d1") is None
    assert await queue.read("d1") == []  # its transcript events go too
    assert (await store.list_sessions()).total == 0
    assert await store.user_sessions("bob") == []
    assert await store.delete("d1") is False


async def test_purge_removes_only_old_sessions(store: RedisStore) -> None:
    now = time.time()
    for i in range(3):
        await _with_turn(store, _record(f"old{i}", user_id="carol", updated_at=now - 1000 - i))
    await _with_turn(store, _record("new", user_id="carol", updated_at=now))
    assert await store.purge(now - 500) == 3
    assert [s["session_id"] for s in (await store.list_sessions()).sessions] == ["new"]
    assert [r.session_id for r in await store.user_sessions("carol")] == ["new"]
    assert await store.load("old0") is None
    assert await store.purge(now - 500) == 0


async def test_user_sessions_newest_first_with_turns(store: RedisStore) -> None:
    base = time.time() - 100
    for i in range(4):
        await store.save_meta(_record(f"u{i}", user_id="dana", updated_at=base + i))
        await store.save_meta(_record(f"o{i}", user_id="eve", updated_at=base + i))
    await store.append_turn("u1", TurnRecord(1, "remember the tea"))  # now the newest

    got = await store.user_sessions("dana", limit=3)
    assert [r.session_id for r in got] == ["u1", "u3", "u2"]
    assert [t.user for t in got[0].turns] == ["remember the tea"]
    assert all(r.user_id == "dana" for r in got)

    # A session that moves to another user leaves the old user's index on the next read.
    await store.save_meta(_record("u3", user_id="eve"))
    assert [r.session_id for r in await store.user_sessions("dana")] == ["u1", "u2", "u0"]
    assert await store.user_sessions("nobody") == []


async def test_expired_index_entries_are_skipped_and_removed(
    store: RedisStore,
    redis_prefix: str,  # noqa: F811
) -> None:
    base = time.time() - 100
    for i in range(5):
        await _with_turn(store, _record(f"e{i}", user_id="fay", updated_at=base + i))
    # What expiry does, without waiting for it: the session keys vanish, the indexes stay.
    await store.client.delete(f"{redis_prefix}session:{{e4}}", f"{redis_prefix}session:{{e2}}")

    page = await store.list_sessions(offset=0, limit=2)
    assert [s["session_id"] for s in page.sessions] == ["e3", "e1"]
    assert page.total == 3
    assert await store.client.zcard(f"{redis_prefix}sessions") == 3
    assert [r.session_id for r in await store.user_sessions("fay")] == ["e3", "e1", "e0"]


async def test_keys_expire(redis_url: str, redis_prefix: str) -> None:  # noqa: F811
    store = RedisStore(redis_url, ttl_s=1, prefix=redis_prefix)
    queue = RedisResponseQueue(redis_url, ttl_s=1, prefix=redis_prefix)
    await store.save_meta(_record("x1", user_id="gus"))
    await store.append_turn("x1", TurnRecord(1, "hi"))
    await queue.push("x1", {"type": "ready"})
    keys = [
        f"{redis_prefix}session:{{x1}}",
        f"{redis_prefix}session:{{x1}}:turns",
        f"{redis_prefix}session:{{x1}}:events",
        f"{redis_prefix}user:{{gus}}:sessions",
    ]
    for key in keys:
        assert 0 < await store.client.pttl(key) <= 1000, key
    assert await store.client.ttl(f"{redis_prefix}session:{{x1}}") > 0

    await asyncio.sleep(2.1)  # waiting for Redis to expire the keys
    assert await store.load("x1") is None
    page = await store.list_sessions()
    assert (page.sessions, page.total) == ([], 0)
    assert await store.user_sessions("gus") == []
    assert await queue.read("x1") == []
    await store.close()
    await queue.close()


async def test_queue_read_after_and_drop(queue: RedisResponseQueue) -> None:
    ids = [await queue.push("q1", {"type": "delta", "n": n}) for n in range(5)]
    assert all(isinstance(i, str) for i in ids)
    assert ids == sorted(ids, key=lambda i: tuple(map(int, i.split("-"))))
    assert [e["n"] for _, e in await queue.read("q1")] == [0, 1, 2, 3, 4]
    assert await queue.read("q1", after=ids[2]) == [
        (ids[3], {"type": "delta", "n": 3}),
        (ids[4], {"type": "delta", "n": 4}),
    ]
    assert await queue.read("q1", after=ids[-1]) == []
    with pytest.raises(ValueError, match="not an event id"):
        await queue.read("q1", after="bogus")
    assert [e["n"] for _, e in await queue.read("q1", limit=2)] == [0, 1]
    await queue.drop("q1")
    assert await queue.read("q1") == []
    assert await queue.read("never") == []


async def test_queue_fifo_per_session_under_concurrency(
    redis_url: str,  # noqa: F811
    redis_prefix: str,  # noqa: F811
) -> None:
    """Five sessions pushing at once through two queue objects (two workers): each reads
    back exactly its own events, in push order."""
    workers = [RedisResponseQueue(redis_url, ttl_s=60, prefix=redis_prefix) for _ in range(2)]
    sessions = [f"q:{i}" for i in range(5)]

    async def produce(index: int, sid: str) -> list[str]:
        return [
            await workers[(index + n) % 2].push(sid, {"sid": sid, "n": n, "text": "é ✓"})
            for n in range(100)
        ]

    pushed = await asyncio.gather(*(produce(i, sid) for i, sid in enumerate(sessions)))
    for sid, ids in zip(sessions, pushed, strict=True):
        events = await workers[0].read(sid)
        assert [i for i, _ in events] == ids
        assert [e for _, e in events] == [{"sid": sid, "n": n, "text": "é ✓"} for n in range(100)]
    for w in workers:
        await w.close()


async def test_queue_trims_to_about_max_events_keeping_the_newest(
    redis_url: str,  # noqa: F811
    redis_prefix: str,  # noqa: F811
) -> None:
    queue = RedisResponseQueue(redis_url, ttl_s=60, prefix=redis_prefix, max_events=10)
    for n in range(500):
        await queue.push("t1", {"n": n})
    kept = [e["n"] for _, e in await queue.read("t1")]
    # Approximate trimming drops whole stream nodes (100 entries by default), so somewhat
    # more than 10 may remain, but always the newest, contiguous and in order.
    assert 10 <= len(kept) < 500
    assert kept == list(range(500 - len(kept), 500))
    await queue.close()


async def test_shared_client(redis_url: str, redis_prefix: str) -> None:  # noqa: F811
    client = aioredis.from_url(redis_url, decode_responses=True)
    store = RedisStore(redis_url, ttl_s=60, prefix=redis_prefix, client=client)
    queue = RedisResponseQueue(redis_url, ttl_s=60, prefix=redis_prefix, client=client)
    await store.save_meta(_record("c1"))
    await queue.push("c1", {"type": "ready"})
    await store.close()
    await queue.close()
    assert await client.ping()  # a client handed in stays the caller's to close
    await client.aclose()
    with pytest.raises(ValueError, match="decode_responses"):
        RedisStore(redis_url, ttl_s=60, client=aioredis.from_url(redis_url))


@pytest.mark.parametrize("cls", [RedisStore, RedisResponseQueue])
async def test_unreachable_redis_names_the_url_but_not_the_password(cls: type) -> None:
    url = "redis://:secret@127.0.0.1:1/0"
    backend = cls(url, ttl_s=60)
    call = backend.load("s") if cls is RedisStore else backend.read("s")
    with pytest.raises(StoreUnavailableError) as info:
        await call
    message = str(info.value)
    assert "cannot reach Redis at redis://:***@127.0.0.1:1/0" in message
    assert "secret" not in message
    assert isinstance(info.value, VoxloopError) and isinstance(info.value, ConnectionError)
    await backend.close()


def test_redact_url() -> None:
    assert redact_url("redis://127.0.0.1:6379/0") == "redis://127.0.0.1:6379/0"
    assert redact_url("redis://user:pw@h:1/0") == "redis://user:***@h:1/0"
    assert redact_url("rediss://:p%40w@h/0") == "rediss://:***@h/0"
    assert redact_url("unix:///run/redis.sock?db=1&password=pw") == (
        "unix:///run/redis.sock?db=1&password=***"
    )


async def test_load_meta_leaves_the_turns_out(store: RedisStore) -> None:
    await store.save_meta(SessionRecord("m", instructions="Be brief."))
    await store.append_turn("m", TurnRecord(1, "q", "a"))
    meta = await store.load_meta("m")
    assert meta is not None and meta.instructions == "Be brief." and meta.turns == []
    assert (await store.load("m")).turns[0].user == "q"
    assert await store.load_meta("missing") is None
