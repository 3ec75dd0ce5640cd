"""One live connection per session id across workers on one Redis.

Each worker writes which live session ids it holds (`live:{id}` → its worker id). A
connection that resumes an id another worker holds asks that worker, on its own pub/sub
channel, to end its connection, and waits (at most `wait_s`) for its answer, which comes
once the older connection's last turn is stored. A worker that died leaves its keys
behind: nobody answers on its channel, and the newer connection goes on at once.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
from collections.abc import Awaitable, Callable

from voxloop.store.redis import RedisUser, aioredis

log = logging.getLogger("voxloop.store.redis_handover")

HELD_S = 3 * 3600  # longer than a connection may live (limits.max_session_s: 2 h)
ACK_S = 30  # an answer nobody reads is gone after this
# Delete the key only if it is still ours (a newer worker may hold the id by now).
_RELEASE = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end"


class RedisHandOver(RedisUser):
    def __init__(
        self,
        url: str,
        *,
        prefix: str = "voxloop:",
        client: aioredis.Redis | None = None,
        wait_s: float = 5.0,
    ) -> None:
        super().__init__(url, ttl_s=HELD_S, prefix=prefix, client=client)
        self.worker = secrets.token_hex(8)
        self.wait_s = wait_s

    def _live(self, session_id: str) -> str:
        return f"{self.prefix}live:{{{session_id}}}"

    def _channel(self, worker: str) -> str:
        return f"{self.prefix}worker:{worker}"

    async def hold(self, session_id: str) -> None:
        """This worker now has `session_id` live."""
        with self._reachable():
            await self.client.set(self._live(session_id), self.worker, ex=HELD_S)

    async def release(self, session_id: str) -> None:
        with self._reachable():
            await self.client.eval(_RELEASE, 1, self._live(session_id), self.worker)

    async def claim(self, session_id: str) -> bool:
        """Have another worker that holds `session_id` end its connection; True once it
        has (its last turn stored), False if no other worker held it or none answered."""
        with self._reachable():
            holder = await self.client.get(self._live(session_id))
            if holder is None or holder == self.worker:
                return False
            ack = f"{self.prefix}handed:{secrets.token_hex(8)}"
            message = json.dumps({"session_id": session_id, "ack": ack})
            if not await self.client.publish(self._channel(holder), message):
                return False  # that worker is gone
            return await self.client.blpop([ack], timeout=self.wait_s) is not None

    async def serve(self, let_go: Callable[[str], Awaitable[None]]) -> None:
        """Answer other workers' claims for as long as the worker runs: `let_go(id)` ends
        this worker's connection of that session (and returns once it is stored)."""
        while True:
            try:
                await self._listen(let_go)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # Redis went away: listen again once it is back
                log.warning("hand-over channel lost: %r; retrying in 1 s", exc)
                await asyncio.sleep(1.0)

    async def _listen(self, let_go: Callable[[str], Awaitable[None]]) -> None:
        pubsub = self.client.pubsub()
        try:
            await pubsub.subscribe(self._channel(self.worker))
            tasks: set[asyncio.Task] = set()
            while True:
                message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
                if message is None or message.get("type") != "message":
                    continue
                task = asyncio.create_task(self._answer(message["data"], let_go))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
        finally:
            await pubsub.aclose()

    async def _answer(self, raw: str, let_go: Callable[[str], Awaitable[None]]) -> None:
        try:
            claim = json.loads(raw)
            session_id, ack = str(claim["session_id"]), str(claim["ack"])
        except (ValueError, KeyError, TypeError):
            log.warning("malformed hand-over claim ignored")
            return
        try:
            await let_go(session_id)
        finally:
            async with self.client.pipeline(transaction=True) as pipe:
                await pipe.lpush(ack, "1").expire(ack, ACK_S).execute()
