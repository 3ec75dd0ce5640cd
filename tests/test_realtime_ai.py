"""The `realtime-ai` profile of /ws, through Starlette's TestClient with fake providers:
header-framed 16 kHz audio both ways and the realtime-ai client's events."""

from __future__ import annotations

import itertools
import json
import struct

import numpy as np
import pytest
from starlette.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from voxloop.clock import VirtualClock
from voxloop.config.settings import Settings
from voxloop.protocol.messages import MAX_FRAME_BYTES, ProtocolError
from voxloop.server.app import create_app
from voxloop.server.transports import realtime_ai as rai
from voxloop.session.services import Services
from voxloop.testing.fakes import FakeLLM, FakeSTT, FakeTTS, FakeVAD

FAKES = {
    "vad": {"provider": "fake"},
    "stt": {"provider": "fake"},
    "llm": {"provider": "fake"},
    "tts": {"provider": "fake"},
    "store": {"backend": "memory"},
}
QUESTION = "What is the capital of France?"
ANSWER = "Paris is the capital of France."
LONG_ANSWER = " ".join(["This reply goes on and on so that there is time to cut it."] * 8)
# The client's messages (from the issue), besides voxloop's own extensions.
CLIENT_TYPES = {
    "status",
    "partial_transcript",
    "final_transcript",
    "llm_status",
    "llm_response",
    "tts_start",
    "tts_end",
    "tts_stop",
    "interrupt_acknowledged",
    "stop_acknowledged",
    "error",
}


def client_frame(pcm: bytes, timestamp_ms: int = 0, flags: int = 0) -> bytes:
    return struct.pack("<II", timestamp_ms, flags) + pcm


def receive_one(ws) -> dict | bytes:
    msg = ws.receive()
    if msg.get("bytes") is not None:
        return msg["bytes"]
    data = json.loads(msg["text"])
    assert data["type"] in CLIENT_TYPES, data  # nothing the client does not know
    assert data["session_id"], data
    return data


def receive_until(ws, pred, limit: int = 2000) -> list:
    """Collect messages (dicts for JSON, bytes for audio) up to the first JSON one that
    `pred` accepts (a type name or a predicate)."""
    if isinstance(pred, str):
        kind = pred
        pred = lambda m: m["type"] == kind  # noqa: E731
    seen = []
    for _ in range(limit):
        seen.append(receive_one(ws))
        if isinstance(seen[-1], dict) and pred(seen[-1]):
            return seen
    raise AssertionError(f"not found in {seen[-10:]}")


def is_complete(m: dict) -> bool:
    return m["type"] == "llm_response" and m["is_complete"]


def start(ws) -> dict:
    ws.send_json({"type": "start"})
    seen = receive_until(ws, lambda m: m["type"] == "status" and m["status"] == "listening")
    return seen[-1]


def speak(ws) -> None:
    """A second of noise, then a second of silence, in 20 ms header-framed chunks. The
    client's silence flag says the opposite of the truth: our VAD must not trust it."""
    rng = np.random.default_rng(0)
    speech = (rng.uniform(-0.3, 0.3, 16000) * 32767).astype("<i2").tobytes()
    quiet = bytes(2 * 16000)
    t = 0
    for audio, flags in ((speech, rai.FLAG_SILENCE), (quiet, 200)):
        for i in range(0, len(audio), 640):
            first = rai.FLAG_FIRST if t == 0 else 0
            ws.send_bytes(client_frame(audio[i : i + 640], t, flags | first))
            t += 20


def headers(frames: list[bytes]) -> list[tuple[int, int, int]]:
    assert all(len(f) >= 12 for f in frames)
    return [struct.unpack_from("<III", f) for f in frames]


def assert_error(ws, code: str) -> dict:
    error = receive_until(ws, "error")[-1]
    assert error["code"] == code, error
    assert error["message"]
    return error


def fake_services(*, llm: list[str], tts_rate: int = 16000, ms_per_char: float = 5) -> Services:
    return Services(
        settings=Settings(ws_profile="realtime-ai", store={"backend": "memory"}),
        vad=FakeVAD(),
        stt=FakeSTT([QUESTION]),
        llm=FakeLLM(llm),
        tts=FakeTTS(sample_rate=tts_rate, ms_per_char=ms_per_char),
    )


