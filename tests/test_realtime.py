"""The OpenAI Realtime API at /v1/realtime: the wire protocol with fake providers (through
Starlette's TestClient), the official `openai` SDK's realtime client against a server on a
real port (fake providers, then the embedded models)."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import threading
from collections.abc import Iterator

import numpy as np
import pytest
from starlette.testclient import TestClient

from voxloop.config.settings import Settings
from voxloop.server.app import create_app
from voxloop.server.transports.realtime_events import wants_beta
from voxloop.session.services import Services
from voxloop.store.memory import MemoryStore
from voxloop.testing.fakes import FakeLLM, FakeSTT, FakeTTS, FakeVAD

ANSWER = "Paris is the capital of France."
STORY = " ".join(f"Sentence number {i} of a long story." for i in range(30))
PATH = "/v1/realtime?model=voxloop-test"


def fake_services(replies=(ANSWER,), ms_per_char: float = 5, heard=(), **settings) -> Services:
    return Services(
        settings=Settings(store={"backend": "memory"}, **settings),
        vad=FakeVAD(),
        stt=FakeSTT(list(heard)),
        llm=FakeLLM(list(replies)),
        tts=FakeTTS(ms_per_char=ms_per_char),
    )


@contextlib.contextmanager
def connect(services: Services | None = None, path: str = PATH, **headers) -> Iterator:
    services = services or fake_services()
    app = create_app(Settings(), services=services, warmup=False)
    with TestClient(app) as client, client.websocket_connect(path, headers=headers) as ws:
        created = json.loads(ws.receive_text())
        assert created["type"] == "session.created", created
        ws.created = created  # type: ignore[attr-defined]
        yield ws


def receive_until(ws, kind: str, limit: int = 2000) -> list[dict]:
    """Server events up to and including the first of type `kind`."""
    seen = []
    for _ in range(limit):
        event = json.loads(ws.receive_text())
        assert event["event_id"].startswith("event_"), event
        seen.append(event)
        if event["type"] == kind:
            return seen
    raise AssertionError(f"no {kind!r} in {[e['type'] for e in seen[-20:]]}")


def types(events: list[dict]) -> list[str]:
    return [e["type"] for e in events]


def send(ws, kind: str, **fields) -> None:
    ws.send_text(json.dumps({"type": kind, **fields}))


def sync(ws) -> list[dict]:
    """Everything the server sent before it answered a no-op session.update."""
    send(ws, "session.update", session={"type": "realtime"})
    return receive_until(ws, "session.updated")[:-1]


def pcm24(seconds: float, loud: bool, seed: int = 0) -> bytes:
    if not loud:
        return bytes(int(2 * 24000 * seconds))
    rng = np.random.default_rng(seed)
    return (rng.uniform(-0.3, 0.3, int(24000 * seconds)) * 32767).astype("<i2").tobytes()


def append(ws, pcm: bytes, chunk: int = 4800) -> None:
    for i in range(0, len(pcm), chunk):
        audio = base64.b64encode(pcm[i : i + chunk]).decode()
        send(ws, "input_audio_buffer.append", audio=audio)


def say_text(ws, text: str) -> list[dict]:
    send(
        ws,
        "conversation.item.create",
        item={"type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]},
    )
    return receive_until(ws, "conversation.item.done")


def assert_error(ws, code: str) -> dict:
    error = receive_until(ws, "error")[-1]["error"]
    assert error["code"] == code, error
    assert error["message"] and error["type"]
    # the connection lives on
    assert sync(ws) == []
    return error


def check_response(events: list[dict], status: str = "completed") -> dict:
    """The response events of one response, in the order a client assembles them."""
    names = types(events)
    order = [
        "response.created",
        "response.output_item.added",
        "conversation.item.added",
        "response.content_part.added",
        "response.output_audio.done",
        "response.output_audio_transcript.done",
        "response.content_part.done",
        "response.output_item.done",
        "conversation.item.done",
        "response.done",
    ]
    positions = [max(i for i, n in enumerate(names) if n == kind) for kind in order]
    assert positions == sorted(positions), names
    created = next(e for e in events if e["type"] == "response.created")["response"]
    assert created["status"] == "in_progress" and created["id"].startswith("resp_")
    done = events[-1]["response"]
    assert done["id"] == created["id"] and done["status"] == status, done
    assert done["object"] == "realtime.response"
    assert done["usage"]["total_tokens"] == 0
    (item,) = done["output"]
    assert item["role"] == "assistant" and item["id"].startswith("item_")
    for e in events:
        if e["type"].startswith("response.output_audio") or "content_part" in e["type"]:
            assert e["response_id"] == created["id"] and e["item_id"] == item["id"]
            assert e["output_index"] == 0 and e["content_index"] == 0
    return done


# -- the session --------------------------------------------------------------------------


def test_session_created_on_connect():
    with connect() as ws:
        session = ws.created["session"]
        assert session["type"] == "realtime" and session["id"].startswith("sess_")
        assert session["model"] == "voxloop-test"
        assert session["audio"]["input"]["format"] == {"type": "audio/pcm", "rate": 24000}
        assert session["audio"]["output"]["format"] == {"type": "audio/pcm", "rate": 24000}
        assert session["audio"]["input"]["turn_detection"]["type"] == "server_vad"
        assert session["audio"]["input"]["turn_detection"]["silence_duration_ms"] == 500
        assert session["instructions"]  # the default persona's


def test_session_update_reflects_instructions_voice_and_turn_detection():
    services = fake_services()
    with connect(services) as ws:
        update = {
            "type": "realtime",
            "instructions": "You are a pirate.",
            "audio": {
                "output": {"voice": "alloy", "format": {"type": "audio/pcm", "rate": 24000}},
                "input": {"turn_detection": {"type": "server_vad", "silence_duration_ms": 800}},
            },
        }
        send(ws, "session.update", session=update, event_id="evt_1")
        session = receive_until(ws, "session.updated")[-1]["session"]
        assert session["instructions"] == "You are a pirate."
        assert session["audio"]["output"]["voice"] == "alloy"
        assert session["audio"]["input"]["turn_detection"]["silence_duration_ms"] == 800
        assert services.settings  # the native session changed with it:
        say_text(ws, "hello")
        send(ws, "response.create")
        receive_until(ws, "response.done")
        assert "You are a pirate." in services.llm.requests[-1][0].content
        # manual mode
        send(
            ws,
            "session.update",
            session={"type": "realtime", "audio": {"input": {"turn_detection": None}}},
        )
        session = receive_until(ws, "session.updated")[-1]["session"]
        assert session["audio"]["input"]["turn_detection"] is None


class SlowStore(MemoryStore):
    """A store whose first load waits until the test lets it go: the session's start is
    under way for as long as the test likes."""

    def __init__(self) -> None:
        super().__init__()
        self.release = threading.Event()

    async def load(self, session_id: str):
        await asyncio.to_thread(self.release.wait, 30)
        return await super().load(session_id)


def test_events_sent_right_after_connect_wait_for_the_session():
    """As OpenAI's examples do: session.update, an item and response.create before reading
    anything. They used to race the session's start (`not_started`, then an internal
    AssertionError, the instructions dropped); now session.created comes first and every
    early event is applied, in order."""
    services = fake_services()
    services.store = SlowStore()
    app = create_app(Settings(), services=services, warmup=False)
    with TestClient(app) as client, client.websocket_connect(PATH) as ws:
        send(ws, "session.update", session={"type": "realtime", "instructions": "Be a pirate."})
        item = {
            "type": "message",
            "role": "user",
            "content": [{"type": "input_text", "text": "Ahoy?"}],
        }
        send(ws, "conversation.item.create", item=item)
        send(ws, "response.create")
        services.store.release.set()  # the start can finish now, with the events waiting
        events = [json.loads(ws.receive_text())]
        while events[-1]["type"] not in ("response.done", "error"):
            events.append(json.loads(ws.receive_text()))
    names = types(events)
    assert names[0] == "session.created", names
    assert names[-1] == "response.done", events[-1]
    assert events[names.index("session.updated")]["session"]["instructions"] == "Be a pirate."
    assert names.index("session.updated") < names.index("response.created")
    check_response(events[names.index("response.created") :])
    system, *_, user = services.llm.requests[-1]
    assert "Be a pirate." in system.content and user.content == "Ahoy?"


def test_unsupported_audio_format_is_an_error():
    with connect() as ws:
        fmt = {"type": "audio/pcmu"}
        send(
            ws, "session.update", session={"type": "realtime", "audio": {"input": {"format": fmt}}}
        )
        error = assert_error(ws, "unsupported_audio_format")
        assert "audio/pcmu" in error["message"] and error["param"] == "session.audio.input.format"
        send(ws, "session.update", session={"output_audio_format": "g711_ulaw"}, event_id="e9")
        assert assert_error(ws, "unsupported_audio_format")["event_id"] == "e9"


def test_unsupported_settings_change_nothing():
    with connect() as ws:
        before = ws.created["session"]
        send(ws, "session.update", session={"instructions": "x", "output_modalities": ["text"]})
        assert_error(ws, "unsupported_value")
        send(ws, "session.update", session={"turn_detection": {"create_response": False}})
        assert_error(ws, "unsupported_value")
        send(ws, "session.update", session={"voice": "no-such-voice"})
        assert_error(ws, "unsupported_value")
        send(ws, "session.update", session={"type": "realtime"})
        after = receive_until(ws, "session.updated")[-1]["session"]
        assert after["instructions"] == before["instructions"]


# -- text in, audio out ----------------------------------------------------------------------


def test_text_item_waits_for_response_create():
    services = fake_services()
    with connect(services) as ws:
        added = say_text(ws, "What is the capital of France?")
        assert types(added) == ["conversation.item.added", "conversation.item.done"]
        item = added[-1]["item"]
        assert item["role"] == "user" and item["content"][0]["text"].startswith("What is")
        assert sync(ws) == [] and services.llm.requests == []  # no response by itself
        send(ws, "response.create")
        events = receive_until(ws, "response.done")
        done = check_response(events)
        audio = b"".join(
            base64.b64decode(e["delta"])
            for e in events
            if e["type"] == "response.output_audio.delta"
        )
        assert len(audio) > 0 and len(audio) % 2 == 0
        deltas = [
            e["delta"] for e in events if e["type"] == "response.output_audio_transcript.delta"
        ]
        assert "".join(deltas) == ANSWER
        final = next(e for e in events if e["type"] == "response.output_audio_transcript.done")
        assert final["transcript"] == ANSWER
        assert done["output"][0]["content"][0] == {"type": "output_audio", "transcript": ANSWER}
        assert services.llm.requests[-1][-1].content == "What is the capital of France?"
        ids = [e["event_id"] for e in events]
        assert len(set(ids)) == len(ids)


def test_beta_dialect_by_header():
    with connect(**{"OpenAI-Beta": "realtime=v1"}) as ws:
        session = ws.created["session"]
        assert session["input_audio_format"] == "pcm16" and session["turn_detection"]
        assert receive_until(ws, "conversation.created")
        send(
            ws,
            "conversation.item.create",
            item={
                "type": "message",
                "role": "user",
                "content": [{"type": "input_text", "text": "hi"}],
            },
        )
        assert types(receive_until(ws, "conversation.item.created")) == [
            "conversation.item.created"
        ]
        send(ws, "response.create")
        names = types(receive_until(ws, "response.done"))
        for kind in (
            "response.audio.delta",
            "response.audio_transcript.delta",
            "response.audio.done",
            "response.audio_transcript.done",
            "conversation.item.created",
        ):
            assert kind in names, names
        assert not [n for n in names if "output_audio" in n or n == "conversation.item.added"]


def test_browser_subprotocols_pick_realtime_and_the_dialect():
    app = create_app(Settings(), services=fake_services(), warmup=False)
    offered = ["realtime", "openai-insecure-api-key.sk-x", "openai-beta.realtime-v1"]
    with TestClient(app) as client, client.websocket_connect(PATH, subprotocols=offered) as ws:
        assert ws.accepted_subprotocol == "realtime"
        assert json.loads(ws.receive_text())["session"]["input_audio_format"] == "pcm16"


def test_the_profile_needs_no_web_framework():
    import subprocess
    import sys

    code = "import sys, voxloop.server.transports.realtime; print('fastapi' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_wants_beta():
    assert wants_beta("realtime=v1", [])
    assert wants_beta("", ["realtime", "openai-beta.realtime-v1"])
    assert not wants_beta("", ["realtime"])


# -- audio in ------------------------------------------------------------------------------


def test_spoken_turn_with_server_vad():
    with connect() as ws:
        append(ws, pcm24(1.0, loud=True) + pcm24(1.0, loud=False))
        events = receive_until(ws, "response.done")
        names = types(events)
        first = [
            "input_audio_buffer.speech_started",
            "input_audio_buffer.speech_stopped",
            "input_audio_buffer.committed",
            "conversation.item.added",
            "conversation.item.input_audio_transcription.completed",
            "response.created",
        ]
        assert [names.index(n) for n in first] == sorted(names.index(n) for n in first), names
        started, stopped, committed = (events[names.index(n)] for n in first[:3])
        transcribed = events[names.index(first[4])]
        item_id = started["item_id"]
        assert stopped["item_id"] == committed["item_id"] == transcribed["item_id"] == item_id
        assert 0 <= started["audio_start_ms"] < stopped["audio_end_ms"] <= 2000
        assert transcribed["transcript"].startswith("fake transcript of")
        assert transcribed["usage"]["type"] == "duration"
        check_response(events[names.index("response.created") :])


def test_manual_commit_waits_for_response_create():
    services = fake_services()
    with connect(services) as ws:
        send(ws, "session.update", session={"turn_detection": None})
        receive_until(ws, "session.updated")
        send(ws, "input_audio_buffer.commit")
        assert_error(ws, "input_audio_buffer_commit_empty")
        append(ws, pcm24(0.8, loud=True))
        send(ws, "input_audio_buffer.commit")
        events = receive_until(ws, "conversation.item.done")
        assert types(events) == [
            "input_audio_buffer.committed",
            "conversation.item.added",
            "conversation.item.input_audio_transcription.completed",
            "conversation.item.done",
        ]
        transcript = events[2]["transcript"]
        assert transcript.startswith("fake transcript of")
        assert sync(ws) == [] and services.llm.requests == []
        send(ws, "response.create")
        check_response(receive_until(ws, "response.done"))
        assert services.llm.requests[-1][-1].content == transcript
        # clear drops what was appended
        append(ws, pcm24(0.5, loud=True))
        send(ws, "input_audio_buffer.clear")
        assert types(receive_until(ws, "input_audio_buffer.cleared"))[-1]
        send(ws, "input_audio_buffer.commit")
        assert_error(ws, "input_audio_buffer_commit_empty")


def test_commit_needs_manual_mode():
    with connect() as ws:
        send(ws, "input_audio_buffer.commit")
        assert_error(ws, "unsupported_event")


# -- cancelling ------------------------------------------------------------------------------


def test_response_cancel_mid_reply():
    with connect(fake_services([STORY], ms_per_char=40)) as ws:
        say_text(ws, "Tell me a story.")
        send(ws, "response.create")
        before = receive_until(ws, "response.output_audio.delta")
        response_id = before[-1]["response_id"]
        send(ws, "response.create")  # one at a time
        assert receive_until(ws, "error")[-1]["error"]["code"] == (
            "conversation_already_has_active_response"
        )
        send(ws, "response.cancel", response_id=response_id)
        events = before + receive_until(ws, "response.done")
        done = check_response(events, status="cancelled")
        assert done["status_details"] == {"type": "cancelled", "reason": "client_cancelled"}
        assert done["output"][0]["status"] == "incomplete"
        heard = done["output"][0]["content"][0]["transcript"]
        assert len(heard) < len(STORY)
        after = sync(ws)
        assert not [e for e in after if e["type"] == "response.output_audio.delta"], types(after)
        send(ws, "response.cancel")
        assert_error(ws, "response_cancel_not_active")


def test_speech_over_the_agent_cancels_the_response():
    services = fake_services([STORY, ANSWER], ms_per_char=40, turns={"interruption": "vad"})
    with connect(services) as ws:
        say_text(ws, "Tell me a story.")
        send(ws, "response.create")
        receive_until(ws, "response.output_audio.delta")
        append(ws, pcm24(0.6, loud=True, seed=1) + pcm24(1.0, loud=False))
        events = receive_until(ws, "response.done")
        names = types(events)
        assert "input_audio_buffer.speech_started" in names
        assert events[-1]["response"]["status"] == "cancelled"
        assert events[-1]["response"]["status_details"]["reason"] == "turn_detected"
        assert names.index("input_audio_buffer.speech_started") < len(names) - 1
        # the speech is a turn of its own, and answered
        events = receive_until(ws, "response.done")
        assert "conversation.item.input_audio_transcription.completed" in types(events)
        assert events[-1]["response"]["status"] == "completed"


@pytest.mark.parametrize("beta", [False, True], ids=["ga", "beta"])
def test_every_event_matches_the_sdk_schema(beta):
    """Each server event validates against the `openai` SDK's own types for the dialect."""
    from pydantic import TypeAdapter

    if beta:
        from openai.types.beta.realtime import RealtimeServerEvent
    else:
        from openai.types.realtime import RealtimeServerEvent
    adapter = TypeAdapter(RealtimeServerEvent)
    headers = {"OpenAI-Beta": "realtime=v1"} if beta else {}
    services = fake_services(["Hi there.", STORY], ms_per_char=20)
    # the beta types only know OpenAI's model names
    with connect(services, "/v1/realtime?model=gpt-4o-realtime-preview", **headers) as ws:
        events = [ws.created]
        td = {"type": "server_vad", "silence_duration_ms": 600}
        send(ws, "session.update", session={"instructions": "Be kind.", "turn_detection": td})
        events += receive_until(ws, "session.updated")
        append(ws, pcm24(1.0, loud=True) + pcm24(1.0, loud=False))
        events += receive_until(ws, "response.done")
        events += say_text(ws, "x") if not beta else []
        send(ws, "response.create")
        events += receive_until(
            ws, "response.audio.delta" if beta else "response.output_audio.delta"
        )
        send(ws, "response.cancel")
        events += receive_until(ws, "response.done")
        send(ws, "conversation.item.truncate", item_id="item_x", content_index=0, audio_end_ms=9)
        events += receive_until(ws, "conversation.item.truncated")
        send(ws, "input_audio_buffer.clear")
        events += receive_until(ws, "input_audio_buffer.cleared")
        send(ws, "dance")
        events += receive_until(ws, "error")
    for event in events:
        assert adapter.validate_python(event).type == event["type"]
    assert {"response.done", "input_audio_buffer.speech_stopped", "error"} <= set(types(events))


