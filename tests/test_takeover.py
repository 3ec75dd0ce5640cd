"""One live connection per session id: a newer connection that resumes the session takes
it over; the older one is closed, and the stored turns keep their order."""

from __future__ import annotations

import pytest
from starlette.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from redis_server import redis_url  # noqa: F401  (the fixture)
from voxloop.config.settings import Settings
from voxloop.server.app import create_app
from voxloop.store.redis import RedisStore

from test_protocol import fake_services, receive_until, start


@pytest.fixture
def client():
    s = Settings()
    services = fake_services()
    services.settings = s
    with TestClient(create_app(s, services=services, warmup=False)) as c:
        yield c


def closed(ws, answers: int = 200) -> tuple[int, str]:
    """How the server closes `ws`: a ping before each read keeps this from hanging on a
    connection that stays open (then the test fails)."""
    for _ in range(answers):
        ws.send_json({"type": "ping"})
        message = ws.receive()
        if message["type"] == "websocket.close":
            return message["code"], message.get("reason", "")
    raise AssertionError("the connection stayed open")


def say(ws, text: str) -> None:
    ws.send_json({"type": "text", "content": text})
    receive_until(ws, "metrics")


def test_a_second_connection_takes_the_session_over(client):
    with client.websocket_connect("/ws") as old:
        start(old, session_id="shared1")
        say(old, "one")
        with client.websocket_connect("/ws") as new:
            assert start(new, session_id="shared1")["resumed"] is True
            with pytest.raises(WebSocketDisconnect) as closed:
                while True:
                    old.receive_json()
            assert closed.value.code == 1000 and "taken over" in closed.value.reason
            say(new, "two")
            say(new, "three")
    turns = client.get("/api/sessions/shared1").json()["turns"]
    assert [t["turn_id"] for t in turns] == [1, 2, 3]
    assert [t["user"] for t in turns] == ["one", "two", "three"]


def test_a_connection_on_another_worker_takes_the_session_over(redis_url):  # noqa: F811
    """Two workers on one Redis: resuming on worker b ends the connection on worker a,
    once a has stored its turn; the turns keep their order."""

    def worker():
        s = Settings(redis_url=redis_url)
        services = fake_services()
        services.settings, services.store = s, RedisStore(redis_url, ttl_s=3600)
        services.shared_store = True
        return create_app(s, services=services, warmup=False)

    with TestClient(worker()) as a, TestClient(worker()) as b:
        with a.websocket_connect("/ws") as old:
            start(old, session_id="across1")
            say(old, "one")
            with b.websocket_connect("/ws") as new:
                assert start(new, session_id="across1")["resumed"] is True
                code, reason = closed(old)
                assert code == 1000 and "taken over" in reason
                say(new, "two")
        record = b.get("/api/sessions/across1").json()
        assert [(t["turn_id"], t["user"]) for t in record["turns"]] == [(1, "one"), (2, "two")]
