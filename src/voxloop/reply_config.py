"""What a reply is told to do: its prompt, output rate, pacing, timeouts and guards. The
session builds one from the settings; `Reply` (pipeline.py) only reads it."""

from __future__ import annotations

from dataclasses import dataclass, field

from voxloop.safety import SafetyPolicy
from voxloop.spoken import SpokenGuards


@dataclass
class ReplyConfig:
    system_prompt: str
    output_sample_rate: int
    lead_s: float = 0.6
    synth_ahead: int = 2
    early_first_clause: bool = True
    max_tokens: int | None = None
    # The naive baseline: the whole LLM answer, then the whole TTS audio, then playback.
    sequential: bool = False
    apology: str | None = None  # said when the reply fails before any audio
    llm_timeout_s: float | None = None  # longest wait for a token (`stall_limit`)
    tts_timeout_s: float | None = None  # longest wait for a sentence's next audio
    filler: str | None = None  # said when tools take longer than `filler_after_s`
    filler_after_s: float = 0.6
    guards: SpokenGuards = field(default_factory=SpokenGuards)  # loops, length, parroting
    safety: SafetyPolicy | None = None  # a fixed reply instead of the LLM's (safety.py)
