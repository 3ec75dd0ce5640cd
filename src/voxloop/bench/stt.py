"""`voxloop bench stt`: Whisper's short-window trick against the standard 30 s window.

The same spoken sentences (synthesized with our TTS, with the session's 0.3 s pre-roll and
a 0.2 s tail, as a speculative decode sees them) go through both paths of the configured
Whisper model; the report gives the word error rate and the time per decode of each.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import numpy as np

from voxloop.bench.latency import machine
from voxloop.bench.questions import load, question_wavs
from voxloop.bench.stats import summarize
from voxloop.config import Settings
from voxloop.providers.base import transcribe_all
from voxloop.wer import wer

SENTENCES = [
    "What is the capital of France?",
    "Please book a table for four people at seven tonight.",
    "How far away is the moon from the earth?",
    "Tell me a joke about computers.",
    "What's the weather like in London today?",
    "Can you recommend a good book to read on holiday?",
    "I would like to order a large pizza with mushrooms.",
    "Why is the sky blue?",
    "Set a timer for ten minutes.",
    "Who wrote the play Romeo and Juliet?",
    "Translate good morning into Spanish.",
    "What time does the museum open on Sunday?",
    "My flight leaves at half past six tomorrow morning, so please wake me up early.",
    "How many legs does a spider have?",
    "Remind me to call my mother this evening.",
    "What is the square root of one hundred and forty four?",
    "Is it going to rain this weekend in Berlin?",
    "Explain how a rainbow forms in simple words.",
    "Hello.",
    "Thanks, that was really helpful.",
]


def bench_stt(cache_dir: Path | None = None) -> dict[str, Any]:
    from voxloop.providers.local.whisper_stt import WhisperSTT

    settings = Settings()
    wavs = question_wavs(SENTENCES, cache_dir or settings.resolved_cache_dir() / "bench")
    tail = np.zeros(int(0.2 * 16000), np.float32)
    audio = [np.concatenate([load(w), tail]) for w in wavs]  # wavs carry 0.3 s before speech
    stt = WhisperSTT.from_settings(settings)
    out: dict[str, Any] = {"benchmark": "stt", "model": stt.info().model, "machine": machine()}
    try:
        for name, short in (("short_window", True), ("full_window", False)):
            stt.short_window = short
            asyncio.run(transcribe_all(stt, audio[0]))  # warm-up
            fallbacks = stt.fallbacks
            times, hyps = [], []
            for clip in audio:
                started = time.perf_counter()
                hyps.append(asyncio.run(transcribe_all(stt, clip)).text)
                times.append((time.perf_counter() - started) * 1000)
            out[name] = {
                "wer": round(wer(" ".join(SENTENCES), " ".join(hyps)), 4),
                "decode_ms": summarize(times),
                "fallbacks_to_full_window": stt.fallbacks - fallbacks,
                "errors": [
                    {"said": s, "heard": h}
                    for s, h in zip(SENTENCES, hyps, strict=True)
                    if wer(s, h)
                ],
            }
    finally:
        stt.close()
    return out
