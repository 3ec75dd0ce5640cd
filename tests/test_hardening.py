"""Smaller holes a hostile client found: the API's description open with auth on,
unbounded context facts, and a bare 500 while the store is down."""

from __future__ import annotations

import pytest
from starlette.testclient import TestClient

from voxloop.bench.server import free_port
from voxloop.config.settings import Settings
from voxloop.server.app import create_app
from voxloop.store.redis import RedisStore

from test_protocol import fake_services, start

KEY = "hardening-key-0123456789"


def client_for(store=None, **settings) -> TestClient:
    s = Settings(**settings)
    services = fake_services()
    services.settings = s
    if store is not None:
        services.store = store
    return TestClient(create_app(s, services=services, warmup=False))


def test_the_api_description_is_for_key_holders_when_auth_is_on():
    with client_for(auth={"enabled": "on", "api_keys": [KEY]}) as client:
        assert client.get("/docs").status_code == 404
        assert client.get("/redoc").status_code == 404
        assert client.get("/openapi.json").status_code == 401
        described = client.get("/openapi.json", headers={"Authorization": f"Bearer {KEY}"})
        assert described.status_code == 200 and "/api/sessions" in described.json()["paths"]
    with client_for() as client:  # loopback, auth off: as before
        assert client.get("/docs").status_code == 200
        assert client.get("/openapi.json").status_code == 200


@pytest.fixture
def client():
    with client_for() as c:
        yield c


def _session(client: TestClient) -> str:
    with client.websocket_connect("/ws") as ws:
        start(ws, session_id="facts1")
    return "facts1"


def test_one_huge_fact_is_refused_by_name(client):
    sid = _session(client)
    answer = client.put(f"/api/sessions/{sid}/context", json={"facts": ["x" * 1_000_000]})
    assert answer.status_code == 422
    assert "facts" in answer.json()["detail"] and "1000" in answer.json()["detail"]


def test_facts_are_bounded_in_all(client):
    sid = _session(client)
    answer = client.put(f"/api/sessions/{sid}/context", json={"facts": ["y" * 900] * 5})
    assert answer.status_code == 422
    assert "4500 characters of facts" in answer.json()["detail"]
    fine = client.put(f"/api/sessions/{sid}/context", json={"facts": ["The user is Ann."] * 5})
    assert fine.status_code == 200 and fine.json()["facts"] == ["The user is Ann."] * 5


def test_the_rest_api_says_503_while_the_store_is_down():
    dead = RedisStore(f"redis://127.0.0.1:{free_port()}/0", ttl_s=60)
    with client_for(store=dead) as client:
        for path in ("/api/sessions", "/api/sessions/abc"):
            answer = client.get(path)
            assert answer.status_code == 503, (path, answer.text)
            assert "store is unavailable" in answer.json()["detail"]
            assert answer.headers["Retry-After"] == "5"
        assert client.delete("/api/sessions/abc").status_code == 503
