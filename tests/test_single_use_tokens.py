"""A session token opens one connection: a second use is refused, on this worker and,
through Redis, on any other."""

from __future__ import annotations

import pytest
from starlette.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from redis_server import redis_url  # noqa: F401  (the fixture)
from test_site_guard import refused
from voxloop.config.settings import Settings
from voxloop.server.app import create_app
from voxloop.server.security import MemoryLedger

from test_protocol import fake_services, start

KEY = "single-use-key-0123456789"
SECRET = "a-shared-token-secret-0123456789"


def locked_app(**extra):
    s = Settings(auth={"enabled": "on", "api_keys": [KEY], "token_secret": SECRET}, **extra)
    services = fake_services()
    services.settings = s
    return create_app(s, services=services, warmup=False)


def mint(client: TestClient) -> str:
    answer = client.post("/api/tokens", headers={"Authorization": f"Bearer {KEY}"})
    assert answer.status_code == 200, answer.text
    return answer.json()["token"]


def test_a_token_opens_one_connection_only():
    with TestClient(locked_app()) as client:
        token = mint(client)
        with client.websocket_connect(f"/ws?token={token}") as first:
            assert start(first)["type"] == "session"
            for _ in range(5):  # while the first is open, and after
                code, reason = refused(client, f"/ws?token={token}")
                assert code == 4401 and "used already" in reason
        assert refused(client, f"/ws?token={token}")[0] == 4401
        with client.websocket_connect(f"/ws?token={mint(client)}") as again:  # a fresh one
            assert start(again)["type"] == "session"


def test_a_refused_connection_does_not_spend_the_token():
    """Refused before its token was looked at (a foreign page): the token is still good."""
    with TestClient(locked_app()) as client:
        token = mint(client)
        headers = {"Origin": "https://evil.example"}
        foreign = client.websocket_connect(f"/ws?token={token}", headers=headers)
        with foreign as ws, pytest.raises(WebSocketDisconnect) as closed:
            ws.receive_json()
        assert closed.value.code == 4403
        with client.websocket_connect(f"/ws?token={token}") as ws:
            assert start(ws)["type"] == "session"


async def test_the_memory_ledger_forgets_only_what_expired():
    now = [1000.0]
    ledger = MemoryLedger(clock=lambda: now[0])
    assert await ledger.first_use("a", 1300.0)
    assert not await ledger.first_use("a", 1300.0)
    for i in range(2000):  # enough to make it tidy up
        await ledger.first_use(f"x{i}", 1001.0)
    now[0] = 1200.0
    assert await ledger.first_use("late", 1500.0)
    assert not await ledger.first_use("a", 1300.0)  # not expired: still spent
    assert "x5" not in ledger._spent


def test_workers_on_one_redis_share_the_spent_tokens(redis_url):  # noqa: F811
    worker_a, worker_b = locked_app(redis_url=redis_url), locked_app(redis_url=redis_url)
    with TestClient(worker_a) as a, TestClient(worker_b) as b:
        token = mint(a)
        with a.websocket_connect(f"/ws?token={token}") as ws:
            assert start(ws)["type"] == "session"
        code, reason = refused(b, f"/ws?token={token}")
        assert code == 4401 and "used already" in reason
        with b.websocket_connect(f"/ws?token={mint(a)}") as ws:  # a's tokens work on b
            assert start(ws)["type"] == "session"
