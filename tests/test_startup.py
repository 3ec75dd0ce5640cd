"""Starting up as a newcomer would: a busy port, an LLM engine that crashes, the ready line.

The native crash is played by a child that really dies of SIGSEGV, the way llama-cpp-python
0.3.36 built natively dies on a CPU with AMX.
"""

from __future__ import annotations

import asyncio
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

from repeatable import REPEATABLE_ENV
from voxloop.bench.doctor import run_checks
from voxloop.bench.server import child_env
from voxloop.config.settings import Settings
from voxloop.errors import VoxloopError
from voxloop.hearing.wer import wer
from voxloop.providers.local.llm_probe import ProbeResult, probe_configured, probe_llm
from voxloop.providers.registry import ProviderPool
from voxloop.server.app import listen, run_server

SEGFAULT = [sys.executable, "-c", "import ctypes; ctypes.string_at(0)"]
FAKES = {f"VOXLOOP_{s}__PROVIDER": "fake" for s in ("VAD", "STT", "LLM", "TTS", "TURN_JUDGE")}


def _env(**extra: str) -> dict[str, str]:
    return child_env(**{**FAKES, "VOXLOOP_STORE__BACKEND": "memory", **extra})


def test_a_native_crash_becomes_one_line_naming_cause_and_fix(tmp_path):
    result = probe_llm(tmp_path / "model.gguf", command=SEGFAULT)
    assert not result.ok
    assert "crashed with SIGSEGV in native code" in result.message
    assert "llama-cpp-python" in result.message
    assert "CMAKE_ARGS='-DGGML_NATIVE=OFF -DGGML_BACKEND_DL=ON" in result.message  # the fix
    assert "\n" not in result.message


def test_a_python_level_failure_is_reported_not_hidden(tmp_path):
    child = [sys.executable, "-c", 'print(\'{"error": "no such file: model.gguf"}\')']
    result = probe_llm(tmp_path / "model.gguf", command=child)
    assert (result.ok, result.message) == (False, "no such file: model.gguf")


def test_a_hung_engine_is_reported_after_the_timeout(tmp_path):
    child = [sys.executable, "-c", "import time; time.sleep(30)"]
    result = probe_llm(tmp_path / "model.gguf", command=child, timeout_s=0.5)
    assert not result.ok
    assert "no answer within" in result.message


def test_providers_other_than_the_local_llm_are_not_probed():
    assert probe_configured(Settings(llm={"provider": "fake"})) is None


def _crashing_probe(settings: Settings) -> ProbeResult:
    return probe_llm(settings.resolved_cache_dir() / "x.gguf", command=SEGFAULT)


async def test_doctor_reports_the_crash_and_still_checks_every_other_stage():
    settings = Settings(
        vad={"provider": "fake"}, stt={"provider": "fake"}, llm={"provider": "fake"},
        tts={"provider": "fake"}, turn_judge={"provider": "fake"},
    )  # fmt: skip
    pool = ProviderPool(settings)
    results = {r.stage: r for r in await run_checks(pool, probe=_crashing_probe)}
    assert not results["llm"].ok
    assert "crashed with SIGSEGV" in results["llm"].smoke
    assert ("llm", "fake") not in pool._loaded  # never loaded in the doctor's own process
    for stage in ("vad", "stt", "tts", "turn"):  # loaded and smoke-tested all the same
        assert results[stage].load_s is not None and results[stage].smoke, results[stage]
    assert results["vad"].ok and results["tts"].ok


def test_serve_refuses_to_start_when_the_llm_crashes(monkeypatch):
    monkeypatch.setattr("voxloop.server.app.setup_logging", lambda level: None)  # pytest's stay
    settings = Settings(server={"port": 0})
    with pytest.raises(VoxloopError, match=r"start-up check: the LLM engine .* crashed"):
        run_server(settings, probe=_crashing_probe)


