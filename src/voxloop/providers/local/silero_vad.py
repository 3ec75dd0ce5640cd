"""Silero VAD v6 through onnxruntime, using the ONNX file that faster-whisper ships.

No torch: the `silero-vad` PyPI package depends on it, so we load the ONNX graph directly.
The model is shared; each `detect()` stream keeps its own recurrent state and the last 64
samples of context, so sessions never disturb each other.

Inference is ~0.1 ms per 32 ms frame, so it runs inline on the event loop: hopping to a
thread would cost more than the work itself.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING, Self

import numpy as np

from voxloop.errors import ModelFileError
from voxloop.providers.base import Capabilities, ProviderInfo, VADFrame, VADProvider

if TYPE_CHECKING:
    from voxloop.config.settings import Settings

FRAME = 512  # samples at 16 kHz = 32 ms, what the model was trained on
CONTEXT = 64  # samples of the previous frame prepended to each input


def packaged_model_path() -> Path:
    import faster_whisper

    return Path(faster_whisper.__file__).parent / "assets" / "silero_vad_v6.onnx"


class SileroVAD(VADProvider):
    name = "silero"
    capabilities = Capabilities(streaming_input=True, streaming_output=True)
    sample_rate = 16000
    frame_samples = FRAME

    def __init__(self, model_path: Path | None = None, threshold: float = 0.5) -> None:
        import onnxruntime as ort

        self.model_path = Path(model_path) if model_path else packaged_model_path()
        if not self.model_path.is_file():
            raise ModelFileError(
                f"Silero VAD model not found at {self.model_path}; "
                "reinstall it with: pip install --force-reinstall 'faster-whisper==1.2.1'"
            )
        self.threshold = threshold
        opts = ort.SessionOptions()
        opts.inter_op_num_threads = 1
        opts.intra_op_num_threads = 1
        opts.log_severity_level = 4
        try:
            self._session = ort.InferenceSession(
                str(self.model_path), sess_options=opts, providers=["CPUExecutionProvider"]
            )
        except Exception as exc:  # onnxruntime raises its own exception types
            raise ModelFileError(
                f"cannot load Silero VAD from {self.model_path} ({exc}); reinstall it with: "
                "pip install --force-reinstall 'faster-whisper==1.2.1'"
            ) from None

    @classmethod
    def from_settings(cls, settings: Settings) -> Self:
        return cls(settings.vad.model_path, settings.vad.threshold)

    def info(self) -> ProviderInfo:
        return ProviderInfo(
            name=self.name,
            model="silero_vad_v6 (onnx)",
            size_bytes=self.model_path.stat().st_size,
            source="faster-whisper==1.2.1 assets",
        )

    def new_state(self) -> VADState:
        return VADState(self)

    async def detect(self, audio: AsyncIterable[np.ndarray]) -> AsyncIterator[VADFrame]:
        state = self.new_state()
        async for chunk in audio:
            for frame in state.push(chunk):
                yield frame

    def _infer(self, frame_with_context: np.ndarray, h: np.ndarray, c: np.ndarray):
        out, h, c = self._session.run(
            None, {"input": frame_with_context[np.newaxis, :], "h": h, "c": c}
        )
        return float(np.asarray(out).reshape(-1)[-1]), h, c

    async def warmup(self) -> None:
        state = self.new_state()
        state.push(np.zeros(FRAME, dtype=np.float32))


class VADState:
    """Per-stream recurrent state; also usable synchronously (the pipeline does)."""

    def __init__(self, vad: SileroVAD) -> None:
        self._vad = vad
        self._h = np.zeros((1, 1, 128), dtype=np.float32)
        self._c = np.zeros((1, 1, 128), dtype=np.float32)
        self._context = np.zeros(CONTEXT, dtype=np.float32)
        self._pending = np.zeros(0, dtype=np.float32)
        self._samples_done = 0

    def push(self, chunk: np.ndarray) -> list[VADFrame]:
        """Feed any number of samples; returns a frame result per complete 512 samples."""
        buf = np.concatenate([self._pending, chunk.astype(np.float32, copy=False)])
        frames: list[VADFrame] = []
        rate = self._vad.sample_rate
        n_full = len(buf) // FRAME
        for i in range(n_full):
            frame = buf[i * FRAME : (i + 1) * FRAME]
            prob, self._h, self._c = self._vad._infer(
                np.concatenate([self._context, frame]), self._h, self._c
            )
            self._context = frame[-CONTEXT:]
            frames.append(
                VADFrame(
                    start_s=self._samples_done / rate,
                    duration_s=FRAME / rate,
                    probability=prob,
                    is_speech=prob >= self._vad.threshold,
                )
            )
            self._samples_done += FRAME
        self._pending = buf[n_full * FRAME :]
        return frames
