"""Close reasons fit in a close frame (at most 123 bytes of UTF-8), wherever a connection
is closed: a refusal before the session (the gate, an unknown profile) or the shared
loop's hang-up. A longer reason made the server fail the close, so the client saw 1006
(connection lost) instead of the code that says why; the TestClient sends any reason, so
the end-to-end check runs against uvicorn on a real port."""

from __future__ import annotations

import asyncio
from urllib.parse import quote

import pytest
import websockets
from hypothesis import given, settings
from hypothesis import strategies as st
from starlette.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from test_realtime import fake_services, uvicorn_server
from voxloop.config.settings import Settings
from voxloop.server.app import create_app
from voxloop.server.gate import Refusal
from voxloop.server.ws import MAX_CLOSE_REASON_BYTES, close_reason

LONG_NAME = "é" * 80  # 80 characters, 160 bytes: under a cut to 120 characters, over 123 bytes


def test_a_short_reason_is_kept_as_it_is():
    assert close_reason("") == ""
    assert close_reason("idle: nothing received for 60 s") == "idle: nothing received for 60 s"
    fits = "é" * (MAX_CLOSE_REASON_BYTES // 2) + "a"  # exactly 123 bytes
    assert close_reason(fits) == fits


@pytest.mark.parametrize("char", ["a", "é", "€", "🙂"])
def test_a_long_reason_is_cut_between_characters(char):
    reason = close_reason("unknown profile " + char * 200)
    data = reason.encode("utf-8")
    assert len(data) <= MAX_CLOSE_REASON_BYTES
    assert reason.startswith("unknown profile " + char) and reason.endswith("…")
    assert len(data) > MAX_CLOSE_REASON_BYTES - 4 - len(char.encode())  # cut no shorter


@settings(derandomize=True, database=None, deadline=None, max_examples=300)
@given(st.text(max_size=200))
def test_any_reason_fits_and_starts_like_the_original(reason: str):
    cut = close_reason(reason)
    data = cut.encode("utf-8")  # a lone surrogate was replaced: this cannot fail
    assert len(data) <= MAX_CLOSE_REASON_BYTES
    original = reason.encode("utf-8", "replace").decode("utf-8")
    assert cut == original or original.startswith(cut.removesuffix("…"))


def test_the_test_client_gets_a_reason_that_fits():
    with (
        TestClient(create_app(Settings(store={"backend": "memory"}), warmup=False)) as client,
        client.websocket_connect(f"/ws?profile={quote(LONG_NAME)}") as ws,
        pytest.raises(WebSocketDisconnect) as caught,
    ):
        ws.receive_text()
    assert caught.value.code == 1008
    assert len(caught.value.reason.encode()) <= MAX_CLOSE_REASON_BYTES
    assert caught.value.reason.startswith("unknown profile 'éé")


async def closed_with(url: str) -> tuple[int | None, str | None]:
    async with websockets.connect(url, open_timeout=10) as ws:
        with pytest.raises(websockets.ConnectionClosed) as caught:
            await asyncio.wait_for(ws.recv(), 10)
    return caught.value.rcvd.code if caught.value.rcvd else None, (
        caught.value.rcvd.reason if caught.value.rcvd else None
    )


async def test_a_long_non_ascii_refusal_reaches_the_client_with_its_code():
    """The profile name is the user's: its reason used to go out uncut and fail."""
    with uvicorn_server(fake_services()) as base_url:
        ws_url = base_url.replace("http://", "ws://").removesuffix("/v1")
        code, reason = await closed_with(f"{ws_url}/ws?profile={quote(LONG_NAME)}")
    assert code == 1008, (code, reason)
    assert reason and reason.startswith("unknown profile 'éé") and reason.endswith("…")


async def test_a_long_gate_refusal_reaches_the_client_with_its_code(monkeypatch):
    """A refusal at the gate whose reason is over 123 bytes in UTF-8 though under 120
    characters (e.g. one naming a client's value): it was cut to 120 characters."""
    from voxloop.server.gate import Gate

    def refuse(self, **_):
        raise Refusal(4403, f"origin {'http://' + LONG_NAME!r} is not allowed (auth.origins)")

    monkeypatch.setattr(Gate, "admit", refuse)
    with uvicorn_server(fake_services()) as base_url:
        code, reason = await closed_with(base_url.replace("http://", "ws://") + "/realtime")
    assert code == 4403, (code, reason)
    assert reason and reason.startswith("origin 'http://éé")
