"""Fault-injecting providers: the fakes, made to hang, crawl, crash or talk garbage.

Each `Faulty*` class is its fake (fakes.py) with a `Fault` applied to every stream it
produces. The same classes serve unit tests (pass `fault=`) and a real server, by dotted
provider name and an environment variable, for instance::

    VOXLOOP_LLM__PROVIDER=voxloop.testing.faults:FaultyLLM
    VOXLOOP_FAULT_LLM="raise after=3 when=boom"

A fault spec is `kind[:arg] [after=N] [times=N] [when=WORD]`:

- `hang`: after N items the stream neither yields nor ends (at its end if it has fewer).
- `slow:S`: every item after the first N is delayed by S seconds (on the provider's clock).
- `raise`: after N items the stream raises `InjectedFault`.
- `garbage:WHAT`: junk instead of items (see `LLM_GARBAGE`, `TTS_GARBAGE`, `STT_GARBAGE`).
- `kill` (`ProcessLLM` only): after N tokens the worker process gets SIGKILL.

`times=N` strikes only the first N calls (then the provider behaves); `when=WORD` only
calls whose text contains WORD (LLM: the last user message; TTS: the sentence; an STT
call has no text, so there `when` never strikes).

`ProcessLLM` is the process-level failure made real: each reply streams from a child
Python process over a pipe, and a killed child surfaces as a clear `LLMProcessDied`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
from collections.abc import AsyncIterable, AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Self, TypeVar

import numpy as np

from voxloop.clock import Clock
from voxloop.errors import ProviderCallError
from voxloop.providers.base import AudioChunk, Message, Transcript
from voxloop.testing.fakes import FakeLLM, FakeSTT, FakeTTS, last_user

if TYPE_CHECKING:
    from voxloop.config.settings import Settings

T = TypeVar("T")

KINDS = ("none", "hang", "slow", "raise", "garbage", "kill")
ENV = "VOXLOOP_FAULT_{stage}"  # VOXLOOP_FAULT_LLM, VOXLOOP_FAULT_TTS, VOXLOOP_FAULT_STT


class InjectedFault(RuntimeError):
    """The exception a `raise` fault throws: easy to tell apart from a real bug."""


class LLMProcessDied(ProviderCallError):
    """The LLM's worker process went away in the middle of a reply."""

    def __init__(self, message: str) -> None:
        super().__init__(message, retryable=False)


@dataclass(frozen=True)
class Fault:
    """What goes wrong, when, and how often (see the module docstring)."""

    kind: str = "none"
    arg: str = ""
    after: int = 0  # items that pass untouched before the fault strikes
    times: int = 0  # calls that get the fault; 0: every call
    when: str = ""  # only calls whose text contains this

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown fault {self.kind!r}; use one of {', '.join(KINDS)}")
        if self.after < 0 or self.times < 0:
            raise ValueError("after and times are counts: 0 or more")

    @classmethod
    def parse(cls, spec: str) -> Self:
        """`"slow:0.5 after=2 times=1 when=boom"` → Fault("slow", "0.5", 2, 1, "boom")."""
        words = spec.split()
        if not words:
            return cls()
        kind, _, arg = words[0].partition(":")
        options: dict[str, Any] = {}
        for word in words[1:]:
            key, sep, value = word.partition("=")
            if not sep or key not in ("after", "times", "when"):
                raise ValueError(f"bad fault option {word!r}; use after=N, times=N, when=WORD")
            options[key] = value if key == "when" else int(value)
        return cls(kind, arg, **options)

    @classmethod
    def from_env(cls, stage: str) -> Self:
        return cls.parse(os.environ.get(ENV.format(stage=stage.upper()), ""))

    @property
    def delay_s(self) -> float:
        return float(self.arg or 1.0)


class _Striker:
    """Decides, call by call, whether a provider's fault applies (`times`, `when`)."""

    def __init__(self, fault: Fault) -> None:
        self.fault = fault
        self.struck = 0  # calls the fault has hit so far

    def strikes(self, text: str = "") -> bool:
        f = self.fault
        if f.kind == "none" or (f.when and f.when not in text):
            return False
        if f.times and self.struck >= f.times:
            return False
        self.struck += 1
        return True


async def _forever() -> None:
    await asyncio.Event().wait()


async def inject(
    stream: AsyncIterator[T],
    fault: Fault,
    clock: Clock,
    garbage: Callable[[T], Sequence[T]] | None = None,
) -> AsyncIterator[T]:
    """`stream` with `fault` applied from its item number `fault.after` on. `garbage`
    turns one good item into what is yielded instead (several items, or none)."""
    try:
        count = 0
        async for item in stream:
            if count >= fault.after:
                if fault.kind == "hang":
                    await _forever()
                elif fault.kind == "raise":
                    raise InjectedFault(f"injected fault after {count} items")
                elif fault.kind == "slow":
                    await clock.sleep(fault.delay_s)
                elif fault.kind == "garbage" and garbage is not None:
                    for junk in garbage(item):
                        yield junk
                    count += 1
                    continue
            count += 1
            yield item
        if fault.kind == "hang":  # fewer items than `after`: it never finishes instead
            await _forever()
        if fault.kind == "raise" and count <= fault.after:
            raise InjectedFault(f"injected fault at the end, after {count} items")
    finally:
        aclose = getattr(stream, "aclose", None)
        if aclose is not None:
            await aclose()


