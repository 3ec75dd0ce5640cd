"""One typed settings tree for the whole server.

Sources, strongest first: keyword arguments, environment (`VOXLOOP_*`, nested with `__`,
e.g. `VOXLOOP_LLM__PRESET=tiny`), a `.env` file, an optional TOML file, then defaults.
The TOML file is `voxloop.toml` in the working directory, or whatever `VOXLOOP_CONFIG`
names. Nothing here is a module-level singleton: callers build a `Settings` and pass it on,
so tests just construct their own.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, SecretStr
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from voxloop.config.models import (
    LLMSettings,
    STTSettings,
    TTSSettings,
    TurnJudgeSettings,
    VADSettings,
)
from voxloop.config.reply import ReplySettings, SafetySettings
from voxloop.config.server import AuthSettings, LimitSettings, ServerSettings, TwilioSettings
from voxloop.config.turns import TurnSettings

CONFIG_ENV = "VOXLOOP_CONFIG"
CACHE_ENV = "VOXLOOP_CACHE_DIR"
DEFAULT_CONFIG_FILE = "voxloop.toml"


class SessionSettings(BaseModel):
    mode: Literal["streaming", "sequential"] = Field(
        "streaming",
        description="sequential is the naive baseline: whole transcript, whole answer, then TTS",
    )
    output_lead_s: float = Field(
        0.6, ge=0.05, le=30.0, description="how far audio is sent ahead of playback"
    )
    synth_ahead: int = Field(2, ge=1, le=8, description="sentences synthesized concurrently")
    early_first_clause: bool = Field(True, description="speak the first clause before the period")
    memory_tokens: int = Field(
        1200,
        ge=0,
        le=100_000,
        description="history the LLM sees, in (estimated) tokens; older turns are summarized",
    )
    summarize: bool = Field(True, description="summarize turns that leave the memory window")
    apology: str = Field(
        "Sorry, something went wrong on my side. Could you say that again?",
        description='said when a turn fails before any answer ("" to stay silent)',
    )
    hold_line: str = Field(
        "One moment, please.",
        description="said when the shared LLM keeps a reply waiting in its queue for "
        'hold_line_after_s ("" for none; the client gets a "queued" status either way)',
    )
    hold_line_after_s: float = Field(2.0, ge=0.0, le=30.0)
    llm_queue_timeout_s: float = Field(
        120.0,
        gt=0,
        le=3600,
        description="the longest a reply waits in a shared LLM's queue before it fails; "
        "the wait does not count against llm.timeout_s",
    )


class PersonaSettings(BaseModel):
    """The default persona. A persona file (TOML or YAML, same keys) overrides it; clients
    can pick another file by name from `dir` in their `start` message."""

    file: Path | None = Field(None, description="a persona file (.toml, .yaml or .yml)")
    dir: Path | None = Field(None, description="named personas: <dir>/<name>.toml|.yaml")
    name: str = "voxloop"
    style: str = Field("friendly and brief", description="how it speaks, in a few words")
    system_prompt: str | None = Field(
        None, description="the persona's instructions; default: llm.system_prompt"
    )
    greeting: str | None = Field(None, description="said once when a new session starts")


class ToolSettings(BaseModel):
    enabled: bool = Field(True, description="offer tools to an LLM that can call them")
    tavily_api_key: SecretStr | None = Field(
        None, description="turns on the web_search tool (Tavily); never logged"
    )
    tavily_url: str | None = Field(None, description="Tavily's API; default: api.tavily.com")
    filler: str = Field("One moment.", description='said when tools are slow ("" for none)')
    filler_after_s: float = Field(0.6, ge=0.0, le=10.0, description="what 'slow' means")


class StoreSettings(BaseModel):
    backend: Literal["sqlite", "memory"] = Field(
        "sqlite", description="where conversations live (Redis instead when redis_url is set)"
    )
    path: Path | None = Field(
        None, description="SQLite file; default: conversations.db in the user data dir"
    )
    retention_days: float = Field(
        30.0, ge=0.0, description="conversations untouched this long are deleted (0: never)"
    )
    session_ttl_s: float = Field(
        86_400.0, ge=1.0, description="Redis mode: a session's keys expire after this idle time"
    )


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="VOXLOOP_",
        env_nested_delimiter="__",
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
    )

    cache_dir: Path | None = Field(
        None, description="where assembled model files live; default: the user cache dir"
    )
    log_level: str = "INFO"
    redis_url: SecretStr | None = Field(
        None,
        description="redis://host:port/db: sessions, history and event queues live in Redis, "
        "so several workers or hosts can share them",
    )
    vad: VADSettings = VADSettings()
    stt: STTSettings = STTSettings()
    llm: LLMSettings = LLMSettings()
    tts: TTSSettings = TTSSettings()
    turn_judge: TurnJudgeSettings = TurnJudgeSettings()
    turns: TurnSettings = TurnSettings()
    session: SessionSettings = SessionSettings()
    server: ServerSettings = ServerSettings()
    persona: PersonaSettings = PersonaSettings()
    store: StoreSettings = StoreSettings()
    tools: ToolSettings = ToolSettings()
    twilio: TwilioSettings = TwilioSettings()
    auth: AuthSettings = AuthSettings()
    limits: LimitSettings = LimitSettings()
    reply: ReplySettings = ReplySettings()
    safety: SafetySettings = SafetySettings()
    ws_profile: Literal["voxloop", "realtime-ai"] = Field(
        "voxloop", description="the protocol /ws speaks when the URL names none (?profile=)"
    )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        toml_path = _toml_path()
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings, dotenv_settings]
        if toml_path is not None:
            try:
                sources.append(TomlConfigSettingsSource(settings_cls, toml_file=toml_path))
            except ValueError as exc:  # a TOML syntax error: say in which file
                raise ConfigError(f"{toml_path}: {exc}") from None
        return tuple(sources)

    def resolved_store_path(self) -> Path:
        if self.store.path is not None:
            return self.store.path
        from platformdirs import user_data_dir

        return Path(user_data_dir("voxloop")) / "conversations.db"

    def resolved_cache_dir(self) -> Path:
        if self.cache_dir is not None:
            return self.cache_dir
        from platformdirs import user_cache_dir

        return Path(user_cache_dir("voxloop"))


class ConfigError(ValueError):
    """A settings problem the user can fix; the message says how."""


def check_config_file(path: Path, named_by: str) -> None:
    """A `ConfigError` unless `path` is a readable file; `named_by` is where the user gave
    it (`VOXLOOP_CONFIG=...`, `--config ...`), so that the message points there."""
    try:
        found = path.is_file()
        exists = found or path.exists()
    except OSError as exc:  # e.g. a name too long for the file system
        raise ConfigError(f"{named_by}: cannot open ({exc.strerror})") from None
    if not exists:
        raise ConfigError(f"{named_by}: no such config file")
    if not found:
        raise ConfigError(f"{named_by}: not a file")


def _toml_path() -> Path | None:
    named = os.environ.get(CONFIG_ENV)
    if named:
        path = Path(named)
        check_config_file(path, f"{CONFIG_ENV}={named}")
        return path
    default = Path(DEFAULT_CONFIG_FILE)
    return default if default.is_file() else None


def load_settings(**overrides: Any) -> Settings:
    """Build settings from every source, turning validation noise into one readable error."""
    from pydantic import ValidationError

    try:
        return Settings(**overrides)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors()
        )
        raise ConfigError(f"invalid settings: {problems}") from None
    except ValueError as exc:  # e.g. a TOML syntax error
        raise ConfigError(f"invalid settings: {exc}") from None
    except RecursionError:  # TOML arrays or JSON in an env var nested beyond the parser
        raise ConfigError("invalid settings: a value is nested too deeply") from None


def reveal(secret: SecretStr | None) -> str | None:
    """A secret's value, for the one place that sends it (never for logs)."""
    return secret.get_secret_value() if secret is not None else None


def masked_dump(settings: Settings) -> dict[str, Any]:
    """The effective settings as plain data, with every secret replaced by '***'."""

    def walk(value: Any) -> Any:
        if isinstance(value, SecretStr):
            return "***" if value.get_secret_value() else ""
        if isinstance(value, BaseModel):
            return {k: walk(getattr(value, k)) for k in type(value).model_fields}
        if isinstance(value, Path):
            return str(value)
        if isinstance(value, list | tuple):
            return [walk(v) for v in value]
        return value

    return walk(settings)
