"""Smoke-test the local LLM in a child process, so that a crash in native code is a message.

llama.cpp is C++ that pip compiles on the user's machine. A build that does not suit the
CPU (llama-cpp-python 0.3.36 built with native flags on a CPU with AMX, for one) dies with
SIGSEGV or SIGILL inside `llama_decode`: the whole process vanishes with nothing but
"Segmentation fault". One short generation in a child process first turns that into one
line naming the cause and the fix, while the parent (`voxloop doctor`, `voxloop serve`)
lives on to say so. Run as a module, this file is that child.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from voxloop.config.settings import Settings

TESTED_VERSION = "0.3.16"  # the llama-cpp-python version constraints.txt pins
# The Makefile's: every x86-64 variant of the CPU backend, the best loaded at run time.
PORTABLE_FLAGS = "-DGGML_NATIVE=OFF -DGGML_BACKEND_DL=ON -DGGML_CPU_ALL_VARIANTS=ON"
FIX = (
    "rebuild it portably: CMAKE_ARGS='{flags}' pip install --force-reinstall --no-cache-dir "
    "--no-deps 'llama-cpp-python=={version}' (what `make install` does; see docs/models.md)"
)


@dataclass(frozen=True)
class ProbeResult:
    ok: bool
    message: str  # one line: the reply, or what went wrong and how to fix it
    seconds: float = 0.0


Probe = Callable[["Settings"], ProbeResult | None]  # probe_configured, or a test's stand-in


def probe_llm(
    model_path: Path,
    *,
    threads: int = 2,
    cpu_backend: str = "auto",
    timeout_s: float = 180.0,
    command: Sequence[str] | None = None,
) -> ProbeResult:
    """Load `model_path` in a child and generate a few tokens. `command` replaces the child
    (tests use one that crashes the way a bad native build does)."""
    argv = list(command or [sys.executable, "-m", "voxloop.providers.local.llm_probe"])
    request = json.dumps(
        {"model_path": str(model_path), "threads": threads, "cpu_backend": cpu_backend}
    )
    started = time.perf_counter()
    try:
        done = subprocess.run(
            argv, input=request, capture_output=True, text=True, timeout=timeout_s, check=False
        )
    except subprocess.TimeoutExpired:
        return ProbeResult(
            False, f"the LLM engine gave no answer within {timeout_s:.0f} s in a smoke test"
        )
    except OSError as exc:
        return ProbeResult(False, f"cannot start the LLM smoke test: {exc}")
    seconds = time.perf_counter() - started
    lines = _json_lines(done.stdout)
    if done.returncode < 0:
        engine = next((line for line in lines if "engine" in line), {})
        return ProbeResult(False, crash_message(-done.returncode, engine), seconds)
    answer = next((line for line in reversed(lines) if "reply" in line or "error" in line), None)
    if answer is None:
        tail = (done.stderr.strip().splitlines() or ["no output"])[-1]
        return ProbeResult(
            False, f"the LLM smoke test failed (exit {done.returncode}): {tail}", seconds
        )
    if "error" in answer:
        return ProbeResult(False, str(answer["error"]), seconds)
    reply = " ".join(str(answer["reply"]).split())
    if not reply:
        return ProbeResult(False, "the LLM answered a smoke test with nothing", seconds)
    return ProbeResult(True, reply, seconds)


def probe_configured(settings: Settings) -> ProbeResult | None:
    """Probe the local LLM if the settings use it (as the provider or a fallback); None if
    they do not. A missing or corrupt model file raises `ModelFileError`, as loading would."""
    s = settings.llm
    if "llama" not in (s.provider, *s.fallback):
        return None
    from voxloop.providers.local.llama_llm import model_file

    path, _ = model_file(settings)
    return probe_llm(path, threads=s.threads, cpu_backend=s.cpu_backend)


def _json_lines(text: str) -> list[dict[str, Any]]:
    out = []
    for line in text.splitlines():
        try:
            value = json.loads(line)
        except ValueError:
            continue
        if isinstance(value, dict):
            out.append(value)
    return out


def crash_message(signum: int, engine: dict[str, Any] | None = None) -> str:
    """The one line for a child killed by `signum`: the cause and the fix. `engine` is what
    the child said of itself before it died (its version and the CPU features it uses)."""
    try:
        name = signal.Signals(signum).name
    except ValueError:
        name = f"signal {signum}"
    if signum == signal.SIGKILL:  # the out-of-memory killer, or a person: not the build
        return f"the LLM smoke test was killed ({name}); out of memory? The model needs about 1 GB"
    engine = engine or {}
    version = engine.get("engine") or _engine_version()
    cause = f"the LLM engine (llama-cpp-python {version}) crashed with {name} in native code"
    if "AMX_INT8 = 1" in str(engine.get("cpu_features", "")):
        cause += " in a build that uses AMX, where 0.3.36 built natively crashes"
    elif _cpu_has_amx():
        cause += " on this CPU with AMX, where native builds of llama-cpp-python 0.3.36 crash"
    fix = FIX.format(flags=PORTABLE_FLAGS, version=TESTED_VERSION)
    return f"{cause}; {fix}"


def _engine_version() -> str:
    try:
        return metadata.version("llama-cpp-python")
    except metadata.PackageNotFoundError:
        return "not installed"


def _cpu_has_amx(cpuinfo: Path = Path("/proc/cpuinfo")) -> bool:
    try:
        return "amx_tile" in cpuinfo.read_text()
    except OSError:
        return False


def _child() -> None:
    """Read {"model_path", "threads", "cpu_backend"} on stdin, print {"reply"} or
    {"error"} on stdout."""
    request = json.loads(sys.stdin.read())
    try:
        import llama_cpp

        from voxloop.providers.local.llama_backends import load_cpu_backend

        backend = load_cpu_backend(request.get("cpu_backend", "auto"))
        # Said first, so that the parent knows what it ran even if the next step kills us.
        features = llama_cpp.llama_print_system_info().decode(errors="replace")
        said = {"engine": llama_cpp.__version__, "cpu_features": features, "backend": backend}
        print(json.dumps(said), flush=True)
        llm = llama_cpp.Llama(
            model_path=request["model_path"],
            n_ctx=256,
            n_threads=request["threads"],
            n_threads_batch=request["threads"],
            verbose=False,
        )
        out = llm.create_chat_completion(
            messages=[{"role": "user", "content": "Say OK."}], max_tokens=4, temperature=0.0
        )
        reply = out["choices"][0]["message"]["content"] or ""
    except Exception as exc:  # a Python-level failure: report it, the parent explains
        print(json.dumps({"error": f"the LLM engine failed a smoke test: {exc}"}))
        return
    print(json.dumps({"reply": reply}))


if __name__ == "__main__":
    _child()
