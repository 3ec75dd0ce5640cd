"""A local server that speaks the OpenAI chat-completions streaming wire format (SSE), with
scripted misbehaviour: 429 with Retry-After, 500, 400, a slow first byte, a connection
dropped mid-stream, a malformed chunk. Each request takes the next mode from `script`."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, StreamingResponse
from starlette.routing import Route

ANSWER = "Paris is the capital of France."


@dataclass
class FakeOpenAI:
    url: str = ""
    script: list[str] = field(default_factory=list)
    requests: list[dict] = field(default_factory=list)
    headers: list[dict] = field(default_factory=list)
    answer: str = ANSWER
    slow_s: float = 5.0

    async def completions(self, request: Request):
        self.requests.append(await request.json())
        self.headers.append(dict(request.headers))
        mode = self.script.pop(0) if self.script else "ok"
        if mode == "429":
            return JSONResponse(
                {"error": {"message": "Rate limit reached"}},
                status_code=429,
                headers={"Retry-After": "0.05"},
            )
        if mode in ("500", "400"):
            return JSONResponse({"error": {"message": f"error {mode}"}}, status_code=int(mode))
        return StreamingResponse(self._events(mode), media_type="text/event-stream")

    async def _events(self, mode: str):
        if mode == "slow":
            await asyncio.sleep(self.slow_s)
        words = self.answer.split(" ")
        for i, word in enumerate(words):
            delta = word if i == 0 else " " + word
            chunk = {
                "id": "chatcmpl-1",
                "object": "chat.completion.chunk",
                "choices": [{"index": 0, "delta": {"content": delta}, "finish_reason": None}],
            }
            yield f"data: {json.dumps(chunk)}\n\n"
            if mode == "drop" and i == 1:
                raise RuntimeError("connection dropped on purpose")
            if mode == "malformed" and i == 1:
                yield "data: {this is not json\n\n"
        yield 'data: {"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}\n\n'
        yield "data: [DONE]\n\n"


@contextmanager
def fake_openai_server() -> Iterator[FakeOpenAI]:
    fake = FakeOpenAI()
    app = Starlette(routes=[Route("/v1/chat/completions", fake.completions, methods=["POST"])])
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, port=port, log_level="critical"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline:
            raise RuntimeError("the fake OpenAI server did not start")
        time.sleep(0.02)
    fake.url = f"http://127.0.0.1:{port}/v1"
    try:
        yield fake
    finally:
        server.should_exit = True
        thread.join(timeout=10)
