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

from voxloop.reply_settings import ReplySettings, SafetySettings
from voxloop.server_settings import AuthSettings, LimitSettings, ServerSettings, TwilioSettings

CONFIG_ENV = "VOXLOOP_CONFIG"
CACHE_ENV = "VOXLOOP_CACHE_DIR"
DEFAULT_CONFIG_FILE = "voxloop.toml"
CLOUD_TTS_RATE = 24000  # what a remote TTS is asked for when tts.sample_rate is not set


class VADSettings(BaseModel):
    provider: str = "silero"
    threshold: float = Field(0.5, ge=0.0, le=1.0, description="speech probability threshold")
    model_path: Path | None = Field(None, description="override the packaged Silero ONNX file")


class STTSettings(BaseModel):
    provider: str = "whisper"
    preset: Literal["tiny.en", "base"] = Field(
        "tiny.en", description="packaged Whisper model; base is slower and more accurate"
    )
    model_path: Path | None = Field(
        None, description="any CTranslate2 Whisper directory; overrides the preset"
    )
    compute_type: str = "int8"
    language: str | None = "en"
    beam_size: int = Field(1, ge=1, le=10)
    threads: int = Field(2, ge=1)
    partial_interval_s: float = Field(
        1.0, ge=0.2, le=10.0, description="how often partial transcripts are decoded"
    )
    short_window: bool = Field(
        False,
        description="encode only the utterance, not the standard 30 s window: 5x faster, "
        "but on real speech it repeats short words and drops phrases (WER 0.23 against "
        "0.06 in docs/benchmarks.md); off by default",
    )
    model: str | None = Field(None, description="remote STT: the model name")
    base_url: str | None = Field(None, description="remote STT: the endpoint")
    api_key: SecretStr | None = Field(None, description="remote STT; never logged")
    timeout_s: float = Field(
        10.0,
        gt=0,
        le=120,
        description="remote STT: longest wait per try; any STT: a hang ends the turn "
        "(local models: after at least 30 s)",
    )
    retries: int = Field(2, ge=0, le=10, description="remote STT: retries on 429/5xx/resets")
    endpointing_ms: int = Field(
        300,
        ge=10,
        le=5000,
        description="streaming remote STT (deepgram): silence that ends a phrase",
    )
    replay_s: float = Field(
        5.0,
        ge=0.5,
        le=30.0,
        description="streaming remote STT: audio kept and replayed when the connection drops",
    )
    fallback: list[str] = Field(
        default_factory=list,
        description='STT providers tried in order when the main one fails, e.g. ["whisper"]',
    )


class LLMSettings(BaseModel):
    provider: str = "llama"
    preset: Literal["default", "fast", "tiny"] = Field(
        "default",
        description="default: Qwen2.5-Coder-1.5B-Instruct; fast: Qwen2.5-Coder-0.5B-Instruct "
        "(extra `fast`: half the first-token time, 73 % right instead of 88 %); tiny: "
        "SmolLM2-135M (fast tests only)",
    )
    model_path: Path | None = Field(None, description="any GGUF file; overrides the preset")
    n_ctx: int = Field(2048, ge=256)
    threads: int = Field(2, ge=1)
    max_tokens: int = Field(256, ge=1, le=4096, description="the cap on a reply's length")
    temperature: float = Field(0.3, ge=0.0, le=2.0)
    repeat_penalty: float = Field(
        1.1,
        ge=1.0,
        le=2.0,
        description="llama: makes tokens said in the last 64 less likely (1.0: off); the "
        "reply guards end whatever loops remain",
    )
    seed: int | None = Field(
        None,
        ge=0,
        le=2**31 - 1,
        description="llama: a fixed sampling seed, so the same prompt gets the same reply "
        "(tests, demos; the prompt is then evaluated afresh each turn); none: a new seed "
        "each time",
    )
    system_prompt: str = (
        "You are a voice assistant talking with a user. Reply to the user's last message "
        "directly: the answer first, in one to three short spoken sentences. When asked to "
        "translate, spell, count or repeat something, just do it. If you are not sure of a "
        "fact, say so. What the user tells you about themselves (their name, family, pets, "
        "plans, likes) is about them, not you: remember it and use it."
    )
    api_key: SecretStr | None = Field(None, description="for cloud adapters; never logged")
    base_url: str | None = Field(
        None,
        description="remote LLMs: the endpoint (openai: any compatible one; default: the "
        "vendor's own)",
    )
    model: str | None = Field(
        None, description="remote LLMs: the model (default: gpt-4o-mini / claude-haiku-4-5)"
    )
    timeout_s: float = Field(
        8.0,
        gt=0,
        le=120,
        description="remote LLMs: longest wait for the first/next token per try; any LLM: "
        "a hang ends the turn (local models: after at least 30 s)",
    )
    retries: int = Field(2, ge=0, le=10, description="remote LLMs: retries on 429/5xx/resets")
    fallback: list[str] = Field(
        default_factory=list,
        description='providers tried in order when the main one fails, e.g. ["llama"]',
    )
    local_tools: bool = Field(
        False,
        description="llama: offer tools to the local model (unreliable at 0.5B; see docs)",
    )


