"""The browser app in a real Chromium, against a real server: ask aloud, hear the answer.

Chromium's fake capture device plays a WAV file as the microphone, so the whole path runs
as it would for a person: getUserMedia → capture worklet → WebSocket → VAD/STT/LLM/TTS →
playback worklet. Debian's /usr/bin/chromium is driven through Playwright (never
`playwright install`: it downloads a browser, and there is no network).
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from voxloop.audio.formats import float_to_pcm16, write_wav
from voxloop.audio.resample import resample

pytestmark = pytest.mark.models

CHROMIUM = "/usr/bin/chromium"
QUESTION = "What is the capital of France?"
MIC_RATE = 48000  # Chromium's fake capture device reads 48 kHz files without trouble
ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"
TIMEOUT_MS = 60_000  # the models share 2 CPU cores with the browser: be patient


def _mic_file(path: Path, speech_16k: np.ndarray) -> Path:
    """1 s of silence, the question, then a long silence. Chromium loops the file, and a
    second question would barge in on the answer, so the tail outlasts the test."""
    speech = resample(speech_16k, 16000, MIC_RATE)
    silence = np.zeros(MIC_RATE, np.float32)
    audio = np.concatenate([silence, speech, np.zeros(MIC_RATE * 45, np.float32)])
    write_wav(path, float_to_pcm16(audio), MIC_RATE)
    return path


def _launch(pw, mic: Path | None = None):
    """Headless Chromium whose microphone plays `mic` (none: Chromium's own fake tone)."""
    args = [
        "--use-fake-ui-for-media-stream",
        "--use-fake-device-for-media-stream",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--autoplay-policy=no-user-gesture-required",
    ]
    if mic is not None:
        args.append(f"--use-file-for-fake-audio-capture={mic}")
    return pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=args)


def test_ask_aloud_in_the_browser(server, speak, sync_api, tmp_path):
    mic = _mic_file(tmp_path / "mic.wav", speak(QUESTION))
    ARTIFACTS.mkdir(exist_ok=True)
    expect = sync_api.expect
    problems: list[str] = []

    with sync_api.sync_playwright() as pw:
        browser = _launch(pw, mic)
        page = browser.new_page(viewport={"width": 1280, "height": 800})
        page.on("pageerror", lambda exc: problems.append(f"page error: {exc}"))
        try:
            page.goto(server["http"])
            expect(page.get_by_test_id("status")).to_have_attribute("data-state", "idle")
            page.get_by_test_id("start").click()
            page.wait_for_function("window.voxloop.connected", timeout=TIMEOUT_MS)
            # Sample the playback position from the start, so a short reply cannot slip by
            # between two polls of the test.
            page.evaluate(
                "window.__positions = [];"
                "setInterval(() => window.__positions.push(window.voxloop.playbackMs), 50);"
            )

            # The question, as heard by the server's speech recognizer.
            heard = page.locator('[data-testid="message"][data-role="user"]:not(.partial)')
            expect(heard.first).to_contain_text(re.compile("capital", re.I), timeout=TIMEOUT_MS)
            expect(heard.first).to_contain_text(re.compile("France", re.I))

            # The answer, streamed as text while it is spoken.
            reply = page.locator('[data-testid="message"][data-role="agent"]').first
            expect(reply).to_contain_text(re.compile("paris", re.I), timeout=TIMEOUT_MS)

            # The reply is played: the worklet's position grows while it speaks.
            page.wait_for_function(
                "window.__positions.filter((ms) => ms > 0).length >= 3", timeout=TIMEOUT_MS
            )

            # The turn ends with its metrics: a bar in the latency dashboard.
            page.wait_for_function("window.voxloop.turns.length >= 1", timeout=TIMEOUT_MS)
            expect(page.get_by_test_id("latency-bar")).to_have_count(1)
            expect(page.get_by_test_id("latency-median")).to_have_text(re.compile(r"^\d+\.\d+ s$"))
            expect(reply).not_to_have_class(re.compile("streaming"))
            # The metrics can come while the reply still plays on a busy machine: wait for
            # the end of playback, and for the sampler to have seen the final position.
            page.wait_for_function(
                "!window.voxloop.playing && window.voxloop.playbackMs > 0"
                " && window.__positions.at(-1) === window.voxloop.playbackMs",
                timeout=TIMEOUT_MS,
            )

            snapshot, positions = page.evaluate("[{ ...window.voxloop }, window.__positions]")
            turn = snapshot["turns"][0]
            print(f"\nturn metrics: {turn}")
            print(f"messages: {snapshot['messages']}")

            played = [ms for ms in positions if ms > 0]
            assert played == sorted(played), "the playback position went backwards"
            assert played[-1] > played[0], "the playback position never advanced"
            # Most of the reply was heard: the position tracks real output, not arrivals.
            assert played[-1] >= 0.6 * turn["reply_audio_s"] * 1000, (played[-1], turn)
            assert snapshot["playbackMs"] == played[-1]

            assert turn["source"] == "voice" and not turn["interrupted"], turn
            assert turn["voice_to_voice_ms"] > 0
            assert page.get_by_test_id("error-toast").count() == 0, page.get_by_test_id(
                "toasts"
            ).inner_text()
            assert not problems, problems
        finally:
            page.screenshot(path=str(ARTIFACTS / "browser.png"))
            browser.close()