@pytest.fixture
def app_with():
    """Start an app over given services; the fixture closes its client."""
    clients = []

    def make(services: Services) -> TestClient:
        client = TestClient(create_app(services.settings, services=services, warmup=False))
        clients.append(client.__enter__())
        return client

    yield make
    for client in clients:
        client.__exit__(None, None, None)


# -- a whole turn ---------------------------------------------------------------------------


@pytest.mark.parametrize("route", ["query", "setting"])
def test_a_spoken_turn_in_the_realtime_ai_format(route):
    settings = Settings(**FAKES, ws_profile="realtime-ai" if route == "setting" else "voxloop")
    url = "/ws?profile=realtime-ai" if route == "query" else "/ws"
    with TestClient(create_app(settings, warmup=False)) as client:
        services = client.app.state.services
        services.stt.script = [QUESTION]
        services.llm.replies = [ANSWER]
        with client.websocket_connect(url) as ws:
            sid = start(ws)["session_id"]
            speak(ws)
            seen = receive_until(ws, is_complete)
        tts_texts = list(services.tts.texts)
    events = [m for m in seen if isinstance(m, dict)]
    assert all(e["session_id"] == sid for e in events)
    partials = [e["content"] for e in events if e["type"] == "partial_transcript"]
    finals = [e["content"] for e in events if e["type"] == "final_transcript"]
    assert partials and all(QUESTION.startswith(p) for p in partials)
    assert finals == [QUESTION]
    assert not any("text" in e for e in events)
    replies = [e for e in events if e["type"] == "llm_response"]
    contents = [r["content"] for r in replies]
    assert all(a == b[: len(a)] for a, b in itertools.pairwise(contents))  # it grows
    assert contents[-1] == ANSWER and replies[-1]["is_complete"]
    assert not any(r["is_complete"] for r in replies[:-1])
    assert all("delta" not in r for r in replies)
    types = [e["type"] for e in events]
    assert types.index("tts_start") < types.index("tts_end")
    assert "speaking" not in [e.get("status") for e in events if e["type"] == "status"]
    # Audio: only between tts_start and tts_end, each frame with our 12-byte header.
    first_audio = next(i for i, m in enumerate(seen) if isinstance(m, bytes))
    last_audio = max(i for i, m in enumerate(seen) if isinstance(m, bytes))
    assert seen.index(next(e for e in events if e["type"] == "tts_start")) < first_audio
    assert last_audio < seen.index(next(e for e in events if e["type"] == "tts_end"))
    frames = [m for m in seen if isinstance(m, bytes)]
    heads = headers(frames)
    turn = next(e for e in events if e["type"] == "tts_start")["turn_id"]
    assert {h[0] for h in heads} == {turn}
    assert [h[1] for h in heads] == list(range(len(frames)))
    stamps = [h[2] for h in heads]
    assert stamps == sorted(stamps)
    # The fake voice speaks 50 ms a character at 16 kHz: the PCM is exactly that long.
    pcm_bytes = sum(len(f) - 12 for f in frames)
    assert pcm_bytes == sum(2 * int(len(t) * 0.05 * 16000) for t in tts_texts) > 0


def test_the_reply_is_resampled_to_16_khz(app_with):
    client = app_with(fake_services(llm=[ANSWER], tts_rate=24000, ms_per_char=20))
    with client.websocket_connect("/ws") as ws:
        start(ws)
        ws.send_json({"type": "text", "content": QUESTION})  # the text extension
        seen = receive_until(ws, is_complete)
    tts_start = next(m for m in seen if isinstance(m, dict) and m["type"] == "tts_start")
    assert tts_start["sample_rate"] == 16000
    texts = client.app.state.services.tts.texts
    expected_s = sum(len(t) * 0.020 for t in texts)
    got_s = sum(len(m) - 12 for m in seen if isinstance(m, bytes)) / 2 / 16000
    # 16 kHz, not 24 kHz: a wrong rate would be 50% off. The pipeline's resampler keeps
    # its filter's last few ms (it is never flushed), hence the 20 ms of slack.
    assert got_s == pytest.approx(expected_s, abs=0.02)


