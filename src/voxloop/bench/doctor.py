"""`voxloop doctor`: load every configured provider and prove it works with a real smoke test.

The smoke tests feed each other: TTS speaks a phrase, VAD must find speech in it, STT must
transcribe it back, the LLM must answer a question, and the end-of-turn judge must give a
probability for the phrase, whole and cut halfway. A provider that loads but produces
nonsense shows up red, not green.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

import numpy as np

from voxloop.audio.resample import resample
from voxloop.errors import VoxloopError
from voxloop.hearing.wer import wer
from voxloop.providers.base import Message, transcribe_all
from voxloop.providers.local.llm_probe import Probe, probe_configured
from voxloop.providers.registry import STAGES, ProviderPool, Stage

PHRASE = "The quick brown fox jumps over the lazy dog."


@dataclass
class CheckResult:
    stage: Stage
    name: str
    model: str = ""
    size_bytes: int | None = None
    load_s: float | None = None
    ok: bool = False
    smoke: str = ""


async def run_checks(pool: ProviderPool, probe: Probe = probe_configured) -> list[CheckResult]:
    """`probe` runs the local LLM once in a child process before it is loaded here: a crash
    in native code then fails its row, instead of killing the doctor with every row."""
    results: dict[Stage, CheckResult] = {}
    for stage in STAGES:
        result = CheckResult(stage=stage, name=pool.name_for(stage))
        results[stage] = result
        try:
            if stage == "llm" and (failed := await _probe_failure(probe, pool)):
                result.smoke = f"load failed: {failed}"
                continue
            loaded = pool.load(stage)
        except VoxloopError as exc:
            result.smoke = f"load failed: {exc}"
            continue
        except Exception as exc:  # report every provider, even on an unexpected failure
            result.smoke = f"load failed: {type(exc).__name__}: {exc}"
            continue
        info = loaded.provider.info()
        result.model, result.size_bytes, result.load_s = info.model, info.size_bytes, loaded.load_s

    speech: np.ndarray | None = None  # float32 at 16 kHz, from the TTS check
    for stage in ("tts", "vad", "stt", "llm", "turn"):
        result = results[stage]
        if result.load_s is None:
            continue
        started = time.perf_counter()
        try:
            if stage == "tts":
                speech, result.ok, result.smoke = await _smoke_tts(pool)
            elif stage == "vad":
                result.ok, result.smoke = await _smoke_vad(pool, speech)
            elif stage == "stt":
                result.ok, result.smoke = await _smoke_stt(pool, speech)
            elif stage == "turn":
                result.ok, result.smoke = await _smoke_turn(pool, speech)
            else:
                result.ok, result.smoke = await _smoke_llm(pool)
        except Exception as exc:  # a smoke test must report, not crash the doctor
            result.ok, result.smoke = False, f"{type(exc).__name__}: {exc}"
        result.smoke += f" ({time.perf_counter() - started:.2f} s)"
    return [results[s] for s in STAGES]


async def _probe_failure(probe: Probe, pool: ProviderPool) -> str | None:
    """What the child-process probe of the LLM found wrong, or None if all is well."""
    outcome = await asyncio.to_thread(probe, pool.settings)
    return None if outcome is None or outcome.ok else outcome.message


async def _smoke_tts(pool: ProviderPool) -> tuple[np.ndarray | None, bool, str]:
    tts = pool.get("tts")
    parts = [c.pcm async for c in tts.synthesize(PHRASE)]
    if not parts:
        return None, False, "produced no audio"
    pcm = np.concatenate(parts)
    audio = resample(pcm.astype(np.float32) / 32768.0, tts.sample_rate, 16000)
    return audio, True, f"{len(pcm) / tts.sample_rate:.2f} s of audio for {PHRASE!r}"


async def _smoke_vad(pool: ProviderPool, speech: np.ndarray | None) -> tuple[bool, str]:
    vad = pool.get("vad")
    silent = np.zeros(vad.sample_rate, dtype=np.float32)

    async def frames_of(audio: np.ndarray):
        async def source():
            yield audio

        return [f async for f in vad.detect(source())]

    silent_hits = sum(f.is_speech for f in await frames_of(silent))
    if speech is None:
        return silent_hits == 0, f"{silent_hits} speech frames in 1 s of silence (no TTS audio)"
    frames = await frames_of(speech)
    share = sum(f.is_speech for f in frames) / max(len(frames), 1)
    ok = silent_hits == 0 and share > 0.3
    return ok, f"speech in {share:.0%} of spoken frames, {silent_hits} in silence"


async def _smoke_stt(pool: ProviderPool, speech: np.ndarray | None) -> tuple[bool, str]:
    stt = pool.get("stt")
    if speech is None:
        result = await transcribe_all(stt, np.zeros(stt.sample_rate, dtype=np.float32))
        return True, f"silence -> {result.text!r} (no TTS audio to check against)"
    result = await transcribe_all(stt, speech)
    score = wer(PHRASE, result.text)
    return score <= 0.25, f"heard {result.text!r} (WER {score:.2f})"


async def _smoke_turn(pool: ProviderPool, speech: np.ndarray | None) -> tuple[bool, str]:
    judge = pool.get("turn")
    pause = np.zeros(judge.sample_rate // 5, dtype=np.float32)  # the 0.2 s a pause has
    if speech is None:
        p = await judge.complete_probability(pause)
        return 0.0 <= p <= 1.0, f"P(complete) {p:.2f} for silence (no TTS audio)"
    whole = await judge.complete_probability(np.concatenate([speech, pause]))
    cut = await judge.complete_probability(np.concatenate([speech[: len(speech) // 2], pause]))
    ok = all(0.0 <= p <= 1.0 for p in (whole, cut))  # NaN fails too
    return ok, f"P(complete) {whole:.2f} after the phrase, {cut:.2f} cut halfway"


async def _smoke_llm(pool: ProviderPool) -> tuple[bool, str]:
    llm = pool.get("llm")
    messages = [
        Message("system", "Answer in one short sentence."),
        Message("user", "What is the capital of France?"),
    ]
    reply = "".join([d async for d in llm.generate(messages, max_tokens=32, temperature=0.0)])
    reply = " ".join(reply.split())
    return bool(reply), f"{reply[:60]!r}"


def _size(n: int | None) -> str:
    if n is None:
        return "-"
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def print_report(results: list[CheckResult]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="voxloop doctor")
    for col in ("stage", "provider", "model", "size", "load", "smoke test"):
        table.add_column(col)
    for r in results:
        mark = "[green]ok[/green]" if r.ok else "[red]FAIL[/red]"
        load = f"{r.load_s:.2f} s" if r.load_s is not None else "-"
        table.add_row(
            r.stage, r.name, r.model or "-", _size(r.size_bytes), load, f"{mark} {r.smoke}"
        )
    Console(width=160).print(table)
