"""What was said, turn by turn, and how much of it the LLM sees.

An assistant reply is stored as the user actually heard it: an interrupted reply keeps
only the words that were played, and the turn is marked `interrupted`. The LLM sees the
most recent turns that fit `budget_tokens`; turns that fall out of that window are folded
into a running summary by the LLM itself, in the background (`summarize`), so long
conversations neither overflow the context nor forget their start.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from voxloop.providers.base import LLMProvider, Message
from voxloop.store.base import TurnRecord


def estimate_tokens(text: str) -> int:
    """About four characters a token for English, plus the message framing."""
    return len(text) // 4 + 4


@dataclass
class History:
    turns: list[TurnRecord] = field(default_factory=list)
    budget_tokens: int = 1200
    summary: str = ""
    summarized_upto: int = 0  # turn_id of the last turn the summary covers
    cleared_upto: int = 0  # turns up to this turn_id were reset away: not part of memory

    def add(self, record: TurnRecord) -> None:
        self.turns.append(record)

    def clear(self) -> None:
        """Start afresh (the `reset` message): forget the turns and the summary."""
        if self.turns:
            self.cleared_upto = max(self.cleared_upto, self.turns[-1].turn_id)
        self.turns.clear()
        self.summary = ""
        self.summarized_upto = self.cleared_upto

    def _live(self) -> list[TurnRecord]:
        return [t for t in self.turns if t.turn_id > self.cleared_upto]

    def window(self) -> list[TurnRecord]:
        """The most recent turns whose text fits the token budget."""
        out: list[TurnRecord] = []
        used = 0
        for turn in reversed(self._live()):
            cost = estimate_tokens(turn.user) + estimate_tokens(turn.assistant)
            if used + cost > self.budget_tokens:
                break
            out.append(turn)
            used += cost
        out.reverse()
        return out

    def overflow(self) -> list[TurnRecord]:
        """Turns outside the window that the summary does not cover yet."""
        window = self.window()
        first_kept = window[0].turn_id if window else float("inf")
        return [t for t in self._live() if self.summarized_upto < t.turn_id < first_kept]

    def messages(self, system_prompt: str, user_text: str) -> list[Message]:
        out = [Message("system", system_prompt)]
        for turn in self.window():
            if turn.user:
                out.append(Message("user", turn.user))
            if turn.assistant:
                out.append(Message("assistant", turn.assistant))
        if user_text:
            out.append(Message("user", user_text))
        return out


SUMMARY_PROMPT = (
    "You keep short notes of a spoken conversation between a user and an assistant. "
    "Update the notes with the new turns. Keep facts about the user, their requests and "
    "what was agreed. At most four sentences, plain text."
)


async def summarize(
    llm: LLMProvider, previous: str, turns: list[TurnRecord], *, max_tokens: int = 160
) -> str:
    """The running summary, extended by `turns` (a reply cut short is marked as such)."""
    lines = []
    for t in turns:
        if t.user:
            lines.append(f"User: {t.user}")
        if t.assistant:
            cut = " (interrupted)" if t.interrupted else ""
            lines.append(f"Assistant{cut}: {t.assistant}")
    notes = previous or "(none yet)"
    prompt = f"Notes so far: {notes}\n\nNew turns:\n" + "\n".join(lines)
    messages = [Message("system", SUMMARY_PROMPT), Message("user", prompt)]
    text = ""
    async for delta in llm.generate(messages, max_tokens=max_tokens, temperature=0.0):
        text += delta
    return text.strip()
