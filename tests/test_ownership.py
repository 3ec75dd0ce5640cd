"""Whose conversation it is: a session token acts for one user, and opens, reads, extends
and resets only that user's sessions; its `user_id` memory is that user's. The operator
(an API key) may still do anything. Each test here failed before sessions had owners."""

from __future__ import annotations

import json

import pytest
from starlette.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from voxloop.config.settings import Settings
from voxloop.server.app import create_app
from voxloop.server.transports import twilio

from test_protocol import fake_services, receive_until, start

KEY = "ownership-key-0123456789"
SECRET = "ownership-token-secret-0123456789"
PIN = "my bank PIN is 4321"


def locked(auth: str = "on", **extra) -> tuple[TestClient, object]:
    s = Settings(auth={"enabled": auth, "api_keys": [KEY], "token_secret": SECRET}, **extra)
    services = fake_services()
    services.settings = s
    return TestClient(create_app(s, services=services, warmup=False)), services


@pytest.fixture
def server():
    client, services = locked()
    with client:
        yield client, services


def mint(client: TestClient, **body) -> dict:
    answer = client.post("/api/tokens", headers={"Authorization": f"Bearer {KEY}"}, json=body)
    assert answer.status_code == 200, answer.text
    return answer.json()


def connect(client: TestClient, user: str | None = None, **body):
    return client.websocket_connect(f"/ws?token={mint(client, user=user, **body)['token']}")


def say(ws, text: str) -> None:
    ws.send_json({"type": "text", "content": text})
    receive_until(ws, "metrics")


def closed_with(ws, **start_fields) -> tuple[int, str]:
    """Send a start; the code and reason the server closes with. It must close: each
    answer is followed by a ping, so a server that keeps the connection fails the test
    instead of hanging it."""
    ws.send_json({"type": "start", "sample_rate": 16000, **start_fields})
    for _ in range(50):
        message = ws.receive()
        if message["type"] == "websocket.close":
            return message["code"], message.get("reason", "")
        ws.send_json({"type": "ping"})
    raise AssertionError(f"the server kept the connection open after start {start_fields}")


def stored(client: TestClient, session_id: str) -> dict:
    answer = client.get(f"/api/sessions/{session_id}", headers={"Authorization": f"Bearer {KEY}"})
    assert answer.status_code == 200, answer.text
    return answer.json()


def alices_session(client: TestClient) -> str:
    with connect(client, "alice") as ws:
        session_id = start(ws)["session_id"]
        say(ws, PIN)
    return session_id


def prompts(services, since: int = 0) -> str:
    """Everything the LLM was given, from request `since` on."""
    return json.dumps([[m.content for m in r] for r in services.llm.requests[since:]])


def test_another_users_token_cannot_resume_or_reset_or_extend_a_session(server):
    client, services = server
    session_id = alices_session(client)
    with connect(client, "bob") as ws:
        code, reason = closed_with(ws, session_id=session_id)
    assert code == 4403 and "another user" in reason
    with connect(client, "bob") as ws:  # a reset or a turn after the refused start
        ws.send_json({"type": "start", "sample_rate": 16000, "session_id": session_id})
        ws.send_json({"type": "reset"})
        ws.send_json({"type": "text", "content": "and now mine"})
        assert closed_with(ws, session_id=session_id)[0] == 4403
    record = stored(client, session_id)
    assert [t["user"] for t in record["turns"]] == [PIN] and record["cleared_upto"] == 0
    assert record["user_id"] == "alice"
    assert "and now mine" not in prompts(services)  # no turn was taken
    with connect(client, "alice") as ws:  # the owner still can
        assert start(ws, session_id=session_id)["resumed"] is True


def test_another_users_token_cannot_take_a_live_session_over(server):
    """A live session is checked too (its record may not be stored yet), and the owner's
    connection is not closed by the attempt."""
    client, _ = server
    with connect(client, "alice") as alice:
        session_id = start(alice)["session_id"]
        with connect(client, "bob") as bob:
            assert closed_with(bob, session_id=session_id)[0] == 4403
        say(alice, "still here")  # not taken over
    assert [t["user"] for t in stored(client, session_id)["turns"]] == ["still here"]


def test_a_token_cannot_start_as_another_user_and_gets_only_its_own_memory(server):
    client, services = server
    alices_session(client)
    with connect(client, "bob") as ws:
        code, reason = closed_with(ws, user_id="alice")
    assert code == 4403 and "another user" in reason
    before = len(services.llm.requests)
    with connect(client, "bob") as ws:  # bob, unnamed: bob's memory only
        start(ws)
        say(ws, "what do you know about me")
    assert "what do you know" in prompts(services, before)
    assert PIN not in prompts(services, before)
    before = len(services.llm.requests)
    with connect(client, "alice") as ws:  # alice's new session does remember her
        assert start(ws)["resumed"] is False
        say(ws, "what do you know about me")
    assert PIN in prompts(services, before)


def test_a_user_token_cannot_open_the_operators_sessions(server):
    """A session opened with the API key (no user) is the operator's."""
    client, _ = server
    headers = {"Authorization": f"Bearer {KEY}"}
    with client.websocket_connect("/ws", headers=headers) as ws:
        session_id = start(ws)["session_id"]
        say(ws, "operator notes")
    with connect(client, "bob") as ws:
        assert closed_with(ws, session_id=session_id)[0] == 4403
    with client.websocket_connect("/ws", headers=headers) as ws:  # the operator may
        assert start(ws, session_id=session_id)["resumed"] is True
    alice = alices_session(client)
    with client.websocket_connect("/ws", headers=headers) as ws:  # anyone's
        assert start(ws, session_id=alice)["resumed"] is True


