"""Faults: providers that hang, crawl, crash partway or talk garbage, an LLM process that
is SIGKILLed, a client that vanishes mid-turn and one that stops reading.

After each fault the session either recovers to listening (a clear `error` event, the
spoken apology if nothing had been said yet, only the VAD task alive, and the next turn
normal) or ends cleanly (no session, task, file descriptor or memory left behind).
Engine tests run on virtual time, so a hang costs its configured timeout in virtual
seconds, not real ones.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import os
import socket
import time
import tracemalloc
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient
from websockets.sync.client import connect

from voxloop.bench.server import RunningServer, running_server
from voxloop.config.settings import Settings
from voxloop.protocol.messages import Text
from voxloop.providers.base import Capabilities, Message
from voxloop.providers.fallback import FallbackLLM
from voxloop.providers.stalls import stall_limit
from voxloop.server.app import create_app
from voxloop.testing.fakes import FakeLLM, FakeSTT, FakeTTS
from voxloop.testing.faults import (
    Fault,
    FaultyLLM,
    FaultySTT,
    FaultyTTS,
    InjectedFault,
    ProcessLLM,
)

from engine_helpers import Driver, make_services, speech
from test_protocol import fake_services, receive_until, start

LONG = "One sentence here. Another sentence there. A third one to finish the answer off."
APOLOGY = "Sorry, something went wrong on my side. Could you say that again?"


# -- helpers -----------------------------------------------------------------------------


async def text_turn(d: Driver, content: str = "tell me") -> None:
    await d.session.handle(Text(content=content))
    await d.pump()


async def voice_turn(d: Driver, seed: int = 0) -> None:
    await d.feed(speech(0.6, seed=seed))
    await d.run_for(0.7)


def errors(d: Driver) -> list[dict[str, Any]]:
    return d.events("error")


def spoke_apology(d: Driver, turn_id: int) -> bool:
    reply = d.session.replies.last_reply
    return (
        reply is not None
        and reply.turn_id == turn_id
        and reply.sentences[-1:] == [APOLOGY]
        and d.audio_bytes(turn_id) > 0
    )


def assert_wire_safe(d: Driver) -> None:
    """Every event survives the trip to a client: JSON, then UTF-8 (as the transport does)."""
    for event in d.events():
        json.loads(json.dumps(event).encode("utf-8"))
    for msg in d.sent:
        if msg.audio is not None:
            assert len(msg.audio) % 2 == 0


async def assert_listening_again(d: Driver) -> None:
    """The state test_no_stuck_states demands after every path: no reply active, only the
    VAD task alive, status listening; then a normal turn with healthy providers."""
    s = d.session
    assert s.reply is None or s.reply.done
    assert s.status == "listening"
    assert d.events("status")[-1]["status"] == "listening"
    assert [t.get_name().split("-")[0] for t in s._tasks if not t.done()] == ["vad"]
    assert_wire_safe(d)
    s.services.llm = FakeLLM(["All good."], clock=d.clock)
    s.services.tts = FakeTTS(clock=d.clock)
    s.services.stt = s.listener.stt = FakeSTT(["are you there"], clock=d.clock)
    await voice_turn(d, seed=7)
    await d.run_for(3.0)
    assert s.state is not None
    assert s.state.history.turns[-1].assistant == "All good."
    assert s.state.history.turns[-1].user == "are you there"
    assert s.status == "listening"
    assert [t.get_name().split("-")[0] for t in s._tasks if not t.done()] == ["vad"]


async def driver(
    llm: FakeLLM | None = None, tts: FakeTTS | None = None, stt: FakeSTT | None = None
) -> Driver:
    return await Driver.start(
        make_services(llm=llm or FakeLLM([LONG], token_s=0.05), tts=tts, stt=stt)
    )


# -- the fault specs ---------------------------------------------------------------------


def test_fault_specs_parse():
    assert Fault.parse("") == Fault()
    assert Fault.parse("slow:0.5 after=2 times=1 when=boom") == Fault("slow", "0.5", 2, 1, "boom")
    assert Fault.parse("slow:0.5").delay_s == 0.5
    with pytest.raises(ValueError, match="unknown fault"):
        Fault.parse("explode")
    with pytest.raises(ValueError, match="bad fault option"):
        Fault.parse("hang later=3")
    with pytest.raises(ValueError, match="garbage"):
        FaultyTTS(fault=Fault("garbage", "noise"))


async def test_faults_strike_where_and_as_often_as_told():
    llm = FaultyLLM(["a b c d"] * 3, fault=Fault("raise", after=2, times=1))
    out: list[str] = []
    with pytest.raises(InjectedFault):
        async for token in llm.generate([]):
            out.append(token)
    assert out == ["a", " b"]
    assert [t async for t in llm.generate([])] == ["a", " b", " c", " d"]  # once only
    picky = FaultyLLM(fault=Fault("raise", when="boom"))
    assert [t async for t in picky.generate([_user("hello")])] == ["You", " said:", " hello"]
    with pytest.raises(InjectedFault):
        _ = [t async for t in picky.generate([_user("boom now")])]


def _user(text: str) -> Message:
    return Message("user", text)


def test_stall_limits_back_up_remote_providers_and_time_local_ones():
    """A local provider gets the stage's timeout, at least 30 s (a busy shared model is
    slow, not hung); a remote one keeps its own timeout and retries, which the turn's
    limit only backs up; a chain, each member in turn."""

    class Remote(FakeLLM):
        capabilities = Capabilities(local=False)

    assert stall_limit(FakeLLM(), 8.0, 2) == 30.0
    assert stall_limit(FakeLLM(), 45.0, 2) == 45.0
    assert stall_limit(Remote(), 8.0, 2) == 3 * (8.0 + 2.0)
    assert stall_limit(FallbackLLM([Remote(), FakeLLM()]), 8.0, 0) == 10.0 + 30.0


# -- LLM faults --------------------------------------------------------------------------


async def test_llm_that_never_answers_times_out_and_apologizes():
    d = await driver(llm=FaultyLLM([LONG], fault=Fault("hang")))
    await text_turn(d)
    await d.run_for(29.0)
    assert d.session.status == "thinking" and not errors(d)  # a local model: 30 s
    await d.run_for(5.0)
    (error,) = errors(d)
    assert error["code"] == "reply_failed"
    assert "30 s" in error["message"] and "first token" in error["message"]
    assert spoke_apology(d, 1)
    await d.run_for(6.0)
    await assert_listening_again(d)


async def test_llm_that_hangs_mid_reply_times_out_without_apology():
    d = await driver(llm=FaultyLLM([LONG], fault=Fault("hang", after=4)))
    await text_turn(d)
    await d.run_for(35.0)
    (error,) = errors(d)
    assert error["code"] == "reply_failed" and "between tokens" in error["message"]
    assert d.audio_bytes(1) > 0  # "One sentence here." was spoken...
    assert APOLOGY not in d.session.replies.last_reply.sentences  # ...so no apology
    assert [e["reason"] for e in d.events("tts_stop")] == ["error"]
    await d.run_for(3.0)
    await assert_listening_again(d)


async def test_slow_llm_still_answers_in_full():
    d = await driver(llm=FaultyLLM([LONG], fault=Fault("slow", "1.5")))
    await text_turn(d)
    await d.run_for(30.0)
    assert not errors(d)
    assert d.session.state.history.turns[-1].assistant == LONG
    await assert_listening_again(d)


async def test_llm_slower_than_its_timeout_between_tokens_fails():
    d = await driver(llm=FaultyLLM([LONG], fault=Fault("slow", "31", after=3)))
    await text_turn(d)
    await d.run_for(40.0)
    assert [e["code"] for e in errors(d)] == ["reply_failed"]
    await d.run_for(3.0)
    await assert_listening_again(d)


@pytest.mark.parametrize("after", [0, 5])
async def test_llm_exception_partway(after):
    d = await driver(llm=FaultyLLM([LONG], token_s=0.05, fault=Fault("raise", after=after)))
    await text_turn(d)
    await d.run_for(6.0)
    (error,) = errors(d)
    assert error["code"] == "reply_failed" and "InjectedFault" in error["message"]
    assert spoke_apology(d, 1) == (after == 0)
    await d.run_for(3.0)
    await assert_listening_again(d)


@pytest.mark.parametrize("junk", ["binary", "none", "number"])
async def test_llm_garbage_that_is_not_text_is_refused_clearly(junk):
    d = await driver(llm=FaultyLLM([LONG], fault=Fault("garbage", junk)))
    await text_turn(d)
    await d.run_for(6.0)
    (error,) = errors(d)
    assert error["code"] == "reply_failed"
    assert "not text" in error["message"]
    assert spoke_apology(d, 1)
    await d.run_for(3.0)
    await assert_listening_again(d)


@pytest.mark.parametrize("junk", ["control", "surrogate", "empty", "huge"])
async def test_llm_garbage_text_is_spoken_or_skipped_safely(junk):
    tts = FakeTTS(ms_per_char=0.2)  # the huge token is a long "sentence"
    d = await driver(llm=FaultyLLM([LONG], fault=Fault("garbage", junk, after=2)), tts=tts)
    await text_turn(d)
    await d.run_for(15.0)
    assert not errors(d)
    assert d.audio_bytes(1) > 0
    said = d.session.state.history.turns[-1].assistant
    if junk == "huge":  # a 20,000-letter "word" overruns the budget: the reply ends there
        assert said.startswith("One sentence") and len(said) < 400
    else:
        assert said.endswith("finish the answer off.")
    await assert_listening_again(d)


# -- TTS faults --------------------------------------------------------------------------


async def test_tts_that_never_answers_times_out():
    d = await driver(tts=FaultyTTS(fault=Fault("hang")))
    await text_turn(d)
    await d.run_for(100.0)  # 30 s a sentence (a local model), two sentences at a time
    codes = [e["code"] for e in errors(d)]
    assert codes and set(codes) == {"tts_failed"}
    assert all("30 s" in e["message"] for e in errors(d))
    assert d.audio_bytes(1) == 0
    await assert_listening_again(d)


async def test_tts_hang_on_one_sentence_skips_it_and_speaks_the_rest():
    d = await driver(tts=FaultyTTS(fault=Fault("hang", after=3, times=1)))
    await text_turn(d)
    await d.run_for(60.0)
    assert [e["code"] for e in errors(d)] == ["tts_failed"]
    assert "between" in errors(d)[0]["message"]
    turn = d.session.state.history.turns[-1]
    assert turn.assistant.endswith("finish the answer off.")
    await assert_listening_again(d)


async def test_slow_tts_still_speaks():
    d = await driver(tts=FaultyTTS(fault=Fault("slow", "0.5")))
    await text_turn(d)
    await d.run_for(40.0)
    assert not errors(d)
    assert d.session.state.history.turns[-1].assistant == LONG
    await assert_listening_again(d)


@pytest.mark.parametrize("after", [0, 3])
async def test_tts_exception_partway_skips_the_sentence(after):
    d = await driver(tts=FaultyTTS(fault=Fault("raise", after=after, times=1)))
    await text_turn(d)
    await d.run_for(15.0)
    (error,) = errors(d)
    assert error["code"] == "tts_failed" and "InjectedFault" in error["message"]
    assert d.audio_bytes(1) > 0  # the other sentences were spoken
    await assert_listening_again(d)


BAD_AUDIO = ["nan", "float", "int32", "stereo", "zero_rate", "negative_rate", "tiny_rate"]


@pytest.mark.parametrize("junk", [*BAD_AUDIO, "huge_rate"])
async def test_tts_garbage_audio_is_refused_not_played(junk):
    d = await driver(tts=FaultyTTS(fault=Fault("garbage", junk)))
    await text_turn(d)
    await d.run_for(20.0)
    codes = [e["code"] for e in errors(d)]
    assert codes and set(codes) == {"tts_failed"}, errors(d)
    assert d.audio_bytes(1) == 0  # not one sample of junk reached the client
    await assert_listening_again(d)


@pytest.mark.parametrize("junk", ["empty", "odd_rate"])
async def test_tts_odd_but_valid_audio_plays(junk):
    d = await driver(tts=FaultyTTS(fault=Fault("garbage", junk)))
    await text_turn(d)
    await d.run_for(20.0)
    assert not errors(d)
    assert d.audio_bytes(1) > 0
    await assert_listening_again(d)


# -- STT faults --------------------------------------------------------------------------


async def test_stt_that_never_gives_a_final_transcript_times_out():
    d = await driver(stt=FaultySTT(["hello there"], fault=Fault("hang")))
    await voice_turn(d)
    await d.run_for(32.0)  # 30 s (a local model) from the end of the turn
    (error,) = errors(d)
    assert error["code"] == "stt_failed" and "30 s" in error["message"]
    assert error["turn_id"] == 1
    await assert_listening_again(d)


async def test_slow_stt_still_hears():
    d = await driver(stt=FaultySTT(["hello there"], fault=Fault("slow", "0.3")))
    await voice_turn(d)
    await d.run_for(6.0)
    assert not errors(d)
    assert d.events("final_transcript")[-1]["text"] == "hello there"
    await assert_listening_again(d)


async def test_stt_exception_partway():
    d = await driver(stt=FaultySTT(["one two three four"], fault=Fault("raise", after=1)))
    await voice_turn(d)
    await d.run_for(3.0)
    assert "stt_failed" in [e["code"] for e in errors(d)]
    await assert_listening_again(d)


def no_speculation(d: Driver) -> None:
    d.session.services.settings.turns.speculative_silence_s = 0.0


@pytest.mark.parametrize("junk", ["none", "bytes", "number", "object"])
async def test_stt_garbage_is_refused_clearly(junk):
    d = await driver(stt=FaultySTT(["one two three four"], fault=Fault("garbage", junk)))
    no_speculation(d)
    await voice_turn(d)
    await d.run_for(3.0)
    codes = {e["code"] for e in errors(d)}
    assert codes == {"stt_failed"}, errors(d)
    assert not d.events("llm_status")  # nothing was answered
    await assert_listening_again(d)


async def test_stt_garbage_is_refused_clearly_with_speculation_too():
    d = await driver(stt=FaultySTT(["one two three four"], fault=Fault("garbage", "none")))
    await voice_turn(d)
    await d.run_for(3.0)
    assert {e["code"] for e in errors(d)} == {"stt_failed"}, errors(d)


async def test_stt_absurdly_long_transcript_is_refused():
    d = await driver(stt=FaultySTT(fault=Fault("garbage", "long")))
    await voice_turn(d)
    await d.run_for(3.0)
    assert {e["code"] for e in errors(d)} == {"stt_failed"}
    assert "characters" in errors(d)[0]["message"]
    assert not d.events("llm_status")
    await assert_listening_again(d)


async def test_stt_control_characters_are_harmless():
    d = await driver(stt=FaultySTT(["hello there"], fault=Fault("garbage", "control")))
    await voice_turn(d)
    await d.run_for(6.0)
    assert not errors(d)
    assert "hello there" in d.events("final_transcript")[-1]["text"]
    await assert_listening_again(d)


async def test_stt_hang_while_the_user_talks_over_the_agent():
    d = await driver()
    await text_turn(d)
    await d.run_for(1.0)
    assert d.session.status == "speaking"
    d.session.services.stt = d.session.listener.stt = FaultySTT(fault=Fault("hang"))
    await d.feed(speech(0.4, seed=5))  # the agent pauses: are these words an interruption?
    assert d.session.reply is not None and d.session.reply.paused
    await d.run_for(40.0)
    assert "stt_failed" in [e["code"] for e in errors(d)]
    assert d.session.state.history.turns[-1].assistant == LONG  # it carried on to the end
    await assert_listening_again(d)


# -- a process-level LLM failure ---------------------------------------------------------


def reaped(pid: int) -> bool:
    """The child is gone and waited for: no zombie, no pipe kept for it."""
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return True
    return False


async def until(d: Driver, done: Callable[[], bool], limit_s: float = 20.0) -> None:
    """Real time for a real child process, with the virtual clock moving alongside."""
    for _ in range(int(limit_s / 0.01)):
        if done():
            return
        await asyncio.sleep(0.01)
        await d.run_for(0.01, step_s=0.01)
    raise AssertionError("timed out")


@pytest.mark.parametrize("after", [0, 5])
async def test_llm_process_killed_mid_reply(after):
    llm = ProcessLLM([LONG], fault=Fault("kill", after=after))
    d = await driver(llm=llm)
    await text_turn(d)
    await until(d, lambda: bool(errors(d)))
    (error,) = errors(d)
    assert error["code"] == "reply_failed"
    assert "died mid-reply (killed by SIGKILL)" in error["message"]
    assert f"after {after} tokens" in error["message"]
    await d.run_for(6.0)
    assert spoke_apology(d, 1) == (after == 0)
    assert llm.pids and all(reaped(pid) for pid in llm.pids)
    await assert_listening_again(d)


async def test_llm_process_streams_a_normal_reply():
    llm = ProcessLLM(["Hello from another process."])
    d = await driver(llm=llm)
    await text_turn(d)
    await until(d, lambda: bool(d.session.state.history.turns))
    assert d.session.state.history.turns[-1].assistant == "Hello from another process."
    assert not errors(d) and all(reaped(pid) for pid in llm.pids)


# -- through the WebSocket: vanishing clients, leaks -------------------------------------


def wait_until(check: Callable[[], bool], timeout_s: float = 15.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


async def _task_count() -> int:
    return len(asyncio.all_tasks())


def server_tasks(client: TestClient) -> int:
    """Tasks alive in the app's event loop (the TestClient's portal thread)."""
    return client.portal.call(_task_count)  # type: ignore[union-attr]


def open_fds(pid: int | str = "self") -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def loud(seconds: float, seed: int = 3) -> bytes:
    return (speech(seconds, seed) * 32767).astype("<i2").tobytes()


@pytest.mark.parametrize("where", ["thinking", "speaking", "llm_process"])
def test_client_that_vanishes_mid_turn_leaves_nothing(where):
    services = fake_services()
    services.tts = FakeTTS(ms_per_char=200)  # speaks for a long while
    if where == "thinking":
        services.llm = FaultyLLM(fault=Fault("hang"))
    elif where == "llm_process":
        services.llm = ProcessLLM([LONG], token_s=0.3)
    app = create_app(Settings(), services=services, warmup=False)
    with TestClient(app) as client:
        tasks, fds = server_tasks(client), open_fds()
        with client.websocket_connect("/ws") as ws:
            start(ws)
            ws.send_json({"type": "text", "content": "talk for a while"})
            receive_until(ws, "tts_start" if where == "speaking" else "llm_status")
            if where == "llm_process":
                receive_until(ws, "llm_response")  # the child is mid-reply
            (session,) = services.live_sessions
            assert session.status in ("thinking", "speaking")
        assert wait_until(lambda: not services.live_sessions)
        assert wait_until(lambda: server_tasks(client) == tasks)
        assert session.reply is None and not [t for t in session._tasks if not t.done()]
        if isinstance(services.llm, ProcessLLM):
            assert services.llm.pids and wait_until(lambda: all(map(reaped, services.llm.pids)))
        assert open_fds() == fds


def test_thirty_sessions_leave_no_task_fd_or_memory_behind():
    services = fake_services()
    services.llm = FakeLLM(lambda messages: LONG)
    services.tts = FakeTTS(ms_per_char=30)
    settings = Settings(limits={"connections_per_ip_per_s": 0})  # 33 connections in a row
    app = create_app(settings, services=services, warmup=False)

    def one_session(client: TestClient) -> None:
        """Connect, a turn, an interrupt, a voice barge-in, then vanish mid-speech."""
        with client.websocket_connect("/ws") as ws:
            start(ws)
            ws.send_json({"type": "text", "content": "hello"})
            receive_until(ws, "tts_start")
            ws.send_json({"type": "interrupt"})
            receive_until(ws, "interrupt_acknowledged")
            ws.send_json({"type": "text", "content": "again"})
            receive_until(ws, "tts_start")
            ws.send_bytes(loud(0.5))
            receive_until(ws, "tts_stop")

    with TestClient(app) as client:
        for _ in range(3):  # warm-up: lazy imports, caches, the first resampler
            one_session(client)
        assert wait_until(lambda: not services.live_sessions)
        tasks, fds = server_tasks(client), open_fds()
        gc.collect()
        tracemalloc.start()
        try:
            before = tracemalloc.get_traced_memory()[0]
            for _ in range(30):
                one_session(client)
            assert wait_until(lambda: not services.live_sessions)
            assert wait_until(lambda: server_tasks(client) == tasks), (server_tasks(client), tasks)
            gc.collect()
            grown = tracemalloc.get_traced_memory()[0] - before
        finally:
            tracemalloc.stop()
        assert open_fds() <= fds + 2
        # What stays is what should: 30 stored conversations and their turn metrics.
        assert grown < 30 * 20_000, f"{grown / 1e6:.2f} MB for 30 sessions"
        print(
            f"\n30 sessions: tasks {tasks} → {server_tasks(client)}, fds {fds} → "
            f"{open_fds()}, traced memory +{grown / 1e3:.0f} kB"
        )


# -- a real server over real TCP ---------------------------------------------------------

SERVER_ENV = {
    "VOXLOOP_LLM__PROVIDER": "voxloop.testing.faults:ProcessLLM",
    "VOXLOOP_FAULT_LLM": "kill after=3 when=crash",  # only turns that say "crash"
    "VOXLOOP_LIMITS__SEND_TIMEOUT_S": "1",
    "VOXLOOP_LIMITS__CONNECTIONS_PER_IP_PER_S": "0",
    "VOXLOOP_SESSION__OUTPUT_LEAD_S": "30",  # a reply's first 30 s of audio go out at once
    # The slow-client test needs a reply of minutes, one word said over and over.
    "VOXLOOP_REPLY__MAX_SPOKEN_S": "3600",
    "VOXLOOP_REPLY__STOP_LOOPS": "false",
}


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[RunningServer]:
    home = tmp_path_factory.mktemp("faults")
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(home)  # no voxloop.toml or .env of the developer's
        with running_server(providers="fake", env=SERVER_ENV, log_path=home / "log") as srv:
            yield srv


def rss(srv: RunningServer) -> int:
    usage = srv.usage()
    assert usage is not None
    return usage[1]


def live_sessions(srv: RunningServer) -> int:
    url = f"http://127.0.0.1:{srv.port}/api/metrics/summary"
    with urllib.request.urlopen(url, timeout=5) as answer:
        return json.load(answer)["sessions"]


def children(pid: int) -> list[str]:
    """Processes whose parent is `pid` (its LLM children, zombies included)."""
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                status = (entry / "status").read_text()
            except OSError:
                continue
            if f"\nPPid:\t{pid}\n" in status:
                out.append(entry.name)
    return out


def events_until(ws, kind: str, limit: int = 2000) -> list[Any]:
    seen: list[Any] = []
    for _ in range(limit):
        msg = ws.recv(timeout=15)
        if isinstance(msg, bytes):
            seen.append(msg)
            continue
        seen.append(json.loads(msg))
        if seen[-1]["type"] == kind:
            return seen
    raise AssertionError(f"no {kind!r}")


def talk(srv: RunningServer, *, vanish: bool = True) -> None:
    """A session over a real socket: a turn, an interrupt, a barge-in; then go."""
    with connect(srv.url, open_timeout=10) as ws:
        ws.send(json.dumps({"type": "start"}))
        events_until(ws, "session")
        ws.send(json.dumps({"type": "text", "content": "hello there"}))
        events_until(ws, "tts_start")
        ws.send(json.dumps({"type": "interrupt"}))
        events_until(ws, "interrupt_acknowledged")
        ws.send(json.dumps({"type": "text", "content": "and again"}))
        events_until(ws, "tts_start")
        for i in range(0, 16000, 640):
            ws.send(loud(0.5)[i : i + 640])
        events_until(ws, "tts_stop")
        if not vanish:
            ws.send(json.dumps({"type": "stop"}))
            events_until(ws, "stop_acknowledged")


def test_real_server_sessions_leave_no_fd_process_or_memory_behind(server):
    for _ in range(3):
        talk(server)
    assert wait_until(lambda: live_sessions(server) == 0)
    fds, memory = open_fds(server.pid), rss(server)
    for i in range(20):
        talk(server, vanish=i % 2 == 0)
    assert wait_until(lambda: live_sessions(server) == 0)
    assert wait_until(lambda: open_fds(server.pid) <= fds)
    assert wait_until(lambda: not children(server.pid))  # every LLM process reaped
    grown = rss(server) - memory
    print(
        f"\nreal server, 20 sessions: fds {fds} → {open_fds(server.pid)}, RSS "
        f"{memory / 1e6:.0f} → {rss(server) / 1e6:.0f} MB"
    )
    assert grown < 20e6


def test_real_server_llm_process_killed_mid_reply(server):
    with connect(server.url, open_timeout=10) as ws:
        ws.send(json.dumps({"type": "start"}))
        events_until(ws, "session")
        ws.send(json.dumps({"type": "text", "content": "please crash now"}))
        seen = events_until(ws, "metrics")
        error = next(m for m in seen if isinstance(m, dict) and m["type"] == "error")
        assert error["code"] == "reply_failed" and "SIGKILL" in error["message"]
        assert any(isinstance(m, bytes) for m in seen[seen.index(error) :])  # the apology
        ws.send(json.dumps({"type": "text", "content": "are you there"}))
        seen = events_until(ws, "metrics")
        done = [m for m in seen if isinstance(m, dict) and m.get("is_complete")]
        assert done[-1]["content"] == "You said: are you there"
    assert wait_until(lambda: not children(server.pid))


def handshake(port: int) -> socket.socket:
    """A WebSocket client by hand, with a tiny receive buffer, that will never read."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.settimeout(10)
    sock.connect(("127.0.0.1", port))
    key = "dGhlIHNhbXBsZSBub25jZQ=="
    sock.sendall(
        f"GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode()
    )
    answer = b""
    while b"\r\n\r\n" not in answer:
        answer += sock.recv(1)
    assert answer.startswith(b"HTTP/1.1 101")
    return sock


