"""The `/ws` endpoint: moves frames between a WebSocket and a `Session`, nothing more."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from fastapi import WebSocket, WebSocketDisconnect

from voxloop.conversation import StoreWriter
from voxloop.services import Services
from voxloop.session import Session

log = logging.getLogger("voxloop.ws")


async def serve_websocket(websocket: WebSocket, services: Services) -> None:
    await websocket.accept()
    session = Session(services)
    sender = asyncio.create_task(_send_loop(websocket, session, services))
    try:
        while True:
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                break
            if (text := message.get("text")) is not None:
                await session.handle_text_frame(text)
            elif (data := message.get("bytes")) is not None:
                session.handle_audio_frame(data)
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


async def _send_loop(websocket: WebSocket, session: Session, services: Services) -> None:
    events = services.events
    # Redis mode: every event sent also goes, in order, to the session's queue in Redis,
    # where any worker can read it (GET /api/sessions/{id}/events).
    mirror = StoreWriter(lambda exc: log.warning("event queue write failed: %r", exc))
    try:
        while True:
            msg = await session.outbox.get()
            if msg.audio is not None:
                await websocket.send_bytes(msg.audio)
                continue
            await websocket.send_json(msg.json)
            if events is not None and msg.json is not None:
                sid, event = session.session_id, msg.json
                mirror.submit(lambda sid=sid, event=event: events.push(sid, event))
    except (EOFError, WebSocketDisconnect, RuntimeError):
        return  # the session ended or the peer went away
    finally:
        await asyncio.shield(mirror.close())
