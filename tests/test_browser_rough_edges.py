"""The browser app where a conversation goes off the happy path, in a real Chromium: a reply
cut before a word, speech that turns out not to be a turn, errors, a failed reply.

Two kinds of server. A real one on fake providers that fail on cue (voxloop.testing.faults):
a typed "boom" breaks the reply, a sentence with "wait" is never spoken. And a scripted
one, where Playwright plays the /ws side (the page itself is still served by the real
server): it sends the event sequences the server sends for turns it gives up on, which a
fake microphone cannot produce on cue; each test says where in the server its sequence
comes from. Nothing here waits on time: every check waits for the page to show something.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest

from test_browser import TIMEOUT_MS, _launch, _mic_file

FAULTS = {
    "VOXLOOP_LLM__PROVIDER": "voxloop.testing.faults:FaultyLLM",
    "VOXLOOP_FAULT_LLM": "raise when=boom",
    "VOXLOOP_TTS__PROVIDER": "voxloop.testing.faults:FaultyTTS",
    "VOXLOOP_FAULT_TTS": "hang when=wait",
}
OPTIONS = {"persona": "You are voxloop.", "voice": "default", "end_of_turn_silence_s": 0.5}
PCM = {"format": "pcm16", "sample_rate": 16000, "channels": 1}
TRIAL_TIMEOUT = (  # what the user trial saw: a local LLM that never started to answer
    "the reply failed: ProviderCallError: LLM llama: nothing within 30 s before the first token"
)

# Bubbles a person sees as empty: a visible body with no text in it.
EMPTY_BUBBLES = """[...document.querySelectorAll('[data-testid="message"]')]
  .filter((li) => { const body = li.querySelector('.msg-body');
    return body.checkVisibility() && !body.innerText.trim(); })
  .map((li) => li.dataset.role + ':' + li.dataset.turn)"""


@pytest.fixture(scope="module")
def app_url() -> Iterator[str]:
    from voxloop.bench.server import running_server

    with running_server(providers="fake", env=FAULTS) as srv:
        yield srv.url.replace("ws://", "http://").removesuffix("/ws")


@dataclass
class App:
    """The page, and what it said went wrong."""

    page: Any
    url: str
    expect: Any
    problems: list[str] = field(default_factory=list)

    def start(self) -> None:
        self.page.goto(self.url)
        self.page.get_by_test_id("start").click()
        self.page.wait_for_function("window.voxloop.connected", timeout=TIMEOUT_MS)

    def type(self, text: str) -> None:
        self.page.get_by_test_id("text-input").fill(text)
        self.page.get_by_test_id("text-send").click()

    def messages(self) -> list[dict]:
        return self.page.evaluate("window.voxloop.messages")

    def bubble(self, role: str, turn: int):
        return self.page.locator(f'[data-testid="message"][data-role="{role}"][data-turn="{turn}"]')

    def empty_bubbles(self) -> list[str]:
        return self.page.evaluate(EMPTY_BUBBLES)

    def toast(self):
        return self.page.get_by_test_id("error-toast").last


@pytest.fixture
def app(sync_api, app_url, tmp_path) -> Iterator[App]:
    mic = _mic_file(tmp_path / "mic.wav", np.zeros(1600, np.float32))
    with sync_api.sync_playwright() as pw:
        browser = _launch(pw, mic)
        page = browser.new_page()
        page.set_default_timeout(TIMEOUT_MS)
        app = App(page, app_url, sync_api.expect)
        page.on("pageerror", lambda exc: app.problems.append(f"page error: {exc}"))
        try:
            yield app
        finally:
            browser.close()


class ScriptedServer:
    """The server's side of /ws, played by the test: it answers `start` as the real server
    does, then sends what the test tells it to, in order."""

    def __init__(self, page) -> None:
        self.page = page
        self.sockets: list[Any] = []
        self.syncs = 0
        page.route_web_socket(re.compile(r"/ws(\?.*)?$"), self._connect)

    def _connect(self, ws) -> None:
        self.sockets.append(ws)
        ws.on_message(lambda message: self._heard(ws, message))

    def _heard(self, ws, message: str | bytes) -> None:
        if isinstance(message, str) and json.loads(message).get("type") == "start":
            start = {"input": PCM, "output": PCM, "resumed": False, "turns": 0}
            self._send(ws, "session", None, {**start, "options": OPTIONS})
            self._send(ws, "status", None, {"status": "listening"})

    def _send(self, ws, type_: str, turn_id: int | None, fields: dict) -> None:
        event = {"type": type_, "session_id": "scripted", **fields}
        if turn_id is not None:
            event["turn_id"] = turn_id
        ws.send(json.dumps(event))

    def send(self, type_: str, turn_id: int | None = None, **fields: Any) -> None:
        self._send(self.sockets[-1], type_, turn_id, fields)

    def settle(self) -> None:
        """Wait until the page has handled everything sent so far: events are handled in
        order, so once a `configured` sent last has arrived, so have the others."""
        self.syncs += 1
        persona = f"sync {self.syncs}"
        self.send("configured", **{**OPTIONS, "persona": persona})
        self.page.wait_for_function(f"window.voxloop.options.persona === {persona!r}")

    def agent_speaks(self, turn: int, text: str) -> None:
        """A reply under way: written, and its audio started (pipeline.py `_produce`)."""
        self.send("status", turn, status="thinking")
        self.send("llm_status", turn, status="started")
        self.send("llm_response", turn, delta=text, is_complete=False)
        self.send("status", turn, status="speaking")
        self.send("tts_start", turn, **PCM)


@pytest.fixture
def scripted(app: App) -> ScriptedServer:
    server = ScriptedServer(app.page)
    app.start()
    return server


# -- 1. a reply cut before a word was heard --------------------------------------------


def test_a_reply_cut_before_a_word_was_heard_is_only_a_mark(app: App):
    """Written but never spoken (the TTS hangs on it), then interrupted: the server says
    nothing was heard (`content: ""`), and the bubble is the "interrupted" mark alone,
    as a partly heard reply keeps its words and the same mark."""
    app.start()
    app.type("please wait")
    app.expect(app.bubble("agent", 1)).to_contain_text("You said: please wait")
    app.page.get_by_test_id("interrupt").click()
    agent = app.bubble("agent", 1)
    app.expect(agent.get_by_test_id("badge")).to_have_text("interrupted")
    app.expect(agent.locator(".msg-body")).to_be_hidden()
    assert app.empty_bubbles() == []
    assert [m for m in app.messages() if m["role"] == "agent"] == [
        {"role": "agent", "turn": 1, "text": "", "done": True, "interrupted": True}
    ]
    assert not app.problems, app.problems


@pytest.mark.parametrize("how", ["interrupted", "connection lost", "ended"])
def test_a_reply_that_ends_before_its_first_word_is_only_a_mark(app: App, how: str):
    """Cut while still thinking: by an interruption (Reply.interrupt), a lost connection,
    or the user pressing End. Each leaves the mark that says so, never an empty bubble."""
    server = ScriptedServer(app.page)
    app.start()
    app.type("tell me a story")
    server.send("status", 1, status="thinking")
    server.send("llm_status", 1, status="started")
    server.settle()
    if how == "interrupted":
        server.send("tts_stop", 1, reason="interrupt", dropped_bytes=0)
        server.send("status", status="listening")
        content = {"delta": "", "content": "", "is_complete": True, "interrupted": True}
        server.send("llm_response", 1, **content)
        server.settle()
    elif how == "connection lost":
        server.sockets[-1].close(code=1011, reason="gone")
    else:
        app.page.get_by_test_id("end").click()
    agent = app.bubble("agent", 1)
    app.expect(agent.get_by_test_id("badge")).to_have_text(how)
    app.expect(agent.locator(".msg-body")).to_be_hidden()
    assert app.empty_bubbles() == []
    assert not app.problems, app.problems


# -- 2. partial words that will never be final -----------------------------------------


def test_words_of_a_false_interruption_do_not_linger(app: App, scripted: ScriptedServer):
    """ "Mm-hmm" over the agent (overlap.py): the agent pauses, the words say it was not an
    interruption, the agent resumes, `false_interruption`; the speech goes on a little (a
    dismissed utterance keeps streaming partials) and ends with no final transcript
    (Overlaps.is_turn is False). None of it stays on screen."""
    scripted.agent_speaks(1, "Once upon a time there was a dragon.")
    scripted.send("partial_transcript", 2, text="Mm")
    scripted.send("tts_stop", 1, reason="paused", dropped_bytes=3528)
    scripted.send("partial_transcript", 2, text="Mm-hmm")
    scripted.send("tts_start", 1, resumed=True, **PCM)
    scripted.send("false_interruption", 2, verdict="backchannel", text="Mm-hmm.")
    scripted.send("partial_transcript", 2, text="Mm-hmm yeah")
    scripted.send("tts_end", 1)
    done = {"delta": "", "content": "Once upon a time there was a dragon.", "is_complete": True}
    scripted.send("llm_response", 1, **done)
    scripted.send("status", status="listening")
    scripted.settle()
    assert [(m["role"], m["turn"]) for m in app.messages()] == [("agent", 1)]
    app.expect(app.page.locator(".msg.partial")).to_have_count(0)


def test_speech_let_go_that_cuts_in_after_all_is_shown(app: App, scripted: ScriptedServer):
    """A dismissed utterance whose later words do interrupt (Overlaps._watch): the reply
    is cut (`tts_stop`, barge_in), and from then on the words are a turn like any other."""
    scripted.agent_speaks(1, "Once upon a time")
    scripted.send("tts_stop", 1, reason="paused", dropped_bytes=0)
    scripted.send("tts_start", 1, resumed=True, **PCM)
    scripted.send("false_interruption", 2, verdict="echo", text="once upon")
    scripted.send("tts_stop", 1, reason="barge_in", dropped_bytes=0)
    scripted.send("partial_transcript", 2, text="No stop")
    scripted.settle()
    app.expect(app.bubble("user", 2)).to_have_text(re.compile("No stop"))
    scripted.send("final_transcript", 2, text="No, stop, tell me about cats.")
    scripted.settle()
    app.expect(app.bubble("user", 2)).not_to_have_class(re.compile("partial"))


def test_a_continued_turn_leaves_one_user_bubble_with_all_its_words(
    app: App, scripted: ScriptedServer
):
    """The user went on before the reply to turn 1 was heard (turns/continuation.py): the
    server withdraws it (`turn_continued`), and turn 2 carries all the words. Neither turn
    1's words nor its unspoken reply stay on screen."""
    scripted.send("partial_transcript", 1, text="Ever")
    scripted.send("final_transcript", 1, text="Ever tried.")
    scripted.send("status", 1, status="thinking")
    scripted.send("llm_status", 1, status="started")
    scripted.send("llm_response", 1, delta="Trying is", is_complete=False)
    scripted.send("partial_transcript", 2, text="Ever tried. Ever")
    scripted.send("turn_continued", 1, into=2)
    scripted.send("status", status="listening")
    scripted.send("final_transcript", 2, text="Ever tried. Ever failed.")
    scripted.send("llm_response", 1, delta="", content="", is_complete=True, interrupted=True)
    scripted.settle()
    app.expect(app.bubble("user", 2)).to_have_text(re.compile("Ever tried. Ever failed."))
    assert [(m["role"], m["turn"]) for m in app.messages()] == [("user", 2)]
    assert app.empty_bubbles() == []
    assert not app.problems, app.problems


