"""`voxloop eval answers`: everyday requests answered the way a session answers them, scored
automatically.

Each case (bench/data/answers.toml) is one or more user turns; the last turn's reply is
scored. The reply goes through the real `Reply` with the configured LLM and TTS: persona
prompt, history format, safety replies, the spoken guards, speakable text. Only the clock
differs: sleeps return at once, so audio is not paced in real time (the timeouts still run
on real time). A reply is right when every `expect` pattern matches what was said, no
`forbid` pattern does, it is not empty, and it is not a copy of the user's words. Per
reply the report keeps words, seconds of audio, loops, unspeakable text and the LLM's
first-token time. Cases are split into `tune` and `holdout`: prompt work looks at `tune`
only, and both parts are reported.
"""

from __future__ import annotations

import asyncio
import re
import time
import tomllib
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from voxloop.bench.latency import machine
from voxloop.bench.stats import summarize
from voxloop.clock import RealClock
from voxloop.config.settings import Settings
from voxloop.memory.history import History
from voxloop.memory.persona import Persona, default_system_prompt, system_prompt
from voxloop.protocol.outbox import Outbox
from voxloop.providers.base import LLMProvider, Message, ProviderInfo, TTSProvider
from voxloop.reply.config import ReplyConfig
from voxloop.reply.pipeline import Reply
from voxloop.reply.safety import SafetyPolicy
from voxloop.reply.speakable import unspeakable
from voxloop.reply.spoken import SpokenGuards, SpokenText, asks_for_long
from voxloop.telemetry.metrics import TurnMetrics

CASES = "answers.toml"


@dataclass(frozen=True)
class Case:
    id: str
    category: str
    split: str
    turns: tuple[str, ...]
    expect: tuple[str, ...] = ()
    forbid: tuple[str, ...] = ()
    long_ok: bool = False
    parrot_ok: bool = False


def load_cases(path: Path | None = None) -> list[Case]:
    raw = (
        path.read_bytes()
        if path is not None
        else resources.files("voxloop.bench").joinpath("data", CASES).read_bytes()
    )
    cases = []
    for row in tomllib.loads(raw.decode())["case"]:
        cases.append(
            Case(
                id=row["id"],
                category=row["category"],
                split=row["split"],
                turns=tuple(row["turns"]),
                expect=tuple(row.get("expect", ())),
                forbid=tuple(row.get("forbid", ())),
                long_ok=bool(row.get("long_ok", False)),
                parrot_ok=bool(row.get("parrot_ok", False)),
            )
        )
    return cases


class FastClock(RealClock):
    """Real time, but sleeping takes none: the audio is produced, not played."""

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(0)


class TimedLLM(LLMProvider):
    """The LLM, with the time to each request's first token measured on the real clock."""

    def __init__(self, inner: LLMProvider) -> None:
        self.inner = inner
        self.name = inner.name
        self.capabilities = inner.capabilities
        self.first_token_s: list[float] = []
        self.tokens = 0

    def info(self) -> ProviderInfo:
        return self.inner.info()

    async def generate(
        self,
        messages: Sequence[Message],
        *,
        max_tokens: int | None = None,
        temperature: float | None = None,
    ) -> AsyncIterator[str]:
        started = time.perf_counter()
        first = True
        async for delta in self.inner.generate(
            messages, max_tokens=max_tokens, temperature=temperature
        ):
            if first:
                self.first_token_s.append(time.perf_counter() - started)
                first = False
            self.tokens += 1
            yield delta


@dataclass
class Said:
    text: str  # what the voice said
    raw: str  # what the LLM wrote
    audio_s: float
    error: str | None  # the reply failed


async def say_turn(
    llm: LLMProvider,
    tts: TTSProvider,
    settings: Settings,
    history: History,
    user_text: str,
    turn_id: int,
) -> Said:
    """One turn through the real `Reply`; its record joins `history` as a session's would."""
    persona = Persona.from_settings(settings)
    rate = tts.sample_rate or 16000
    config = ReplyConfig(
        system_prompt=system_prompt(persona),
        output_sample_rate=rate,
        early_first_clause=settings.session.early_first_clause,
        max_tokens=settings.llm.max_tokens,
        guards=SpokenGuards.from_settings(settings.reply),
        safety=SafetyPolicy.from_settings(settings.safety),
    )
    stops: list[str | None] = []
    reply = Reply(
        session_id="eval",
        turn_id=turn_id,
        user_text=user_text,
        llm=llm,
        tts=tts,
        outbox=Outbox(),
        clock=FastClock(),
        history=history,
        config=config,
        metrics=TurnMetrics("eval", turn_id),
        on_error=lambda code, message, _turn: stops.append(f"error: {code}: {message}"),
    )
    reply.start()
    await reply.wait()
    record = reply.record
    said = record.assistant if record else ""
    error = next((s for s in stops if s), None)
    return Said(said, reply.text, reply.played.total_s(), error)