class TTSSettings(BaseModel):
    provider: str = "piper"
    voice_path: Path | None = Field(
        None, description="a Piper .onnx voice; default: the packaged en_US-joe-medium"
    )
    speed: float = Field(1.0, gt=0.1, le=4.0, description="1.0 is normal speed")
    variation: float = Field(
        1.0,
        ge=0.0,
        le=2.0,
        description="piper: how much the voice varies between syntheses of the same text "
        "(1.0: the voice's own; 0: the same audio every time)",
    )
    voice: str | None = Field(None, description="remote TTS: the voice name")
    model: str | None = Field(None, description="remote TTS: the model name")
    base_url: str | None = Field(None, description="remote TTS: the endpoint")
    api_key: SecretStr | None = Field(None, description="remote TTS; never logged")
    timeout_s: float = Field(
        10.0,
        gt=0,
        le=120,
        description="remote TTS: first-audio wait per try; any TTS: a hang ends the "
        "sentence (local models: after at least 30 s)",
    )
    retries: int = Field(2, ge=0, le=10, description="remote TTS: retries on 429/5xx/resets")
    sample_rate: int | None = Field(
        None,
        gt=0,
        description="remote TTS (deepgram, elevenlabs): the PCM rate asked for; null: "
        f"{CLOUD_TTS_RATE}. A local Piper voice always speaks at its own rate (22,050 Hz "
        "for the packaged one)",
    )
    fallback: list[str] = Field(
        default_factory=list,
        description='TTS providers tried in order when the main one fails, e.g. ["piper"]',
    )


class TurnJudgeSettings(BaseModel):
    """The learned end-of-turn judge (`VOXLOOP_TURN_JUDGE__*`); `turns` has the timings."""

    provider: str = "smart-turn"
    model_path: Path | None = Field(
        None,
        description="a Smart Turn v3 .onnx file to use instead of the one fetched from the "
        "registry (pipecat-ai's wheel): for air-gapped machines",
    )
    threads: int = Field(1, ge=1, description="onnxruntime threads per judgement")


class TurnSettings(BaseModel):
    end_of_turn_silence_s: float = Field(
        0.5, ge=0.1, le=5.0, description="silence after speech that ends the user's turn"
    )
    min_speech_s: float = Field(0.15, ge=0.0, le=2.0, description="shortest speech that counts")
    barge_in: bool = Field(True, description="let the user interrupt the agent by talking")
    barge_in_min_speech_s: float = Field(
        0.15,
        ge=0.0,
        le=3.0,
        description="speech over the agent that stops its audio (see turns.interruption)",
    )
    interruption: Literal["words", "vad"] = Field(
        "words",
        description="words: the agent pauses at once when the user speaks over it, and "
        "stops only for a word that is neither a backchannel nor its own echo (otherwise "
        "it resumes); vad: any speech stops it",
    )
    interruption_words_after_s: float = Field(
        0.0,
        ge=0.0,
        le=3.0,
        description="speech heard over the agent before its words are first checked "
        "(sooner if the user stops); 0: at once. More misreads less, but the agent stays "
        "paused longer for a backchannel and a real interruption is cancelled later",
    )
    interruption_check_s: float = Field(
        0.25, ge=0.05, le=2.0, description="how often paused-for speech is transcribed"
    )
    false_interruption_timeout_s: float = Field(
        1.5,
        ge=0.1,
        le=10.0,
        description="the agent resumes if speech over it yields no words for this long",
    )
    preroll_s: float = Field(0.3, ge=0.0, le=2.0, description="audio kept before speech start")
    echo_suppression: bool = Field(
        False,
        description="ignore microphone sound that the agent's own recent audio explains "
        "(speakerphone echo), so the agent does not interrupt itself. Off by default: "
        "on the live server it still slows genuine barge-in (docs/benchmarks.md)",
    )
    unfinished_silence_s: float = Field(
        1.2,
        ge=0.1,
        le=5.0,
        description="end-of-turn silence when the words so far sound unfinished "
        '("a table for...", a number being read out)',
    )
    question_silence_s: float = Field(
        0.35,
        ge=0.1,
        le=5.0,
        description="end-of-turn silence after a complete question (it ends sooner)",
    )
    finished_silence_s: float = Field(
        0.4,
        ge=0.1,
        le=5.0,
        description="end-of-turn silence after a complete-sounding statement",
    )
    speculative_silence_s: float = Field(
        0.15,
        ge=0.0,
        le=5.0,
        description="pause after which the reply is prepared (and held back) in case the "
        "turn is over; 0 turns speculation off",
    )
    end_of_turn: Literal["silence", "words", "judge", "combined"] = Field(
        "combined",
        description="how a pause becomes the end of the turn (turns/endpoint.py): silence "
        "(a fixed end_of_turn_silence_s), words (the word rules), judge (the learned "
        "end-of-turn model, turn_judge) or combined (the model, vetoed by unfinished words, "
        "with complete questions ending soon)",
    )
    complete_probability: float = Field(
        0.5,
        ge=0.0,
        le=1.0,
        description="the end-of-turn model's probability at which the turn is over at once",
    )
    max_silence_s: float = Field(
        1.0,
        ge=0.2,
        le=5.0,
        description="judge and combined: the silence that ends any turn the model and the "
        "words did not end sooner",
    )
    long_speech_s: float = Field(
        6.0,
        ge=0.5,
        le=60.0,
        description="combined: after this much speech in one utterance the user is reading "
        "or telling something, and only long_silence_s (or a question) ends the turn",
    )
    long_silence_s: float = Field(
        1.2, ge=0.2, le=5.0, description="combined: the silence that ends a long utterance"
    )
    continuation: bool = Field(
        True,
        description="speech that starts before the agent's reply is heard continues the "
        "turn: the reply is withdrawn and the words are answered together (turn_continued)",
    )
    continuation_window_s: float = Field(
        2.5,
        ge=0.0,
        le=10.0,
        description="continuation: the latest start, after the turn ended, that still "
        "continues it (if the agent has not spoken by then)",
    )


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
