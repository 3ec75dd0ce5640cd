"""What a reply is told to do: its prompt, output rate, pacing, timeouts and guards. The
session builds one from the settings (`for_session`); `Reply` (pipeline.py) only reads it."""

from __future__ import annotations

from dataclasses import dataclass, field

from voxloop.config.settings import Settings
from voxloop.providers.base import LLMProvider, TTSProvider
from voxloop.providers.stalls import stall_limit
from voxloop.reply.safety import SafetyPolicy
from voxloop.reply.spoken import SpokenGuards


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
    llm_queue_timeout_s: float = 120.0  # longest wait in a shared LLM's queue
    hold_line: str | None = None  # said when the LLM's queue holds the reply `hold_after_s`
    hold_after_s: float = 2.0
    filler: str | None = None  # said when tools take longer than `filler_after_s`
    filler_after_s: float = 0.6
    guards: SpokenGuards = field(default_factory=SpokenGuards)  # loops, length, parroting
    safety: SafetyPolicy | None = None  # a fixed reply instead of the LLM's (safety.py)

    @classmethod
    def for_session(
        cls,
        settings: Settings,
        *,
        system_prompt: str,
        output_sample_rate: int,
        sequential: bool,
        llm: LLMProvider,
        tts: TTSProvider,
    ) -> ReplyConfig:
        """A live session's reply, as the settings describe it."""
        session, s_llm, s_tts = settings.session, settings.llm, settings.tts
        return cls(
            system_prompt=system_prompt,
            output_sample_rate=output_sample_rate,
            lead_s=session.output_lead_s,
            synth_ahead=session.synth_ahead,
            early_first_clause=session.early_first_clause and not sequential,
            sequential=sequential,
            apology=session.apology or None,
            llm_timeout_s=stall_limit(llm, s_llm.timeout_s, s_llm.retries),
            llm_queue_timeout_s=session.llm_queue_timeout_s,
            hold_line=session.hold_line or None,
            hold_after_s=session.hold_line_after_s,
            tts_timeout_s=stall_limit(tts, s_tts.timeout_s, s_tts.retries),
            filler=settings.tools.filler or None,
            filler_after_s=settings.tools.filler_after_s,
            max_tokens=s_llm.max_tokens,  # the cap on a reply's length, for every LLM
            guards=SpokenGuards.from_settings(settings.reply),
            safety=SafetyPolicy.from_settings(settings.safety),
        )
