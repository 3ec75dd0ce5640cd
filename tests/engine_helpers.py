"""Drive a `Session` with fake providers on virtual time, and read what it sends."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from voxloop.clock import VirtualClock, settle
from voxloop.config.settings import Settings
from voxloop.protocol.messages import Start
from voxloop.protocol.outbox import OutMessage
from voxloop.session.services import Services
from voxloop.session.session import Session
from voxloop.testing.fakes import FakeLLM, FakeSTT, FakeTTS, FakeTurnJudge, FakeVAD

RATE = 16000


def speech(seconds: float, seed: int = 0) -> np.ndarray:
    """Loud noise: speech to the energy-based fake VAD."""
    rng = np.random.default_rng(seed)
    return rng.uniform(-0.3, 0.3, int(seconds * RATE)).astype(np.float32)


def quiet(seconds: float) -> np.ndarray:
    return np.zeros(int(seconds * RATE), dtype=np.float32)


def make_services(
    *,
    stt: FakeSTT | None = None,
    llm: FakeLLM | None = None,
    tts: FakeTTS | None = None,
    clock: VirtualClock | None = None,
    judge: FakeTurnJudge | None = None,
    **settings: Any,
) -> Services:
    clock = clock or VirtualClock()
    for provider in (stt, llm, tts):
        if provider is not None:
            provider.clock = clock
    return Services(
        settings=Settings(**settings),
        vad=FakeVAD(),
        stt=stt or FakeSTT(clock=clock),
        llm=llm or FakeLLM(clock=clock),
        tts=tts or FakeTTS(clock=clock),
        clock=clock,
        judge=judge,
    )


@dataclass
class Driver:
    """A session plus a record of everything it sent, in send order."""

    session: Session
    clock: VirtualClock
    sent: list[OutMessage] = field(default_factory=list)

    @classmethod
    async def start(cls, services: Services, **start: Any) -> Driver:
        session = Session(services)
        driver = cls(session, services.clock)  # type: ignore[arg-type]
        await session.handle(Start(**start))
        await driver.pump()
        return driver

    async def pump(self) -> list[OutMessage]:
        """Let the session run, then collect what it queued."""
        await settle()
        new = []
        while (msg := self.session.outbox.get_nowait()) is not None:
            new.append(msg)
        self.sent += new
        return new

    async def feed(self, audio: np.ndarray, step_s: float = 0.02) -> None:
        """Feed audio in real-time-sized steps, advancing the virtual clock alongside."""
        step = int(step_s * RATE)
        for i in range(0, len(audio), step):
            self.session.feed_audio(audio[i : i + step])
            await self.clock.advance(step_s)
            await self.pump()

    async def run_for(self, seconds: float, step_s: float = 0.05) -> None:
        """Pass time while the microphone sends silence."""
        await self.feed(quiet(seconds), step_s)

    def events(self, kind: str | None = None) -> list[dict[str, Any]]:
        return [m.json for m in self.sent if m.json and (kind is None or m.json["type"] == kind)]

    def types(self) -> list[str]:
        return [m.json["type"] if m.json else "audio" for m in self.sent]

    def audio_bytes(self, turn_id: int | None = None) -> int:
        return sum(
            len(m.audio)
            for m in self.sent
            if m.audio is not None and (turn_id is None or m.turn_id == turn_id)
        )
