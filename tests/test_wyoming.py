"""Wyoming speech: our client (the `wyoming` STT and TTS providers) against our server
(`voxloop serve-models`), both against the reference implementation (the `wyoming`
package), bad input on either side, the real models, and a whole session over it."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import subprocess
import sys
import threading
from collections.abc import AsyncIterator, Iterator

import numpy as np
import pytest

from repeatable import REPEATABLE_ENV
from voxloop.bench.server import child_env, free_port
from voxloop.config.settings import Settings
from voxloop.errors import ProviderCallError, ProviderError, VoxloopError
from voxloop.providers.base import AudioChunk, ProviderInfo, TTSProvider, transcribe_all
from voxloop.providers.registry import ProviderPool
from voxloop.providers.remote.wyoming import WyomingSTT, WyomingTTS
from voxloop.providers.remote.wyoming_protocol import Event, encode_event, read_event
from voxloop.providers.resilience import RetryPolicy
from voxloop.server.speech_host import WyomingSpeechServer, serve_models
from voxloop.testing.fakes import FakeSTT, FakeTTS

QUICK = RetryPolicy(attempts=2, base_s=0.01, cap_s=0.02, first_item_timeout_s=5)
ONCE = RetryPolicy(attempts=1, first_item_timeout_s=5)
QUESTION = "What is the capital of France?"
# The reference package imports audioop, which Python 3.11 calls deprecated.
REFERENCE = pytest.mark.filterwarnings("ignore:'audioop' is deprecated:DeprecationWarning")


class RecordingSTT(FakeSTT):
    """FakeSTT that keeps the audio it was given."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.heard: list[np.ndarray] = []

    async def transcribe(self, audio):
        chunks: list[np.ndarray] = []

        async def tap():
            async for chunk in audio:
                chunks.append(chunk)
                yield chunk

        async for result in super().transcribe(tap()):
            yield result
        self.heard.append(np.concatenate(chunks) if chunks else np.zeros(0, np.float32))


class EndlessTTS(TTSProvider):
    """Speaks for ever, 10 ms at a time, and says when its stream was closed."""

    sample_rate = 16000

    def __init__(self) -> None:
        self.chunks = 0
        self.closed = asyncio.Event()

    def info(self) -> ProviderInfo:
        return ProviderInfo("endless", "tone")

    async def synthesize(self, text: str) -> AsyncIterator[AudioChunk]:
        try:
            while True:
                self.chunks += 1
                yield AudioChunk(np.full(160, 1000, np.int16), self.sample_rate)
                await asyncio.sleep(0.001)
        finally:
            self.closed.set()


class StuckTTS(TTSProvider):
    """Thinks for ever before its first audio, and says when it was stopped."""

    sample_rate = 16000

    def __init__(self) -> None:
        self.closed = asyncio.Event()

    def info(self) -> ProviderInfo:
        return ProviderInfo("stuck", "silence")

    async def synthesize(self, text: str) -> AsyncIterator[AudioChunk]:
        try:
            await asyncio.Event().wait()
            yield AudioChunk(np.zeros(160, np.int16), self.sample_rate)  # pragma: no cover
        finally:
            self.closed.set()


class BrokenTTS(FakeTTS):
    async def synthesize(self, text: str) -> AsyncIterator[AudioChunk]:
        raise ProviderCallError("the voice fell over", retryable=False)
        yield  # pragma: no cover


@contextlib.asynccontextmanager
async def serving(stt=None, tts=None, **kw) -> AsyncIterator[str]:
    """Our Wyoming server on a free port, on this event loop."""
    host = WyomingSpeechServer(stt, tts, **kw)
    server = await host.start()
    try:
        yield f"tcp://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    finally:
        server.close()
        await host.close_connections()


def speech(seconds: float = 1.0) -> np.ndarray:
    t = np.arange(int(16000 * seconds)) / 16000
    return (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)


async def chunked(audio: np.ndarray, size: int = 1600) -> AsyncIterator[np.ndarray]:
    for start in range(0, len(audio), size):
        yield audio[start : start + size]


# -- our client against our server -----------------------------------------------------------


