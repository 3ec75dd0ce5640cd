"""Prometheus metrics and JSON logs."""

from __future__ import annotations

import io
import json
import logging
import time

import pytest
from starlette.testclient import TestClient

from voxloop.config.settings import Settings
from voxloop.server.app import create_app
from voxloop.telemetry.logs import JSONFormatter, setup_logging
from voxloop.telemetry.metrics import SEGMENTS, MetricsRegistry, Timeline, TurnMetrics

from test_protocol import fake_services, receive_until, start


def _metric(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{name} not in /metrics")


def test_metrics_endpoint_counts_turns_errors_and_sessions():
    app = create_app(Settings(), services=fake_services(), warmup=False)
    with TestClient(app) as client:
        before = client.get("/metrics").text
        assert _metric(before, "voxloop_turns_total") == 0
        with client.websocket_connect("/ws") as ws:
            start(ws)
            ws.send_json({"type": "text", "content": "hello"})
            receive_until(ws, "metrics")
            ws.send_json({"type": "nope"})
            receive_until(ws, "error")
            during = client.get("/metrics").text
            assert _metric(during, "voxloop_active_sessions") == 1
        # The server notices the closed socket a moment later; wait for it (bounded).
        for _ in range(500):
            after = client.get("/metrics").text
            if _metric(after, "voxloop_active_sessions") == 0:
                break
            time.sleep(0.01)
    assert _metric(after, "voxloop_turns_total") == 1
    assert _metric(after, 'voxloop_errors_total{code="unknown_type"}') == 1
    assert _metric(after, "voxloop_voice_to_voice_seconds_count") == 0  # a text turn
    assert _metric(after, 'voxloop_stage_latency_seconds_count{stage="llm_first_token"}') == 1
    assert _metric(after, "voxloop_active_sessions") == 0


def test_each_app_has_its_own_registry():
    a, b = MetricsRegistry(), MetricsRegistry()
    a.record_turn(TurnMetrics("s", 1, voice_to_voice_ms=700.0))
    assert b"voxloop_turns_total 1.0" in a.prometheus.render()
    assert b"voxloop_turns_total 0.0" in b.prometheus.render()


def test_interrupted_turns_are_counted():
    registry = MetricsRegistry()
    registry.record_turn(TurnMetrics("s", 1, interrupted=True))
    assert b"voxloop_interruptions_total 1.0" in registry.prometheus.render()
    assert registry.counts["interruptions"] == 1


def test_turn_log_line_is_json_with_session_and_turn_ids():
    stream = io.StringIO()
    setup_logging("INFO", stream=stream)
    try:
        MetricsRegistry().record_turn(TurnMetrics("sess-42", 7, stt_final_ms=321.04))
    finally:
        logging.getLogger().handlers[:] = []
    line = json.loads(stream.getvalue().strip().splitlines()[-1])
    assert line["event"] == "turn complete"
    assert line["session_id"] == "sess-42"
    assert line["turn_id"] == 7
    assert line["stt_final_ms"] == 321.0
    assert line["level"] == "info"


def test_log_level_comes_from_config():
    stream = io.StringIO()
    setup_logging("WARNING", stream=stream)
    try:
        logging.getLogger("voxloop.x").info("hidden")
        logging.getLogger("voxloop.x").warning("shown", extra={"session_id": "abc"})
    finally:
        logging.getLogger().handlers[:] = []
    lines = [json.loads(x) for x in stream.getvalue().splitlines()]
    assert [x["event"] for x in lines] == ["shown"]
    assert lines[0]["session_id"] == "abc"


def test_formatter_keeps_exceptions():
    record = logging.LogRecord("voxloop", logging.ERROR, __file__, 1, "boom", None, None)
    try:
        raise ValueError("bad")
    except ValueError:
        import sys

        record.exc_info = sys.exc_info()
    out = json.loads(JSONFormatter().format(record))
    assert "ValueError: bad" in out["exc"]


def test_voice_to_voice_segments_are_histograms_that_add_up():
    registry = MetricsRegistry()
    timeline = Timeline(speech_end=0.0, turn_end=0.5, transcript=0.7, first_audio=0.9, sent=1.2)
    registry.record_turn(TurnMetrics("s", 1, voice_to_voice_ms=1200.0, timeline=timeline))
    registry.record_turn(TurnMetrics("s", 2, source="text"))  # no voice-to-voice, no segments
    text = registry.prometheus.render().decode()
    name = "voxloop_voice_to_voice_segment_seconds"
    assert _metric(text, f'{name}_count{{segment="end_of_turn"}}') == 1
    assert _metric(text, f'{name}_sum{{segment="stt"}}') == pytest.approx(0.2)
    sums = [_metric(text, f'{name}_sum{{segment="{s}"}}') for s in SEGMENTS]
    assert sum(sums) == pytest.approx(_metric(text, "voxloop_voice_to_voice_seconds_sum"))
