"""Turn ends on real human speech: read passages and single utterances by people.

Each case is a recording with a labelled end (the last stretch of voice, by energy, not by
our VAD), padded with silence the way a user waits for the answer. It runs through the real
VAD and the turn detector in audio time; at each pause of `speculative_silence_s` the real
STT transcribes the utterance so far and the real end-of-turn judge scores it, and an
`Endpointing` policy turns that into the silence that ends the turn. Evidence becomes known
only after its cost (`STT_COST_S`, `JUDGE_COST_S`: fixed, so runs repeat; the measured
times are reported beside them). STT and judge results are cached per (utterance start,
pause), so many policies cost little more than one.

Scores per class and split (tune / holdout by speaker): user turns per passage, false
cut-offs (a turn ended before the labelled end), cut-offs after which the agent would have
spoken before the reader went on (`REPLY_LEAD_S` after the cut), and the end-of-turn delay
after the labelled end.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from voxloop.bench.human_speech import fetch_clips
from voxloop.bench.passages import fetch_passages
from voxloop.bench.stats import summarize
from voxloop.hearing.detector import TurnConfig, TurnDetector, TurnEventKind
from voxloop.providers.base import VADFrame, transcribe_all
from voxloop.turns.endpoint import REJUDGE_AFTER_S, Endpointing

RATE = 16000
FRAME = 512
LEAD_S, TAIL_S = 0.5, 3.0
STT_COST_S = 0.30  # Whisper tiny.en, standard window, a few seconds of audio (bench stt)
JUDGE_COST_S = 0.06  # Smart Turn v3.2 on 2 cores (bench turns reports the measured one)
REPLY_LEAD_S = 0.8  # after a cut, the agent's first audio comes about this much later
# Speakers whose recordings are held out of tuning (the rest tune the policy).
HOLDOUT_SPEAKERS = frozenset(
    {
        "librivox-sonnet-reader",
        "john-f-kennedy (male)",
        "cmu-arctic-slt (female)",
        "parselmouth-y",
        "pocketsphinx-cards",
        "praatio-bobby-mary",
        "commons-rp-speaker",
    }
)


KINDS = ("passage", "utterance", "ours_pauses", "ours_questions")


@dataclass
class RealCase:
    id: str
    kind: str  # one of KINDS: people's passages and utterances; our voice's scenarios
    speaker: str
    audio: np.ndarray  # with silence before and after
    speech_end_s: float  # the labelled end of the speaker's turn

    @property
    def split(self) -> str:
        if self.kind.startswith("ours"):
            return "ours"
        return "holdout" if self.speaker in HOLDOUT_SPEAKERS else "tune"


# Recordings whose tail is not speech (the crowd after JFK's last word, room noise after
# Beckett's "Fail better.", a breath after "go forward ten meters"): the end of the last
# word, in clip time, from Whisper's word timestamps (10.50 s, 8.74 s, 1.94 s) and the
# last sound within 30 dB of the peak before the tail (2.14 s for goforward).
END_LABELS = {"whispercpp-jfk": 10.5, "moonshine-beckett": 8.8, "ps-goforward": 2.2}


def speech_end(audio: np.ndarray, floor_db: float = -30.0) -> float:
    """The end of the last 20 ms frame within `floor_db` of the loudest one."""
    hop = RATE // 50
    n = len(audio) // hop
    if n == 0:
        return 0.0
    rms = np.sqrt(np.mean(audio[: n * hop].reshape(n, hop) ** 2, axis=1) + 1e-12)
    db = 20 * np.log10(rms / rms.max())
    loud = np.nonzero(db > floor_db)[0]
    return float((loud[-1] + 1) * hop / RATE) if len(loud) else 0.0


def _pad(audio: np.ndarray, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    out = np.concatenate([np.zeros(int(LEAD_S * RATE)), audio, np.zeros(int(TAIL_S * RATE))])
    out = out + rng.normal(0, 10 ** (-70 / 20), len(out))  # a faint floor, not digital zero
    return out.astype(np.float32)


def real_cases(cache_dir: Path) -> list[RealCase]:
    cases = []
    for i, p in enumerate(fetch_passages(cache_dir)):
        cases.append(RealCase(p.id, "passage", p.speaker, _pad(p.audio, i), 0.0))
    for i, clip in enumerate(fetch_clips(cache_dir)):
        cases.append(RealCase(clip.id, "utterance", clip.speaker, _pad(clip.audio, 100 + i), 0.0))
    for case in cases:
        label = END_LABELS.get(case.id)
        case.speech_end_s = LEAD_S + label if label is not None else speech_end(case.audio)
    return cases


def our_cases(per_class: int, seed: int, cache_dir: Path) -> list[RealCase]:
    """`voxloop eval turns`' own-voice mid-sentence pauses and questions (in noise)."""
    from voxloop.bench.turns import build_cases

    kinds = {"pauses": "ours_pauses", "noise": "ours_questions"}
    return [
        RealCase(f"{c.kind}-{i}", kinds[c.kind], "piper", c.mic, c.speech_end_s or 0.0)
        for i, c in enumerate(build_cases(per_class, seed, cache_dir))
        if c.kind in kinds
    ]


