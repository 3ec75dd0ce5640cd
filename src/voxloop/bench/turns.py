"""`voxloop eval turns`: how human does the turn-taking feel? Measured per scenario class.

Scenarios are synthesized with our own TTS and mixed with numpy (seeded, so runs repeat):

- (a) `pauses`: a sentence with a 0.5–1.0 s pause in the middle ("a table for... four").
- (b) `backchannels`: "mm-hmm", "yeah"... while the agent speaks (its echo in the mic too).
- (c) `echo`: only the agent's own voice, fed back at −6 to −20 dB after 30–200 ms.
- (d) `interruptions`: "wait, stop" over the agent's echo.
- (e) `noise`: a complete question over noise at 10 dB SNR.

Each case runs through the real VAD and the turn logic in audio time (no server, no
clock), once as plain VAD turn-taking (the baseline) and once with voxloop's heuristics:
the echo gate, and a longer wait when the transcript at a pause sounds unfinished.
"""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from voxloop.bench.latency import machine
from voxloop.bench.questions import load, question_wavs
from voxloop.bench.stats import summarize
from voxloop.config import Settings
from voxloop.providers.base import VADFrame, transcribe_all
from voxloop.turns import TurnConfig, TurnDetector, TurnEventKind
from voxloop.turntaking import EchoGate, end_of_turn_silence

RATE = 16000
FRAME = 512

PAUSED = [
    ("I'd like to book a table for", "four people, please."),
    ("My number is five five five", "zero one two three."),
    ("Can you remind me to", "call my sister tomorrow?"),
    ("I want to fly to", "Paris next Monday."),
    ("Send a message to", "John saying I am late."),
    ("I'm looking for a recipe with", "chicken and rice."),
    ("Set an alarm for", "seven in the morning."),
    ("I would like to order", "a large coffee."),
    ("Um, I think", "we should leave at noon."),
    ("The meeting is on", "Thursday afternoon."),
    ("Tell me a story about", "a brave knight."),
    ("I need to cancel my", "dentist appointment."),
]
BACKCHANNELS = ["Mm-hmm.", "Yeah.", "Right.", "Okay.", "Uh-huh."]
INTERRUPTIONS = ["Wait, stop.", "No, I meant Tuesday.", "Hold on a second.", "Stop, that's wrong."]
QUESTIONS = [
    "What is the weather like in Rome today?",
    "How long does it take to boil an egg?",
    "Can you recommend a good film for tonight?",
    "What time does the train to London leave?",
]
AGENT = (
    "Sure, here is what I found. The museum opens at nine in the morning and closes at "
    "six in the evening, and on Sundays it stays open until eight."
)
CLASSES = ("pauses", "backchannels", "echo", "interruptions", "noise")


@dataclass
class Case:
    kind: str
    mic: np.ndarray
    reference: list[tuple[float, np.ndarray]] = field(default_factory=list)
    speech_end_s: float | None = None  # (a, e): when the user really finished
    onset_s: float | None = None  # (b, d): when the user's own sound starts
    label: str = ""


@dataclass
class Outcome:
    turn_ends: list[float] = field(default_factory=list)
    barge_in_s: float | None = None


def _silence(seconds: float) -> np.ndarray:
    return np.zeros(int(seconds * RATE), np.float32)


def _rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(x**2))) if len(x) else 0.0


def _trim(x: np.ndarray) -> np.ndarray:
    """Drop the TTS's leading and trailing silence, so timings are exact."""
    loud = np.nonzero(np.abs(x) > 0.01)[0]
    return x[loud[0] : loud[-1] + 1] if len(loud) else x


def _echo(agent: np.ndarray, delay_s: float, gain_db: float, total: int) -> np.ndarray:
    out = np.zeros(total, np.float32)
    start = int(delay_s * RATE)
    n = min(len(agent), total - start)
    out[start : start + n] = agent[:n] * 10 ** (gain_db / 20)
    return out


