"""Streaming sentence splitting for TTS, and cleanup of text that is about to be spoken.

The LLM streams tokens; TTS wants whole sentences (prosody needs them), but waiting for a
whole paragraph wastes time. `SentenceSplitter` emits each sentence as soon as its end is
certain, which takes one character of look-ahead: "3." could become "3.14", and "Dr." is
not an end at all. Optionally it emits the first clause of a reply early, after a few
words, at a comma or before a word that opens a new clause ("The sky looks blue | because
light scatters..."), so the first audio starts sooner: a first sentence of 15 words took
the LLM 3 s to finish with four conversations decoding together.
"""

from __future__ import annotations

import re

# Lower-case words that end with a period but do not end a sentence.
ABBREVIATIONS = frozenset(
    {
        "dr", "mr", "mrs", "ms", "prof", "sr", "jr", "st", "mt", "vs", "etc", "e.g", "i.e",
        "eg", "ie", "approx", "dept", "fig", "inc", "ltd", "corp", "vol",
        "jan", "feb", "mar", "apr", "jun", "jul", "aug", "sep", "sept", "oct", "nov", "dec",
        "a.m", "p.m", "u.s", "u.k", "cf",
    }
)  # fmt: skip
_TERMINATORS = ".!?"
_CLOSERS = "\"')]”’"
_CLAUSE_MARKS = ",;:—"
# Words that open a clause: a speaker may pause before them without breaking a phrase.
# Not "and"/"or", which as often join two nouns ("salt and pepper").
CLAUSE_OPENERS = frozenset(
    {
        "because", "but", "which", "while", "whereas", "although", "though", "since",
        "so", "when", "where", "unless", "until", "due", "if", "whether",
    }
)  # fmt: skip
# A clause mark and a space, or a whole word (a space after it) that may open a clause.
_EARLY_CUT = re.compile(r"(?P<mark>[,;:—])\s|\s(?P<word>[A-Za-z]+)(?=\s)")


class SentenceSplitter:
    """Feed text deltas with `push`; collect finished sentences; `flush` at the end."""

    def __init__(self, *, early_first_clause: bool = False, min_clause_words: int = 4) -> None:
        self._buf = ""
        self._emitted_any = False
        self.early_first_clause = early_first_clause
        self.min_clause_words = min_clause_words

    def push(self, delta: str) -> list[str]:
        # Leading whitespace is dropped as it arrives, as it is after each cut: whether a
        # "1." starts the buffer (a list marker) must not depend on the token boundaries.
        self._buf = (self._buf + delta).lstrip()
        out: list[str] = []
        while True:
            cut = self._find_boundary()
            if cut is None:
                break
            sentence, self._buf = self._buf[:cut].strip(), self._buf[cut:].lstrip()
            if sentence:
                out.append(sentence)
                self._emitted_any = True
        if not self._emitted_any and self.early_first_clause:
            clause = self._early_clause()
            if clause:
                out.append(clause)
                self._emitted_any = True
        return out

    def peek(self) -> str:
        """The text pushed but not cut into a sentence yet."""
        return self._buf

    def flush(self) -> list[str]:
        rest, self._buf = self._buf.strip(), ""
        return [rest] if rest else []

    def _find_boundary(self) -> int | None:
        buf = self._buf
        for i, ch in enumerate(buf):
            if ch == "\n":
                if buf[:i].strip():
                    return i + 1
                continue
            if ch not in _TERMINATORS:
                continue
            j = i + 1
            while j < len(buf) and (buf[j] in _TERMINATORS or buf[j] in _CLOSERS):
                j += 1
            if j >= len(buf):
                return None  # need to see what follows before deciding
            if not buf[j].isspace():
                continue  # "3.14", "e.g.", "file.txt": not an end
            if (ch == "." and _is_ellipsis(buf, i)) or (ch == "." and _is_abbreviation(buf, i)):
                continue
            if ch == "." and _is_list_number(buf, i):
                continue
            return j
        return None

    def _early_clause(self) -> str | None:
        for match in _EARLY_CUT.finditer(self._buf):
            if match["mark"]:
                head, rest = self._buf[: match.start() + 1], self._buf[match.end() :]
            elif match["word"].lower() in CLAUSE_OPENERS:
                head, rest = self._buf[: match.start()], self._buf[match.start() :].lstrip()
            else:
                continue
            if len(head.split()) >= self.min_clause_words:
                self._buf = rest
                return head.strip()
        return None


def _is_ellipsis(buf: str, i: int) -> bool:
    return buf[i + 1 : i + 2] == "." or (i > 0 and buf[i - 1] == ".")


def _is_abbreviation(buf: str, i: int) -> bool:
    start = i
    while start > 0 and not buf[start - 1].isspace():
        start -= 1
    word = buf[start:i].lower().strip("\"'([")
    if word in ABBREVIATIONS:
        return True
    # Single initials such as "J. R. R. Tolkien".
    return len(word) == 1 and word.isalpha() and buf[start:i].isupper()


def _is_list_number(buf: str, i: int) -> bool:
    """'1. ' at the start of a line is a list marker, not the end of a sentence."""
    start = i
    while start > 0 and buf[start - 1].isdigit():
        start -= 1
    return start < i and (start == 0 or buf[start - 1] == "\n")


def split_sentences(text: str) -> list[str]:
    """Split a whole text at once, with the same rules as the streaming splitter."""
    splitter = SentenceSplitter()
    return splitter.push(text) + splitter.flush()


def heard_words(sentences: list[str], heard_s: list[float], total_s: list[float]) -> str:
    """What the listener heard of a reply cut short: the whole sentences played, then the
    share of the next one's words its played time covers."""
    parts: list[str] = []
    for text, heard, total in zip(sentences, heard_s, total_s, strict=True):
        if total <= 0 or heard <= 0:
            break
        if heard >= total - 1e-6:
            parts.append(text)
            continue
        words = text.split()
        parts.append(" ".join(words[: int(len(words) * heard / total)]))
        break
    return " ".join(p for p in parts if p).strip()
