"""One stretch of user speech, as the listener hears it: its audio, its STT stream, and the
words and audio of any earlier turn it continues (turns/continuation.py)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import numpy as np

from voxloop.providers.base import Transcript

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


MODEL_RATE = 16000


class AudioQueue:
    """An async iterator over audio chunks that a producer feeds and closes.

    The consumer gets everything that arrived since it last looked, joined into one
    chunk: on a busy server several client frames wait at once, and each chunk costs the
    VAD and STT loops a pass of their own."""

    def __init__(self) -> None:
        self._chunks: list[np.ndarray] = []
        self._closed = False
        self._waiter: asyncio.Future[None] | None = None

    def put(self, chunk: np.ndarray) -> None:
        if not self._closed:
            self._chunks.append(chunk)
            self._wake()

    def close(self) -> None:
        self._closed = True
        self._wake()

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    async def __aiter__(self) -> AsyncIterator[np.ndarray]:
        while True:
            if self._chunks:
                chunks, self._chunks = self._chunks, []
                yield chunks[0] if len(chunks) == 1 else np.concatenate(chunks)
            elif self._closed:
                return
            else:
                self._waiter = asyncio.get_running_loop().create_future()
                try:
                    await self._waiter
                finally:
                    self._waiter = None


@dataclass
class Utterance:
    """One stretch of user speech: its turn id, its audio so far, and its STT stream."""

    turn_id: int
    stream: AudioQueue
    stt_task: asyncio.Task[Transcript | None] | None  # None: transcribed as a whole at the end
    audio: list[np.ndarray] = field(default_factory=list)
    speech_end_at: float | None = None  # clock time the speech stopped (set at pauses/end)
    ended_at: float | None = None  # clock time the turn detector ended the turn
    speech_s: float = 0.0  # speech heard in it (set when the turn ends)
    carried: Carried | None = None  # an earlier turn the user went on from (continuation.py)
    # Speech over the agent: "" (none), "pending" (agent paused, words awaited), "dismissed"
    # (a backchannel or echo: the agent carried on), "interrupt" (the user took the floor).
    overlap: str = ""

    def samples(self) -> np.ndarray:
        return np.concatenate(self.audio) if self.audio else np.zeros(0, np.float32)

    def joined(self, text: str) -> str:
        """The turn's words: any carried from the turn it continues, then its own."""
        return join(self.carried.text, text) if self.carried is not None else text

    def context_samples(self) -> np.ndarray:
        """Its audio after the carried turn's, for the end-of-turn judge."""
        if self.carried is None:
            return self.samples()
        return np.concatenate([self.carried.audio, self.samples()])

    def carried_speech_s(self) -> float:
        return self.carried.speech_s if self.carried is not None else 0.0