def build_cases(per_class: int, seed: int, cache_dir: Path) -> list[Case]:
    rng = random.Random(seed)
    texts = sorted(
        {t for pair in PAUSED for t in pair}
        | set(BACKCHANNELS)
        | set(INTERRUPTIONS)
        | set(QUESTIONS)
        | {AGENT}
    )
    audio = {t: _trim(load(p)) for t, p in zip(texts, question_wavs(texts, cache_dir), strict=True)}
    agent = audio[AGENT]
    noise_rng = np.random.default_rng(seed)
    cases: list[Case] = []
    for i in range(per_class):  # (a) mid-sentence pauses
        first, second = PAUSED[i % len(PAUSED)]
        pause = rng.uniform(0.5, 1.0)
        mic = np.concatenate([_silence(0.5), audio[first], _silence(pause), audio[second]])
        end = len(mic) / RATE
        mic = np.concatenate([mic, _silence(2.5)])
        cases.append(
            Case("pauses", mic, speech_end_s=end, label=f"{first} [{pause:.2f}s] {second}")
        )
    for i in range(per_class):  # (b) backchannels while the agent speaks, (c) pure echo
        for kind in ("backchannels", "echo"):
            total = len(agent) + int(1.5 * RATE)
            delay, gain = rng.uniform(0.03, 0.2), rng.uniform(-20, -6)
            mic = _echo(agent, delay, gain, total)
            onset = None
            label = f"echo {gain:.0f} dB after {delay * 1000:.0f} ms"
            if kind == "backchannels":
                word = audio[BACKCHANNELS[i % len(BACKCHANNELS)]]
                onset = rng.uniform(1.0, len(agent) / RATE - 1.5)
                at = int(onset * RATE)
                mic[at : at + len(word)] += word
                label = f"{BACKCHANNELS[i % len(BACKCHANNELS)]} at {onset:.1f}s, {label}"
            mic += noise_rng.normal(0, 10 ** (-50 / 20), len(mic)).astype(np.float32)
            cases.append(Case(kind, mic, [(0.0, agent)], onset_s=onset, label=label))
    for i in range(per_class):  # (d) genuine interruptions over the echo
        total = len(agent) + int(1.5 * RATE)
        delay, gain = rng.uniform(0.03, 0.2), rng.uniform(-20, -10)
        mic = _echo(agent, delay, gain, total)
        text = INTERRUPTIONS[i % len(INTERRUPTIONS)]
        onset = rng.uniform(1.0, len(agent) / RATE - 2.0)
        words = audio[text]
        at = int(onset * RATE)
        mic[at : at + len(words)] += words
        cases.append(
            Case(
                "interruptions", mic, [(0.0, agent)], onset_s=onset, label=f"{text} at {onset:.1f}s"
            )
        )
    for i in range(per_class):  # (e) a complete question over 10 dB SNR noise
        speech = audio[QUESTIONS[i % len(QUESTIONS)]]
        mic = np.concatenate([_silence(0.5), speech])
        end = len(mic) / RATE
        mic = np.concatenate([mic, _silence(2.5)])
        noise = noise_rng.normal(0, 1, len(mic)).astype(np.float32)
        noise *= _rms(speech) / _rms(noise) / 10 ** (10 / 20)
        cases.append(
            Case("noise", mic + noise, speech_end_s=end, label=QUESTIONS[i % len(QUESTIONS)])
        )
    return cases


class Policy:
    def __init__(self, name: str, *, echo_gate: bool, semantic: bool) -> None:
        self.name, self.echo_gate, self.semantic = name, echo_gate, semantic


