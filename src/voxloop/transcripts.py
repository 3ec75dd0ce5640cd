"""The end of a user's turn → its final words, within the STT's time limit.

The words come from the speculative transcription if one ran at the pause (and its reply
may then take the turn at once), else from the streaming STT of the utterance, else (the
sequential baseline) from one pass over the whole utterance. A hung STT must not leave
the turn unanswered for ever, and an absurd transcript is not answered.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from voxloop.metrics import TurnMetrics
from voxloop.providers.base import Transcript, transcribe_all
from voxloop.stalls import Stalled, deadline, stall_limit

if TYPE_CHECKING:
    from voxloop.listener import Utterance
    from voxloop.session import Session


class Transcripts:
    def __init__(self, session: Session) -> None:
        self.s = session

    async def final_text(self, utt: Utterance, metrics: TurnMetrics, ended_at: float) -> str | None:
        """The turn's words ("" for none), or None: nothing more to do (the speculative
        reply took the turn, or the STT failed and that was reported)."""
        s = self.s
        metrics.timeline.mark("turn_end", ended_at)
        spec = s.speculator.take(utt)
        if spec is not None and spec.task is not None:
            if not await self._in_time(spec.task):
                await spec.discard()
                await self._none(utt)
                return None
            if spec.transcript is not None and self._too_long(spec.transcript.text):
                await spec.discard()  # the ordinary path below refuses it, with a reason
            elif await s.speculator.adopt(spec, utt, metrics, ended_at):
                return None
        if utt.stt_task is not None:
            if not await self._in_time(utt.stt_task):
                await self._none(utt)
                return None
            final = utt.stt_task.result()
        else:  # sequential: the whole utterance at once
            final = await self._whole(utt)
        metrics.stt_final_ms = (s.clock.now() - ended_at) * 1000
        metrics.timeline.mark("transcript", s.clock.now())
        text = final.text.strip() if final else ""
        if self._too_long(text):
            limit = s.services.settings.limits.max_text_chars
            s.error(
                "stt_failed",
                f"speech recognition gave {len(text)} characters for one utterance, over "
                f"the {limit}-character limit (limits.max_text_chars); ignored",
                utt.turn_id,
            )
            text = ""
        return text

    def limit_s(self) -> float:
        stt = self.s.services.settings.stt
        return stall_limit(self.s.services.stt, stt.timeout_s, stt.retries)

    async def _whole(self, utt: Utterance) -> Transcript | None:
        try:
            async with deadline(self.s.clock, self.limit_s()):
                return await transcribe_all(self.s.services.stt, utt.samples())
        except Stalled:
            await self._none(utt)
        except Exception as exc:
            self.s.error("stt_failed", f"speech recognition failed: {exc}", utt.turn_id)
        return None

    async def _in_time(self, task: asyncio.Task) -> bool:
        """Wait for a transcription, from the end of the turn at most the STT's stall
        limit. On time out it is cancelled and False returned."""
        if task.done():  # as it mostly is after a speculation: `wait` would cost 2 loop turns
            return True
        try:
            async with deadline(self.s.clock, self.limit_s()):
                await asyncio.wait([task])
            return True
        except Stalled:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            return False

    async def _none(self, utt: Utterance) -> None:
        """The STT never finished: say so, and if the agent paused for this speech, let
        it carry on (its words will never come to decide otherwise)."""
        s = self.s
        if utt.stt_task is not None and not utt.stt_task.done():
            utt.stt_task.cancel()
            await asyncio.gather(utt.stt_task, return_exceptions=True)
        s.error(
            "stt_failed",
            f"speech recognition gave no transcript within {self.limit_s():g} s of the "
            "end of the turn",
            utt.turn_id,
        )
        if utt.overlap in ("pending", "dismissed"):
            # Its words were being checked over the agent's speech, by the same STT:
            # that check waits in vain too.
            checks = [t for t in s.tasks if t.get_name().startswith("overlap-")]
            for task in checks:
                task.cancel()
            await asyncio.gather(*checks, return_exceptions=True)
            if utt.overlap == "pending":
                await s.overlaps.settle(utt, "empty", "")

    def _too_long(self, text: object) -> bool:
        limit = self.s.services.settings.limits.max_text_chars
        return isinstance(text, str) and len(text) > limit
