"""Each atheris harness in fuzz/ runs briefly, so CI notices a harness that no longer
starts and any crash a short, seeded run reaches. Long campaigns: fuzz/README.md."""

from __future__ import annotations

import importlib.util
import os
import resource
import subprocess
import sys
from pathlib import Path

import pytest

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")  # as in conftest.py
FUZZ = Path(__file__).resolve().parent.parent / "fuzz"
# Harness → libFuzzer runs: sized so all of them together take seconds, not minutes.
HARNESSES = {
    "protocol": 5000,
    "realtime_ai": 3000,
    "audio": 3000,
    "mulaw": 5000,
    "text": 5000,
    "config": 400,
    "realtime_events": 5000,
    "twilio": 1500,
}
KNOWN_BUGS: dict[str, str] = {
    # A harness with a known, not yet fixed crash: name -> what it is (xfail, not strict).
}


# libFuzzer's RSS check reads the peak RSS, and Linux carries a parent's peak across exec:
# a harness started from a pytest that once held a 4 GB model "uses" 4 GB from its first
# run. The harness may grow this much above what it inherits.
RSS_HEADROOM_MB = 2048


def _rss_limit_mb() -> int:
    inherited = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024  # KiB on Linux
    return inherited + RSS_HEADROOM_MB


def _require_atheris() -> None:
    if importlib.util.find_spec("atheris") is None:
        message = "atheris not installed: pip install -e '.[dev]'"
        if IN_CI:
            pytest.fail(f"{message}; CI must run the fuzz harnesses, not skip them")
        pytest.skip(message)


@pytest.mark.parametrize(
    "name",
    [
        pytest.param(n, marks=pytest.mark.xfail(reason=KNOWN_BUGS[n], strict=False))
        if n in KNOWN_BUGS
        else n
        for n in HARNESSES
    ],
)
def test_harness_runs_clean(name: str, tmp_path: Path) -> None:
    _require_atheris()
    corpus = tmp_path / "corpus"  # libFuzzer writes new inputs to the first corpus dir
    corpus.mkdir()
    argv = [
        sys.executable,
        str(FUZZ / f"fuzz_{name}.py"),
        f"-runs={HARNESSES[name]}",
        "-seed=1",  # the same inputs every run
        "-max_total_time=20",  # a cap on a slow machine; the runs normally end first
        "-timeout=30",
        f"-rss_limit_mb={_rss_limit_mb()}",
        f"-artifact_prefix={tmp_path}/",
        str(corpus),
        str(FUZZ / "seeds" / name),
    ]
    env = {k: v for k, v in os.environ.items() if not k.startswith("VOXLOOP_")}
    proc = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=120)
    crashes = sorted(p.name for p in tmp_path.glob("crash-*"))
    assert proc.returncode == 0 and not crashes, (
        f"fuzz_{name}.py exited {proc.returncode}; artifacts {crashes}:\n{proc.stderr[-4000:]}"
    )