def test_a_backchannel_pauses_the_response_and_it_goes_on():
    """`paused` emits nothing: the same response carries on and completes."""
    reply = "One sentence here. Another one there. And a third to end it."
    with connect(fake_services([reply], ms_per_char=30, heard=["Mm-hmm."])) as ws:
        say_text(ws, "Talk to me.")
        send(ws, "response.create")
        events = receive_until(ws, "response.output_audio.delta")
        append(ws, pcm24(0.4, loud=True) + pcm24(1.0, loud=False))
        events += receive_until(ws, "response.done")
        names = types(events)
        assert names.count("response.created") == 1
        assert "input_audio_buffer.speech_started" in names
        assert "input_audio_buffer.committed" not in names  # not a turn of its own
        # Paused while the user spoke (its queued audio dropped), it resumed after.
        stopped = names.index("input_audio_buffer.speech_stopped")
        assert "response.output_audio.delta" in names[stopped:]
        done = check_response(events)
        assert done["output"][0]["content"][0]["transcript"] == reply


def test_a_failed_reply_ends_its_response_as_failed():
    class BrokenLLM(FakeLLM):
        async def generate(self, messages, **kw):
            raise RuntimeError("the model fell over")
            yield ""  # an async generator

    services = fake_services()
    services.llm = BrokenLLM()
    with connect(services) as ws:
        say_text(ws, "hello?")
        send(ws, "response.create")
        events = receive_until(ws, "response.done")
        errors = [e["error"] for e in events if e["type"] == "error"]
        assert errors and errors[0]["code"] == "reply_failed"
        assert errors[0]["type"] == "server_error"
        done = events[-1]["response"]
        assert done["status"] == "failed" and done["status_details"]["error"]["code"] == (
            "reply_failed"
        )


