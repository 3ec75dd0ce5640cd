"""Conversation store and response queue in Redis, so any worker can resume any session.

Key layout (`P` is the prefix, "voxloop:" by default; the braces are literal):

- `P session:{ID}`         hash, the session meta: one field per `SessionRecord` field
                            (not the turns), each value JSON-encoded
- `P session:{ID}:turns`   list, one JSON `TurnRecord` per item, RPUSHed: append order
- `P session:{ID}:events`  stream of outgoing events (`RedisResponseQueue`), field `json`
- `P sessions`             sorted set of the ids of sessions with at least one turn, scored
                            by `updated_at`: newest-first paging with ZREVRANGE, the total
                            with ZCARD. A session enters it with its first turn (a
                            connection that never got to a turn is not listed)
- `P user:{USER}:sessions` sorted set, the same for one user's sessions

Session ids may contain ":", so they are wrapped in braces: otherwise the meta key of a
session called "x:turns" would be the turns key of session "x". (Braces are also Redis
Cluster hash tags, so one session's keys share a slot.)

Expiry: every write to a session (save_meta, append_turn) sets a sliding TTL of `ttl_s` on
its meta and turns keys and on its user's index; each pushed event does the same for the
events stream. The global index has no TTL: an entry whose session has expired is skipped
and removed when a listing meets it (and by `purge`), so `total` may count a few expired
sessions until a listing has walked past them. A user index whose user changed, or that
names expired sessions, is cleaned the same way by `user_sessions`. A session without
turns is in no global index, so `purge` does not see it: its TTL removes it. Workers
sharing a prefix should share `ttl_s`: the last writer's TTL is the one a user index gets.
"""

from __future__ import annotations

import contextlib
import json
import re
import time
from collections.abc import Iterator
from dataclasses import asdict, fields
from typing import Any
from urllib.parse import urlsplit

try:
    import redis.asyncio as aioredis
    from redis.exceptions import ConnectionError as _RedisConnectionError
    from redis.exceptions import TimeoutError as _RedisTimeoutError
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        "the Redis store needs the redis package: pip install 'voxloop[redis]'"
    ) from exc

from voxloop.errors import VoxloopError
from voxloop.store.base import Page, SessionRecord, TurnRecord

_META_FIELDS = tuple(f.name for f in fields(SessionRecord) if f.name != "turns")
_TURN_FIELDS = frozenset(f.name for f in fields(TurnRecord))
_EVENT_ID = re.compile(r"[0-9]{1,20}-[0-9]{1,20}")


class StoreUnavailableError(VoxloopError, ConnectionError):
    """Redis cannot be reached; the message names the URL (without its password)."""

    code = "store_unavailable"


def redact_url(url: str) -> str:
    """The URL with any password (in the userinfo or a `password=` query) masked, for
    messages and logs."""
    parts = urlsplit(url)
    netloc = parts.netloc
    if parts.password is not None:
        user = parts.username or ""
        netloc = f"{user}:***@{netloc.rpartition('@')[2]}"
    query = re.sub(r"(?<=password=)[^&]*", "***", parts.query)
    out = f"{parts.scheme}://{netloc}{parts.path}"
    return out + (f"?{query}" if query else "") + (f"#{parts.fragment}" if parts.fragment else "")


class RedisUser:
    """What the store and the queue share: the client, its lifetime, and turning "cannot
    connect" into one clear error instead of a redis-py traceback."""

    def __init__(
        self, url: str, *, ttl_s: float, prefix: str, client: aioredis.Redis | None
    ) -> None:
        if ttl_s <= 0:
            raise ValueError(f"ttl_s must be positive, got {ttl_s}")
        self.url = redact_url(url)
        self.prefix = prefix
        self.ttl_ms = max(1, round(ttl_s * 1000))
        self._password = urlsplit(url).password or ""
        self._owned = client is None
        if client is None:
            # Timeouts, so that a dead Redis fails a call instead of hanging a session.
            client = aioredis.from_url(
                url, decode_responses=True, socket_connect_timeout=5.0, socket_timeout=10.0
            )
        elif not client.get_connection_kwargs().get("decode_responses"):
            raise ValueError("the Redis client must be created with decode_responses=True")
        self.client: aioredis.Redis = client

    def _key(self, session_id: str, kind: str = "") -> str:
        return f"{self.prefix}session:{{{session_id}}}{kind}"

    @contextlib.contextmanager
    def _reachable(self) -> Iterator[None]:
        try:
            yield
        except (_RedisConnectionError, _RedisTimeoutError) as exc:
            detail = str(exc)
            if self._password:
                detail = detail.replace(self._password, "***")
            raise StoreUnavailableError(f"cannot reach Redis at {self.url}: {detail}") from exc

    async def close(self) -> None:
        """Close the client if this object made it; a client handed in is the caller's."""
        if self._owned:
            await self.client.aclose()


