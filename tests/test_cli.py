"""The CLI with fake providers: plain exit codes and one-line errors."""

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from voxloop.audio.formats import read_audio, write_wav
from voxloop.bench.doctor import PHRASE, run_checks
from voxloop.cli import app
from voxloop.config.settings import Settings
from voxloop.providers.base import ProviderInfo, TTSProvider
from voxloop.providers.registry import ProviderPool, Registry
from voxloop.testing.fakes import FakeSTT

runner = CliRunner()


@pytest.fixture
def fakes(monkeypatch):
    for section in ("vad", "stt", "llm", "tts", "turn_judge"):
        monkeypatch.setenv(f"VOXLOOP_{section.upper()}__PROVIDER", "fake")


@pytest.mark.parametrize(
    "command", ["serve", "serve-models", "doctor", "transcribe", "say", "ask", "config", "talk"]
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
    providers = {"turn_judge": "fake", **providers}
    settings = Settings(**{k: {"provider": v} for k, v in providers.items()})
    return ProviderPool(settings, registry)


async def test_doctor_passes_when_every_smoke_test_passes():
    results = await run_checks(_pool(vad="fake", stt="phrase", llm="fake", tts="fake"))
    assert [r.stage for r in results] == ["vad", "stt", "llm", "tts", "turn"]
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


# -- rough edges a new user hits --------------------------------------------------------------


@pytest.mark.parametrize(
    ("target", "problem"),
    [
        ("missing-dir/x.wav", "the directory {tmp}/missing-dir does not exist"),
        (".", "{tmp} is a directory"),
        ("x.txt", "the output must be a .wav file"),
    ],
)
def test_say_names_what_is_wrong_with_the_output(fakes, tmp_path, target, problem):
    out = tmp_path / target if target != "." else tmp_path
    result = runner.invoke(app, ["say", "Hello.", "-o", str(out)])
    assert result.exit_code == 1
    assert problem.format(tmp=tmp_path) in result.output
    assert "System error" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)


def test_talk_checks_its_output_before_it_talks(tmp_path):
    """No server is needed to learn that the reply could never be saved."""
    path = tmp_path / "q.wav"
    write_wav(path, np.zeros(1600, dtype=np.int16), 16000)
    missing = tmp_path / "nope" / "reply.wav"
    args = ["talk", str(path), "--url", "ws://127.0.0.1:9/ws", "-o", str(missing)]
    result = runner.invoke(app, args)
    assert result.exit_code == 1
    assert f"the directory {missing.parent} does not exist" in result.output


def test_a_missing_config_file_is_blamed_on_the_option(tmp_path):
    missing = tmp_path / "nope.toml"
    result = runner.invoke(app, ["config", "-c", str(missing)])
    assert result.exit_code == 1
    assert f"--config {missing}: no such config file" in result.output
    assert "VOXLOOP_CONFIG" not in result.output


def test_a_config_file_with_a_syntax_error_is_named(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[llm\n")
    result = runner.invoke(app, ["config", "-c", str(bad)])
    assert result.exit_code == 1
    assert f"{bad}: " in result.output


def test_config_does_not_claim_a_tts_rate_the_voice_does_not_speak(fakes):
    """Piper speaks at its voice's own rate (22,050 Hz); tts.sample_rate is for cloud TTS."""
    result = runner.invoke(app, ["config"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["tts"]["sample_rate"] is None


def _commands(group, prefix=()):
    """Every command of the CLI (bench and eval included), with its path."""
    for name, command in group.commands.items():
        if hasattr(command, "commands"):  # a group (typer may vendor its own click)
            yield from _commands(command, (*prefix, name))
        else:
            yield (*prefix, name), command


def test_boolean_flags_show_as_plain_flags():
    """`--json` takes no value, so the help must not show one (typer shows `<bool>`)."""
    import typer.main

    from voxloop.bench.cli import bench_app, eval_app

    full = typer.Typer()
    full.add_typer(app, name="voxloop")
    full.add_typer(bench_app, name="bench")
    full.add_typer(eval_app, name="eval")
    flags = []
    for path, command in _commands(typer.main.get_command(full)):
        for param in command.params:
            if getattr(param, "is_flag", False) and param.name != "help":
                flags.append((path, param.opts[0]))
                help_text = runner.invoke(full, [*path, "--help"], terminal_width=200).output
                line = next(ln for ln in help_text.splitlines() if param.opts[0] + " " in ln)
                assert "<bool>" not in line and "BOOLEAN" not in line, (path, line)
    assert (("voxloop", "talk"), "--json") in flags  # the walk found the flags


def test_version_prints_the_version_and_nothing_else():
    from voxloop import __version__

    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.output == f"voxloop {__version__}\n"
