"""`voxloop serve-models`: load the STT and TTS once and serve them over the Wyoming
protocol, so that several voxloop workers (or Home Assistant) share one copy of the models
(`VOXLOOP_STT__PROVIDER=wyoming` on the workers).

Every connection is an asyncio task; the models already take one job at a time on their
own threads (`providers/worker.py`), so many clients at once just queue there. A request
runs as a task beside the connection's reader, so a client that hangs up mid-answer stops
the work (the model's stream is closed), not just its output.

Bad input gets an `error` event that names the problem. The connection goes on while the
stream is in step (a malformed line, an unknown event, bad audio) and ends when it is not
(an oversized or truncated frame); the server lives on either way.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
import sys
from collections.abc import Callable, Coroutine
from typing import Any

import numpy as np

from voxloop import __version__
from voxloop.audio.resample import resample
from voxloop.config.settings import Settings
from voxloop.errors import VoxloopError
from voxloop.providers.base import STTProvider, TTSProvider, transcribe_all
from voxloop.providers.registry import ProviderPool
from voxloop.providers.remote.wyoming_protocol import (
    DEFAULT_PORT,
    AudioFormat,
    Event,
    Limits,
    ProtocolError,
    info_data,
    pcm16_mono,
    read_event,
    write_event,
)

log = logging.getLogger(__name__)

MAX_UTTERANCE_S = 300.0  # audio one `transcribe` may send; more is refused
IGNORED = {"pong", "select-program"}  # one program of each kind: nothing to select


class WyomingSpeechServer:
    """An STT and a TTS behind a Wyoming endpoint; either may be None (not served)."""

    def __init__(
        self,
        stt: STTProvider | None,
        tts: TTSProvider | None,
        *,
        language: str | None = "en",
        limits: Limits | None = None,
        max_utterance_s: float = MAX_UTTERANCE_S,
    ) -> None:
        self.stt, self.tts = stt, tts
        self.limits = limits or Limits()
        self.max_utterance_s = max_utterance_s
        stt_info = stt.info() if stt is not None else None
        tts_info = tts.info() if tts is not None else None
        self.info = Event("info", info_data(stt_info, tts_info, language or "en", __version__))
        self.connections: set[asyncio.Task] = set()

    async def start(
        self, *, sock: socket.socket | None = None, host: str = "127.0.0.1", port: int = 0
    ) -> asyncio.Server:
        """Serve on `sock` (already bound and listening) or on host:port (0: any free one)."""
        if sock is not None:
            return await asyncio.start_server(
                self.handle, sock=sock, limit=self.limits.header_bytes
            )
        return await asyncio.start_server(
            self.handle, host=host, port=port, limit=self.limits.header_bytes
        )

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self.connections.add(task)
        try:
            await _Client(self, reader, writer).run()
        except asyncio.CancelledError:
            pass  # closed by us: asyncio would log a cancelled connection task as an error
        finally:
            if task is not None:
                self.connections.discard(task)

    async def close_connections(self) -> None:
        for task in list(self.connections):
            task.cancel()
        await asyncio.gather(*self.connections, return_exceptions=True)


class _Client:
    """One connection: read events, answer them, one request at a time."""

    def __init__(
        self, host: WyomingSpeechServer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        self.host, self.reader, self.writer = host, reader, writer
        self.write_lock = asyncio.Lock()
        self.job: asyncio.Task | None = None
        self.audio: list[np.ndarray] | None = None  # the utterance coming in
        self.format: AudioFormat | None = None
        self.samples = 0

    async def run(self) -> None:
        try:
            while True:
                try:
                    event = await read_event(self.reader, self.host.limits)
                except ProtocolError as exc:
                    await self.error(str(exc), exc.code)
                    if exc.fatal:
                        return
                    continue
                if event is None:
                    return
                await self.dispatch(event)
        except (OSError, EOFError):  # the client vanished
            return
        finally:
            if self.job is not None:
                self.job.cancel()
                await asyncio.gather(self.job, return_exceptions=True)
            self.writer.close()

    async def dispatch(self, event: Event) -> None:
        handlers = {
            "describe": self.on_describe,
            "ping": self.on_ping,
            "transcribe": self.on_transcribe,
            "audio-start": self.on_audio_start,
            "audio-chunk": self.on_audio_chunk,
            "audio-stop": self.on_audio_stop,
            "synthesize": self.on_synthesize,
        }
        handler = handlers.get(event.type)
        if handler is None:
            if event.type not in IGNORED:
                await self.error(
                    f"unknown event type {event.type!r}: this server answers describe, "
                    "transcribe with audio-start/audio-chunk/audio-stop, and synthesize",
                    "unknown_event",
                )
            return
        try:
            await handler(event)
        except ProtocolError as exc:
            await self.error(str(exc), exc.code)

    async def send(self, event: Event) -> None:
        async with self.write_lock:
            await write_event(self.writer, event)

    async def error(self, text: str, code: str) -> None:
        log.info("wyoming client error: %s (%s)", text, code)
        await self.send(Event("error", {"text": text, "code": code}))

    async def on_describe(self, event: Event) -> None:
        await self.send(self.host.info)

    async def on_ping(self, event: Event) -> None:
        await self.send(Event("pong", {"text": event.data.get("text")}))

    def _stt(self) -> STTProvider:
        if self.host.stt is None:
            raise ProtocolError("this server has no speech-to-text", "not_served")
        return self.host.stt

    def _tts(self) -> TTSProvider:
        if self.host.tts is None:
            raise ProtocolError("this server has no text-to-speech", "not_served")
        return self.host.tts

    async def on_transcribe(self, event: Event) -> None:
        self._stt()
        self.audio, self.format, self.samples = [], None, 0

    async def on_audio_start(self, event: Event) -> None:
        self._stt()
        fmt = AudioFormat.from_data(event.data, "audio-start")
        self.audio, self.format, self.samples = [], fmt, 0

    async def on_audio_chunk(self, event: Event) -> None:
        self._stt()
        if self.audio is None:
            raise ProtocolError("audio-chunk before transcribe or audio-start", "bad_order")
        fmt = AudioFormat.from_data(event.data, "audio-chunk")
        if self.format is not None and fmt != self.format:
            raise ProtocolError(
                f"audio-chunk: the format changed mid-stream, from {self.format.data()} to "
                f"{fmt.data()}",
                "bad_audio",
            )
        pcm = pcm16_mono(event.payload, fmt)
        self.format = fmt
        if self.samples + len(pcm) > self.host.max_utterance_s * fmt.rate:
            self.audio = None  # dropped: the client must start again
            raise ProtocolError(
                f"more than {self.host.max_utterance_s:g} s of audio for one transcript; "
                "the utterance was dropped",
                "too_large",
            )
        self.audio.append(pcm)
        self.samples += len(pcm)

    async def on_audio_stop(self, event: Event) -> None:
        stt = self._stt()
        if self.audio is None:
            raise ProtocolError("audio-stop before transcribe or audio-start", "bad_order")
        pcm = np.concatenate(self.audio) if self.audio else np.zeros(0, np.int16)
        rate = self.format.rate if self.format else stt.sample_rate
        self.audio, self.format, self.samples = None, None, 0
        await self.start_job(self.transcript(stt, pcm, rate))

    async def on_synthesize(self, event: Event) -> None:
        tts = self._tts()
        text = event.data.get("text")
        if not isinstance(text, str):
            raise ProtocolError("synthesize needs a string 'text'", "bad_event")
        await self.start_job(self.speech(tts, text))

    async def start_job(self, work: Coroutine[Any, Any, None]) -> None:
        """Requests are answered in order: a second one waits for the first."""
        if self.job is not None:
            await asyncio.gather(self.job, return_exceptions=True)
        self.job = asyncio.create_task(self._answer(work), name="wyoming request")

    async def _answer(self, work: Coroutine[Any, Any, None]) -> None:
        try:
            await work
        except OSError:  # the client hung up while we answered
            pass
        except Exception as exc:  # a model failed: say so, keep the connection
            log.exception("wyoming request failed")
            code = exc.code if isinstance(exc, VoxloopError) else "model_failed"
            with contextlib.suppress(OSError):
                await self.error(f"{type(exc).__name__}: {exc}", code)

    async def transcript(self, stt: STTProvider, pcm: np.ndarray, rate: int) -> None:
        audio = resample(pcm.astype(np.float32) / 32768.0, rate, stt.sample_rate)
        result = await transcribe_all(stt, audio)
        data: dict[str, Any] = {"text": result.text}
        if result.language:
            data["language"] = result.language
        await self.send(Event("transcript", data))

    async def speech(self, tts: TTSProvider, text: str) -> None:
        fmt: AudioFormat | None = None
        async for chunk in tts.synthesize(text):
            if fmt is None:
                fmt = AudioFormat(chunk.sample_rate)
                await self.send(Event("audio-start", fmt.data()))
            pcm = chunk.pcm
            if chunk.sample_rate != fmt.rate:  # a stream announces one rate: keep to it
                pcm = resample(pcm.astype(np.float32), chunk.sample_rate, fmt.rate)
                pcm = np.clip(np.rint(pcm), -32768, 32767).astype(np.int16)
            for start in range(0, len(pcm), fmt.rate):  # at most a second per chunk
                piece = pcm[start : start + fmt.rate].astype("<i2").tobytes()
                await self.send(Event("audio-chunk", fmt.data(), piece))
        if fmt is None:  # nothing to say: an empty answer, still well formed
            fmt = AudioFormat(tts.sample_rate)
            await self.send(Event("audio-start", fmt.data()))
        await self.send(Event("audio-stop"))


# -- the command ---------------------------------------------------------------------------


async def serve_models(
    settings: Settings,
    host: str = "127.0.0.1",
    wyoming_port: int = DEFAULT_PORT,
    *,
    llm_port: int | None = None,
    pool: ProviderPool | None = None,
    on_ready: Callable[[dict[str, str]], None] | None = None,
) -> None:
    """Take the ports, load and warm the configured models, serve until cancelled.

    Every port is taken before the models load, so a busy one fails in a second. Each
    endpoint of this command is one listening socket in `sockets`, one coroutine in
    `serving` (on the same loaded models) and one address in `endpoints`: another (an LLM
    API on its own port) is one more entry in each. `on_ready` gets the addresses."""
    from voxloop.server.app import listen

    sockets: dict[str, socket.socket] = {"wyoming": listen(host, wyoming_port)}
    if llm_port is not None:  # the configured LLM too, over an OpenAI-compatible API
        sockets["llm"] = listen(host, llm_port)
    own_pool = pool is None
    pool = pool or ProviderPool(settings)
    speech: WyomingSpeechServer | None = None
    wyoming: asyncio.Server | None = None
    try:
        stt, tts = pool.get("stt"), pool.get("tts")
        assert isinstance(stt, STTProvider) and isinstance(tts, TTSProvider)
        for provider in (stt, tts):
            await provider.warmup()
        speech = WyomingSpeechServer(stt, tts, language=settings.stt.language)
        wyoming = await speech.start(sock=sockets["wyoming"])
        serving: list[Coroutine[Any, Any, None]] = [wyoming.serve_forever()]
        endpoints = {"wyoming": f"tcp://{_address(host, sockets['wyoming'])}"}
        if "llm" in sockets:
            serving.append(await _llm_endpoint(settings, pool, sockets["llm"]))
            endpoints["llm"] = f"http://{_address(host, sockets['llm'])}/v1"
        log.info("serving models", extra={"endpoints": endpoints})
        if on_ready is not None:
            on_ready(endpoints)
        await asyncio.gather(*serving)
    finally:
        if wyoming is not None:
            wyoming.close()
        if speech is not None:
            await speech.close_connections()
        for sock in sockets.values():
            sock.close()
        if own_pool:
            pool.close()


async def _llm_endpoint(
    settings: Settings, pool: ProviderPool, sock: socket.socket
) -> Coroutine[Any, Any, None]:
    """The LLM loaded, warm and measured, and the coroutine that serves it (llm_host.py)."""
    from voxloop.memory.persona import default_system_prompt
    from voxloop.providers.base import LLMProvider
    from voxloop.server.llm_host import llm_api, serve_llm

    llm = pool.get("llm")
    assert isinstance(llm, LLMProvider)
    llm.expect_system_prompt(default_system_prompt(settings))
    await llm.warmup()
    conversations = await llm.conversations()
    log.info("LLM ready", extra={"model": llm.info().model, "at_once": conversations})
    return serve_llm(llm_api(llm, settings.llm.model or "voxloop"), sock)


def _address(host: str, sock: socket.socket) -> str:
    """host:port as a client writes it (an IPv6 host in brackets), with the bound port."""
    shown = f"[{host}]" if ":" in host else host
    return f"{shown}:{sock.getsockname()[1]}"


def run_serve_models(
    settings: Settings, host: str, wyoming_port: int, llm_port: int | None = None
) -> None:
    """`voxloop serve-models`: JSON logs, a ready line on stderr, SIGTERM stops it."""
    from voxloop.telemetry.logs import setup_logging

    setup_logging(settings.log_level)

    def ready(endpoints: dict[str, str]) -> None:
        where = ", ".join(f"{name} on {url}" for name, url in endpoints.items())
        print(f"voxloop serve-models is ready: {where}", file=sys.stderr, flush=True)

    async def main() -> None:
        task = asyncio.current_task()
        assert task is not None
        stopping: list[bool] = []

        def stop() -> None:
            stopping.append(True)
            task.cancel()

        loop = asyncio.get_running_loop()
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(signal.SIGTERM, stop)
        try:
            await serve_models(settings, host, wyoming_port, llm_port=llm_port, on_ready=ready)
        except asyncio.CancelledError:
            if not stopping:
                raise

    asyncio.run(main())
