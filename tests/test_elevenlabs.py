"""ElevenLabs streaming TTS against a local fake of its HTTP API: no test reaches the
internet."""

from __future__ import annotations

import asyncio
import json
import logging
import time

import numpy as np
import pytest

from fake_elevenlabs import KEY, VOICE, fake_elevenlabs_server, fake_pcm
from voxloop.config.settings import ConfigError, Settings
from voxloop.errors import ProviderCallError
from voxloop.providers.cloud.elevenlabs import PCM_RATES, ElevenLabsTTS, vendor_detail
from voxloop.providers.resilience import RetryPolicy


class RecordingClock:
    """Real time for timeouts, but backoff sleeps are recorded and skipped."""

    def __init__(self) -> None:
        self.slept: list[float] = []

    def now(self) -> float:
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        await asyncio.sleep(0)


@pytest.fixture
def server():
    with fake_elevenlabs_server() as fake:
        yield fake


def tts(server, *, key: str = KEY, clock=None, **options) -> ElevenLabsTTS:
    policy = {"attempts": 3, "base_s": 0.01, "cap_s": 2.0, "first_item_timeout_s": 2.0}
    policy.update({k: options.pop(k) for k in list(options) if k in policy})
    return ElevenLabsTTS(
        base_url=server.url,
        api_key=key,
        policy=RetryPolicy(**policy),
        clock=clock or RecordingClock(),
        **options,
    )


async def collect(provider: ElevenLabsTTS, text: str = "Hello there.") -> list:
    return [chunk async for chunk in provider.synthesize(text)]


@pytest.mark.parametrize("rate", [24000, 22050, 8000])
async def test_audio_streams_in_chunks_and_reassembles_exactly(server, rate):
    chunks = await collect(tts(server, sample_rate=rate))
    assert len(chunks) > 1 and {c.sample_rate for c in chunks} == {rate}
    assert np.array_equal(np.concatenate([c.pcm for c in chunks]), fake_pcm(rate))
    assert all(c.pcm.dtype == np.int16 for c in chunks)


async def test_the_request_is_in_the_vendor_format(server):
    await collect(tts(server, model="eleven_turbo_v2_5"), "Hi, it's me.")
    sent = server.requests[0]
    assert sent["voice_id"] == VOICE
    assert sent["query"] == {"output_format": "pcm_24000"}
    assert sent["headers"]["xi-api-key"] == KEY
    assert "authorization" not in sent["headers"]
    assert json.loads(sent["body"]) == {"text": "Hi, it's me.", "model_id": "eleven_turbo_v2_5"}


def test_settings_pick_the_endpoint_voice_model_rate_and_policy(server):
    settings = Settings(
        tts={
            "provider": "elevenlabs",
            "base_url": server.url + "/",
            "api_key": KEY,
            "sample_rate": 16000,
            "timeout_s": 3.0,
            "retries": 4,
        }
    )
    provider = ElevenLabsTTS.from_settings(settings)
    assert provider.url == f"{server.url}/v1/text-to-speech/{VOICE}/stream"
    assert (provider.model, provider.sample_rate) == ("eleven_flash_v2_5", 16000)
    assert provider.policy.attempts == 5 and provider.policy.first_item_timeout_s == 3.0
    assert KEY not in repr(provider.info())


def test_the_registry_finds_it():
    from voxloop.providers.registry import Registry

    assert Registry().resolve("tts", "elevenlabs") is ElevenLabsTTS


@pytest.mark.parametrize("rate", [12000, 44000, 96000])
def test_an_unsupported_sample_rate_is_a_clear_config_error(rate):
    settings = Settings(tts={"provider": "elevenlabs", "sample_rate": rate})
    with pytest.raises(ConfigError) as err:
        ElevenLabsTTS.from_settings(settings)
    message = str(err.value)
    assert f"tts.sample_rate = {rate}" in message
    assert all(str(r) in message for r in PCM_RATES)


