"""Deepgram adapters (STT: streaming `/v1/listen`, TTS: Aura `/v1/speak`) against the local
fake server, which speaks Deepgram's wire formats and misbehaves on cue."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable

import numpy as np
import pytest

from fake_deepgram import WORDS, fake_deepgram_server, speak_pcm, speech
from voxloop.config.settings import Settings
from voxloop.errors import ProviderCallError, ProviderError
from voxloop.providers.base import Transcript, transcribe_all
from voxloop.providers.cloud.deepgram import DeepgramTTS
from voxloop.providers.cloud.deepgram_listen import DeepgramSTT, _Utterance
from voxloop.providers.resilience import RetryPolicy

KEY = "dg-test-0123456789abcdef"
UTTERANCE = list(range(1, 13))  # three seconds, twelve words, three final segments
EXPECTED = " ".join(WORDS[i - 1] for i in UTTERANCE)


def quick(**overrides) -> RetryPolicy:
    return RetryPolicy(**{"attempts": 3, "base_s": 0.01, "cap_s": 0.05, **overrides})


@pytest.fixture
def server():
    with fake_deepgram_server() as fake:
        yield fake


@pytest.fixture
async def closing():
    """Close the TTS clients a test made, so no pooled connection outlives its loop."""
    made: list[DeepgramTTS] = []

    def keep(tts: DeepgramTTS) -> DeepgramTTS:
        made.append(tts)
        return tts

    yield keep
    for tts in made:
        await tts.client.aclose()


def stt_for(server, **kwargs) -> DeepgramSTT:
    return DeepgramSTT(
        base_url=server.url, api_key=KEY, policy=kwargs.pop("policy", quick()), **kwargs
    )


async def chunks(audio: np.ndarray, pause_after_s: float | None = None, resume=None):
    """The audio in 100 ms chunks; optionally waiting for `resume()` midway."""
    for i in range(0, len(audio), 1600):
        if pause_after_s is not None and i == int(pause_after_s * 16000):
            await resume()
        yield audio[i : i + 1600]


async def until(condition: Callable[[], bool], what: str, limit_s: float = 5.0) -> None:
    """Wait for something the other side does; the limit only guards against a hang."""
    for _ in range(int(limit_s / 0.01)):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"timed out waiting for {what}")


async def results(stt: DeepgramSTT, audio: AsyncIterator[np.ndarray]) -> list[Transcript]:
    return [r async for r in stt.transcribe(audio)]


async def test_partials_arrive_while_audio_still_comes_and_the_final_has_every_word(server):
    first_partial = asyncio.Event()
    seen: list[Transcript] = []

    async def resume():  # the input stalls after 1.5 s until a partial has come back
        await asyncio.wait_for(first_partial.wait(), 5)

    async for result in stt_for(server).transcribe(chunks(speech(UTTERANCE), 1.5, resume)):
        if not result.is_final:
            first_partial.set()
        seen.append(result)
    assert seen[0].text.startswith("alpha") and not seen[0].is_final
    assert [r.is_final for r in seen].count(True) == 1 and seen[-1].is_final
    assert seen[-1].text == EXPECTED
    assert [(s.start_s, s.end_s) for s in seen[-1].segments] == [(0, 1), (1, 2), (2, 3)]
    assert all(r.text for r in seen[:-1])
    assert server.controls == ["Finalize", "CloseStream"]


async def test_query_parameters_and_token_header_follow_the_settings(server):
    settings = Settings(
        stt={
            "provider": "deepgram",
            "base_url": server.url + "/v1/",
            "api_key": KEY,
            "model": "nova-2",
            "language": "de",
            "endpointing_ms": 500,
        }
    )
    stt = DeepgramSTT.from_settings(settings)
    assert (await transcribe_all(stt, speech([1, 2]))).text == "alpha bravo"
    assert server.queries[0] == {
        "model": "nova-2",
        "encoding": "linear16",
        "sample_rate": "16000",
        "channels": "1",
        "interim_results": "true",
        "endpointing": "500",
        "language": "de",
        "smart_format": "true",
    }
    assert server.headers[0]["authorization"] == f"Token {KEY}"
    assert KEY not in repr(stt.info())


@pytest.mark.parametrize("failure", ["drop_after:1.6", "error_after:1.6"])
async def test_a_lost_connection_reconnects_and_keeps_every_word_exactly_once(server, failure):
    stt = stt_for(server)
    clean = (await results(stt, chunks(speech(UTTERANCE))))[-1]
    server.script = [failure]
    out = await results(stt_for(server), chunks(speech(UTTERANCE)))
    final = out[-1]
    assert final.is_final and [r.is_final for r in out].count(True) == 1
    assert final.text == clean.text == EXPECTED
    assert final.segments == clean.segments  # timestamps continue across the new connection
    assert server.attempts == 3  # the clean run, the lost connection, its replacement
    if failure.startswith("error_after"):  # a close frame: every result before it arrived
        assert server.audio[2] == 2 * 16000 * 2  # replay from the first final's end (1 s)


async def test_reconnection_that_keeps_failing_raises_a_retryable_error(server):
    server.script = ["drop_after:1.2", "500", "500", "500"]
    with pytest.raises(ProviderCallError) as caught:
        await results(stt_for(server), chunks(speech(UTTERANCE)))
    assert caught.value.retryable and "500" in str(caught.value)
    assert server.attempts == 4


async def test_a_refused_key_fails_at_once_and_never_shows_the_key(server, caplog):
    caplog.set_level(logging.DEBUG)
    server.secret = "the-right-key-0000"
    with pytest.raises(ProviderCallError) as caught:
        await results(stt_for(server), chunks(speech(UTTERANCE)))
    error = caught.value
    assert not error.retryable and error.status == 401
    assert "API key" in str(error) and "stt.api_key" in str(error)
    assert KEY not in str(error) and KEY not in repr(error) and KEY not in caplog.text
    assert server.attempts == 1


async def test_429_and_500_on_connect_are_retried(server):
    server.script = ["429", "500"]
    assert (await transcribe_all(stt_for(server), speech(UTTERANCE))).text == EXPECTED
    assert server.attempts == 3


async def test_a_malformed_message_is_a_clear_error(server):
    server.script = ["malformed"]
    with pytest.raises(ProviderCallError, match="not a JSON object") as caught:
        await transcribe_all(stt_for(server), speech(UTTERANCE))
    assert not caught.value.retryable


async def test_without_a_from_finalize_answer_the_close_ends_the_wait(server):
    server.script = ["no_from_finalize"]
    assert (await transcribe_all(stt_for(server), speech([3, 0, 4]))).text == "charlie delta"
    assert server.controls == ["Finalize", "CloseStream"]


@pytest.mark.parametrize("samples", [0, 800])
async def test_too_little_audio_is_not_sent(server, samples):
    final = await transcribe_all(stt_for(server), np.zeros(samples, np.float32))
    assert final == Transcript("", is_final=True, language="en")
    assert server.attempts == 0


async def test_keepalive_holds_the_socket_open_while_the_input_pauses(server):
    stt = stt_for(server, keepalive_s=0.02)

    async def resume():
        await until(lambda: "KeepAlive" in server.controls, "a KeepAlive")

    out = await results(stt, chunks(speech(UTTERANCE), 0.5, resume))
    assert out[-1].text == EXPECTED and server.attempts == 1


async def test_a_failing_input_is_raised_as_is_and_not_retried(server):
    async def broken():
        yield speech([1, 2])
        raise ValueError("microphone unplugged")

    with pytest.raises(ValueError, match="unplugged"):
        await results(stt_for(server), broken())
    assert server.attempts == 1
    await until(lambda: server.disconnects == 1, "the socket to close")


@pytest.mark.parametrize("how", ["cancel", "aclose"])
async def test_stopping_mid_utterance_closes_the_socket_and_leaves_no_tasks(server, how):
    before = asyncio.all_tasks()
    partial = asyncio.Event()
    input_closed = asyncio.Event()

    async def endless():
        try:
            yield speech([1, 2, 3, 4, 5])
            await asyncio.Event().wait()  # the user keeps the floor forever
        finally:
            input_closed.set()

    stream = stt_for(server).transcribe(endless())
    if how == "cancel":

        async def consume():
            async for _ in stream:
                partial.set()

        task = asyncio.create_task(consume())
        await asyncio.wait_for(partial.wait(), 5)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    else:
        assert not (await anext(stream)).is_final
        await stream.aclose()
    assert input_closed.is_set()
    await until(lambda: server.disconnects == 1, "the fake to see the disconnect")
    await until(lambda: asyncio.all_tasks() <= before, "the adapter's tasks to end")


def test_the_replay_buffer_is_capped_and_trimmed_at_each_final():
    state = _Utterance(16000, replay_s=1.0)
    state.sent(bytes(2 * 24000))  # 1.5 s sent: only the last second is kept
    assert (state.replay_start, len(state.replay)) == (8000, 32000)
    state.result(0.0, 0.75, "alpha bravo charlie", is_final=True)
    assert (state.replay_start, len(state.replay)) == (12000, 24000)
    assert len(state.reconnecting()) == 24000 and state.offset_s == 0.75
    state.result(0.0, 0.5, "delta", is_final=True)  # new connection: t = 0 is 0.75 s
    assert state.segments[-1].start_s == 0.75 and state.segments[-1].end_s == 1.25
    assert state.text == "alpha bravo charlie delta"


async def test_speech_streams_pcm_even_when_samples_straddle_chunks(server, closing):
    tts = closing(DeepgramTTS(base_url=server.url, api_key=KEY, policy=quick()))
    out = [c async for c in tts.synthesize("Hello there.")]
    assert len(out) > 1 and {c.sample_rate for c in out} == {24000}
    assert np.concatenate([c.pcm for c in out]).tobytes() == speak_pcm(24000)
    request = server.speak_requests[0]
    assert request["query"] == {
        "model": "aura-2-thalia-en",
        "encoding": "linear16",
        "sample_rate": "24000",
        "container": "none",
    }
    assert request["json"] == {"text": "Hello there."}
    assert request["authorization"] == f"Token {KEY}"


async def test_speech_settings_choose_the_voice_and_rate(server, closing):
    tts_settings = {"base_url": server.url, "model": "aura-2-zeus-en", "sample_rate": 16000}
    tts = closing(DeepgramTTS.from_settings(Settings(tts=tts_settings)))
    assert tts.voice == "aura-2-zeus-en" and tts.sample_rate == 16000
    tts = closing(
        DeepgramTTS.from_settings(Settings(tts={**tts_settings, "voice": "aura-2-luna-en"}))
    )
    out = [c async for c in tts.synthesize("Hi.")]
    assert np.concatenate([c.pcm for c in out]).tobytes() == speak_pcm(16000)
    assert server.speak_requests[0]["query"]["model"] == "aura-2-luna-en"
    with pytest.raises(ProviderError, match=r"tts\.sample_rate"):
        DeepgramTTS(sample_rate=22050)


async def test_speech_retries_429_and_500_but_not_400(server, closing):
    tts = closing(DeepgramTTS(base_url=server.url, api_key=KEY, policy=quick()))
    server.script = ["429", "500"]
    assert [c async for c in tts.synthesize("Hi.")]
    assert len(server.speak_requests) == 3
    server.script = ["400"]
    with pytest.raises(ProviderCallError, match="400") as caught:
        [c async for c in tts.synthesize("Hi.")]
    assert not caught.value.retryable and "No such model" in str(caught.value)
    assert len(server.speak_requests) == 4


async def test_speech_with_a_slow_first_byte_times_out(server, closing):
    server.script, server.slow_s = ["slow"], 1.0
    tts = closing(
        DeepgramTTS(base_url=server.url, policy=quick(attempts=1, first_item_timeout_s=0.2))
    )
    with pytest.raises(ProviderCallError, match="no answer within"):
        [c async for c in tts.synthesize("Hi.")]


async def test_speech_cut_after_its_first_chunk_fails_without_a_retry(server, closing):
    server.script = ["drop"]
    tts = closing(DeepgramTTS(base_url=server.url, policy=quick()))
    got = []
    with pytest.raises(ProviderCallError, match="connection"):
        async for chunk in tts.synthesize("Hi."):
            got.append(chunk)
    assert got and len(server.speak_requests) == 1


async def test_empty_text_sends_nothing(server, closing):
    tts = closing(DeepgramTTS(base_url=server.url, policy=quick()))
    assert [c async for c in tts.synthesize("  ")] == []
    assert server.speak_requests == []
