"""`voxloop eval turns --set real`: the replay of end-of-turn policies over VAD frames,
on scripted evidence (the real run is in docs/benchmarks.md)."""

from __future__ import annotations

import numpy as np

from voxloop.bench.turns_real import (
    Evidence,
    RealCase,
    Variant,
    run_case,
    score,
    speech_end,
)
from voxloop.providers.base import VADFrame
from voxloop.testing.fakes import FakeSTT, FakeTurnJudge
from voxloop.turns.endpoint import Endpointing

FRAME_S = 0.032


def frames(*spans: tuple[float, float], total_s: float) -> list[VADFrame]:
    """VAD frames that are speech inside the given (start, end) spans."""
    out, t = [], 0.0
    while t < total_s:
        speech = any(a <= t < b for a, b in spans)
        out.append(VADFrame(t, FRAME_S, 0.9 if speech else 0.1, speech))
        t += FRAME_S
    return out


def _case(total_s: float, end_s: float) -> RealCase:
    return RealCase(
        "reader", "passage", "someone", np.zeros(int(total_s * 16000), np.float32), end_s
    )


def _run(variant: Variant, judge: FakeTurnJudge, spans, total_s=6.0, end_s=3.5):
    case = _case(total_s, end_s)
    evidence = Evidence(FakeSTT(), judge, preroll_s=0.3)
    vad = frames(*spans, total_s=total_s)
    ends = run_case(case, vad, variant, evidence, pause_s=0.2, min_speech_s=0.15)
    return case, vad, ends


SPANS = [(0.5, 1.5), (2.0, 3.5)]  # a line, a 0.5 s breath, the next line
JUDGE = Endpointing(mode="judge", complete_p=0.5, max_silence_s=1.0)


def test_a_sure_judge_cuts_a_reader_at_a_breath_without_continuation():
    case, vad, ends = _run(Variant(JUDGE, continuation=False), FakeTurnJudge(0.95), SPANS)
    assert len(ends) == 2 and ends[0] < 2.0
    report = score([case], {case.id: vad}, {case.id: ends})
    assert report["false_cutoff_rate"] == 1.0 and report["user_turns"] == {"reader": 2}


def test_continuation_takes_the_cut_back_when_the_reader_goes_on_in_time():
    case, vad, ends = _run(Variant(JUDGE), FakeTurnJudge(0.95), SPANS)
    assert len(ends) == 1 and ends[0] > 3.5
    report = score([case], {case.id: vad}, {case.id: ends})
    assert report["false_cutoff_rate"] == 0.0
    assert report["end_of_turn_delay_ms"]["p50"] < 400  # ends at the model's word


def test_a_pause_longer_than_the_reply_lead_is_a_turn_and_the_agent_spoke_over():
    spans = [(0.5, 1.5), (3.0, 4.0)]  # 1.5 s of silence: the agent answered the first part
    case, vad, ends = _run(Variant(JUDGE, reply_lead_s=1.0), FakeTurnJudge(0.95), spans, end_s=4.0)
    report = score([case], {case.id: vad}, {case.id: ends})
    assert report["user_turns"] == {"reader": 2} and report["agent_spoke_over"] == 1


def test_an_unsure_judge_waits_for_the_longest_silence():
    _, _, ends = _run(Variant(JUDGE, continuation=False), FakeTurnJudge(0.1), SPANS)
    assert len(ends) == 1 and ends[0] >= 3.5 + 1.0


def test_the_labelled_end_is_the_last_loud_stretch():
    audio = np.zeros(32000, np.float32)
    audio[8000:16000] = 0.3  # speech from 0.5 to 1.0 s, then silence
    audio[20000:20320] = 0.001  # a faint click, 40 dB down: not speech
    assert abs(speech_end(audio) - 1.0) < 0.021