@dataclass
class Evidence:
    """The expensive calls, made once per (utterance start, pause) and reused."""

    stt: Any
    judge: Any
    preroll_s: float
    words: dict[tuple[str, int, int], str] = field(default_factory=dict)
    probs: dict[tuple[str, int, int], float] = field(default_factory=dict)
    stt_wall_s: list[float] = field(default_factory=list)
    judge_wall_s: list[float] = field(default_factory=list)

    def _span(self, case: RealCase, start_s: float, end_s: float) -> tuple[int, int]:
        return max(0, int((start_s - self.preroll_s) * RATE)), int(end_s * RATE)

    def transcript(self, case: RealCase, start_s: float, end_s: float) -> str:
        lo, hi = self._span(case, start_s, end_s)
        key = (case.id, lo, hi)
        if key not in self.words:
            t0 = time.perf_counter()
            result = asyncio.run(transcribe_all(self.stt, case.audio[lo:hi]))
            self.stt_wall_s.append(time.perf_counter() - t0)
            self.words[key] = result.text.strip()
        return self.words[key]

    def probability(self, case: RealCase, start_s: float, end_s: float) -> float:
        lo, hi = self._span(case, start_s, end_s)
        key = (case.id, lo, hi)
        if key not in self.probs:
            t0 = time.perf_counter()
            self.probs[key] = asyncio.run(self.judge.complete_probability(case.audio[lo:hi]))
            self.judge_wall_s.append(time.perf_counter() - t0)
        return self.probs[key]


@dataclass(frozen=True)
class Variant:
    """A policy as the session runs it: `continuation` joins speech that resumes before
    the agent's first audio (`reply_lead_s` after the turn ended) to the turn before."""

    policy: Endpointing
    continuation: bool = True
    reply_lead_s: float = REPLY_LEAD_S


def run_case(
    case: RealCase,
    frames: list[VADFrame],
    variant: Variant,
    evidence: Evidence,
    *,
    pause_s: float,
    min_speech_s: float,
) -> list[float]:
    """The audio times at which turns ended (and were not taken back by a continuation)."""
    policy = variant.policy
    detector = TurnDetector(
        TurnConfig(end_of_turn_silence_s=policy.wait(), min_speech_s=min_speech_s, pause_s=pause_s)
    )
    ends: list[float] = []
    start_s, carried_s = 0.0, 0.0  # the joined turn's first speech, and its speech so far
    last_speech_s = 0.0
    for frame in frames:
        event = detector.push(frame)
        if event is None:
            continue
        end = frame.start_s + frame.duration_s
        if event.kind is TurnEventKind.SPEECH_STARTED:
            resumed = ends and event.speech_start_s < ends[-1] + variant.reply_lead_s
            if variant.continuation and resumed:
                ends.pop()  # the agent had not spoken yet: the user just went on
                carried_s += last_speech_s
            else:
                start_s, carried_s = event.speech_start_s, 0.0
        elif event.kind is TurnEventKind.SPEECH_PAUSED:
            gap = end - (event.speech_end_s or end)
            silence = _silence_after(frames, event.speech_end_s or end)
            speech_s = carried_s + detector.current_speech_s
            detector.config.end_of_turn_silence_s = _pause_wait(
                policy, evidence, case, start_s, end, gap, silence, speech_s
            )
        elif event.kind is TurnEventKind.SPEECH_RESUMED:
            detector.config.end_of_turn_silence_s = policy.wait()
        elif event.kind is TurnEventKind.TURN_ENDED:
            ends.append(end)
            last_speech_s = detector.current_speech_s or (
                (event.speech_end_s or end) - event.speech_start_s
            )
            detector.config.end_of_turn_silence_s = policy.wait()
    return ends


