"""The turn-taking evaluator on a small subset with the real VAD and STT (figures printed,
no targets asserted: those live in docs/benchmarks.md)."""

from __future__ import annotations

import json

import pytest

pytestmark = pytest.mark.models


def test_eval_turns_small_subset():
    from voxloop.bench.turns import OVERLAP_CLASSES, eval_turns

    report = eval_turns(per_class=2, seed=3)
    print(json.dumps({p: report[p] for p in ("vad_only", "voxloop")}, indent=1))
    for policy in ("vad_only", "voxloop"):
        assert set(report[policy]) == set(OVERLAP_CLASSES)
        for kind in OVERLAP_CLASSES:
            assert report[policy][kind]["cases"] == 2
    # The rates are fractions of the cases; the echo gate's own behaviour is pinned down
    # deterministically in test_turn_words_echo.py and test_engine.py.
    for kind in ("echo", "backchannels"):
        assert 0.0 <= report["voxloop"][kind]["false_bargein_rate"] <= 1.0
