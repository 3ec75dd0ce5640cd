"""Is speech that overlaps the agent an interruption, a backchannel, or the agent's echo?

When the user makes a sound while the agent speaks, the agent pauses at once (so a real
interruption is obeyed quickly) and the words decide what happens next:

- `interrupt`: a cue ("stop", "wait", "no") or a few recognised words that are neither
  backchannels ("mm-hmm", "yeah", "right") nor words the agent itself is saying: the
  reply is cancelled.
- `backchannel`: only listener noises: the agent carries on from where it paused.
- `echo`: only the agent's own words (a speakerphone with no echo cancellation): carry on.
- `empty`: no words yet; the agent waits a little, then carries on.

Comparing words with the reply's own text is the text-level half of echo handling: the
server knows exactly what it is saying, so hearing it back is not news.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from typing import Literal, Protocol

import numpy as np

from voxloop.clock import Clock
from voxloop.providers.base import STTProvider, transcribe_all
from voxloop.wer import normalize

Verdict = Literal["empty", "backchannel", "echo", "interrupt"]

# Listener noises and agreement that do not ask for the floor. Whisper's habitual
# hallucinations on faint audio ("thank you", "you") are here too: they are not a request
# to stop either way.
BACKCHANNELS = frozenset(
    """
    mm mmm mhm hm hmm uh huh um umm uhm ah oh ooh aha yeah yea yeh yep yup yes ya right
    okay ok kay alright sure cool nice great wow really gotcha i see got it true exactly
    indeed totally good fine thank thanks you
    """.split()
)


# Words that ask for the floor even alone ("stop", "wait", "no..."): one is enough.
CUES = frozenset(
    "stop wait no nope hold hang pause sorry excuse hey actually listen cancel quiet enough".split()
)
FOREIGN_NEEDED = 3  # foreign words that make an interruption without a cue
POLL_S = 0.02  # how often the judge looks whether enough speech has come in
RECENT_S = 2.0  # while a dismissed overlap goes on, only its latest audio is checked


def _agent_word(word: str, agent: set[str]) -> bool:
    if word in agent:
        return True
    # Recognising faint, delayed audio gets endings wrong ("sunday's" for "sundays",
    # "closing" for "closes").
    if len(word) <= 3:
        return False
    if any(len(a) > 3 and a[:4] == word[:4] for a in agent):
        return True
    return bool(difflib.get_close_matches(word, agent, n=1, cutoff=0.75))


def foreign_words(
    transcript: str, agent_text: str, *, cut: tuple[bool, bool] = (False, False)
) -> list[str]:
    """The words of `transcript` that are neither backchannels nor the agent's own.
    `cut` = (start, end): the audio was cut mid-word there (a window, or speech still
    going on), so that edge's word is unreliable ("the music" for "the museum") and left
    out, unless it is a cue like "stop"."""
    agent = set(normalize(agent_text))
    words = normalize(transcript)
    if cut[1] and words and words[-1] not in CUES:
        words = words[:-1]
    if cut[0] and words and words[0] not in CUES:
        words = words[1:]
    # Single letters are recognition debris ("mm-m-o"), not words anyone interrupts with.
    # A cue is the agent's own only if it said exactly that ("wait" is not "what").
    return [
        w
        for w in words
        if len(w) > 1
        and w not in BACKCHANNELS
        and (w not in agent if w in CUES else not _agent_word(w, agent))
    ]


def overlap_verdict(
    transcript: str, agent_text: str, *, cut: tuple[bool, bool] = (False, False)
) -> Verdict:
    """What speech heard while the agent talks amounts to (see the module docstring).

    Faint echo mixed with a backchannel comes back as a few wrong words ("causes that sex"
    for "closes at six"), so it takes a cue that asks for the floor ("stop", "wait", "no")
    or `FOREIGN_NEEDED` foreign words. Tuned on `voxloop eval turns --seed 1`, checked on
    other seeds (docs/benchmarks.md)."""
    words = normalize(transcript)
    if not words:
        return "empty"
    foreign = foreign_words(transcript, agent_text, cut=cut)
    if len(foreign) >= FOREIGN_NEEDED or CUES.intersection(foreign):
        return "interrupt"
    if any(w not in BACKCHANNELS for w in words):
        return "echo"
    return "backchannel"


class Pausable(Protocol):
    """What the judge needs of a reply (`pipeline.Reply`)."""

    sentences: list[str]

    @property
    def done(self) -> bool: ...


async def judge_overlap(
    reply: Pausable,
    samples: Callable[[], np.ndarray],
    *,
    stt: STTProvider,
    clock: Clock,
    check_s: float,
    timeout_s: float,
    still_talking: Callable[[], bool],
    undecided: Callable[[], bool],
    speech_s: Callable[[], float],
    first_after_s: float,
) -> tuple[Verdict, str] | None:
    """While the agent is paused for the user's speech, transcribe it once `first_after_s`
    of speech is in (or the user stopped: "Stop."), then every `check_s`, until the words
    decide: an interruption or the agent's echo at once; a backchannel or nothing once the
    user stops talking (or after `timeout_s`). None if the question went away meanwhile
    (the reply ended, or another path decided)."""
    started = clock.now()
    while still_talking() and speech_s() < first_after_s and clock.now() - started < timeout_s:
        await clock.sleep(POLL_S)
    while True:
        if reply.done or not undecided():
            return None
        text = (await transcribe_all(stt, samples())).text.strip()
        if reply.done or not undecided():
            return None
        talking = still_talking()
        verdict = overlap_verdict(text, " ".join(reply.sentences), cut=(False, talking))
        if verdict in ("interrupt", "echo"):
            return verdict, text
        if not talking or clock.now() - started >= timeout_s:
            return verdict, text
        await clock.sleep(check_s)


async def watch_overlap(
    reply: Pausable,
    samples: Callable[[], np.ndarray],
    *,
    stt: STTProvider,
    clock: Clock,
    every_s: float,
    still_on: Callable[[], bool],
    still_talking: Callable[[], bool],
) -> str | None:
    """After a backchannel or echo was let go, keep listening to the speech that goes on
    (its latest `RECENT_S` only): returns the words once they amount to an interruption,
    None when the speech or the reply ends first."""
    while True:
        await clock.sleep(every_s)
        if reply.done or not still_on():
            return None
        audio = samples()
        window = int(RECENT_S * stt.sample_rate)
        text = (await transcribe_all(stt, audio[-window:])).text.strip()
        if reply.done or not still_on():
            return None
        cut = (len(audio) > window, still_talking())
        if overlap_verdict(text, " ".join(reply.sentences), cut=cut) == "interrupt":
            return text