async def test_stt_round_trip_streams_the_utterance_as_16_bit_pcm():
    stt = RecordingSTT([QUESTION])
    async with serving(stt=stt) as url:
        client = WyomingSTT(base_url=url, policy=QUICK)
        audio = speech(1.0)
        results = [t async for t in client.transcribe(chunked(audio))]
    assert [(r.text, r.is_final) for r in results] == [(QUESTION, True)]
    (heard,) = stt.heard
    assert len(heard) == len(audio)
    assert np.max(np.abs(heard - audio)) <= 1 / 32768 + 1e-6  # only 16-bit rounding


async def test_tts_round_trip_keeps_every_sample_at_the_voice_rate():
    voice = FakeTTS(sample_rate=16000)
    expected = np.concatenate([c.pcm async for c in voice.synthesize("Hello there.")])
    async with serving(tts=voice) as url:
        client = WyomingTTS(base_url=url, sample_rate=16000, policy=QUICK)
        chunks = [c async for c in client.synthesize("Hello there.")]
    assert {c.sample_rate for c in chunks} == {16000}
    assert np.array_equal(np.concatenate([c.pcm for c in chunks]), expected)


async def test_tts_audio_is_passed_on_at_the_providers_declared_rate():
    async with serving(tts=FakeTTS(sample_rate=16000)) as url:
        client = WyomingTTS(base_url=url, policy=QUICK)  # declares Piper's 22,050 Hz
        chunks = [c async for c in client.synthesize("Hello there.")]
    assert client.sample_rate == 22050 and {c.sample_rate for c in chunks} == {22050}
    seconds = sum(len(c.pcm) for c in chunks) / 22050
    assert seconds == pytest.approx(12 * 0.05, abs=0.01)  # 50 ms a character


async def test_many_clients_at_once():
    async with serving(stt=FakeSTT(), tts=FakeTTS()) as url:
        stt = WyomingSTT(base_url=url, policy=QUICK)
        tts = WyomingTTS(base_url=url, sample_rate=16000, policy=QUICK)

        async def hear(seconds: float) -> str:
            return (await transcribe_all(stt, speech(seconds))).text

        async def say(text: str) -> int:
            return sum([len(c.pcm) async for c in tts.synthesize(text)])

        heard = await asyncio.gather(*(hear(0.5 + i / 10) for i in range(8)))
        said = await asyncio.gather(*(say("x" * (i + 1)) for i in range(8)))
    assert heard == [f"fake transcript of {0.5 + i / 10:.1f} seconds" for i in range(8)]
    assert said == [800 * (i + 1) for i in range(8)]


async def test_info_comes_from_the_servers_describe():
    async with serving(stt=FakeSTT(), tts=FakeTTS()) as url:
        stt, tts = WyomingSTT(base_url=url), WyomingTTS(base_url=url)
        assert stt.info().model == "(not described yet)"
        await stt.warmup()
        await tts.warmup()
    assert stt.info() == ProviderInfo("wyoming", "voxloop-fake (scripted)", source=url)
    assert tts.info().model == "voxloop-fake (tone (16000 Hz))"
    assert not stt.capabilities.local and not tts.capabilities.local


async def test_warmup_does_not_fail_a_start_when_the_server_is_not_up_yet(caplog):
    client = WyomingSTT(base_url=f"tcp://127.0.0.1:{free_port()}")
    await client.warmup()
    assert "connection refused" in caplog.text


async def test_a_connection_lost_mid_utterance_is_retried_with_the_whole_utterance():
    stt = RecordingSTT([QUESTION])
    host = WyomingSpeechServer(stt, None)
    connections = 0

    async def flaky(reader, writer):
        nonlocal connections
        connections += 1
        if connections == 1:  # the first connection dies after its first event
            await reader.readline()
            writer.close()
            return
        await host.handle(reader, writer)

    server = await asyncio.start_server(flaky, "127.0.0.1", 0)
    url = f"tcp://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    try:
        client = WyomingSTT(base_url=url, policy=QUICK)
        audio = speech(1.0)
        result = await transcribe_all(client, audio)
    finally:
        server.close()
        await host.close_connections()
    assert result.text == QUESTION and connections == 2
    assert len(stt.heard[0]) == len(audio)  # every sample, once


