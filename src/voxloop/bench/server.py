"""Start a `voxloop serve` subprocess for a benchmark, or use one that is already running."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from voxloop.config.settings import CACHE_ENV
from voxloop.providers.registry import SECTIONS

BENCH_LIMITS = {
    "MAX_SESSIONS": "1000",
    "CONNECTIONS_PER_IP_PER_S": "0",  # 0: off
    "MESSAGES_PER_IP_PER_S": "0",
}


def child_env(**extra: str) -> dict[str, str]:
    """This process's environment for a child voxloop: none of our VOXLOOP_* settings (it
    gets exactly those in `extra`), but the model cache, which every process shares, so a
    run with an empty cache (as CI's) stays one."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("VOXLOOP_")}
    if CACHE_ENV in os.environ:
        env[CACHE_ENV] = os.environ[CACHE_ENV]
    return {**env, **extra}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def provider_env(providers: str) -> dict[str, str]:
    """`embedded` keeps the configured (local) providers; `fake` swaps every stage's
    (the end-of-turn judge's too) for fakes, and ends turns by the word rules: a scripted
    judge that calls every pause complete would end a spoken question at its first comma."""
    if providers == "fake":
        fakes = {f"VOXLOOP_{section.upper()}__PROVIDER": "fake" for section in SECTIONS.values()}
        return {**fakes, "VOXLOOP_TURNS__END_OF_TURN": "words"}
    if providers == "embedded":
        return {}
    raise ValueError(f"unknown provider set {providers!r}; use embedded or fake")


@dataclass(frozen=True)
class RunningServer:
    url: str  # the WebSocket URL
    pid: int | None  # None for a server we did not start
    port: int | None = None

    def usage(self) -> tuple[float, int] | None:
        """(CPU seconds used so far, resident memory in bytes) of our server process."""
        if self.pid is None:
            return None
        try:
            fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
            status = Path(f"/proc/{self.pid}/status").read_text()
        except OSError:
            return None
        ticks = os.sysconf("SC_CLK_TCK")
        cpu = (int(fields[11]) + int(fields[12])) / ticks  # utime + stime
        rss = next(int(x.split()[1]) for x in status.splitlines() if x.startswith("VmRSS"))
        return cpu, rss * 1024


@contextlib.contextmanager
def running_server(
    url: str | None = None,
    *,
    providers: str = "embedded",
    env: dict[str, str] | None = None,
    timeout_s: float = 180.0,
    log_path: Path | None = None,
) -> Iterator[RunningServer]:
    """Yield `url` itself, or a fresh server that we start, wait for, and stop.
    Its output goes to `log_path` (kept), or to a temporary file (deleted)."""
    if url:
        yield RunningServer(url, None)
        return
    port = free_port()
    full_env = child_env()
    full_env.update(provider_env(providers))
    full_env.update(env or {})
    full_env.setdefault("VOXLOOP_LOG_LEVEL", "WARNING")
    full_env.setdefault("VOXLOOP_STORE__BACKEND", "memory")  # keep bench talk out of history
    # Every simulated user comes from 127.0.0.1: the per-IP limits would lump them together.
    for name, value in BENCH_LIMITS.items():
        full_env.setdefault(f"VOXLOOP_LIMITS__{name}", value)
    log = log_path or Path(tempfile.mkstemp(prefix="voxloop-bench-", suffix=".log")[1])
    with log.open("w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "voxloop", "serve", "--port", str(port)],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=full_env,
        )
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"the server exited early: {log.read_text()[-2000:]}")
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1)
                break
            except OSError:
                if time.monotonic() > deadline:
                    tail = log.read_text()[-2000:]
                    raise RuntimeError(f"the server did not get ready: {tail}") from None
                time.sleep(0.3)
        yield RunningServer(f"ws://127.0.0.1:{port}/ws", proc.pid, port)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
        if log_path is None:
            log.unlink(missing_ok=True)
