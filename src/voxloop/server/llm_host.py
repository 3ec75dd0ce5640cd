"""The configured LLM behind an OpenAI-compatible chat API, for workers that share a model host.

`voxloop serve-models --llm-port 10400` serves `POST /v1/chat/completions` (streamed as
server-sent events, or whole) and `GET /v1/models`. With the embedded llama.cpp model the
replies of every worker's conversations decode together in its batch engine. Workers use
it as any OpenAI-compatible server: `VOXLOOP_LLM__PROVIDER=openai`,
`VOXLOOP_LLM__BASE_URL=http://host:10400/v1`.

A request beyond what the model can take at once plus one more round of it waiting is
answered 503 with Retry-After at once: a worker's retries and fallbacks are better than a
wait longer than its timeout. Tools are not offered (the answer comes as plain text). There
is no authentication: bind it to a trusted network, as the Wyoming port.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any, Literal

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, Field, ValidationError
from starlette.background import BackgroundTask

from voxloop.providers.base import LLMProvider, Message

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 1 << 20


class _Part(BaseModel):
    type: str = "text"
    text: str = ""


class _Message(BaseModel):
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[_Part] | None = None


class ChatRequest(BaseModel):
    model: str | None = None
    messages: list[_Message] = Field(min_length=1)
    stream: bool = False
    max_tokens: int | None = Field(None, ge=1, le=8192)
    max_completion_tokens: int | None = Field(None, ge=1, le=8192)
    temperature: float | None = Field(None, ge=0.0, le=2.0)

    def voxloop_messages(self) -> list[Message]:
        out = []
        for m in self.messages:
            content = m.content if isinstance(m.content, str) else ""
            if isinstance(m.content, list):
                content = "".join(p.text for p in m.content if p.type == "text")
            role = "system" if m.role == "developer" else m.role
            out.append(Message(role, content))  # type: ignore[arg-type]
        return out


def _error(status: int, message: str, kind: str, retry_after: int | None = None) -> JSONResponse:
    headers = {"Retry-After": str(retry_after)} if retry_after is not None else None
    return JSONResponse(
        {"error": {"message": message, "type": kind, "code": status}},
        status_code=status,
        headers=headers,
    )


def llm_api(llm: LLMProvider, model: str, *, max_waiting: int | None = None) -> FastAPI:
    """The app. `max_waiting`: requests in hand (served or queued) beyond which the next is
    refused with 503; default: twice what the model decodes at once."""
    app = FastAPI(title="voxloop LLM", docs_url=None, redoc_url=None, openapi_url=None)
    members = getattr(llm, "providers", None)  # a fallback chain: its first answers
    engine = getattr(members[0] if members else llm, "engine", None)
    limit = max_waiting or (2 * len(engine.slots) if engine is not None else 4)
    state = {"open": 0}

    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        return {"object": "list", "data": [{"id": model, "object": "model", "owned_by": "voxloop"}]}

    @app.get("/healthz")
    async def health() -> dict[str, Any]:
        return {"status": "ok", "open": state["open"], "limit": limit}

    @app.post("/v1/chat/completions", response_model=None)
    async def chat(request: Request) -> JSONResponse | StreamingResponse:
        body = await request.body()
        if len(body) > MAX_BODY_BYTES:
            return _error(413, f"the body is over {MAX_BODY_BYTES} bytes", "invalid_request_error")
        try:
            wanted = ChatRequest.model_validate_json(body)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"]) or "body"
            return _error(400, f"{where}: {first['msg']}", "invalid_request_error")
        if state["open"] >= limit:
            return _error(
                503, f"the model is busy ({state['open']} requests in hand)", "server_busy", 1
            )
        messages = wanted.voxloop_messages()
        tokens = wanted.max_completion_tokens or wanted.max_tokens
        # Counted from here, not from the stream's first step: a burst of streamed
        # requests must meet the limit too. `release` runs once, however the request ends.
        state["open"] += 1
        released = False

        def release() -> None:
            nonlocal released
            if not released:
                released = True
                state["open"] -= 1

        chunks = _generate(llm, messages, tokens, wanted.temperature, release)
        reply_id = f"chatcmpl-{uuid.uuid4().hex[:24]}"
        if wanted.stream:
            return StreamingResponse(
                _events(chunks, reply_id, model),
                media_type="text/event-stream",
                background=BackgroundTask(release),
            )
        try:
            async with contextlib.aclosing(chunks):
                text = "".join([c async for c in chunks])
        except ValueError as exc:  # e.g. a prompt longer than the context
            return _error(400, str(exc), "invalid_request_error")
        except Exception as exc:
            log.exception("LLM request failed")
            return _error(500, f"{type(exc).__name__}: {exc}", "server_error")
        finally:
            release()
        return JSONResponse(_completion(reply_id, model, text))

    return app


async def _generate(
    llm: LLMProvider,
    messages: list[Message],
    max_tokens: int | None,
    temperature: float | None,
    release: Callable[[], None],
) -> AsyncIterator[str]:
    stream = llm.generate(messages, max_tokens=max_tokens, temperature=temperature)
    try:
        async with contextlib.aclosing(stream):
            async for delta in stream:
                yield delta
    finally:
        release()


def _chunk(reply_id: str, model: str, delta: dict[str, Any], finish: str | None) -> str:
    body = {
        "id": reply_id,
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }
    return f"data: {json.dumps(body)}\n\n"


async def _events(chunks: AsyncIterator[str], reply_id: str, model: str) -> AsyncIterator[str]:
    """Server-sent events as OpenAI streams them; a failure mid-stream is an `error`
    object in the stream (the status line has gone already)."""
    yield _chunk(reply_id, model, {"role": "assistant", "content": ""}, None)
    try:
        # Closed however this ends (a client that hangs up cancels us at a `yield`): the
        # model's stream stops at once instead of decoding for nobody.
        async with contextlib.aclosing(chunks):
            async for delta in chunks:
                yield _chunk(reply_id, model, {"content": delta}, None)
    except Exception as exc:
        log.exception("LLM stream failed")
        error = {"error": {"message": f"{type(exc).__name__}: {exc}", "type": "server_error"}}
        yield f"data: {json.dumps(error)}\n\n"
        return
    yield _chunk(reply_id, model, {}, "stop")
    yield "data: [DONE]\n\n"


def _completion(reply_id: str, model: str, text: str) -> dict[str, Any]:
    return {
        "id": reply_id,
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": text},
                "finish_reason": "stop",
            }
        ],
    }


async def serve_llm(app: FastAPI, sock: Any) -> None:
    """Serve `app` on an already bound socket until cancelled."""
    import uvicorn

    config = uvicorn.Config(app, log_config=None, access_log=False, lifespan="off")
    server = uvicorn.Server(config)
    server.capture_signals = contextlib.nullcontext  # type: ignore[method-assign]  # the command's
    try:
        await server.serve(sockets=[sock])
    finally:
        server.should_exit = True
