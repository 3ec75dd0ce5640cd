"""Map provider names from config to lazily imported classes, and keep one instance each.

Importing a provider module is what pulls in heavy optional dependencies (onnxruntime,
CTranslate2, llama.cpp), so nothing is imported until a provider is actually asked for.
`ProviderPool` then keeps one instance per (stage, name): every session of the process
shares the loaded models.
"""

from __future__ import annotations

import importlib
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from voxloop.errors import MissingDependencyError, UnknownProviderError

if TYPE_CHECKING:
    from voxloop.config.settings import Settings
    from voxloop.providers.base import Provider

Stage = Literal["vad", "stt", "llm", "tts", "turn"]
STAGES: tuple[Stage, ...] = ("vad", "stt", "llm", "tts", "turn")
# Each stage's settings section; "turns" already holds the turn-taking timings.
SECTIONS: dict[Stage, str] = {**{s: s for s in STAGES}, "turn": "turn_judge"}


@dataclass(frozen=True)
class Entry:
    target: str  # "package.module:ClassName"
    extra: str | None = None  # the pip extra that brings its dependencies


_FAKES = "voxloop.testing.fakes"
BUILTIN: dict[Stage, dict[str, Entry]] = {
    "vad": {
        "silero": Entry("voxloop.providers.local.silero_vad:SileroVAD", "local"),
        "fake": Entry(f"{_FAKES}:FakeVAD"),
    },
    "stt": {
        "whisper": Entry("voxloop.providers.local.whisper_stt:WhisperSTT", "local"),
        "openai": Entry("voxloop.providers.cloud.openai_audio:OpenAISTT", "cloud"),
        "deepgram": Entry("voxloop.providers.cloud.deepgram_listen:DeepgramSTT", "cloud"),
        "wyoming": Entry("voxloop.providers.remote.wyoming:WyomingSTT"),
        "fake": Entry(f"{_FAKES}:FakeSTT"),
    },
    "llm": {
        "llama": Entry("voxloop.providers.local.llama_llm:LlamaLLM", "local"),
        "openai": Entry("voxloop.providers.cloud.openai_llm:OpenAICompatibleLLM", "cloud"),
        "anthropic": Entry("voxloop.providers.cloud.anthropic_llm:AnthropicLLM", "cloud"),
        "fake": Entry(f"{_FAKES}:FakeLLM"),
    },
    "tts": {
        "piper": Entry("voxloop.providers.local.piper_tts:PiperTTS", "local"),
        "openai": Entry("voxloop.providers.cloud.openai_audio:OpenAITTS", "cloud"),
        "deepgram": Entry("voxloop.providers.cloud.deepgram:DeepgramTTS", "cloud"),
        "elevenlabs": Entry("voxloop.providers.cloud.elevenlabs:ElevenLabsTTS", "cloud"),
        "wyoming": Entry("voxloop.providers.remote.wyoming:WyomingTTS"),
        "fake": Entry(f"{_FAKES}:FakeTTS"),
    },
    "turn": {
        "smart-turn": Entry("voxloop.providers.local.smart_turn:SmartTurnJudge", "local"),
        "fake": Entry(f"{_FAKES}:FakeTurnJudge"),
    },
}


@dataclass
class Registry:
    """Names → classes. Build your own (e.g. with fakes) instead of patching a global."""

    entries: dict[Stage, dict[str, Entry]] = field(
        default_factory=lambda: {stage: dict(names) for stage, names in BUILTIN.items()}
    )

    def register(self, stage: Stage, name: str, target: str, extra: str | None = None) -> None:
        self.entries[stage][name] = Entry(target, extra)

    def names(self, stage: Stage) -> list[str]:
        return sorted(self.entries[stage])

    def resolve(self, stage: Stage, name: str) -> type[Provider]:
        """A registered name, or a dotted "package.module:Class" for your own provider."""
        if ":" in name and name not in self.entries[stage]:
            entry = Entry(name)
        else:
            entry = self._lookup(stage, name)
        return _import(stage, name, entry)

    def _lookup(self, stage: Stage, name: str) -> Entry:
        try:
            return self.entries[stage][name]
        except KeyError:
            known = ", ".join(self.names(stage)) or "none"
            raise UnknownProviderError(
                f"unknown {stage.upper()} provider {name!r}; known: {known}"
            ) from None


def _import(stage: Stage, name: str, entry: Entry) -> type[Provider]:
    module_name, _, class_name = entry.target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        hint = f"pip install 'voxloop[{entry.extra}]'" if entry.extra else "pip install it"
        raise MissingDependencyError(
            f"{stage.upper()} provider {name!r} needs the module {exc.name!r}, which is not "
            f"installed; install it with: {hint}"
        ) from None
    try:
        return getattr(module, class_name)
    except AttributeError:
        raise UnknownProviderError(
            f"{stage.upper()} provider {name!r}: {module_name} has no class {class_name!r}"
        ) from None


@dataclass
class Loaded:
    provider: Provider
    load_s: float


class ProviderPool:
    """One instance per (stage, provider name) for the whole process, built on first use."""

    def __init__(self, settings: Settings, registry: Registry | None = None) -> None:
        self.settings = settings
        self.registry = registry or Registry()
        self._loaded: dict[tuple[Stage, str], Loaded] = {}
        self._lock = threading.Lock()
        self._chains: dict[Stage, Provider] = {}

    def section(self, stage: Stage) -> Any:
        """The stage's settings section (`settings.turn_judge` for "turn")."""
        return getattr(self.settings, SECTIONS[stage])

    def name_for(self, stage: Stage) -> str:
        return self.section(stage).provider

    def get(self, stage: Stage) -> Provider:
        """The stage's provider; with `<stage>.fallback` set, the whole chain."""
        primary = self.load(stage).provider
        fallback = getattr(self.section(stage), "fallback", None) or []
        if not fallback:
            return primary
        if stage not in self._chains:
            from voxloop.providers import fallback as chains

            kind = {"llm": chains.FallbackLLM, "stt": chains.FallbackSTT, "tts": chains.FallbackTTS}
            others = [self._load(stage, name).provider for name in fallback]
            self._chains[stage] = kind[stage]([primary, *others])  # type: ignore[index,list-item]
        return self._chains[stage]

    def load(self, stage: Stage) -> Loaded:
        return self._load(stage, self.name_for(stage))

    def _load(self, stage: Stage, name: str) -> Loaded:
        key = (stage, name)
        with self._lock:
            if key not in self._loaded:
                cls = self.registry.resolve(stage, name)
                started = time.perf_counter()
                provider = cls.from_settings(self.settings)
                self._loaded[key] = Loaded(provider, time.perf_counter() - started)
            return self._loaded[key]

    def close(self) -> None:
        with self._lock:
            for loaded in self._loaded.values():
                loaded.provider.close()
            self._loaded.clear()
