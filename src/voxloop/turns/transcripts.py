"""The end of a user's turn → its final words, within the STT's time limit.

The words come from the speculative transcription if one ran at the pause (and its reply
may then take the turn at once), else from the streaming STT of the utterance, else (the
sequential baseline) from one pass over the whole utterance. A hung STT must not leave
the turn unanswered for ever, and an absurd transcript is not answered.
"""

from __future__ import annotations

import asyncio

from voxloop.config.models import STTSettings
from voxloop.config.server import LimitSettings
from voxloop.hearing.utterance import Utterance
from voxloop.providers.base import Transcript, transcribe_all
from voxloop.providers.stalls import Stalled, deadline, stall_limit
from voxloop.telemetry.metrics import TurnMetrics
from voxloop.turns.floor import Models, Plumbing
from voxloop.turns.overlap import Overlaps
from voxloop.turns.speculation import Speculator


class Transcripts:
    def __init__(
        self,
        plumbing: Plumbing,
        *,
        models: Models,
        stt: STTSettings,
        limits: LimitSettings,
        speculator: Speculator,
        overlaps: Overlaps,
    ) -> None:
        """`stt`: its timeout and retries, which make the longest wait for it after the end
        of the turn; `limits.max_text_chars`: the longest transcript answered. Both are
        read at each turn."""
        self.io, self.models, self.stt, self.limits = plumbing, models, stt, limits
        self.speculator, self.overlaps = speculator, overlaps

    async def final_text(self, utt: Utterance, metrics: TurnMetrics, ended_at: float) -> str | None:
        """The turn's words ("" for none), or None: nothing more to do (the speculative
        reply took the turn, or the STT failed and that was reported)."""
        clock = self.io.clock
        metrics.timeline.mark("turn_end", ended_at)
        spec = self.speculator.take(utt)
        streamed = utt.stt_task
        if spec is not None and spec.task is not None:
            # The speculation made at this last pause decoded all the speech there is: the
            # streaming STT's final decode of the same audio would only queue on the shared
            # model ahead of other sessions' transcripts. If the speculation fails, the
            # utterance is transcribed whole below.
            if streamed is not None and not streamed.done():
                streamed.cancel()
                await asyncio.gather(streamed, return_exceptions=True)
                streamed = None
            if not await self._in_time(spec.task):
                await spec.discard()
                await self._none(utt)
                return None
            if spec.transcript is not None and self._too_long(spec.transcript.text):
                await spec.discard()  # the ordinary path below refuses it, with a reason
            elif await self.speculator.adopt(spec, utt, metrics, ended_at):
                return None
        if streamed is not None:
            if not await self._in_time(streamed):
                await self._none(utt)
                return None
            final = streamed.result()
        else:  # sequential, or the speculation failed: the whole utterance at once
            final = await self._whole(utt)
        metrics.stt_final_ms = (clock.now() - ended_at) * 1000
        metrics.timeline.mark("transcript", clock.now())
        text = final.text.strip() if final else ""
        if self._too_long(text):
            self.io.error(
                "stt_failed",
                f"speech recognition gave {len(text)} characters for one utterance, over "
                f"the {self.max_chars}-character limit (limits.max_text_chars); ignored",
                utt.turn_id,
            )
            text = ""
        return text

    @property
    def limit_s(self) -> float:
        return stall_limit(self.models.stt, self.stt.timeout_s, self.stt.retries)

    async def _whole(self, utt: Utterance) -> Transcript | None:
        try:
            async with deadline(self.io.clock, self.limit_s):
                return await transcribe_all(self.models.stt, utt.samples())
        except Stalled:
            await self._none(utt)
        except Exception as exc:
            self.io.error("stt_failed", f"speech recognition failed: {exc}", utt.turn_id)
        return None

    async def _in_time(self, task: asyncio.Task) -> bool:
        """Wait for a transcription, from the end of the turn at most the STT's stall
        limit. On time out it is cancelled and False returned."""
        if task.done():  # as it mostly is after a speculation: `wait` would cost 2 loop turns
            return True
        try:
            async with deadline(self.io.clock, self.limit_s):
                await asyncio.wait([task])
            return True
        except Stalled:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            return False

    async def _none(self, utt: Utterance) -> None:
        """The STT never finished: say so, and if the agent paused for this speech, let
        it carry on (its words will never come to decide otherwise)."""
        if utt.stt_task is not None and not utt.stt_task.done():
            utt.stt_task.cancel()
            await asyncio.gather(utt.stt_task, return_exceptions=True)
        self.io.error(
            "stt_failed",
            f"speech recognition gave no transcript within {self.limit_s:g} s of the "
            "end of the turn",
            utt.turn_id,
        )
        if utt.overlap in ("pending", "dismissed"):
            await self.overlaps.abandon(utt)

    @property
    def max_chars(self) -> int:
        return self.limits.max_text_chars

    def _too_long(self, text: object) -> bool:
        return isinstance(text, str) and len(text) > self.max_chars
