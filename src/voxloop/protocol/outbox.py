"""A session's outgoing messages, in two lanes: control jumps ahead of data.

The data lane keeps a reply's events and audio in order (tts_start, audio…, tts_end). The
control lane (tts_stop, acknowledgements, errors, pongs, status) is always sent first, so a
barge-in reaches the client before any audio still waiting. `drop_audio(turn_id)` removes
a cancelled reply's queued audio and events in one step.

What waits is bounded (`max_bytes`): a client that stops reading would otherwise hold a
reply's audio, and every event after it, in the server's memory until it is cut.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

JSON_BYTES = 256  # what a queued event is counted as (events are small; audio is counted)


@dataclass(frozen=True)
class OutMessage:
    json: dict[str, Any] | None = None
    audio: bytes | None = None
    turn_id: int | None = None
    sentence: int | None = None  # audio: which sentence of the reply it belongs to

    @property
    def nbytes(self) -> int:
        return len(self.audio) if self.audio is not None else 0

    @property
    def weight(self) -> int:
        """What it counts for against the outbox's bound."""
        return len(self.audio) if self.audio is not None else JSON_BYTES


class Outbox:
    def __init__(
        self, max_bytes: int | None = None, on_overflow: Callable[[int], None] | None = None
    ) -> None:
        """`max_bytes`: the most that may wait; past it nothing more is queued and
        `on_overflow(max_bytes)` is called, once (the transport then drops the client)."""
        self._control: deque[OutMessage] = deque()
        self._data: deque[OutMessage] = deque()
        self._ready = asyncio.Event()
        self.closed = False
        self.max_bytes, self.on_overflow = max_bytes, on_overflow
        self.waiting_bytes = 0
        self.overflowed = False

    def control(self, payload: dict[str, Any]) -> None:
        self._put(self._control, OutMessage(json=payload, turn_id=payload.get("turn_id")))

    def data(self, payload: dict[str, Any]) -> None:
        self._put(self._data, OutMessage(json=payload, turn_id=payload.get("turn_id")))

    def audio(self, pcm: bytes, turn_id: int, sentence: int | None = None) -> None:
        self._put(self._data, OutMessage(audio=pcm, turn_id=turn_id, sentence=sentence))

    def _put(self, lane: deque[OutMessage], msg: OutMessage) -> None:
        if self.overflowed:
            return
        if self.max_bytes is not None and self.waiting_bytes + msg.weight > self.max_bytes:
            self.overflowed = True
            if self.on_overflow is not None:
                self.on_overflow(self.max_bytes)
            return
        self.waiting_bytes += msg.weight
        lane.append(msg)
        self._ready.set()

    def _taken(self, msg: OutMessage) -> OutMessage:
        self.waiting_bytes -= msg.weight
        return msg

    def drop_turn(self, turn_id: int, keep_events: frozenset[str] = frozenset()) -> int:
        """Remove queued data of a cancelled turn; returns the audio bytes dropped."""
        dropped = 0
        kept: deque[OutMessage] = deque()
        for msg in self._data:
            if msg.turn_id == turn_id and not (msg.json and msg.json["type"] in keep_events):
                dropped += msg.nbytes
                self.waiting_bytes -= msg.weight
            else:
                kept.append(msg)
        self._data = kept
        return dropped

    def pending_audio_bytes(self) -> int:
        return sum(m.nbytes for m in self._data)

    def __len__(self) -> int:
        return len(self._control) + len(self._data)

    async def get(self) -> OutMessage:
        while True:
            if self._control:
                return self._taken(self._control.popleft())
            if self._data:
                return self._taken(self._data.popleft())
            if self.closed:
                raise EOFError("outbox closed")
            self._ready.clear()
            await self._ready.wait()

    def get_nowait(self) -> OutMessage | None:
        if self._control:
            return self._taken(self._control.popleft())
        if self._data:
            return self._taken(self._data.popleft())
        return None

    def close(self) -> None:
        self.closed = True
        self._ready.set()


class HeldOutbox:
    """An outbox front that holds everything back until `release()`, or drops it all.

    A speculative reply writes here: if the user was really done, its events go out in
    order; if the user goes on talking, nothing it did ever reaches the client.
    """

    def __init__(self, target: Outbox) -> None:
        self._target = target
        self._held: list[tuple[str, object, int | None]] | None = []

    @property
    def released(self) -> bool:
        return self._held is None

    def control(self, payload: dict[str, Any]) -> None:
        self._put("control", payload, None)

    def data(self, payload: dict[str, Any]) -> None:
        self._put("data", payload, None)

    def audio(self, pcm: bytes, turn_id: int, sentence: int | None = None) -> None:
        self._put("audio", (pcm, sentence), turn_id)

    def drop_turn(self, turn_id: int, keep_events: frozenset[str] = frozenset()) -> int:
        if self._held is not None:
            dropped = sum(len(p[0]) for k, p, _ in self._held if k == "audio")  # type: ignore[index]
            self._held = []
            return dropped
        return self._target.drop_turn(turn_id, keep_events)

    def release(self) -> None:
        held, self._held = self._held, None
        for kind, payload, turn_id in held or []:
            self._forward(kind, payload, turn_id)

    def discard(self) -> None:
        self._held = []

    def _put(self, kind: str, payload: object, turn_id: int | None) -> None:
        if self._held is not None:
            self._held.append((kind, payload, turn_id))
        else:
            self._forward(kind, payload, turn_id)

    def _forward(self, kind: str, payload: object, turn_id: int | None) -> None:
        if kind == "audio":
            pcm, sentence = payload  # type: ignore[misc]
            self._target.audio(pcm, turn_id, sentence)  # type: ignore[arg-type]
        elif kind == "control":
            self._target.control(payload)  # type: ignore[arg-type]
        else:
            self._target.data(payload)  # type: ignore[arg-type]
