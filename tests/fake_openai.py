"""A local server that speaks two vendors' streaming wire formats (SSE): OpenAI chat
completions (`/v1/chat/completions`) and Anthropic Messages (`/v1/messages`), with scripted
misbehaviour: 429 with Retry-After, 500 (529 for Anthropic), 400, a slow first byte, a
connection dropped mid-stream, a malformed chunk, an error event inside the stream. Each
request takes the next mode from `script`."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, StreamingResponse
from starlette.routing import Route

from fake_http import serving

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
        if mode == "tool":  # a tool call in pieces, as OpenAI streams it
            pieces = [
                {
                    "index": 0,
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "calculate", "arguments": ""},
                },
                {"index": 0, "function": {"arguments": '{"expres'}},
                {"index": 0, "function": {"arguments": 'sion": "17 * 3"}'}},
            ]
            for piece in pieces:
                chunk = {"choices": [{"index": 0, "delta": {"tool_calls": [piece]}}]}
                yield f"data: {json.dumps(chunk)}\n\n"
            done = {"choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]}
            yield f"data: {json.dumps(done)}\n\n"
            yield "data: [DONE]\n\n"
            return
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

    async def transcriptions(self, request: Request):
        """OpenAI transcription: a multipart WAV upload, a JSON answer."""
        form = await request.form()
        upload = form["file"]
        self.requests.append({"model": form.get("model"), "audio": await upload.read()})
        self.headers.append(dict(request.headers))
        mode = self.script.pop(0) if self.script else "ok"
        if mode in ("500", "400"):
            return JSONResponse({"error": {"message": f"error {mode}"}}, status_code=int(mode))
        return JSONResponse({"text": " What is the capital of France? "})

    async def speech(self, request: Request):
        """OpenAI speech, `response_format=pcm`: raw 24 kHz PCM16, streamed in odd-sized
        pieces so that samples straddle chunk boundaries."""
        self.requests.append(await request.json())
        self.headers.append(dict(request.headers))
        mode = self.script.pop(0) if self.script else "ok"
        if mode in ("500", "400"):
            return JSONResponse({"error": {"message": f"error {mode}"}}, status_code=int(mode))
        pcm = (np.arange(24000) % 200 - 100).astype("<i2").tobytes()  # one second

        async def body():
            for start in range(0, len(pcm), 4801):
                yield pcm[start : start + 4801]
                await asyncio.sleep(0)

        return StreamingResponse(body(), media_type="audio/pcm")

    async def search(self, request: Request):
        """Tavily's search API."""
        self.requests.append(await request.json())
        self.headers.append(dict(request.headers))
        return JSONResponse(
            {
                "answer": "It is sunny in Rome.",
                "results": [{"title": "Weather", "content": "Rome: sunny, 24 C", "url": "x"}],
            }
        )

    async def messages(self, request: Request):
        """Anthropic Messages, streamed."""
        self.requests.append(await request.json())
        self.headers.append(dict(request.headers))
        mode = self.script.pop(0) if self.script else "ok"
        if mode in ("429", "529", "400"):
            kind = {
                "429": "rate_limit_error",
                "529": "overloaded_error",
                "400": "invalid_request_error",
            }
            return JSONResponse(
                {"type": "error", "error": {"type": kind[mode], "message": f"error {mode}"}},
                status_code=int(mode),
                headers={"Retry-After": "0.05"} if mode == "429" else {},
            )
        return StreamingResponse(self._anthropic_events(mode), media_type="text/event-stream")

    async def _anthropic_events(self, mode: str):
        def sse(kind: str, data: dict) -> str:
            return f"event: {kind}\ndata: {json.dumps({'type': kind, **data})}\n\n"

        if mode == "slow":
            await asyncio.sleep(self.slow_s)
        message = {
            "id": "msg_1",
            "type": "message",
            "role": "assistant",
            "content": [],
            "model": "claude-test",
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {"input_tokens": 12, "output_tokens": 1},
        }
        yield sse("message_start", {"message": message})
        if mode == "tool":  # a sentence, then a tool_use block whose input arrives in pieces
            yield sse(
                "content_block_start", {"index": 0, "content_block": {"type": "text", "text": ""}}
            )
            delta = {"type": "text_delta", "text": "Let me work that out."}
            yield sse("content_block_delta", {"index": 0, "delta": delta})
            yield sse("content_block_stop", {"index": 0})
            block = {"type": "tool_use", "id": "toolu_1", "name": "calculate", "input": {}}
            yield sse("content_block_start", {"index": 1, "content_block": block})
            for part in ('{"expres', 'sion": "17 * 3"}'):
                delta = {"type": "input_json_delta", "partial_json": part}
                yield sse("content_block_delta", {"index": 1, "delta": delta})
            yield sse("content_block_stop", {"index": 1})
            stop = {"delta": {"stop_reason": "tool_use", "stop_sequence": None}, "usage": {}}
            yield sse("message_delta", stop)
            yield sse("message_stop", {})
            return
        yield sse(
            "content_block_start", {"index": 0, "content_block": {"type": "text", "text": ""}}
        )
        yield sse("ping", {})
        for i, word in enumerate(self.answer.split(" ")):
            text = word if i == 0 else " " + word
            yield sse(
                "content_block_delta", {"index": 0, "delta": {"type": "text_delta", "text": text}}
            )
            if mode == "drop" and i == 1:
                raise RuntimeError("connection dropped on purpose")
            if mode == "error_event" and i == 1:
                yield sse("error", {"error": {"type": "overloaded_error", "message": "Overloaded"}})
                return
        yield sse("content_block_stop", {"index": 0})
        yield sse(
            "message_delta",
            {
                "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                "usage": {"output_tokens": 9},
            },
        )
        yield sse("message_stop", {})


@contextmanager
def fake_openai_server() -> Iterator[FakeOpenAI]:
    fake = FakeOpenAI()
    app = Starlette(
        routes=[
            Route("/v1/chat/completions", fake.completions, methods=["POST"]),
            Route("/v1/messages", fake.messages, methods=["POST"]),
            Route("/search", fake.search, methods=["POST"]),
            Route("/v1/audio/transcriptions", fake.transcriptions, methods=["POST"]),
            Route("/v1/audio/speech", fake.speech, methods=["POST"]),
        ]
    )
    with serving(app, "OpenAI") as url:
        fake.url = url + "/v1"
        yield fake
