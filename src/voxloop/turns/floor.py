"""The agent's floor as the turn helpers see it: the reply that holds it, the few acts that
change it, the shared models, and the session's plumbing.

The session's `Replies` implements `Floor`. The helpers (overlap, speculation,
continuation, transcripts) get it, the `Models` and a `Plumbing` instead of the session,
so they can act on the reply without reaching into the rest of it, and a test can hand
them fakes.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any, Protocol

from voxloop.clock import Clock
from voxloop.protocol.outbox import Outbox
from voxloop.providers.base import STTProvider
from voxloop.reply.pipeline import Reply
from voxloop.telemetry.metrics import TurnMetrics


class Floor(Protocol):
    @property
    def reply(self) -> Reply | None:
        """The reply that has the floor (playing, or about to), if any."""
        ...

    @property
    def last_reply(self) -> Reply | None:
        """The reply that had it last: what the agent said, for echo checks."""
        ...

    async def interrupt(self, reason: str) -> None:
        """Stop the reply that has the floor: a barge-in, a new turn."""
        ...

    async def answer(
        self, turn_id: int, text: str, speech_end_at: float | None, metrics: TurnMetrics
    ) -> None:
        """A finished turn's words: stop what is playing and reply to them."""
        ...

    def adopt(self, reply: Reply) -> None:
        """A reply made at a pause and held back takes the floor."""
        ...

    async def withdraw(self, turn_id: int) -> None:
        """Take back turn `turn_id`'s reply, which nobody has heard yet."""
        ...


class Models(Protocol):
    """Where a helper finds the speech recognizer: the process's shared models (`Services`),
    read at each use rather than kept, so that a swapped provider takes effect at once."""

    stt: STTProvider


@dataclass(frozen=True)
class Plumbing:
    """A session's facilities: its clock, its outbox, events stamped with its id, errors
    for the client, and tasks that die with it."""

    clock: Clock
    outbox: Outbox
    event: Callable[..., dict[str, Any]]  # (type, turn_id=None, **fields) → an event
    error: Callable[[str, str, int | None], None]  # (code, message, turn_id)
    spawn: Callable[[Coroutine[Any, Any, Any], str], asyncio.Task]
    session_id: Callable[[], str]  # provisional until 'start' names the session

    def say(self, type_: str, turn_id: int | None = None, **fields: Any) -> None:
        """An event on the data lane (in order with the audio)."""
        self.outbox.data(self.event(type_, turn_id, **fields))

    def log_extra(self, turn_id: int | None = None, **fields: Any) -> dict[str, Any]:
        return {"session_id": self.session_id(), "turn_id": turn_id, **fields}
