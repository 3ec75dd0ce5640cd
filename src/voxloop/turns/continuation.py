"""A turn is not over until the agent has spoken: speech that resumes first continues it.

Someone reading aloud, or pausing for effect ("Ever tried. … Ever failed."), makes pauses
that sound complete to the end-of-turn judge and to the word rules alike. Ending the turn
there costs nothing as long as the agent has not said anything yet: if the user goes on
before the reply's first audio, the reply is withdrawn without a trace (no history, no
audio), the client is told (`turn_continued`), and the earlier words and audio are carried
into the new utterance, whose answer then covers everything that was said. Once the agent
has been heard, speech over it is a barge-in as before (overlap.py).
"""

from __future__ import annotations

from voxloop.config.turns import TurnSettings
from voxloop.hearing.listener import Listener
from voxloop.hearing.utterance import KEEP_AUDIO_S, MODEL_RATE, Carried, Utterance
from voxloop.turns.floor import Floor, Plumbing


def continues(
    *,
    enabled: bool,
    reply_audible: bool,
    voice_turn: bool,
    since_end_s: float,
    window_s: float,
) -> bool:
    """Does speech that starts now continue the turn that ended `since_end_s` ago?"""
    return enabled and voice_turn and not reply_audible and 0.0 <= since_end_s <= window_s


class Continuation:
    """The session's side of it: remember the turn being answered, and when the user goes
    on before its reply is heard, withdraw the reply and carry the turn into the new one."""

    def __init__(
        self,
        floor: Floor,
        plumbing: Plumbing,
        *,
        listener: Listener,
        turns: TurnSettings,
        sequential: bool = False,
    ) -> None:
        """`turns` is read at each use (`continuation`, `continuation_window_s`); the
        sequential baseline never continues a turn."""
        self.floor, self.io, self.listener = floor, plumbing, listener
        self.turns, self.sequential = turns, sequential
        self._answering: tuple[Carried, float] | None = None  # the voice turn being answered

    @staticmethod
    def carried(utt: Utterance, words: str) -> Carried:
        """`words`: the turn's whole text, any it carried itself included."""
        audio = utt.context_samples()[-int(KEEP_AUDIO_S * MODEL_RATE) :]
        return Carried(utt.turn_id, words, audio, utt.carried_speech_s() + utt.speech_s)

    def _continues(self, ended_at: float) -> bool:
        reply = self.floor.reply
        return continues(
            enabled=self.turns.continuation and not self.sequential,
            reply_audible=reply is not None and reply.audio_started,
            voice_turn=True,
            since_end_s=self.io.clock.now() - ended_at,
            window_s=self.turns.continuation_window_s,
        )

    async def _withdraw(self, turn_id: int, into: Utterance, carried: Carried) -> None:
        """Take back turn `turn_id`'s unheard reply; its words go on in `into`."""
        into.carried = carried  # first: its partials may come while the reply is cancelled
        await self.floor.withdraw(turn_id)
        self._answering = None
        self.io.say("turn_continued", turn_id, into=into.turn_id)

    async def continue_into(self, utt: Utterance) -> None:
        """New speech before the last turn's reply was heard: it continues that turn."""
        if self._answering is None:
            return
        carried, ended_at = self._answering
        reply = self.floor.reply
        if reply is None or reply.done or reply.turn_id != carried.turn_id:
            self._answering = None  # answered (or superseded) already
            return
        if self._continues(ended_at):
            await self._withdraw(carried.turn_id, utt, carried)

    async def went_on(self, utt: Utterance, text: str | None, ended_at: float) -> bool:
        """The turn's words are known; has the user gone on meanwhile? Then they belong to
        the utterance under way (and any reply already started for them is withdrawn).
        Otherwise they are remembered, in case the user goes on before the reply is heard."""
        reply = self.floor.reply
        adopted = reply.user_text if reply and reply.turn_id == utt.turn_id else None
        words = utt.joined(text) if text is not None else adopted  # None: the STT failed
        if not words or utt.overlap in ("pending", "dismissed"):
            return False
        carried = self.carried(utt, words)
        newer = self.listener.utterance
        if newer is None or newer is utt or newer.carried is not None:
            self._answering = (carried, ended_at)
            return False
        if not self._continues(ended_at):
            return False
        await self._withdraw(utt.turn_id, newer, carried)
        return True
