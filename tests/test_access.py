"""Access control and limits through the server: who gets in, and what each limit does
when it is hit (a clear error or close code, never a hang)."""

from __future__ import annotations

import time

import pytest
from starlette.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from voxloop.config.settings import Settings
from voxloop.server.app import create_app
from voxloop.server.transports import twilio

from test_protocol import fake_services, receive_until, start

KEY = "test-api-key-0123456789"


def app_with(**settings):
    s = Settings(**settings)
    services = fake_services()
    services.settings = s
    return create_app(s, services=services, warmup=False)


def refused(client: TestClient, path: str, **kw) -> tuple[int, str]:
    """The close code and reason of a WebSocket the server turns away."""
    with client.websocket_connect(path, **kw) as ws, pytest.raises(WebSocketDisconnect) as closed:
        ws.receive_json()
    return closed.value.code, closed.value.reason


def until_closed(ws, ping: bool = False) -> tuple[int, str]:
    while True:
        if ping:
            ws.send_json({"type": "ping"})
        message = ws.receive()
        if message["type"] == "websocket.close":
            return message["code"], message["reason"]


@pytest.fixture
def locked():
    app = app_with(auth={"enabled": "on", "api_keys": [KEY]})
    with TestClient(app) as client:
        yield client


def token(client: TestClient) -> str:
    answer = client.post("/api/tokens", headers={"Authorization": f"Bearer {KEY}"})
    assert answer.status_code == 200, answer.text
    return answer.json()["token"]


def test_auth_is_on_by_default_off_loopback_only():
    from voxloop.server.security import Auth

    assert not Auth.from_settings(Settings()).enabled  # 127.0.0.1
    assert Auth.from_settings(Settings(server={"host": "0.0.0.0"})).enabled
    off = Settings(server={"host": "0.0.0.0"}, auth={"enabled": "off"})
    assert not Auth.from_settings(off).enabled
    assert Auth.from_settings(Settings(auth={"enabled": "on"})).enabled


