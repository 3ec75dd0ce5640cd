"""A turn is not over until the agent has spoken: speech that resumes first continues it.

Someone reading aloud, or pausing for effect ("Ever tried. … Ever failed."), makes pauses
that sound complete to the end-of-turn judge and to the word rules alike. Ending the turn
there costs nothing as long as the agent has not said anything yet: if the user goes on
before the reply's first audio, the reply is withdrawn without a trace (no history, no
audio), the client is told (`turn_continued`), and the earlier words and audio are carried
into the new utterance, whose answer then covers everything that was said. Once the agent
has been heard, speech over it is a barge-in as before (overlap.py).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# The judge reads at most this much audio; older carried audio is of no use to it.
KEEP_AUDIO_S = 8.0


@dataclass(frozen=True)
class Carried:
    """The words of an ended turn that the user went on from, for the turn that follows
    (a passage read with many pauses carries all of its earlier parts)."""

    turn_id: int  # the withdrawn turn
    text: str
    audio: np.ndarray  # its last KEEP_AUDIO_S of 16 kHz audio, for the end-of-turn judge
    speech_s: float  # how long the user had been talking: a reader stays a reader


def join(carried: str, text: str) -> str:
    """The whole turn's words: what was carried, then what followed."""
    return f"{carried.strip()} {text.strip()}".strip()


def continues(
    *,
    enabled: bool,
    reply_audible: bool,
    voice_turn: bool,
    since_end_s: float,
    window_s: float,
) -> bool:
    """Does speech that starts now continue the turn that ended `since_end_s` ago?"""
    return enabled and voice_turn and not reply_audible and 0.0 <= since_end_s <= window_s
