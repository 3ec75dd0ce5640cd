"""The `voxloop` command line. Each model is usable on its own from here.

Exit codes: 0 success, 1 a problem the message explains, 2 bad usage.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from voxloop.config.settings import (
    CONFIG_ENV,
    ConfigError,
    Settings,
    check_config_file,
    load_settings,
    masked_dump,
)
from voxloop.errors import VoxloopError

T = TypeVar("T")

app = typer.Typer(
    name="voxloop",
    help="Real-time voice-to-voice AI agent server, fully local by default.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

# A boolean option takes no value: an empty metavar keeps typer from showing `<bool>`.
FLAG: dict[str, Any] = {"metavar": ""}

ConfigOpt = Annotated[
    Path | None,
    typer.Option("--config", "-c", help="a TOML settings file (else $VOXLOOP_CONFIG)"),
]


def _print_version(value: bool) -> None:
    if value:
        from voxloop import __version__

        typer.echo(f"voxloop {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option(
            "--version",
            callback=_print_version,
            is_eager=True,
            help="print the version and exit",
            **FLAG,
        ),
    ] = False,
) -> None:
    """Real-time voice-to-voice AI agent server, fully local by default."""


def _fail(message: str) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(1)


def _settings(config: Path | None, **overrides: Any) -> Settings:
    try:
        if config is not None:  # checked here, so that the message names the option
            check_config_file(config, f"--config {config}")
            os.environ[CONFIG_ENV] = str(config)
        return load_settings(**overrides)
    except ConfigError as exc:
        _fail(str(exc))
        raise  # unreachable, keeps type checkers happy


def _check_wav_output(path: Path) -> None:
    """Fail now, before any work, if the WAV could not be written to `path` (soundfile
    would only say "System error", or raise)."""
    if path.is_dir():
        _fail(f"cannot write {path}: {path} is a directory")
    if path.suffix.lower() != ".wav":
        _fail(f"cannot write {path}: the output must be a .wav file")
    parent = path.parent
    if not parent.is_dir():
        what = "is not a directory" if parent.exists() else "does not exist"
        _fail(f"cannot write {path}: the directory {parent} {what}")
    if not os.access(parent, os.W_OK):
        _fail(f"cannot write {path}: no permission to write in {parent}")


def _guarded(fn: Callable[[], T]) -> T:
    """Run a command body, turning user-facing errors into one line and exit code 1."""
    try:
        return fn()
    except (VoxloopError, ConfigError) as exc:
        _fail(str(exc))
        raise
    except KeyboardInterrupt:
        raise typer.Exit(130) from None


def _pool(settings: Settings):
    from voxloop.providers.registry import ProviderPool

    return ProviderPool(settings)


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="bind address")] = None,
    port: Annotated[int | None, typer.Option(help="TCP port")] = None,
    config: ConfigOpt = None,
) -> None:
    """Start the voxloop server."""
    settings = _settings(config)
    if host:
        settings.server.host = host
    if port is not None:
        settings.server.port = port
    from voxloop.server.app import run_server

    _guarded(lambda: run_server(settings))


@app.command("serve-models")
def serve_models(
    host: Annotated[
        str,
        typer.Option(help="bind address; Wyoming has no authentication: trusted networks only"),
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="the Wyoming TCP port")] = 10300,
    llm_port: Annotated[
        int | None,
        typer.Option(
            help="also serve the configured LLM on this port, as an OpenAI-compatible API "
            "(workers: VOXLOOP_LLM__PROVIDER=openai, VOXLOOP_LLM__BASE_URL=http://host:port/v1)"
        ),
    ] = None,
    config: ConfigOpt = None,
) -> None:
    """Serve the configured STT and TTS (and with --llm-port the LLM) to other workers."""
    settings = _settings(config)
    from voxloop.server.speech_host import run_serve_models

    _guarded(lambda: run_serve_models(settings, host, port, llm_port))


@app.command("config")
def show_config(config: ConfigOpt = None) -> None:
    """Print the effective settings as JSON, with secrets masked."""
    settings = _settings(config)
    typer.echo(json.dumps(masked_dump(settings), indent=2))


@app.command()
def transcribe(
    file: Annotated[Path, typer.Argument(help="a wav, flac, ogg or mp3 file")],
    as_json: Annotated[
        bool, typer.Option("--json", help="print JSON with segments", **FLAG)
    ] = False,
    config: ConfigOpt = None,
) -> None:
    """Transcribe an audio file with the configured STT provider."""
    settings = _settings(config)

    def body() -> None:
        from voxloop.audio.formats import read_audio
        from voxloop.providers.base import transcribe_all

        stt = _pool(settings).get("stt")
        audio, rate = read_audio(file, stt.sample_rate)
        started = time.perf_counter()
        result = asyncio.run(transcribe_all(stt, audio))
        elapsed = time.perf_counter() - started
        if as_json:
            out = {
                "text": result.text,
                "language": result.language,
                "duration_s": round(len(audio) / rate, 3),
                "transcribe_s": round(elapsed, 3),
                "segments": [
                    {"start": s.start_s, "end": s.end_s, "text": s.text} for s in result.segments
                ],
            }
            typer.echo(json.dumps(out, indent=2))
        else:
            typer.echo(result.text)

    _guarded(body)


@app.command()
def say(
    text: Annotated[str, typer.Argument(help="what to say")],
    output: Annotated[Path, typer.Option("--output", "-o", help="the WAV file to write")],
    config: ConfigOpt = None,
) -> None:
    """Synthesize speech with the configured TTS provider into a WAV file."""
    settings = _settings(config)
    if not text.strip():
        _fail("nothing to say: TEXT is empty")
    _check_wav_output(output)

    def body() -> None:
        import numpy as np

        from voxloop.audio.formats import write_wav

        tts = _pool(settings).get("tts")

        async def collect() -> list[np.ndarray]:
            return [chunk.pcm async for chunk in tts.synthesize(text)]

        parts = asyncio.run(collect())
        pcm = np.concatenate(parts) if parts else np.zeros(0, dtype=np.int16)
        try:
            write_wav(output, pcm, tts.sample_rate)
        except (OSError, RuntimeError) as exc:
            _fail(f"cannot write {output}: {exc}")
        secs = len(pcm) / tts.sample_rate
        typer.echo(f"wrote {output} ({secs:.2f} s, {tts.sample_rate} Hz)", err=True)

    _guarded(body)


@app.command()
def ask(
    text: Annotated[str, typer.Argument(help="the question")],
    max_tokens: Annotated[int | None, typer.Option(help="cap on reply length")] = None,
    config: ConfigOpt = None,
) -> None:
    """Stream the configured LLM's answer to stdout."""
    settings = _settings(config)

    def body() -> None:
        from voxloop.providers.base import Message

        llm = _pool(settings).get("llm")
        messages = [Message("system", settings.llm.system_prompt), Message("user", text)]

        async def stream() -> None:
            async for delta in llm.generate(messages, max_tokens=max_tokens):
                sys.stdout.write(delta)
                sys.stdout.flush()
            sys.stdout.write("\n")

        asyncio.run(stream())

    _guarded(body)


