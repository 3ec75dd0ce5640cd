"""Word error rate, for round-trip tests and STT benchmarks.

Text is normalised first (case, punctuation, hyphens) so that "Paris." and "paris" match:
we want to measure recognition, not formatting.
"""

from __future__ import annotations

import re

_KEEP = re.compile(r"[^a-z0-9' ]+")


def normalize(text: str) -> list[str]:
    """Lowercase words with punctuation removed; hyphens split words; apostrophes stay."""
    text = text.lower().replace("-", " ").replace("’", "'")
    text = _KEEP.sub(" ", text)
    return [w.strip("'") for w in text.split() if w.strip("'")]


def edit_distance(ref: list[str], hyp: list[str]) -> int:
    """Levenshtein distance over words (substitutions, insertions, deletions cost 1)."""
    previous = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, start=1):
        current = [i] + [0] * len(hyp)
        for j, h in enumerate(hyp, start=1):
            current[j] = min(
                previous[j] + 1,  # deletion
                current[j - 1] + 1,  # insertion
                previous[j - 1] + (r != h),  # substitution or match
            )
        previous = current
    return previous[-1]


def wer(reference: str, hypothesis: str) -> float:
    """Word error rate of `hypothesis` against `reference`. An empty reference scores
    0.0 against an empty hypothesis and 1.0 against anything else."""
    ref, hyp = normalize(reference), normalize(hypothesis)
    if not ref:
        return 0.0 if not hyp else 1.0
    return edit_distance(ref, hyp) / len(ref)