# -- bad input -------------------------------------------------------------------------------


def test_bad_events_get_errors_and_the_connection_lives_on():
    with connect() as ws:
        ws.send_text("{not json")
        assert "malformed JSON" in assert_error(ws, "invalid_json")["message"]
        send(ws, "dance", event_id="e1")
        error = assert_error(ws, "unknown_event")
        assert "'dance'" in error["message"] and error["event_id"] == "e1"
        send(ws, "conversation.item.delete", item_id="item_x")
        assert_error(ws, "unsupported_event")
        send(ws, "input_audio_buffer.append", audio="!!!")
        assert_error(ws, "invalid_value")
        send(
            ws,
            "conversation.item.create",
            item={"type": "message", "role": "system", "content": []},
        )
        assert_error(ws, "unsupported_value")
        ws.send_bytes(b"\x00\x00")
        assert_error(ws, "invalid_frame")
        say_text(ws, "still there?")
        send(ws, "response.create")
        check_response(receive_until(ws, "response.done"))


WRONG_TYPES = [
    ({"type": ["session.update"]}, "type"),
    ({"type": 5}, "type"),
    ({"type": "session.update", "session": {"output_modalities": 5}}, "session.output_modalities"),
    ({"type": "session.update", "session": {"instructions": 5}}, "session.instructions"),
    ({"type": "session.update", "session": {"audio": 5}}, "session.audio"),
    ({"type": "session.update", "session": {"audio": {"input": []}}}, "session.audio.input"),
    ({"type": "session.update", "session": {"voice": 5}}, "session.voice"),
    ({"type": "session.update", "session": {"temperature": "hot"}}, "session.temperature"),
    ({"type": "session.update", "session": {"speed": [1]}}, "session.speed"),
    (
        {"type": "session.update", "session": {"audio": {"output": {"speed": "fast"}}}},
        "session.audio.output.speed",
    ),
    (
        {"type": "session.update", "session": {"max_output_tokens": "lots"}},
        "session.max_output_tokens",
    ),
    (
        {"type": "session.update", "session": {"input_audio_transcription": 5}},
        "session.input_audio_transcription",
    ),
    (
        {"type": "session.update", "session": {"turn_detection": {"interrupt_response": "no"}}},
        "session.turn_detection.interrupt_response",
    ),
    (
        {"type": "session.update", "session": {"turn_detection": {"threshold": "high"}}},
        "session.turn_detection.threshold",
    ),
    (
        {"type": "session.update", "session": {"turn_detection": {"prefix_padding_ms": []}}},
        "session.turn_detection.prefix_padding_ms",
    ),
    (
        {"type": "session.update", "session": {"turn_detection": {"eagerness": 5}}},
        "session.turn_detection.eagerness",
    ),
    (
        {"type": "response.create", "response": {"output_modalities": 5}},
        "response.output_modalities",
    ),
    ({"type": "response.create", "response": {"modalities": "audio"}}, "response.modalities"),
    ({"type": "response.create", "response": {"metadata": 5}}, "response.metadata"),
    ({"type": "response.create", "response": "now"}, "response"),
    ({"type": "response.cancel", "response_id": 5}, "response_id"),
    ({"type": "conversation.item.truncate", "item_id": 5}, "item_id"),
    (
        {"type": "conversation.item.truncate", "item_id": "item_x", "audio_end_ms": "end"},
        "audio_end_ms",
    ),
]


