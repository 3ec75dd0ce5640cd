"""Property test (hypothesis) of the OpenAI Realtime profile's client events, through its
handlers and a real session on fake providers: whatever a client sends, the answer is
the server's events or an `error` that blames the client (`invalid_request_error`),
never an `internal` server error. tests/test_properties.py covers `session.update`'s
parser alone; this reaches every handler, and what the session does with the values."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from voxloop.config.settings import Settings
from voxloop.server.transports.realtime import HANDLERS, UNSUPPORTED_EVENTS, RealtimeProfile
from voxloop.session.services import Services
from voxloop.session.session import Session
from voxloop.testing.fakes import FakeLLM, FakeSTT, FakeTTS, FakeVAD

KEYS = st.sampled_from(
    [
        # session.update
        "type", "instructions", "modalities", "output_modalities", "tools", "voice", "audio",
        "input", "output", "format", "rate", "turn_detection", "create_response",
        "silence_duration_ms", "threshold", "prefix_padding_ms", "eagerness",
        "interrupt_response", "transcription", "noise_reduction", "temperature", "speed",
        "max_output_tokens", "input_audio_transcription",
        # response.create and items
        "conversation", "metadata", "role", "content", "text", "id",
    ]
) | st.text(max_size=4)  # fmt: skip
FIELDS = st.sampled_from(
    [
        "session", "response", "item", "audio", "response_id", "item_id", "content_index",
        "audio_end_ms", "event_id",
    ]
)  # fmt: skip
CLIENT_ERRORS = "invalid_request_error"


def json_values(keys: st.SearchStrategy[str]) -> st.SearchStrategy[Any]:
    """Any JSON value json.loads can return (NaN and ±Infinity included)."""
    scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12)
    return st.recursive(
        scalars,
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(keys, inner, max_size=4),
        max_leaves=12,
    )


@st.composite
def client_events(draw: st.DrawFn) -> dict[str, Any]:
    """A JSON object shaped like a client event: a known type most of the time, with
    fields the handlers read, of any value."""
    kinds = st.sampled_from(sorted(HANDLERS) + sorted(UNSUPPORTED_EVENTS))
    kind = draw(kinds | json_values(KEYS))
    fields = draw(st.dictionaries(FIELDS, json_values(KEYS), max_size=3))
    return {"type": kind, **fields}


def services() -> Services:
    return Services(
        settings=Settings(store={"backend": "memory"}),
        vad=FakeVAD(),
        stt=FakeSTT(),
        llm=FakeLLM(),
        tts=FakeTTS(),
    )


async def answers(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The frames one fresh connection's profile answers the events with."""
    session = Session(services())
    profile = RealtimeProfile()
    try:
        await profile.open(session)
        out = []
        for event in events:
            out += [json.loads(f) for f in await profile.on_text(session, json.dumps(event))]
        return out
    finally:
        await session.close()


@settings(
    derandomize=True,
    database=None,
    deadline=None,
    max_examples=150,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(st.lists(client_events(), min_size=1, max_size=3))
def test_any_client_event_is_handled_or_is_the_clients_error(events: list[dict[str, Any]]):
    for frame in asyncio.run(answers(events)):
        assert frame["event_id"].startswith("event_"), frame
        if frame["type"] == "error":
            error = frame["error"]
            assert error["type"] == CLIENT_ERRORS, error
            assert error["code"] and error["message"], error
