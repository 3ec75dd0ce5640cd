"""A local server that speaks Deepgram's wire formats: streaming STT (`/v1/listen`, a
WebSocket of PCM16 frames in, JSON `Results`/`Metadata` out, `Finalize`/`CloseStream`/
`KeepAlive` control messages) and Aura TTS (`/v1/speak`, raw PCM streamed back).

The "recognizer" is deterministic and reads the audio itself, not its position: every
0.25 s block of constant level n/100 is the word `WORDS[n - 1]`, a silent block is no word.
So replaying audio on a new connection gives the same words. A final segment closes every
second of audio, with Deepgram-style `start`/`duration` measured on this connection.

Each connection (or request) takes the next mode from `script`:
listen: "ok", "401", "429", "500" (refused handshakes), "malformed" (a non-JSON frame),
"drop_after:<s>" (TCP cut after s seconds of audio), "error_after:<s>" (close 1011 after s
seconds), "no_from_finalize" (Finalize answered without the flag).
speak: "ok", "429" (with Retry-After), "500", "400", "slow" (late first byte), "drop"
(connection cut after the first chunk).
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from fake_http import serving

RATE = 16000
BLOCK = RATE // 4  # samples per word
FINAL_EVERY = RATE  # samples per final segment
WORDS = "alpha bravo charlie delta echo foxtrot golf hotel india juliet kilo lima".split()


def speech(word_indices: list[int]) -> np.ndarray:
    """Float32 audio that the fake hears as these words (0: a silent block)."""
    return np.concatenate([np.full(BLOCK, i / 100, np.float32) for i in word_indices])


def words_of(pcm: np.ndarray) -> list[str]:
    """The words in whole blocks of int16 audio."""
    out = []
    for start in range(0, len(pcm) - BLOCK + 1, BLOCK):
        level = round(float(np.abs(pcm[start : start + BLOCK].astype(np.float64)).mean()) / 327.67)
        if level:
            out.append(WORDS[(level - 1) % len(WORDS)])
    return out


def speak_pcm(rate: int) -> bytes:
    """What the fake voice says, at any rate: half a second of a sawtooth."""
    return (np.arange(rate // 2) % 200 - 100).astype("<i2").tobytes()


@dataclass
class FakeDeepgram:
    url: str = ""
    script: list[str] = field(default_factory=list)
    attempts: int = 0  # handshakes tried, refused ones included
    queries: list[dict] = field(default_factory=list)
    headers: list[dict] = field(default_factory=list)
    audio: list[int] = field(default_factory=list)  # bytes of audio per connection
    controls: list[str] = field(default_factory=list)
    disconnects: int = 0
    speak_requests: list[dict] = field(default_factory=list)
    slow_s: float = 3.0
    secret: str = ""  # when set, the Token header must carry it

    async def listen(self, ws: WebSocket) -> None:
        self.attempts += 1
        self.queries.append(dict(ws.query_params))
        self.headers.append(dict(ws.headers))
        mode = self.script.pop(0) if self.script else "ok"
        if self.secret and ws.headers.get("authorization") != f"Token {self.secret}":
            mode = "401"
        if mode in ("401", "429", "500"):
            await ws.send_denial_response(_refusal(int(mode)))
            return
        await ws.accept()
        index = len(self.audio)
        self.audio.append(0)
        stream = _Stream(mode)
        try:
            while True:
                message = await ws.receive()
                if message["type"] == "websocket.disconnect":
                    break
                if message.get("bytes") is not None:
                    self.audio[index] += len(message["bytes"])
                    for reply in stream.audio(message["bytes"]):
                        await ws.send_text(json.dumps(reply))
                    if mode == "malformed":
                        await ws.send_text('{"type": "Results", "channel": ')
                    limit = _limit(mode)
                    if limit is not None and stream.samples >= limit * RATE:
                        if mode.startswith("drop_after"):
                            _cut(ws)
                        else:
                            await ws.close(1011, "NET-0000")
                        return
                    continue
                control = json.loads(message["text"])["type"]
                self.controls.append(control)
                if control == "Finalize":
                    await ws.send_text(json.dumps(stream.finalize()))
                elif control == "CloseStream":
                    await ws.send_text(json.dumps(stream.metadata()))
                    await ws.close(1000)
                    return
        except (WebSocketDisconnect, RuntimeError):
            pass
        finally:
            self.disconnects += 1

    async def speak(self, request: Request) -> Response:
        self.speak_requests.append(
            {
                "query": dict(request.query_params),
                "json": await request.json(),
                "authorization": request.headers.get("authorization"),
            }
        )
        mode = self.script.pop(0) if self.script else "ok"
        if mode in ("429", "500", "400"):
            return _refusal(int(mode))
        pcm = speak_pcm(int(request.query_params.get("sample_rate", "24000")))

        async def body():
            if mode == "slow":
                await asyncio.sleep(self.slow_s)
            for i, start in enumerate(range(0, len(pcm), 4801)):  # odd: samples straddle
                yield pcm[start : start + 4801]
                await asyncio.sleep(0.01 if mode == "drop" else 0)
                if mode == "drop" and i == 0:
                    raise RuntimeError("connection dropped on purpose")

        return StreamingResponse(body(), media_type="application/octet-stream")


class _Stream:
    """One connection's recognizer state, in this connection's own time."""

    def __init__(self, mode: str) -> None:
        self.mode = mode
        self.pcm = np.zeros(0, np.int16)
        self.finalized = 0  # samples already in final segments
        self.heard = 0  # whole blocks reported in the last interim
        self.request_id = str(uuid.uuid4())

    @property
    def samples(self) -> int:
        return len(self.pcm)

    def audio(self, data: bytes) -> list[dict]:
        self.pcm = np.concatenate([self.pcm, np.frombuffer(data, "<i2")])
        out = []
        while self.samples - self.finalized >= FINAL_EVERY:
            out.append(self._results(self.finalized + FINAL_EVERY, is_final=True))
        blocks = (self.samples - self.finalized) // BLOCK
        if blocks > self.heard:
            self.heard = blocks
            out.append(self._results(self.finalized + blocks * BLOCK, is_final=False))
        return out

    def finalize(self) -> dict:
        return self._results(self.samples, is_final=True, from_finalize=True)

    def _results(self, end: int, *, is_final: bool, from_finalize: bool = False) -> dict:
        start = self.finalized
        words = words_of(self.pcm[start:end])
        if is_final:
            self.finalized, self.heard = end, 0
        return {
            "type": "Results",
            "channel_index": [0, 1],
            "duration": (end - start) / RATE,
            "start": start / RATE,
            "is_final": is_final,
            "speech_final": is_final and (from_finalize or not words),
            **(
                {"from_finalize": True} if from_finalize and self.mode != "no_from_finalize" else {}
            ),
            "channel": {
                "alternatives": [
                    {
                        "transcript": " ".join(words),
                        "confidence": 0.99 if words else 0.0,
                        "words": [
                            {
                                "word": w,
                                "start": (start + i * BLOCK) / RATE,
                                "end": (start + (i + 1) * BLOCK) / RATE,
                                "confidence": 0.99,
                                "punctuated_word": w,
                            }
                            for i, w in enumerate(words)
                        ],
                    }
                ]
            },
            "metadata": {
                "request_id": self.request_id,
                "model_info": {"name": "fake", "version": "1", "arch": "fake"},
                "model_uuid": "00000000-0000-0000-0000-000000000000",
            },
        }

    def metadata(self) -> dict:
        return {
            "type": "Metadata",
            "transaction_key": "deprecated",
            "request_id": self.request_id,
            "sha256": "0" * 64,
            "created": "2025-01-01T00:00:00.000Z",
            "duration": self.samples / RATE,
            "channels": 1,
        }


def _limit(mode: str) -> float | None:
    name, _, seconds = mode.partition(":")
    return float(seconds) if name in ("drop_after", "error_after") else None


def _refusal(status: int) -> JSONResponse:
    codes = {401: "INVALID_AUTH", 400: "INVALID_QUERY_PARAMETER", 429: "TOO_MANY_REQUESTS"}
    messages = {401: "Invalid credentials.", 400: "No such model.", 429: "Too many requests."}
    return JSONResponse(
        {
            "err_code": codes.get(status, "INTERNAL_SERVER_ERROR"),
            "err_msg": messages.get(status, "Internal server error."),
            "request_id": str(uuid.uuid4()),
        },
        status_code=status,
        headers={"Retry-After": "0.05"} if status == 429 else {},
    )


def _cut(ws: WebSocket) -> None:
    """Cut the TCP connection with no close frame, as a network failure would. uvicorn's
    protocol object (which owns the transport) is the receiver bound to the ASGI scope."""
    protocol = getattr(ws._receive, "__self__", None)  # a test-only reach-in
    transport = getattr(protocol, "transport", None)
    if transport is None:
        raise RuntimeError("cannot reach the transport to cut the connection")
    transport.abort()


@contextmanager
def fake_deepgram_server() -> Iterator[FakeDeepgram]:
    fake = FakeDeepgram()
    app = Starlette(
        routes=[
            WebSocketRoute("/v1/listen", fake.listen),
            Route("/v1/speak", fake.speak, methods=["POST"]),
        ]
    )
    with serving(app, "Deepgram") as url:
        fake.url = url
        yield fake