def test_the_app_signs_in_when_the_server_wants_credentials(sync_api, tmp_path):
    """Auth on: the app asks for the API key once, mints a token with it, and connects;
    a wrong key is refused and asked for again. After a reload its new token acts for
    the same user, so it resumes the conversation (a session belongs to its user)."""
    from voxloop.bench.server import running_server

    env = {"VOXLOOP_AUTH__ENABLED": "on", "VOXLOOP_AUTH__API_KEYS": '["right-key"]'}
    mic = _mic_file(tmp_path / "mic.wav", np.zeros(1600, np.float32))
    answers = ["wrong-key", "right-key"]
    prompts: list[str] = []

    def on_dialog(dialog) -> None:
        prompts.append(dialog.message)
        dialog.accept(answers.pop(0) if answers else "")

    with running_server(providers="fake", env=env) as srv, sync_api.sync_playwright() as pw:
        browser = _launch(pw, mic)
        page = browser.new_page()
        page.on("dialog", on_dialog)
        try:
            page.goto(srv.url.replace("ws://", "http://").removesuffix("/ws"))
            page.get_by_test_id("start").click()
            page.wait_for_function("window.voxloop.connected", timeout=TIMEOUT_MS)
            assert len(prompts) == 2 and "API key" in prompts[0]
            assert page.get_by_test_id("error-toast").count() >= 1  # the wrong key, said
            session_id = page.evaluate("window.voxloop.sessionId")
            page.reload()
            page.get_by_test_id("start").click()
            # connected: the server's `session` event came, naming the session it opened
            page.wait_for_function("window.voxloop.connected", timeout=TIMEOUT_MS)
            assert page.evaluate("window.voxloop.sessionId") == session_id
            assert len(prompts) == 2  # the key was kept for the tab
        finally:
            browser.close()


def test_settings_apply_to_the_session_and_outlive_a_reload(sync_api, tmp_path):
    """The drawer's persona and end-of-turn silence reach the live session, are confirmed
    in the drawer, and are replayed onto the new session after a reload."""
    from voxloop.bench.server import running_server

    mic = _mic_file(tmp_path / "mic.wav", np.zeros(1600, np.float32))
    options = "window.voxloop.options"
    with running_server(providers="fake") as srv, sync_api.sync_playwright() as pw:
        browser = _launch(pw, mic)
        page = browser.new_page()
        expect = sync_api.expect
        try:
            page.goto(srv.url.replace("ws://", "http://").removesuffix("/ws"))
            page.get_by_test_id("start").click()
            page.wait_for_function("window.voxloop.connected", timeout=TIMEOUT_MS)

            page.get_by_test_id("settings-toggle").click()
            expect(page.get_by_test_id("settings")).to_be_visible()
            page.get_by_test_id("persona").fill("You are a pirate.")
            page.get_by_test_id("settings-apply").click()
            expect(page.get_by_test_id("settings-status")).to_have_text("Applied")
            page.locator("#eot-silence").fill("0.8")
            page.wait_for_function(f"{options}.end_of_turn_silence_s === 0.8", timeout=5000)
            assert page.evaluate(f"{options}.persona") == "You are a pirate."
            page.keyboard.press("Escape")
            expect(page.get_by_test_id("settings")).to_be_hidden()

            page.reload()
            page.get_by_test_id("start").click()
            page.wait_for_function("window.voxloop.connected", timeout=TIMEOUT_MS)
            page.wait_for_function(
                f"{options}.persona === 'You are a pirate.'"
                f" && {options}.end_of_turn_silence_s === 0.8",
                timeout=5000,
            )
            page.get_by_test_id("settings-toggle").click()
            expect(page.get_by_test_id("persona")).to_have_value("You are a pirate.")
        finally:
            browser.close()