def test_plain_ws_still_speaks_the_native_protocol():
    with TestClient(create_app(Settings(**FAKES), warmup=False)) as client:
        with client.websocket_connect("/ws") as ws:
            ws.send_json({"type": "start"})
            assert json.loads(ws.receive_text())["type"] == "session"
        # ...and the query overrides the setting both ways.
        with client.websocket_connect("/ws?profile=realtime-ai") as ws:
            assert start(ws)["status"] == "listening"
    settings = Settings(**FAKES, ws_profile="realtime-ai")
    with (
        TestClient(create_app(settings, warmup=False)) as client,
        client.websocket_connect("/ws?profile=voxloop") as ws,
    ):
        ws.send_json({"type": "start"})
        assert json.loads(ws.receive_text())["type"] == "session"


def test_the_profile_setting_comes_from_the_environment(monkeypatch):
    monkeypatch.setenv("VOXLOOP_WS_PROFILE", "realtime-ai")
    assert Settings().ws_profile == "realtime-ai"


def test_an_unknown_profile_is_refused():
    with (
        TestClient(create_app(Settings(**FAKES), warmup=False)) as client,
        client.websocket_connect("/ws?profile=nope") as ws,
        pytest.raises(WebSocketDisconnect) as caught,
    ):
        ws.receive_text()
    assert caught.value.code == 1008
    assert "voxloop" in caught.value.reason and "realtime-ai" in caught.value.reason


# -- control messages -----------------------------------------------------------------------


def test_interrupt_cuts_the_reply(app_with):
    client = app_with(fake_services(llm=[LONG_ANSWER], ms_per_char=20))
    with client.websocket_connect("/ws") as ws:
        start(ws)
        ws.send_json({"type": "text", "content": QUESTION})
        while not isinstance(frame := receive_one(ws), bytes):
            pass
        turn = headers([frame])[0][0]  # the reply is playing
        ws.send_json({"type": "interrupt"})
        after = receive_until(ws, "interrupt_acknowledged")
        stops = [m for m in after if isinstance(m, dict) and m["type"] == "tts_stop"]
        assert stops and stops[0]["reason"] == "interrupt" and stops[0]["turn_id"] == turn
        # Audio already on its way may precede tts_stop; none of this reply follows it.
        ws.send_json({"type": "stop"})
        rest = receive_until(ws, lambda m: m["type"] == "status" and m["status"] == "idle")
    tail = after[after.index(stops[0]) :] + rest
    assert not any(isinstance(m, bytes) and headers([m])[0][0] == turn for m in tail)
    cut = [m for m in tail if isinstance(m, dict) and m["type"] == "llm_response"]
    assert not cut or (cut[-1]["is_complete"] and cut[-1]["interrupted"])
    assert any(isinstance(m, dict) and m["type"] == "stop_acknowledged" for m in rest)


def test_a_reply_cut_before_a_word_was_spoken_shows_no_text(app_with):
    """The reply's text waits for its voice: cut before its audio began, a turn sends no
    `llm_response` at all (tts_stop says it was cut). It used to show the text the user
    never heard, then an empty `llm_response`, which the client displays as an empty
    message."""
    services = fake_services(llm=[LONG_ANSWER, ANSWER])
    # A voice that does not start until the test says so: its clock never moves.
    services.tts = FakeTTS(sample_rate=16000, ms_per_char=5, latency_s=1.0, clock=VirtualClock())
    client = app_with(services)
    with client.websocket_connect("/ws") as ws:
        start(ws)
        ws.send_json({"type": "text_input", "text": QUESTION})
        seen = receive_until(ws, lambda m: m["type"] == "llm_status" and m["status"] == "done")
        ws.send_json({"type": "interrupt"})  # the whole text is written, nothing spoken
        seen += receive_until(ws, "interrupt_acknowledged")
        events = [m for m in seen if isinstance(m, dict)]
        assert [e for e in events if e["type"] == "llm_response"] == [], events
        assert next(e for e in events if e["type"] == "tts_stop")["reason"] == "interrupt"
        # The next reply is spoken, and its text is its own (nothing left of the cut one).
        services.tts.latency_s = 0.0
        ws.send_json({"type": "text_input", "text": "And of Spain?"})
        seen = receive_until(ws, is_complete)
    replies = [m for m in seen if isinstance(m, dict) and m["type"] == "llm_response"]
    assert replies[-1]["content"] == ANSWER and not replies[-1].get("interrupted")
    assert all(ANSWER.startswith(r["content"]) for r in replies)
    types = [m["type"] if isinstance(m, dict) else "audio" for m in seen]
    assert types.index("tts_start") < types.index("llm_response")  # text with the voice


