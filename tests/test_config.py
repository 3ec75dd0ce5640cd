import json

import pytest
from pydantic import SecretStr
from typer.testing import CliRunner

from voxloop.cli import app
from voxloop.config.settings import ConfigError, Settings, load_settings, masked_dump


def test_defaults_are_the_embedded_stack():
    s = Settings()
    assert (s.vad.provider, s.stt.provider, s.llm.provider, s.tts.provider) == (
        "silero",
        "whisper",
        "llama",
        "piper",
    )


def test_env_overrides_nested_values(monkeypatch):
    monkeypatch.setenv("VOXLOOP_LLM__PRESET", "tiny")
    monkeypatch.setenv("VOXLOOP_SERVER__PORT", "9123")
    s = load_settings()
    assert s.llm.preset == "tiny"
    assert s.server.port == 9123


def test_toml_file_is_read_and_env_wins(tmp_path, monkeypatch):
    path = tmp_path / "vx.toml"
    path.write_text('[llm]\npreset = "tiny"\nmax_tokens = 42\n[server]\nport = 8111\n')
    monkeypatch.setenv("VOXLOOP_CONFIG", str(path))
    monkeypatch.setenv("VOXLOOP_SERVER__PORT", "8222")
    s = load_settings()
    assert s.llm.preset == "tiny"
    assert s.llm.max_tokens == 42
    assert s.server.port == 8222


def test_dotenv_file_is_read(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".env").write_text("VOXLOOP_LOG_LEVEL=DEBUG\n")
    assert load_settings().log_level == "DEBUG"


def test_invalid_value_is_one_readable_error(monkeypatch):
    monkeypatch.setenv("VOXLOOP_LLM__PRESET", "huge")
    with pytest.raises(ConfigError, match=r"llm\.preset"):
        load_settings()


def test_missing_config_file_is_named(monkeypatch, tmp_path):
    monkeypatch.setenv("VOXLOOP_CONFIG", str(tmp_path / "missing.toml"))
    with pytest.raises(ConfigError, match=r"missing\.toml: no such config file"):
        load_settings()


def test_broken_toml_is_a_config_error(monkeypatch, tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text("[llm\npreset = ")
    monkeypatch.setenv("VOXLOOP_CONFIG", str(path))
    with pytest.raises(ConfigError, match="invalid settings"):
        load_settings()


def test_secrets_are_masked():
    s = Settings(llm={"api_key": SecretStr("sk-very-secret")})
    dumped = masked_dump(s)
    assert dumped["llm"]["api_key"] == "***"
    assert "sk-very-secret" not in json.dumps(dumped)


def test_config_command_prints_masked_json(monkeypatch):
    monkeypatch.setenv("VOXLOOP_LLM__API_KEY", "sk-from-env")
    result = CliRunner().invoke(app, ["config"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["llm"]["api_key"] == "***"
    assert "sk-from-env" not in result.output


def test_config_command_reports_bad_settings(monkeypatch):
    monkeypatch.setenv("VOXLOOP_SERVER__PORT", "not-a-port")
    result = CliRunner().invoke(app, ["config"])
    assert result.exit_code == 1
    assert "server.port" in result.output
