"""Phone calls through Twilio Media Streams: the μ-law codec, the resampling latency, the
webhook (TwiML, X-Twilio-Signature), the profile on its own, and whole simulated calls
through /twilio/media, with fake providers and (marked `models`) with the real ones."""

from __future__ import annotations

import asyncio
import base64
import json
import time
import urllib.request
import warnings
import xml.etree.ElementTree as ET

import numpy as np
import pytest
from starlette.testclient import TestClient

from voxloop.audio.formats import float_to_pcm16
from voxloop.audio.resample import LOW_LATENCY, StreamResampler, resample
from voxloop.config.settings import Settings
from voxloop.protocol.messages import Playback, Start, Stop, event
from voxloop.protocol.outbox import OutMessage
from voxloop.reply.pipeline import Reply
from voxloop.server.app import create_app
from voxloop.server.transports import mulaw
from voxloop.server.transports import twilio as tw
from voxloop.session.services import Services
from voxloop.testing.fakes import FakeLLM, FakeSTT, FakeTTS, FakeVAD

QUESTION = "What is the capital of France?"
REPLY = "Paris is the capital of France. It is home to the Eiffel Tower and the Louvre."
TTS_RATE = 22050  # Piper's rate: the reply is resampled to 8 kHz on its way out
MS_PER_CHAR = 40
TWILIO_EVENTS = ("media", "mark", "clear")


# -- the μ-law codec -------------------------------------------------------------------------


def test_mulaw_decodes_the_g711_table():
    # G.711 μ-law, in 16-bit units: codes are sign-magnitude with all bits inverted.
    known = {0xFF: 0, 0x7F: 0, 0x80: 32124, 0x00: -32124, 0xF0: 120, 0x70: -120, 0xEF: 132}
    known |= {0xDF: 396, 0xCF: 924, 0xBF: 1980, 0xAF: 4092, 0x9F: 8316, 0x8F: 16764}
    for code, value in known.items():
        assert mulaw.DECODE[code] == value, hex(code)
    assert mulaw.decode(bytes([0xFF] * 4)).tolist() == [0, 0, 0, 0]
    # Monotonic within each sign: 0x00 (loudest negative) up to 0x7F (-0), 0x80 (loudest)
    # down to 0xFF (+0).
    assert np.all(np.diff(mulaw.DECODE[:0x80].astype(int)) > 0)
    assert np.all(np.diff(mulaw.DECODE[0x80:].astype(int)) < 0)


def test_mulaw_encodes_to_the_nearest_segment_step():
    assert mulaw.encode(np.array([0, 1, -1, 32767, -32768], np.int16)) == bytes(
        [0xFF, 0xFF, 0x7F, 0x80, 0x00]
    )
    codes = np.arange(256, dtype=np.uint8)
    again = np.frombuffer(mulaw.encode(mulaw.DECODE[codes]), np.uint8)
    assert np.array_equal(again[codes != 0x7F], codes[codes != 0x7F])  # -0 comes back as +0
    # Every PCM16 value: the error is at most half a step of its segment (4 × 2^segment),
    # and within the clip level the whole range comes back within 512.
    pcm = np.arange(-32768, 32768, dtype=np.int16)
    encoded = np.frombuffer(mulaw.encode(pcm), np.uint8)
    back = mulaw.decode(encoded.tobytes()).astype(int)
    error = np.abs(back - pcm)
    inside = np.abs(pcm.astype(int)) <= 32124
    segment = (~encoded.astype(int) >> 4) & 0x07
    assert np.all(error[inside] <= 4 << segment[inside])
    assert error[inside].max() <= 512
    assert mulaw.to_pcm16(mulaw.from_pcm16(pcm[::7].tobytes())) == back[::7].astype("<i2").tobytes()


def test_mulaw_matches_the_standard_library_codec():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        audioop = pytest.importorskip("audioop")  # gone in Python 3.13
    codes = bytes(range(256))
    assert mulaw.decode(codes).astype("<i2").tobytes() == audioop.ulaw2lin(codes, 2)
    pcm = np.arange(-32768, 32768, dtype=np.int16)
    ours = np.frombuffer(mulaw.encode(pcm), np.uint8)
    theirs = np.frombuffer(audioop.lin2ulaw(pcm.tobytes(), 2), np.uint8)
    # audioop rounds negative values toward -inf before encoding, so a few negative values
    # on a decision boundary land in the neighbouring code; ours is symmetric.
    differ = ours != theirs
    assert differ.mean() < 0.01 and np.all(pcm[differ] < 0)
    assert np.all(np.abs(ours[differ].astype(int) - theirs[differ].astype(int)) == 1)


def test_mulaw_keeps_a_tone_at_telephone_quality():
    t = np.arange(8000) / 8000
    tone = float_to_pcm16(0.5 * np.sin(2 * np.pi * 440 * t))
    back = mulaw.decode(mulaw.encode(tone)).astype(float)
    snr = 10 * np.log10(np.sum(tone.astype(float) ** 2) / np.sum((back - tone) ** 2))
    assert snr > 35  # G.711 gives about 38 dB


