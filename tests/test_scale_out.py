"""The scale-out recipe, run as a user runs it: `deploy/scale-out.sh start` brings up nginx,
two voxloop workers on one Redis and one model host (`voxloop serve-models`: Wyoming
speech with the embedded Whisper and Piper, and the embedded LLM over an OpenAI-compatible
API). Conversations go through the balancer; the worker holding one is killed (-9) in the
middle of a turn, and the conversation resumes on the other worker with its history."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from redis_server import redis_url  # noqa: F401
from voxloop.bench.questions import question_wavs
from voxloop.bench.server import child_env
from voxloop.client.streaming import talk
from voxloop.hearing.wer import normalize as words

pytestmark = pytest.mark.models


def normalize(text: str) -> str:
    return " ".join(words(text))


ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "deploy" / "scale-out.sh"
NGINX = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)


def _free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _ports(n: int) -> int:
    """A base port with `n` free ports from it."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        base = s.getsockname()[1]
    while not all(_free(base + i) for i in range(n)):
        base += n
    return base


def _conversations(port: int) -> int:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=5) as answer:
        return json.load(answer)["conversations"]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory, redis_url):  # noqa: F811
    if NGINX is None:
        if os.environ.get("CI"):
            pytest.fail("nginx is not installed; .ci/run installs it")
        pytest.skip("needs nginx (apt-get install nginx)")
    run = tmp_path_factory.mktemp("scale-out")
    base = _ports(5)
    ports = {"PORT": base, "WORKER_PORT": base + 1, "SPEECH_PORT": base + 3, "LLM_PORT": base + 4}
    env = child_env(
        **{k: str(v) for k, v in ports.items()},
        WORKERS="2",
        RUN_DIR=str(run),
        REDIS_URL=redis_url,
        NGINX=NGINX,
        VOXLOOP=str(Path(sys.executable).parent / "voxloop"),
        VOXLOOP_LLM__TEMPERATURE="0",
        VOXLOOP_TURN_JUDGE__PROVIDER="fake",
        VOXLOOP_TURNS__END_OF_TURN="words",
        VOXLOOP_STORE__BACKEND="memory",  # Redis keeps the sessions (VOXLOOP_REDIS_URL)
        READY_TIMEOUT_S="240",
    )
    started = subprocess.run(
        ["bash", str(SCRIPT), "start"], env=env, capture_output=True, text=True, timeout=300
    )
    try:
        assert started.returncode == 0, started.stderr + "".join(
            f"\n--- {p.name}\n{p.read_text()[-3000:]}" for p in run.glob("*.log")
        )
        yield {"run": run, **ports}
    finally:
        subprocess.run(["bash", str(SCRIPT), "stop"], env=env, timeout=60)


@pytest.fixture(scope="module")
def wavs(tmp_path_factory):
    texts = ["What is the capital of France?", "Count from one to twenty.", "What did I ask first?"]
    return question_wavs(texts, tmp_path_factory.mktemp("wavs"))


def test_conversations_through_the_balancer_survive_a_killed_worker(cluster, wavs):
    url = f"ws://127.0.0.1:{cluster['PORT']}/ws"
    workers = [cluster["WORKER_PORT"], cluster["WORKER_PORT"] + 1]

    first = asyncio.run(talk(url, wavs[0], timeout_s=120))
    assert not first.errors, first.errors
    assert "capital of france" in normalize(first.transcript), first.transcript
    assert "paris" in normalize(first.reply), first.reply
    assert len(first.audio) > 16000  # spoken, through the model host's Piper
    session = first.session_id

    # Two conversations at once, one per worker (least connections), both answered.
    both = asyncio.run(_at_once(url, wavs[0]))
    assert all(r.reply and not r.errors for r in both), [r.errors for r in both]

    async def cut_off() -> tuple[object, int]:
        turn = asyncio.create_task(talk(url, wavs[1], session_id=session, timeout_s=120))
        holder = None
        deadline = time.monotonic() + 30
        while holder is None and time.monotonic() < deadline and not turn.done():
            await asyncio.sleep(0.2)
            holder = next((p for p in workers if _conversations(p) == 1), None)
        assert holder is not None, "no worker holds the conversation"
        await asyncio.sleep(3.0)  # the question is in; the reply is under way
        pid = int((cluster["run"] / f"worker{workers.index(holder)}.pid").read_text())
        os.kill(pid, signal.SIGKILL)
        return await turn, holder

    cut, dead = asyncio.run(cut_off())
    assert cut.errors, "the connection to the killed worker should have dropped"  # type: ignore[attr-defined]

    # The next turn resumes through the balancer, on the worker that is left.
    third = asyncio.run(talk(url, wavs[2], session_id=session, timeout_s=120))
    assert not third.errors, third.errors
    assert third.session_id == session and third.reply
    alive = next(p for p in workers if p != dead)
    with urllib.request.urlopen(f"http://127.0.0.1:{alive}/api/sessions/{session}") as answer:
        turns = json.load(answer)["turns"]
    users = [normalize(t["user"]) for t in turns]
    assert "what is the capital of france" in users[0], users  # turn 1 came along
    assert "what did i ask first" in users[-1], users


async def _at_once(url: str, wav: Path):
    return await asyncio.gather(talk(url, wav, timeout_s=120), talk(url, wav, timeout_s=120))