async def test_closing_the_tts_stream_stops_the_servers_synthesis():
    voice = EndlessTTS()
    async with serving(tts=voice) as url:
        stream = WyomingTTS(base_url=url, sample_rate=16000, policy=QUICK).synthesize("Hi.")
        assert len((await anext(stream)).pcm)
        await stream.aclose()
        await asyncio.wait_for(voice.closed.wait(), 5)
        spoken = voice.chunks
        await asyncio.sleep(0.05)
        assert voice.chunks == spoken  # stopped, not merely unheard


async def test_closing_the_stt_stream_mid_utterance_hangs_up():
    host = WyomingSpeechServer(FakeSTT(), None)
    server = await host.start()
    url = f"tcp://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    never = asyncio.Event()

    async def talking() -> AsyncIterator[np.ndarray]:
        yield speech(0.2)
        await never.wait()  # the user is still talking
        yield speech(0.2)  # pragma: no cover

    async def listen() -> None:
        async for _ in WyomingSTT(base_url=url, policy=QUICK).transcribe(talking()):
            pass  # pragma: no cover

    try:
        task = asyncio.create_task(listen())
        for _ in range(500):
            if host.connections:
                break
            await asyncio.sleep(0.01)
        assert len(host.connections) == 1
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        for _ in range(500):
            if not host.connections:
                break
            await asyncio.sleep(0.01)
        assert not host.connections  # the server saw the connection end
    finally:
        server.close()
        await host.close_connections()


async def test_a_client_that_gives_up_stops_the_work_it_asked_for():
    voice = StuckTTS()
    impatient = RetryPolicy(attempts=1, first_item_timeout_s=0.2)
    async with serving(tts=voice) as url:
        with pytest.raises(ProviderCallError, match=re.escape("no answer within 0.2 s")):
            [c async for c in WyomingTTS(base_url=url, policy=impatient).synthesize("Hi.")]
        await asyncio.wait_for(voice.closed.wait(), 5)


# -- the reference implementation against ours -----------------------------------------------


@REFERENCE
async def test_the_reference_client_talks_to_our_server():
    from wyoming.asr import Transcribe, Transcript
    from wyoming.audio import AudioChunk as WyChunk
    from wyoming.audio import AudioStart, AudioStop
    from wyoming.client import AsyncTcpClient
    from wyoming.info import Describe, Info
    from wyoming.ping import Ping, Pong
    from wyoming.tts import Synthesize, SynthesizeVoice

    stt = RecordingSTT([QUESTION])
    async with serving(stt=stt, tts=FakeTTS(sample_rate=22050)) as url:
        port = int(url.rsplit(":", 1)[1])
        async with AsyncTcpClient("127.0.0.1", port) as client:
            await client.write_event(Describe().event())
            info = Info.from_event(await client.read_event())
            assert [p.name for p in info.asr] == ["voxloop-fake"]
            assert info.asr[0].models[0].languages == ["en"]
            assert [v.name for v in info.tts[0].voices] == ["tone (22050 Hz)"]

            await client.write_event(Ping(text="hi").event())
            assert Pong.from_event(await client.read_event()).text == "hi"

            # 48 kHz stereo, as a satellite might send it: downmixed and resampled here.
            stereo = (speech(1.0).repeat(3) * 32767).astype("<i2").repeat(2).tobytes()
            await client.write_event(Transcribe(language="en").event())
            await client.write_event(AudioStart(rate=48000, width=2, channels=2).event())
            for start in range(0, len(stereo), 4096):
                chunk = WyChunk(rate=48000, width=2, channels=2, audio=stereo[start : start + 4096])
                await client.write_event(chunk.event())
            await client.write_event(AudioStop().event())
            assert Transcript.from_event(await client.read_event()).text == QUESTION
            (heard,) = stt.heard
            assert len(heard) == 16000
            assert np.max(np.abs(heard[100:-100] - speech(1.0)[100:-100])) < 0.02

            await client.write_event(
                Synthesize(text="Hello there.", voice=SynthesizeVoice(name="x")).event()
            )
            events = []
            while not AudioStop.is_type((event := await client.read_event()).type):
                events.append(event)
    start, *chunks = events
    assert AudioStart.from_event(start).rate == 22050
    audio = b"".join(WyChunk.from_event(c).audio for c in chunks)
    assert len(audio) == 2 * int(12 * 0.05 * 22050)


