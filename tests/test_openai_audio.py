"""OpenAI speech adapters (STT: transcriptions, TTS: speech) against the local fake
server."""

from __future__ import annotations

import io
import wave

import numpy as np
import pytest

from fake_openai import fake_openai_server
from voxloop.errors import ProviderCallError
from voxloop.providers.base import transcribe_all
from voxloop.providers.cloud.openai_audio import OpenAISTT, OpenAITTS
from voxloop.providers.resilience import RetryPolicy

QUICK = RetryPolicy(attempts=3, base_s=0.01, cap_s=0.05)


@pytest.fixture
def server():
    with fake_openai_server() as fake:
        yield fake


async def test_transcription_uploads_the_utterance_as_wav(server):
    stt = OpenAISTT(base_url=server.url, api_key="sk-x", policy=QUICK)
    audio = (0.1 * np.sin(np.arange(16000) / 5)).astype(np.float32)
    result = await transcribe_all(stt, audio)
    assert result.text == "What is the capital of France?" and result.is_final
    sent = server.requests[0]
    assert sent["model"] == "gpt-4o-mini-transcribe"
    with wave.open(io.BytesIO(sent["audio"])) as w:
        assert (w.getframerate(), w.getnchannels(), w.getnframes()) == (16000, 1, 16000)
    assert server.headers[0]["authorization"] == "Bearer sk-x"


async def test_transcription_retries_a_server_error_but_not_a_bad_request(server):
    server.script = ["500"]
    stt = OpenAISTT(base_url=server.url, policy=QUICK)
    assert (await transcribe_all(stt, np.ones(8000, np.float32) * 0.1)).text
    server.script = ["400"]
    with pytest.raises(ProviderCallError, match="400"):
        await transcribe_all(stt, np.ones(8000, np.float32) * 0.1)
    assert len(server.requests) == 3


async def test_silence_too_short_to_send_is_not_sent(server):
    stt = OpenAISTT(base_url=server.url, policy=QUICK)
    assert (await transcribe_all(stt, np.zeros(100, np.float32))).text == ""
    assert server.requests == []


async def test_speech_streams_pcm_even_when_samples_straddle_chunks(server):
    tts = OpenAITTS(base_url=server.url, voice="nova", policy=QUICK)
    chunks = [c async for c in tts.synthesize("Hello there.")]
    assert len(chunks) > 1 and {c.sample_rate for c in chunks} == {24000}
    pcm = np.concatenate([c.pcm for c in chunks])
    assert np.array_equal(pcm, (np.arange(24000) % 200 - 100).astype(np.int16))
    assert server.requests[0] == {
        "model": "gpt-4o-mini-tts",
        "input": "Hello there.",
        "voice": "nova",
        "response_format": "pcm",
        "sample_rate": 24000,  # not OpenAI's own URL: a compatible server is asked for 24 kHz
    }


async def test_a_local_compatible_server_needs_no_key_and_gets_its_own_model_names(server):
    """speaches / faster-whisper-server: `base_url` and model names from the settings, no
    key anywhere (a placeholder goes in the header), the PCM rate asked for explicitly."""
    from voxloop.config.settings import Settings
    from voxloop.providers.registry import ProviderPool

    local = {"provider": "openai", "base_url": server.url}
    settings = Settings(
        stt={**local, "model": "Systran/faster-distil-whisper-small.en"},
        tts={**local, "model": "speaches-ai/Kokoro-82M-v1.0-ONNX", "voice": "af_heart"},
    )
    pool = ProviderPool(settings)
    stt, tts = pool.get("stt"), pool.get("tts")
    result = await transcribe_all(stt, np.ones(8000, np.float32) * 0.1)
    assert result.text == "What is the capital of France?"
    chunks = [c async for c in tts.synthesize("Hi.")]
    assert sum(len(c.pcm) for c in chunks) == 24000
    assert server.requests[0]["model"] == "Systran/faster-distil-whisper-small.en"
    assert server.requests[1]["model"] == "speaches-ai/Kokoro-82M-v1.0-ONNX"
    assert server.requests[1]["voice"] == "af_heart"
    assert server.requests[1]["sample_rate"] == 24000
    assert {h["authorization"] for h in server.headers} == {"Bearer no-key"}


def test_only_other_servers_are_asked_for_the_rate():
    """OpenAI's own speech is always 24 kHz: it is not sent a field it does not document."""
    assert "extra_body" not in OpenAITTS(api_key="sk-x").speech_request("Hi.")
    local = OpenAITTS(base_url="http://127.0.0.1:8000/v1").speech_request("Hi.")
    assert local["extra_body"] == {"sample_rate": 24000}


async def test_speech_errors_are_clear(server):
    server.script = ["400"]
    tts = OpenAITTS(base_url=server.url, policy=QUICK)
    with pytest.raises(ProviderCallError, match="answered 400"):
        [c async for c in tts.synthesize("Hi.")]


def test_a_whole_cloud_pipeline_by_config_alone(server):
    """VAD stays local (fake); STT, LLM and TTS all go to the OpenAI-style server."""
    from starlette.testclient import TestClient

    from voxloop.config.settings import Settings
    from voxloop.server.app import create_app

    from test_protocol import receive_until, start

    cloud = {"provider": "openai", "base_url": server.url, "api_key": "sk-x"}
    settings = Settings(
        vad={"provider": "fake"},
        stt=cloud,
        llm={**cloud, "model": "m"},
        tts=cloud,
        store={"backend": "memory"},
    )
    rng = np.random.default_rng(0)
    speech = (rng.uniform(-0.3, 0.3, 16000) * 32767).astype("<i2").tobytes()
    quiet = bytes(2 * 16000)
    app = create_app(settings, warmup=False)
    with TestClient(app) as client, client.websocket_connect("/ws") as ws:
        start(ws)
        for audio in (speech, quiet):
            for i in range(0, len(audio), 640):
                ws.send_bytes(audio[i : i + 640])
        events = receive_until(ws, "metrics")
    finals = [e["text"] for e in events if isinstance(e, dict) and e["type"] == "final_transcript"]
    assert finals == ["What is the capital of France?"]
    audio_out = b"".join(e for e in events if isinstance(e, bytes))
    assert len(audio_out) >= 2 * 24000  # the fake voice's second of speech, at 24 kHz
    started = next(e for e in events if isinstance(e, dict) and e["type"] == "tts_start")
    assert started["sample_rate"] == 24000
