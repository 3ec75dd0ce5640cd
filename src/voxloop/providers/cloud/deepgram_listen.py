"""Deepgram live speech-to-text over a WebSocket (`/v1/listen`), with interim results,
endpointing, and reconnection mid-utterance that replays the unfinalized audio.

Audio goes out as PCM16 frames while Results come back, concurrently. At the end of the
audio `Finalize` and `CloseStream` go out together: Deepgram does not promise a
`from_finalize` answer when little audio is pending, while `CloseStream` makes it flush,
send `Metadata` and close; whichever comes first ends the wait. Audio sent since the last
final segment (up to `replay_s`) is replayed into a new connection when one drops.
(Why `websockets` and not the SDK: deepgram.py.)
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterable, AsyncIterator
from typing import Any, Self
from urllib.parse import urlencode

import numpy as np
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import (
    ConnectionClosed,
    ConnectionClosedError,
    ConnectionClosedOK,
    InvalidHandshake,
    InvalidStatus,
    InvalidURI,
)

from voxloop.clock import Clock, RealClock
from voxloop.config.settings import Settings, reveal
from voxloop.errors import ProviderCallError
from voxloop.providers.base import (
    Capabilities,
    ProviderInfo,
    Segment,
    STTProvider,
    Transcript,
)
from voxloop.providers.cloud.deepgram import API_URL, api_root, status_error
from voxloop.providers.resilience import CircuitBreaker, RetryPolicy

log = logging.getLogger(__name__)

DEFAULT_STT_MODEL = "nova-3"
MIN_SAMPLES = 1600  # 100 ms at 16 kHz: less is not worth a connection
KEEPALIVE_S = 4.0  # Deepgram closes a socket that gets nothing for 10 s
CLOSE_TIMEOUT_S = 1.0
FINALIZE = json.dumps({"type": "Finalize"})
CLOSE_STREAM = json.dumps({"type": "CloseStream"})
KEEPALIVE = json.dumps({"type": "KeepAlive"})
_END = object()


class _MaskKey(logging.Filter):
    """websockets logs the handshake's headers at DEBUG: mask the key among them."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(
                "Token ***" if isinstance(a, str) and a.startswith("Token ") else a
                for a in record.args
            )
        return True


_socket_log = logging.getLogger(f"{__name__}.socket")
_socket_log.addFilter(_MaskKey())


class _InputError(Exception):
    """The caller's audio iterator failed: re-raised as is, never retried."""

    def __init__(self, error: BaseException) -> None:
        self.error = error