class ReferenceHandler:
    """A reference-library server that behaves like wyoming-faster-whisper (a transcript,
    then it hangs up) and wyoming-piper (22,050 Hz audio in 1,024-sample chunks)."""

    def __init__(self, seen: list) -> None:
        from wyoming.server import AsyncEventHandler

        self.seen = seen
        outer = self

        class Handler(AsyncEventHandler):
            def __init__(self, *args, **kwargs) -> None:
                super().__init__(*args, **kwargs)
                self.audio = b""

            async def handle_event(self, event) -> bool:
                return await outer.handle(self, event)

        self.factory = Handler

    async def handle(self, handler, event) -> bool:
        from wyoming.asr import Transcript
        from wyoming.audio import AudioChunk as WyChunk
        from wyoming.audio import AudioStart, AudioStop
        from wyoming.info import AsrModel, AsrProgram, Attribution, Info, TtsProgram, TtsVoice
        from wyoming.tts import Synthesize

        self.seen.append(event)
        if event.type == "describe":
            who = Attribution(name="test", url="http://example.invalid")
            model = AsrModel("tiny-int8", who, True, None, None, ["en"])
            voice = TtsVoice("en_US-lessac-medium", who, True, None, None, ["en"])
            info = Info(
                asr=[AsrProgram("faster-whisper", who, True, None, "1", [model])],
                tts=[TtsProgram("piper", who, True, None, "1", [voice])],
            )
            await handler.write_event(info.event())
        elif WyChunk.is_type(event.type):
            handler.audio += WyChunk.from_event(event).audio
        elif AudioStop.is_type(event.type):
            text = f"{len(handler.audio)} bytes"
            await handler.write_event(Transcript(text=text).event())
            return False
        elif Synthesize.is_type(event.type):
            pcm = (np.arange(22050) % 100).astype("<i2").tobytes()
            await handler.write_event(AudioStart(rate=22050, width=2, channels=1).event())
            for start in range(0, len(pcm), 2048):
                chunk = WyChunk(rate=22050, width=2, channels=1, audio=pcm[start : start + 2048])
                await handler.write_event(chunk.event())
            await handler.write_event(AudioStop().event())
        return True


@REFERENCE
async def test_our_client_talks_to_a_reference_server():
    from wyoming.server import AsyncTcpServer

    seen: list = []
    port = free_port()
    server = AsyncTcpServer("127.0.0.1", port)
    await server.start(ReferenceHandler(seen).factory)
    url = f"tcp://127.0.0.1:{port}"
    try:
        stt = WyomingSTT(base_url=url, model="tiny-int8", policy=ONCE)
        tts = WyomingTTS(base_url=url, voice="en_US-lessac-medium", policy=ONCE)
        await stt.warmup()
        await tts.warmup()
        result = await transcribe_all(stt, speech(0.5))
        chunks = [c async for c in tts.synthesize("Hello there.")]
    finally:
        await server.stop()
    assert stt.info().model == "faster-whisper (tiny-int8)"
    assert tts.info().model == "piper (en_US-lessac-medium)"
    assert result.text == "16000 bytes"
    assert np.array_equal(np.concatenate([c.pcm for c in chunks]), np.arange(22050) % 100)
    asked = {e.type: e.data for e in seen}
    assert asked["transcribe"] == {"language": "en", "name": "tiny-int8"}
    assert asked["audio-start"] == {"rate": 16000, "width": 2, "channels": 1}
    assert asked["synthesize"] == {"text": "Hello there.", "voice": {"name": "en_US-lessac-medium"}}


# -- bad input to our server -----------------------------------------------------------------


@contextlib.asynccontextmanager
async def raw(url: str):
    host, port = url.removeprefix("tcp://").rsplit(":", 1)
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        yield reader, writer
    finally:
        writer.close()


TRANSCRIBE = encode_event(Event("transcribe"))
MONO = {"rate": 16000, "width": 2, "channels": 1}


async def answer(reader, writer, data: bytes) -> Event | None:
    writer.write(data)
    await writer.drain()
    return await asyncio.wait_for(read_event(reader), 5)


async def still_answers(reader, writer) -> None:
    info = await answer(reader, writer, encode_event(Event("describe")))
    assert info is not None and info.type == "info"


