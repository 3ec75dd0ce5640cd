"""`voxloop talk`'s verdict on a result, without a server: what counts as an answer."""

from __future__ import annotations

import numpy as np
import pytest
from typer.testing import CliRunner

import voxloop.client.streaming
from voxloop.audio.formats import write_wav
from voxloop.cli import app
from voxloop.client.streaming import TalkResult, ws_url

runner = CliRunner()


@pytest.mark.parametrize(
    ("typed", "url"),
    [
        ("http://127.0.0.1:8000/ws", "ws://127.0.0.1:8000/ws"),
        ("https://voice.example.com/v1/realtime", "wss://voice.example.com/v1/realtime"),
        ("HTTP://host:1", "ws://host:1"),
        ("wss://host/ws?profile=realtime-ai", "wss://host/ws?profile=realtime-ai"),
        ("127.0.0.1:8000/ws", "ws://127.0.0.1:8000/ws"),
    ],
)
def test_ws_url(typed, url):
    assert ws_url(typed) == url


@pytest.mark.parametrize("typed", ["ftp://host/ws", "ws://", "file:///tmp/x"])
def test_ws_url_refuses_what_is_no_server(typed):
    with pytest.raises(ValueError, match="is not a server URL"):
        ws_url(typed)


@pytest.mark.parametrize(
    ("result", "exit_code"),
    [
        (TalkResult(reply="Hello."), 0),
        (TalkResult(), 1),
        (TalkResult(carries_text=False, audio=bytearray(3200), audio_rate=8000), 0),
        (TalkResult(carries_text=False), 1),  # a phone call with no reply audio
    ],
)
def test_talk_exits_1_without_an_answer(monkeypatch, tmp_path, result, exit_code):
    async def fake_talk(*args, **kwargs):
        return result

    monkeypatch.setattr(voxloop.client.streaming, "talk", fake_talk)
    path = tmp_path / "q.wav"
    write_wav(path, np.zeros(1600, np.int16), 16000)
    profile = "voxloop" if result.carries_text else "twilio"
    done = runner.invoke(app, ["talk", str(path), "--profile", profile])
    assert done.exit_code == exit_code, done.output
