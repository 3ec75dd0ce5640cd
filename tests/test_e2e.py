"""End to end with the real models: `voxloop serve` + `voxloop talk`, as a user would."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request

import numpy as np
import pytest

from voxloop.audio import float_to_pcm16, write_wav
from voxloop.wer import normalize, wer

pytestmark = pytest.mark.models

QUESTION = "What is the capital of France?"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("VOXLOOP_")}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    port = free_port()
    log = tmp_path_factory.mktemp("server") / "server.log"
    with log.open("w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "voxloop", "serve", "--port", str(port)],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=_env(),
        )
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(240):
            if proc.poll() is not None:
                raise RuntimeError(f"server exited: {log.read_text()[-2000:]}")
            try:
                urllib.request.urlopen(f"{url}/healthz", timeout=1)
                break
            except OSError:
                time.sleep(0.5)
        else:
            raise RuntimeError(f"server did not start: {log.read_text()[-2000:]}")
        yield {"http": url, "ws": f"ws://127.0.0.1:{port}/ws", "log": log}
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()


def test_talk_to_the_server(server, speak, tmp_path):
    question = tmp_path / "question.wav"
    pcm = float_to_pcm16(np.concatenate([np.zeros(4000, np.float32), speak(QUESTION)]))
    write_wav(question, pcm, 16000)
    reply_wav = tmp_path / "reply.wav"
    talk = subprocess.run(
        [sys.executable, "-m", "voxloop", "talk", str(question), "--url", server["ws"]]
        + ["-o", str(reply_wav), "--json"],
        capture_output=True,
        text=True,
        timeout=300,
        env=_env(),
    )
    assert talk.returncode == 0, talk.stdout + talk.stderr
    result = json.loads(talk.stdout)
    print(json.dumps(result, indent=2))
    assert wer(QUESTION, result["transcript"]) <= 0.15, result["transcript"]
    assert "paris" in normalize(result["reply"]), result["reply"]
    assert result["client"]["voice_to_voice_ms"] > 0
    assert result["server"]["voice_to_voice_ms"] > 0
    assert result["errors"] == []

    # The reply audio must say the reply text. Whisper base is the independent ear here:
    # tiny.en hears the TTS's "France is" as "Francis", which would test the STT, not the TTS.
    heard = subprocess.run(
        [sys.executable, "-m", "voxloop", "transcribe", str(reply_wav)],
        capture_output=True,
        text=True,
        timeout=300,
        env={**_env(), "VOXLOOP_STT__PRESET": "base"},
    )
    assert heard.returncode == 0, heard.stderr
    score = wer(result["reply"], heard.stdout)
    print(f"reply {result['reply']!r} heard as {heard.stdout.strip()!r}: WER {score:.2f}")
    assert score <= 0.25


def test_server_logs_are_json_with_session_ids(server):
    lines = [ln for ln in server["log"].read_text().splitlines() if ln.startswith("{")]
    turns = [json.loads(ln) for ln in lines if '"turn complete"' in ln]
    assert turns, "no JSON turn log line"
    assert turns[-1]["session_id"] and turns[-1]["turn_id"] == 1
    assert turns[-1]["voice_to_voice_ms"] > 0
