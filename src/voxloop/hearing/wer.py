"""Word error rate, for round-trip tests and STT benchmarks.

Text is normalised first (case, punctuation, hyphens, digits spelled out) so that "Paris."
and "paris", or "4" and "four", match: we want to measure recognition, not formatting.
"""

from __future__ import annotations

import re

_KEEP = re.compile(r"[^a-z0-9' ]+")


_ONES = (
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen "
    "fifteen sixteen seventeen eighteen nineteen"
).split()
_TENS = "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()
_TITLES = {"mr": "mister", "mrs": "missus", "dr": "doctor", "st": "saint"}
_NUMBER_WORDS = {*_ONES, *_TENS[2:], "hundred", "thousand"}


def spell_number(n: int) -> str:
    """0 ≤ n < 1,000,000 in words, without "and" (normalised text drops it anyway)."""
    if n < 20:
        return _ONES[n]
    if n < 100:
        return _TENS[n // 10] + ("" if n % 10 == 0 else " " + _ONES[n % 10])
    if n < 1000:
        rest = n % 100
        return _ONES[n // 100] + " hundred" + ("" if rest == 0 else " " + spell_number(rest))
    rest = n % 1000
    return spell_number(n // 1000) + " thousand" + ("" if rest == 0 else " " + spell_number(rest))


def normalize(text: str) -> list[str]:
    """Lowercase words with punctuation removed; hyphens split words; apostrophes stay;
    whole numbers are spelled out, and "and" inside a spelled number is dropped; a run of
    five or more digits without commas (a code, a phone number) is read digit by digit;
    titles are said in full ("Mr." -> "mister")."""
    text = text.lower().replace("-", " ").replace("’", "'")
    text = re.sub(r"(?<![\d,.])\d{5,}(?![\d,.]\d)", lambda m: " ".join(m.group(0)), text)
    text = re.sub(r"(?<=\d),(?=\d{3}\b)", "", text)  # 1,000 -> 1000
    text = re.sub(r"\b(mr|mrs|dr|st)\b\.?", lambda m: _TITLES[m.group(1)], text)
    text = _KEEP.sub(" ", text)
    words: list[str] = []
    for raw in text.split():
        word = raw.strip("'")
        if word.isdigit() and len(word) <= 6:
            words.extend(spell_number(int(word)).split())
        elif word:
            words.append(word)
    return [
        w
        for i, w in enumerate(words)
        if not (
            w == "and"
            and 0 < i < len(words) - 1
            and words[i - 1] in _NUMBER_WORDS
            and words[i + 1] in _NUMBER_WORDS
        )
    ]


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
