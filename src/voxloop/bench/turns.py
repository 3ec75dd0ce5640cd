"""`voxloop eval turns --set ours`: speech over the agent, per scenario class.

Scenarios are synthesized with our own TTS and mixed with numpy (seeded, so runs repeat):

- (a) `pauses`: a sentence with a 0.5–1.0 s pause in the middle ("a table for... four").
- (b) `backchannels`: "mm-hmm", "yeah"... while the agent speaks (its echo in the mic too).
- (c) `echo`: only the agent's own voice, fed back at −6 to −20 dB after 30–200 ms.
- (d) `interruptions`: "wait, stop" over the agent's echo.
- (e) `noise`: a complete question over noise at 10 dB SNR.

(a) and (e) are about the end of the turn: turns_real.py runs them beside real people's
recordings, through the end-of-turn policies the session uses. Here (b)–(d) run through the
real VAD, the real STT and the overlap logic in audio time (no server), under three
policies: plain VAD barge-in (the baseline), voxloop's default settings (speech over the
agent pauses it and only a real word interrupts, bargein.py), and the defaults plus the
audio-level echo gate. Decisions that wait for the STT are charged a fixed `STT_COST_S`
(Whisper tiny.en's short-window decode p50 on the reference machine, `voxloop bench stt`)
rather than the wall time of this run, so results repeat exactly; the real decode times
of the run are reported beside them.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from voxloop.bench.latency import machine
from voxloop.bench.questions import load, question_wavs
from voxloop.bench.stats import summarize
from voxloop.config.settings import Settings
from voxloop.hearing.detector import TurnConfig, TurnDetector, TurnEventKind
from voxloop.hearing.echo import EchoEvidence, EchoGate
from voxloop.providers.base import VADFrame, transcribe_all
from voxloop.turns.bargein import RECENT_S, overlap_verdict

RATE = 16000
FRAME = 512
STT_COST_S = 0.12  # what a decision waiting for Whisper is charged (see the docstring)

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
OVERLAP_CLASSES = ("backchannels", "echo", "interruptions")  # the ones eval_turns scores


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
    stops: list[float] = field(default_factory=list)  # the agent's audio stopped (a pause)
    barge_in_s: float | None = None  # the reply was cancelled: the user has the floor
    paused_s: float = 0.0  # total time the agent was paused and then carried on
    stt_wall_s: list[float] = field(default_factory=list)  # real decode times, for the record


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


@dataclass
class Policy:
    name: str
    echo_gate: bool  # the audio-level echo gate (turns.echo_suppression)
    words: bool  # speech over the agent pauses it; only a real word interrupts


class _Run:
    """One case through the VAD, the turn detector and the policy, in audio time. STT
    calls are real, and their wall time is added to the decisions that wait for them."""

    def __init__(
        self, case: Case, policy: Policy, stt, settings: Settings, reference: EchoGate
    ) -> None:
        self.case, self.policy, self.stt, self.turns = case, policy, stt, settings.turns
        self.reference = reference  # what the agent played, as the session keeps it
        self.agent_end = max((s + len(a) / RATE for s, a in case.reference), default=0.0)
        self.outcome = Outcome()
        self.overlap = ""  # as Utterance.overlap in the session
        self.paused_at = 0.0
        self.next_check = 0.0

    def transcribe(self, start_s: float, end_s: float) -> tuple[str, float]:
        begin = max(0, int((start_s - self.turns.preroll_s) * RATE))
        t0 = time.perf_counter()
        text = asyncio.run(transcribe_all(self.stt, self.case.mic[begin : int(end_s * RATE)]))
        self.outcome.stt_wall_s.append(time.perf_counter() - t0)
        return text.text, STT_COST_S

    def echo(self, start_s: float, end_s: float) -> Callable[[], EchoEvidence]:
        """The echo evidence for the audio `transcribe` heard (as Overlaps._echo)."""
        begin = max(0, int((start_s - self.turns.preroll_s) * RATE))
        audio = self.case.mic[begin : int(end_s * RATE)]
        return lambda: self.reference.echo_evidence(audio, begin / RATE)

    def commit(self, at: float) -> None:
        self.overlap = "interrupt"
        if self.outcome.barge_in_s is None:
            self.outcome.barge_in_s = at

    def speech(self, detector: TurnDetector, end: float) -> None:
        """A speech frame ending at `end` while the detector is in an utterance."""
        o, turns = self.outcome, self.turns
        if (
            o.barge_in_s is None
            and not self.overlap
            and end < self.agent_end
            and detector.current_speech_s >= turns.barge_in_min_speech_s
        ):
            if not self.policy.words:
                self.commit(end)
                return
            self.overlap, self.paused_at = "pending", end
            self.next_check = float("inf")  # the first look waits for enough speech
            o.stops.append(end)

    def tick(self, detector: TurnDetector, end: float) -> None:
        """Checks that run on time whatever the frame: the judge, and streaming partials."""
        turns, start = self.turns, detector.speech_start_s
        if self.overlap == "pending" and self.next_check == float("inf"):
            enough = detector.current_speech_s >= turns.interruption_words_after_s
            timed_out = end - self.paused_at >= turns.false_interruption_timeout_s
            if enough or not detector.talking or timed_out:
                self.next_check = end  # as bargein.judge_overlap's first look
        if self.overlap == "pending" and end >= self.next_check:
            text, cost = self.transcribe(start, end)
            verdict = overlap_verdict(
                text, AGENT, cut=(False, detector.talking), echo=self.echo(start, end)
            )
            if verdict == "interrupt":
                self.commit(end + cost)
            elif (
                verdict == "echo"
                or not detector.talking
                or end - self.paused_at >= turns.false_interruption_timeout_s
            ):
                self.overlap = "dismissed"
                self.outcome.paused_s += end + cost - self.paused_at
                self.next_check = end + cost + 2 * turns.interruption_check_s
            else:
                self.next_check = end + cost + turns.interruption_check_s
        elif self.overlap == "dismissed" and end >= self.next_check:
            # As bargein.watch_overlap: the latest RECENT_S of the speech that goes on.
            begin = max(start, end - RECENT_S + turns.preroll_s)
            text, cost = self.transcribe(begin, end)
            self.next_check = end + cost + 2 * turns.interruption_check_s
            cut = (end - start > RECENT_S, detector.talking)
            if overlap_verdict(text, AGENT, cut=cut, echo=self.echo(begin, end)) == "interrupt":
                self.commit(end + cost)

    def turn_ended(self, start: float, end: float) -> None:
        if self.overlap in ("pending", "dismissed"):
            # As the session: a long dismissed stretch is judged by its latest words only.
            begin = max(start, end - RECENT_S + self.turns.preroll_s)
            text, cost = self.transcribe(begin, end)
            cut = (end - start > RECENT_S, False)
            if overlap_verdict(text, AGENT, cut=cut, echo=self.echo(begin, end)) == "interrupt":
                self.commit(end + cost)
            elif self.overlap == "pending":
                self.outcome.paused_s += end + cost - self.paused_at
        self.overlap = ""


def simulate(case: Case, policy: Policy, vad, stt, settings: Settings) -> Outcome:
    turns = settings.turns
    base_eot = turns.end_of_turn_silence_s
    detector = TurnDetector(
        TurnConfig(end_of_turn_silence_s=base_eot, min_speech_s=turns.min_speech_s)
    )
    # The reference is always kept (the overlap verdicts weigh it); the frame gate that
    # mutes echo frames is the policy's.
    reference = EchoGate()
    for start, samples in case.reference:
        reference.add_reference(samples, start)
    gate = reference if policy.echo_gate else None
    run = _Run(case, policy, stt, settings, reference)
    state = vad.new_state()
    frames = state.push(case.mic[: len(case.mic) // FRAME * FRAME])
    for frame in frames:
        t0 = frame.start_s
        samples = case.mic[int(t0 * RATE) : int(t0 * RATE) + FRAME]
        speech = frame.is_speech and not (gate is not None and gate.is_echo(samples, t0))
        event = detector.push(VADFrame(t0, frame.duration_s, frame.probability, speech))
        end = t0 + frame.duration_s
        if detector.state != "silence":
            if speech:
                run.speech(detector, end)
            run.tick(detector, end)
        if event is None:
            continue
        if event.kind is TurnEventKind.TURN_ENDED:
            run.outcome.turn_ends.append(end)
            run.turn_ended(event.speech_start_s, end)
    return run.outcome


def _stop_after_onset(case: Case, outcome: Outcome) -> float:
    """Seconds from the user's onset to the agent's audio stopping (a pause or a cancel)."""
    onset = case.onset_s or 0.0
    return min(t for t in [*outcome.stops, outcome.barge_in_s or 0.0] if t >= onset) - onset


def score(kind: str, cases: list[Case], outcomes: list[Outcome]) -> dict[str, Any]:
    pairs = list(zip(cases, outcomes, strict=True))
    out: dict[str, Any] = {"cases": len(pairs)}
    if kind in ("backchannels", "echo"):
        false = [c for c, o in pairs if o.barge_in_s is not None]
        out["false_bargein_rate"] = round(len(false) / len(pairs), 3)
        out["false_bargeins"] = [c.label for c in false][:5]
        # A pause that resumes is not a lost reply, but the user hears the agent stop.
        out["paused_rate"] = round(
            sum(1 for o in outcomes if o.stops and o.barge_in_s is None) / len(pairs),
            3,
        )
        out["pause_ms"] = summarize([o.paused_s * 1000 for o in outcomes if o.paused_s > 0])
    else:
        hits = [
            (c, o)
            for c, o in pairs
            if o.barge_in_s is not None and c.onset_s is not None and o.barge_in_s >= c.onset_s
        ]
        out["missed_bargein_rate"] = round(1 - len(hits) / len(pairs), 3)
        out["early_bargein_rate"] = round(
            sum(1 for c, o in pairs if o.barge_in_s is not None and o.barge_in_s < (c.onset_s or 0))
            / len(pairs),
            3,
        )
        # When the agent's audio stops (a pause counts) and when the reply is cancelled.
        out["bargein_latency_ms"] = summarize([_stop_after_onset(c, o) * 1000 for c, o in hits])
        out["cancel_latency_ms"] = summarize(
            [((o.barge_in_s or 0) - (c.onset_s or 0)) * 1000 for c, o in hits]
        )
    return out


def eval_turns(per_class: int = 20, seed: int = 1, cache_dir: Path | None = None) -> dict[str, Any]:
    from voxloop.providers.local.silero_vad import SileroVAD
    from voxloop.providers.local.whisper_stt import WhisperSTT

    settings = Settings()
    every = build_cases(per_class, seed, cache_dir or settings.resolved_cache_dir() / "bench")
    cases = [c for c in every if c.kind in OVERLAP_CLASSES]
    vad, stt = SileroVAD.from_settings(settings), WhisperSTT.from_settings(settings)
    turns = settings.turns
    words = turns.interruption == "words"
    policies = [
        Policy("vad_only", echo_gate=False, words=False),
        Policy("voxloop", echo_gate=turns.echo_suppression, words=words),
        Policy("voxloop_echo_gate", echo_gate=True, words=words),
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
            "interruption": settings.turns.interruption,
            "interruption_words_after_s": settings.turns.interruption_words_after_s,
            "echo_suppression": settings.turns.echo_suppression,
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
                for kind in OVERLAP_CLASSES
            }
            walls = [w * 1000 for o in outcomes for w in o.stt_wall_s]
            report.setdefault("stt_decode_ms", {})[policy.name] = summarize(walls)
    finally:
        stt.close()
    report["stt_cost_charged_ms"] = STT_COST_S * 1000
    return report
