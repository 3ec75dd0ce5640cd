"""`voxloop bench latency`: spoken questions through the real WebSocket server, timed.

Each question is a fresh session, streamed at real-time pace by the `talk` client. Stage
figures come from the server's own per-turn metrics, and so does the breakdown of its
voice-to-voice into segments (their means add up to the mean); voice-to-voice is measured
on the client too (end of the user's speech in the file → first agent audio byte received), and
the two are compared. The naive sequential pipeline runs in the same invocation, on the
same questions, so the report can state a ratio rather than a noisy absolute alone.
"""

from __future__ import annotations

import asyncio
import platform
from pathlib import Path
from typing import Any

from voxloop.bench.questions import QUESTIONS, question_wavs
from voxloop.bench.server import running_server
from voxloop.bench.stats import summarize
from voxloop.client.streaming import talk
from voxloop.config.settings import Settings
from voxloop.telemetry.metrics import SEGMENTS, STAGES

MODES = ("streaming", "sequential")
SPEECH = ("ours", "human")  # our Piper voice asking the bench questions; real recordings
MIN_HUMAN_S = 1.5  # shorter real clips ("one", "bat") are not something one asks an agent


def human_wavs(turns: int, cache_dir: Path) -> list[Path]:
    """Real people's recordings (bench/human_speech.py) as WAV files for `talk`, longest
    first within each speaker so the first turns cover many voices."""
    from voxloop.audio.formats import write_wav
    from voxloop.bench.human_speech import fetch_clips

    clips = [c for c in fetch_clips(cache_dir) if c.duration_s >= MIN_HUMAN_S]
    by_speaker: dict[str, list] = {}
    for clip in clips:
        by_speaker.setdefault(clip.speaker, []).append(clip)
    order = []
    while len(order) < len(clips):  # one clip per speaker per round
        for group in by_speaker.values():
            if group:
                order.append(group.pop(0))
    folder = Path(cache_dir) / "speech" / "wav"
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for clip in (order[i % len(order)] for i in range(turns)):
        path = folder / f"{clip.id}.wav"
        if not path.is_file():
            write_wav(path, clip.audio, 16000)
        paths.append(path)
    return paths


def machine() -> dict[str, Any]:
    import os

    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": model or platform.processor(),
        "cores": os.cpu_count(),
        "python": platform.python_version(),
    }


async def run_turns(url: str, wavs: list[Path], timeout_s: float) -> list[dict[str, Any]]:
    turns = []
    for wav in wavs:
        result = await talk(url, wav, timeout_s=timeout_s)
        turns.append(
            {
                "transcript": result.transcript,
                "reply": result.reply,
                "client": result.client_metrics,
                "server": {k: result.server_metrics.get(k) for k in STAGES},
                "breakdown_ms": result.server_metrics.get("breakdown_ms"),
                "errors": result.errors,
            }
        )
    return turns


def report(turns: list[dict[str, Any]], eot_silence_ms: float) -> dict[str, Any]:
    client_v2v = [t["client"].get("voice_to_voice_ms") for t in turns]
    server = {stage: summarize(t["server"].get(stage) for t in turns) for stage in STAGES}
    split = [t["breakdown_ms"] for t in turns if t.get("breakdown_ms")]
    breakdown = {seg: summarize(b.get(seg) for b in split) for seg in SEGMENTS}
    deltas = [
        c - s
        for t in turns
        if (c := t["client"].get("voice_to_voice_ms")) is not None
        and (s := t["server"].get("voice_to_voice_ms")) is not None
    ]
    return {
        "turns": len(turns),
        "completed": sum(1 for t in turns if not t["errors"] and t["reply"]),
        "client_voice_to_voice_ms": summarize(client_v2v),
        "server": server,
        # Where the server's voice-to-voice went: the segments' means add up to its mean.
        "server_breakdown_ms": breakdown,
        # Client and server should agree up to the network and the definition of "end of
        # speech" (the client uses the file's audio energy, the server its VAD).
        "client_minus_server_v2v_ms": summarize(deltas),
        "overhead_over_silence_ms": {
            "client": summarize(v - eot_silence_ms for v in client_v2v if v is not None),
            "server": summarize(
                v - eot_silence_ms
                for t in turns
                if (v := t["server"].get("voice_to_voice_ms")) is not None
            ),
        },
        "per_turn": turns,
    }


def bench_latency(
    *,
    turns: int = 10,
    providers: str = "embedded",
    modes: tuple[str, ...] = MODES,
    url: str | None = None,
    timeout_s: float = 120.0,
    cache_dir: Path | None = None,
    speech: str = "ours",
) -> dict[str, Any]:
    settings = Settings()
    eot_ms = settings.turns.end_of_turn_silence_s * 1000
    if speech == "human":
        wavs = human_wavs(turns, cache_dir or settings.resolved_cache_dir())
    else:
        texts = [QUESTIONS[i % len(QUESTIONS)] for i in range(turns)]
        wavs = question_wavs(texts, cache_dir or settings.resolved_cache_dir() / "bench")
    out: dict[str, Any] = {
        "benchmark": "latency",
        "providers": providers,
        "speech": speech,
        "machine": machine(),
        "settings": {
            "end_of_turn": settings.turns.end_of_turn,
            "end_of_turn_silence_s": settings.turns.end_of_turn_silence_s,
            "max_silence_s": settings.turns.max_silence_s,
            "speculative_silence_s": settings.turns.speculative_silence_s,
            "llm_preset": settings.llm.preset,
        },
    }
    for mode in modes:
        env = {"VOXLOOP_SESSION__MODE": mode}
        with running_server(url, providers=providers, env=env) as server:
            results = asyncio.run(run_turns(server.url, wavs, timeout_s))
        out[mode] = report(results, eot_ms)
    if "streaming" in out and "sequential" in out:
        fast = out["streaming"]["client_voice_to_voice_ms"]
        slow = out["sequential"]["client_voice_to_voice_ms"]
        if fast and slow:
            out["streaming_vs_sequential_p50"] = round(fast["p50"] / slow["p50"], 3)
    return out


def plot_latency(result: dict[str, Any], path: Path) -> None:
    """Where voice-to-voice went (the mean of each segment, stacked: they add up to the
    mean voice-to-voice), per mode; plus the voice-to-voice spread."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    modes = [m for m in MODES if m in result]
    fig, (bars, spread) = plt.subplots(1, 2, figsize=(11, 4))
    colors = plt.get_cmap("tab10").colors
    for row, mode in enumerate(modes):
        left = 0.0
        for segment, color in zip(SEGMENTS, colors, strict=False):
            stats = result[mode].get("server_breakdown_ms", {}).get(segment)
            width = stats["mean"] if stats else 0.0
            label = segment if row == 0 else None
            bars.barh(row, width, left=left, color=color, label=label)
            left += width
        v2v = result[mode]["server"].get("voice_to_voice_ms")
        if v2v:
            bars.plot([v2v["mean"]], [row], "k|", markersize=30)
    bars.set_yticks(range(len(modes)), modes)
    bars.set_xlabel("ms (mean per segment; | = mean voice-to-voice)")
    bars.legend(fontsize=7, loc="lower right")
    data = [
        [
            t["client"]["voice_to_voice_ms"]
            for t in result[m]["per_turn"]
            if t["client"].get("voice_to_voice_ms")
        ]
        for m in modes
    ]
    spread.boxplot(data, tick_labels=modes)
    spread.set_ylabel("client voice-to-voice (ms)")
    fig.suptitle(
        f"voxloop latency, {result['providers']} providers, {result['machine']['cores']} cores"
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