def test_clear_queues_cuts_the_reply_without_an_acknowledgement(app_with):
    client = app_with(fake_services(llm=[LONG_ANSWER, ANSWER], ms_per_char=20))
    with client.websocket_connect("/ws") as ws:
        start(ws)
        ws.send_json({"type": "clear_queues"})  # nothing to clear: still answered
        assert receive_until(ws, "status")[-1]["status"] == "listening"
        ws.send_json({"type": "text", "content": QUESTION})
        receive_until(ws, "tts_start")
        ws.send_json({"type": "clear_queues"})
        seen = receive_until(ws, lambda m: m["type"] == "status" and m["status"] == "listening")
        stop = next(m for m in seen if isinstance(m, dict) and m["type"] == "tts_stop")
        assert stop["reason"] == "clear_queues"
        assert not any(isinstance(m, dict) and "acknowledged" in m["type"] for m in seen)
        # The session goes on: the next turn is answered in full.
        ws.send_json({"type": "text", "content": "And of Spain?"})
        seen = receive_until(ws, lambda m: is_complete(m) and not m.get("interrupted"))
    assert seen[-1]["content"] == ANSWER


def test_reset_forgets_the_conversation(app_with):
    services = fake_services(llm=[ANSWER, ANSWER])
    client = app_with(services)
    with client.websocket_connect("/ws") as ws:
        start(ws)
        ws.send_json({"type": "text", "content": QUESTION})
        receive_until(ws, is_complete)
        ws.send_json({"type": "reset"})
        ws.send_json({"type": "text", "content": "And of Spain?"})
        receive_until(ws, is_complete)
    roles = [m.role for m in services.llm.requests[-1] if m.role != "system"]
    assert roles == ["user"]  # the first exchange is gone


def test_start_fields_are_passed_through_but_the_rates_are_fixed(app_with):
    client = app_with(fake_services(llm=[ANSWER]))
    with client.websocket_connect("/ws") as ws:
        ws.send_json({"type": "start", "session_id": "rai-1", "sample_rate": 48000})
        status = receive_until(ws, "status")[-1]
        assert status["session_id"] == "rai-1"
        ws.send_json({"type": "text", "content": QUESTION})
        tts_start = receive_until(ws, "tts_start")[-1]
    assert tts_start["sample_rate"] == 16000


def test_typed_text_in_the_clients_own_shape_is_a_text_turn(app_with):
    """The realtime-ai client sends what its user types as `text_input` with a `text`
    field; it used to be an `unknown_type` error."""
    services = fake_services(llm=[ANSWER])
    client = app_with(services)
    with client.websocket_connect("/ws") as ws:
        start(ws)
        ws.send_json({"type": "text_input", "text": QUESTION})
        first = receive_one(ws)
        assert isinstance(first, dict) and first["type"] != "error", first
        seen = [first, *receive_until(ws, is_complete)]
        assert not any(isinstance(m, dict) and m["type"] == "error" for m in seen), seen
        assert seen[-1]["content"] == ANSWER
        for bad in ({}, {"text": ""}, {"text": 5}, {"text": "x" * 8001}):
            ws.send_json({"type": "text_input", **bad})
            message = assert_error(ws, "bad_message")["message"]
            assert "text_input" in message and "text" in message
    assert services.llm.requests[-1][-1].content == QUESTION


# -- malformed input ------------------------------------------------------------------------


