"""The sessions REST API over a real SQLite store, through Starlette's TestClient."""

from __future__ import annotations

import pytest
from starlette.testclient import TestClient

from voxloop.app import create_app
from voxloop.config import Settings
from voxloop.services import Services
from voxloop.store.sqlite import SQLiteStore
from voxloop.testing.fakes import FakeLLM, FakeSTT, FakeTTS, FakeVAD

from test_protocol import receive_until, start


@pytest.fixture
def app_and_llm(tmp_path):
    llm = FakeLLM(lambda msgs: f"Reply to: {msgs[-1].content}")
    services = Services(
        settings=Settings(),
        vad=FakeVAD(),
        stt=FakeSTT(),
        llm=llm,
        tts=FakeTTS(ms_per_char=1),
        store=SQLiteStore(tmp_path / "c.db"),
        shared_store=True,
    )
    app = create_app(Settings(), services=services, warmup=False)
    with TestClient(app) as client:
        yield client, llm


def talk(client, session_id: str, *texts: str, **start_fields) -> None:
    with client.websocket_connect("/ws") as ws:
        start(ws, session_id=session_id, **start_fields)
        for text in texts:
            ws.send_json({"type": "text", "content": text})
            receive_until(ws, "metrics")


def test_a_session_is_listed_read_and_exported(app_and_llm):
    client, _ = app_and_llm
    talk(client, "s-one", "hello", "how are you", user_id="ann")
    page = client.get("/api/sessions").json()
    assert page["total"] == 1
    meta = page["sessions"][0]
    assert meta["session_id"] == "s-one" and meta["user_id"] == "ann"
    assert meta["turn_count"] == 2 and meta["live"] is False
    full = client.get("/api/sessions/s-one").json()
    assert [t["user"] for t in full["turns"]] == ["hello", "how are you"]
    assert full["turns"][0]["assistant"] == "Reply to: hello"
    assert full["turns"][0]["interrupted"] is False
    assert "llm_first_token_ms" in full["turns"][0]["metrics"]
    export = client.get("/api/sessions/s-one/export")
    assert export.headers["content-disposition"] == 'attachment; filename="voxloop-s-one.json"'
    assert export.json()["turns"] == full["turns"]


def test_paging_is_newest_first(app_and_llm):
    client, _ = app_and_llm
    for i in range(5):
        talk(client, f"page-{i}", "hi")
    first = client.get("/api/sessions", params={"limit": 2}).json()
    assert [s["session_id"] for s in first["sessions"]] == ["page-4", "page-3"]
    assert first["total"] == 5 and first["next_offset"] == 2
    last = client.get("/api/sessions", params={"limit": 2, "offset": 4}).json()
    assert [s["session_id"] for s in last["sessions"]] == ["page-0"]
    assert last["next_offset"] is None


def test_delete(app_and_llm):
    client, _ = app_and_llm
    talk(client, "gone", "hi")
    assert client.delete("/api/sessions/gone").status_code == 204
    assert client.get("/api/sessions/gone").status_code == 404
    assert client.delete("/api/sessions/gone").status_code == 404
    assert client.get("/api/sessions").json()["total"] == 0


def test_bad_ids_and_unknown_sessions_get_clear_errors(app_and_llm):
    client, _ = app_and_llm
    assert client.get("/api/sessions/nope").status_code == 404
    bad = client.get("/api/sessions/bad id!")
    assert bad.status_code == 400 and "session id" in bad.json()["detail"]
    assert client.get("/api/sessions", params={"limit": 0}).status_code == 422
    wrong = client.put("/api/sessions/x/context", json={"instrucions": "typo"})
    assert wrong.status_code == 422


def test_context_changes_reach_the_next_llm_call_of_a_live_session(app_and_llm):
    client, llm = app_and_llm
    with client.websocket_connect("/ws") as ws:
        start(ws, session_id="live-1")
        ws.send_json({"type": "text", "content": "first"})
        receive_until(ws, "metrics")
        r = client.put(
            "/api/sessions/live-1/context",
            json={"instructions": "Switch to interviewer mode.", "facts": ["The user is Ann."]},
        )
        assert r.status_code == 200 and r.json()["live"] is True
        update = receive_until(ws, "context_updated")[-1]
        assert update["instructions"] == "Switch to interviewer mode."
        ws.send_json({"type": "text", "content": "second"})
        receive_until(ws, "metrics")
    system = llm.requests[-1][0].content
    assert "Switch to interviewer mode." in system and "The user is Ann." in system
    assert "interviewer" not in llm.requests[0][0].content
    stored = client.get("/api/sessions/live-1").json()
    assert stored["instructions"] == "Switch to interviewer mode."


def test_context_of_a_stored_session_is_used_when_it_resumes(app_and_llm):
    client, llm = app_and_llm
    talk(client, "later", "hi")
    r = client.put("/api/sessions/later/context", json={"persona": "You are a pirate."})
    assert r.status_code == 200 and r.json()["live"] is False
    talk(client, "later", "again")
    assert "You are a pirate." in llm.requests[-1][0].content
    # ...and the resumed session still has its history.
    assert [m.content for m in llm.requests[-1][1:]] == ["hi", "Reply to: hi", "again"]


def test_a_new_session_of_a_known_user_starts_with_their_past(app_and_llm):
    client, llm = app_and_llm
    talk(client, "ann-1", "my cat is called Tom", user_id="ann")
    talk(client, "ann-2", "what is my cat called", user_id="ann")
    system = llm.requests[-1][0].content
    assert "From earlier conversations with this user" in system
    assert "my cat is called Tom" in system
    talk(client, "bob-1", "hello", user_id="bob")
    assert "Tom" not in llm.requests[-1][0].content


def test_a_persona_change_followed_at_once_by_a_turn_is_not_read_back_stale(app_and_llm):
    """The session re-reads its context from the (shared) store before each reply; its
    own pending write must land first, or the old persona would come back."""
    client, llm = app_and_llm
    with client.websocket_connect("/ws") as ws:
        start(ws, session_id="quick")
        ws.send_json({"type": "configure", "persona": "Speak like a pirate."})
        ws.send_json({"type": "text", "content": "hello"})
        receive_until(ws, "metrics")
    assert "Speak like a pirate." in llm.requests[-1][0].content
