"""Which of the build's CPU variants runs the LLM (providers/local/llama_backends.py).

The wheel carries the CPU backend built for each x86-64 level; each variant scores itself
against the CPU (0: it cannot run here). "auto" takes the best that runs, except AMX's,
which decodes slower than AVX-512 on the machine we measured; a name takes that one.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from voxloop.errors import ProviderError
from voxloop.providers.local import llama_backends
from voxloop.providers.local.llama_backends import AMX, choose

# The scores a Sapphire Rapids Xeon's variants give themselves (measured here).
XEON = {
    "alderlake": 128,
    "haswell": 64,
    "icelake": 1472,
    "sandybridge": 21,
    "sapphirerapids": 4032,
    "skylakex": 192,
    "sse42": 5,
    "x64": 1,
}
ZEN3 = {**XEON, "icelake": 0, "sapphirerapids": 0, "skylakex": 0, "alderlake": 0}


def test_auto_takes_the_best_variant_short_of_amx():
    assert choose("auto", XEON) == "icelake"
    assert choose("auto", ZEN3) == "haswell"  # AVX2, no AVX-512


def test_amx_only_when_asked_or_when_nothing_else_runs():
    assert choose(AMX, XEON) == AMX
    assert choose("auto", {AMX: 10, "x64": 0}) == AMX


def test_a_variant_this_cpu_cannot_run_is_not_chosen():
    assert choose("icelake", ZEN3) is None
    assert choose("nosuch", XEON) is None
    assert choose("auto", {"x64": 0}) is None


def test_a_wanted_variant_that_cannot_run_is_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.setattr(llama_backends, "_loaded", None)
    monkeypatch.setattr(llama_backends, "_ggml", lambda: _NoBackendYet())
    monkeypatch.setattr(llama_backends, "variants_dir", lambda: tmp_path)
    monkeypatch.setattr(llama_backends, "scores", lambda folder=None: ZEN3)
    with pytest.raises(ProviderError) as err:
        llama_backends.load_cpu_backend("icelake")
    message = str(err.value)
    assert "no CPU backend 'icelake' that runs on this CPU" in message
    assert "icelake (not on this CPU)" in message and "haswell (runs)" in message
    assert "llm.cpu_backend" in message
    assert llama_backends._loaded is None  # nothing was loaded: a corrected setting may


class _NoBackendYet:
    """libggml.so of a build with variants, before one is loaded."""

    def __init__(self) -> None:
        self.ggml_backend_reg_count = lambda: 0
        self.ggml_backend_load = lambda path: None


def test_the_installed_engine_runs_on_a_backend_this_cpu_runs():
    """In a child (a backend, once loaded, stays): what the default build gives on this
    machine. With variants, one of them, never AMX's by default; else the linked one."""
    pytest.importorskip("llama_cpp")
    code = (
        "from voxloop.providers.local import llama_backends as b\n"
        "print(b.load_cpu_backend(), ','.join(b.variants()))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    chosen, _, found = done.stdout.split("\n")[-2].partition(" ")
    names = found.split(",") if found else []
    if names:
        assert chosen in names and chosen != AMX
    else:
        assert chosen == "linked"