def masked(text: str) -> bytes:
    """One client text frame (clients must mask)."""
    data, mask = text.encode(), b"\x01\x02\x03\x04"
    size = len(data)
    head = bytes([0x81]) + (
        bytes([0x80 | size]) if size < 126 else bytes([0x80 | 126]) + size.to_bytes(2, "big")
    )
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(data))


def test_a_client_that_stops_reading_is_dropped_and_memory_stays_bounded(server):
    talk(server)
    assert wait_until(lambda: live_sessions(server) == 0)
    fds, memory = open_fds(server.pid), rss(server)
    sock = handshake(server.port)
    try:
        sock.sendall(masked(json.dumps({"type": "start", "output_sample_rate": 48000})))
        # A reply of 256 one-word sentences, over a minute of audio, its first 30 s (2.9 MB
        # at 48 kHz) at once; another every 8 s, until even the largest socket buffers
        # (4 MB here) are full and a send waits.
        long_turn = masked(json.dumps({"type": "text", "content": "word. " * 300}))
        began, peak, asked = time.monotonic(), memory, -99.0
        while live_sessions(server) or time.monotonic() - began < 0.5:
            if time.monotonic() - asked > 8.0:
                asked = time.monotonic()
                with contextlib.suppress(OSError):  # dropped already
                    sock.sendall(long_turn)
            peak = max(peak, rss(server))
            assert time.monotonic() - began < 30, "the slow client was never dropped"
            time.sleep(0.1)
        dropped_s = time.monotonic() - began
        # The connection is reset, not left open with megabytes waiting in its buffers
        # for a reader that never comes: the server's socket is gone while ours is open.
        assert wait_until(lambda: open_fds(server.pid) <= fds)
        sock.settimeout(30)
        with pytest.raises(ConnectionResetError):
            while sock.recv(1 << 16):
                pass
    finally:
        sock.close()
    print(
        f"\nslow client dropped after {dropped_s:.1f} s; server RSS {memory / 1e6:.0f} MB, "
        f"peak {peak / 1e6:.0f} MB"
    )
    assert peak - memory < 50e6
    talk(server, vanish=False)  # the server still serves
