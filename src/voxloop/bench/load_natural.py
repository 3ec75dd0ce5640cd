"""`voxloop bench load --pace natural`: callers who talk the way people do.

Each caller holds one connection for several turns (client/conversation.py): it asks a
question at real-time pace, hears the whole answer out at real time, thinks (a pause
drawn from `think_s`), and asks the next, a different question each turn. Callers start
evenly spread over the ramp, so their turns interleave as a steady stream of
conversations would, instead of everyone talking at once (the burst pace, load.py).

Real time *holds* when no turn fails, client voice-to-voice p90 is at most 2 s and no
reply's audio arrived later than it would have played (no underrun). Turns the server
refused (at capacity) are counted apart, not as failures: refusing is how a full server
keeps real time for the callers it took; `sessions_served` counts the callers it never
refused.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

from voxloop.bench.stats import summarize
from voxloop.client.conversation import converse

NATURAL_V2V_P90_MS = 2000.0
THINK_S = (1.5, 4.0)  # a person's pause between hearing an answer out and asking again
STATUSES = ("completed", "failed", "refused")
WORST_TURNS = 3  # the slowest or latest turns, in brief, to see where the time went


def parse_think(text: str) -> tuple[float, float]:
    """`2` (always 2 s) or `1.5-4` (drawn uniformly per pause), in seconds."""
    low, sep, high = text.partition("-")
    try:
        bounds = (float(low), float(high) if sep else float(low))
    except ValueError:
        raise ValueError(f"think time must be SECONDS or MIN-MAX, not {text!r}") from None
    if bounds[0] < 0 or bounds[1] < bounds[0]:
        raise ValueError(f"think time must be 0 or more, MIN ≤ MAX, not {text!r}")
    return bounds


async def _caller(
    url: str, questions: list[Path], delay_s: float, think: Callable[[], float], timeout_s: float
) -> dict[str, Any]:
    await asyncio.sleep(delay_s)
    try:
        convo = await converse(url, questions, think_s=think, timeout_s=timeout_s)
    except Exception as exc:  # a crash of the call is every turn's failure, not the run's
        why = {"code": "client", "message": f"{type(exc).__name__}: {exc}"}
        failed = {"status": "failed", "client": {}, "server": {}, "errors": [why]}
        return {"session_id": "", "turns": [{"question": q.name, **failed} for q in questions]}
    return {
        "session_id": convo.session_id,
        "closed": convo.closed,
        "turns": [turn.as_dict() for turn in convo.turns],
    }


async def natural_callers(
    url: str,
    sessions: int,
    wavs: list[Path],
    *,
    turns: int,
    ramp_s: float,
    think_s: tuple[float, float],
    timeout_s: float,
) -> list[dict[str, Any]]:
    """Every caller's conversation: caller i starts at i/sessions of the ramp and asks
    questions i, i+1, … (so no caller repeats one within 12 turns)."""
    seeds = random.Random(sessions)
    jobs = []
    for i in range(sessions):
        rng = random.Random(seeds.random())
        questions = [wavs[(i + k) % len(wavs)] for k in range(turns)]
        think = lambda rng=rng: rng.uniform(*think_s)  # noqa: E731 - one draw per pause
        jobs.append(_caller(url, questions, i * ramp_s / sessions, think, timeout_s))
    return list(await asyncio.gather(*jobs))


def _brief(caller: int, k: int, turn: dict[str, Any]) -> dict[str, Any]:
    client, server = turn["client"], turn["server"]
    return {
        "caller": caller,
        "turn": k + 1,
        "status": turn["status"],
        "transcript": turn.get("transcript"),
        "reply": (turn.get("reply") or "")[:80],
        "reply_audio_s": turn.get("reply_audio_s"),
        "voice_to_voice_ms": client.get("voice_to_voice_ms"),
        "worst_lateness_ms": client.get("worst_lateness_ms"),
        "server_breakdown_ms": server.get("breakdown_ms"),
    }


def worst_turns(callers: list[dict[str, Any]], n: int = WORST_TURNS) -> list[dict[str, Any]]:
    """The `n` worst answered turns: underruns first, then by voice-to-voice."""
    answered = [
        (i, k, t)
        for i, caller in enumerate(callers)
        for k, t in enumerate(caller["turns"])
        if t["client"].get("voice_to_voice_ms") is not None
    ]

    def badness(item: tuple[int, int, dict[str, Any]]) -> tuple[bool, float]:
        client = item[2]["client"]
        return bool(client.get("underrun")), client["voice_to_voice_ms"]

    return [_brief(*item) for item in sorted(answered, key=badness, reverse=True)[:n]]


def summarize_natural(callers: list[dict[str, Any]], eot_ms: float) -> dict[str, Any]:
    """One run's figures, over every turn of every caller."""
    turns = [turn for caller in callers for turn in caller["turns"]]
    by = {status: [t for t in turns if t["status"] == status] for status in STATUSES}
    done = by["completed"]
    heard = [t["client"] for t in turns if t["client"].get("worst_lateness_ms") is not None]
    late = [c["worst_lateness_ms"] for c in heard]
    underruns = sum(1 for c in heard if c.get("underrun"))
    v2v = summarize(t["client"].get("voice_to_voice_ms") for t in done)
    server_v2v = [t["server"].get("voice_to_voice_ms") for t in done]
    held = (
        not by["failed"] and v2v is not None and v2v["p90"] <= NATURAL_V2V_P90_MS and underruns == 0
    )
    return {
        "pace": "natural",
        "sessions": len(callers),
        "completed": sum(all(t["status"] == "completed" for t in c["turns"]) for c in callers),
        "sessions_served": sum(
            not any(t["status"] == "refused" for t in c["turns"]) for c in callers
        ),
        "turns_attempted": len(turns),
        "turns_completed": len(done),
        "turns_failed": len(by["failed"]),
        "turns_refused": len(by["refused"]),
        "failures": [t["errors"] for t in by["failed"]][:5],
        "client_voice_to_voice_ms": v2v,
        "server_voice_to_voice_ms": summarize(server_v2v),
        "overhead_over_silence_ms": summarize(v - eot_ms for v in server_v2v if v is not None),
        "reply_lateness_ms": summarize(late),
        "underruns": underruns,
        "worst_lateness_ms": max(late) if late else None,
        "realtime_held": held,
        "worst_turns": worst_turns(callers),
    }
