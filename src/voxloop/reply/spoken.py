"""From the LLM's text stream to the sentences the voice says, with guards that don't rely
on the model's good will.

`SpokenText` wraps the sentence splitter. Each sentence is made speakable, then admitted
or refused:

- **Loops.** Small models repeat themselves ("sunscreen, sunscreen, sunglasses, …" for
  97 s). The reply ends at the last clean point on: a sentence said before, a 3-gram's
  third time in the reply or a word's third time running (a sentence that repeats itself
  inside is cut where it began repeating), or a sentence that runs on past `RUN_ON_WORDS`
  without an end.
- **Length.** A spoken reply has a budget (about 20 s of speech unless the user asks for
  more: a story, a detailed explanation). The reply ends at the last sentence that fits.
- **Parroting.** A sentence that repeats what the user just said is dropped (unless they
  asked for it: "repeat after me", "say …"). An early first clause that could be the
  start of such a copy is held until its sentence is complete.

Once `stopped` is set, the caller stops reading the LLM, which stops its decoding.
"""

from __future__ import annotations

import re
import zlib
from collections import Counter
from dataclasses import dataclass, field

from voxloop.config.reply import ReplySettings
from voxloop.providers.base import Message
from voxloop.reply.sentences import SentenceSplitter, split_sentences
from voxloop.reply.speakable import speakable

RUN_ON_WORDS = 60  # a "sentence" this long without an end is a list or a loop
_LONG_ASK = re.compile(
    r"\b(?:stor(?:y|ies)|poem|in (?:more )?detail|detailed|step[- ]by[- ]step|at length|"
    r"everything about|all (?:the|of the)|tell me more|explain (?:fully|thoroughly)|"
    r"long(?:er)? (?:answer|explanation|version)|go on|keep going|continue|read me|recipe)\b",
    re.IGNORECASE,
)
_PARROT_OK = re.compile(
    r"\b(?:repeat|say|spell|read|echo|recite|pronounce|translate|quote)\b", re.IGNORECASE
)