DEFAULT_TALK_URL = "ws://127.0.0.1:8000/ws"


@app.command()
def talk(
    file: Annotated[Path, typer.Argument(help="the question, as a wav/flac/ogg/mp3 file")],
    url: Annotated[
        str, typer.Option(help="the server's URL (ws://, wss://, http:// or https://)")
    ] = DEFAULT_TALK_URL,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="save the agent's audio here")
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="print the result as JSON", **FLAG)
    ] = False,
    sample_rate: Annotated[int, typer.Option(help="rate to send at: 8000/16000/24000/48000")] = (
        16000
    ),
    timeout: Annotated[
        float,
        typer.Option(help="seconds to wait for the reply (sooner if no speech was heard)"),
    ] = 120.0,
    session_id: Annotated[
        str | None, typer.Option(help="resume this session (its history and persona)")
    ] = None,
    persona: Annotated[str | None, typer.Option(help="a system prompt for the agent")] = None,
    profile: Annotated[
        str,
        typer.Option(
            help="the wire protocol: voxloop, twilio (a phone call), realtime (the OpenAI "
            "Realtime API) or realtime-ai; the URL defaults to that profile's endpoint"
        ),
    ] = "voxloop",
) -> None:
    """Talk to a running server: stream FILE in real time, print and save the reply."""

    def body() -> None:
        from urllib.parse import urlsplit

        from websockets.exceptions import WebSocketException

        from voxloop.client.streaming import talk as run_talk
        from voxloop.client.streaming import ws_url
        from voxloop.client.wires import WIRES

        if profile not in WIRES:
            _fail(f"unknown profile {profile!r}; known: {', '.join(WIRES)}")
            return
        if output is not None:
            _check_wav_output(output)
        try:
            target = ws_url(url)
        except ValueError as exc:
            _fail(f"--url: {exc}")
            return
        parts = urlsplit(target)
        if parts.path in ("", "/", "/ws") and not parts.query:
            # The server's address (or its /ws): the profile's own endpoint on it.
            target = f"{parts.scheme}://{parts.netloc}{WIRES[profile].path}"
        try:
            result = asyncio.run(
                run_talk(
                    target,
                    file,
                    sample_rate=sample_rate,
                    timeout_s=timeout,
                    session_id=session_id,
                    persona=persona,
                    profile=profile,
                )
            )
        except (OSError, WebSocketException) as exc:
            _fail(f"cannot reach {target}: {str(exc) or type(exc).__name__}")
            return
        if output is not None and result.audio_rate:
            _save_reply(output, result.audio, result.audio_rate)
        if as_json:
            typer.echo(json.dumps(result.as_dict(), indent=2))
        elif result.answered or result.transcript:
            typer.echo("\n".join(result.summary()))
            if output is not None and result.audio_rate:
                typer.echo(f"saved the reply audio to {output}")
        for err in result.errors:
            typer.echo(f"error: {err.get('code')}: {err.get('message')}", err=True)
        if not result.answered:  # no words back, and no audio where the wire has no words
            raise typer.Exit(1)

    _guarded(body)


def _save_reply(output: Path, audio: bytearray, rate: int) -> None:
    import numpy as np

    from voxloop.audio.formats import write_wav

    try:
        write_wav(output, np.frombuffer(bytes(audio), dtype="<i2"), rate)
    except (OSError, RuntimeError) as exc:
        _fail(f"cannot write {output}: {exc}")


@app.command()
def doctor(config: ConfigOpt = None) -> None:
    """Load every configured provider, smoke-test it and print a table."""
    settings = _settings(config)
    from voxloop.bench.doctor import print_report, run_checks

    results = asyncio.run(run_checks(_pool(settings)))
    print_report(results)
    if not all(r.ok for r in results):
        raise typer.Exit(1)


def main() -> None:
    from voxloop.bench.cli import bench_app, eval_app

    app.add_typer(bench_app, name="bench")
    app.add_typer(eval_app, name="eval")
    app()


if __name__ == "__main__":
    main()
