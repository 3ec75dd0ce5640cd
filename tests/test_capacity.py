"""Admission by what the models carry in real time (`limits.conversations`).

Beyond it the next caller is refused at once and told when to come back (1013 on the
socket, 503 + Retry-After for a token), instead of every conversation degrading. "auto"
asks the LLM, which measures itself once warm (a local model: how many replies decoding
together each still outpace speech); a remote or fake LLM sets no bound of its own.
"""

from __future__ import annotations

import asyncio
import threading

import pytest
from fastapi.testclient import TestClient

from test_access import app_with, refused
from voxloop.config.settings import Settings
from voxloop.server.app import create_app
from voxloop.store.memory import MemoryStore
from voxloop.testing.fakes import FakeLLM

from test_protocol import fake_services, receive_until, start


def test_a_configured_capacity_refuses_the_next_caller_and_keeps_the_others():
    app = app_with(limits={"conversations": 2, "max_sessions": 50, "retry_after_s": 4})
    with (
        TestClient(app) as client,
        client.websocket_connect("/ws") as one,
        client.websocket_connect("/ws") as two,
    ):
        start(one)
        start(two)
        code, reason = refused(client, "/ws")
        assert code == 1013
        assert "2 conversations at once in real time" in reason and "4 s" in reason
        token = client.post("/api/tokens")
        assert token.status_code == 503 and token.headers["Retry-After"] == "4"
        assert "2 conversations" in token.json()["message"]
        ready = client.get("/readyz").json()
        assert ready == {"status": "ready", "conversations": 2, "capacity": 2}
        for ws in (one, two):  # those already in go on
            ws.send_json({"type": "text", "content": "still here?"})
            assert receive_until(ws, "tts_end")


def test_a_seat_frees_when_a_conversation_ends():
    app = app_with(limits={"conversations": 1})
    with TestClient(app) as client:
        with client.websocket_connect("/ws") as one:
            start(one)
            assert refused(client, "/ws")[0] == 1013
        with client.websocket_connect("/ws") as again:
            start(again)  # the first hung up: room again


class HeldWrites(MemoryStore):
    """A store whose turn writes wait until the test lets them go."""

    def __init__(self) -> None:
        super().__init__()
        self.writing = threading.Event()
        self.release = threading.Event()

    async def append_turn(self, session_id, turn) -> None:
        self.writing.set()
        await asyncio.to_thread(self.release.wait, 30)
        await super().append_turn(session_id, turn)


def test_a_caller_who_hangs_up_frees_the_seat_while_the_last_turn_is_written():
    """A reload: the old connection is gone, but its session still writes its last turn.
    It held the seat until that write was done, so the caller coming back was refused."""
    settings = Settings(limits={"conversations": 1})
    services = fake_services()
    services.settings = settings
    store = services.store = HeldWrites()
    app = create_app(settings, services=services, warmup=False)
    try:
        with TestClient(app) as client:
            with client.websocket_connect("/ws") as one:
                first = start(one)["session_id"]
                one.send_json({"type": "text", "content": "Where is Paris?"})
                receive_until(one, "tts_end")
                assert store.writing.wait(10)
            assert len(services.live_sessions) == 1  # still closing: its turn is unwritten
            assert client.get("/readyz").json()["conversations"] == 0
            with client.websocket_connect("/ws") as again:
                start(again)
                assert refused(client, "/ws")[0] == 1013  # the new caller holds the seat
            store.release.set()
            assert wait_for(lambda: not services.live_sessions)
        assert asyncio.run(store.load(first)).turns  # nothing lost
    finally:
        store.release.set()


def wait_for(ok, timeout_s: float = 10.0) -> bool:
    ends = threading.Event()
    for _ in range(int(timeout_s / 0.02)):
        if ok():
            return True
        ends.wait(0.02)
    return ok()


class MeasuredLLM(FakeLLM):
    def __init__(self, n: int | None) -> None:
        super().__init__()
        self.n = n
        self.asked = 0

    async def conversations(self) -> int | None:
        self.asked += 1
        return self.n


@pytest.mark.parametrize(("measured", "admitted"), [(1, 1), (None, 3)])
def test_auto_takes_what_the_llm_measured_at_start_up(measured, admitted):
    settings = Settings(limits={"max_sessions": 3})
    services = fake_services()
    llm = MeasuredLLM(measured)
    services.llm = llm
    services.settings = settings
    app = create_app(settings, services=services, warmup=True)
    with TestClient(app) as client:
        assert llm.asked == 1
        sockets = [client.websocket_connect("/ws") for _ in range(admitted)]
        opened = [s.__enter__() for s in sockets]
        try:
            for ws in opened:
                start(ws)
            code, reason = refused(client, "/ws")
            assert code == 1013
            assert ("1 conversations" in reason) == (measured == 1)
            assert client.get("/readyz").json()["capacity"] == admitted
        finally:
            for s in sockets:
                s.__exit__(None, None, None)


def test_a_number_is_not_remeasured():
    settings = Settings(limits={"conversations": 5})
    services = fake_services()
    llm = MeasuredLLM(1)
    services.llm = llm
    services.settings = settings
    with TestClient(create_app(settings, services=services, warmup=True)) as client:
        assert llm.asked == 0
        assert client.get("/readyz").json()["capacity"] == 5
