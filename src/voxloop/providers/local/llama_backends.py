"""The llama.cpp CPU backend that suits this CPU, chosen when the process starts.

The Makefile builds llama.cpp once with every x86-64 CPU variant (`GGML_BACKEND_DL`,
`GGML_CPU_ALL_VARIANTS`): haswell (AVX2) up to sapphirerapids (AVX-512, VNNI, AMX), each
a `libggml-cpu-<variant>.so`. Each variant scores itself against this CPU (0: it cannot
run here), so a wheel built on one machine runs at full speed on another and never meets
an instruction its CPU lacks. llama-cpp-python does not ask ggml to load one, so we do,
before the first model.

We do not take ggml's own pick on a CPU with AMX. Measured on a 2-core Xeon with AMX
(docs/models.md): the AMX variant reads a prompt faster (132 against 88 tokens/s) but
decodes a token far slower (106 against 66 ms a step), and a voice reply is mostly
decoding. So "auto" is the best-scoring variant without AMX; `llm.cpu_backend` names
another. A build with one CPU backend linked in (the portable build of earlier
versions) has it registered already, and is left alone.
"""

from __future__ import annotations

import ctypes
import threading
from pathlib import Path

from voxloop.errors import ProviderError

REBUILD = "rm -rf ~/.cache/voxloop/wheels && make install"
AMX = "sapphirerapids"  # the variant that uses AMX (and is skipped by "auto")

_lock = threading.Lock()
_loaded: str | None = None


def lib_dir() -> Path:
    import llama_cpp

    return Path(llama_cpp.__file__).parent / "lib"


def variants_dir() -> Path:
    """Where the wheel puts the variants: `bin/` beside the `llama_cpp` package (its CMake
    installs backends as runtime files), else beside libggml.so."""
    beside = lib_dir().parent.parent / "bin"
    return beside if any(beside.glob("libggml-cpu-*.so")) else lib_dir()


def variant_path(name: str, folder: Path | None = None) -> Path:
    return (folder or variants_dir()) / f"libggml-cpu-{name}.so"


def variants(folder: Path | None = None) -> list[str]:
    """The CPU variants this build carries (empty: one CPU backend linked in)."""
    found = (folder or variants_dir()).glob("libggml-cpu-*.so")
    return sorted(p.name[len("libggml-cpu-") : -3] for p in found)


def scores(folder: Path | None = None) -> dict[str, int]:
    """How well each variant suits this CPU, as it says itself (0: it cannot run here).
    Opening a variant only runs its CPU check, which is how ggml itself chooses."""
    out = {}
    for name in variants(folder):
        try:
            lib = ctypes.CDLL(str(variant_path(name, folder)))
            lib.ggml_backend_score.restype = ctypes.c_int
            out[name] = int(lib.ggml_backend_score())
        except (OSError, AttributeError):
            out[name] = 0
    return out


def choose(wanted: str, scored: dict[str, int]) -> str | None:
    """The variant to load: `wanted` if it runs here, else for "auto" the best-scoring
    one other than AMX's (AMX's only if nothing else runs)."""
    runnable = {name: s for name, s in scored.items() if s > 0}
    if wanted != "auto":
        return wanted if wanted in runnable else None
    plain = {name: s for name, s in runnable.items() if name != AMX} or runnable
    return max(plain, key=lambda name: plain[name]) if plain else None


def load_cpu_backend(wanted: str = "auto") -> str:
    """Register a CPU backend for this CPU, once per process; its name ("linked" for a
    build with one CPU backend of its own). Raises ProviderError naming the folder and
    the variants if the one wanted cannot run here, or none can."""
    global _loaded
    with _lock:
        if _loaded is not None:
            return _loaded
        ggml = _ggml()
        ggml.ggml_backend_reg_count.restype = ctypes.c_size_t
        if ggml.ggml_backend_reg_count() > 0:
            _loaded = "linked"
            return _loaded
        folder = variants_dir()
        scored = scores(folder)
        name = choose(wanted, scored)
        if name is None:
            said = {n: "runs" if s else "not on this CPU" for n, s in scored.items()}
            listed = ", ".join(f"{n} ({what})" for n, what in said.items())
            raise ProviderError(
                f"llama.cpp has no CPU backend {wanted!r} that runs on this CPU in {folder} "
                f"(there: {listed or 'none'}); set llm.cpu_backend to one that runs, or "
                f"rebuild: {REBUILD}"
            )
        ggml.ggml_backend_load.argtypes = [ctypes.c_char_p]
        ggml.ggml_backend_load.restype = ctypes.c_void_p
        if not ggml.ggml_backend_load(str(variant_path(name, folder)).encode()):
            raise ProviderError(f"llama.cpp could not load its CPU backend {name} from {folder}")
        _loaded = name
        return _loaded


def _ggml() -> ctypes.CDLL:
    """libggml.so, as llama_cpp loaded it (the same handle: one backend registry)."""
    import llama_cpp  # noqa: F401

    return ctypes.CDLL(str(lib_dir() / "libggml.so"))