# Said back and forth as they are: "Thank you." "Thank you!"
_SMALL_TALK = re.compile(
    r"\W*(?:hi|hello|hey|thanks|thank you|good (?:morning|afternoon|evening|night)|bye|"
    r"goodbye|see you|cheers|you too|same to you|nice to meet you)\b",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class SpokenBudget:
    """How much a reply may say, in seconds of speech, estimated from its characters."""

    max_s: float = 20.0
    long_s: float = 60.0  # when the user asks for a long answer
    chars_per_s: float = 14.0  # the voice's speed; Piper's joe-medium says ~15 a second

    def seconds(self, text: str) -> float:
        """Digits count five characters each: "57.1" is said "fifty-seven point one"."""
        digits = sum(ch.isdigit() for ch in text)
        return (len(text) + 4 * digits) / self.chars_per_s

    def for_request(self, user_text: str) -> float:
        return self.long_s if asks_for_long(user_text) else self.max_s


def asks_for_long(user_text: str) -> bool:
    return bool(_LONG_ASK.search(user_text))


def _norm(text: str) -> str:
    return " ".join(re.findall(r"[a-z0-9']+", text.lower().replace("’", "'")))


_PERSON = frozenset(
    "i me my mine myself i'm i've i'll i'd you your yours yourself you're you've you'll you'd"
    " am are".split()
)


def _persons(text: str) -> list[str]:
    """Words with first and second person folded together: "I'm bored" ~ "you're bored"."""
    return ["*" if w in _PERSON else w for w in _norm(text).split()]


@dataclass(frozen=True)
class SpokenGuards:
    """Which guards a reply gets (`ReplySettings`)."""

    budget: SpokenBudget = SpokenBudget()
    stop_loops: bool = True
    drop_parrots: bool = True
    # Said when the model only repeated the user's words, even when asked again: a
    # statement ("Mary rolled the barrel.") must not get silence.
    no_answer: str = ""

    @classmethod
    def from_settings(cls, s: ReplySettings) -> SpokenGuards:
        budget = SpokenBudget(s.max_spoken_s, s.long_spoken_s, s.chars_per_s)
        return cls(budget, s.stop_loops, s.drop_parrots, s.no_answer)


# For text we wrote ourselves (the safety replies): made speakable, never cut.
UNGUARDED = SpokenGuards(SpokenBudget(float("inf"), float("inf")), False, False)


@dataclass
class SpokenText:
    """Feed LLM deltas with `push`; say what it returns; `flush` at the end."""

    user_text: str
    guards: SpokenGuards = SpokenGuards()
    early_first_clause: bool = False

    sentences: list[str] = field(default_factory=list)  # admitted, speakable
    stopped: str | None = None  # "loop" or "length": the reply was ended here
    parrots: int = 0  # sentences dropped as a copy of the user's words

    def __post_init__(self) -> None:
        self.budget = self.guards.budget
        self.stop_loops = self.guards.stop_loops
        self._splitter = SentenceSplitter(early_first_clause=self.early_first_clause)
        self._limit_s = self.budget.for_request(self.user_text)
        users = [*split_sentences(self.user_text), self.user_text]
        # An answer may restate a question ("Is the sun a star?" "The sun is a star."): only
        # a question said back as a question, or a statement as a statement, is a copy.
        self._user = [
            (set(_persons(u)), u.rstrip().endswith("?"))
            for u in users
            if len(_norm(u).split()) >= 2
        ]
        self._user_starts = [_norm(u) for u in users if len(_norm(u).split()) >= 3]
        self._check_parrots = (
            self.guards.drop_parrots
            and not _PARROT_OK.search(self.user_text)
            and not _SMALL_TALK.match(self.user_text)
        )
        self._held = ""  # an early clause that may start a copy of the user's words

    @property
    def text(self) -> str:
        return " ".join(self.sentences)

    @property
    def seconds(self) -> float:
        return self.budget.seconds(self.text)

    def push(self, delta: str) -> list[str]:
        if self.stopped:
            return []
        out = self._admit_all(self._splitter.push(delta))
        if not self.stopped and self.stop_loops:
            out += self._check_pending()
        return out

    def flush(self) -> list[str]:
        if self.stopped:
            return []
        pending = self._splitter.flush()
        if self._held:
            pending = [f"{self._held} {' '.join(pending)}".strip()]
            self._held = ""
        return self._admit_all(pending, final=True)

    # -- the guards -------------------------------------------------------------------------

    def _admit_all(self, pieces: list[str], final: bool = False) -> list[str]:
        out: list[str] = []
        for piece in pieces:
            if self.stopped:
                break
            if self._held:
                piece, self._held = f"{self._held} {piece}", ""
            elif not final and not self.sentences and self._may_start_a_copy(piece):
                self._held = piece
                continue
            spoken = self._admit(speakable(piece))
            if spoken:
                out.append(spoken)
        return out

    def _admit(self, spoken: str) -> str | None:
        if not spoken:
            return None
        if self._check_parrots and self._is_copy(spoken):
            self.parrots += 1
            return None
        if self.stop_loops and self._said_before(spoken):
            self.stopped = "loop"
            return None
        if self.stop_loops and _has_loop(_norm(spoken).split()):
            spoken = _cut_loop(spoken)
            self.stopped = "loop"
            if not spoken:
                return None
        if self.sentences and self.budget.seconds(f"{self.text} {spoken}") > self._limit_s:
            self.stopped = "length"
            return None
        if not self.sentences and self.budget.seconds(spoken) > self._limit_s:
            spoken = _cut_to(spoken, self.budget, self._limit_s)
            self.stopped = "length"
        self.sentences.append(spoken)
        return spoken

    def _is_copy(self, spoken: str) -> bool:
        """Nothing but the user's own words (pronouns swapped or not), most of them."""
        said, asks = set(_persons(spoken)), spoken.rstrip().endswith("?")
        if len(said) < 2:
            return False
        return any(
            asks == question and said <= user and len(said) >= 0.7 * len(user)
            for user, question in self._user
        )

    def _may_start_a_copy(self, piece: str) -> bool:
        """An early clause (not a whole sentence) that begins like one of the user's."""
        if not self._check_parrots or piece.rstrip().endswith((".", "!", "?")):
            return False
        said = _norm(piece)
        return len(said.split()) >= 3 and any(u.startswith(said) for u in self._user_starts)

    def _said_before(self, spoken: str) -> bool:
        """The same sentence again (a one-word one a third time), or across the reply a
        3-gram's third time or a word's third time running."""
        said = _norm(spoken)
        earlier = [_norm(s) for s in self.sentences]
        if said and earlier.count(said) >= (1 if len(said.split()) >= 2 else 2):
            return True
        words = _norm(f"{self.text} {spoken}").split()
        if any(words[i] == words[i - 1] == words[i - 2] for i in range(2, len(words))):
            return True
        grams = Counter(tuple(words[i : i + 3]) for i in range(len(words) - 2))
        return bool(grams) and max(grams.values()) >= 3

    def copies_user(self, text: str) -> bool:
        """Would the guard drop `text` as the user's own words said back?"""
        return self._check_parrots and self._is_copy(text)

    def _check_pending(self) -> list[str]:
        """A loop or run-on inside a sentence that never ends: say its clean start if the
        reply has nothing yet, and stop."""
        pending = self._splitter.peek()
        words = _norm(pending).split()
        runaway = len(words) > RUN_ON_WORDS or _has_loop(words)
        if not runaway and not _compresses_like_a_loop(pending):
            return []
        self._splitter = SentenceSplitter()  # the runaway text is dropped
        cut = "" if self.sentences else _cut_loop(speakable(f"{self._held} {pending}"))
        self._held = ""
        self.stopped = "loop"
        if cut and self.budget.seconds(cut) > self._limit_s:
            cut = _cut_to(cut, self.budget, self._limit_s)
        if cut:
            self.sentences.append(cut)
            return [cut]
        return []


_DOUBLES_OK = frozenset({"that", "very", "really", "knock", "bye", "haha", "okay", "well"})


def ask_again(messages: list[Message]) -> list[Message]:
    """The request once more, told not to say the user's words back (the last message is
    the user's)."""
    last = messages[-1]
    nudge = "(Answer me; do not repeat my words back.)"
    return [*messages[:-1], Message(last.role, f"{last.content}\n{nudge}")]


def _has_loop(words: list[str]) -> bool:
    for i in range(1, len(words)):
        if words[i] == words[i - 1] and (
            (i > 1 and words[i] == words[i - 2])
            or (len(words[i]) >= 4 and words[i] not in _DOUBLES_OK)
        ):
            return True
    grams = Counter(tuple(words[i : i + 3]) for i in range(len(words) - 2))
    return bool(grams) and max(grams.values()) >= 3


def _compresses_like_a_loop(text: str) -> bool:
    data = text.encode("utf-8", "replace")
    return len(data) > 160 and len(data) / len(zlib.compress(data)) > 2.6


def _cut_loop(spoken: str) -> str:
    """The text up to where it starts repeating itself, ended as a sentence."""
    tokens = spoken.split()
    seen: set[str] = set()
    keep: list[str] = []
    for token in tokens:
        word = _norm(token)
        if word and word in seen and keep and _norm(keep[-1]) == word:
            break
        keep.append(token)
        seen.add(word)
        gram = [_norm(t) for t in keep[-3:]]
        if len(keep) >= 6 and _count_gram(keep[:-3], gram) >= 1:
            keep = keep[:-3]
            break
    return _end_sentence(" ".join(keep))


def _count_gram(tokens: list[str], gram: list[str]) -> int:
    words = [_norm(t) for t in tokens]
    n = len(gram)
    return sum(1 for i in range(len(words) - n + 1) if words[i : i + n] == gram)


def _cut_to(spoken: str, budget: SpokenBudget, limit_s: float) -> str:
    """The longest start of `spoken` that fits `limit_s`, at a clause mark in its second
    half if there is one, else at a word."""
    words = spoken.split()
    keep = 0
    while keep < len(words) and budget.seconds(" ".join(words[: keep + 1])) <= limit_s:
        keep += 1
    head = " ".join(words[:keep])
    mark = max(head.rfind(","), head.rfind(";"), head.rfind(":"))
    if mark > len(head) // 2:
        head = head[:mark]
    return _end_sentence(head)


_DANGLING = re.compile(r"(?:[\s,;:—-]+|\b(?:and|or|but|with|the|a|an|of|to)\b)+$", re.I)


def _end_sentence(text: str) -> str:
    text = _DANGLING.sub("", text)
    if text and text[-1] not in ".!?":
        text += "."
    return text