@pytest.mark.parametrize(
    ("frame", "code", "words"),
    [
        (b"{this is not json\n", "bad_json", "not JSON"),
        (b'["a list"]\n', "bad_event", "a JSON object"),
        (b'{"type": 7, "payload_length": 4}\nabcd', "bad_event", "string 'type'"),
        (encode_event(Event("detect")), "unknown_event", "'detect'"),
        (
            TRANSCRIBE + encode_event(Event("audio-chunk", MONO, b"abc")),
            "bad_audio",
            "3 bytes is not a whole number of 2-byte frames",
        ),
        (
            TRANSCRIBE + encode_event(Event("audio-chunk", {**MONO, "channels": 2}, b"ab")),
            "bad_audio",
            "4-byte frames",
        ),
        (encode_event(Event("audio-stop")), "bad_order", "audio-stop before"),
        (encode_event(Event("audio-chunk", MONO, b"ab")), "bad_order", "audio-chunk before"),
        (encode_event(Event("audio-start", {"rate": "fast"})), "bad_audio", "rate"),
        (encode_event(Event("synthesize", {"text": 7})), "bad_event", "'text'"),
        (
            b'{"type": "describe", "data_length": 5}\n{oops',
            "bad_json",
            "data block is not JSON",
        ),
    ],
)
async def test_bad_input_gets_an_error_and_the_connection_goes_on(frame, code, words):
    async with serving(stt=FakeSTT(), tts=FakeTTS()) as url, raw(url) as (reader, writer):
        error = await answer(reader, writer, frame)
        assert error is not None and error.type == "error", error
        assert error.data["code"] == code and words in error.data["text"], error.data
        await still_answers(reader, writer)


@pytest.mark.parametrize(
    ("frame", "words"),
    [
        (b'{"type": "audio-chunk", "payload_length": 1000000000}\n', "over the 8388608-byte cap"),
        (b'{"type": "info", "data_length": 99999999}\n', "info: data of 99999999 bytes"),
        (b'{"type": "audio-chunk", "payload_length": -1}\n', "must be a byte count"),
        (b"x" * 100_000, "no end within 65536 bytes"),
    ],
)
async def test_an_oversized_frame_gets_an_error_and_ends_that_connection_only(frame, words):
    async with serving(stt=FakeSTT(), tts=FakeTTS()) as url:
        async with raw(url) as (reader, writer):
            error = await answer(reader, writer, frame)
            assert error is not None and error.data["code"] in ("too_large", "bad_event")
            assert words in error.data["text"], error.data
            assert await asyncio.wait_for(read_event(reader), 5) is None  # closed
        async with raw(url) as (reader, writer):
            await still_answers(reader, writer)  # the server lives on


async def test_too_long_an_utterance_is_refused():
    async with serving(stt=FakeSTT(), max_utterance_s=0.5) as url, raw(url) as (reader, writer):
        fmt = {"rate": 16000, "width": 2, "channels": 1}
        writer.write(encode_event(Event("transcribe")) + encode_event(Event("audio-start", fmt)))
        error = await answer(reader, writer, encode_event(Event("audio-chunk", fmt, bytes(32000))))
        assert error is not None and error.data["code"] == "too_large", error
        assert "more than 0.5 s of audio" in error.data["text"]
        await still_answers(reader, writer)


async def test_a_failing_model_is_an_error_event_not_a_dead_connection():
    async with serving(tts=BrokenTTS()) as url, raw(url) as (reader, writer):
        error = await answer(reader, writer, encode_event(Event("synthesize", {"text": "Hi."})))
        assert error is not None and error.data["code"] == "provider_call_failed"
        assert "the voice fell over" in error.data["text"]
        error = await answer(reader, writer, encode_event(Event("transcribe")))
        assert error is not None and error.data["code"] == "not_served"
        await still_answers(reader, writer)


# -- bad servers and settings, from the provider's side --------------------------------------


async def test_an_unreachable_server_is_named():
    url = f"tcp://127.0.0.1:{free_port()}"
    with pytest.raises(ProviderCallError, match=f"STT server at {url}: connection refused"):
        await transcribe_all(WyomingSTT(base_url=url, policy=QUICK), speech(0.5))
    with pytest.raises(ProviderCallError, match=f"TTS server at {url}: connection refused"):
        [c async for c in WyomingTTS(base_url=url, policy=QUICK).synthesize("Hi.")]


