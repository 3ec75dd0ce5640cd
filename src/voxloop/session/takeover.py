"""One live connection per session id: a newer connection that resumes the id takes it
over from the older one, on this worker and (through `Services.handover`, with Redis)
on the others. The older connection is ended once its last turn is stored, so the newer
one reads it all."""

from __future__ import annotations

import logging
from collections.abc import Iterable

from voxloop.session.services import HandOver, LiveSession

log = logging.getLogger("voxloop.session.takeover")


async def take_over(
    me: object, session_id: str, live: Iterable[LiveSession], bus: HandOver | None
) -> None:
    for other in list(live):
        if other is not me and other.session_id == session_id:
            log.info("session taken over by a new connection", extra={"session_id": session_id})
            await other.hand_over()
    if bus is None:
        return
    try:
        if await bus.claim(session_id):
            log.info("session taken over from another worker", extra={"session_id": session_id})
    except Exception as exc:  # the session goes on; two workers may hold it for a while
        log.warning(
            "cannot ask other workers to hand over: %r", exc, extra={"session_id": session_id}
        )


async def hold(bus: HandOver | None, session_id: str, held: bool) -> None:
    """Tell the other workers that this one has `session_id` live (`held`) or not."""
    if bus is None:
        return
    try:
        await (bus.hold(session_id) if held else bus.release(session_id))
    except Exception as exc:
        log.warning(
            "cannot record the live session in Redis: %r", exc, extra={"session_id": session_id}
        )
