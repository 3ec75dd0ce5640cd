"""Provider contracts: one small base class per stage, one streaming method each.

The contracts are deliberately tiny so that every provider, local or cloud, is trivial to
fake. Audio going *into* a model is float32 mono in [-1, 1] at the provider's
`sample_rate`; audio coming *out* of TTS is int16 PCM (`AudioChunk`). No vendor type
crosses these signatures. The end-of-turn judge is the one stage that does not stream: it
answers one question (is the turn over?) per pause.

Every streaming method is an async generator. Closing it (or cancelling the task that
iterates it) must stop the underlying work promptly, not merely drop its output.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import AsyncIterable, AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, ClassVar, Literal, Self

import numpy as np

if TYPE_CHECKING:
    from voxloop.config.settings import Settings


@dataclass(frozen=True)
class Capabilities:
    """What a provider can do, so the pipeline can adapt instead of guessing."""

    streaming_input: bool = False  # consumes audio/text incrementally
    streaming_output: bool = True  # yields results before the whole input is processed
    partials: bool = False  # STT: emits interim transcripts
    local: bool = True  # runs in-process, no network
    tools: bool = False  # LLM: function calling


@dataclass(frozen=True)
class ProviderInfo:
    """What `voxloop doctor` shows for a loaded provider."""

    name: str
    model: str
    size_bytes: int | None = None
    source: str = ""


@dataclass(frozen=True)
class VADFrame:
    """Speech probability for one fixed-size frame of input audio."""

    start_s: float  # offset of the frame within the stream
    duration_s: float
    probability: float
    is_speech: bool


@dataclass(frozen=True)
class Segment:
    start_s: float
    end_s: float
    text: str


@dataclass(frozen=True)
class Transcript:
    text: str
    is_final: bool
    segments: tuple[Segment, ...] = ()
    language: str | None = None


@dataclass(frozen=True)
class Message:
    role: Literal["system", "user", "assistant", "tool"]
    content: str
    tool_calls: tuple[ToolCall, ...] = ()  # an assistant message that asked for tools
    tool_call_id: str | None = None  # a tool message: the result of this call


@dataclass(frozen=True)
class ToolCall:
    """The LLM asks for a tool: `arguments` is the JSON text of its arguments."""

    id: str
    name: str
    arguments: str


@dataclass(frozen=True)
class ToolSpec:
    """A tool as the LLM sees it: a JSON-schema `parameters` object."""

    name: str
    description: str
    parameters: dict


def function_schema(tool: ToolSpec) -> dict:
    """The tool in the OpenAI-style `{"type": "function", ...}` shape, which
    OpenAI-compatible servers and llama.cpp's chat templates both read."""
    return {
        "type": "function",
        "function": {
            "name": tool.name,
            "description": tool.description,
            "parameters": tool.parameters,
        },
    }


@dataclass(frozen=True)
class AudioChunk:
    """int16 mono PCM plus its rate; the unit TTS streams out."""

    pcm: np.ndarray = field(repr=False)
    sample_rate: int

    @property
    def duration_s(self) -> float:
        return len(self.pcm) / self.sample_rate

    def to_bytes(self) -> bytes:
        return self.pcm.astype("<i2", copy=False).tobytes()


class Provider(ABC):
    """Shared by every stage. Instances are built once per process and shared by sessions."""

    name: ClassVar[str] = "provider"
    capabilities: ClassVar[Capabilities] = Capabilities()

    @classmethod
    def from_settings(cls, settings: Settings) -> Self:
        """Build (and load) the provider from the settings tree. Called once per process."""
        return cls()

    @abstractmethod
    def info(self) -> ProviderInfo:
        """Describe the loaded model; must not do heavy work."""

    async def warmup(self) -> None:  # noqa: B027 - optional hook, empty by default
        """Run one tiny inference so the first real request is not the slow one."""

    def close(self) -> None:  # noqa: B027 - optional hook, empty by default
        """Release resources (threads, files) when the process shuts down."""


