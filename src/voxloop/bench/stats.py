"""Small statistics helpers for benchmark reports."""

from __future__ import annotations

import math
from collections.abc import Iterable


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of a non-empty list."""
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def summarize(values: Iterable[float | None]) -> dict[str, float] | None:
    """p50/p90/p99/max/mean/n of the non-null values, rounded to 0.1; None if there are none."""
    clean = [float(v) for v in values if v is not None]
    if not clean:
        return None
    return {
        "p50": round(percentile(clean, 50), 1),
        "p90": round(percentile(clean, 90), 1),
        "p99": round(percentile(clean, 99), 1),
        "max": round(max(clean), 1),
        "mean": round(sum(clean) / len(clean), 1),
        "n": len(clean),
    }
