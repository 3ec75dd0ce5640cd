"""Integration tests on the real embedded models, with audio made by our own TTS."""

from __future__ import annotations

import asyncio
import subprocess
import sys

import numpy as np
import pytest

from repeatable import REPEATABLE_ENV
from voxloop.audio.formats import silence
from voxloop.bench.server import child_env
from voxloop.hearing.vad import speech_segments
from voxloop.hearing.wer import normalize, wer
from voxloop.providers.base import Message, one_shot, transcribe_all

pytestmark = pytest.mark.models

SENTENCES = [
    "The quick brown fox jumps over the lazy dog.",
    "Please book a table for four people at seven tonight.",
    "The weather in Paris is sunny and warm today.",
    "My favourite colour is green, and I like to read books.",
]


def test_say_then_transcribe_round_trip(real_pool, speak):
    stt = real_pool.get("stt")
    refs, hyps = [], []
    for sentence in SENTENCES:
        result = asyncio.run(transcribe_all(stt, speak(sentence)))
        refs.append(sentence)
        hyps.append(result.text)
    score = wer(" ".join(refs), " ".join(hyps))
    print(f"round-trip WER {score:.3f}: {hyps}")
    assert score <= 0.15, hyps


def test_stt_partials_then_one_final(real_pool, speak):
    stt = real_pool.get("stt")
    audio = speak(SENTENCES[1])

    async def run():
        async def chunks():
            for i in range(0, len(audio), 3200):  # 200 ms at a time, at twice real time
                yield audio[i : i + 3200]
                await asyncio.sleep(0.1)

        return [t async for t in stt.transcribe(chunks())]

    results = asyncio.run(run())
    assert [r.is_final for r in results].count(True) == 1
    assert results[-1].is_final
    assert any(not r.is_final and r.text for r in results), "no partial transcripts"
    assert wer(SENTENCES[1], results[-1].text) <= 0.15


def test_stt_partials_wait_while_the_model_is_busy(real_pool, speak):
    # Another session's transcript holds the model for the whole utterance: no partial is
    # queued behind it (it would delay that session's final), and the final still comes.
    stt = real_pool.get("stt")
    audio = speak(SENTENCES[1])

    async def run():
        async def chunks():
            for i in range(0, len(audio), 3200):
                yield audio[i : i + 3200]
                await asyncio.sleep(0.1)

        stt.worker.pending += 1  # as a decode of another session's speech in flight
        try:
            return [t async for t in stt.transcribe(chunks())]
        finally:
            stt.worker.pending -= 1

    results = asyncio.run(run())
    assert [r.is_final for r in results] == [True]
    assert wer(SENTENCES[1], results[-1].text) <= 0.15