# -- LLM --------------------------------------------------------------------------------

LLM_GARBAGE: dict[str, Callable[[str], list[Any]]] = {
    # Not text at all: the pipeline must refuse it clearly, not crash somewhere later.
    "binary": lambda tok: [b"\xff\xfe\x00\x9c" + tok.encode()],
    "none": lambda tok: [None],
    "number": lambda tok: [42],
    # Text, but nasty: it must reach the client as valid JSON and the TTS as text.
    "control": lambda tok: ["\x00\x07\x1b[2J\x7f\u202e" + tok + "\r\x0c"],
    "surrogate": lambda tok: [tok + " \ud800\udfff\udbff "],
    "huge": lambda tok: [" " + "Z" * 20_000 + "."],
    "empty": lambda tok: ["", "", tok],
}


class FaultyLLM(FakeLLM):
    """`FakeLLM` whose replies suffer `fault`. Garbage puts one junk token in place of
    token number `after` (the rest of the reply follows)."""

    name = "faulty"

    def __init__(self, replies: Any = (), *, fault: Fault | None = None, **kw: Any) -> None:
        super().__init__(replies, **kw)
        self.fault = fault or Fault()
        self.striker = _Striker(self.fault)
        if self.fault.kind == "garbage" and self.fault.arg not in LLM_GARBAGE:
            raise ValueError(f"LLM garbage is one of {', '.join(LLM_GARBAGE)}")

    @classmethod
    def from_settings(cls, settings: Settings) -> Self:
        return cls(fault=Fault.from_env("llm"))

    async def generate(
        self,
        messages: Sequence[Message],
        *,
        max_tokens: int | None = None,
        temperature: float | None = None,
    ) -> AsyncIterator[str]:
        stream = super().generate(messages, max_tokens=max_tokens, temperature=temperature)
        if not self.striker.strikes(last_user(messages)):
            async for token in stream:
                yield token
            return
        junk = LLM_GARBAGE.get(self.fault.arg)
        done = False

        def once(token: str) -> list[Any]:  # one junk token, then the reply goes on
            nonlocal done
            first, done = not done, True
            return junk(token) if first and junk is not None else [token]

        async for token in inject(stream, self.fault, self.clock, once):
            yield token


_CHILD = r"""
import json, sys, time
words, delay = json.loads(sys.argv[1]), float(sys.argv[2])
for word in words:
    if not sys.stdin.readline():
        sys.exit(0)
    time.sleep(delay)
    sys.stdout.write(json.dumps(word) + "\n")
    sys.stdout.flush()
sys.stdout.write("null\n")
sys.stdout.flush()
"""


class ProcessLLM(FakeLLM):
    """A fake LLM in a separate process, as a model server or a crash-prone native
    runtime would be: each reply is a child Python process that sends one token per
    request over a pipe. A `kill` fault SIGKILLs the child after `after` tokens; any
    child that dies mid-reply (OOM killer, segfault) raises `LLMProcessDied`."""

    name = "process"

    def __init__(self, replies: Any = (), *, fault: Fault | None = None, **kw: Any) -> None:
        super().__init__(replies, **kw)
        self.fault = fault or Fault()
        if self.fault.kind not in ("none", "kill"):
            raise ValueError("ProcessLLM takes a kill fault (FaultyLLM the others)")
        self.striker = _Striker(self.fault)
        self.pids: list[int] = []  # every child started, for tests that look for leftovers

    @classmethod
    def from_settings(cls, settings: Settings) -> Self:
        return cls(fault=Fault.from_env("llm"))

    async def generate(
        self,
        messages: Sequence[Message],
        *,
        max_tokens: int | None = None,
        temperature: float | None = None,
    ) -> AsyncIterator[str]:
        self.requests.append(list(messages))
        words = self._reply(messages).split(" ")[:max_tokens]
        kill_after = self.fault.after if self.fault.kind == "kill" else None
        if kill_after is not None and not self.striker.strikes(last_user(messages)):
            kill_after = None
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-I",
            "-S",
            "-c",
            _CHILD,
            json.dumps(words),
            str(self.token_s),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,  # its stderr is ours: a crash shows in our log
        )
        self.pids.append(proc.pid)
        assert proc.stdin is not None and proc.stdout is not None
        got = 0
        try:
            while True:
                if kill_after is not None and got >= kill_after:
                    os.kill(proc.pid, signal.SIGKILL)  # what the OOM killer would do
                    kill_after = None
                try:
                    proc.stdin.write(b"next\n")
                    await proc.stdin.drain()
                except (BrokenPipeError, ConnectionResetError, RuntimeError):
                    pass  # it is gone (uvloop says so with a RuntimeError): reading tells
                line = await proc.stdout.readline()
                if not line:
                    break
                token = json.loads(line)
                if token is None:
                    return
                got += 1
                self.tokens_produced += 1
                yield token if got == 1 else " " + token
            code = await proc.wait()
            how = f"killed by {signal.Signals(-code).name}" if code < 0 else f"exit code {code}"
            raise LLMProcessDied(
                f"the LLM worker process {proc.pid} died mid-reply ({how}) after {got} tokens"
            )
        finally:
            if proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
            proc.stdin.close()
            # Reaped here, even on cancel: no zombie, no pipe left open.
            await asyncio.shield(proc.wait())


