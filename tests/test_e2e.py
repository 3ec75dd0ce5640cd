"""End to end with the real models: `voxloop serve` + `voxloop talk`, as a user would."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from voxloop.audio import float_to_pcm16, write_wav
from voxloop.wer import normalize, wer

pytestmark = pytest.mark.models

QUESTION = "What is the capital of France?"


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("VOXLOOP_")}


def test_talk_to_the_server(server, speak, tmp_path):
    question = tmp_path / "question.wav"
    pcm = float_to_pcm16(np.concatenate([np.zeros(4000, np.float32), speak(QUESTION)]))
    write_wav(question, pcm, 16000)
    reply_wav = tmp_path / "reply.wav"
    args = ["talk", str(question), "--url", server["ws"], "-o", str(reply_wav), "--json"]
    talk = subprocess.run(
        [sys.executable, "-m", "voxloop", *args],
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

    # The server logged the turn as one JSON line tagged with the session and turn ids.
    lines = [json.loads(ln) for ln in server["log"].read_text().splitlines() if ln.startswith("{")]
    turns = [ln for ln in lines if ln.get("session_id") == result["session_id"]]
    done = [ln for ln in turns if ln["event"] == "turn complete"]
    assert done and done[0]["turn_id"] == 1 and done[0]["voice_to_voice_ms"] > 0
