"""The docs say what the code does: defaults, the order of a turn's events, the REST
error shape, where the models come from."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from voxloop.config.settings import Settings
from voxloop.providers.local.llm_probe import TESTED_VERSION
from voxloop.providers.local.modelfiles import LLM_PRESETS, WHISPER_BASE
from voxloop.server.app import create_app

from test_protocol import fake_services, receive_until, start

DOCS = Path(__file__).resolve().parent.parent / "docs"

# "`turns.barge_in_min_speech_s` (default 0.15 s)", "`limits.max_frame_bytes` (1 MiB)",
# "`turns.false_interruption_timeout_s`, 1.5 s": a setting's default, as a doc quotes it.
_QUOTED = [
    re.compile(
        r"`((?:[a-z_]+\.)+[a-z_]+)`,?\s+\((?:default\s+)?([0-9][0-9,]*(?:\.[0-9]+)?)"
        r"(?:\s*(s|ms|h|MiB))?\)"
    ),
    re.compile(r"`((?:[a-z_]+\.)+[a-z_]+)`,\s+([0-9][0-9,]*(?:\.[0-9]+)?)(?:\s*(s|ms|h|MiB))?\b"),
]
_UNITS = {None: 1, "s": 1, "h": 3600, "MiB": 1 << 20}


def _quoted_defaults() -> list[tuple[str, str, float]]:
    found = []
    for path in sorted(DOCS.glob("*.md")):
        text = path.read_text()
        for pattern in _QUOTED:
            for name, number, unit in pattern.findall(text):
                value = float(number.replace(",", ""))
                if unit == "ms":
                    value = value / 1000 if name.endswith("_s") else value
                else:
                    value *= _UNITS[unit or None]
                found.append((path.name, name, value))
    return found


def test_every_default_a_doc_quotes_is_the_settings_default():
    settings = Settings()
    checked = set()
    for doc, name, quoted in _quoted_defaults():
        root, *rest = name.split(".")
        if root not in Settings.model_fields:
            continue  # a file name such as `model.bin`, not a setting
        value = settings
        for part in (root, *rest):
            value = getattr(value, part)
        assert value == pytest.approx(quoted), f"{doc}: `{name}` is {value}, the doc says {quoted}"
        checked.add(name)
    assert "turns.barge_in_min_speech_s" in checked  # said 0.2 s while the code had 0.15


@pytest.fixture
def client():
    app = create_app(Settings(), services=fake_services(), warmup=False)
    with TestClient(app) as c:
        yield c


def _names(events: list) -> list[str]:
    out = []
    for e in events:
        if isinstance(e, bytes):
            out.append("audio")
        elif e["type"] in ("status", "llm_status"):
            out.append(f"{e['type']}:{e['status']}")
        elif e["type"] == "llm_response":
            out.append("llm_response:complete" if e["is_complete"] else "llm_response:delta")
        else:
            out.append(e["type"])
    return out


def test_a_text_turn_sends_its_events_in_the_documented_order(client):
    """docs/protocol.md, "A text turn": what is fixed in the order of the events."""
    with client.websocket_connect("/ws") as ws:
        start(ws)
        receive_until(ws, "status")
        ws.send_json({"type": "text", "content": "What is the capital of France?"})
        events = receive_until(ws, "metrics")
        ws.send_json({"type": "ping"})
        events += receive_until(ws, "pong")[:-1]  # anything sent after the metrics
    names = _names(events)
    assert "partial_transcript" not in names and "final_transcript" not in names
    assert names[0] == "status:thinking"
    assert names[-1] == "metrics"
    order = [
        "llm_status:started",
        "llm_response:delta",
        "status:speaking",
        "tts_start",
        "audio",
        "tts_end",
        "status:listening",
        "llm_response:complete",
        "metrics",
    ]
    firsts = [names.index(name) for name in order[:2]] + [names.index(n) for n in order[3:]]
    assert firsts == sorted(firsts), names
    assert names.index("status:speaking") < names.index("tts_start")
    last_audio = len(names) - 1 - names[::-1].index("audio")
    assert last_audio < names.index("tts_end") < names.index("status:listening"), names
    assert names.index("llm_status:done") > names.index("llm_response:delta")
    assert [e for e in events if isinstance(e, dict)][-1]["source"] == "text"


def test_the_documented_rest_error_example_is_what_the_server_says(tmp_path):
    text = (DOCS / "protocol.md").read_text()
    example = re.search(r'`(\{"detail": "offset: [^`]*\})`', text)
    assert example is not None
    app = create_app(Settings(), services=fake_services(), warmup=False)
    with TestClient(app) as c:
        r = c.get("/api/sessions", params={"offset": 2**31})
    assert r.status_code == 422 and r.json() == json.loads(example.group(1))


def test_models_md_stands_on_its_own():
    """It is read by users: no links to files outside the repository, and the recorded
    sizes and checksums of every model voxloop assembles or loads from a package."""
    text = (DOCS / "models.md").read_text()
    assert "shared/" not in text
    engine = text.split("## The LLM engine on every CPU", 1)[1].split("\n## ", 1)[0]
    assert f"llama-cpp-python=={TESTED_VERSION}" in engine  # the version that is pinned
    assert "-DGGML_NATIVE=OFF" in engine and "llm_check" in engine  # the build, the check
    for spec in (*LLM_PRESETS.values(), WHISPER_BASE):
        assert spec.sha256 in text, spec.name
        assert f"{spec.size:,}" in text, spec.name
    for package in ("onnxruntime", "faster-whisper", "llama-cpp-python", "piper-tts"):
        assert f"`{package}" in text


@pytest.mark.parametrize("doc", sorted(p.name for p in DOCS.glob("*.md")))
def test_docs_cite_no_issue_numbers(doc):
    """Users cannot see the project's issue tracker: say what was done instead."""
    assert not re.search(r"\bissues? #?\d+", (DOCS / doc).read_text(), re.IGNORECASE)
