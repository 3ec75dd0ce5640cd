"""`voxloop talk --profile ...`: the command-line client speaks each wire profile to a
real server (fake providers, a real process and real WebSockets)."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from voxloop.audio import write_wav
from voxloop.bench.server import running_server


@pytest.fixture(scope="module")
def fake_server():
    with running_server(providers="fake") as srv:
        yield srv


@pytest.fixture(scope="module")
def question(tmp_path_factory):
    """Noise the fake VAD takes for speech, then silence: one turn."""
    rng = np.random.default_rng(0)
    speech = (rng.uniform(-0.3, 0.3, 16000) * 32767).astype(np.int16)
    path = tmp_path_factory.mktemp("talk") / "question.wav"
    write_wav(path, np.concatenate([speech, np.zeros(8000, np.int16)]), 16000)
    return path


@pytest.mark.parametrize("profile", ["voxloop", "realtime-ai", "realtime", "twilio"])
def test_talk_speaks_each_profile(fake_server, question, tmp_path, profile):
    base = fake_server.url.removesuffix("/ws")
    args = [sys.executable, "-m", "voxloop", "talk", str(question), "--json"]
    args += ["--profile", profile, "--timeout", "60", "-o", str(tmp_path / "reply.wav")]
    if profile == "voxloop":
        args += ["--url", fake_server.url]
    else:  # the default URL's host and port, with the profile's own path
        args += ["--url", base + "/ws"]
    done = subprocess.run(args, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    result = json.loads(done.stdout)
    assert result["errors"] == []
    if profile != "twilio":  # a phone line carries audio only
        assert result["transcript"].startswith("fake transcript")
        assert result["reply"]
    assert result["reply_audio_s"] > 0.2
    assert (tmp_path / "reply.wav").stat().st_size > 1000


def test_an_unknown_profile_is_named(question):
    args = [sys.executable, "-m", "voxloop", "talk", str(question), "--profile", "sip"]
    done = subprocess.run(args, capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert "unknown profile 'sip'; known: voxloop, realtime-ai, realtime, twilio" in done.stderr
