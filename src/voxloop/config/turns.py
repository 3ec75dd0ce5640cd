"""The turn-taking part of the settings tree (`VOXLOOP_TURNS__*`): when a turn ends, what
speech over the agent does, speculation and continuation."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field


class TurnSettings(BaseModel):
    end_of_turn_silence_s: float = Field(
        0.5, ge=0.1, le=5.0, description="silence after speech that ends the user's turn"
    )
    min_speech_s: float = Field(0.15, ge=0.0, le=2.0, description="shortest speech that counts")
    barge_in: bool = Field(True, description="let the user interrupt the agent by talking")
    barge_in_min_speech_s: float = Field(
        0.15,
        ge=0.0,
        le=3.0,
        description="speech over the agent that stops its audio (see turns.interruption)",
    )
    interruption: Literal["words", "vad"] = Field(
        "words",
        description="words: the agent pauses at once when the user speaks over it, and "
        "stops only for a word that is neither a backchannel nor its own echo (otherwise "
        "it resumes); vad: any speech stops it",
    )
    interruption_words_after_s: float = Field(
        0.0,
        ge=0.0,
        le=3.0,
        description="speech heard over the agent before its words are first checked "
        "(sooner if the user stops); 0: at once. More misreads less, but the agent stays "
        "paused longer for a backchannel and a real interruption is cancelled later",
    )
    interruption_check_s: float = Field(
        0.25, ge=0.05, le=2.0, description="how often paused-for speech is transcribed"
    )
    false_interruption_timeout_s: float = Field(
        1.5,
        ge=0.1,
        le=10.0,
        description="the agent resumes if speech over it yields no words for this long",
    )
    preroll_s: float = Field(0.3, ge=0.0, le=2.0, description="audio kept before speech start")
    echo_suppression: bool = Field(
        False,
        description="ignore microphone sound that the agent's own recent audio explains "
        "(speakerphone echo), so the agent does not interrupt itself. Off by default: "
        "on the live server it still slows genuine barge-in (docs/benchmarks.md)",
    )
    unfinished_silence_s: float = Field(
        1.2,
        ge=0.1,
        le=5.0,
        description="end-of-turn silence when the words so far sound unfinished "
        '("a table for...", a number being read out)',
    )
    question_silence_s: float = Field(
        0.35,
        ge=0.1,
        le=5.0,
        description="end-of-turn silence after a complete question (it ends sooner)",
    )
    finished_silence_s: float = Field(
        0.4,
        ge=0.1,
        le=5.0,
        description="end-of-turn silence after a complete-sounding statement",
    )
    speculative_silence_s: float = Field(
        0.15,
        ge=0.0,
        le=5.0,
        description="pause after which the reply is prepared (and held back) in case the "
        "turn is over; 0 turns speculation off",
    )
    end_of_turn: Literal["silence", "words", "judge", "combined"] = Field(
        "combined",
        description="how a pause becomes the end of the turn (turns/endpoint.py): silence "
        "(a fixed end_of_turn_silence_s), words (the word rules), judge (the learned "
        "end-of-turn model, turn_judge) or combined (the model, vetoed by unfinished words, "
        "with complete questions ending soon)",
    )
    complete_probability: float = Field(
        0.5,
        ge=0.0,
        le=1.0,
        description="the end-of-turn model's probability at which the turn is over at once",
    )
    max_silence_s: float = Field(
        1.0,
        ge=0.2,
        le=5.0,
        description="judge and combined: the silence that ends any turn the model and the "
        "words did not end sooner",
    )
    long_speech_s: float = Field(
        6.0,
        ge=0.5,
        le=60.0,
        description="combined: after this much speech in one utterance the user is reading "
        "or telling something, and only long_silence_s (or a question) ends the turn",
    )
    long_silence_s: float = Field(
        1.2, ge=0.2, le=5.0, description="combined: the silence that ends a long utterance"
    )
    continuation: bool = Field(
        True,
        description="speech that starts before the agent's reply is heard continues the "
        "turn: the reply is withdrawn and the words are answered together (turn_continued)",
    )
    continuation_window_s: float = Field(
        2.5,
        ge=0.0,
        le=10.0,
        description="continuation: the latest start, after the turn ended, that still "
        "continues it (if the agent has not spoken by then)",
    )