@pytest.mark.parametrize(("event", "param"), WRONG_TYPES, ids=lambda v: json.dumps(v)[:60])
def test_a_field_of_the_wrong_type_is_an_error_naming_it(event, param):
    """Wrong JSON types used to escape as `internal` server errors (a TypeError in the
    handler) or be accepted and echoed back; now the client's mistake is named."""
    with connect() as ws:
        ws.send_text(json.dumps({**event, "event_id": "evt_bad"}))
        answer = sync(ws)  # what came before the answer to a no-op update: the error only
        assert types(answer) == ["error"], answer
        error = answer[0]["error"]
        assert error["type"] == "invalid_request_error", error
        assert error["param"] == param and error["event_id"] == "evt_bad", error
        assert error["code"] in ("invalid_value", "unsupported_value"), error
        assert sync(ws) == []  # the connection lives on


# -- the official openai SDK -----------------------------------------------------------------


@contextlib.contextmanager
def uvicorn_server(services: Services) -> Iterator[str]:
    """The app with `services` on a free local port, in a thread: the base URL."""
    import uvicorn

    from voxloop.bench.server import free_port

    port = free_port()
    app = create_app(Settings(), services=services, warmup=False)
    server = uvicorn.Server(uvicorn.Config(app, port=port, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    for _ in range(500):
        if server.started:
            break
        threading.Event().wait(0.01)
    try:
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        server.should_exit = True
        thread.join(10)


async def events_until(conn, kind: str, timeout_s: float = 30.0) -> list:
    seen = []
    while True:
        event = await asyncio.wait_for(conn.recv(), timeout_s)
        seen.append(event)
        if event.type == kind:
            return seen


async def test_openai_sdk_client_against_fake_providers():
    from openai import AsyncOpenAI
    from openai.types.realtime import (
        ResponseAudioDeltaEvent,
        ResponseDoneEvent,
        SessionCreatedEvent,
        SessionUpdatedEvent,
    )

    with uvicorn_server(fake_services([ANSWER, ANSWER])) as base_url:
        client = AsyncOpenAI(base_url=base_url, api_key="sk-unused")
        async with client.realtime.connect(model="voxloop") as conn:
            created = await conn.recv()
            assert isinstance(created, SessionCreatedEvent)
            await conn.session.update(session={"type": "realtime", "instructions": "Be brief."})
            updated = await events_until(conn, "session.updated")
            assert isinstance(updated[-1], SessionUpdatedEvent)
            assert updated[-1].session.instructions == "Be brief."
            await conn.conversation.item.create(
                item={
                    "type": "message",
                    "role": "user",
                    "content": [{"type": "input_text", "text": "What is the capital of France?"}],
                }
            )
            await conn.response.create()
            events = await events_until(conn, "response.done")
            audio = [e for e in events if isinstance(e, ResponseAudioDeltaEvent)]
            assert audio and all(base64.b64decode(e.delta) for e in audio)
            done = events[-1]
            assert isinstance(done, ResponseDoneEvent) and done.response.status == "completed"
            assert done.response.output[0].content[0].transcript == ANSWER
            # a spoken turn, through the SDK's helpers
            pcm = pcm24(1.0, loud=True) + pcm24(1.0, loud=False)
            for i in range(0, len(pcm), 4800):
                await conn.input_audio_buffer.append(
                    audio=base64.b64encode(pcm[i : i + 4800]).decode()
                )
            events = await events_until(conn, "response.done")
            kinds = [e.type for e in events]
            assert "input_audio_buffer.speech_started" in kinds
            assert "conversation.item.input_audio_transcription.completed" in kinds
            assert events[-1].response.status == "completed"


async def test_openai_sdk_beta_client():
    from openai import AsyncOpenAI

    with uvicorn_server(fake_services()) as base_url:
        # The beta client always dials wss:// unless told the WebSocket URL.
        ws_url = base_url.replace("http://", "ws://")
        client = AsyncOpenAI(base_url=base_url, websocket_base_url=ws_url, api_key="sk-unused")
        async with client.beta.realtime.connect(model="voxloop") as conn:
            await conn.conversation.item.create(
                item={
                    "type": "message",
                    "role": "user",
                    "content": [{"type": "input_text", "text": "hi"}],
                }
            )
            await conn.response.create()
            events = await events_until(conn, "response.done")
            kinds = [e.type for e in events]
            assert kinds[0] == "session.created" and "response.audio.delta" in kinds
            assert "response.audio_transcript.done" in kinds
            assert events[-1].response.status == "completed"


@pytest.mark.models
async def test_openai_sdk_client_with_the_embedded_models(server, speak):
    from openai import AsyncOpenAI

    from voxloop.audio.formats import float_to_pcm16
    from voxloop.audio.resample import resample

    question = float_to_pcm16(resample(speak("What is the capital of France?"), 16000, 24000))
    pcm = question.astype("<i2").tobytes() + pcm24(1.5, loud=False)
    client = AsyncOpenAI(base_url=server["http"] + "/v1", api_key="sk-unused")
    async with client.realtime.connect(model="voxloop") as conn:
        await events_until(conn, "session.created")
        for i in range(0, len(pcm), 4800):  # 100 ms chunks
            await conn.input_audio_buffer.append(audio=base64.b64encode(pcm[i : i + 4800]).decode())
        events = await events_until(conn, "response.done", timeout_s=120)
        kinds = [e.type for e in events]
        heard = next(
            e for e in events if e.type == "conversation.item.input_audio_transcription.completed"
        )
        assert "capital" in heard.transcript.lower(), heard.transcript
        assert "input_audio_buffer.speech_started" in kinds
        audio = b"".join(
            base64.b64decode(e.delta) for e in events if e.type == "response.output_audio.delta"
        )
        assert len(audio) > 2 * 24000 // 2  # more than half a second of speech
        said = next(e for e in events if e.type == "response.output_audio_transcript.done")
        assert "paris" in said.transcript.lower(), said.transcript
        assert events[-1].response.status == "completed"

        # barge-in by request: response.cancel while the agent speaks
        await conn.conversation.item.create(
            item={
                "type": "message",
                "role": "user",
                "content": [{"type": "input_text", "text": "Tell me a long story about a dragon."}],
            }
        )
        await conn.response.create()
        started = await events_until(conn, "response.output_audio.delta", timeout_s=120)
        response_id = started[-1].response_id
        await conn.response.cancel(response_id=response_id)
        events = await events_until(conn, "response.done", timeout_s=60)
        assert events[-1].response.id == response_id
        assert events[-1].response.status == "cancelled"


def test_speech_before_the_answer_is_heard_continues_the_turn():
    """Turn 1 ends at a pause; the user goes on while the LLM still thinks: its response is
    cancelled, its user item deleted, and one answer covers both parts."""
    from voxloop.testing.fakes import FakeTurnJudge

    services = fake_services(heard=("Ever tried.", "Ever failed."))
    services.llm = FakeLLM(["Fail better."], first_token_s=3.0)
    services.judge = FakeTurnJudge(0.95)
    with connect(services) as ws:
        part = pcm24(0.8, loud=True, seed=1) + pcm24(0.4, loud=False)
        append(ws, part + pcm24(0.8, loud=True, seed=2) + pcm24(1.2, loud=False))
        events: list[dict] = []
        while not events or events[-1]["response"]["status"] != "completed":
            events += receive_until(ws, "response.done")  # a cancelled one, then the answer
        transcribed = [e for e in events if e["type"].endswith("transcription.completed")]
        assert [e["transcript"] for e in transcribed] == ["Ever tried.", "Ever tried. Ever failed."]
        deleted = [e["item_id"] for e in events if e["type"] == "conversation.item.deleted"]
        assert deleted == [transcribed[0]["item_id"]]
