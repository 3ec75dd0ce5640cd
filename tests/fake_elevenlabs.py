"""A local server that speaks ElevenLabs' streaming text-to-speech wire format:
`POST /v1/text-to-speech/{voice_id}/stream?output_format=pcm_<rate>` with an `xi-api-key`
header and a JSON body, answered with raw PCM16 in odd-sized pieces (so that samples
straddle chunk boundaries), or with an error in the vendor's JSON shape
(`{"detail": {"status", "message"}}`; a FastAPI list of problems for 422).

It checks what a real server would reject (key, voice id, output format, body) and takes
scripted misbehaviour per request from `script`: "429" (with Retry-After), "500", "401",
"422", "slow" (a late first byte), "drop" (the connection cut after the first chunk),
"long" (audio that goes on until the client hangs up)."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, StreamingResponse
from starlette.routing import Route

from fake_http import serving

KEY = "xi-test-very-secret-456"
VOICE = "JBFqnCBsd6RMkjVDRZzb"
RATES = (8000, 16000, 22050, 24000, 32000, 44100, 48000)
PIECE = 4801  # bytes per chunk: odd, so a sample straddles every boundary


def fake_pcm(rate: int) -> np.ndarray:
    """Half a second of a deterministic sawtooth at `rate`."""
    return (np.arange(rate // 2) % 200 - 100).astype(np.int16)


def _error(status: int, kind: str, message: str, **headers: str) -> JSONResponse:
    return JSONResponse(
        {"detail": {"status": kind, "message": message}}, status_code=status, headers=headers
    )


def _invalid(loc: list[str], msg: str) -> JSONResponse:
    """FastAPI's validation error, which is what ElevenLabs answers with 422."""
    problem = {"type": "value_error", "loc": loc, "msg": msg, "input": None}
    return JSONResponse({"detail": [problem]}, status_code=422)


@dataclass
class FakeElevenLabs:
    url: str = ""
    script: list[str] = field(default_factory=list)
    requests: list[dict] = field(default_factory=list)
    slow_s: float = 5.0
    hung_up: threading.Event = field(default_factory=threading.Event)

    async def stream(self, request: Request):
        raw = await request.body()
        self.requests.append(
            {
                "voice_id": request.path_params["voice_id"],
                "query": dict(request.query_params),
                "headers": dict(request.headers),
                "body": raw,
            }
        )
        mode = self.script.pop(0) if self.script else "ok"
        if mode == "429":
            return _error(
                429,
                "too_many_concurrent_requests",
                "Too many concurrent requests for your plan.",
                **{"Retry-After": "1.5"},
            )
        if mode == "500":
            return _error(500, "internal_error", "An internal error occurred.")
        if mode == "401" or request.headers.get("xi-api-key") != KEY:
            return _error(401, "invalid_api_key", "Invalid API key")
        if mode == "422":
            return _invalid(["body", "text"], "Field required")
        if request.path_params["voice_id"] != VOICE:
            return _error(400, "voice_not_found", "A voice with that id was not found.")
        fmt = request.query_params.get("output_format", "mp3_44100_128")
        if fmt not in {f"pcm_{r}" for r in RATES}:
            return _invalid(["query", "output_format"], f"Invalid output format {fmt!r}")
        try:
            body = json.loads(raw)
            assert isinstance(body["text"], str) and body["text"]
            assert isinstance(body.get("model_id", ""), str)
        except (ValueError, KeyError, TypeError, AssertionError):
            return _invalid(["body", "text"], "Field required")
        rate = int(fmt.removeprefix("pcm_"))
        return StreamingResponse(self._audio(mode, rate), media_type="audio/pcm")

    async def _audio(self, mode: str, rate: int):
        pcm = fake_pcm(rate).astype("<i2").tobytes()
        if mode == "slow":
            await asyncio.sleep(self.slow_s)
        if mode == "long":  # until the client hangs up (10 s at most)
            finished = False
            try:
                for _ in range(1000):
                    yield pcm[:PIECE]
                    await asyncio.sleep(0.01)
                finished = True
            finally:
                if not finished:
                    self.hung_up.set()
            return
        for start in range(0, len(pcm), PIECE):
            yield pcm[start : start + PIECE]
            await asyncio.sleep(0)
            if mode == "drop":
                raise RuntimeError("connection dropped on purpose")


@contextmanager
def fake_elevenlabs_server() -> Iterator[FakeElevenLabs]:
    fake = FakeElevenLabs()
    app = Starlette(
        routes=[Route("/v1/text-to-speech/{voice_id}/stream", fake.stream, methods=["POST"])]
    )
    with serving(app, "ElevenLabs") as url:
        fake.url = url
        yield fake