async def test_a_429_is_retried_after_the_servers_retry_after(server):
    server.script = ["429"]
    clock = RecordingClock()
    chunks = await collect(tts(server, clock=clock))
    assert np.array_equal(np.concatenate([c.pcm for c in chunks]), fake_pcm(24000))
    assert len(server.requests) == 2
    assert clock.slept == [1.5]  # Retry-After: 1.5 beats the 0.01 s jittered backoff


async def test_a_server_error_is_retried_until_attempts_run_out(server):
    server.script = ["500", "500"]
    assert await collect(tts(server))
    assert len(server.requests) == 3
    server.script = ["500", "500", "500"]
    with pytest.raises(ProviderCallError) as err:
        await collect(tts(server))
    assert err.value.status == 500 and err.value.retryable
    assert "An internal error occurred." in str(err.value)
    assert len(server.requests) == 6


@pytest.mark.parametrize(
    ("mode", "says"),
    [
        ("401", "answered 401: Invalid API key (invalid_api_key)"),
        ("422", "answered 422: body.text: Field required"),
    ],
)
async def test_client_errors_are_clear_and_not_retried(server, mode, says):
    server.script = [mode]
    with pytest.raises(ProviderCallError) as err:
        await collect(tts(server))
    assert says in str(err.value) and not err.value.retryable
    assert err.value.status == int(mode)
    assert len(server.requests) == 1


async def test_an_unknown_voice_names_the_vendors_reason(server):
    with pytest.raises(ProviderCallError, match=r"400: .*\(voice_not_found\)"):
        await collect(tts(server, voice="no-such-voice"))
    assert len(server.requests) == 1


async def test_a_slow_first_byte_times_out_within_the_configured_timeout(server):
    server.script = ["slow"]
    started = time.monotonic()
    with pytest.raises(ProviderCallError, match=r"no answer within 0\.3 s before the first") as err:
        await collect(tts(server, attempts=1, first_item_timeout_s=0.3))
    assert err.value.retryable
    assert time.monotonic() - started < server.slow_s  # it did not wait for the server


async def test_a_drop_after_the_first_chunk_is_an_error_not_a_retry(server):
    server.script = ["drop"]
    seen = []
    with pytest.raises(ProviderCallError, match=r"connection to .* failed"):
        async for chunk in tts(server).synthesize("Hello there."):
            seen.append(chunk)
    heard = np.concatenate([c.pcm for c in seen])
    assert 0 < len(heard) < len(fake_pcm(24000))
    assert np.array_equal(heard, fake_pcm(24000)[: len(heard)])  # nothing twice
    assert len(server.requests) == 1


async def test_the_key_is_never_in_errors_or_logs(server, caplog):
    caplog.set_level(logging.DEBUG)
    messages = []
    for script in (["401"], ["500", "500", "500"], ["422"], ["drop"]):
        server.script = list(script)
        with pytest.raises(ProviderCallError) as err:
            await collect(tts(server))
        messages.append(f"{err.value!s} {err.value!r} {err.value.__cause__!r}")
    assert all(KEY not in m for m in messages)
    assert KEY not in caplog.text


async def test_closing_the_generator_early_closes_the_response(server):
    server.script = ["long"]
    provider = tts(server)
    responses = []

    async def remember(response):
        responses.append(response)

    provider.client.event_hooks["response"] = [remember]
    before = asyncio.all_tasks()
    stream = provider.synthesize("A long story.")
    first = await anext(stream)
    assert len(first.pcm) > 0 and not responses[0].is_closed
    await stream.aclose()
    assert responses[0].is_closed
    assert asyncio.all_tasks() <= before  # nothing left running on our side
    # ...and the server sees the hang-up long before its 10 s of audio would end.
    assert await asyncio.to_thread(server.hung_up.wait, 5.0)


async def test_empty_text_sends_nothing(server):
    assert await collect(tts(server), "  \n") == []
    assert server.requests == []


def test_vendor_detail_reads_every_error_shape():
    assert vendor_detail(b'{"detail": {"status": "x", "message": "Nope"}}') == "Nope (x)"
    assert vendor_detail(b'{"detail": "plain"}') == "plain"
    assert vendor_detail(b"<html>Bad gateway</html>") == "<html>Bad gateway</html>"
    assert vendor_detail(b"") == "(no body)"