@contextlib.asynccontextmanager
async def answering(reply: bytes) -> AsyncIterator[tuple[str, list[int]]]:
    """A server that answers every connection's first line with `reply`."""
    connections: list[int] = []

    async def serve(reader, writer):
        connections.append(1)
        await reader.readline()
        writer.write(reply)
        await writer.drain()
        await reader.read()  # until the client hangs up
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    try:
        yield f"tcp://127.0.0.1:{server.sockets[0].getsockname()[1]}", connections
    finally:
        server.close()


@pytest.mark.parametrize(
    ("reply", "words"),
    [
        (b"HTTP/1.1 400 Bad Request\r\n\r\n", "not Wyoming: an event header that is not JSON"),
        (b'{"type": "audio-chunk", "payload_length": 99999999999}\n', "over the 8388608"),
        (encode_event(Event("error", {"text": "no voice", "code": "x"})), "error: no voice (x)"),
        (
            encode_event(Event("audio-chunk", {"rate": 22050, "width": 4, "channels": 1}, b"ab")),
            "bad audio: audio-chunk: 32-bit audio",
        ),
    ],
)
async def test_a_server_that_answers_garbage_fails_clearly_and_is_not_retried(reply, words):
    async with answering(reply) as (url, connections):
        with pytest.raises(ProviderCallError, match=re.escape(words)):
            [c async for c in WyomingTTS(base_url=url, policy=QUICK).synthesize("Hi.")]
    assert len(connections) == 1


@pytest.mark.parametrize(
    ("url", "words"),
    [
        (None, "stt.base_url is not set"),
        ("http://127.0.0.1:10300", "is addressed as tcp://host:port"),
        ("tcp://127.0.0.1", "needs a host and a port"),
        ("tcp://127.0.0.1:port", "not a valid address"),
        ("tcp://127.0.0.1:10300/asr", "needs a host and a port and nothing else"),
    ],
)
def test_a_missing_or_malformed_address_is_named(url, words):
    pool = ProviderPool(Settings(stt={"provider": "wyoming", "base_url": url}))
    with pytest.raises(ProviderError, match=words) as caught:
        pool.get("stt")
    assert "e.g. stt.base_url=tcp://127.0.0.1:10300" in str(caught.value)


def test_the_registry_knows_wyoming_for_both_stages():
    settings = Settings(
        stt={"provider": "wyoming", "base_url": "tcp://[::1]:10300", "model": "tiny-int8"},
        tts={"provider": "wyoming", "base_url": "tcp://speech:10200", "sample_rate": 16000},
    )
    pool = ProviderPool(settings)
    stt, tts = pool.get("stt"), pool.get("tts")
    assert isinstance(stt, WyomingSTT) and stt.info().source == "tcp://[::1]:10300"
    assert stt.model == "tiny-int8"
    assert isinstance(tts, WyomingTTS) and tts.sample_rate == 16000


# -- serve-models ----------------------------------------------------------------------------


async def test_serve_models_serves_the_configured_providers_until_cancelled():
    settings = Settings(stt={"provider": "fake"}, tts={"provider": "fake"})
    ready: asyncio.Future[dict[str, str]] = asyncio.get_running_loop().create_future()
    task = asyncio.create_task(serve_models(settings, "127.0.0.1", 0, on_ready=ready.set_result))
    url = (await asyncio.wait_for(ready, 10))["wyoming"]
    stt = WyomingSTT(base_url=url, policy=ONCE)
    assert (await transcribe_all(stt, speech(1.0))).text == "fake transcript of 1.0 seconds"
    with pytest.raises(VoxloopError, match="already in use"):
        await serve_models(settings, "127.0.0.1", int(url.rsplit(":", 1)[1]))
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    with pytest.raises(ProviderCallError, match="connection refused"):
        await transcribe_all(stt, speech(1.0))


