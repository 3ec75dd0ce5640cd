import pytest

from voxloop.config.settings import Settings
from voxloop.errors import MissingDependencyError, UnknownProviderError
from voxloop.providers.base import LLMProvider, ProviderInfo
from voxloop.providers.registry import STAGES, ProviderPool, Registry
from voxloop.testing.fakes import FakeLLM


class CountingLLM(LLMProvider):
    """Counts constructions, to prove the pool builds each provider once per process."""

    name = "counting"
    built = 0

    def __init__(self) -> None:
        type(self).built += 1

    def info(self) -> ProviderInfo:
        return ProviderInfo(self.name, "none")

    async def generate(self, messages, *, max_tokens=None, temperature=None):
        yield "x"


def test_unknown_provider_lists_known_names():
    with pytest.raises(UnknownProviderError) as exc:
        Registry().resolve("stt", "nope")
    assert "unknown STT provider 'nope'" in str(exc.value)
    assert "known: deepgram, fake, openai, whisper" in str(exc.value)


def test_missing_optional_dependency_names_the_extra():
    registry = Registry()
    registry.register("tts", "cloudy", "voxloop_no_such_module.tts:Cloudy", extra="cloud")
    with pytest.raises(MissingDependencyError) as exc:
        registry.resolve("tts", "cloudy")
    message = str(exc.value)
    assert "voxloop_no_such_module" in message
    assert "pip install 'voxloop[cloud]'" in message


def test_dotted_path_names_any_class():
    assert Registry().resolve("llm", "voxloop.testing.fakes:FakeLLM") is FakeLLM


def test_dotted_path_with_wrong_class_is_clear():
    with pytest.raises(UnknownProviderError, match="has no class 'Nope'"):
        Registry().resolve("llm", "voxloop.testing.fakes:Nope")


def test_registry_imports_nothing_heavy_until_asked():
    # In a fresh interpreter: resolving a fake must not pull in any inference engine.
    import subprocess
    import sys

    code = (
        "import sys; from voxloop.providers.registry import Registry; "
        "Registry().resolve('vad', 'fake'); Registry().resolve('llm', 'fake'); "
        "heavy = [m for m in ('onnxruntime', 'llama_cpp', 'faster_whisper', 'piper') "
        "if m in sys.modules]; print(heavy)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
    assert Registry().names("llm") == ["anthropic", "fake", "llama", "openai"]


def test_pool_builds_each_provider_once():
    registry = Registry()
    registry.register("llm", "counting", f"{__name__}:CountingLLM")
    pool = ProviderPool(Settings(llm={"provider": "counting"}), registry)
    CountingLLM.built = 0
    first = pool.get("llm")
    assert pool.get("llm") is first
    assert CountingLLM.built == 1
    assert pool.load("llm").load_s >= 0


def test_every_stage_has_a_fake_and_a_settings_section(monkeypatch):
    monkeypatch.delenv("VOXLOOP_TURN_JUDGE__PROVIDER")  # conftest's; the default is asked
    pool = ProviderPool(Settings(turn_judge={"provider": "fake"}))
    for stage in STAGES:
        assert "fake" in Registry().names(stage), stage
        assert pool.name_for(stage), stage
    assert pool.name_for("turn") == "fake"  # from settings.turn_judge ("turns": the timings)
    assert ProviderPool(Settings()).name_for("turn") == "smart-turn"
    assert Registry().names("turn") == ["fake", "smart-turn"]
