"""The /ws protocol through Starlette's TestClient, with fake providers on real time."""

from __future__ import annotations

import json

import pytest
from starlette.testclient import TestClient

from voxloop.config.settings import Settings
from voxloop.protocol.messages import MAX_FRAME_BYTES
from voxloop.server.app import create_app
from voxloop.session.services import Services
from voxloop.testing.fakes import FakeLLM, FakeSTT, FakeTTS, FakeVAD


def fake_services(**settings) -> Services:
    return Services(
        settings=Settings(**settings),
        vad=FakeVAD(),
        stt=FakeSTT(),
        llm=FakeLLM(["Paris is the capital of France."]),
        tts=FakeTTS(ms_per_char=5),  # short audio keeps the paced reply quick
    )


@pytest.fixture
def client():
    app = create_app(Settings(), services=fake_services(), warmup=False)
    with TestClient(app) as c:
        yield c


def receive_until(ws, kind: str, limit: int = 500) -> list:
    """Collect messages (dicts for JSON, bytes for audio) up to the first of `kind`."""
    seen = []
    for _ in range(limit):
        msg = ws.receive()
        if msg.get("bytes") is not None:
            seen.append(msg["bytes"])
            continue
        data = json.loads(msg["text"])
        seen.append(data)
        if data["type"] == kind:
            return seen
    raise AssertionError(f"no {kind!r} in {seen[-10:]}")


def start(ws, **fields) -> dict:
    ws.send_json({"type": "start", **fields})
    return receive_until(ws, "session")[-1]


def assert_error(ws, code: str) -> dict:
    error = receive_until(ws, "error")[-1]
    assert error["code"] == code, error
    assert error["message"]
    # The connection survives: it still answers.
    ws.send_json({"type": "ping", "t": 7})
    assert receive_until(ws, "pong")[-1]["t"] == 7
    return error


def test_session_event_describes_the_audio_formats(client):
    with client.websocket_connect("/ws") as ws:
        session = start(ws, sample_rate=48000)
        assert session["input"] == {"format": "pcm16", "sample_rate": 48000, "channels": 1}
        assert session["output"]["sample_rate"] == 16000
        assert session["session_id"]


def test_the_client_may_ask_for_another_output_rate(client):
    with client.websocket_connect("/ws") as ws:
        session = start(ws, output_sample_rate=8000)
        assert session["output"]["sample_rate"] == 8000
        ws.send_json({"type": "text", "content": "Hi"})
        seen = receive_until(ws, "tts_end")
        started = next(m for m in seen if isinstance(m, dict) and m["type"] == "tts_start")
        assert started["sample_rate"] == 8000
        samples = sum(len(m) for m in seen if isinstance(m, bytes)) // 2
        spoken = len("Paris is the capital of France.") * 0.005  # FakeTTS: 5 ms per char
        # Resampled 16 → 8 kHz: nothing lost, and at most the filter's 5 ms tail more.
        assert 0 <= samples - spoken * 8000 <= 40
    with client.websocket_connect("/ws") as ws:
        ws.send_json({"type": "start", "output_sample_rate": 11025})
        error = receive_until(ws, "error")[-1]
        assert error["code"] == "unsupported_sample_rate"
        assert "output_sample_rate" in error["message"]


def test_text_turn_round_trip(client):
    with client.websocket_connect("/ws") as ws:
        sid = start(ws)["session_id"]
        ws.send_json({"type": "text", "content": "What is the capital of France?"})
        seen = receive_until(ws, "metrics")
        events = [m for m in seen if isinstance(m, dict)]
        audio = [m for m in seen if isinstance(m, bytes)]
        assert audio and all(len(a) % 2 == 0 for a in audio)
        complete = [e for e in events if e["type"] == "llm_response" and e["is_complete"]]
        assert complete[0]["content"] == "Paris is the capital of France."
        types = [e["type"] for e in events]
        assert types.index("tts_start") < types.index("tts_end") < types.index("metrics")
        for e in events:
            assert e["session_id"] == sid
            if e["type"] in ("llm_response", "tts_start", "tts_end", "metrics", "llm_status"):
                assert e["turn_id"] == 1


def test_command_is_accepted_instead_of_type(client):
    with client.websocket_connect("/ws") as ws:
        ws.send_json({"command": "ping", "t": 1})
        assert receive_until(ws, "pong")[-1]["t"] == 1


def test_malformed_json(client):
    with client.websocket_connect("/ws") as ws:
        start(ws)
        ws.send_text("{not json")
        assert "malformed JSON" in assert_error(ws, "bad_json")["message"]


def test_unknown_message_type(client):
    with client.websocket_connect("/ws") as ws:
        start(ws)
        ws.send_json({"type": "dance"})
        assert "'dance'" in assert_error(ws, "unknown_type")["message"]


def test_invalid_fields(client):
    with client.websocket_connect("/ws") as ws:
        start(ws)
        ws.send_json({"type": "text", "content": ""})
        assert_error(ws, "bad_message")