@contextlib.contextmanager
def serve_models_process(env: dict[str, str], timeout_s: float) -> Iterator[str]:
    """`voxloop serve-models` in a child process, up to its ready line."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "voxloop", "serve-models", "--port", str(port)],
        stderr=subprocess.PIPE,
        text=True,
        env=child_env(**env),
    )
    lines: list[str] = []
    found = threading.Event()

    def watch() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            lines.append(line)
            if "serve-models is ready" in line:
                found.set()

    threading.Thread(target=watch, daemon=True).start()
    try:
        if not found.wait(timeout_s):
            raise AssertionError(f"serve-models did not get ready: {''.join(lines)[-2000:]}")
        yield f"tcp://127.0.0.1:{port}"
    finally:
        proc.terminate()
        assert proc.wait(timeout=20) == 0, "".join(lines)[-2000:]


def test_the_serve_models_command_with_fakes():
    env = {"VOXLOOP_STT__PROVIDER": "fake", "VOXLOOP_TTS__PROVIDER": "fake"}
    with serve_models_process(env, timeout_s=60) as url:
        stt = WyomingSTT(base_url=url, policy=ONCE)
        result = asyncio.run(transcribe_all(stt, speech(1.0)))
    assert result.text == "fake transcript of 1.0 seconds"


@pytest.mark.models
def test_the_embedded_models_over_wyoming_say_and_hear_a_sentence():
    """The default serve-models (Whisper and Piper): speak through Wyoming TTS, hear it
    back through Wyoming STT."""
    from voxloop.audio.resample import resample
    from voxloop.hearing.wer import wer

    sentence = "Please book a table for four people at seven tonight."
    with serve_models_process(REPEATABLE_ENV, timeout_s=180) as url:
        tts, stt = WyomingTTS(base_url=url), WyomingSTT(base_url=url)

        async def round_trip() -> str:
            await tts.warmup()
            pcm = np.concatenate([c.pcm async for c in tts.synthesize(sentence)])
            audio = resample(pcm.astype(np.float32) / 32768, tts.sample_rate, 16000)
            return (await transcribe_all(stt, audio)).text

        heard = asyncio.run(round_trip())
    assert "piper" in tts.info().model
    assert wer(sentence, heard) <= 0.15, heard


# -- a whole session over Wyoming ------------------------------------------------------------


@contextlib.contextmanager
def serving_in_a_thread(stt, tts) -> Iterator[str]:
    """Our Wyoming server on an event loop of its own (the app's TestClient has another)."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    host = WyomingSpeechServer(stt, tts)
    server = asyncio.run_coroutine_threadsafe(host.start(), loop).result(5)

    async def stop() -> None:
        server.close()
        await host.close_connections()

    try:
        yield f"tcp://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    finally:
        asyncio.run_coroutine_threadsafe(stop(), loop).result(5)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
        loop.close()


def test_a_session_hears_and_speaks_through_wyoming():
    from starlette.testclient import TestClient

    from voxloop.server.app import create_app

    from test_protocol import receive_until, start

    with serving_in_a_thread(FakeSTT([QUESTION]), FakeTTS(sample_rate=16000)) as url:
        remote = {"provider": "wyoming", "base_url": url}
        settings = Settings(
            vad={"provider": "fake"},
            stt=remote,
            llm={"provider": "fake"},
            tts={**remote, "sample_rate": 16000},
            store={"backend": "memory"},
        )
        rng = np.random.default_rng(0)
        loud = (rng.uniform(-0.3, 0.3, 16000) * 32767).astype("<i2").tobytes()
        app = create_app(settings, warmup=False)
        with TestClient(app) as client, client.websocket_connect("/ws") as ws:
            start(ws)
            for audio in (loud, bytes(2 * 16000)):
                for i in range(0, len(audio), 640):
                    ws.send_bytes(audio[i : i + 640])
            events = receive_until(ws, "metrics")
    kinds = [e for e in events if isinstance(e, dict)]
    finals = [e["text"] for e in kinds if e["type"] == "final_transcript"]
    assert finals == [QUESTION]
    reply = next(e for e in kinds if e["type"] == "llm_response" and e["is_complete"])
    assert reply["content"] == f"You said: {QUESTION}"
    spoken = sum(len(e) for e in events if isinstance(e, bytes)) // 2
    assert spoken == pytest.approx(len(reply["content"]) * 0.05 * 16000, rel=0.05)
    assert not [e for e in kinds if e["type"] == "error"], kinds


def test_the_reference_helpers_are_imported_lazily():
    """`wyoming` is a test dependency only: the providers and server never import it."""
    code = (
        "import sys, voxloop.providers.remote.wyoming, voxloop.server.speech_host; "
        "print(json.dumps('wyoming' in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", f"import json; {code}"], capture_output=True, text=True, check=True
    )
    assert json.loads(out.stdout) is False
