"""A wire profile: how one client protocol maps onto the session core, without a web
framework. Every endpoint (`/ws` and its profiles, Twilio Media Streams, the OpenAI
Realtime API) is one `Profile` and the same WebSocket loop (ws.py), so no client forks
the pipeline: a profile turns the client's frames into `Session` calls, and the
session's outgoing messages (`OutMessage`: voxloop events and PCM16 audio) into the
client's frames."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from voxloop.protocol.outbox import OutMessage
    from voxloop.session.session import Session

Frame = str | bytes  # a text frame or a binary frame


class Profile:
    """The native voxloop protocol (docs/protocol.md). Subclasses override what differs.

    One instance serves one connection, so it may keep per-connection state."""

    name = "voxloop"

    async def open(self, session: Session) -> list[Frame]:
        """Frames to send as soon as the connection is accepted."""
        return []

    async def on_text(self, session: Session, raw: str) -> list[Frame]:
        """A text frame from the client; returns frames to send back at once (if any)."""
        await session.handle_text_frame(raw)
        return []

    async def on_bytes(self, session: Session, data: bytes) -> list[Frame]:
        session.handle_audio_frame(data)
        return []

    def render(self, session: Session, msg: OutMessage) -> list[Frame]:
        """One outgoing session message as the client's frames (none: not for this client)."""
        if msg.audio is not None:
            return [msg.audio]
        return [json.dumps(msg.json)]

    def closing(self, session: Session) -> bool:
        """True once the client asked to end the call (e.g. Twilio's `stop`)."""
        return False
