"""No credential reaches a log: a real server's log, at INFO, after clients put tokens and
an API key where they should not (in query strings) and where they should."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect

from voxloop.bench.server import running_server
from voxloop.telemetry.logs import redact

KEY = "sk-test-key-that-must-not-be-logged-0123"


def _mint(base: str) -> str:
    request = urllib.request.Request(
        f"{base}/api/tokens", method="POST", headers={"Authorization": f"Bearer {KEY}"}
    )
    with urllib.request.urlopen(request, timeout=10) as answer:
        return json.loads(answer.read())["token"]


def _talk(url: str, **kw) -> None:
    try:
        with connect(url, open_timeout=10, close_timeout=2, **kw) as ws:
            ws.send(json.dumps({"type": "ping"}))
            ws.recv(timeout=10)
    except (InvalidStatus, ConnectionClosed, OSError, TimeoutError):
        pass  # refused, or closed: what matters here is what the server logged


def test_a_real_runs_log_holds_no_token_and_no_key(tmp_path):
    env = {
        "VOXLOOP_LOG_LEVEL": "INFO",
        "VOXLOOP_AUTH__ENABLED": "on",
        "VOXLOOP_AUTH__API_KEYS": json.dumps([KEY]),
    }
    log_path = tmp_path / "server.log"
    with running_server(providers="fake", env=env, log_path=log_path) as srv:
        base = f"http://127.0.0.1:{srv.port}"
        tokens = [_mint(base) for _ in range(3)]
        ws = f"ws://127.0.0.1:{srv.port}"
        _talk(f"{ws}/ws?token={tokens[0]}")  # the documented way
        _talk(f"{ws}/ws?profile=voxloop&token={tokens[1]}")
        _talk(f"{ws}/ws", subprotocols=["voxloop", f"voxloop.token.{tokens[2]}"])
        _talk(f"{ws}/ws?token={KEY}")  # a client that put its API key in the query
        _talk(f"{ws}/v1/realtime?api_key={KEY}")
        with pytest.raises(urllib.error.HTTPError):  # a key in the query is no key
            urllib.request.urlopen(f"{base}/api/sessions?api_key={KEY}", timeout=10)
    log = log_path.read_text()
    assert "token=***" in log  # the handshakes were logged, redacted
    assert KEY not in log
    for token in tokens:
        assert token not in log
        assert token.split(".")[2] not in log  # not even the signature


def test_redact():
    line = '127.0.0.1:5 - "WebSocket /ws?profile=x&token=v1.a.b" [accepted]'
    assert redact(line) == '127.0.0.1:5 - "WebSocket /ws?profile=x&token=***" [accepted]'
    assert (
        redact("GET /api/sessions?api_key=sk-1&limit=5") == "GET /api/sessions?api_key=***&limit=5"
    )
    assert redact("offered voxloop.token.v1.a.b, voxloop") == "offered voxloop.token.***, voxloop"
    assert redact("Authorization: Bearer sk-2") == "Authorization: Bearer ***"
    assert redact("openai-insecure-api-key.sk-3") == "openai-insecure-api-key.***"
    assert redact("a token is fine to mention") == "a token is fine to mention"
