"""Session and user ids: one strict rule (store/base.py), the same at every door."""

from __future__ import annotations

import pytest
from starlette.testclient import TestClient

from voxloop.config.settings import Settings
from voxloop.server.app import create_app
from voxloop.store.base import new_session_id, valid_session_id

from test_protocol import fake_services, receive_until


@pytest.mark.parametrize("good", ["a", "k3J9x0aQ2mVtP1bZ", "user:42", "a.b-c_d", "x" * 128])
def test_valid_ids(good):
    assert valid_session_id(good)


@pytest.mark.parametrize(
    "bad", ["", "abc\n", "abc\r\n", "\nabc", "a b", "a/b", "x" * 129, "café", None, 42]
)
def test_invalid_ids(bad):
    assert not valid_session_id(bad)


def test_generated_ids_are_valid():
    assert all(valid_session_id(new_session_id()) for _ in range(200))


@pytest.fixture
def client():
    app = create_app(Settings(), services=fake_services(), warmup=False)
    with TestClient(app) as c:
        yield c


@pytest.mark.parametrize(
    ("field", "value", "code"),
    [
        ("session_id", "x" * 129, "bad_session_id"),  # was a refused start (bad_message)
        ("session_id", "abc\n", "bad_session_id"),
        ("user_id", "ann\n", "bad_user_id"),
        ("user_id", "u" * 200, "bad_user_id"),
    ],
)
def test_a_bad_id_in_start_is_the_documented_error_and_the_session_starts(
    client, field, value, code
):
    """docs/protocol.md, Errors: `bad_session_id` and a new session; `bad_user_id`, ignored."""
    with client.websocket_connect("/ws") as ws:
        ws.send_json({"type": "start", field: value})
        seen = receive_until(ws, "session")
    assert [e["code"] for e in seen if e["type"] == "error"] == [code]
    assert valid_session_id(seen[-1]["session_id"]) and seen[-1]["resumed"] is False
