"""One live connection per session id: a newer connection that resumes the session takes
it over; the older one is closed, and the stored turns keep their order."""

from __future__ import annotations

import pytest
from starlette.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from voxloop.config.settings import Settings
from voxloop.server.app import create_app

from test_protocol import fake_services, receive_until, start


@pytest.fixture
def client():
    s = Settings()
    services = fake_services()
    services.settings = s
    with TestClient(create_app(s, services=services, warmup=False)) as c:
        yield c


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