class VADProvider(Provider):
    sample_rate: int = 16000
    frame_samples: int = 512

    @abstractmethod
    def detect(self, audio: AsyncIterable[np.ndarray]) -> AsyncIterator[VADFrame]:
        """Yield one `VADFrame` per `frame_samples` of input. State lives in the generator."""


class STTProvider(Provider):
    sample_rate: int = 16000

    @abstractmethod
    def transcribe(self, audio: AsyncIterable[np.ndarray]) -> AsyncIterator[Transcript]:
        """Yield partial transcripts (if capable) and exactly one final one at the end."""


class LLMProvider(Provider):
    @abstractmethod
    def generate(
        self,
        messages: Sequence[Message],
        *,
        max_tokens: int | None = None,
        temperature: float | None = None,
    ) -> AsyncIterator[str]:
        """Yield text deltas of the assistant's reply."""

    def generate_with_tools(
        self,
        messages: Sequence[Message],
        tools: Sequence[ToolSpec],
        *,
        max_tokens: int | None = None,
        temperature: float | None = None,
    ) -> AsyncIterator[str | ToolCall]:
        """Like `generate`, and may also yield `ToolCall`s (then the caller runs them and
        asks again with their results). Only where `capabilities.tools` is set."""
        raise NotImplementedError(f"{self.name} cannot call tools")

    def expect_system_prompt(self, prompt: str) -> None:
        """The system prompt most turns will start with (the default persona's), given
        before `warmup`: an LLM that caches prompt prefixes evaluates it there."""

    async def conversations(self) -> int | None:
        """How many conversations this model can answer at once in real time on this
        machine, measured once it is warm; None: not bounded by this process (a remote
        service, a fake). The server admits no more than that."""
        return None


class TTSProvider(Provider):
    sample_rate: int = 22050

    @abstractmethod
    def synthesize(self, text: str) -> AsyncIterator[AudioChunk]:
        """Yield audio for `text` as soon as each piece is ready."""


class TurnJudgeProvider(Provider):
    """Judges from the sound of an utterance (intonation, rhythm) whether the speaker is
    done, so a pause after a finished sentence can end the turn sooner than one mid-phrase."""

    sample_rate: int = 16000
    window_s: float = 8.0  # how much of the utterance's end it reads

    @abstractmethod
    async def complete_probability(self, audio: np.ndarray) -> float:
        """P(the turn is complete), in [0, 1], for float32 mono audio at `sample_rate`:
        the utterance so far, including the short silence after it."""


def tools_as_text(messages: Sequence[Message]) -> list[Message]:
    """The conversation for an LLM that cannot read tool messages: each tool result becomes
    a short user note naming the tool, and the bare tool requests are dropped."""
    names = {c.id: c.name for m in messages for c in m.tool_calls}
    out: list[Message] = []
    for m in messages:
        if m.role == "tool":
            name = names.get(m.tool_call_id or "", "a")
            note = f"(The {name} tool returned: {m.content}. Answer the question with it.)"
            out.append(Message("user", note))
        elif m.tool_calls:
            if m.content:
                out.append(Message(m.role, m.content))
        else:
            out.append(m)
    return out


async def one_shot(audio: np.ndarray) -> AsyncIterator[np.ndarray]:
    """Adapt a whole buffer to the streaming audio contract."""
    yield audio


def checked_transcript(result: object) -> Transcript:
    """An STT result as the contract has it, or a clear error: a broken STT's output must
    fail as an STT error, not later (a reply to `None`, an event that is not JSON)."""
    if not isinstance(result, Transcript):
        raise TypeError(f"the STT gave a {type(result).__name__}, not a Transcript")
    if not isinstance(result.text, str):
        raise TypeError(f"the STT gave {type(result.text).__name__} text, not str")
    return result


async def transcribe_all(stt: STTProvider, audio: np.ndarray) -> Transcript:
    """Run a streaming STT over a whole buffer and return its final transcript."""
    final: Transcript | None = None
    async for result in stt.transcribe(one_shot(audio)):
        if checked_transcript(result).is_final:
            final = result
    if final is None:
        raise RuntimeError(f"STT provider {stt.name!r} ended without a final transcript")
    return final