def test_words_the_recognizer_gave_up_on_go(app: App, scripted: ScriptedServer):
    """The STT never finished the turn (Transcripts._none): an `stt_failed` error for the
    turn and no final transcript. The half-heard words go; the toast asks to say it again."""
    scripted.send("partial_transcript", 1, text="What is the")
    scripted.settle()
    app.expect(app.bubble("user", 1)).to_have_class(re.compile("partial"))
    message = "speech recognition gave no transcript within 8 s of the end of the turn"
    scripted.send("error", 1, code="stt_failed", message=message)
    scripted.settle()
    app.expect(app.bubble("user", 1)).to_have_count(0)
    app.expect(app.toast().locator("p")).to_contain_text("Please say it again.")
    assert message not in app.toast().inner_text()  # it is in the folded details


def test_a_new_turns_words_replace_an_unfinished_partial(app: App, scripted: ScriptedServer):
    """Turn 2 speaks while turn 1's words are still partial: those will not be finished,
    and go. Should turn 1's final transcript come after all, it is shown before turn 2."""
    scripted.send("partial_transcript", 1, text="So")
    scripted.send("partial_transcript", 2, text="What time")
    scripted.settle()
    assert [(m["role"], m["turn"], m["text"]) for m in app.messages()] == [("user", 2, "What time")]
    scripted.send("final_transcript", 1, text="So.")
    scripted.settle()
    assert [(m["turn"], m["text"], m["done"]) for m in app.messages()] == [
        (1, "So.", True),
        (2, "What time", False),
    ]


