"""Settings for what a reply may say: its spoken length, the guards on the LLM's text
(reply/spoken.py) and the safety replies (reply/safety.py). Kept apart from settings.py,
which holds the tree, so that each part stays small."""

from __future__ import annotations

from pydantic import BaseModel, Field

REFUSAL = (
    "Sorry, I can't help with that, because it could hurt someone. I'm happy to help with "
    "something else."
)
NO_ANSWER = "Okay. Tell me more, or ask me something about it."
CRISIS = (
    "I'm really sorry you're feeling this way, and I'm glad you told me. You don't have to "
    "face it alone. Please call or text 988, the Suicide and Crisis Lifeline in the US, or "
    "your local emergency number. Would you like to talk about it?"
)


class ReplySettings(BaseModel):
    """A spoken reply's budget and the guards that hold it, whatever the model writes."""

    max_spoken_s: float = Field(
        20.0, gt=0, le=3600, description="the longest reply, in seconds of speech"
    )
    long_spoken_s: float = Field(
        60.0,
        gt=0,
        le=3600,
        description="the longest reply when the user asks for more (a story, in detail)",
    )
    chars_per_s: float = Field(
        14.0, gt=0, le=100, description="the voice's speed, to turn the budget into text"
    )
    stop_loops: bool = Field(True, description="end a reply that starts repeating itself")
    drop_parrots: bool = Field(True, description="drop sentences that repeat the user's words")
    no_answer: str = Field(
        NO_ANSWER,
        description="said when every sentence the model wrote, twice, repeated the user's "
        'words; "" says nothing',
    )


class SafetySettings(BaseModel):
    """Fixed replies for requests for weapons, explosives, poisons or hard drugs, and for
    someone who says they may hurt themselves (safety.py)."""

    enabled: bool = True
    refusal: str = Field(REFUSAL, min_length=1, description="said instead of harmful help")
    crisis: str = Field(CRISIS, min_length=1, description="said to someone who may hurt themselves")