class _Utterance:
    """What outlives one connection: the finalized segments and the audio sent since the
    last of them, to replay after a reconnection."""

    def __init__(self, rate: int, replay_s: float) -> None:
        self.rate = rate
        self.cap = 2 * int(replay_s * rate)  # bytes of PCM16
        self.segments: list[Segment] = []
        self.interim = ""
        self.replay = bytearray()
        self.replay_start = 0  # utterance sample where `replay` begins
        self.final_end = 0  # utterance sample where the last final segment ends
        self.offset_s = 0.0  # utterance time of this connection's t = 0
        self.input_done = False
        self.finalizing = False  # Finalize sent on this connection
        self.progress = False  # this connection sent Results
        self.input_error: BaseException | None = None

    def sent(self, pcm: bytes) -> None:
        self.replay += pcm
        excess = len(self.replay) - self.cap
        if excess > 0:
            del self.replay[:excess]
            self.replay_start += excess // 2

    def result(self, start: float, duration: float, text: str, is_final: bool) -> None:
        self.progress = True
        if not is_final:
            self.interim = text
            return
        self.interim = ""
        begin, end = self.offset_s + start, self.offset_s + start + duration
        if text:
            self.segments.append(Segment(begin, end, text))
        self.final_end = max(self.final_end, round(end * self.rate))
        done = min(self.final_end - self.replay_start, len(self.replay) // 2)
        if done > 0:
            del self.replay[: 2 * done]
            self.replay_start += done

    def reconnecting(self) -> bytes:
        """Start over on a new connection: its t = 0 is where the replayed audio begins."""
        self.offset_s = self.replay_start / self.rate
        self.interim = ""
        self.finalizing = self.progress = False
        return bytes(self.replay)

    @property
    def text(self) -> str:
        parts = [s.text for s in self.segments] + ([self.interim] if self.interim else [])
        return " ".join(parts)


class DeepgramSTT(STTProvider):
    name = "deepgram"
    capabilities = Capabilities(streaming_input=True, partials=True, local=False)

    def __init__(
        self,
        *,
        base_url: str = API_URL,
        api_key: str | None = None,
        model: str = DEFAULT_STT_MODEL,
        language: str | None = "en",
        endpointing_ms: int = 300,
        replay_s: float = 5.0,
        smart_format: bool = True,
        keepalive_s: float = KEEPALIVE_S,
        policy: RetryPolicy | None = None,
        breaker: CircuitBreaker | None = None,
        clock: Clock | None = None,
    ) -> None:
        self.model, self.language, self.replay_s = model, language, replay_s
        self.keepalive_s = keepalive_s
        self.policy = policy or RetryPolicy()
        self.clock = clock or RealClock()
        self.breaker = breaker or CircuitBreaker(clock=self.clock)
        self._key = api_key
        self.endpoint = f"{api_root(base_url, {'http': 'ws', 'https': 'wss'})}/v1/listen"
        query: dict[str, Any] = {
            "model": model,
            "encoding": "linear16",
            "sample_rate": self.sample_rate,
            "channels": 1,
            "interim_results": "true",
            "endpointing": endpointing_ms,
        }
        if language:
            query["language"] = language
        if smart_format:
            query["smart_format"] = "true"
        self.url = f"{self.endpoint}?{urlencode(query)}"
        self.where = f"Deepgram STT at {self.endpoint}"

    @classmethod
    def from_settings(cls, settings: Settings) -> Self:
        s = settings.stt
        return cls(
            base_url=s.base_url or API_URL,
            api_key=reveal(s.api_key),
            model=s.model or DEFAULT_STT_MODEL,
            language=s.language,
            endpointing_ms=s.endpointing_ms,
            replay_s=s.replay_s,
            policy=RetryPolicy.for_stage(s),
        )

    def info(self) -> ProviderInfo:
        return ProviderInfo(self.name, self.model, source=self.endpoint)

    async def transcribe(self, audio: AsyncIterable[np.ndarray]) -> AsyncIterator[Transcript]:
        source = aiter(audio)
        head: list[bytes] = []
        samples, ended = 0, False
        while samples < MIN_SAMPLES:  # no connection for a click or an empty utterance
            try:
                pcm = _pcm16(await anext(source))
            except StopAsyncIteration:
                ended = True
                break
            head.append(pcm)
            samples += len(pcm) // 2
        if ended and samples < MIN_SAMPLES:
            yield Transcript("", is_final=True, language=self.language)
            return
        live: asyncio.Queue[bytes | BaseException | None] = asyncio.Queue()
        for pcm in head:
            live.put_nowait(pcm)
        if ended:
            live.put_nowait(None)
        reader = None if ended else asyncio.create_task(_read(source, live), name="deepgram-in")
        try:
            async for transcript in self._stream(_Utterance(self.sample_rate, self.replay_s), live):
                yield transcript
        finally:
            if reader is not None:
                reader.cancel()
                await asyncio.gather(reader, return_exceptions=True)

    async def _stream(
        self, state: _Utterance, live: asyncio.Queue[bytes | BaseException | None]
    ) -> AsyncIterator[Transcript]:
        """Connections one after another until the final transcript: a lost one is
        replaced, with the unfinalized audio replayed first."""
        drops, replay = 0, b""
        while True:
            ws = await self._connect()
            try:
                async for partial in self._session(ws, state, live, replay):
                    yield partial
                yield Transcript(state.text, True, tuple(state.segments), self.language)
                return
            except ProviderCallError as exc:
                if not exc.retryable or exc is state.input_error:
                    raise
                drops = 1 if state.progress else drops + 1
                if drops >= self.policy.attempts:
                    raise ProviderCallError(
                        f"{self.where}: the connection was lost {drops} times in a row: {exc}",
                        retryable=True,
                    ) from exc
                lost = max(0, state.replay_start - state.final_end) / self.sample_rate
                replay = state.reconnecting()
                log.warning(
                    "%s; reconnecting, replaying %.1f s of audio (%.1f s too old to replay)",
                    *(exc, len(replay) / 2 / self.sample_rate, lost),
                )
                await self.clock.sleep(self.policy.delay(drops - 1, exc))
            finally:
                await _close(ws)

    async def _connect(self) -> ClientConnection:
        """A new socket, retried with backoff on 429, 5xx and network errors."""
        attempt = 0
        while True:
            self.breaker.check(self.where)
            try:
                ws = await self._open()
            except ProviderCallError as error:
                self.breaker.failure()
                attempt += 1
                if not error.retryable or attempt >= self.policy.attempts:
                    raise
                await self.clock.sleep(self.policy.delay(attempt - 1, error))
            else:
                self.breaker.success()
                return ws

    async def _open(self) -> ClientConnection:
        headers = {"Authorization": f"Token {self._key}"} if self._key else {}
        try:
            return await connect(
                self.url,
                additional_headers=headers,
                open_timeout=self.policy.first_item_timeout_s,
                close_timeout=CLOSE_TIMEOUT_S,
                compression=None,
                logger=_socket_log,
            )
        except InvalidStatus as exc:
            r = exc.response
            raise status_error(
                r.status_code, r.headers, r.body, self.where, self._key, "stt"
            ) from exc
        except InvalidURI as exc:
            raise ProviderCallError(
                f"stt.base_url is not a WebSocket URL: {exc}", retryable=False
            ) from exc
        except (OSError, TimeoutError, InvalidHandshake) as exc:
            raise ProviderCallError(
                f"connection to {self.where} failed: {type(exc).__name__}: {exc}", retryable=True
            ) from exc

    async def _session(
        self,
        ws: ClientConnection,
        state: _Utterance,
        live: asyncio.Queue[bytes | BaseException | None],
        replay: bytes,
    ) -> AsyncIterator[Transcript]:
        """One connection: send (concurrently) and receive until the final results; a lost
        connection raises a retryable `ProviderCallError`."""
        loop = asyncio.get_running_loop()
        sender = asyncio.create_task(self._send(ws, state, live, replay), name="deepgram-out")
        recv: asyncio.Future[Any] | None = None
        deadline: float | None = None
        last: str | None = None
        try:
            while True:
                if recv is None:
                    recv = asyncio.ensure_future(ws.recv())
                waiting = {recv} if sender.done() else {recv, sender}
                timeout = None if deadline is None else max(0.0, deadline - loop.time())
                done, _ = await asyncio.wait(
                    waiting, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
                )
                if not done:
                    log.warning("%s: no final result in time; keeping the last partial", self.where)
                    return
                if sender in done:
                    error = sender.exception()
                    if error is None:
                        deadline = loop.time() + self.policy.first_item_timeout_s
                    elif isinstance(error, _InputError):
                        state.input_error = error.error
                        raise error.error
                    elif not isinstance(error, ConnectionClosed | OSError):
                        raise error
                    # a failed send means a lost connection, which `recv` reports
                if recv not in done:
                    continue
                message = self._received(recv, state)
                recv = None
                if message is _END:
                    return
                outcome = self._handle(message, state)
                if outcome is _END:
                    return
                if isinstance(outcome, str) and outcome and outcome != last:
                    last = outcome
                    yield Transcript(outcome, False, tuple(state.segments), self.language)
        finally:
            for task in (recv, sender):
                if task is not None:
                    task.cancel()
            await asyncio.gather(
                *(t for t in (recv, sender) if t is not None), return_exceptions=True
            )

    async def _send(
        self,
        ws: ClientConnection,
        state: _Utterance,
        live: asyncio.Queue[bytes | BaseException | None],
        replay: bytes,
    ) -> None:
        frame = self.sample_rate // 5 * 2  # 200 ms of replayed audio per message
        for i in range(0, len(replay), frame):
            await ws.send(replay[i : i + frame])
        while not state.input_done:
            try:
                item = await asyncio.wait_for(live.get(), self.keepalive_s)
            except TimeoutError:
                await ws.send(KEEPALIVE)  # the caller paused: keep the socket open
                continue
            if item is None:
                state.input_done = True
            elif isinstance(item, BaseException):
                raise _InputError(item)
            else:
                state.sent(item)  # kept before sending: a failed send is replayed
                await ws.send(item)
        await ws.send(FINALIZE)
        state.finalizing = True
        await ws.send(CLOSE_STREAM)

    def _received(self, recv: asyncio.Future[Any], state: _Utterance) -> Any:
        try:
            return recv.result()
        except ConnectionClosedOK as exc:
            if state.finalizing:
                return _END  # closed after CloseStream: everything has arrived
            raise ProviderCallError(
                f"{self.where} closed the connection mid-utterance ({_code(exc)})", retryable=True
            ) from exc
        except ConnectionClosedError as exc:
            code = exc.rcvd.code if exc.rcvd is not None else 1006
            raise ProviderCallError(
                f"{self.where}: connection lost ({_code(exc)})",
                retryable=code != 1008,  # 1008: Deepgram could not decode the audio
            ) from exc

    def _handle(self, raw: Any, state: _Utterance) -> str | object | None:
        """One server message: the partial text it brings, `_END`, or None."""
        try:
            message = json.loads(raw)
        except (TypeError, ValueError):
            message = None
        if not isinstance(message, dict):
            raise ProviderCallError(
                f"{self.where} sent a message that is not a JSON object: {_peek(raw)}",
                retryable=False,
            )
        kind = message.get("type")
        if kind == "Results":
            try:
                alternative = message["channel"]["alternatives"][0]
                text = str(alternative.get("transcript") or "").strip()
                start, duration = float(message["start"]), float(message["duration"])
            except (KeyError, IndexError, TypeError, ValueError, AttributeError) as exc:
                raise ProviderCallError(
                    f"{self.where} sent a malformed Results message: {_peek(raw)}",
                    retryable=False,
                ) from exc
            state.result(start, duration, text, bool(message.get("is_final")))
            if state.finalizing and message.get("from_finalize"):
                return _END
            return state.text
        if kind == "Metadata" and state.finalizing:
            return _END  # sent after CloseStream, once every result is out
        if kind == "Error":
            detail = message.get("description") or message.get("message") or _peek(raw)
            raise ProviderCallError(f"{self.where} reported an error: {detail}", retryable=False)
        return None  # SpeechStarted, UtteranceEnd, Metadata before the end


def _pcm16(chunk: np.ndarray) -> bytes:
    samples = np.asarray(chunk, dtype=np.float32).reshape(-1)
    return (np.clip(samples, -1.0, 1.0) * 32767).astype("<i2").tobytes()


async def _read(source: AsyncIterator[np.ndarray], live: asyncio.Queue) -> None:
    """The caller's audio into `live`, ended by None (or the iterator's exception)."""
    try:
        async for chunk in source:
            live.put_nowait(_pcm16(chunk))
    except Exception as exc:
        live.put_nowait(exc)
        return
    live.put_nowait(None)


async def _close(ws: ClientConnection) -> None:
    try:
        await ws.close()
    except Exception:  # already gone: nothing left to release
        log.debug("closing the Deepgram socket failed", exc_info=True)


def _code(exc: ConnectionClosed) -> str:
    if exc.rcvd is None:
        return "no close frame"
    return f"code {exc.rcvd.code}" + (f": {exc.rcvd.reason}" if exc.rcvd.reason else "")


def _peek(raw: Any) -> str:
    return repr(raw[:80] if isinstance(raw, str | bytes) else raw)