def _pause_wait(
    policy: Endpointing,
    evidence: Evidence,
    case: RealCase,
    start_s: float,
    end: float,
    gap: float,
    silence: float,
    speech_s: float,
) -> float:
    """The silence that ends the turn at this pause, as the session arrives at it: each
    piece of evidence re-applies the policy when it comes in (the judge at once, again
    after `REJUDGE_AFTER_S` more silence if it was unsure; the words after the STT), and
    the turn ends as soon as the silence reaches the wait known at that moment."""
    steps: list[tuple[float, float]] = []  # (when it is known, the wait it asks for)
    prob = words = None
    if policy.uses_judge:
        prob = evidence.probability(case, start_s, end)
        steps.append((gap + JUDGE_COST_S, policy.wait(probability=prob, speech_s=speech_s)))
    if policy.uses_words:
        words = evidence.transcript(case, start_s, end)
        wait = policy.wait(words=words, probability=prob, speech_s=speech_s)
        steps.append((gap + STT_COST_S, wait))
    again = gap + REJUDGE_AFTER_S
    if policy.uses_judge and prob is not None and prob < policy.complete_p and silence >= again:
        prob = evidence.probability(case, start_s, end + REJUDGE_AFTER_S)
        known = words if gap + STT_COST_S <= again + JUDGE_COST_S else None
        wait = policy.wait(words=known, probability=prob, speech_s=speech_s)
        steps.append((again + JUDGE_COST_S, wait))
    steps.sort()
    at, wait = gap, policy.wait(speech_s=speech_s)
    for known_at, new_wait in steps:
        if wait <= known_at:
            break  # the turn ended before this came in
        at, wait = known_at, new_wait
    return max(wait, at)


def _silence_after(frames: list[VADFrame], t: float) -> float:
    """Seconds from `t` to the next speech frame (to the end of the audio if none)."""
    nxt = _resumes_after(frames, t)
    return (nxt if nxt is not None else frames[-1].start_s + frames[-1].duration_s) - t


def _resumes_after(frames: list[VADFrame], t: float) -> float | None:
    return next((f.start_s for f in frames if f.is_speech and f.start_s > t), None)


def score(
    cases: list[RealCase], frames: dict[str, list[VADFrame]], ends: dict[str, list[float]]
) -> dict[str, Any]:
    out: dict[str, Any] = {"cases": len(cases)}
    if not cases:
        return out
    cut_cases, spoken_over, delays, never = [], 0, [], 0
    for c in cases:
        early = [t for t in ends[c.id] if t < c.speech_end_s - 0.05]
        if early:
            cut_cases.append(c.id)
        for t in early:
            resume = _resumes_after(frames[c.id], t)
            if resume is not None and resume > t + REPLY_LEAD_S:
                spoken_over += 1
        after = [t for t in ends[c.id] if t >= c.speech_end_s - 0.05]
        if after:
            delays.append((after[0] - c.speech_end_s) * 1000)
        else:
            never += 1
    out["false_cutoff_rate"] = round(len(cut_cases) / len(cases), 3)
    out["cut_off"] = cut_cases[:8]
    out["agent_spoke_over"] = spoken_over
    out["never_ended"] = never
    out["end_of_turn_delay_ms"] = summarize(delays)
    if cases[0].kind == "passage":
        out["user_turns"] = {c.id: len(ends[c.id]) for c in cases}
    return out


