"""Smoke runs of the benchmarks on fake providers: they run end to end and report sanely.

No timing is asserted here: speed targets live in the benchmark reports themselves.
"""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from voxloop.bench.stats import percentile, summarize
from voxloop.cli import app, main  # noqa: F401 - main registers the bench commands

runner = CliRunner()


def _bench_app():
    from voxloop.bench.cli import bench_app

    return bench_app


def test_percentile_and_summary():
    assert percentile([5.0, 1.0, 3.0], 50) == 3.0
    assert percentile([1.0, 2.0, 3.0, 4.0], 90) == 4.0
    stats = summarize([1, None, 2, 3])
    assert stats["n"] == 3 and stats["p50"] == 2.0 and stats["max"] == 3.0
    assert summarize([None]) is None


def test_latency_bench_two_turns_with_fakes(tmp_path):
    out, plot = tmp_path / "lat.json", tmp_path / "lat.png"
    result = runner.invoke(
        _bench_app(),
        ["latency", "--turns", "2", "--providers", "fake", "--json", str(out), "--plot", str(plot)],
    )
    assert result.exit_code == 0, result.output
    report = json.loads(out.read_text())
    for mode in ("streaming", "sequential"):
        assert report[mode]["turns"] == 2
        assert report[mode]["completed"] == 2
        assert report[mode]["client_voice_to_voice_ms"]["n"] == 2
        assert report[mode]["server"]["voice_to_voice_ms"]["n"] == 2
        for turn in report[mode]["per_turn"]:
            assert turn["reply"].startswith("You said:")
    assert report["streaming_vs_sequential_p50"] > 0
    assert plot.stat().st_size > 1000


def test_bargein_bench_with_fakes(tmp_path):
    out = tmp_path / "b.json"
    result = runner.invoke(
        _bench_app(), ["bargein", "--trials", "2", "--providers", "fake", "--json", str(out)]
    )
    assert result.exit_code == 0, result.output
    report = json.loads(out.read_text())
    assert report["missed"] == 0
    assert report["bargein_ms"]["n"] == 2
    assert all(t["audio_bytes"]["total"] > 0 for t in report["per_trial"])


def test_load_bench_with_fakes(tmp_path):
    out = tmp_path / "l.json"
    result = runner.invoke(
        _bench_app(),
        ["load", "--sessions", "3", "--providers", "fake", "--ramp", "0.5", "--json", str(out)],
    )
    assert result.exit_code == 0, result.output
    report = json.loads(out.read_text())
    run = report["runs"][0]
    assert run["sessions"] == 3 and run["completed"] == 3
    assert run["server_process"]["rss_mb_max"] > 0
    assert run["server_process"]["event_loop_lag"]["probes"] > 0  # read from its /metrics
    assert isinstance(run["realtime_held"], bool)


def test_soak_bench_with_fakes(tmp_path):
    """A 20-second soak of 3 callers: every turn completes and the memory curve is there."""
    out = tmp_path / "s.json"
    result = runner.invoke(
        _bench_app(),
        ["soak", "--sessions", "3", "--minutes", "0.34", "--providers", "fake", "--json", str(out)],
    )
    assert result.exit_code == 0, result.output
    report = json.loads(out.read_text())
    assert report["turns"] >= 3 and report["failed_turns"] == 0, report["failures"]
    assert report["rss_mb_at_end"] > 0 and report["rss_mb_every_30s"]
    assert isinstance(report["passed"], bool)


@pytest.mark.models  # the real recordings come from registry archives (human_speech.py)
def test_latency_bench_on_real_recordings_with_fakes(tmp_path):
    out = tmp_path / "lat.json"
    result = runner.invoke(
        _bench_app(),
        ["latency", "--turns", "3", "--providers", "fake", "--mode", "streaming",
         "--speech", "human", "--json", str(out)],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    report = json.loads(out.read_text())
    assert report["speech"] == "human"
    turns = report["streaming"]["per_turn"]
    assert report["streaming"]["completed"] == 3
    # Three different people (one clip per speaker per round), each answered.
    assert len({t["transcript"] for t in turns}) == 3


def test_latency_bench_refuses_an_unknown_speech_set():
    result = runner.invoke(_bench_app(), ["latency", "--speech", "robots"])
    assert result.exit_code != 0 and "ours or human" in result.output
