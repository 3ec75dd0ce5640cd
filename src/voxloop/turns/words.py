"""Word rules for the end of a turn: is the user done, judging by the words so far?

`sounds_unfinished` — a pause after "a table for..." or "my number is 5 5 5" is not the end
of the turn, whatever the silence says. The speculative transcript taken at the pause is
checked, and the session waits longer when it ends mid-thought.
"""

from __future__ import annotations

import re

# Words after which an utterance is very unlikely to be complete.
_OPEN_ENDINGS = frozenset(
    """
    a an the and or but so because if then than that which who whose whom where when while
    of for to with from at by in on into onto about as like my your his her our their its
    is are was were am be been being will would can could should shall may might must do
    does did have has had um uh er erm hmm mm like i'd i'm i'll we're you're it's let's
    think mean guess want need wonder suppose
    """.split()
)
_FILLERS = frozenset({"um", "uh", "er", "erm", "hmm", "mm"})
# Verbs that leave the sentence hanging after "to ..." without their object.
_NEEDS_OBJECT = frozenset(
    """
    order book buy get make have see know ask tell say find add change cancel send call
    check reserve schedule set bring take give show use pay try visit
    """.split()
)


def sounds_unfinished(transcript: str) -> bool:
    """True when a transcript ends mid-thought: a conjunction, preposition, article,
    filler, a verb still waiting for its object ("I'd like to order"), a trailing "...",
    or a number being read out. Speech recognisers add a full stop to almost anything, so
    only a question mark counts as a sure end. Waiting too long on a finished sentence
    costs a moment; cutting off an unfinished one costs the conversation."""
    text = transcript.strip().lower()
    if not text or text.endswith("?"):
        return False
    if text.endswith(("...", "…", ",", "-", "—")):
        return True
    words = re.findall(r"[a-z0-9']+", text)
    if not words:
        return False
    last = words[-1]
    if last in _OPEN_ENDINGS or last in _FILLERS:
        return True
    if len(words) >= 2 and words[-2] == "to" and words[-1] in _NEEDS_OBJECT:
        return True  # "I'd like to order", "remind me to call" (not "learns to fly")
    # A number being read out ("my number is 555", "five five five"), not "for four." nor
    # a whole phone number ("555-0123": seven digits or more).
    digits = 0
    for word in reversed(words):
        if not word.isdigit():
            break
        digits += len(word)
    if digits >= 7:
        return False
    numbers = [w.isdigit() or _is_number_word(w) for w in words[-2:]]
    return (last.isdigit() and len(last) >= 3) or (all(numbers) and len(numbers) == 2)


def sounds_complete_question(transcript: str) -> bool:
    """A question with its question mark, long enough not to be a stray "what?"."""
    text = transcript.strip()
    return text.endswith("?") and len(text.split()) >= 3


def sounds_complete_statement(transcript: str) -> bool:
    """A sentence of a few words that ends with a full stop or "!" and does not sound
    unfinished. Weaker evidence than a question mark (recognisers add full stops freely)."""
    text = transcript.strip()
    return (
        text.endswith((".", "!"))
        and not text.endswith("...")
        and len(text.split()) >= 3
        and not sounds_unfinished(text)
    )


def end_of_turn_silence(
    transcript: str, *, normal: float, unfinished: float, question: float, finished: float
) -> float:
    """How much silence should end the turn, given the words heard before the pause."""
    if sounds_unfinished(transcript):
        return max(normal, unfinished)
    if sounds_complete_question(transcript):
        return min(normal, question)
    if sounds_complete_statement(transcript):
        return min(normal, finished)
    return normal


_NUMBER_WORDS = frozenset(
    "zero oh one two three four five six seven eight nine ten eleven twelve".split()
)


def _is_number_word(word: str) -> bool:
    return word in _NUMBER_WORDS