def eval_real_turns(
    policies: dict[str, Variant],
    *,
    stt,
    judge,
    vad,
    settings,
    cache_dir: Path,
    ours_per_class: int = 12,
) -> dict[str, Any]:
    """Every policy on every case: scores per class and split (people: tune / holdout)."""
    turns = settings.turns
    cases = real_cases(cache_dir) + our_cases(ours_per_class, 1, cache_dir / "bench")
    frames = {}
    for c in cases:
        state = vad.new_state()
        frames[c.id] = state.push(c.audio[: len(c.audio) // FRAME * FRAME])
    evidence = Evidence(stt, judge, turns.preroll_s)
    report: dict[str, Any] = {
        "cases": {
            "passages": [c.id for c in cases if c.kind == "passage"],
            "utterances": sum(c.kind == "utterance" for c in cases),
            "holdout_speakers": sorted(HOLDOUT_SPEAKERS),
        },
        "costs_charged_ms": {"stt": STT_COST_S * 1000, "judge": JUDGE_COST_S * 1000},
        "reply_lead_ms": REPLY_LEAD_S * 1000,
    }
    for name, variant in policies.items():
        ends = {
            c.id: run_case(
                c,
                frames[c.id],
                variant,
                evidence,
                pause_s=turns.speculative_silence_s,
                min_speech_s=turns.min_speech_s,
            )
            for c in cases
        }
        groups = {(c.kind, c.split) for c in cases}
        report[name] = {
            f"{kind}_{split}": score(
                [c for c in cases if c.kind == kind and c.split == split], frames, ends
            )
            for kind in KINDS
            for split in ("tune", "holdout", "ours")
            if (kind, split) in groups
        }
    report["measured_ms"] = {
        "stt": summarize([w * 1000 for w in evidence.stt_wall_s]),
        "judge": summarize([w * 1000 for w in evidence.judge_wall_s]),
    }
    return report


def default_policies(settings, sweep: bool = False) -> dict[str, Variant]:
    """The baselines, the model alone, and the default combination (plus a sweep of its
    numbers, for tuning on the tune split), each with the session's continuation; the
    plain VAD and the default also without it, and the default with a faster reply."""
    turns = settings.turns
    base = Endpointing.from_settings(turns)
    silence = Endpointing.from_settings(turns, mode="silence")
    policies = {
        "vad_only_alone": Variant(silence, continuation=False),
        "vad_only": Variant(silence),
        "words": Variant(Endpointing.from_settings(turns, mode="words")),
        "judge": Variant(Endpointing.from_settings(turns, mode="judge")),
        "combined_alone": Variant(base, continuation=False),
        "combined": Variant(base),
        "combined_reply_lead_0.5s": Variant(base, reply_lead_s=0.5),
    }
    if sweep:
        for p in (0.5, 0.7, 0.9):
            for fallback in (0.8, 1.0):
                for long_s in (3.0, 4.0, 6.0, 99.0):
                    for long_silence in (1.2, 1.5):
                        name = f"combined_p{p}_max{fallback}_long{long_s}_{long_silence}"
                        policies[name] = Variant(
                            replace(
                                base,
                                mode="combined",
                                complete_p=p,
                                max_silence_s=fallback,
                                long_speech_s=long_s,
                                long_silence_s=long_silence,
                            )
                        )
    return policies


def eval_turns_real(sweep: bool = False, ours_per_class: int = 12) -> dict[str, Any]:
    """`voxloop eval turns --set real`: the embedded VAD, STT and end-of-turn judge."""
    from voxloop.config.settings import Settings
    from voxloop.providers.registry import Registry

    settings = Settings()
    registry = Registry()
    vad = registry.resolve("vad", "silero").from_settings(settings)
    stt = registry.resolve("stt", "whisper").from_settings(settings)
    judge = registry.resolve("turn", settings.turn_judge.provider).from_settings(settings)
    try:
        return eval_real_turns(
            default_policies(settings, sweep),
            stt=stt,
            judge=judge,
            vad=vad,
            settings=settings,
            cache_dir=settings.resolved_cache_dir(),
            ours_per_class=ours_per_class,
        )
    finally:
        stt.close()