def simulate(case: Case, policy: Policy, vad, stt, settings: Settings) -> Outcome:
    turns = settings.turns
    base_eot = turns.end_of_turn_silence_s
    detector = TurnDetector(
        TurnConfig(
            end_of_turn_silence_s=base_eot,
            min_speech_s=turns.min_speech_s,
            pause_s=turns.speculative_silence_s if policy.semantic else 0.0,
        )
    )
    gate = EchoGate() if policy.echo_gate else None
    for start, samples in case.reference:
        if gate is not None:
            gate.add_reference(samples, start)
    agent_end = max((s + len(a) / RATE for s, a in case.reference), default=0.0)
    state = vad.new_state()
    outcome = Outcome()
    frames = state.push(case.mic[: len(case.mic) // FRAME * FRAME])
    for frame in frames:
        t0 = frame.start_s
        samples = case.mic[int(t0 * RATE) : int(t0 * RATE) + FRAME]
        speech = frame.is_speech and not (gate is not None and gate.is_echo(samples, t0))
        event = detector.push(VADFrame(t0, frame.duration_s, frame.probability, speech))
        end = t0 + frame.duration_s
        if (
            outcome.barge_in_s is None
            and t0 < agent_end
            and detector.current_speech_s >= turns.barge_in_min_speech_s
        ):
            outcome.barge_in_s = end
        if event is None:
            continue
        if event.kind is TurnEventKind.SPEECH_PAUSED and policy.semantic:
            start = max(0, int((event.speech_start_s - turns.preroll_s) * RATE))
            text = asyncio.run(transcribe_all(stt, case.mic[start : int(end * RATE)])).text
            detector.config.end_of_turn_silence_s = end_of_turn_silence(
                text,
                normal=base_eot,
                unfinished=turns.unfinished_silence_s,
                question=turns.question_silence_s,
            )
        elif event.kind in (TurnEventKind.SPEECH_RESUMED, TurnEventKind.TURN_ENDED):
            detector.config.end_of_turn_silence_s = base_eot
            if event.kind is TurnEventKind.TURN_ENDED:
                outcome.turn_ends.append(end)
    return outcome


def score(kind: str, cases: list[Case], outcomes: list[Outcome]) -> dict[str, Any]:
    pairs = list(zip(cases, outcomes, strict=True))
    out: dict[str, Any] = {"cases": len(pairs)}
    if kind in ("pauses", "noise"):
        cut = [c for c, o in pairs if any(t < (c.speech_end_s or 0) for t in o.turn_ends)]
        out["cut_off"] = sorted({c.label.split(" [")[0] for c in cut})
        delays = [
            (min(t for t in o.turn_ends if t >= c.speech_end_s) - c.speech_end_s) * 1000
            for c, o in pairs
            if c.speech_end_s is not None and any(t >= c.speech_end_s for t in o.turn_ends)
        ]
        out["false_cutoff_rate"] = round(len(cut) / len(pairs), 3)
        out["never_ended_rate"] = round(
            sum(1 for c, o in pairs if not any(t >= (c.speech_end_s or 0) for t in o.turn_ends))
            / len(pairs),
            3,
        )
        out["end_of_turn_delay_ms"] = summarize(delays)
    elif kind in ("backchannels", "echo"):
        false = [c for c, o in pairs if o.barge_in_s is not None]
        out["false_bargein_rate"] = round(len(false) / len(pairs), 3)
        out["false_bargeins"] = [c.label for c in false][:5]
    else:
        hits = [
            (o.barge_in_s - c.onset_s) * 1000
            for c, o in pairs
            if o.barge_in_s is not None and c.onset_s is not None and o.barge_in_s >= c.onset_s
        ]
        out["missed_bargein_rate"] = round(1 - len(hits) / len(pairs), 3)
        out["early_bargein_rate"] = round(
            sum(1 for c, o in pairs if o.barge_in_s is not None and o.barge_in_s < (c.onset_s or 0))
            / len(pairs),
            3,
        )
        out["bargein_latency_ms"] = summarize(hits)
    return out


def eval_turns(per_class: int = 20, seed: int = 1, cache_dir: Path | None = None) -> dict[str, Any]:
    from voxloop.providers.local.silero_vad import SileroVAD
    from voxloop.providers.local.whisper_stt import WhisperSTT

    settings = Settings()
    cases = build_cases(per_class, seed, cache_dir or settings.resolved_cache_dir() / "bench")
    vad, stt = SileroVAD.from_settings(settings), WhisperSTT.from_settings(settings)
    policies = [
        Policy("vad_only", echo_gate=False, semantic=False),
        Policy("voxloop", echo_gate=True, semantic=True),
    ]
    report: dict[str, Any] = {
        "benchmark": "turns",
        "machine": machine(),
        "seed": seed,
        "per_class": per_class,
        "settings": {
            "end_of_turn_silence_s": settings.turns.end_of_turn_silence_s,
            "unfinished_silence_s": settings.turns.unfinished_silence_s,
            "question_silence_s": settings.turns.question_silence_s,
            "speculative_silence_s": settings.turns.speculative_silence_s,
            "barge_in_min_speech_s": settings.turns.barge_in_min_speech_s,
        },
    }
    try:
        for policy in policies:
            outcomes = [simulate(c, policy, vad, stt, settings) for c in cases]
            report[policy.name] = {
                kind: score(
                    kind,
                    [c for c in cases if c.kind == kind],
                    [o for c, o in zip(cases, outcomes, strict=True) if c.kind == kind],
                )
                for kind in CLASSES
            }
    finally:
        stt.close()
    return report