def test_a_token_for_one_session_opens_only_that_one(server):
    client, _ = server
    with connect(client, "carol", session_id="carol-call-1") as ws:
        assert start(ws)["session_id"] == "carol-call-1"  # the token's session stands in
        say(ws, "hello")
    with connect(client, "carol", session_id="carol-call-1") as ws:
        assert closed_with(ws, session_id="carol-call-2")[0] == 4403
    with connect(client, "carol", session_id="carol-call-1") as ws:
        assert start(ws, session_id="carol-call-1")["resumed"] is True


def test_no_user_gets_a_new_anonymous_one_to_resume_with(server):
    client, _ = server
    first = mint(client)
    assert first["user"].startswith("anon-") and mint(client)["user"] != first["user"]
    with client.websocket_connect(f"/ws?token={first['token']}") as ws:
        session_id = start(ws)["session_id"]
        say(ws, "remember me")
    with connect(client) as ws:  # another anonymous user: not theirs
        assert closed_with(ws, session_id=session_id)[0] == 4403
    with connect(client, first["user"]) as ws:
        assert start(ws, session_id=session_id)["resumed"] is True


@pytest.mark.parametrize(
    "body",
    [
        {"user": "a b"},
        {"user": "x" * 129},
        {"user": "alice\n"},
        {"session_id": "../etc"},
        {"user": "alice", "admin": True},
        {"ttl_s": -1},
    ],
)
def test_a_bad_token_request_is_refused_naming_the_field(server, body):
    client, _ = server
    answer = client.post("/api/tokens", headers={"Authorization": f"Bearer {KEY}"}, json=body)
    assert answer.status_code == 422
    assert list(body)[-1] in answer.json()["detail"]


def test_a_malformed_token_request_is_refused(server):
    client, _ = server
    headers = {"Authorization": f"Bearer {KEY}", "content-type": "application/json"}
    answer = client.post("/api/tokens", headers=headers, content=b"{nope")
    assert answer.status_code == 422 and "malformed JSON" in answer.json()["detail"]


def test_a_session_token_reads_nothing_from_the_rest_api(server):
    """Reading, exporting, changing and deleting stay the operator's (an API key)."""
    client, _ = server
    session_id = alices_session(client)
    token = mint(client, user="alice")["token"]
    bearer = {"Authorization": f"Bearer {token}"}
    for method, path in [
        ("GET", "/api/sessions"),
        ("GET", f"/api/sessions/{session_id}"),
        ("GET", f"/api/sessions/{session_id}/export"),
        ("PUT", f"/api/sessions/{session_id}/context"),
        ("DELETE", f"/api/sessions/{session_id}"),
        ("POST", "/api/tokens"),
    ]:
        answer = client.request(method, path, headers=bearer, json={"facts": ["x"]})
        assert answer.status_code == 401, (method, path)
    assert stored(client, session_id)["facts"] == []


def test_a_store_that_cannot_say_whose_a_session_is_refuses_tokens():
    client, services = locked()

    async def down(session_id):
        raise ConnectionError("redis is down")

    with client:
        services.store.load_meta = down
        with connect(client, "alice") as ws:
            code, reason = closed_with(ws, session_id="somebody")
        assert code == 1013 and "redis is down" in reason


# -- phone calls -------------------------------------------------------------------------


TWILIO_SECRET = "twilio-auth-token-0123"
PUBLIC = "https://voice.example.com"


def _webhook(client: TestClient, call_sid: str = "CA0123"):
    body = f"CallSid={call_sid}&From=%2B15551234567"
    url = f"{PUBLIC}/twilio/voice"
    signature = twilio.compute_signature(TWILIO_SECRET, url, twilio.form_params(body))
    return client.post(
        "/twilio/voice",
        content=body,
        headers={
            "content-type": "application/x-www-form-urlencoded",
            "X-Twilio-Signature": signature,
        },
    )


def _call_token(answer) -> str:
    assert answer.status_code == 200, answer.text
    return answer.text.split('name="token" value="')[1].split('"')[0]


def _media(client: TestClient, token: str | None) -> tuple[int, str]:
    """A signed media stream that starts with `token`; how the server ends it."""
    signature = twilio.compute_signature(TWILIO_SECRET, twilio.media_url(PUBLIC), {})
    headers = {"X-Twilio-Signature": signature}
    with client.websocket_connect("/twilio/media", headers=headers) as ws:
        call = twilio.TwilioCall(call_sid="CA0123")
        ws.send_text(call.connected())
        ws.send_text(call.start({"token": token} if token else {}))
        ws.send_text(call.stop())
        with pytest.raises(WebSocketDisconnect) as closed:
            while True:
                ws.receive_text()
    return closed.value.code, closed.value.reason


@pytest.mark.parametrize("auth", ["on", "off"])
def test_a_phone_call_needs_the_token_its_webhook_gave(auth):
    """A replayed handshake signature (the same for every call) or a replayed webhook
    opens nothing: each call's token is spent once, each call answered once."""
    client, _ = locked(auth, twilio={"auth_token": TWILIO_SECRET, "public_url": PUBLIC})
    with client:
        code, reason = _media(client, None)
        assert code == 4401 and "token" in reason
        token = _call_token(_webhook(client))
        assert _media(client, token) == (1000, "")
        code, reason = _media(client, token)  # the same start, replayed
        assert code == 4401 and "used already" in reason
        again = _webhook(client)  # the same webhook, replayed
        assert again.status_code == 403 and "answered already" in again.text
        assert _media(client, "v1.forged.token")[0] == 4401
        assert _call_token(_webhook(client, "CA0456"))  # another call is answered
        assert stored(client, "twilio-CA0123")["session_id"] == "twilio-CA0123"
