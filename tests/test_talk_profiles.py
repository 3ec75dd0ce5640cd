"""`voxloop talk --profile ...`: the command-line client speaks each wire profile to a
real server (fake providers, a real process and real WebSockets)."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from voxloop.audio.formats import write_wav
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


def _talk(*args: str, timeout: float = 90) -> subprocess.CompletedProcess:
    """`voxloop talk ...`. The process's own deadline (`timeout`) is far below `--timeout`,
    so a talk that waited out its timeout fails the test instead of passing late."""
    command = [sys.executable, "-m", "voxloop", "talk", *args, "--timeout", "600"]
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def silence(tmp_path_factory):
    path = tmp_path_factory.mktemp("talk") / "silence.wav"
    write_wav(path, np.zeros(16000, np.int16), 16000)
    return path


def test_a_refused_start_ends_the_talk_at_once(fake_server, question):
    done = _talk(str(question), "--url", fake_server.url, "--sample-rate", "12345")
    assert done.returncode == 1, done.stdout + done.stderr
    assert "error: unsupported_sample_rate: sample_rate 12345 is not supported" in done.stderr
    assert "timeout" not in done.stderr
    assert "agent:" not in done.stdout  # no empty reply printed as if it were one


def test_a_silent_file_is_said_to_hold_no_speech(fake_server, silence):
    done = _talk(str(silence), "--url", fake_server.url)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "error: no_speech: no speech was heard in silence.wav" in done.stderr
    assert "timeout" not in done.stderr


@pytest.mark.parametrize("scheme", ["http", "ws"])
def test_an_http_url_reaches_the_websocket(fake_server, question, scheme):
    url = fake_server.url.replace("ws://", f"{scheme}://")
    done = _talk(str(question), "--url", url.removesuffix("/ws"), "--json")
    assert done.returncode == 0, done.stdout + done.stderr
    assert json.loads(done.stdout)["reply"].startswith("You said: fake transcript")


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("ftp://127.0.0.1/ws", "error: --url: 'ftp://127.0.0.1/ws' is not a server URL"),
        ("ws://127.0.0.1:9/ws", "error: cannot reach ws://127.0.0.1:9/ws: "),
    ],
)
def test_a_bad_url_is_one_line(question, url, message):
    done = _talk(str(question), "--url", url)
    assert done.returncode == 1
    assert message in done.stderr
    assert "Traceback" not in done.stderr and len(done.stderr.strip().splitlines()) == 1


def test_a_phone_call_says_it_carries_no_text(fake_server, question):
    """Twilio Media Streams carry only audio: the reply's words never reach the caller, so
    the output says so and reports the audio instead of printing an empty reply."""
    base = fake_server.url.removesuffix("/ws")
    done = _talk(str(question), "--url", base, "--profile", "twilio")
    assert done.returncode == 0, done.stdout + done.stderr
    lines = dict(line.split(":", 1) for line in done.stdout.splitlines())
    assert "a phone line carries no text" in lines["you"]
    seconds = float(lines["agent"].split()[0])
    assert seconds > 0.2 and "s of reply audio received" in lines["agent"]
    assert "None" not in done.stdout  # no figures the profile cannot have
    as_json = json.loads(
        _talk(str(question), "--url", base, "--profile", "twilio", "--json").stdout
    )
    assert as_json["reply"] is None and as_json["transcript"] is None  # unknown, not ""


@pytest.fixture(scope="module")
def greeting_server():
    """A persona that greets every new session before the user says a word."""
    with running_server(
        providers="fake", env={"VOXLOOP_PERSONA__GREETING": "Hello, I am your assistant."}
    ) as srv:
        yield srv


def test_a_greeting_is_not_taken_for_the_answer(greeting_server, question, silence):
    answered = _talk(str(question), "--url", greeting_server.url, "--json")
    assert answered.returncode == 0, answered.stdout + answered.stderr
    assert json.loads(answered.stdout)["reply"].startswith("You said: fake transcript")
    unanswered = _talk(str(silence), "--url", greeting_server.url)
    assert unanswered.returncode == 1, unanswered.stdout + unanswered.stderr
    assert "no speech was heard in silence.wav" in unanswered.stderr
    assert "Hello, I am your assistant." not in unanswered.stdout


def test_the_summary_names_every_segment_of_voice_to_voice(fake_server, question):
    done = _talk(str(question), "--url", fake_server.url)
    assert done.returncode == 0, done.stdout + done.stderr
    server = next(x for x in done.stdout.splitlines() if x.startswith("latency (server)"))
    total = float(server.rsplit("voice-to-voice ", 1)[1].removesuffix(" ms"))
    line = next(x for x in done.stdout.splitlines() if x.startswith("voice-to-voice, segment"))
    segments = [part.rsplit(" ", 2) for part in line.split(": ", 1)[1].split(", ")]
    assert all(unit == "ms" for _, _, unit in segments), line
    assert sum(float(ms) for _, ms, _ in segments) == pytest.approx(total, abs=0.5), line
