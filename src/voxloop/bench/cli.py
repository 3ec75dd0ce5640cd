"""`voxloop bench ...`: each benchmark prints its JSON report (and can save it)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

bench_app = typer.Typer(
    help="Benchmarks that print JSON; see docs/benchmarks.md.", no_args_is_help=True
)

Providers = Annotated[str, typer.Option(help="embedded (the local models) or fake")]
Url = Annotated[str | None, typer.Option(help="target a running server instead of starting one")]
JsonOut = Annotated[Path | None, typer.Option("--json", help="also write the report here")]


def _emit(report: dict[str, Any], out: Path | None) -> None:
    text = json.dumps(report, indent=2)
    if out is not None:
        out.write_text(text + "\n")
    typer.echo(text)


@bench_app.command()
def latency(
    turns: Annotated[int, typer.Option(help="spoken questions to ask")] = 10,
    providers: Providers = "embedded",
    mode: Annotated[str, typer.Option(help="streaming, sequential, or both (ratio)")] = "both",
    url: Url = None,
    json_out: JsonOut = None,
    plot: Annotated[Path | None, typer.Option(help="write a PNG chart here")] = None,
    speech: Annotated[
        str, typer.Option(help="ours (Piper asking the bench questions) or human (recordings)")
    ] = "ours",
) -> None:
    """Voice-to-voice and per-stage latency, measured on the client and the server."""
    from voxloop.bench.latency import MODES, SPEECH, bench_latency, plot_latency

    modes = MODES if mode == "both" else (mode,)
    if any(m not in MODES for m in modes):
        raise typer.BadParameter(f"mode must be streaming, sequential or both, not {mode!r}")
    if speech not in SPEECH:
        raise typer.BadParameter(f"speech must be ours or human, not {speech!r}")
    report = bench_latency(turns=turns, providers=providers, modes=modes, url=url, speech=speech)
    if plot is not None:
        plot_latency(report, plot)
    _emit(report, json_out)


@bench_app.command()
def bargein(
    trials: Annotated[int, typer.Option(help="interruptions to try")] = 10,
    providers: Providers = "embedded",
    url: Url = None,
    max_delay: Annotated[
        float | None, typer.Option(help="latest interruption, seconds into the answer")
    ] = None,
    json_out: JsonOut = None,
) -> None:
    """Interrupt long answers at random points; time the stop and count late audio."""
    from voxloop.bench.bargein import bench_bargein

    delay = max_delay if max_delay is not None else (1.0 if providers == "fake" else 3.0)
    _emit(bench_bargein(trials=trials, providers=providers, url=url, max_delay_s=delay), json_out)


@bench_app.command()
def load(
    sessions: Annotated[
        list[int], typer.Option(help="concurrent sessions; repeat for several runs")
    ] = [10],  # noqa: B006 - typer reads the default, it is never mutated
    providers: Providers = "fake",
    url: Url = None,
    ramp: Annotated[
        float | None,
        typer.Option(help="seconds over which sessions start (default: 2 burst, 10 natural)"),
    ] = None,
    pace: Annotated[
        str,
        typer.Option(
            help="burst: one question each, all at once; natural: several turns per caller, "
            "each answer heard out, a pause to think"
        ),
    ] = "burst",
    turns: Annotated[int, typer.Option(min=1, help="natural: turns per caller")] = 4,
    think_s: Annotated[
        str, typer.Option(help="natural: pause before asking again, SECONDS or MIN-MAX")
    ] = "1.5-4",
    admit: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="conversations the server admits (limits.conversations; default: what it "
            "measures at start-up)",
        ),
    ] = None,
    json_out: JsonOut = None,
) -> None:
    """How many concurrent sessions hold real time."""
    from voxloop.bench.load import PACES, bench_load
    from voxloop.bench.load_natural import parse_think

    if pace not in PACES:
        raise typer.BadParameter(f"pace must be burst or natural, not {pace!r}")
    try:
        think = parse_think(think_s)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    report = bench_load(
        sessions=sessions,
        providers=providers,
        url=url,
        ramp_s=ramp,
        pace=pace,
        turns=turns,
        think_s=think,
        admit=admit,
    )
    _emit(report, json_out)


@bench_app.command()
def soak(
    sessions: Annotated[int, typer.Option(help="simulated users, calling again and again")] = 50,
    minutes: Annotated[float, typer.Option(help="how long the run lasts")] = 10.0,
    providers: Providers = "fake",
    url: Url = None,
    json_out: JsonOut = None,
) -> None:
    """A long run: memory growth after warm-up, errors, and latency drift."""
    from voxloop.bench.soak import bench_soak

    _emit(bench_soak(sessions=sessions, minutes=minutes, providers=providers, url=url), json_out)


STT_MODELS, STT_PATHS, STT_RATES, STT_SETS = (
    ["tiny.en", "base"],
    ["short_window", "full_window"],
    [16000, 24000, 8000],
    ["human", "ours"],
)  # typer reads these defaults; they are never mutated


@bench_app.command()
def stt(
    model: Annotated[list[str], typer.Option(help="tiny.en and/or base; repeat")] = STT_MODELS,
    path: Annotated[list[str], typer.Option(help="short_window / full_window")] = STT_PATHS,
    rate: Annotated[list[int], typer.Option(help="input rates; repeat")] = STT_RATES,
    sets: Annotated[list[str], typer.Option("--set", help="human and/or ours")] = STT_SETS,
    json_out: JsonOut = None,
) -> None:
    """Whisper WER on real human recordings (and our own voice), per model, decode path,
    input rate and speaker, with decode times."""
    from voxloop.bench.stt import bench_stt

    _emit(bench_stt(tuple(model), tuple(path), tuple(rate), tuple(sets)), json_out)


@bench_app.command("llm-cpu")
def llm_cpu(
    variant: Annotated[
        list[str], typer.Option(help="a CPU variant to measure; repeat (default: all that run)")
    ] = [],  # noqa: B006  typer reads it; never mutated
    json_out: JsonOut = None,
) -> None:
    """The LLM on each CPU variant of the llama.cpp build that this CPU runs: prompt
    reading, decoding, four conversations at once (what `llm.cpu_backend: auto` picks)."""
    from voxloop.bench.llm_cpu import bench_llm_cpu

    _emit(bench_llm_cpu(tuple(variant)), json_out)


eval_app = typer.Typer(help="Quality evaluations that print JSON.", no_args_is_help=True)


@eval_app.command()
def turns(
    per_class: Annotated[int, typer.Option(help="cases per scenario class")] = 20,
    seed: Annotated[int, typer.Option(help="for the scenario mix; runs repeat")] = 1,
    sets: Annotated[
        list[str], typer.Option("--set", help="real (people, end-of-turn policies) and/or ours")
    ] = ["real", "ours"],  # noqa: B006 - typer reads the default
    sweep: Annotated[
        bool, typer.Option(help="real: also sweep the combined policy", metavar="")
    ] = False,
    json_out: JsonOut = None,
) -> None:
    """Turn-taking: end-of-turn policies on real people's recordings (passages, utterances)
    and on our own voice; cut-offs, echo, backchannels, interruptions on our scenarios."""
    from voxloop.bench.turns import eval_turns
    from voxloop.bench.turns_real import eval_turns_real

    unknown = set(sets) - {"real", "ours"}
    if unknown:
        raise typer.BadParameter(f"--set takes real and/or ours, not {sorted(unknown)}")
    report: dict = {}
    if "real" in sets:
        report["real_speech"] = eval_turns_real(sweep=sweep)
    if "ours" in sets:
        report.update(eval_turns(per_class=per_class, seed=seed))
    _emit(report, json_out)


@eval_app.command()
def tools(json_out: JsonOut = None) -> None:
    """Tool calling with the configured LLM: the right tool, and the right answer."""
    import asyncio

    from voxloop.bench.tools import eval_tools
    from voxloop.config.settings import load_settings

    _emit(asyncio.run(eval_tools(load_settings())), json_out)


@eval_app.command()
def answers(
    only: Annotated[str | None, typer.Option(help="one category or case id")] = None,
    split: Annotated[str | None, typer.Option(help="tune or holdout (default: both)")] = None,
    limit: Annotated[int | None, typer.Option(help="at most this many cases")] = None,
    json_out: JsonOut = None,
    quiet: Annotated[
        bool, typer.Option("--quiet", help="no progress lines on stderr", metavar="")
    ] = False,
) -> None:
    """Everyday requests answered by the configured LLM and voice, scored automatically."""
    from voxloop.bench.answers import eval_answers
    from voxloop.config.settings import load_settings

    def progress(line: str) -> None:
        typer.echo(line, err=True)

    report = eval_answers(
        load_settings(), only=only, split=split, limit=limit, progress=None if quiet else progress
    )
    _emit(report, json_out)
