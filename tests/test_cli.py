"""The CLI with fake providers: plain exit codes and one-line errors."""

import numpy as np
import pytest
from typer.testing import CliRunner

from voxloop.audio import read_audio, write_wav
from voxloop.cli import app
from voxloop.config import Settings
from voxloop.doctor import PHRASE, run_checks
from voxloop.providers.base import ProviderInfo, TTSProvider
from voxloop.providers.registry import ProviderPool, Registry
from voxloop.testing.fakes import FakeSTT

runner = CliRunner()


@pytest.fixture
def fakes(monkeypatch):
    for stage in ("vad", "stt", "llm", "tts"):
        monkeypatch.setenv(f"VOXLOOP_{stage.upper()}__PROVIDER", "fake")


@pytest.mark.parametrize(
    "command", ["serve", "doctor", "transcribe", "say", "ask", "config", "talk"]
)
def test_every_command_has_help(command):
    result = runner.invoke(app, [command, "--help"])
    assert result.exit_code == 0
    assert "Usage" in result.output


def test_ask_streams_the_reply(fakes):
    result = runner.invoke(app, ["ask", "hello there"])
    assert result.exit_code == 0, result.output
    assert result.output.strip() == "You said: hello there"


def test_say_writes_a_wav(fakes, tmp_path):
    out = tmp_path / "x.wav"
    result = runner.invoke(app, ["say", "Hello world.", "-o", str(out)])
    assert result.exit_code == 0, result.output
    audio, rate = read_audio(out)
    assert rate == 16000
    assert len(audio) > 1000


def test_say_rejects_empty_text(fakes, tmp_path):
    result = runner.invoke(app, ["say", "  ", "-o", str(tmp_path / "x.wav")])
    assert result.exit_code == 1
    assert "TEXT is empty" in result.output


def test_transcribe_prints_text_and_json(fakes, tmp_path):
    path = tmp_path / "in.wav"
    write_wav(path, np.zeros(16000, dtype=np.int16), 16000)
    plain = runner.invoke(app, ["transcribe", str(path)])
    assert plain.exit_code == 0, plain.output
    assert plain.output.strip() == "fake transcript of 1.0 seconds"
    as_json = runner.invoke(app, ["transcribe", str(path), "--json"])
    assert as_json.exit_code == 0
    assert '"duration_s": 1.0' in as_json.output
    assert '"segments"' in as_json.output


def test_transcribe_corrupt_file_is_one_line_and_exit_1(fakes, tmp_path):
    path = tmp_path / "broken.wav"
    path.write_bytes(b"definitely not audio")
    result = runner.invoke(app, ["transcribe", str(path)])
    assert result.exit_code == 1
    assert "broken.wav: cannot decode audio" in result.output
    assert "Traceback" not in result.output


def test_transcribe_unsupported_type(fakes, tmp_path):
    path = tmp_path / "a.txt"
    path.write_text("x")
    result = runner.invoke(app, ["transcribe", str(path)])
    assert result.exit_code == 1
    assert "unsupported audio type" in result.output


def test_unknown_provider_lists_the_known_ones(monkeypatch, tmp_path):
    monkeypatch.setenv("VOXLOOP_LLM__PROVIDER", "gpt-17")
    result = runner.invoke(app, ["ask", "hi"])
    assert result.exit_code == 1
    assert "unknown LLM provider 'gpt-17'; known: anthropic, fake, llama, openai" in result.output


def test_missing_arguments_are_usage_errors():
    assert runner.invoke(app, ["transcribe"]).exit_code == 2


class PhraseSTT(FakeSTT):
    """A fake STT that 'hears' the doctor's phrase, so every smoke test can pass."""

    def __init__(self) -> None:
        super().__init__(script=[PHRASE])


class BrokenTTS(TTSProvider):
    name = "broken"

    def __init__(self) -> None:
        raise RuntimeError("weights on fire")

    def info(self) -> ProviderInfo:  # pragma: no cover - never constructed
        raise AssertionError

    async def synthesize(self, text):  # pragma: no cover - never constructed
        yield


def _pool(**providers: str) -> ProviderPool:
    registry = Registry()
    registry.register("stt", "phrase", f"{__name__}:PhraseSTT")
    registry.register("tts", "broken", f"{__name__}:BrokenTTS")
    settings = Settings(**{k: {"provider": v} for k, v in providers.items()})
    return ProviderPool(settings, registry)


async def test_doctor_passes_when_every_smoke_test_passes():
    results = await run_checks(_pool(vad="fake", stt="phrase", llm="fake", tts="fake"))
    assert [r.stage for r in results] == ["vad", "stt", "llm", "tts"]
    assert all(r.ok for r in results), [(r.stage, r.smoke) for r in results]


async def test_doctor_fails_on_nonsense_and_on_load_errors():
    results = {
        r.stage: r
        for r in await run_checks(_pool(vad="fake", stt="fake", tts="broken", llm="fake"))
    }
    assert not results["tts"].ok
    assert "weights on fire" in results["tts"].smoke
    # The fake STT hears "fake transcript ..." instead of the phrase: not green.
    results = {
        r.stage: r for r in await run_checks(_pool(stt="fake", tts="fake", vad="fake", llm="fake"))
    }
    assert not results["stt"].ok


def test_doctor_command_exit_code(fakes):
    # With the plain fake STT the round trip cannot match, so the doctor must say so.
    result = runner.invoke(app, ["doctor"])
    assert result.exit_code == 1
    assert "FAIL" in result.output
