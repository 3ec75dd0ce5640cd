"""The conversation REST API: list, read, export and delete sessions; change a live
session's context.

Everything reads the store, so it sees every worker's sessions. A context change goes to
the store and, if the session is connected to this process, straight to it (another
worker picks it up from the store before its next reply).
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Coroutine
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.routing import APIRoute
from pydantic import BaseModel, ConfigDict, Field, field_validator

from voxloop.session.services import Services
from voxloop.store.base import ID_RULE, valid_session_id

MAX_FACT_CHARS = 1000  # one fact
MAX_FACTS_CHARS = 4000  # all of a session's facts: about 1000 tokens of the system prompt
# Far past any real listing, and small enough for every store (SQLite's are 64-bit).
MAX_OFFSET = 2**31 - 1


class _OneLineErrors(APIRoute):
    """Every error of this API is `{"detail": "<one line>"}`, a malformed parameter or body
    (422) too, instead of FastAPI's list of problem objects: one shape for clients to
    read, and a message that names the field."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def route(request: Request) -> Response:
            try:
                return await handler(request)
            except RequestValidationError as exc:
                return JSONResponse({"detail": validation_message(exc)}, status_code=422)
            except (ConnectionError, sqlite3.OperationalError) as exc:  # the store is down
                detail = f"the session store is unavailable: {exc}"
                return JSONResponse(
                    {"detail": detail}, status_code=503, headers={"Retry-After": "5"}
                )

        return route


def validation_message(exc: RequestValidationError) -> str:
    """One line, e.g. `offset: Input should be ...; limit: ...` (each location without its
    leading "query", "path" or "body")."""
    problems = []
    for err in exc.errors():
        loc = [str(part) for part in err.get("loc", ())]
        if err.get("type") == "json_invalid":  # its location is a character offset
            ctx = err.get("ctx") or {}
            problems.append(f"body: malformed JSON ({ctx.get('error', 'JSON decode error')})")
            continue
        where = ".".join(loc[1:]) or ".".join(loc) or "request"
        problems.append(f"{where}: {err.get('msg', 'invalid')}")
    return "; ".join(problems) or "invalid request"


router = APIRouter(prefix="/api/sessions", tags=["sessions"], route_class=_OneLineErrors)


class ContextUpdate(BaseModel):
    """Fields left out stay as they are; "" (or []) clears one."""

    model_config = ConfigDict(extra="forbid")

    instructions: str | None = Field(None, max_length=8000)
    facts: list[Annotated[str, Field(max_length=MAX_FACT_CHARS)]] | None = Field(
        None, max_length=100
    )
    persona: str | None = Field(None, max_length=8000)

    @field_validator("facts")
    @classmethod
    def _facts_fit(cls, facts: list[str] | None) -> list[str] | None:
        """Facts go into every reply's system prompt: together they must leave the LLM
        room for the conversation (a 1 MB fact made every reply fail)."""
        total = sum(len(f) for f in facts or ())
        if total > MAX_FACTS_CHARS:
            raise ValueError(
                f"{total} characters of facts in all, over the {MAX_FACTS_CHARS}-character limit"
            )
        return facts


def _services(request: Request) -> Services:
    return request.app.state.services


def _check_id(session_id: str) -> None:
    if not valid_session_id(session_id):
        raise HTTPException(400, f"session id must be {ID_RULE}")


def _live(services: Services, session_id: str):
    return next((s for s in services.live_sessions if s.session_id == session_id), None)


@router.get("")
async def list_sessions(
    request: Request,
    offset: int = Query(0, ge=0, le=MAX_OFFSET),
    limit: int = Query(50, ge=1, le=500),
) -> dict[str, Any]:
    """Newest first, `limit` at a time."""
    services = _services(request)
    page = await services.store.list_sessions(offset=offset, limit=limit)
    live = {s.session_id for s in services.live_sessions}
    for meta in page.sessions:
        meta["live"] = meta["session_id"] in live
    return {
        "sessions": page.sessions,
        "total": page.total,
        "offset": page.offset,
        "limit": page.limit,
        "next_offset": offset + limit if offset + limit < page.total else None,
    }


async def _record(request: Request, session_id: str) -> dict[str, Any]:
    _check_id(session_id)
    services = _services(request)
    record = await services.store.load(session_id)
    if record is None:
        raise HTTPException(404, f"no session {session_id!r}")
    data = record.to_json()
    data["live"] = _live(services, session_id) is not None
    return data


@router.get("/{session_id}")
async def get_session(request: Request, session_id: str) -> dict[str, Any]:
    """The whole transcript, with each turn's interrupted flag and stage latencies."""
    return await _record(request, session_id)


@router.get("/{session_id}/export")
async def export_session(request: Request, session_id: str) -> JSONResponse:
    """The same as a download."""
    data = await _record(request, session_id)
    return JSONResponse(
        data,
        headers={"Content-Disposition": f'attachment; filename="voxloop-{session_id}.json"'},
    )


@router.delete("/{session_id}", status_code=204)
async def delete_session(request: Request, session_id: str) -> Response:
    _check_id(session_id)
    services = _services(request)
    if not await services.store.delete(session_id):
        raise HTTPException(404, f"no session {session_id!r}")
    if services.events is not None:
        await services.events.drop(session_id)
    live = _live(services, session_id)
    if live is not None:  # forget it in memory too; the connection itself stays
        live.forget()
    return Response(status_code=204)


@router.put("/{session_id}/context")
async def put_context(request: Request, session_id: str, update: ContextUpdate) -> dict[str, Any]:
    """Change instructions, facts or persona; the session's next LLM call uses them."""
    _check_id(session_id)
    services = _services(request)
    live = _live(services, session_id)
    if live is not None and live.state is not None:
        live.apply_context(
            instructions=update.instructions, facts=update.facts, persona=update.persona
        )
        await live.state.writer.flush()
        return {"session_id": session_id, "live": True, **live.state.context()}
    record = await services.store.load(session_id)
    if record is None:
        raise HTTPException(404, f"no session {session_id!r}")
    if update.instructions is not None:
        record.instructions = update.instructions or None
    if update.facts is not None:
        record.facts = list(update.facts)
    if update.persona is not None:
        record.persona = update.persona or None
    record.updated_at = time.time()
    await services.store.save_meta(record)
    return {
        "session_id": session_id,
        "live": False,
        "persona": record.persona,
        "instructions": record.instructions,
        "facts": record.facts,
    }


@router.get("/{session_id}/events")
async def get_events(
    request: Request,
    session_id: str,
    after: str | None = Query(None, max_length=64),
    limit: int = Query(1000, ge=1, le=5000),
) -> dict[str, Any]:
    """Redis mode: the session's events in order (after the id `after`), from any worker."""
    _check_id(session_id)
    services = _services(request)
    if services.events is None:
        raise HTTPException(404, "the event queue exists in Redis mode only (redis_url)")
    try:
        events = await services.events.read(session_id, after=after, limit=limit)
    except ValueError as exc:  # `after` is not an event id
        raise HTTPException(422, f"after: {exc}") from None
    return {"events": [{"id": i, **e} for i, e in events]}
