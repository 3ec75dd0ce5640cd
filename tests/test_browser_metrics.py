"""The latency dashboard in a real Chromium: each turn's bar adds up to its voice-to-voice.

The server runs the fake providers (no models): the page, its WebSocket and the metrics
are real. Debian's /usr/bin/chromium is driven through Playwright, as in test_browser.py.
"""

from __future__ import annotations

import numpy as np
import pytest

from test_browser import TIMEOUT_MS, _launch
from voxloop.audio.formats import float_to_pcm16, write_wav
from voxloop.telemetry.metrics import SEGMENTS

MIC_RATE = 48000

# The reported turn: a question whose speculative reply took ~10 s to write its first
# sentence. The old stages (350 + 0 + 347 + 154 ms) left 9.6 s of it unnamed.
REPORTED = {
    "turn_id": 3,
    "vad_end_of_turn_ms": 350.0,
    "stt_final_ms": 0.0,
    "llm_first_token_ms": 347.0,
    "tts_first_audio_ms": 154.0,
    "voice_to_voice_ms": 10301.0,
    "breakdown_ms": {
        **dict.fromkeys(SEGMENTS, 0.0),
        "end_of_turn": 350.0,
        "llm": 197.0,
        "first_sentence": 9600.0,
        "tts": 154.0,
    },
    "reply_audio_s": 8.4,
    "interrupted": False,
    "source": "voice",
}


@pytest.fixture(scope="module")
def fake_server():
    from voxloop.bench.server import running_server

    with running_server(providers="fake") as srv:
        yield f"http://127.0.0.1:{srv.port}"


def _voice(seconds: float) -> np.ndarray:
    """A buzzy vowel with a syllable rhythm: speech enough for the energy VAD, and it
    survives the browser's noise suppression better than plain noise."""
    t = np.arange(int(seconds * MIC_RATE)) / MIC_RATE
    buzz = sum(np.sin(2 * np.pi * 140 * k * t) / k for k in range(1, 8))
    rhythm = 0.6 + 0.4 * np.sin(2 * np.pi * 4 * t)
    return (0.25 * buzz * rhythm).astype(np.float32)


BARS_JS = """
() => [...document.querySelectorAll('#latency-chart [data-testid="latency-bar"]')].map((g) => {
  const rects = [...g.querySelectorAll("rect.seg")];
  const mark = g.querySelector(".total-mark");
  const last = rects.at(-1);
  return {
    turn: Number(g.dataset.turn),
    title: g.querySelector("title").textContent,
    segments: rects.map((r) => r.dataset.segment),
    ms: rects.map((r) => Number(r.dataset.ms)),
    start: rects.length ? Number(rects[0].getAttribute("x")) : null,
    end: last ? Number(last.getAttribute("x")) + Number(last.getAttribute("width")) + 1 : null,
    mark: mark ? Number(mark.getAttribute("x1")) : null,
  };
})
"""


def _legend(page) -> list[str]:
    return page.eval_on_selector_all("#latency-legend li", "els => els.map(e => e.dataset.segment)")


def test_the_reported_turn_is_one_bar_of_named_segments(fake_server, sync_api):
    problems: list[str] = []
    with sync_api.sync_playwright() as pw:
        browser = _launch(pw)
        page = browser.new_page(viewport={"width": 1280, "height": 800})
        page.on("pageerror", lambda exc: problems.append(f"page error: {exc}"))
        try:
            page.goto(fake_server)
            assert _legend(page) == list(SEGMENTS)  # before any turn: what a bar may hold
            # The app's chart gets the event as app.js hands it over (the `metrics` handler).
            page.evaluate(
                """async (turn) => {
                    const { LatencyChart } = await import("/dashboard.js");
                    const ids = ["latency-chart", "latency-legend", "latency-median",
                                 "latency-median-note"];
                    const [chart, legend, median, medianNote] = ids.map((id) => {
                        const old = document.getElementById(id);
                        const fresh = old.cloneNode(false);
                        old.replaceWith(fresh);
                        return fresh;
                    });
                    new LatencyChart({ chart, legend, median, medianNote }).add(turn);
                }""",
                REPORTED,
            )
            (bar,) = page.evaluate(BARS_JS)
            assert bar["segments"] == ["end_of_turn", "llm", "first_sentence", "tts"]
            assert sum(bar["ms"]) == REPORTED["voice_to_voice_ms"]
            # The bar ends where voice-to-voice does: nothing is left over as "other".
            assert bar["end"] == pytest.approx(bar["mark"], abs=1.5)
            assert bar["title"] == (
                "#3: 10.3 s = End of turn 350 ms + LLM first token 197 ms"
                " + First sentence 9.60 s + TTS first audio 154 ms"
            )
            assert _legend(page) == ["end_of_turn", "llm", "first_sentence", "tts"]
            assert not problems, problems
        finally:
            browser.close()


def test_a_spoken_turn_gets_a_bar_that_adds_up(fake_server, sync_api, tmp_path):
    mic = tmp_path / "mic.wav"
    audio = np.concatenate(
        [np.zeros(MIC_RATE, np.float32), _voice(1.2), np.zeros(MIC_RATE * 40, np.float32)]
    )
    write_wav(mic, float_to_pcm16(audio), MIC_RATE)
    problems: list[str] = []
    with sync_api.sync_playwright() as pw:
        browser = _launch(pw, mic)
        page = browser.new_page(viewport={"width": 1280, "height": 800})
        page.on("pageerror", lambda exc: problems.append(f"page error: {exc}"))
        try:
            page.goto(fake_server)
            page.get_by_test_id("start").click()
            page.wait_for_function("window.voxloop.turns.length >= 1", timeout=TIMEOUT_MS)
            turn = page.evaluate("window.voxloop.turns[0]")
            assert turn["source"] == "voice", turn
            parts = turn["breakdown_ms"]
            assert list(parts) == list(SEGMENTS)
            assert round(sum(parts.values()), 1) == turn["voice_to_voice_ms"], turn
            bar = page.evaluate(BARS_JS)[-1]
            assert bar["turn"] == turn["turn_id"]
            assert round(sum(bar["ms"]), 1) == turn["voice_to_voice_ms"]
            assert bar["segments"] == [k for k in SEGMENTS if parts[k] > 0]
            assert bar["end"] == pytest.approx(bar["mark"], abs=1.5 + len(bar["ms"]))
            assert not problems, problems
        finally:
            browser.close()
