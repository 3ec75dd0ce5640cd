"""Is speech that overlaps the agent an interruption, a backchannel, or the agent's echo?

When the user makes a sound while the agent speaks, the agent pauses at once (so a real
interruption is obeyed quickly) and the words (for echo, the audio too) decide what
happens next:

- `interrupt`: a cue ("stop", "wait", "no"), a few recognised words that are neither
  backchannels ("mm-hmm", "yeah", "right") nor words the agent itself is saying, or any
  word that is not a backchannel when the audio shows no echo: the reply is cancelled.
- `backchannel`: only listener noises (or one over the agent's echo, below): the agent
  carries on from where it paused.
- `echo`: the agent's own voice coming back (a speakerphone with no echo cancellation):
  carry on.
- `empty`: no words yet; the agent waits a little, then carries on.

Echo takes audio evidence (`echo.EchoGate.echo_evidence`): words that merely resemble
the agent's prove nothing ("Fail again." over "Try again."), and with no echo path (a
headset, echo cancellation, a recording) they are the user's. The speech is `echo` when
the played audio explains most of its energy (`ECHO_EXPLAINED`). When it explains less,
but part of the stretch is the echo alone (`ECHO_PRESENT`: a "mm-hmm" amid the echo),
the agent's words in it are taken for its echo and the rest decides, as words alone did
before: echo that the audio proves is misheard ("causes that sex" for "closes at six"),
so a cue or `FOREIGN_NEEDED` foreign words interrupt whatever the audio says.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from functools import partial
from typing import Literal, Protocol, TypeAlias

import numpy as np

from voxloop.clock import Clock
from voxloop.hearing.echo import NO_EVIDENCE, EchoEvidence
from voxloop.hearing.wer import normalize
from voxloop.providers.base import STTProvider, transcribe_all

Verdict = Literal["empty", "backchannel", "echo", "interrupt"]
# The echo evidence for a stretch of the utterance's audio: (samples, index of their first
# sample in the utterance) -> how much of it the agent's played audio explains.
Evidence: TypeAlias = Callable[[np.ndarray, int], EchoEvidence]


def no_echo(samples: np.ndarray, first: int) -> EchoEvidence:
    """No reference of what was played: no evidence of echo."""
    return NO_EVIDENCE


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
# The share of the speech's voiced energy the agent's played audio must explain for it to
# be echo. Synthetic echo (30-400 ms, gain 0.1-0.6, noise, reflections) scores 0.7-1; a
# recorded voice with no echo path 0.05-0.4, over an echo as loud as itself 0.1-0.5
# (tests/test_echo_evidence.py).
ECHO_EXPLAINED = 0.6
# The share of the speech's voiced time that must be the echo alone for the agent's words
# in it to be taken for echo: a recorded voice with no echo path scores 0-0.1 (hardly a
# 100 ms of it sounds like the agent), a backchannel in 2 s of echo 0.6-1, one that the
# opt-in frame gate let through with its pre-roll of echo 0.3-0.5.
ECHO_PRESENT = 0.3
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


def _words(transcript: str, cut: tuple[bool, bool]) -> list[str]:
    """The words that count. `cut` = (start, end): the audio was cut mid-word there (a
    window, or speech still going on), so that edge's word is unreliable ("the music" for
    "the museum") and left out, unless it is a cue like "stop". Single letters are
    recognition debris ("mm-m-o"), not words anyone interrupts with."""
    words = normalize(transcript)
    if cut[1] and words and words[-1] not in CUES:
        words = words[:-1]
    if cut[0] and words and words[0] not in CUES:
        words = words[1:]
    return [w for w in words if len(w) > 1]


def foreign_words(
    transcript: str, agent_text: str, *, cut: tuple[bool, bool] = (False, False)
) -> list[str]:
    """The words of `transcript` that are neither backchannels nor the agent's own
    (edge words of a `cut` as in `_words`)."""
    agent = set(normalize(agent_text))
    # A cue is the agent's own only if it said exactly that ("wait" is not "what").
    return [
        w
        for w in _words(transcript, cut)
        if w not in BACKCHANNELS and (w not in agent if w in CUES else not _agent_word(w, agent))
    ]


def overlap_verdict(
    transcript: str,
    agent_text: str,
    *,
    cut: tuple[bool, bool] = (False, False),
    echo: EchoEvidence | Callable[[], EchoEvidence] = NO_EVIDENCE,
) -> Verdict:
    """What speech heard while the agent talks amounts to (see the module docstring).

    `echo` is the audio evidence, or a function that measures it: it is only asked for
    when the words leave the question open. The word rules were tuned on `voxloop eval
    turns --seed 1` and checked on other seeds (docs/benchmarks.md)."""
    if not normalize(transcript):
        return "empty"
    foreign = foreign_words(transcript, agent_text, cut=cut)
    if len(foreign) >= FOREIGN_NEEDED or CUES.intersection(foreign):
        return "interrupt"
    if all(w in BACKCHANNELS for w in _words(transcript, cut)):
        return "backchannel"
    evidence = echo() if callable(echo) else echo
    if evidence.energy >= ECHO_EXPLAINED:
        return "echo"
    if evidence.time >= ECHO_PRESENT:
        return "backchannel"  # the agent's words are its echo; the user's sound, no word
    return "interrupt"


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
    echo: Evidence = no_echo,
) -> tuple[Verdict, str] | None:
    """While the agent is paused for the user's speech, transcribe it once `first_after_s`
    of speech is in (or the user stopped: "Stop."), then every `check_s`, until the words
    (and for echo the audio, `echo`) decide: an interruption or the agent's echo at once;
    a backchannel or nothing once the user stops talking (or after `timeout_s`). None if
    the question went away meanwhile (the reply ended, or another path decided)."""
    started = clock.now()
    while still_talking() and speech_s() < first_after_s and clock.now() - started < timeout_s:
        await clock.sleep(POLL_S)
    while True:
        if reply.done or not undecided():
            return None
        audio = samples()
        text = (await transcribe_all(stt, audio)).text.strip()
        if reply.done or not undecided():
            return None
        talking = still_talking()
        verdict = overlap_verdict(
            text,
            " ".join(reply.sentences),
            cut=(False, talking),
            echo=partial(echo, audio, 0),
        )
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
    echo: Evidence = no_echo,
) -> str | None:
    """After a backchannel or echo was let go, keep listening to the speech that goes on
    (its latest `RECENT_S` only): returns the words once they amount to an interruption
    (words the played audio does not explain count, as in `overlap_verdict`), None when
    the speech or the reply ends first."""
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
        first = max(0, len(audio) - window)
        verdict = overlap_verdict(
            text, " ".join(reply.sentences), cut=cut, echo=partial(echo, audio[first:], first)
        )
        if verdict == "interrupt":
            return text
