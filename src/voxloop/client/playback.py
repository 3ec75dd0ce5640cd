"""How a reply's audio would have played: the client's model of a real-time player.

A reply arrives as chunks, each `(arrival time, seconds of audio)`. A player starts at the
first byte and plays on at real time; a chunk that arrives after the moment it was due
leaves a gap the listener hears (an *underrun*). Lateness is measured against that fixed
clock, so a server that falls further and further behind shows as growing lateness, not
as one small gap per chunk. The player itself waits out a gap, so the listener hears the
last word later than the fixed clock says: `playback_end_s` is when a caller who listens
to the whole answer is done.
"""

from __future__ import annotations

from collections.abc import Sequence

Chunk = tuple[float, float]  # (arrival, seconds of audio), on one clock
# Later than this is a gap; less is the jitter of our own measurement (one 20 ms frame).
UNDERRUN_SLACK_S = 0.02


def lateness_s(chunks: Sequence[Chunk]) -> float | None:
    """The worst lateness of any chunk against a playback clock started at the first
    chunk's arrival: chunk i is due when the audio before it has played. 0.0 when every
    chunk came in time; None without audio."""
    if not chunks:
        return None
    start = chunks[0][0]
    played = worst = 0.0
    for at, seconds in chunks:
        worst = max(worst, at - (start + played))
        played += seconds
    return worst


def underrun(chunks: Sequence[Chunk], slack_s: float = UNDERRUN_SLACK_S) -> bool:
    """Some chunk came later than it would have played (beyond the measurement's slack)."""
    late = lateness_s(chunks)
    return late is not None and late > slack_s


def playback_end_s(chunks: Sequence[Chunk]) -> float | None:
    """When a player that waits out each gap has played the last chunk; None without audio."""
    end: float | None = None
    for at, seconds in chunks:
        end = max(at, end if end is not None else at) + seconds
    return end


def played_s(chunks: Sequence[Chunk], now: float) -> float:
    """Seconds of the reply such a player has played by `now` (for `playback` reports)."""
    end: float | None = None
    played = 0.0
    for at, seconds in chunks:
        if at > now:
            break
        start = max(at, end if end is not None else at)
        if now < start + seconds:
            return played + max(0.0, now - start)
        played += seconds
        end = start + seconds
    return played
