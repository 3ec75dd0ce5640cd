"""Redis mode end to end: two server processes (workers, or hosts) share sessions through
a real redis-server. A session started on worker A resumes on worker B with its history
and persona; events and sessions stay apart."""

from __future__ import annotations

import asyncio
import json
import urllib.request

from redis_server import redis_url  # noqa: F401  (the fixture)
from voxloop.bench.server import running_server


async def _talk(url: str, *texts: str, **start) -> tuple[dict, list[dict]]:
    """Start (or resume) a session, say each text, wait for each turn's metrics."""
    import websockets

    events: list[dict] = []
    async with websockets.connect(url) as ws:
        await ws.send(json.dumps({"type": "start", **start}))
        for text in texts:
            await ws.send(json.dumps({"type": "text", "content": text}))
            async for message in ws:
                if isinstance(message, str):
                    events.append(json.loads(message))
                    if events[-1]["type"] == "metrics":
                        break
        if not texts:
            async for message in ws:
                if isinstance(message, str):
                    events.append(json.loads(message))
                    if events[-1]["type"] == "session":
                        break
    session = next(e for e in events if e["type"] == "session")
    return session, events


def _get(port: int, path: str) -> dict:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as response:
        return json.loads(response.read())


def test_a_session_resumes_on_another_worker(redis_url):  # noqa: F811
    env = {
        "VOXLOOP_REDIS_URL": redis_url,
        "VOXLOOP_LLM__PROVIDER": "voxloop.testing.fakes:MemoryEchoLLM",
    }
    with (
        running_server(providers="fake", env=env) as a,
        running_server(providers="fake", env=env) as b,
    ):
        first, _ = asyncio.run(
            _talk(a.url, "I want to fly to Rome", session_id="trip-1", persona="Be a travel agent.")
        )
        assert first["resumed"] is False
        # The socket closed; the client comes back through the other worker.
        resumed, events = asyncio.run(_talk(b.url, "and back on Friday", session_id="trip-1"))
        assert resumed["resumed"] is True and resumed["turns"] == 1
        assert resumed["options"]["persona"] == "Be a travel agent."
        reply = next(e for e in events if e["type"] == "llm_response" and e["is_complete"])
        # Worker B's LLM got worker A's turn: two earlier messages (question and answer).
        assert reply["content"] == "2 earlier messages. You said: and back on Friday"
        # Another session on worker A, at the same time as nothing of trip-1.
        asyncio.run(_talk(a.url, "hello", session_id="other-1"))

        record = _get(a.port, "/api/sessions/trip-1")
        assert [t["user"] for t in record["turns"]] == [
            "I want to fly to Rome",
            "and back on Friday",
        ]
        assert record["persona"] == "Be a travel agent."
        # Each session's events, in order, readable from any worker; none of the other's.
        trip = _get(b.port, "/api/sessions/trip-1/events")["events"]
        finals = [e["content"] for e in trip if e["type"] == "llm_response" and e["is_complete"]]
        assert finals == [
            "0 earlier messages. You said: I want to fly to Rome",
            "2 earlier messages. You said: and back on Friday",
        ]
        assert all(e["session_id"] == "trip-1" for e in trip)
        other = _get(b.port, "/api/sessions/other-1/events")["events"]
        assert other and all(e["session_id"] == "other-1" for e in other)
        ids = [e["id"] for e in trip]
        assert ids == sorted(ids, key=lambda i: tuple(map(int, i.split("-"))))
        listing = _get(b.port, "/api/sessions")
        assert {"trip-1", "other-1"} <= {s["session_id"] for s in listing["sessions"]}