class RedisStore(RedisUser):
    """`SessionStore` in Redis (see the module docstring for the keys and expiry)."""

    def __init__(
        self,
        url: str,
        *,
        ttl_s: float,
        prefix: str = "voxloop:",
        client: aioredis.Redis | None = None,
    ) -> None:
        super().__init__(url, ttl_s=ttl_s, prefix=prefix, client=client)
        self._index = f"{prefix}sessions"

    def _user_key(self, user_id: str) -> str:
        return f"{self.prefix}user:{{{user_id}}}:sessions"

    def _record(self, raw: dict[str, str], turns: list[str]) -> SessionRecord:
        meta = {k: json.loads(v) for k, v in raw.items() if k in _META_FIELDS}
        return SessionRecord(**meta, turns=[_turn(t) for t in turns])

    async def load(self, session_id: str) -> SessionRecord | None:
        found = await self._load_many([session_id])
        return found[0]

    async def load_meta(self, session_id: str) -> SessionRecord | None:
        with self._reachable():
            raw = await self.client.hgetall(self._key(session_id))
        return self._record(raw, []) if raw else None

    async def _load_many(self, ids: list[str]) -> list[SessionRecord | None]:
        """Each session with its turns (None where it has expired), in one round trip."""
        with self._reachable():
            async with self.client.pipeline(transaction=False) as pipe:
                for sid in ids:
                    pipe.hgetall(self._key(sid))
                    pipe.lrange(self._key(sid, ":turns"), 0, -1)
                out = await pipe.execute()
        metas, turns = out[0::2], out[1::2]
        return [self._record(m, t) if m else None for m, t in zip(metas, turns, strict=True)]

    async def save_meta(self, record: SessionRecord) -> None:
        meta = {k: json.dumps(getattr(record, k)) for k in _META_FIELDS}
        key, turns = self._key(record.session_id), self._key(record.session_id, ":turns")
        with self._reachable():
            async with self.client.pipeline(transaction=True) as pipe:
                pipe.hset(key, mapping=meta)
                pipe.pexpire(key, self.ttl_ms)
                pipe.pexpire(turns, self.ttl_ms)  # a no-op until the first turn
                # Listed from its first turn on (append_turn): here only its time moves.
                pipe.zadd(self._index, {record.session_id: record.updated_at}, xx=True)
                if record.user_id is not None:
                    user_key = self._user_key(record.user_id)
                    pipe.zadd(user_key, {record.session_id: record.updated_at})
                    pipe.pexpire(user_key, self.ttl_ms)
                await pipe.execute()

    async def append_turn(self, session_id: str, turn: TurnRecord) -> None:
        """Append the turn, touch `updated_at` and slide the TTLs in one MULTI. The meta
        key is WATCHed: a turn for a session that is gone (never saved, deleted, expired)
        is dropped, as the memory store does, rather than left in a half-made session."""
        key, turns = self._key(session_id), self._key(session_id, ":turns")
        payload = json.dumps(asdict(turn))

        async def write(pipe: Any) -> None:
            user = await pipe.hget(key, "user_id")
            if user is None:  # no meta hash (user_id is always a field, even "null")
                return
            user_id = json.loads(user)
            now = max(time.time(), turn.created_at)
            pipe.multi()
            pipe.rpush(turns, payload)
            pipe.hset(key, "updated_at", json.dumps(now))
            pipe.pexpire(key, self.ttl_ms)
            pipe.pexpire(turns, self.ttl_ms)
            pipe.zadd(self._index, {session_id: now})
            if user_id is not None:
                pipe.zadd(self._user_key(user_id), {session_id: now})
                pipe.pexpire(self._user_key(user_id), self.ttl_ms)

        with self._reachable():
            await self.client.transaction(write, key)

    async def list_sessions(self, *, offset: int = 0, limit: int = 50) -> Page:
        """Expired sessions met on the way are dropped from the index and the window read
        again. (A session re-created in the instant between the check and the ZREM leaves
        the listing until its next write re-adds it.)"""
        offset = max(0, offset)
        sessions: list[dict[str, Any]] = []
        with self._reachable():
            while limit > 0:  # until a window holds no expired entries
                ids = await self.client.zrevrange(self._index, offset, offset + limit - 1)
                async with self.client.pipeline(transaction=False) as pipe:
                    for sid in ids:
                        pipe.hgetall(self._key(sid))
                        pipe.llen(self._key(sid, ":turns"))
                    out = await pipe.execute()
                gone = [sid for sid, meta in zip(ids, out[0::2], strict=True) if not meta]
                if gone:
                    await self.client.zrem(self._index, *gone)
                    continue
                for meta, count in zip(out[0::2], out[1::2], strict=True):
                    sessions.append(self._record(meta, []).meta() | {"turn_count": count})
                break
            total = await self.client.zcard(self._index)
        return Page(sessions=sessions, total=total, offset=offset, limit=limit)

    async def user_sessions(self, user_id: str, *, limit: int = 5) -> list[SessionRecord]:
        user_key = self._user_key(user_id)
        while limit > 0:
            with self._reachable():
                ids = await self.client.zrevrange(user_key, 0, limit - 1)
            records = await self._load_many(ids)
            stale = [
                sid
                for sid, rec in zip(ids, records, strict=True)
                if rec is None or rec.user_id != user_id
            ]
            if not stale:
                return [rec for rec in records if rec is not None]
            with self._reachable():
                await self.client.zrem(user_key, *stale)
        return []

    async def delete(self, session_id: str) -> bool:
        """Forget the session: its meta, turns and outgoing events."""
        return await self._delete([session_id]) == 1

    async def _delete(self, ids: list[str], older_than: float | None = None) -> int:
        """Delete these sessions (only those not updated since `older_than`, if given);
        how many existed."""
        with self._reachable():
            async with self.client.pipeline(transaction=False) as pipe:
                for sid in ids:
                    pipe.hmget(self._key(sid), ["user_id", "updated_at"])
                metas = await pipe.execute()
        doomed = [
            (sid, json.loads(user) if user else None)
            for sid, (user, updated) in zip(ids, metas, strict=True)
            # skip one touched since the caller looked; an expired one still leaves the index
            if older_than is None or not updated or json.loads(updated) < older_than
        ]
        with self._reachable():
            async with self.client.pipeline(transaction=True) as pipe:
                for sid, _ in doomed:  # first, so that their results come first
                    pipe.delete(self._key(sid))
                for sid, user_id in doomed:
                    pipe.delete(self._key(sid, ":turns"), self._key(sid, ":events"))
                    pipe.zrem(self._index, sid)
                    if user_id is not None:
                        pipe.zrem(self._user_key(user_id), sid)
                out = await pipe.execute()
        return sum(out[: len(doomed)])

    async def purge(self, older_than: float) -> int:
        with self._reachable():
            ids = await self.client.zrangebyscore(self._index, "-inf", f"({float(older_than)!r}")
        removed = 0
        for start in range(0, len(ids), 500):
            removed += await self._delete(ids[start : start + 500], older_than)
        return removed


