"""The WebSocket loop every endpoint shares (server/ws.py), with a profile of its own:
what it does for every profile, whatever the protocol (Starlette's TestClient)."""

from __future__ import annotations

import asyncio
import threading

from fastapi import FastAPI, WebSocket
from starlette.testclient import TestClient

from voxloop.config.settings import Settings
from voxloop.server.transports.profile import Frame, Profile
from voxloop.server.ws import serve_websocket
from voxloop.session.services import Services
from voxloop.session.session import Session
from voxloop.testing.fakes import FakeLLM, FakeSTT, FakeTTS, FakeVAD


class SlowOpening(Profile):
    """A profile whose `open` takes as long as the test likes, and that answers every
    text frame with what it knew when the frame was handled."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.opened = False

    async def open(self, session: Session) -> list[Frame]:
        await asyncio.to_thread(self.release.wait, 30)
        self.opened = True
        return ["hello"]

    async def on_text(self, session: Session, raw: str) -> list[Frame]:
        return [f"{raw} (opened: {self.opened})"]


def app_for(profile: Profile) -> FastAPI:
    services = Services(
        settings=Settings(store={"backend": "memory"}),
        vad=FakeVAD(),
        stt=FakeSTT(),
        llm=FakeLLM(),
        tts=FakeTTS(),
    )
    app = FastAPI()

    @app.websocket("/ws")
    async def endpoint(websocket: WebSocket) -> None:
        await serve_websocket(websocket, services, profile)

    return app


def test_no_client_frame_is_handled_before_the_profile_has_opened():
    """Frames a client sends at once wait until `open` is done and its frames are out:
    they used to be handled while the profile was still opening (its session not started
    yet), and the profile's greeting could come after the answers to them."""
    profile = SlowOpening()
    with TestClient(app_for(profile)) as client, client.websocket_connect("/ws") as ws:
        ws.send_text("first")
        ws.send_text("second")
        profile.release.set()
        got = [ws.receive_text() for _ in range(3)]
    assert got == ["hello", "first (opened: True)", "second (opened: True)"]
