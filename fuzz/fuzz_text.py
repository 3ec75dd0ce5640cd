"""Fuzz the text that is about to be spoken: the streaming `SentenceSplitter`, `speakable`
and `heard_words`.

Contract: none of them raises on any text. The splitter emits no empty or padded
sentences, loses or reorders no visible character, and (without the early first clause)
gives the same sentences whatever the chunk boundaries of the LLM's deltas.

    python fuzz/fuzz_text.py -max_total_time=60 fuzz/seeds/text
"""

from __future__ import annotations

import itertools
import random
import zlib

import _common
import atheris

with atheris.instrument_imports(include=["voxloop"]):
    from voxloop.reply.speakable import speakable
from voxloop.reply.sentences import SentenceSplitter, heard_words, split_sentences


def visible(text: str) -> str:
    return "".join(ch for ch in text if not ch.isspace())


def chunks(text: str, rng: random.Random) -> list[str]:
    """Cut `text` at random places, as an LLM's token stream would (empty deltas too)."""
    cuts = sorted(rng.randrange(len(text) + 1) for _ in range(rng.randrange(8)))
    bounds = [0, *cuts, len(text)]
    return [text[a:b] for a, b in itertools.pairwise(bounds)]


def stream(text: str, rng: random.Random, **options: object) -> list[str]:
    splitter = SentenceSplitter(**options)  # type: ignore[arg-type]
    out: list[str] = []
    for delta in chunks(text, rng):
        out += splitter.push(delta)
    return out + splitter.flush()


def check_sentences(sentences: list[str], text: str) -> None:
    for sentence in sentences:
        assert sentence and sentence == sentence.strip(), repr(sentence)
    assert visible("".join(sentences)) == visible(text)


def check_splitter(text: str, rng: random.Random, early: bool) -> None:
    if early:
        got = stream(text, rng, early_first_clause=True, min_clause_words=rng.randrange(1, 6))
    else:
        got = stream(text, rng)
        assert got == split_sentences(text), (got, split_sentences(text))
    check_sentences(got, text)


def check_speakable(text: str) -> None:
    out = speakable(text)
    assert out == out.strip() and "  " not in out
    assert not any(ch.isspace() and ch != " " for ch in out)
    assert "*" not in out and "`" not in out


def check_heard(fdp: atheris.FuzzedDataProvider) -> None:
    sentences = [fdp.ConsumeUnicode(24) for _ in range(fdp.ConsumeIntInRange(0, 4))]
    heard = [fdp.ConsumeFloatInRange(-1.0, 5.0) for _ in sentences]
    total = [fdp.ConsumeFloatInRange(-1.0, 5.0) for _ in sentences]
    words = heard_words(sentences, heard, total).split()
    everything = " ".join(sentences).split()
    assert words == everything[: len(words)]  # what was heard is a prefix of the reply


def test_one_input(data: bytes) -> None:
    mode, rest = _common.split_mode(data, 4)
    if mode == 3:
        check_heard(atheris.FuzzedDataProvider(rest))
        return
    text = rest.decode("utf-8", "surrogateescape")  # lone surrogates included
    if mode == 2:
        check_speakable(text)
    else:
        check_splitter(text, random.Random(zlib.crc32(data)), early=mode == 1)


if __name__ == "__main__":
    _common.run(test_one_input)