# -- resampling: latency and artefacts ---------------------------------------------------------


def _stream(r: StreamResampler, x: np.ndarray, chunk: int) -> tuple[np.ndarray, float]:
    """(output, most seconds of output held back after any chunk) for a chunked stream."""
    out, held, n_in, n_out = [], 0.0, 0, 0
    for i in range(0, len(x), chunk):
        y = r.push(x[i : i + chunk])
        n_in, n_out = n_in + len(x[i : i + chunk]), n_out + len(y)
        held = max(held, n_in / r.from_rate - n_out / r.to_rate)
        out.append(y)
    return np.concatenate(out), held


def _lag_s(y: np.ndarray, ideal: np.ndarray, rate: int) -> float:
    """How far `y` lags `ideal`, by cross-correlation, to a fraction of a sample."""
    n = 1 << int(np.ceil(np.log2(len(y) + len(ideal))))
    corr = np.fft.irfft(np.fft.rfft(y, n) * np.conj(np.fft.rfft(ideal, n)), n)[: rate // 10]
    k = int(np.argmax(corr))
    a, b, c = corr[k - 1], corr[k], corr[k + 1]
    return (k + 0.5 * (a - c) / (a - 2 * b + c)) / rate


def _chirp(rate: int, top_hz: float, seconds: float = 1.0) -> np.ndarray:
    t = np.arange(int(rate * seconds)) / rate
    sweep = np.sin(2 * np.pi * (200 * t + (top_hz - 200) / (2 * seconds) * t**2))
    return (0.5 * sweep * np.hanning(len(t))).astype(np.float32)


def _level_db(y: np.ndarray, rate: int, hz: float) -> float:
    w = np.hanning(len(y))
    spectrum = np.abs(np.fft.rfft(y * w)) / (w.sum() / 2)
    k = round(hz * len(y) / rate)
    return float(20 * np.log10(spectrum[k - 3 : k + 4].max() + 1e-12))


# (from, to, chunk): the caller's 8 kHz in 20 ms media frames to the models' 16 kHz, and the
# reply's TTS audio in the pipeline's 40 ms frames (Piper 22.05 kHz, cloud TTS 24 kHz, the
# fakes 16 kHz) down to Twilio's 8 kHz.
PATHS = [(8000, 16000, 160), (22050, 8000, 882), (24000, 8000, 960), (16000, 8000, 640)]


@pytest.mark.parametrize(("from_rate", "to_rate", "chunk"), PATHS)
def test_the_low_latency_resampler_adds_under_5_ms(from_rate, to_rate, chunk):
    r = StreamResampler(from_rate, to_rate, quality=LOW_LATENCY)
    x = _chirp(from_rate, 0.4 * min(from_rate, to_rate))
    y, held = _stream(r, x, chunk)
    lag = _lag_s(y, resample(x, from_rate, to_rate), to_rate)  # soxr one-shot: no delay
    print(f"{from_rate} -> {to_rate}: delay {lag * 1000:.2f} ms, held back {held * 1000:.2f} ms")
    assert lag >= 0 and lag + held <= 0.005
    assert held <= 1 / from_rate + 1 / to_rate  # every sample comes out as soon as it can


@pytest.mark.parametrize(("from_rate", "to_rate", "chunk"), PATHS)
def test_the_low_latency_resampler_is_clean(from_rate, to_rate, chunk):
    def through(hz: float) -> np.ndarray:
        t = np.arange(from_rate * 2) / from_rate
        wave = (0.5 * np.sin(2 * np.pi * hz * t)).astype(np.float32)
        out, _ = _stream(StreamResampler(from_rate, to_rate, quality=LOW_LATENCY), wave, chunk)
        return out[to_rate // 10 : -to_rate // 10]  # past the start-up transient

    # A 1 kHz tone comes out as the same tone, delayed: everything else is distortion.
    y = through(1000)
    delay = StreamResampler(from_rate, to_rate, quality=LOW_LATENCY)._stream.delay_s
    t = (np.arange(len(y)) + to_rate // 10) / to_rate - delay
    ideal = 0.5 * np.sin(2 * np.pi * 1000 * t)
    snr = 10 * np.log10(np.sum(ideal**2) / np.sum((y - ideal) ** 2))
    # Nothing from outside the lower rate's band may come through: going down, a 5 kHz
    # tone would alias to 3 kHz at 8 kHz; going up, a 3 kHz tone would image at 5 kHz.
    if from_rate > to_rate:
        probe = to_rate / 2 + 1000
        stray = _level_db(through(probe), to_rate, to_rate - probe) - 20 * np.log10(0.5)
    else:
        probe = from_rate / 2 - 1000
        out = through(probe)
        stray = _level_db(out, to_rate, from_rate - probe) - _level_db(out, to_rate, probe)
    print(f"{from_rate} -> {to_rate}: SNR {snr:.1f} dB, alias/image {stray:.1f} dB")
    assert snr > 70
    assert stray < -70


def test_the_default_stream_resampler_is_still_soxr_hq():
    import soxr

    x = _chirp(8000, 3000)
    ours = StreamResampler(8000, 16000).push(x, last=True)
    theirs = soxr.ResampleStream(8000, 16000, 1, quality="HQ").resample_chunk(x, last=True)
    assert np.array_equal(ours, theirs)


def test_the_low_latency_resampler_shrugs_off_nan():
    r = StreamResampler(8000, 16000, quality=LOW_LATENCY)
    r.push(np.full(160, np.nan, np.float32))
    after = r.push(np.zeros(1600, np.float32))
    assert np.all(np.isfinite(after)) and not after[200:].any()


def test_the_low_latency_resampler_flushes_and_keeps_int16():
    r = StreamResampler(22050, 8000, dtype="int16", quality=LOW_LATENCY)
    pcm = float_to_pcm16(_chirp(22050, 3000, 0.5))
    y = np.concatenate([r.push(pcm[i : i + 882]) for i in range(0, len(pcm), 882)])
    tail = r.push(np.zeros(0, np.int16), last=True)
    assert y.dtype == tail.dtype == np.int16
    assert len(y) == -(-len(pcm) * 160 // 441)  # all that the input allows, no more
    assert 0 < len(tail) <= 0.005 * 8000  # the filter's delay, flushed
    lag = _lag_s(np.concatenate([y, tail]) / 32768, resample(pcm / 32768, 22050, 8000), 8000)
    assert lag <= 0.005


# -- the webhook -------------------------------------------------------------------------------


def test_the_signature_matches_twilios_published_example():
    body = (
        "CallSid=CA1234567890ABCDE&Caller=%2B14158675309&Digits=1234"
        "&From=%2B14158675309&To=%2B18005551212"
    )
    params = tw.form_params(body)
    url = "https://mycompany.com/myapp.php?foo=1&bar=2"
    assert tw.compute_signature("12345", url, params) == "RSOYDt4T1cUTdK1PDd93/VVr8B8="
    assert tw.valid_signature("12345", url, params, "RSOYDt4T1cUTdK1PDd93/VVr8B8=")
    # Twilio may sign with the default port spelled out, or not.
    with_port = "https://mycompany.com:443/myapp.php?foo=1&bar=2"
    assert tw.valid_signature("12345", with_port, params, "RSOYDt4T1cUTdK1PDd93/VVr8B8=")
    assert not tw.valid_signature(
        "12345", url, {**params, "Digits": "9999"}, "RSOYDt4T1cUTdK1PDd93/VVr8B8="
    )
    assert not tw.valid_signature("54321", url, params, "RSOYDt4T1cUTdK1PDd93/VVr8B8=")
    assert not tw.valid_signature("12345", url, params, "")
    assert not tw.valid_signature("12345", url, params, "ünïcode")


def test_form_params_keep_blank_values_and_decode_plus():
    assert tw.form_params("From=%2B1555&To=&Body=a+b") == {"From": "+1555", "To": "", "Body": "a b"}


@pytest.mark.parametrize(
    ("public", "expected"),
    [
        ("https://example.test", "wss://example.test/twilio/media"),
        ("https://example.test/", "wss://example.test/twilio/media"),
        ("http://localhost:8000//", "ws://localhost:8000/twilio/media"),
        ("HTTPS://Example.test/voice/", "wss://Example.test/voice/twilio/media"),
        ("wss://example.test", "wss://example.test/twilio/media"),
        ("example.test", "wss://example.test/twilio/media"),
    ],
)
def test_media_url(public, expected):
    assert tw.media_url(public) == expected


def test_webhook_url():
    assert tw.webhook_url("https://x.test/", "/twilio/voice", "") == "https://x.test/twilio/voice"
    assert tw.webhook_url("https://x.test", "/twilio/voice", "a=1&b=2") == (
        "https://x.test/twilio/voice?a=1&b=2"
    )


def test_twiml_streams_the_call_with_escaped_parameters():
    nasty = 'Bob "<the caller>" & co\n'
    xml = tw.twiml("wss://x.test/twilio/media", {"From": nasty, "CallSid": "CA1", "To": "+1"})
    assert xml.startswith('<?xml version="1.0" encoding="UTF-8"?><Response><Connect><Stream ')
    stream = ET.fromstring(xml).find("./Connect/Stream")
    assert stream is not None and stream.get("url") == "wss://x.test/twilio/media"
    params = {p.get("name"): p.get("value") for p in stream.findall("Parameter")}
    assert params == {"caller": nasty, "call_sid": "CA1"}
    assert "\x01" not in tw.twiml("wss://x", {"From": "a\x01b"})  # not even escaped XML allows it


def _voice(settings: Settings, body: str, headers: dict[str, str], path: str = "/twilio/voice"):
    app = create_app(settings, services=_services(settings), warmup=False)
    with TestClient(app) as client:
        return client.post(
            path,
            content=body,
            headers={"content-type": "application/x-www-form-urlencoded", **headers},
        )


WEBHOOK_BODY = "CallSid=CAfeed&From=%2B15551234567&To=%2B15557654321&Direction=inbound"


@pytest.mark.parametrize("query", ["", "?tenant=a%20b"])
def test_the_webhook_answers_a_signed_call_with_twiml(query):
    settings = Settings(twilio={"auth_token": "s3cret", "public_url": "https://example.test"})
    url = "https://example.test/twilio/voice" + query
    signature = tw.compute_signature("s3cret", url, tw.form_params(WEBHOOK_BODY))
    response = _voice(
        settings, WEBHOOK_BODY, {"X-Twilio-Signature": signature}, f"/twilio/voice{query}"
    )
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/xml")
    stream = ET.fromstring(response.text).find("./Connect/Stream")
    assert stream is not None and stream.get("url") == "wss://example.test/twilio/media"
    params = {p.get("name"): p.get("value") for p in stream.findall("Parameter")}
    token = params.pop("token")  # this call's: tests/test_ownership.py spends it
    assert params == {"caller": "+15551234567", "call_sid": "CAfeed"}
    payload = json.loads(base64.urlsafe_b64decode(token.split(".")[1] + "=="))
    assert payload["sid"] == "twilio-CAfeed" and payload["sub"] is None


@pytest.mark.parametrize("headers", [{}, {"X-Twilio-Signature": "bm9wZQ=="}])
def test_the_webhook_refuses_a_bad_or_missing_signature(headers):
    settings = Settings(twilio={"auth_token": "s3cret", "public_url": "https://example.test"})
    response = _voice(settings, WEBHOOK_BODY, headers)
    assert response.status_code == 403
    assert "<Response>" not in response.text


def test_the_webhook_signed_for_another_body_is_refused():
    settings = Settings(twilio={"auth_token": "s3cret", "public_url": "https://example.test"})
    url = "https://example.test/twilio/voice"
    signature = tw.compute_signature("s3cret", url, tw.form_params(WEBHOOK_BODY))
    forged = WEBHOOK_BODY.replace("%2B15551234567", "%2B15550000000")
    assert _voice(settings, forged, {"X-Twilio-Signature": signature}).status_code == 403


def test_without_a_token_the_webhook_checks_nothing():
    response = _voice(Settings(), WEBHOOK_BODY, {})
    assert response.status_code == 200
    stream = ET.fromstring(response.text).find("./Connect/Stream")
    assert stream is not None and stream.get("url") == "ws://testserver/twilio/media"


# -- the profile on its own ---------------------------------------------------------------------


class StubSession:
    """Just what TwilioProfile uses of a Session, recorded."""

    def __init__(self, output_rate: int = TTS_RATE) -> None:
        self.session_id = "stub"
        self.output_rate = output_rate
        self.started = False
        self.state: object | None = None
        self.handled: list = []
        self.errors: list[str] = []
        self.fed: list[np.ndarray] = []

    async def handle(self, msg) -> None:
        self.handled.append(msg)
        if isinstance(msg, Start):
            self.started, self.state = True, object()

    def error(self, code: str, message: str, turn_id: int | None = None) -> None:
        assert message
        self.errors.append(code)

    def feed_audio(self, samples: np.ndarray) -> None:
        self.fed.append(samples)


def _tone(rate: int, seconds: float, hz: float = 440.0) -> np.ndarray:
    t = np.arange(int(rate * seconds)) / rate
    return float_to_pcm16(0.3 * np.sin(2 * np.pi * hz * t))


def _render_reply(profile, session, sentences: list[np.ndarray], turn_id: int = 1) -> list[dict]:
    """Render a reply the way the pipeline sends it: tts_start, 40 ms frames, tts_end."""
    start = event("tts_start", "stub", turn_id, format="pcm16", sample_rate=TTS_RATE, channels=1)
    frames = profile.render(session, OutMessage(json=start, turn_id=turn_id))
    step = int(TTS_RATE * 0.04)
    for index, pcm in enumerate(sentences):
        for i in range(0, len(pcm), step):
            audio = pcm[i : i + step].astype("<i2").tobytes()
            msg = OutMessage(audio=audio, turn_id=turn_id, sentence=index)
            frames += profile.render(session, msg)
    end = event("tts_end", "stub", turn_id)
    frames += profile.render(session, OutMessage(json=end, turn_id=turn_id))
    return [json.loads(f) for f in frames]


async def _started(custom: dict[str, str] | None = None):
    profile, session, call = tw.TwilioProfile(), StubSession(), tw.TwilioCall()
    await profile.on_text(session, call.connected())
    await profile.on_text(session, call.start(custom))
    return profile, session, call


async def test_start_opens_a_session_named_after_the_call():
    profile, session, call = await _started({"caller": "+15551234567"})
    [start] = session.handled
    assert start.sample_rate == 16000 and start.output_sample_rate is None
    assert start.session_id == f"twilio-{call.call_sid}" and start.user_id is None
    assert profile.stream_sid == call.stream_sid and profile.call_sid == call.call_sid

    profile, session, _ = await _started({"session_id": "alice.1", "user_id": "alice"})
    assert (session.handled[0].session_id, session.handled[0].user_id) == ("alice.1", "alice")

    profile, session, call = await _started({"session_id": "no spaces!", "user_id": "x" * 200})
    assert session.errors == ["bad_session_id", "bad_user_id"]
    assert session.handled[0].session_id == f"twilio-{call.call_sid}"
    assert session.handled[0].user_id is None


async def test_the_reply_goes_out_as_160_byte_frames_with_a_mark_per_sentence():
    profile, session, call = await _started()
    first, second = _tone(TTS_RATE, 0.5), _tone(TTS_RATE, 0.3, 660)
    out = _render_reply(profile, session, [first, second])
    assert {m["event"] for m in out} == {"media", "mark"}
    assert all(m["streamSid"] == call.stream_sid for m in out)
    payloads = [base64.b64decode(m["media"]["payload"]) for m in out if m["event"] == "media"]
    assert {len(p) for p in payloads} == {160}
    marks = [(i, m["mark"]["name"]) for i, m in enumerate(out) if m["event"] == "mark"]
    assert [name for _, name in marks] == ["1:0", "1:1:end"]
    assert marks[-1][0] == len(out) - 1
    # The audio is the reply, at 8 kHz: 0.8 s, plus the flushed filter delay and padding.
    pcm = np.frombuffer(b"".join(tw.decode_media(m) for m in out if m["event"] == "media"), "<i2")
    assert 0.8 * 8000 <= len(pcm) <= 0.8 * 8000 + 2 * 160
    spectrum = np.abs(np.fft.rfft(pcm[:4000].astype(float)))
    assert abs(np.argmax(spectrum) * 8000 / 4000 - 440) <= 2

    # Twilio echoes each mark once the audio before it has played: that is what was heard.
    before_first = marks[0][0]  # media frames before the first mark
    await profile.on_text(session, call.mark("1:0"))
    await profile.on_text(session, call.mark("1:1:end"))
    heard = [m for m in session.handled if isinstance(m, Playback)]
    assert [(p.turn_id, p.ms) for p in heard[:1]] == [(1, before_first * 20.0)]
    assert abs(heard[0].ms - 500) <= 20
    assert heard[1].turn_id == 1 and 800 < heard[1].ms <= 805  # the filter's tail, no padding


async def test_a_stop_of_the_audio_clears_twilios_buffer_and_forgets_its_marks():
    profile, session, call = await _started()
    out = _render_reply(profile, session, [_tone(TTS_RATE, 0.3), _tone(TTS_RATE, 0.3)])
    names = [m["mark"]["name"] for m in out if m["event"] == "mark"]
    stop = event("tts_stop", "stub", 1, reason="paused", dropped_bytes=0)
    [clear] = [json.loads(f) for f in profile.render(session, OutMessage(json=stop, turn_id=1))]
    assert clear == {"event": "clear", "streamSid": call.stream_sid}
    # Twilio sends back the marks that the clear dropped: they were never heard.
    for name in names:
        await profile.on_text(session, call.mark(name))
    assert not [m for m in session.handled if isinstance(m, Playback)]
    assert session.errors == []
    # A resumed reply counts its milliseconds afresh.
    resumed = _render_reply(profile, session, [_tone(TTS_RATE, 0.2)])
    assert [m["mark"]["name"] for m in resumed if m["event"] == "mark"] == ["1:0:end"]
    await profile.on_text(session, call.mark("1:0:end"))
    [heard] = [m for m in session.handled if isinstance(m, Playback)]
    assert 200 <= heard.ms <= 210


async def test_native_events_never_reach_twilio():
    profile, session, _ = await _started()
    for kind in ("session", "status", "final_transcript", "llm_response", "metrics", "error"):
        assert profile.render(session, OutMessage(json=event(kind, "stub", 1))) == []
    before = tw.TwilioProfile()  # no start yet: nowhere to send audio to
    assert before.render(session, OutMessage(audio=b"\x00\x00" * 882, turn_id=1, sentence=0)) == []


async def test_malformed_frames_are_counted_and_survived():
    profile, session, call = tw.TwilioProfile(), StubSession(), tw.TwilioCall()
    await profile.on_text(session, call.media(bytes(640))[0])  # before start
    await profile.on_text(session, call.media(bytes(640))[0])  # said once only
    await profile.on_bytes(session, b"\x00\x01")
    for raw in (
        "not json",
        "[1, 2]",
        '{"no": "event"}',
        '{"event": "bogus"}',
        '{"event": "start"}',
    ):
        await profile.on_text(session, raw)
    await profile.on_text(session, call.start())
    await profile.on_text(session, call.start())
    sid = call.stream_sid
    for media in (None, {"payload": 7}, {"payload": "@@not base64@@"}):
        await profile.on_text(
            session, json.dumps({"event": "media", "streamSid": sid, "media": media})
        )
    huge = base64.b64encode(bytes(2 * tw.MAX_PAYLOAD_BYTES)).decode()
    await profile.on_text(session, json.dumps({"event": "media", "media": {"payload": huge}}))
    await profile.on_text(session, json.dumps({"event": "mark", "streamSid": sid}))
    await profile.on_text(session, "[" * 100_000 + "]" * 100_000)  # too deep for the parser
    await profile.on_text(session, call.mark("never-sent"))  # e.g. after a clear: not an error
    await profile.on_text(session, call.dtmf("5"))
    assert session.errors == [
        "not_started",
        "unexpected_binary",
        "bad_json",
        "bad_message",
        "bad_message",
        "unknown_event",
        "bad_message",
        "already_started",
        "bad_message",
        "bad_message",
        "bad_media_payload",
        "frame_too_large",
        "bad_message",
        "bad_json",
    ]
    assert not session.fed
    await profile.on_text(session, call.media(_tone(8000, 0.1).tobytes())[0])  # still listening
    assert sum(len(s) for s in session.fed) == 320  # 20 ms at 16 kHz
    assert not profile.closing(session)
    await profile.on_text(session, call.stop())
    assert profile.closing(session)
    assert isinstance(session.handled[-1], Stop)


async def test_the_call_audio_reaches_the_session_at_16_khz_within_5_ms():
    profile, session, call = await _started()
    chirp = float_to_pcm16(_chirp(8000, 3200))
    for frame in call.media(chirp.tobytes()):
        await profile.on_text(session, frame)
    heard = np.concatenate(session.fed)
    assert len(heard) == 2 * len(chirp)
    ideal = resample(mulaw.decode_float(mulaw.encode(chirp)), 8000, 16000)
    assert _lag_s(heard, ideal, 16000) <= 0.005


async def test_the_reply_reaches_twilio_within_5_ms():
    profile, session, _ = await _started()
    chirp = float_to_pcm16(_chirp(TTS_RATE, 3200))
    out = _render_reply(profile, session, [chirp])
    pcm = np.frombuffer(b"".join(tw.decode_media(m) for m in out if m["event"] == "media"), "<i2")
    ideal = resample(chirp / 32768, TTS_RATE, 8000)
    assert _lag_s(pcm / 32768, ideal, 8000) <= 0.005


def test_client_helpers_build_twilios_frames():
    pcm = _tone(8000, 0.05).tobytes()  # 400 samples: 2 full frames and a short one
    messages = [json.loads(m) for m in tw.client_messages("MZ1", "CA1", pcm, {"k": "v"})]
    assert messages[0] == {"event": "connected", "protocol": "Call", "version": "1.0.0"}
    start = messages[1]
    assert start["event"] == "start" and start["sequenceNumber"] == "1"
    assert start["start"]["callSid"] == "CA1" and start["start"]["customParameters"] == {"k": "v"}
    assert start["start"]["mediaFormat"] == {
        "encoding": "audio/x-mulaw",
        "sampleRate": 8000,
        "channels": 1,
    }
    media = messages[2:]
    assert [m["media"]["chunk"] for m in media] == ["1", "2", "3"]
    assert [m["sequenceNumber"] for m in media] == ["2", "3", "4"]
    assert [len(base64.b64decode(m["media"]["payload"])) for m in media] == [160, 160, 80]
    decoded = b"".join(
        tw.decode_media(json.dumps({"event": "media", "media": m["media"]})) for m in media
    )
    assert decoded == mulaw.to_pcm16(mulaw.from_pcm16(pcm))
    with pytest.raises(ValueError):
        tw.decode_media({"event": "mark", "mark": {"name": "x"}})


# -- whole calls through /twilio/media, fake providers ---------------------------------------


def _services(settings: Settings, replies: list[str] | None = None) -> Services:
    return Services(
        settings=settings,
        vad=FakeVAD(),
        stt=FakeSTT([QUESTION, "Stop, please."]),
        llm=FakeLLM(replies or [REPLY, "Okay."]),
        tts=FakeTTS(sample_rate=TTS_RATE, ms_per_char=MS_PER_CHAR),
    )


@pytest.fixture
def phone(monkeypatch):
    """(client, services, playback reports) for calls with fake providers."""
    played: list[tuple[int, float]] = []
    report = Reply.report_playback

    def record(self: Reply, ms: float) -> None:
        played.append((self.turn_id, ms))
        report(self, ms)

    monkeypatch.setattr(Reply, "report_playback", record)

    def make(**settings):
        settings = Settings(store={"backend": "memory"}, **settings)
        services = _services(settings)
        client = TestClient(create_app(settings, services=services, warmup=False))
        return client, services, played

    return make


SPEECH = float_to_pcm16(np.random.default_rng(0).uniform(-0.3, 0.3, 8000)).tobytes()  # 1 s
QUIET = bytes(2 * 8000)  # 1 s


def _say(ws, call: tw.TwilioCall, *chunks: bytes) -> None:
    for chunk in chunks:
        for frame in call.media(chunk):
            ws.send_text(frame)


def _receive_until(ws, done, on_mark=None, limit: int = 5000) -> list[dict]:
    """Twilio's view: every server frame must be a Twilio message, text, for this stream."""
    seen: list[dict] = []
    for _ in range(limit):
        msg = ws.receive()
        assert msg["type"] == "websocket.send", msg
        assert msg.get("text") is not None, "Twilio takes text frames only"
        data = json.loads(msg["text"])
        assert data["event"] in TWILIO_EVENTS, data
        seen.append(data)
        if data["event"] == "mark" and on_mark is not None:
            on_mark(data["mark"]["name"])
        if done(data):
            return seen
    raise AssertionError(f"gave up after {limit} frames: {seen[-5:]}")


def _is_end(m: dict) -> bool:
    return m["event"] == "mark" and m["mark"]["name"].endswith(":end")


def _wait_for(check, what: str, timeout_s: float = 10.0):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if result := check():
            return result
        time.sleep(0.02)
    raise AssertionError(f"no {what} within {timeout_s} s")


def test_a_phone_call(phone):
    client, services, played = phone()
    call = tw.TwilioCall()
    with client, client.websocket_connect("/twilio/media") as ws:
        ws.send_text(call.connected())
        ws.send_text(call.start({"session_id": "call-1", "caller": "+15551234567"}))
        _say(ws, call, SPEECH, QUIET)
        echoed: list[str] = []

        def heard(name: str) -> None:  # Twilio: "the audio before this mark has played"
            ws.send_text(call.mark(name))
            echoed.append(name)

        out = _receive_until(ws, _is_end, on_mark=heard)
        assert all(m["streamSid"] == call.stream_sid for m in out)
        media = [m for m in out if m["event"] == "media"]
        assert {len(base64.b64decode(m["media"]["payload"])) for m in media} == {160}
        assert echoed == ["1:0", "1:1:end"]
        first = len("Paris is the capital of France.") * MS_PER_CHAR
        frames_before = next(i for i, m in enumerate(out) if m["event"] == "mark")
        # The session hears, in the caller's time, what played before each mark.
        _wait_for(lambda: played, "playback report")
        assert played[0] == (1, frames_before * 20.0)
        assert abs(played[0][1] - first) <= 20
        pcm = np.frombuffer(b"".join(tw.decode_media(m) for m in media), "<i2")
        total = (len(REPLY) - 1) * MS_PER_CHAR / 1000  # two sentences, less the space
        assert 0 <= len(pcm) / 8000 - total <= 0.025  # plus the filter delay and padding
        spectrum = np.abs(np.fft.rfft(pcm[:8000].astype(float)))
        assert abs(np.argmax(spectrum) - 220) <= 2  # the fake voice's 220 Hz tone, 1 Hz bins

        def stored():
            turns = client.get("/api/sessions/call-1").json().get("turns", [])
            return turns if turns else None

        [turn] = _wait_for(stored, "the stored turn")
        assert turn["user"] == QUESTION and turn["assistant"] == REPLY
        assert not turn["interrupted"]
        ws.send_text(call.stop())
        closed = ws.receive()
        assert closed["type"] == "websocket.close" and closed.get("code", 1000) == 1000
    assert services.metrics.counts.get("turns") == 1
    assert not [k for k in services.metrics.counts if k.startswith("errors.")]
    assert not services.live_sessions


def test_speech_over_the_agent_clears_twilios_buffer(phone):
    client, services, played = phone(turns={"interruption": "vad"})
    services.llm.replies = [REPLY + " It is lovely in the spring, and in the autumn too.", "Okay."]
    call = tw.TwilioCall()
    with client, client.websocket_connect("/twilio/media") as ws:
        ws.send_text(call.connected())
        ws.send_text(call.start())
        _say(ws, call, SPEECH, QUIET)
        before = _receive_until(ws, lambda m: m["event"] == "media")
        _say(ws, call, SPEECH[: 2 * 4000])  # half a second of talking over the agent
        out = _receive_until(ws, lambda m: m["event"] == "clear")
        assert out[-1] == {"event": "clear", "streamSid": call.stream_sid}
        # Marks that the clear dropped come back from Twilio: nothing was heard past them.
        for name in [m["mark"]["name"] for m in before + out if m["event"] == "mark"]:
            ws.send_text(call.mark(name))
        # The interruption is the caller's next turn: it gets its answer.
        _say(ws, call, QUIET)
        after = _receive_until(ws, _is_end)
        assert [m["mark"]["name"] for m in after if m["event"] == "mark"] == ["2:0:end"]
        ws.send_text(call.stop())
        assert ws.receive()["type"] == "websocket.close"
    first = services.metrics.turns[0]
    assert first.turn_id == 1 and first.interrupted
    assert all(turn == 2 for turn, _ in played)  # no report for the cleared reply


def test_a_call_survives_malformed_frames(phone):
    client, services, _ = phone()
    call = tw.TwilioCall()
    with client, client.websocket_connect("/twilio/media") as ws:
        ws.send_text(call.connected())
        _say(ws, call, SPEECH[:640])  # media before start
        ws.send_bytes(b"\x01\x02\x03")
        for raw in (
            "{oops",
            "[]",
            '{"event": "bogus"}',
            '{"event": "media"}',
            '{"event": "start"}',
        ):
            ws.send_text(raw)
        ws.send_text(call.start())
        bad = {"event": "media", "streamSid": call.stream_sid, "media": {"payload": "%%%"}}
        ws.send_text(json.dumps(bad))
        ws.send_text(call.dtmf("1"))
        _say(ws, call, SPEECH, QUIET)
        out = _receive_until(ws, _is_end)  # the call goes on as if nothing had happened
        assert [m["mark"]["name"] for m in out if m["event"] == "mark"] == ["1:0", "1:1:end"]
        ws.send_text(call.stop())
        assert ws.receive()["type"] == "websocket.close"
    errors = {k: v for k, v in services.metrics.counts.items() if k.startswith("errors.")}
    assert errors == {
        "errors.not_started": 1,
        "errors.unexpected_binary": 1,
        "errors.bad_json": 1,
        "errors.bad_message": 2,
        "errors.unknown_event": 1,
        "errors.bad_media_payload": 1,
    }


def test_stop_ends_the_call_cleanly(phone):
    client, services, _ = phone()
    call = tw.TwilioCall()
    with client, client.websocket_connect("/twilio/media") as ws:
        ws.send_text(call.connected())
        ws.send_text(call.start({"session_id": "short-call"}))
        ws.send_text(call.stop())
        closed = ws.receive()
        assert closed["type"] == "websocket.close" and closed.get("code", 1000) == 1000
        record = client.get("/api/sessions/short-call").json()
        assert record["live"] is False and record["turns"] == []
    assert not services.live_sessions
    assert not [k for k in services.metrics.counts if k.startswith("errors.")]


# -- a whole call with the real models ------------------------------------------------------------


@pytest.mark.models
@pytest.mark.timeout(240)
async def test_a_phone_call_with_the_real_models(server, speak, real_pool):
    import websockets

    from voxloop.hearing.wer import normalize
    from voxloop.providers.base import transcribe_all

    question = resample(speak(QUESTION), 16000, 8000)
    audio = np.concatenate([np.zeros(2400, np.float32), question, np.zeros(12000, np.float32)])
    call = tw.TwilioCall()
    session_id = f"phone-{call.call_sid}"
    url = server["http"].replace("http://", "ws://") + "/twilio/media"
    received: list[dict] = []
    loop = asyncio.get_running_loop()

    async with websockets.connect(url, max_size=None) as ws:

        async def talk() -> None:  # 20 ms frames at the pace a phone line delivers them
            t0 = loop.time()
            for i, frame in enumerate(call.media(float_to_pcm16(audio).tobytes())):
                await ws.send(frame)
                await asyncio.sleep(max(0.0, t0 + (i + 1) * 0.02 - loop.time()))

        async def listen() -> None:
            async for raw in ws:
                message = json.loads(raw)
                assert message["event"] in TWILIO_EVENTS, message
                received.append(message)
                if message["event"] == "mark":
                    await ws.send(call.mark(message["mark"]["name"]))  # played: heard
                    if message["mark"]["name"].endswith(":end"):
                        return

        await ws.send(call.connected())
        await ws.send(call.start({"session_id": session_id}))
        talker = asyncio.create_task(talk())
        await asyncio.wait_for(listen(), timeout=120)
        await talker

        def stored() -> list | None:
            with urllib.request.urlopen(f"{server['http']}/api/sessions/{session_id}") as r:
                return json.loads(r.read())["turns"] or None

        deadline = loop.time() + 30
        while (turns := await asyncio.to_thread(stored)) is None and loop.time() < deadline:
            await asyncio.sleep(0.2)
        await ws.send(call.stop())
        await asyncio.wait_for(ws.wait_closed(), timeout=10)

    marks = [m["mark"]["name"] for m in received if m["event"] == "mark"]
    media = [m for m in received if m["event"] == "media"]
    assert marks and marks[-1].endswith(":end")
    assert len({name.split(":")[0] for name in marks}) == 1  # one reply, one turn
    assert {len(base64.b64decode(m["media"]["payload"])) for m in media} == {160}
    assert all(m["streamSid"] == call.stream_sid for m in received)

    # The reply as the caller heard it: 8 kHz μ-law, back to 16 kHz for Whisper.
    pcm = np.frombuffer(b"".join(tw.decode_media(m) for m in media), "<i2")
    heard = (await transcribe_all(real_pool.get("stt"), resample(pcm / 32768, 8000, 16000))).text
    print(f"reply heard over the phone: {heard!r} ({len(pcm) / 8000:.1f} s); turns: {turns}")
    assert "paris" in normalize(heard), heard
    assert turns is not None and len(turns) == 1
    assert "paris" in normalize(turns[0]["assistant"]) and not turns[0]["interrupted"]