def test_a_server_that_forgot_the_conversation_starts_its_turns_afresh(
    app: App, scripted: ScriptedServer
):
    """The connection drops and the server does not resume the session (it restarted): its
    turns count from 1 again. Turn 1 of the new session gets bubbles of its own, after the
    old ones, instead of being taken for the old turn 1 (whose reply is over)."""
    scripted.send("final_transcript", 1, text="Hello there.")
    scripted.send("llm_status", 1, status="started")
    done = {"delta": "", "content": "Hi!", "is_complete": True}
    scripted.send("llm_response", 1, **done)
    scripted.send("metrics", 1, interrupted=False, source="voice", reply_audio_s=0.5)
    scripted.settle()
    scripted.sockets[-1].close(code=1011, reason="restarting")
    app.expect(app.page.locator(".divider")).to_have_text(re.compile("forgotten earlier turns"))
    scripted.send("partial_transcript", 1, text="Are you")
    scripted.send("final_transcript", 1, text="Are you there?")
    scripted.send("llm_status", 1, status="started")
    scripted.send("llm_response", 1, **{**done, "content": "I am."})
    scripted.settle()
    assert [(m["role"], m["turn"], m["text"], m["done"]) for m in app.messages()] == [
        ("user", 1, "Hello there.", True),
        ("agent", 1, "Hi!", True),
        ("user", 1, "Are you there?", True),
        ("agent", 1, "I am.", True),
    ]


