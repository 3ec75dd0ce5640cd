"""The sessions REST API over a real SQLite store, through Starlette's TestClient."""

from __future__ import annotations

import pytest
from starlette.testclient import TestClient

from voxloop.config.settings import Settings
from voxloop.server.app import create_app
from voxloop.session.services import Services
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


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"offset": 9223372036854775808}, "offset"),  # past SQLite's 64-bit integers: was 500
        ({"offset": -1}, "offset"),
        ({"limit": 0}, "limit"),
        ({"limit": 501}, "limit"),
        ({"limit": "many"}, "limit"),
    ],
)
def test_paging_parameters_out_of_range_are_422_with_one_line(app_and_llm, params, field):
    client, _ = app_and_llm
    r = client.get("/api/sessions", params=params)
    assert r.status_code == 422
    detail = r.json()["detail"]
    assert isinstance(detail, str) and detail.startswith(f"{field}: "), detail


def test_the_largest_offset_is_an_empty_page(app_and_llm):
    client, _ = app_and_llm
    talk(client, "one", "hi")
    page = client.get("/api/sessions", params={"offset": 2**31 - 1}).json()
    assert page["sessions"] == [] and page["total"] == 1 and page["next_offset"] is None


def test_a_malformed_body_is_422_with_the_documented_shape(app_and_llm):
    """docs/protocol.md: every error is {"detail": "..."}, a 422 too."""
    client, _ = app_and_llm
    talk(client, "ctx", "hi")
    wrong = client.put("/api/sessions/ctx/context", json={"instrucions": "typo"})
    assert wrong.status_code == 422
    assert wrong.json() == {"detail": "instrucions: Extra inputs are not permitted"}
    broken = client.put(
        "/api/sessions/ctx/context", content=b"{", headers={"content-type": "application/json"}
    )
    assert broken.status_code == 422
    assert broken.json()["detail"].startswith("body: malformed JSON (")


@pytest.mark.parametrize("bad", ["ok%0A", "ok%0D%0A", "ok%20", "x" * 129, "caf%C3%A9"])
def test_a_session_id_is_checked_strictly_everywhere(app_and_llm, bad):
    """A trailing newline used to pass (`$` matches before it) and broke /export's header."""
    client, _ = app_and_llm
    for method, path in [
        ("GET", f"/api/sessions/{bad}"),
        ("GET", f"/api/sessions/{bad}/export"),
        ("DELETE", f"/api/sessions/{bad}"),
        ("PUT", f"/api/sessions/{bad}/context"),
        ("GET", f"/api/sessions/{bad}/events"),
    ]:
        body = {"json": {"facts": []}} if method == "PUT" else {}
        r = client.request(method, path, **body)
        assert r.status_code == 400, (method, path, r.status_code)
        assert r.json()["detail"] == "session id must be 1-128 of [A-Za-z0-9_.:-]"


def test_a_start_with_a_newline_in_its_session_id_gets_a_new_session(app_and_llm):
    client, _ = app_and_llm
    with client.websocket_connect("/ws") as ws:
        ws.send_json({"type": "start", "session_id": "ok\n"})
        seen = receive_until(ws, "session")
        ws.send_json({"type": "text", "content": "hi"})
        receive_until(ws, "metrics")
    assert [e["code"] for e in seen if e["type"] == "error"] == ["bad_session_id"]
    new_id = seen[-1]["session_id"]
    assert new_id != "ok\n" and "\n" not in new_id
    export = client.get(f"/api/sessions/{new_id}/export")
    assert export.status_code == 200 and export.json()["turn_count"] == 1


def test_a_connection_that_never_had_a_turn_is_not_listed_but_resumes(app_and_llm):
    client, llm = app_and_llm
    with client.websocket_connect("/ws") as ws:  # a failed attempt: no turn at all
        start(ws, session_id="empty", persona="You are a pirate.")
    with client.websocket_connect("/ws") as ws:
        start(ws)
    assert client.get("/api/sessions").json() == {
        "sessions": [],
        "total": 0,
        "offset": 0,
        "limit": 50,
        "next_offset": None,
    }
    with client.websocket_connect("/ws") as ws:  # ...and still resumes, with its persona
        assert start(ws, session_id="empty")["resumed"] is True
        ws.send_json({"type": "text", "content": "hello"})
        receive_until(ws, "metrics")
    assert "You are a pirate." in llm.requests[-1][0].content
    listed = client.get("/api/sessions").json()
    assert [(s["session_id"], s["turn_count"]) for s in listed["sessions"]] == [("empty", 1)]
