"""The WebSocket loop every endpoint shares: it moves frames between a WebSocket and a
`Session` through the endpoint's `Profile` (profile.py), and enforces the per-connection
limits on the way (frame size, message rate, idle time, session length, a client too
slow to read). Admission (capacity, credentials) happened before, in endpoints.py."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import struct
import time

from fastapi import WebSocket, WebSocketDisconnect
from starlette.websockets import WebSocketState

from voxloop.config.server import LimitSettings
from voxloop.memory.conversation import StoreWriter
from voxloop.server.gate import Gate
from voxloop.server.limits import CLOSE_POLICY
from voxloop.server.transports.profile import Frame, Profile
from voxloop.session.principal import OPERATOR, Principal
from voxloop.session.services import Services
from voxloop.session.session import Session

log = logging.getLogger("voxloop.ws")

NORMAL = 1000
INTERNAL_ERROR = 1011
# A close frame carries at most 125 bytes: the 2-byte code, then the reason in UTF-8.
MAX_CLOSE_REASON_BYTES = 123


def close_reason(reason: str) -> str:
    """`reason` as it fits in a close frame: at most 123 bytes of UTF-8, cut between
    characters (with "…" to show it was). A longer reason makes the server fail the close
    itself, and the client sees 1006 (connection lost) instead of the code. Every close
    goes through here: a reason may carry what a client sent (a profile name, an origin)."""
    data = reason.encode("utf-8", "replace")  # a lone surrogate cannot go out as it is
    if len(data) <= MAX_CLOSE_REASON_BYTES:
        return data.decode("utf-8")
    ellipsis = "…"
    room = MAX_CLOSE_REASON_BYTES - len(ellipsis.encode("utf-8"))
    return data[:room].decode("utf-8", "ignore") + ellipsis  # "ignore": a cut character


class _Closing(Exception):
    """End the connection with this close code and reason (`abort`: reset it instead,
    since a close frame could never get through)."""

    def __init__(self, code: int, reason: str, *, abort: bool = False) -> None:
        super().__init__(reason)
        self.code, self.reason, self.abort = code, reason, abort


async def serve_websocket(
    websocket: WebSocket,
    services: Services,
    profile: Profile | None = None,
    subprotocol: str | None = None,
    gate: Gate | None = None,
    ip: str | None = None,
    principal: Principal = OPERATOR,
) -> None:
    """Three tasks per connection: the reader (the profile's opening, then client frames
    into the session), the sender (the session's messages out, once the opening frames
    are) and a watchdog (idle time, session length). The first to end ends the
    connection, with its reason."""
    profile = profile or Profile()
    limits = services.settings.limits if gate is None else gate.limits
    ip = ip or (websocket.client.host if websocket.client else "unknown")
    await websocket.accept(subprotocol=subprotocol)
    session = Session(services, principal)
    send = _Sender(websocket, asyncio.Lock(), limits)
    reader = _Reader(websocket, session, profile, send, gate, limits, ip)
    tasks = [
        asyncio.create_task(_send_loop(send, session, services, reader), name="ws-send"),
        asyncio.create_task(reader.run(), name="ws-read"),
        asyncio.create_task(reader.watch(), name="ws-watch"),
    ]
    closing = _Closing(NORMAL, "")
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for task in done:
            error = None if task.cancelled() else task.exception()
            if isinstance(error, _Closing):
                closing = error
            elif error is not None:
                log.error("connection task %s failed", task.get_name(), exc_info=error)
                closing = _Closing(INTERNAL_ERROR, "internal error")
    except _Closing as exc:
        closing = exc
    finally:
        for task in tasks:
            task.cancel()
        # Shielded: the server may cancel this handler when the peer goes away, and the
        # session's clean-up must still run to the end.
        await asyncio.shield(session.close())
        await asyncio.gather(*tasks, return_exceptions=True)
        await _close(websocket, closing)
        log.info(
            "session disconnected",
            extra={"session_id": session.session_id, "reason": closing.reason},
        )


class _Reader:
    """Client frames into the session, through the per-connection limits."""

    def __init__(
        self,
        websocket: WebSocket,
        session: Session,
        profile: Profile,
        send: _Sender,
        gate: Gate | None,
        limits: LimitSettings,
        ip: str,
    ) -> None:
        self.websocket, self.session, self.profile, self.send = websocket, session, profile, send
        self.gate, self.limits = gate, limits
        self.ip = ip
        self.last_frame_at = self.started_at = time.monotonic()
        self._warned_at = -1.0
        self.opened = asyncio.Event()  # the profile's open is done and its frames are out

    async def run(self) -> None:
        """Open the profile, then read. Nothing the client sent is handled before the
        opening is complete: a client may send at once (OpenAI's examples send
        `session.update` before reading anything), and the profile's opening may start
        the session that its frames need."""
        try:
            await self.send(await self.profile.open(self.session))
            self.opened.set()
            await self._read()
        finally:
            self.send.stopped = True  # the call is over: nothing more goes out

    async def _read(self) -> None:
        while not self.profile.closing(self.session):
            try:
                message = await self.websocket.receive()
            except (WebSocketDisconnect, RuntimeError):
                return
            if message["type"] == "websocket.disconnect":
                return
            self.last_frame_at = time.monotonic()
            frame = message.get("text")
            if frame is None:
                frame = message.get("bytes")
            if frame is not None and self._allowed(frame):
                if isinstance(frame, str):
                    await self.send(await self.profile.on_text(self.session, frame))
                else:
                    await self.send(await self.profile.on_bytes(self.session, frame))

    def _allowed(self, frame: str | bytes) -> bool:
        if self.gate is not None and not self.gate.message_allowed(self.ip):
            now = time.monotonic()
            if now - self._warned_at >= 1.0:  # say it once a second, not once a frame
                self._warned_at = now
                self.session.error(
                    "rate_limited", f"too many messages from {self.ip}; frames dropped"
                )
            return False
        if len(frame) > self.limits.max_frame_bytes:
            self.session.error(
                "frame_too_large",
                f"a frame of {len(frame)} bytes is over the {self.limits.max_frame_bytes}-byte "
                "limit (limits.max_frame_bytes)",
            )
            return False
        return True

    async def watch(self) -> None:
        """Raise `_Closing` when the client has been silent too long or the session has
        lasted too long."""
        lim = self.limits
        while True:
            now = time.monotonic()
            idle_at = self.last_frame_at + lim.idle_timeout_s
            end_at = self.started_at + lim.max_session_s
            if now >= end_at:
                raise _Closing(NORMAL, f"session time limit reached ({lim.max_session_s:g} s)")
            if now >= idle_at:
                raise _Closing(NORMAL, f"idle: nothing received for {lim.idle_timeout_s:g} s")
            if self.session.ending.is_set():  # taken over, or a refused start
                code, reason, abort = self.session.ended_with
                raise _Closing(code, reason, abort=abort)
            with contextlib.suppress(TimeoutError):
                wait = min(idle_at, end_at) - now
                await asyncio.wait_for(self.session.ending.wait(), wait)


async def _close(websocket: WebSocket, closing: _Closing) -> None:
    """Hang up properly (the code and reason reach the client) if the socket is open;
    reset it if that cannot work (a client that does not read) or does not in 5 s."""
    if closing.abort and _abort(websocket):
        return
    if websocket.application_state != WebSocketState.CONNECTED:
        return
    if websocket.client_state != WebSocketState.CONNECTED:
        return
    try:
        await asyncio.wait_for(websocket.close(closing.code, close_reason(closing.reason)), 5.0)
    except TimeoutError:
        _abort(websocket)
    except (RuntimeError, WebSocketDisconnect, OSError):
        pass


def _abort(websocket: WebSocket) -> bool:
    """Reset the connection at once. A server closes a socket politely, once every byte
    it has buffered is out; a client that stopped reading never takes them, so its socket
    (and up to megabytes of kernel buffer) would stay for as long as the client likes.
    Under uvicorn the transport is the owner of the ASGI `receive` callable; elsewhere (a
    test client, another server) there may be none: False, nothing done."""
    owner = getattr(getattr(websocket, "_receive", None), "__self__", None)
    transport = getattr(owner, "transport", None)
    if not callable(getattr(transport, "abort", None)):  # asyncio's or uvloop's transport
        return False
    sock = transport.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):  # linger 0: close sends RST, drops the buffer
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()
    log.info("connection reset", extra={"client": getattr(owner, "client", None)})
    return True


class _Sender:
    """Sends frames one at a time; a client that takes longer than
    `limits.send_timeout_s` to take one is too slow to keep up and is dropped, so
    nothing piles up on the server for it."""

    def __init__(self, websocket: WebSocket, lock: asyncio.Lock, limits: LimitSettings) -> None:
        self.websocket, self.lock, self.timeout_s = websocket, lock, limits.send_timeout_s
        self.stopped = False

    async def __call__(self, frames: list[Frame]) -> None:
        if not frames or self.stopped:
            return
        async with self.lock:
            for frame in frames:
                send = (
                    self.websocket.send_bytes(frame)
                    if isinstance(frame, bytes)
                    else self.websocket.send_text(frame)
                )
                try:
                    async with asyncio.timeout(self.timeout_s):  # no task per frame
                        await send
                except TimeoutError:
                    raise _Closing(
                        CLOSE_POLICY,
                        f"client too slow: a frame waited over {self.timeout_s:.0f} s",
                        abort=True,
                    ) from None


async def _send_loop(send: _Sender, session: Session, services: Services, reader: _Reader) -> None:
    events, profile = services.events, reader.profile
    # Redis mode: every event sent also goes, in order, to the session's queue in Redis,
    # where any worker can read it (GET /api/sessions/{id}/events).
    mirror = StoreWriter(lambda exc: log.warning("event queue write failed: %r", exc))
    try:
        await reader.opened.wait()  # the profile's opening frames go first
        while True:
            msg = await session.outbox.get()
            await send(profile.render(session, msg))
            if msg.audio is None and events is not None and msg.json is not None:
                sid, event = session.session_id, msg.json
                mirror.submit(lambda sid=sid, event=event: events.push(sid, event))
    except (EOFError, WebSocketDisconnect, RuntimeError):
        return  # the session ended or the peer went away
    finally:
        await asyncio.shield(mirror.close())