def test_malformed_input_gets_errors_and_the_session_goes_on(app_with):
    client = app_with(fake_services(llm=[ANSWER]))
    with client.websocket_connect("/ws") as ws:
        ws.send_bytes(client_frame(bytes(640)))
        assert_error(ws, "not_started")
        start(ws)
        ws.send_bytes(b"\x01\x02\x03")
        assert "8-byte header" in assert_error(ws, "frame_too_short")["message"]
        ws.send_bytes(client_frame(b"\x00\x01\x02"))
        assert_error(ws, "odd_frame_length")
        ws.send_bytes(bytes(MAX_FRAME_BYTES + 2))
        assert_error(ws, "frame_too_large")
        ws.send_text("{not json")
        assert "malformed JSON" in assert_error(ws, "bad_json")["message"]
        ws.send_text("[1, 2]")
        assert_error(ws, "bad_json")
        ws.send_json({"content": "no type"})
        assert_error(ws, "bad_message")
        ws.send_json({"type": "dance"})
        message = assert_error(ws, "unknown_type")["message"]
        assert "'dance'" in message and "clear_queues" in message
        ws.send_json({"type": "ping"})  # native, but not part of this profile
        assert_error(ws, "unknown_type")
        ws.send_json({"type": "text", "content": ""})
        assert_error(ws, "bad_message")
        ws.send_bytes(client_frame(b""))  # a header alone: accepted, nothing to hear
        ws.send_json({"type": "text", "content": QUESTION})
        seen = receive_until(ws, is_complete)
    assert seen[-1]["content"] == ANSWER
    assert not any(isinstance(m, dict) and m["type"] == "error" for m in seen)


# -- the framing, without a server ----------------------------------------------------------


def test_client_frames_are_parsed():
    frame = rai.parse_client_frame(client_frame(b"\x01\x00", 1234, 77 | rai.FLAG_SILENCE))
    assert (frame.timestamp_ms, frame.energy, frame.silence, frame.first) == (1234, 77, True, False)
    assert frame.pcm == b"\x01\x00"
    assert rai.parse_client_frame(client_frame(b"", 0, rai.FLAG_FIRST)).first
    stats = rai.ClientAudioStats()
    stats.add(frame)
    assert (stats.frames, stats.pcm_bytes, stats.flagged_silent, stats.first_chunks) == (1, 2, 1, 0)
    assert (stats.last_timestamp_ms, stats.last_energy) == (1234, 77)
    for bad, code in ((b"1234567", "frame_too_short"), (bytes(9), "odd_frame_length")):
        with pytest.raises(ProtocolError) as caught:
            rai.parse_client_frame(bad)
        assert caught.value.code == code


def test_server_frames_wrap_their_counters():
    frame = rai.server_frame(3, 2**32 + 1, 2**32 + 5, b"\x00\x00")
    assert struct.unpack_from("<III", frame) == (3, 1, 5) and frame[12:] == b"\x00\x00"


def test_native_events_the_client_does_not_know_are_not_sent():
    profile = rai.RealtimeAIProfile()
    for kind in ("session", "configured", "pong", "metrics", "tool_calls", "false_interruption"):
        assert profile._event({"type": kind, "session_id": "s"}) is None
    assert profile._event({"type": "status", "session_id": "s", "status": "speaking"}) is None
    out = profile._event(
        {"type": "final_transcript", "session_id": "s", "turn_id": 2, "text": "hi"}
    )
    assert out == {"type": "final_transcript", "session_id": "s", "turn_id": 2, "content": "hi"}


def test_the_reply_text_waits_for_its_voice():
    profile = rai.RealtimeAIProfile()

    def send(kind: str, turn: int = 3, **fields) -> list[dict]:
        return profile._events({"type": kind, "session_id": "s", "turn_id": turn, **fields})

    assert send("llm_response", delta="Hi", is_complete=False) == []
    assert send("llm_response", delta=" there", is_complete=False) == []
    started, caught_up = send("tts_start", format="pcm16", sample_rate=16000, channels=1)
    assert started["type"] == "tts_start"
    assert caught_up == {
        "type": "llm_response",
        "session_id": "s",
        "turn_id": 3,
        "content": "Hi there",
        "is_complete": False,
    }
    assert send("llm_response", delta="!", is_complete=False)[0]["content"] == "Hi there!"
    # Cut once the voice had begun, under a word heard: the shown text is taken back.
    (done,) = send("llm_response", delta="", content="", is_complete=True, interrupted=True)
    assert done["content"] == "" and done["interrupted"] and done["is_complete"]
    assert send("metrics") == []
    # A reply that failed before its voice: its text is never shown, and its apology
    # (the same turn's audio) does not bring it.
    assert send("llm_response", turn=4, delta="Lost", is_complete=False) == []
    assert [e["code"] for e in send("error", turn=4, code="reply_failed", message="x")] == [
        "reply_failed"
    ]
    assert [e["type"] for e in send("tts_start", turn=4, format="pcm16")] == ["tts_start"]
    assert send("metrics", turn=4) == []
    assert profile._replies == {} and profile._voiced == set()  # nothing kept per turn