# -- TTS --------------------------------------------------------------------------------


def _nan(chunk: AudioChunk) -> list[AudioChunk]:
    pcm = chunk.pcm.astype(np.float64)
    pcm[::7], pcm[1::11], pcm[2::13] = np.nan, np.inf, -np.inf
    return [AudioChunk(pcm, chunk.sample_rate)]


TTS_GARBAGE: dict[str, Callable[[AudioChunk], list[AudioChunk]]] = {
    "nan": _nan,  # float samples with NaN and ±inf
    "float": lambda c: [AudioChunk(c.pcm.astype(np.float32) / 32768, c.sample_rate)],
    "int32": lambda c: [AudioChunk(c.pcm.astype(np.int32) << 16, c.sample_rate)],
    "stereo": lambda c: [AudioChunk(np.stack([c.pcm, c.pcm], axis=1), c.sample_rate)],
    "empty": lambda c: [AudioChunk(np.zeros(0, np.int16), c.sample_rate), c],
    "zero_rate": lambda c: [AudioChunk(c.pcm, 0)],
    "negative_rate": lambda c: [AudioChunk(c.pcm, -16000)],
    "tiny_rate": lambda c: [AudioChunk(c.pcm, 3)],
    "huge_rate": lambda c: [AudioChunk(c.pcm, 10**9)],
    # Unusual but valid: it must simply be resampled.
    "odd_rate": lambda c: [AudioChunk(c.pcm, 11025)],
}


class FaultyTTS(FakeTTS):
    """`FakeTTS` whose audio streams suffer `fault`; garbage replaces every chunk from
    number `after` on."""

    name = "faulty"

    def __init__(self, *, fault: Fault | None = None, **kw: Any) -> None:
        super().__init__(**kw)
        self.fault = fault or Fault()
        self.striker = _Striker(self.fault)
        if self.fault.kind == "garbage" and self.fault.arg not in TTS_GARBAGE:
            raise ValueError(f"TTS garbage is one of {', '.join(TTS_GARBAGE)}")

    @classmethod
    def from_settings(cls, settings: Settings) -> Self:
        return cls(fault=Fault.from_env("tts"))

    async def synthesize(self, text: str) -> AsyncIterator[AudioChunk]:
        stream = super().synthesize(text)
        if not self.striker.strikes(text):
            async for chunk in stream:
                yield chunk
            return
        junk = TTS_GARBAGE.get(self.fault.arg)
        async for chunk in inject(stream, self.fault, self.clock, junk):
            yield chunk


# -- STT --------------------------------------------------------------------------------

STT_GARBAGE: dict[str, Callable[[Transcript], list[Any]]] = {
    "none": lambda t: [Transcript(None, t.is_final)],  # type: ignore[arg-type]
    "bytes": lambda t: [Transcript(b"\xff\xfe junk", t.is_final)],  # type: ignore[arg-type]
    "number": lambda t: [Transcript(12345, t.is_final)],  # type: ignore[arg-type]
    "long": lambda t: [Transcript("blah " * 40_000, t.is_final)],
    "control": lambda t: [Transcript("\x00\x1b[31m" + t.text + "\ud800", t.is_final)],
    "object": lambda t: [{"text": t.text}],  # not a Transcript at all
}


class FaultySTT(FakeSTT):
    """`FakeSTT` whose transcription streams suffer `fault`; garbage replaces every
    result from number `after` on (partials and the final alike)."""

    name = "faulty"

    def __init__(self, script: Sequence[str] = (), *, fault: Fault | None = None, **kw: Any):
        super().__init__(script, **kw)
        self.fault = fault or Fault()
        self.striker = _Striker(self.fault)
        if self.fault.kind == "garbage" and self.fault.arg not in STT_GARBAGE:
            raise ValueError(f"STT garbage is one of {', '.join(STT_GARBAGE)}")

    @classmethod
    def from_settings(cls, settings: Settings) -> Self:
        return cls(fault=Fault.from_env("stt"))

    async def transcribe(self, audio: AsyncIterable[np.ndarray]) -> AsyncIterator[Transcript]:
        stream = super().transcribe(audio)
        if not self.striker.strikes():
            async for result in stream:
                yield result
            return
        junk = STT_GARBAGE.get(self.fault.arg)
        async for result in inject(stream, self.fault, self.clock, junk):
            yield result