# -- 3. errors in plain words ----------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "message", "headline", "words"),
    [
        ("reply_failed", TRIAL_TIMEOUT, "No answer", "The agent took too long to answer."),
        ("reply_failed", "the reply failed: RuntimeError: boom", "No answer", "Try again."),
        ("text_too_long", "text of 9000 characters is over the limit", "too long", "Shorten"),
        ("some_new_code", "a technical explanation", "Something went wrong", "Try again."),
    ],
)
def test_errors_say_what_happened_in_plain_words(
    app: App, scripted: ScriptedServer, code: str, message: str, headline: str, words: str
):
    """The toast says what happened and what to do, keyed by the error's code; the
    server's technical message is folded away in its details, not the headline."""
    scripted.send("error", code=code, message=message)
    scripted.settle()
    toast = app.toast()
    app.expect(toast.locator("strong")).to_contain_text(headline)
    app.expect(toast.locator("p")).to_contain_text(words)
    details = toast.get_by_test_id("error-details")
    app.expect(details).to_be_hidden()
    assert message not in toast.inner_text()
    toast.locator("summary").click()
    app.expect(details).to_have_text(message)
    assert toast.get_attribute("data-code") == code


# -- 4. a failed reply -----------------------------------------------------------------


def test_a_failed_reply_leaves_no_pending_bubble_and_listens_again(app: App):
    """The LLM breaks at once (a real reply_failed: the apology is spoken, no text
    comes). The "…" bubble goes, the state follows the server back to listening, the
    toast says it in plain words, and the next message is answered as usual."""
    app.start()
    app.type("boom")
    app.page.wait_for_function("window.voxloop.turns.length === 1")
    app.expect(app.bubble("agent", 1)).to_have_count(0)
    assert app.empty_bubbles() == []
    app.expect(app.page.get_by_test_id("status")).to_have_attribute("data-state", "listening")
    app.expect(app.toast().locator("p")).to_have_text("The agent could not answer. Try again.")
    app.type("hello")
    app.expect(app.bubble("agent", 2)).to_have_text(re.compile("You said: hello"))
    app.expect(app.bubble("agent", 2)).not_to_have_class(re.compile("streaming"))
    assert [(m["role"], m["turn"]) for m in app.messages()] == [
        ("user", 1),
        ("user", 2),
        ("agent", 2),
    ]
    assert not app.problems, app.problems


