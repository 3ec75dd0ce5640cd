"""What was said, turn by turn, and how it becomes the LLM's messages.

An assistant reply is stored as the user actually heard it: an interrupted reply keeps
only the words that were played, and the turn is marked `interrupted`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from voxloop.providers.base import Message


@dataclass
class TurnRecord:
    turn_id: int
    user: str
    assistant: str = ""
    interrupted: bool = False
    metrics: dict[str, float | bool | None] = field(default_factory=dict)


@dataclass
class History:
    turns: list[TurnRecord] = field(default_factory=list)
    max_turns: int = 20  # a simple window; the memory milestone replaces it with a token budget

    def add(self, record: TurnRecord) -> None:
        self.turns.append(record)

    def clear(self) -> None:
        self.turns.clear()

    def messages(self, system_prompt: str, user_text: str) -> list[Message]:
        out = [Message("system", system_prompt)]
        for turn in self.turns[-self.max_turns :]:
            if turn.user:
                out.append(Message("user", turn.user))
            if turn.assistant:
                out.append(Message("assistant", turn.assistant))
        out.append(Message("user", user_text))
        return out