def test_a_final_takes_over_the_partial_decode_of_the_same_audio(real_pool, speak):
    # A pause's speculative final often asks for the very audio the last partial began a
    # moment before: it waits for that decode instead of holding the shared model again,
    # and gets the words a decode of its own gives. Other audio is decoded afresh.
    stt = real_pool.get("stt")
    audio = speak(SENTENCES[1])

    async def run():
        hold = asyncio.Event()

        async def stream():
            yield audio  # one chunk: a partial of all of it starts at once
            await hold.wait()

        seen = []

        async def listen():
            seen.extend([t async for t in stt.transcribe(stream())])

        listener = asyncio.create_task(listen())
        while stt.worker.idle:
            await asyncio.sleep(0.01)
        before = stt.reused
        shared = await transcribe_all(stt, audio)
        taken = stt.reused - before
        shorter = await transcribe_all(stt, audio[: -len(audio) // 4])
        hold.set()
        await listener
        own = await stt._decode_checked(audio, final=True)
        return shared, taken, stt.reused - before, own.transcript, seen, shorter

    shared, taken, taken_in_all, own, seen, shorter = asyncio.run(run())
    assert taken == 1
    # Then the stream's own final (the same audio again), and the shorter audio's final
    # from the partial its own one-shot stream began, not from the longer audio's.
    assert taken_in_all == 3
    assert shorter.text and shorter.text != own.text
    assert shared.is_final and shared.text == own.text
    assert wer(SENTENCES[1], shared.text) <= 0.15
    assert seen[-1].is_final and seen[-1].text == own.text


def test_vad_finds_the_speech_segments(real_pool, speak):
    vad = real_pool.get("vad")
    a, b = speak("Hello there."), speak("How are you doing today?")
    rate = 16000
    audio = np.concatenate([silence(1.0, rate), a, silence(1.5, rate), b, silence(1.0, rate)])

    async def detect():
        return [f async for f in vad.detect(one_shot(audio))]

    segs = speech_segments(asyncio.run(detect()), min_silence_s=0.4)
    assert len(segs) == 2, segs
    starts = [1.0, 1.0 + len(a) / rate + 1.5]
    for seg, start in zip(segs, starts, strict=True):
        # Piper pads each utterance with a little silence; allow for that plus a frame.
        assert abs(seg.start_s - start) < 0.35, (seg, start)
    assert segs[0].end_s < starts[1] - 1.0  # the long gap really separates them


def test_vad_sessions_do_not_share_state(real_pool, speak):
    vad = real_pool.get("vad")
    speech, quiet = speak("Hello there."), silence(1.0, 16000)

    async def both():
        async def probs(audio):
            return [f.probability async for f in vad.detect(one_shot(audio))]

        alone = await probs(quiet)
        mixed = await asyncio.gather(probs(speech), probs(quiet))
        return alone, mixed[1]

    alone, alongside = asyncio.run(both())
    assert alone == alongside


def test_llm_knows_the_capital_of_france(real_pool, real_settings):
    llm = real_pool.get("llm")
    messages = [
        Message("system", real_settings.llm.system_prompt),
        Message("user", "What is the capital of France?"),
    ]

    async def ask():
        return "".join([d async for d in llm.generate(messages, temperature=0.0)])

    reply = asyncio.run(ask())
    assert "paris" in normalize(reply), reply


def test_llm_cancel_stops_decoding(real_pool):
    llm = real_pool.get("llm")
    messages = [Message("user", "Count from one to two hundred, in words.")]

    async def run():
        got = []
        gen = llm.generate(messages, max_tokens=200)
        async for delta in gen:
            got.append(delta)
            if len(got) == 3:
                break
        await gen.aclose()
        steps_after_close = llm.worker.steps_run
        await asyncio.sleep(0.5)  # a running decoder would take ~20 more steps by now
        return got, steps_after_close, llm.worker.steps_run

    got, before, after = asyncio.run(run())
    assert len(got) == 3
    assert after - before <= 2, "decoding went on after the stream was closed"


def test_tiny_preset_loads_and_answers(tmp_path):
    from voxloop.config.settings import Settings
    from voxloop.providers.local.llama_llm import LlamaLLM

    llm = LlamaLLM.from_settings(Settings(llm={"preset": "tiny"}, cache_dir=tmp_path))

    async def ask():
        return "".join([d async for d in llm.generate([Message("user", "Say hello.")])])

    assert asyncio.run(ask()).strip()
    llm.close()


def test_tts_streams_one_chunk_per_sentence(real_pool):
    tts = real_pool.get("tts")

    async def chunks():
        return [c async for c in tts.synthesize("First sentence. Second one. And a third.")]

    parts = asyncio.run(chunks())
    assert len(parts) == 3
    assert all(p.sample_rate == 22050 and len(p.pcm) > 2205 for p in parts)


def test_tts_variation_zero_repeats_itself_and_one_does_not(real_pool):
    from voxloop.providers.local.piper_tts import PiperTTS

    def twice(tts) -> tuple[bytes, bytes]:
        async def once() -> bytes:
            return b"".join([c.pcm.tobytes() async for c in tts.synthesize("Hello there.")])

        return asyncio.run(once()), asyncio.run(once())

    fixed = real_pool.get("tts")  # the tests' pool: variation 0
    a, b = twice(fixed)
    assert a == b
    lively = PiperTTS(fixed.voice_path, variation=1.0)
    c, d = twice(lively)
    assert c != d
    assert abs(len(c) - len(a)) < len(a) // 2  # the same words, not something else


def test_llm_seed_repeats_a_sampled_reply(real_pool):
    llm = real_pool.get("llm")  # the tests' pool: seed 7
    messages = [Message("user", "Name a colour, then a fruit.")]

    async def ask() -> str:
        return "".join([d async for d in llm.generate(messages, temperature=1.5)])

    assert asyncio.run(ask()) == asyncio.run(ask())


def _cli(*args: str, timeout: int = 300) -> subprocess.CompletedProcess[str]:
    env = child_env(**REPEATABLE_ENV)
    return subprocess.run(
        [sys.executable, "-m", "voxloop", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )


def test_cli_say_then_transcribe(tmp_path):
    out = tmp_path / "x.wav"
    said = _cli("say", SENTENCES[0], "-o", str(out))
    assert said.returncode == 0, said.stderr
    heard = _cli("transcribe", str(out))
    assert heard.returncode == 0, heard.stderr
    # Piper adds random noise to every synthesis, so allow one misheard word in nine.
    assert wer(SENTENCES[0], heard.stdout) <= 0.12, heard.stdout


def test_cli_ask_streams_an_answer():
    result = _cli("ask", "What is the capital of France?")
    assert result.returncode == 0, result.stderr
    assert "paris" in normalize(result.stdout)


def test_cli_doctor_is_all_green():
    result = _cli("doctor")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "FAIL" not in result.stdout