def score(case: Case, said: str) -> list[str]:
    """Why the reply is wrong (empty: right)."""
    problems = []
    if not said.strip():
        problems.append("empty")
    for pattern in case.expect:
        if not re.search(pattern, said, re.IGNORECASE):
            problems.append(f"missing {pattern}")
    for pattern in case.forbid:
        if re.search(pattern, said, re.IGNORECASE):
            problems.append(f"forbidden {pattern}")
    if not case.parrot_ok and SpokenText(case.turns[-1]).copies_user(said):
        problems.append("parrot")
    return problems


def _looped(raw: str) -> bool:
    """Did the model's own text loop (whether or not the guard caught it)?"""
    guard = SpokenText("", early_first_clause=False)
    guard.push(raw)
    guard.flush()
    return guard.stopped == "loop"


async def run_cases(
    cases: Sequence[Case],
    llm: LLMProvider,
    tts: TTSProvider,
    settings: Settings,
    progress: Callable[[str], None] | None = None,
) -> list[dict[str, Any]]:
    timed = TimedLLM(llm)
    rows = []
    for case in cases:
        history = History(budget_tokens=settings.session.memory_tokens)
        said = None
        for turn_id, user_text in enumerate(case.turns, start=1):
            asked = len(timed.first_token_s)
            said = await say_turn(timed, tts, settings, history, user_text, turn_id)
        assert said is not None
        first = timed.first_token_s[asked:]
        problems = score(case, said.text)
        if said.error:
            problems.append(said.error)
        rows.append(
            {
                "id": case.id,
                "category": case.category,
                "split": case.split,
                "asked": case.turns[-1],
                "said": said.text,
                "wrote": said.raw,  # the LLM's own text, before the guards
                "right": not problems,
                "problems": problems,
                "words": len(said.text.split()),
                "audio_s": round(said.audio_s, 2),
                "over_budget": said.audio_s > settings.reply.max_spoken_s
                and not (case.long_ok or asks_for_long(case.turns[-1])),
                "looped_raw": _looped(said.raw),
                "loop_said": _looped(said.text),
                "unspeakable": unspeakable(said.text),
                "first_token_s": round(first[0], 3) if first else None,
            }
        )
        if progress:
            progress(f"{case.id}: {problems or 'right'}")
    return rows


def _part(rows: list[dict[str, Any]]) -> dict[str, Any]:
    if not rows:
        return {"cases": 0}
    firsts = [r["first_token_s"] * 1000 for r in rows if r["first_token_s"] is not None]
    return {
        "cases": len(rows),
        "right": sum(r["right"] for r in rows),
        "right_share": round(sum(r["right"] for r in rows) / len(rows), 3),
        "loops_said": sum(r["loop_said"] for r in rows),
        "loops_caught": sum(r["looped_raw"] and not r["loop_said"] for r in rows),
        "over_budget": sum(r["over_budget"] for r in rows),
        "longest_audio_s": max(r["audio_s"] for r in rows),
        "unspeakable": sum(bool(r["unspeakable"]) for r in rows),
        "parrots": sum("parrot" in r["problems"] for r in rows),
        "first_token_ms": summarize(firsts) if firsts else None,
        "audio_s": summarize([r["audio_s"] for r in rows]),
    }


def report(rows: list[dict[str, Any]], llm: LLMProvider, settings: Settings) -> dict[str, Any]:
    categories = sorted({r["category"] for r in rows})
    return {
        "benchmark": "answers",
        "model": llm.info().model,
        "machine": machine(),
        "settings": {
            "temperature": settings.llm.temperature,
            "max_tokens": settings.llm.max_tokens,
            "max_spoken_s": settings.reply.max_spoken_s,
            "safety": settings.safety.enabled,
        },
        "all": _part(rows),
        "tune": _part([r for r in rows if r["split"] == "tune"]),
        "holdout": _part([r for r in rows if r["split"] == "holdout"]),
        "by_category": {
            c: _part([r for r in rows if r["category"] == c])["right_share"] for c in categories
        },
        "wrong": [
            {k: r[k] for k in ("id", "split", "asked", "said", "problems")}
            for r in rows
            if not r["right"]
        ],
        "cases": rows,
    }


def eval_answers(
    settings: Settings,
    *,
    only: str | None = None,
    split: str | None = None,
    limit: int | None = None,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Load the configured LLM and TTS, answer the cases, and report."""
    from voxloop.providers.registry import ProviderPool

    cases = [
        c
        for c in load_cases()
        if (only is None or c.category == only or c.id == only)
        and (split is None or c.split == split)
    ][:limit]
    pool = ProviderPool(settings)
    try:
        llm, tts = pool.get("llm"), pool.get("tts")
        assert isinstance(llm, LLMProvider) and isinstance(tts, TTSProvider)

        async def run() -> list[dict[str, Any]]:
            llm.expect_system_prompt(default_system_prompt(settings))
            await llm.warmup()
            return await run_cases(cases, llm, tts, settings, progress)

        rows = asyncio.run(run())
        return report(rows, llm, settings)
    finally:
        pool.close()