def _turn(raw: str) -> TurnRecord:
    """A stored turn; fields this version does not know (a newer writer) are dropped."""
    data = json.loads(raw)
    return TurnRecord(**{k: v for k, v in data.items() if k in _TURN_FIELDS})


class RedisResponseQueue(RedisUser):
    """`ResponseQueue` as one Redis stream per session, trimmed to about `max_events`."""

    def __init__(
        self,
        url: str,
        *,
        ttl_s: float,
        prefix: str = "voxloop:",
        max_events: int = 1000,
        client: aioredis.Redis | None = None,
    ) -> None:
        super().__init__(url, ttl_s=ttl_s, prefix=prefix, client=client)
        self.max_events = max_events

    async def push(self, session_id: str, event: dict[str, Any]) -> str:
        """XADD with an approximate MAXLEN (cheap: Redis trims whole nodes, so a few more
        than `max_events` may stay) and slide the stream's TTL, in one MULTI."""
        key = self._key(session_id, ":events")
        with self._reachable():
            async with self.client.pipeline(transaction=True) as pipe:
                pipe.xadd(
                    key, {"json": json.dumps(event)}, maxlen=self.max_events, approximate=True
                )
                pipe.pexpire(key, self.ttl_ms)
                event_id, _ = await pipe.execute()
        return event_id

    async def read(
        self, session_id: str, after: str | None = None, limit: int = 1000
    ) -> list[tuple[str, dict[str, Any]]]:
        """XRANGE from just after `after` (an exclusive "(" start, Redis >= 6.2)."""
        if after is not None and not _EVENT_ID.fullmatch(after):
            raise ValueError(f"not an event id: {after!r}")  # not Redis's less clear error
        start = "-" if after is None else f"({after}"
        with self._reachable():
            entries = await self.client.xrange(
                self._key(session_id, ":events"), min=start, max="+", count=limit
            )
        return [(event_id, json.loads(data["json"])) for event_id, data in entries]

    async def drop(self, session_id: str) -> None:
        with self._reachable():
            await self.client.delete(self._key(session_id, ":events"))


class RedisTokenLedger(RedisUser):
    """`TokenLedger` (server/security.py) shared by every worker on this Redis: a spent
    token id is a key that expires with the token."""

    def __init__(
        self, url: str, *, prefix: str = "voxloop:", client: aioredis.Redis | None = None
    ) -> None:
        super().__init__(url, ttl_s=1.0, prefix=prefix, client=client)

    async def first_use(self, jti: str, expires_at: float) -> bool:
        key = f"{self.prefix}token:{jti}"
        with self._reachable():
            return bool(await self.client.set(key, "1", nx=True, pxat=int(expires_at * 1000) + 1))
