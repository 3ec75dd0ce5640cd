"""`voxloop bench stt`: word error rate of the Whisper models and decode paths, on real
human recordings first and our own TTS voice second.

The human set (bench/human_speech.py: pinned registry packages, each clip's source and
licence recorded) is the one that counts; figures measured only on our Piper voice have
been far better than what people get. Each clip is decoded by each model and path, at
16 kHz and as it arrives from a 24 kHz client (OpenAI Realtime) or an 8 kHz phone line:
resampled to that rate and back, the way the session's listener brings it to 16 kHz. The
report gives corpus WER (all, tune/holdout, short < 2 s / longer, per speaker), clips with
a doubled phrase, and decode times.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from typing import Any

import numpy as np

from voxloop.audio.resample import LOW_LATENCY, StreamResampler
from voxloop.bench.latency import machine
from voxloop.bench.questions import load, question_wavs
from voxloop.bench.stats import summarize
from voxloop.config.settings import Settings
from voxloop.hearing.wer import edit_distance, normalize
from voxloop.providers.base import transcribe_all

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


SHORT_S = 2.0
PATHS = {"short_window": True, "full_window": False}


def at_rate(audio: np.ndarray, rate: int) -> np.ndarray:
    """16 kHz audio as it reaches the model from a client at `rate`."""
    if rate == 16000:
        return audio
    down = StreamResampler(16000, rate).push(audio, last=True)
    return StreamResampler(rate, 16000, quality=LOW_LATENCY).push(down, last=True)


def doubled(reference: str, heard: str) -> bool:
    """A phrase (2+ words) heard more often than it was said: Whisper's repeat failure."""
    ref, hyp = normalize(reference), normalize(heard)
    for n in (2, 3, 4):
        said = Counter(tuple(ref[i : i + n]) for i in range(len(ref) - n + 1))
        got = Counter(tuple(hyp[i : i + n]) for i in range(len(hyp) - n + 1))
        if any(count > said[gram] for gram, count in got.items() if count > 1):
            return True
    return False


def corpus_wer(pairs: list[tuple[str, str]]) -> float | None:
    """All the edits over all the words said (None for no words): long clips weigh more."""
    words = sum(len(normalize(ref)) for ref, _ in pairs)
    if not words:
        return None
    edits = sum(edit_distance(normalize(ref), normalize(hyp)) for ref, hyp in pairs)
    return round(edits / words, 4)


def _summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    def wer_of(keep) -> float | None:
        return corpus_wer([(r["said"], r["heard"]) for r in rows if keep(r)])

    speakers = sorted({r["speaker"] for r in rows})
    return {
        "wer": wer_of(lambda r: True),
        "wer_tune": wer_of(lambda r: r["split"] == "tune"),
        "wer_holdout": wer_of(lambda r: r["split"] == "holdout"),
        "wer_short": wer_of(lambda r: r["seconds"] < SHORT_S),
        "wer_longer": wer_of(lambda r: r["seconds"] >= SHORT_S),
        # Clean read sentences (4+ words), against isolated words and digits said alone.
        "wer_sentences": wer_of(lambda r: len(normalize(r["said"])) >= 4),
        "wer_isolated_words": wer_of(lambda r: len(normalize(r["said"])) < 4),
        "doubled": [r["id"] for r in rows if r["doubled"]],
        "by_speaker": {s: wer_of(lambda r, s=s: r["speaker"] == s) for s in speakers},
        "decode_ms": summarize([r["ms"] for r in rows]),
        "errors": [
            {k: r[k] for k in ("id", "said", "heard")}
            for r in rows
            if normalize(r["said"]) != normalize(r["heard"])
        ],
    }


def _clips(settings: Settings, sets: tuple[str, ...]) -> list[dict[str, Any]]:
    from voxloop.bench.human_speech import fetch_clips

    out: list[dict[str, Any]] = []
    if "human" in sets:
        for i, clip in enumerate(fetch_clips(settings.resolved_cache_dir())):
            out.append(
                {
                    "set": "human",
                    "id": clip.id,
                    "speaker": clip.speaker,
                    "said": clip.transcript,
                    "audio": clip.audio,
                    "split": "holdout" if i % 3 == 2 else "tune",
                }
            )
    if "ours" in sets:
        wavs = question_wavs(SENTENCES, settings.resolved_cache_dir() / "bench")
        tail = np.zeros(int(0.2 * 16000), np.float32)  # wavs carry 0.3 s before speech
        for i, (text, wav) in enumerate(zip(SENTENCES, wavs, strict=True)):
            out.append(
                {
                    "set": "ours",
                    "id": f"piper-{i:02d}",
                    "speaker": "piper-joe",
                    "said": text,
                    "audio": np.concatenate([load(wav), tail]),
                    "split": "holdout" if i % 3 == 2 else "tune",
                }
            )
    return out


def bench_stt(
    models: tuple[str, ...] = ("tiny.en", "base"),
    paths: tuple[str, ...] = tuple(PATHS),
    rates: tuple[int, ...] = (16000, 24000, 8000),
    sets: tuple[str, ...] = ("human", "ours"),
) -> dict[str, Any]:
    from voxloop.providers.local.whisper_stt import WhisperSTT

    settings = Settings()
    clips = _clips(settings, sets)
    out: dict[str, Any] = {
        "benchmark": "stt",
        "machine": machine(),
        "clips": {s: sum(c["set"] == s for c in clips) for s in sets},
        "human_seconds": round(sum(len(c["audio"]) for c in clips if c["set"] == "human") / 16e3),
        "results": {},
    }
    for model in models:
        stt = WhisperSTT.from_settings(Settings(stt={"preset": model}))
        try:
            for path in paths:
                stt.short_window = PATHS[path]
                asyncio.run(transcribe_all(stt, clips[0]["audio"]))  # warm-up
                for rate in rates:
                    rows = []
                    for clip in clips:
                        audio = at_rate(clip["audio"], rate)
                        started = time.perf_counter()
                        heard = asyncio.run(transcribe_all(stt, audio)).text
                        rows.append(
                            {
                                **{k: v for k, v in clip.items() if k != "audio"},
                                "seconds": len(clip["audio"]) / 16000,
                                "heard": heard,
                                "ms": (time.perf_counter() - started) * 1000,
                                "doubled": doubled(clip["said"], heard),
                            }
                        )
                    for name in sets:
                        key = f"{model}/{path}/{rate // 1000}k/{name}"
                        out["results"][key] = _summary([r for r in rows if r["set"] == name])
        finally:
            stt.close()
    return out