def test_a_busy_port_is_one_line_and_comes_before_the_models_load():
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(VoxloopError, match=f"port {port} on 127.0.0.1 is already in use"):
            listen("127.0.0.1", port)
        done = subprocess.run(
            [sys.executable, "-m", "voxloop", "serve", "--port", str(port)],
            capture_output=True,
            text=True,
            timeout=60,
            # A model that cannot load: had anything been loaded (or probed) before the
            # port was taken, the error would be about the model.
            env=_env(VOXLOOP_LLM__PROVIDER="llama", VOXLOOP_LLM__MODEL_PATH="/nope/x.gguf"),
        )
    assert done.returncode == 1
    assert done.stderr.strip().splitlines()[-1] == (
        f"error: port {port} on 127.0.0.1 is already in use (is another voxloop running?); "
        "stop that process or choose another port with --port"
    )
    assert "Traceback" not in done.stderr


def test_the_server_says_where_to_open_it_once_ready(tmp_path):
    log = tmp_path / "serve.log"
    with log.open("w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "voxloop", "serve", "--port", "0"],
            stdout=subprocess.DEVNULL,
            stderr=out,
            env=_env(VOXLOOP_LOG_LEVEL="WARNING"),
        )
    try:
        url = None
        deadline = time.monotonic() + 60
        while url is None and time.monotonic() < deadline and proc.poll() is None:
            for line in log.read_text().splitlines():
                if line.startswith("voxloop is ready: open http://127.0.0.1:"):
                    url = line.removeprefix("voxloop is ready: open ")
            time.sleep(0.1)
        assert url, log.read_text()
        with urllib.request.urlopen(f"{url}/readyz", timeout=5) as reply:
            assert reply.status == 200  # ready means ready
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=20)


@pytest.mark.models
def test_the_real_engine_passes_its_smoke_test():
    result = asyncio.run(asyncio.to_thread(probe_configured, Settings()))
    assert result is not None
    assert result.ok, result.message


@pytest.mark.models
def test_a_first_run_prints_only_the_result_on_stdout(tmp_path):
    """An empty model cache: the progress bars of the first assembly go to stderr, so a
    piped transcript is just the transcript."""
    env = child_env(
        **REPEATABLE_ENV,
        VOXLOOP_CACHE_DIR=str(tmp_path / "empty-cache"),
        VOXLOOP_STT__PRESET="base",
    )
    wav = tmp_path / "q.wav"

    def voxloop(*args: str) -> subprocess.CompletedProcess[str]:
        argv = [sys.executable, "-m", "voxloop", *args]
        return subprocess.run(argv, capture_output=True, text=True, timeout=300, env=env)

    assert voxloop("say", "What is the capital of France?", "-o", str(wav)).returncode == 0
    heard = voxloop("transcribe", str(wav))
    assert heard.returncode == 0, heard.stderr
    assert "assembling whisper-base" in heard.stderr  # it was a first run
    assert len(heard.stdout.splitlines()) == 1
    assert wer("What is the capital of France?", heard.stdout) <= 0.15, heard.stdout


def test_a_killed_probe_is_not_blamed_on_the_build(tmp_path):
    child = [sys.executable, "-c", "import os, signal; os.kill(os.getpid(), signal.SIGKILL)"]
    result = probe_llm(tmp_path / "model.gguf", command=child)
    assert not result.ok
    assert "killed (SIGKILL); out of memory?" in result.message
    assert "rebuild" not in result.message


def test_a_child_that_fails_after_saying_who_it_is_reports_its_error(tmp_path):
    code = 'import sys; print(\'{"engine": "0.3.16"}\'); sys.exit("no memory for the context")'
    result = probe_llm(tmp_path / "model.gguf", command=[sys.executable, "-c", code])
    assert (result.ok, result.message) == (
        False,
        "the LLM smoke test failed (exit 1): no memory for the context",
    )


def test_localhost_is_served_on_ipv4_as_before():
    sock = listen("localhost", 0)
    try:
        assert sock.family == socket.AF_INET
    finally:
        sock.close()
