"""A reply started at a pause, before anyone knows whether the user has finished.

The session transcribes and starts answering as soon as the user pauses, writing into a
held outbox behind a closed gate. If the pause turns out to be the end of the turn, the
session adopts the reply and releases it; if the user goes on talking, `discard()` cancels
everything it started and nothing of it reaches the client or the history.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from voxloop.listener import Utterance
from voxloop.outbox import HeldOutbox
from voxloop.pipeline import Reply
from voxloop.providers.base import Transcript


@dataclass
class Speculation:
    """A reply started at a pause, before the turn is known to be over."""

    utterance: Utterance
    outbox: HeldOutbox
    gate: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task | None = None
    transcript: Transcript | None = None
    transcript_at: float | None = None
    reply: Reply | None = None

    def release(self) -> None:
        self.outbox.release()
        self.gate.set()

    async def discard(self) -> None:
        """Cancel everything it started; it leaves nothing in history or on the wire."""
        if self.task is not None and not self.task.done():
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)
        if self.reply is not None:
            await self.reply.close()
        self.outbox.discard()
