"""Web pages the user visits may not use the server: a foreign `Origin` and a rebound
`Host` are refused on every route, with auth off on the default loopback bind too."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from test_access import app_with
from voxloop.server.guard import SitePolicy, hostname

from test_protocol import start

EVIL = "https://evil.example"


@pytest.fixture
def open_loopback():
    """The default: 127.0.0.1, auth off (auth.enabled = auto)."""
    app = app_with()
    assert not app.state.gate.auth.enabled
    with TestClient(app) as client:
        yield client


def refused(client: TestClient, path: str, **kw) -> tuple[int, str]:
    """The close code and reason; a socket let in answers the ping instead (and fails)."""
    with client.websocket_connect(path, **kw) as ws, pytest.raises(WebSocketDisconnect) as closed:
        ws.send_json({"type": "ping"})
        ws.receive_json()
    return closed.value.code, closed.value.reason


@pytest.mark.parametrize(
    "path", ["/ws", "/ws?profile=realtime-ai", "/v1/realtime", "/twilio/media"]
)
def test_a_cross_site_websocket_is_refused_with_auth_off(open_loopback, path):
    code, reason = refused(open_loopback, path, headers={"Origin": EVIL})
    assert code == 4403 and "evil.example" in reason and "auth.origins" in reason


def test_a_page_of_its_own_origin_and_a_client_without_one_get_in(open_loopback):
    with open_loopback.websocket_connect("/ws", headers={"Origin": "http://testserver"}) as ws:
        assert start(ws)["type"] == "session"
    with open_loopback.websocket_connect("/ws") as ws:  # not a browser: no Origin
        assert start(ws)["type"] == "session"


@pytest.mark.parametrize("path", ["/api/sessions", "/", "/healthz", "/api/tokens"])
def test_a_rebound_host_is_refused_on_every_http_route(open_loopback, path):
    answer = open_loopback.get(path, headers={"Host": "evil.example:8000"})
    assert answer.status_code == 403
    assert "evil.example" in answer.json()["detail"]
    assert open_loopback.get("/healthz").status_code == 200  # its own name still works


def test_a_rebound_host_is_refused_for_websockets(open_loopback):
    code, reason = refused(open_loopback, "/ws", headers={"Host": "evil.example:8000"})
    assert code == 4403 and "server.allowed_hosts" in reason
    # The page's own origin with the page's own host: the DNS-rebinding case.
    headers = {"Host": "evil.example:8000", "Origin": "http://evil.example:8000"}
    assert refused(open_loopback, "/ws", headers=headers)[0] == 4403


def test_a_cross_site_post_is_refused(open_loopback):
    answer = open_loopback.post("/api/tokens", headers={"Origin": EVIL})
    assert answer.status_code == 403


def test_the_allowlists_let_named_hosts_and_origins_in():
    app = app_with(
        server={"allowed_hosts": ["testserver", "voice.lan"]},
        auth={"origins": ["https://app.example.com"]},
    )
    with TestClient(app) as client:
        assert client.get("/healthz", headers={"Host": "voice.lan:8000"}).status_code == 200
        origin = {"Origin": "https://app.example.com"}
        with client.websocket_connect("/ws", headers=origin) as ws:
            assert start(ws)["type"] == "session"


# -- the policy on its own -------------------------------------------------------------


def test_hostnames():
    assert hostname("LocalHost:8000") == "localhost"
    assert hostname("[::1]:8000") == "::1"
    assert hostname("127.0.0.1") == "127.0.0.1"
    assert hostname("::1") == "::1"


def test_a_loopback_server_answers_only_to_loopback_names():
    policy = SitePolicy(bind_host="127.0.0.1")
    for host in ("localhost:8000", "127.0.0.1:8000", "[::1]:8000", "app.localhost", None):
        assert policy.problem(host, None) is None, host
    for host in ("evil.example", "evil.example:8000", "192.168.1.5:8000", "127.0.0.1.nip.io"):
        assert "not this server's" in (policy.problem(host, None) or ""), host


def test_off_loopback_any_host_unless_a_list_is_given():
    assert SitePolicy(bind_host="0.0.0.0").problem("voice.example.com", None) is None
    listed = SitePolicy(bind_host="0.0.0.0", allowed_hosts=["voice.example.com"])
    assert listed.problem("voice.example.com:443", None) is None
    assert listed.problem("other.example", None) is not None
    assert SitePolicy(bind_host="127.0.0.1", allowed_hosts=["*"]).problem("x.y", None) is None


def test_origins():
    policy = SitePolicy(bind_host="0.0.0.0", origins=["https://app.example.com"])
    host = "voice.example.com"
    assert policy.problem(host, None) is None  # not a browser
    assert policy.problem(host, "https://app.example.com/") is None
    assert policy.problem(host, "https://voice.example.com") is None  # same origin
    assert "auth.origins" in (policy.problem(host, EVIL) or "")
    assert policy.problem(host, "null") is not None  # a sandboxed frame, a file
    assert SitePolicy(bind_host="0.0.0.0", origins=["*"]).problem(host, EVIL) is None