def test_a_failure_reported_before_the_reply_started_leaves_no_bubble(
    app: App, scripted: ScriptedServer
):
    """Errors travel ahead of queued text events (outbox: control before data), so the
    reply's `llm_status` can arrive after the error that ended it: it opens no bubble."""
    app.type("tell me a story")
    scripted.send("status", 1, status="thinking")
    scripted.send("error", 1, code="reply_failed", message=TRIAL_TIMEOUT)
    scripted.send("status", status="listening")
    scripted.send("llm_status", 1, status="started")
    scripted.settle()
    app.expect(app.bubble("agent", 1)).to_have_count(0)
    app.expect(app.page.get_by_test_id("status")).to_have_attribute("data-state", "listening")
    scripted.send("metrics", 1, interrupted=False, source="text", reply_audio_s=0)
    scripted.settle()
    app.expect(app.bubble("agent", 1)).to_have_count(0)


def test_a_conversation_opened_in_a_second_tab_moves_there_and_stays(sync_api, app_url, tmp_path):
    """A duplicated tab has the first one's session id (browsers copy sessionStorage): it
    takes the conversation over (docs/protocol.md), and the first says so and does not
    take it back on its own, which would close the second in turn, for ever."""
    mic = _mic_file(tmp_path / "mic.wav", np.zeros(1600, np.float32))
    with sync_api.sync_playwright() as pw:
        browser = _launch(pw, mic)
        try:
            first, second = (App(browser.new_page(), app_url, sync_api.expect) for _ in "ab")
            for app in (first, second):
                app.page.set_default_timeout(TIMEOUT_MS)
            first.start()
            first.type("hello there")
            first.expect(first.bubble("agent", 1)).to_contain_text("You said: hello there")
            first.page.wait_for_function("window.voxloop.turns.length === 1")  # stored
            sid = first.page.evaluate("window.voxloop.sessionId")
            second.page.add_init_script(f"sessionStorage.setItem('voxloop.sessionId', '{sid}')")
            second.start()
            assert second.page.evaluate("window.voxloop.sessionId") == first.page.evaluate(
                "window.voxloop.sessionId"
            )
            notice = first.page.get_by_test_id("toast").filter(has_text="another tab")
            first.expect(notice).to_be_visible()
            first.expect(first.page.locator(".status-detail")).to_have_text("Conversation ended")
            assert not first.page.evaluate("window.voxloop.connected")
            second.type("and again")  # the second tab has the conversation, with its past
            said = second.page.locator('[data-testid="message"][data-role="agent"]')
            reply = said.filter(has_text="You said: and again")
            second.expect(reply).to_be_visible()
            assert reply.get_attribute("data-turn") == "2"  # numbered after the first tab's
            assert second.page.evaluate("window.voxloop.connected")
        finally:
            browser.close()
