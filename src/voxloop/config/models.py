"""The models' part of the settings tree: VAD, STT, LLM, TTS and the end-of-turn judge
(`VOXLOOP_VAD__*`, `VOXLOOP_STT__*`, ...)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, SecretStr

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
    n_ctx: int = Field(2048, ge=256, description="llama: the context of one conversation")
    parallel: int = Field(
        4,
        ge=1,
        le=16,
        description="llama: conversations decoded together in one batch, each with its own "
        "cache (1: one at a time, as with a fixed seed); each costs n_ctx of KV cache",
    )
    threads: int = Field(2, ge=1)
    cpu_backend: str = Field(
        "auto",
        pattern=r"^[a-z0-9]+$",
        description="llama: which of the build's CPU variants runs the model (auto: the "
        "best this CPU runs, short of AMX, which decodes slower here; or a name such as "
        "haswell, icelake, sapphirerapids)",
    )
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
