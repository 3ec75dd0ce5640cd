"""Spoken questions for the benchmarks, synthesized with the project's own TTS and cached."""

from __future__ import annotations

import asyncio
import hashlib
from pathlib import Path

import numpy as np

from voxloop.audio.formats import float_to_pcm16, read_audio, write_wav
from voxloop.audio.resample import resample

# Distinct questions of about 1 to 6 seconds when spoken.
QUESTIONS = [
    "What is the capital of France?",
    "How many legs does a spider have?",
    "Tell me a joke about computers.",
    "Why is the sky blue?",
    "What time is it in Tokyo when it is noon in London?",
    "Can you recommend a good book to read on holiday?",
    "Please give me a simple recipe for pancakes.",
    "Who wrote the play Romeo and Juliet?",
    "What is the difference between weather and climate?",
    "I am planning a trip to Italy next spring, where should I go first?",
    "How do I make my morning coffee taste better?",
    "Hello there!",
]

LONG_ANSWER = "Tell me a long story about a brave little dragon who learns to fly."
INTERRUPTION = "Wait, stop, that is enough."


class _Voice:
    """Piper, loaded on first use; noise bursts if the local TTS is not installed."""

    def __init__(self) -> None:
        self._tts = None
        self._tried = False

    def speak(self, text: str) -> np.ndarray:
        if not self._tried:
            self._tried = True
            try:
                from voxloop.config.settings import Settings
                from voxloop.providers.local.piper_tts import PiperTTS

                self._tts = PiperTTS.from_settings(Settings())
            except Exception:  # no local extra: energy bursts still drive VAD and fakes
                self._tts = None
        if self._tts is None:
            rng = np.random.default_rng(len(text))
            return rng.uniform(-0.3, 0.3, int(0.06 * len(text) * 16000)).astype(np.float32)
        tts = self._tts

        async def collect() -> list[np.ndarray]:
            return [c.pcm async for c in tts.synthesize(text)]

        pcm = np.concatenate(asyncio.run(collect()))
        return resample(pcm.astype(np.float32) / 32768.0, tts.sample_rate, 16000)

    def close(self) -> None:
        if self._tts is not None:
            self._tts.close()


def question_wavs(texts: list[str], cache_dir: Path) -> list[Path]:
    """One 16 kHz WAV per text (0.3 s of silence before the speech), cached by content."""
    import importlib.util

    kind = "piper" if importlib.util.find_spec("piper") else "noise"
    cache_dir = cache_dir / kind
    cache_dir.mkdir(parents=True, exist_ok=True)
    voice = _Voice()
    paths = []
    try:
        for text in texts:
            key = hashlib.sha256(text.encode()).hexdigest()[:16]
            path = cache_dir / f"{key}.wav"
            if not path.exists():
                audio = np.concatenate([np.zeros(4800, np.float32), voice.speak(text)])
                write_wav(path, float_to_pcm16(audio), 16000)
            paths.append(path)
    finally:
        voice.close()
    return paths


def load(path: Path) -> np.ndarray:
    return read_audio(path, 16000)[0]
