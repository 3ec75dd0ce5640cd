"""The WebSocket loop every endpoint shares: it moves frames between a WebSocket and a
`Session` through the endpoint's `Profile` (profile.py), nothing more."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from fastapi import WebSocket, WebSocketDisconnect

from voxloop.conversation import StoreWriter
from voxloop.services import Services
from voxloop.session import Session
from voxloop.transport.profile import Frame, Profile

log = logging.getLogger("voxloop.ws")


async def serve_websocket(
    websocket: WebSocket,
    services: Services,
    profile: Profile | None = None,
    subprotocol: str | None = None,
) -> None:
    profile = profile or Profile()
    await websocket.accept(subprotocol=subprotocol)
    session = Session(services)
    lock = asyncio.Lock()  # two tasks send: the replies to client frames, and the session's
    sender = asyncio.create_task(_send_loop(websocket, session, services, profile, lock))
    try:
        await _send(websocket, lock, await profile.open(session))
        while not profile.closing(session):
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                break
            if (text := message.get("text")) is not None:
                await _send(websocket, lock, await profile.on_text(session, text))
            elif (data := message.get("bytes")) is not None:
                await _send(websocket, lock, await profile.on_bytes(session, data))
    except WebSocketDisconnect:
        pass
    finally:
        sender.cancel()
        # Shielded: the server may cancel this handler when the peer goes away, and the
        # session's clean-up must still run to the end.
        await asyncio.shield(session.close())
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await sender
        log.info("session disconnected", extra={"session_id": session.session_id})


async def _send(websocket: WebSocket, lock: asyncio.Lock, frames: list[Frame]) -> None:
    if not frames:
        return
    async with lock:
        for frame in frames:
            if isinstance(frame, bytes):
                await websocket.send_bytes(frame)
            else:
                await websocket.send_text(frame)


async def _send_loop(
    websocket: WebSocket,
    session: Session,
    services: Services,
    profile: Profile,
    lock: asyncio.Lock,
) -> None:
    events = services.events
    # Redis mode: every event sent also goes, in order, to the session's queue in Redis,
    # where any worker can read it (GET /api/sessions/{id}/events).
    mirror = StoreWriter(lambda exc: log.warning("event queue write failed: %r", exc))
    try:
        while True:
            msg = await session.outbox.get()
            await _send(websocket, lock, profile.render(session, msg))
            if msg.audio is None and events is not None and msg.json is not None:
                sid, event = session.session_id, msg.json
                mirror.submit(lambda sid=sid, event=event: events.push(sid, event))
    except (EOFError, WebSocketDisconnect, RuntimeError):
        return  # the session ended or the peer went away
    finally:
        await asyncio.shield(mirror.close())