def test_odd_byte_count(client):
    with client.websocket_connect("/ws") as ws:
        start(ws)
        ws.send_bytes(b"\x00\x01\x02")
        assert "got 3" in assert_error(ws, "odd_frame_length")["message"]


def test_frame_over_one_mebibyte(client):
    with client.websocket_connect("/ws") as ws:
        start(ws)
        ws.send_bytes(b"\x00" * (MAX_FRAME_BYTES + 2))
        assert_error(ws, "frame_too_large")


def test_audio_before_start(client):
    with client.websocket_connect("/ws") as ws:
        ws.send_bytes(b"\x00\x00" * 160)
        error = assert_error(ws, "not_started")
        assert error["session_id"]


def test_unsupported_sample_rate(client):
    with client.websocket_connect("/ws") as ws:
        ws.send_json({"type": "start", "sample_rate": 44100})
        assert "44100" in assert_error(ws, "unsupported_sample_rate")["message"]
        # and the session can still start properly afterwards
        assert start(ws, sample_rate=8000)["input"]["sample_rate"] == 8000


def test_session_works_after_bad_input(client):
    with client.websocket_connect("/ws") as ws:
        start(ws)
        ws.send_text("][")
        ws.send_bytes(b"\x01")
        ws.send_json({"type": "nope"})
        ws.send_json({"type": "text", "content": "hello"})
        seen = receive_until(ws, "metrics")
        codes = [m["code"] for m in seen if isinstance(m, dict) and m["type"] == "error"]
        assert codes == ["bad_json", "odd_frame_length", "unknown_type"]


def test_resume_a_session_by_id(client):
    with client.websocket_connect("/ws") as ws:
        sid = start(ws)["session_id"]
        ws.send_json({"type": "text", "content": "remember me"})
        receive_until(ws, "metrics")
    with client.websocket_connect("/ws") as ws:
        session = start(ws, session_id=sid)
        assert session["session_id"] == sid
        assert session["resumed"] is True
        ws.send_json({"type": "text", "content": "again"})
        metrics = receive_until(ws, "metrics")[-1]
        assert metrics["turn_id"] == 2


def test_interrupt_and_stop_are_acknowledged(client):
    with client.websocket_connect("/ws") as ws:
        start(ws)
        ws.send_json({"type": "interrupt"})
        receive_until(ws, "interrupt_acknowledged")
        ws.send_json({"type": "stop"})
        receive_until(ws, "stop_acknowledged")


def test_audio_turn_over_the_socket(client):
    import numpy as np

    rng = np.random.default_rng(0)
    loud = (rng.uniform(-0.3, 0.3, 16000) * 32767).astype("<i2").tobytes()
    with client.websocket_connect("/ws") as ws:
        start(ws)
        for i in range(0, len(loud), 640):
            ws.send_bytes(loud[i : i + 640])
        silence = bytes(640)
        for _ in range(40):  # 0.8 s of silence ends the turn
            ws.send_bytes(silence)
        seen = receive_until(ws, "final_transcript")
        assert seen[-1]["text"].startswith("fake transcript of")
        assert seen[-1]["turn_id"] == 1


def test_configure_changes_the_live_session(client):
    with client.websocket_connect("/ws") as ws:
        session = start(ws)
        assert session["options"]["barge_in"] is True
        ws.send_json(
            {"type": "configure", "persona": "Be brief.", "end_of_turn_silence_s": 0.9}
            | {"barge_in": False}
        )
        configured = receive_until(ws, "configured")[-1]
        assert configured["persona"] == "Be brief."
        assert configured["end_of_turn_silence_s"] == 0.9
        assert configured["barge_in"] is False
        ws.send_json({"type": "configure", "end_of_turn_silence_s": 99})
        assert_error(ws, "bad_message")


def test_health_readiness_and_static_app(client):
    assert client.get("/healthz").json() == {"status": "ok"}
    assert client.get("/readyz").json()["status"] == "ready"
    page = client.get("/")
    assert page.status_code == 200
    assert "voxloop" in page.text
    assert page.headers["cache-control"] == "no-cache"
    assert client.get("/app.js").headers["content-type"].startswith("text/javascript")


def test_disconnect_mid_reply_cleans_up_the_session():
    import time

    services = fake_services()
    services.tts = FakeTTS(ms_per_char=200)  # a reply long enough to be cut off
    app = create_app(Settings(), services=services, warmup=False)
    with TestClient(app) as client:
        with client.websocket_connect("/ws") as ws:
            start(ws)
            ws.send_json({"type": "text", "content": "talk for a while"})
            receive_until(ws, "tts_start")
            session = next(iter(services.live_sessions))
            assert session.reply is not None and not session.reply.done
        for _ in range(500):  # the server notices the closed socket a moment later
            if not services.live_sessions:
                break
            time.sleep(0.01)
        assert services.live_sessions == set()
        assert [t for t in session._tasks if not t.done()] == []
        assert session.reply is None