def test_the_rest_api_wants_a_key(locked):
    assert locked.get("/api/sessions").status_code == 401
    wrong = locked.get("/api/sessions", headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401 and "not valid" in wrong.json()["detail"]
    assert locked.get("/api/sessions", headers={"Authorization": f"Bearer {KEY}"}).is_success
    assert locked.get("/api/sessions", headers={"X-API-Key": KEY}).is_success
    assert locked.get("/metrics").status_code == 401
    assert locked.get("/healthz").is_success  # probes stay open
    assert locked.get("/api/auth").json() == {"required": True, "token_url": "/api/tokens"}


def test_a_websocket_needs_a_token(locked):
    code, reason = refused(locked, "/ws")
    assert code == 4401 and "POST /api/tokens" in reason
    code, reason = refused(locked, "/ws?token=v1.forged.token")
    assert code == 4401 and "signature" in reason
    with locked.websocket_connect(f"/ws?token={token(locked)}") as ws:
        assert start(ws)["type"] == "session"


def test_a_token_may_come_as_a_subprotocol(locked):
    offer = ["voxloop", f"voxloop.token.{token(locked)}"]
    with locked.websocket_connect("/ws", subprotocols=offer) as ws:
        assert ws.accepted_subprotocol == "voxloop"
        assert start(ws)["type"] == "session"


def test_an_expired_token_is_refused():
    app = app_with(auth={"enabled": "on", "api_keys": [KEY], "token_ttl_s": 0.05})
    with TestClient(app) as client:
        stale = token(client)
        time.sleep(0.1)
        code, reason = refused(client, f"/ws?token={stale}")
        assert code == 4401 and "expired" in reason


def test_tokens_need_a_key(locked):
    assert locked.post("/api/tokens").status_code == 401


def test_browsers_from_other_origins_are_refused(locked):
    fresh = token(locked)
    code, reason = refused(locked, f"/ws?token={fresh}", headers={"Origin": "https://evil.example"})
    assert code == 4403 and "evil.example" in reason
    same = {"Origin": "http://testserver"}  # the app this server serves
    with locked.websocket_connect(f"/ws?token={fresh}", headers=same) as ws:
        assert start(ws)["type"] == "session"


def test_server_side_clients_may_present_the_api_key(locked):
    """The OpenAI SDK sends `Authorization: Bearer <key>` to /v1/realtime."""
    with locked.websocket_connect("/v1/realtime", headers={"Authorization": f"Bearer {KEY}"}) as ws:
        assert ws.receive_json()["type"] == "session.created"
    code, _ = refused(locked, "/v1/realtime", headers={"Authorization": "Bearer wrong"})
    assert code == 4401


def test_twilio_media_needs_its_signature_and_then_its_calls_token():
    """A signed handshake is let in, but opens nothing without the token of its call
    (tests/test_ownership.py follows a whole call)."""
    secret = "twilio-auth-token"
    app = app_with(
        auth={"enabled": "on", "api_keys": [KEY]},
        twilio={"auth_token": secret, "public_url": "https://voice.example.com"},
    )
    signature = twilio.compute_signature(secret, "wss://voice.example.com/twilio/media", {})
    with TestClient(app) as client:
        code, _ = refused(client, "/twilio/media", headers={"X-Twilio-Signature": "forged"})
        assert code == 4401
        with client.websocket_connect(
            "/twilio/media", headers={"X-Twilio-Signature": signature}
        ) as ws:
            call = twilio.TwilioCall()
            ws.send_text(call.connected())
            ws.send_text(call.start())
            with pytest.raises(WebSocketDisconnect) as closed:
                while True:
                    ws.receive_text()
            assert closed.value.code == 4401 and "token" in closed.value.reason


def test_at_capacity_new_sessions_are_told_when_to_come_back():
    app = app_with(limits={"max_sessions": 1, "retry_after_s": 7})
    with TestClient(app) as client, client.websocket_connect("/ws") as first:
        start(first)
        code, reason = refused(client, "/ws")
        assert code == 1013 and "capacity" in reason and "7 s" in reason
        answer = client.post("/api/tokens")
        assert answer.status_code == 503 and answer.headers["Retry-After"] == "7"
        first.send_json({"type": "text", "content": "still here?"})  # the first goes on
        assert receive_until(first, "tts_end")


def test_too_many_connections_from_one_address():
    app = app_with(limits={"connections_per_ip_per_s": 0.001, "connection_burst": 2})
    with TestClient(app) as client:
        for _ in range(2):
            with client.websocket_connect("/ws") as ws:
                start(ws)
        code, reason = refused(client, "/ws")
        assert code == 1008 and "too many connections" in reason


def test_too_many_messages_are_dropped_with_one_error():
    app = app_with(limits={"messages_per_ip_per_s": 0.001, "message_burst": 3})
    with TestClient(app) as client, client.websocket_connect("/ws") as ws:
        for t in range(6):
            ws.send_json({"type": "ping", "t": t})
        seen = [ws.receive_json() for _ in range(4)]
        assert [m["t"] for m in seen if m["type"] == "pong"] == [0, 1, 2]
        errors = [m for m in seen if m["type"] == "error"]
        assert len(errors) == 1 and errors[0]["code"] == "rate_limited"


def test_frames_over_the_size_limit_are_refused_politely():
    app = app_with(limits={"max_frame_bytes": 2048})
    with TestClient(app) as client, client.websocket_connect("/ws") as ws:
        start(ws)
        ws.send_bytes(bytes(4096))
        error = receive_until(ws, "error")[-1]
        assert error["code"] == "frame_too_large" and "2048" in error["message"]
        ws.send_text('{"type": "ping", "pad": "' + "x" * 3000 + '"}')
        assert receive_until(ws, "error")[-1]["code"] == "frame_too_large"
        ws.send_json({"type": "ping", "t": 1})
        assert receive_until(ws, "pong")[-1]["t"] == 1  # the session lives on


def test_text_over_the_length_limit():
    app = app_with(limits={"max_text_chars": 10})
    with TestClient(app) as client, client.websocket_connect("/ws") as ws:
        start(ws)
        ws.send_json({"type": "text", "content": "x" * 11})
        error = receive_until(ws, "error")[-1]
        assert error["code"] == "text_too_long" and "10" in error["message"]


def test_an_idle_connection_is_closed():
    app = app_with(limits={"idle_timeout_s": 0.3})
    with TestClient(app) as client, client.websocket_connect("/ws") as ws:
        start(ws)
        code, reason = until_closed(ws)  # waits; the server hangs up
        assert code == 1000 and "idle" in reason


def test_a_session_has_a_time_limit():
    app = app_with(limits={"max_session_s": 0.5, "idle_timeout_s": 60})
    with TestClient(app) as client, client.websocket_connect("/ws") as ws:
        start(ws)
        code, reason = until_closed(ws, ping=True)  # busy, not idle
        assert code == 1000 and "time limit" in reason


def test_the_llm_is_capped_by_max_tokens():
    app = app_with(llm={"max_tokens": 3})
    with TestClient(app) as client, client.websocket_connect("/ws") as ws:
        start(ws)
        ws.send_json({"type": "text", "content": "talk"})
        complete = [
            e
            for e in receive_until(ws, "metrics")
            if isinstance(e, dict) and e["type"] == "llm_response" and e["is_complete"]
        ]
        assert complete[-1]["content"] == "Paris is the"  # 3 of the fake's words


def test_secrets_are_masked_in_voxloop_config():
    from voxloop.config.settings import masked_dump

    dump = masked_dump(
        Settings(auth={"api_keys": [KEY], "token_secret": "s3cret"}, llm={"api_key": "sk-x"})
    )
    text = repr(dump)
    assert KEY not in text and "s3cret" not in text and "sk-x" not in text
    assert dump["auth"]["api_keys"] == ["***"]


def test_behind_a_trusted_proxy_each_forwarded_address_has_its_own_limit():
    limits = {"connections_per_ip_per_s": 0.001, "connection_burst": 1}
    trusting = app_with(limits={**limits, "trust_forwarded_for": True})
    with TestClient(trusting) as client:
        for address in ("203.0.113.1", "203.0.113.2"):
            with client.websocket_connect("/ws", headers={"X-Forwarded-For": address}) as ws:
                start(ws)
        code, _ = refused(client, "/ws", headers={"X-Forwarded-For": "203.0.113.1"})
        assert code == 1008
    with TestClient(app_with(limits=limits)) as client:  # not trusted: the header is ignored
        with client.websocket_connect("/ws", headers={"X-Forwarded-For": "203.0.113.1"}) as ws:
            start(ws)
        code, _ = refused(client, "/ws", headers={"X-Forwarded-For": "203.0.113.2"})
        assert code == 1008


def test_a_dead_peer_is_dropped_by_the_heartbeat(tmp_path):
    """A client that completes the handshake and then never answers the server's pings
    (a peer that vanished without a FIN) is closed after `limits.heartbeat_s` + the pong
    wait, instead of holding a session for ever."""
    import base64
    import socket

    from voxloop.bench.server import running_server

    env = {"VOXLOOP_LIMITS__HEARTBEAT_S": "0.5", "VOXLOOP_LIMITS__IDLE_TIMEOUT_S": "600"}
    with running_server(providers="fake", env=env, log_path=tmp_path / "log") as srv:
        port = int(srv.url.rsplit(":", 1)[1].split("/")[0])
        sock = socket.create_connection(("127.0.0.1", port), timeout=30)
        key = base64.b64encode(b"0123456789abcdef").decode()
        sock.sendall(
            (
                "GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
                f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                "Sec-WebSocket-Version: 13\r\n\r\n"
            ).encode()
        )
        received = b""
        started = time.monotonic()
        while chunk := sock.recv(65536):  # pings arrive; we never pong: then the close
            received += chunk
        sock.close()
        assert received.startswith(b"HTTP/1.1 101")
        assert time.monotonic() - started < 20  # closed by the server, not our timeout
