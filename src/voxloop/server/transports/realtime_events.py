"""The OpenAI Realtime API's objects and event names, in both of its dialects.

The generally available API (the `openai` SDK's `client.realtime`) and the older beta
(`client.beta.realtime`, which sends `OpenAI-Beta: realtime=v1`) differ in a few event
names and in the shape of the session, response and item objects. This module builds them
for either dialect and reads a `session.update` in either shape, so realtime.py only
deals with the conversation. No web framework here: plain dicts in, JSON text frames out.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass, field
from typing import Any

from voxloop.server.transports.realtime_session import (
    RATE,
    RealtimeError,
    SessionConfig,
)

# GA name → beta name, for the events that were renamed at GA.
BETA_NAMES = {
    "response.output_audio.delta": "response.audio.delta",
    "response.output_audio.done": "response.audio.done",
    "response.output_audio_transcript.delta": "response.audio_transcript.delta",
    "response.output_audio_transcript.done": "response.audio_transcript.done",
}

# OpenAI's built-in voice names: accepted so that unmodified clients work; all of them
# speak with the server's own voice.
OPENAI_VOICES = frozenset(
    "alloy ash ballad coral echo sage shimmer verse marin cedar fable onyx nova".split()
)


def new_id(prefix: str) -> str:
    """An id in OpenAI's style (`item_…`, `resp_…`, `event_…`)."""
    return f"{prefix}_{secrets.token_hex(10)}"


def wants_beta(openai_beta_header: str, subprotocols: list[str]) -> bool:
    """Beta clients announce themselves: the SDK and servers with `OpenAI-Beta:
    realtime=v1`, browsers with the `openai-beta.realtime-v1` subprotocol."""
    return "realtime=v1" in openai_beta_header.replace(" ", "") or (
        "openai-beta.realtime-v1" in subprotocols
    )


# -- items and responses ---------------------------------------------------------------------


def user_item(
    item_id: str, *, text: str | None = None, transcript: str | None = None, status: str
) -> dict[str, Any]:
    """A user message: typed text, or audio (whose transcript may not be known yet)."""
    part = (
        {"type": "input_text", "text": text}
        if text is not None
        else {"type": "input_audio", "transcript": transcript}
    )
    return {
        "id": item_id,
        "object": "realtime.item",
        "type": "message",
        "role": "user",
        "status": status,
        "content": [part],
    }


def assistant_item(
    item_id: str, beta: bool, *, status: str, transcript: str | None = None
) -> dict[str, Any]:
    content = []
    if transcript is not None:
        content.append({"type": "audio" if beta else "output_audio", "transcript": transcript})
    return {
        "id": item_id,
        "object": "realtime.item",
        "type": "message",
        "role": "assistant",
        "status": status,
        "content": content,
    }


def usage_zero() -> dict[str, Any]:
    """Tokens are not counted: zeros, so that clients adding them up keep working."""
    return {
        "total_tokens": 0,
        "input_tokens": 0,
        "output_tokens": 0,
        "input_token_details": {"text_tokens": 0, "audio_tokens": 0, "cached_tokens": 0},
        "output_token_details": {"text_tokens": 0, "audio_tokens": 0},
    }


def response_object(
    response_id: str,
    beta: bool,
    cfg: SessionConfig,
    *,
    status: str,
    output: list[dict[str, Any]],
    status_details: dict[str, Any] | None = None,
    metadata: dict[str, Any] | None = None,
) -> dict[str, Any]:
    out: dict[str, Any] = {
        "object": "realtime.response",
        "id": response_id,
        "status": status,
        "status_details": status_details,
        "output": output,
        "conversation_id": "conv_" + cfg.id.removeprefix("sess_"),
        "metadata": metadata,
        "usage": usage_zero() if status != "in_progress" else None,
        "max_output_tokens": cfg.max_output_tokens,
    }
    if beta:
        out.update(
            modalities=["audio", "text"],
            voice=cfg.voice,
            output_audio_format="pcm16",
            temperature=cfg.temperature,
        )
    else:
        out.update(
            output_modalities=["audio"],
            audio={"output": {"format": {"type": "audio/pcm", "rate": RATE}, "voice": cfg.voice}},
        )
    return out


@dataclass
class Response:
    """One Realtime response: the reply of one native turn."""

    id: str = field(default_factory=lambda: new_id("resp"))
    item_id: str = field(default_factory=lambda: new_id("item"))
    announced: bool = False
    transcript: str = ""  # the transcript deltas so far
    cut: str | None = None  # the native tts_stop reason that ended it early
    error: dict[str, Any] | None = None
    metadata: dict[str, Any] | None = None
    previous_item: str | None = None  # the conversation item before its own

    def ids(self) -> dict[str, Any]:
        return {
            "response_id": self.id,
            "item_id": self.item_id,
            "output_index": 0,
            "content_index": 0,
        }


class Emitter:
    """Server events as text frames in the client's dialect. It also keeps the order of
    the conversation's items, for their `previous_item_id`."""

    def __init__(self, beta: bool) -> None:
        self.beta = beta
        self.last_item: str | None = None

    def event(self, kind: str, **fields: Any) -> str:
        if self.beta:
            kind = BETA_NAMES.get(kind, kind)
        return json.dumps({"type": kind, "event_id": new_id("event"), **fields})

    def error(self, exc: RealtimeError, client_event_id: str | None = None) -> str:
        error = {
            "type": exc.kind,
            "code": exc.code,
            "message": exc.message,
            "param": exc.param,
            "event_id": client_event_id,
        }
        return self.event("error", error=error)

    def item_added(self, item: dict[str, Any], *, done: bool) -> list[str]:
        """A new conversation item: beta `created`; GA `added` (and `done` if complete)."""
        previous, self.last_item = self.last_item, item["id"]
        if self.beta:
            return [self.event("conversation.item.created", previous_item_id=previous, item=item)]
        frames = [self.event("conversation.item.added", previous_item_id=previous, item=item)]
        return frames + (self.item_done(item, previous) if done else [])

    def item_done(self, item: dict[str, Any], previous: str | None) -> list[str]:
        if self.beta:
            return []
        return [self.event("conversation.item.done", previous_item_id=previous, item=item)]

    def user_audio(
        self, item_id: str, transcript: str | None, seconds: float, failure: str | None = None
    ) -> list[str]:
        """Committed audio: the user's item and its transcription (or why it failed)."""
        previous = self.last_item
        frames = [
            self.event("input_audio_buffer.committed", previous_item_id=previous, item_id=item_id),
            *self.item_added(user_item(item_id, status="completed"), done=False),
        ]
        ids = {"item_id": item_id, "content_index": 0}
        if transcript is None:
            error = {"type": "transcription_error", "code": "stt_failed", "message": failure}
            kind = "conversation.item.input_audio_transcription.failed"
            return [*frames, self.event(kind, **ids, error=error)]
        usage = {"type": "duration", "seconds": round(seconds, 3)}
        kind = "conversation.item.input_audio_transcription.completed"
        frames.append(self.event(kind, **ids, transcript=transcript, usage=usage))
        item = user_item(item_id, transcript=transcript, status="completed")
        return frames + self.item_done(item, previous)

    def response_started(self, resp: Response, cfg: SessionConfig) -> list[str]:
        resp.announced, resp.previous_item = True, self.last_item
        item = assistant_item(resp.item_id, self.beta, status="in_progress")
        created = response_object(
            resp.id, self.beta, cfg, status="in_progress", output=[], metadata=resp.metadata
        )
        part = {"type": "audio", "transcript": ""}
        return [
            self.event("response.created", response=created),
            self.event(
                "response.output_item.added", response_id=resp.id, output_index=0, item=item
            ),
            *self.item_added(item, done=False),
            self.event("response.content_part.added", **resp.ids(), part=part),
        ]

    def response_done(
        self,
        resp: Response,
        cfg: SessionConfig,
        status: str,
        details: dict[str, Any] | None,
        transcript: str,
    ) -> list[str]:
        item_status = "completed" if status == "completed" else "incomplete"
        item = assistant_item(resp.item_id, self.beta, status=item_status, transcript=transcript)
        done = response_object(
            resp.id,
            self.beta,
            cfg,
            status=status,
            output=[item],
            status_details=details,
            metadata=resp.metadata,
        )
        ids = resp.ids()
        part = {"type": "audio", "transcript": transcript}
        return [
            self.event("response.output_audio.done", **ids),
            self.event("response.output_audio_transcript.done", **ids, transcript=transcript),
            self.event("response.content_part.done", **ids, part=part),
            self.event("response.output_item.done", response_id=resp.id, output_index=0, item=item),
            *self.item_done(item, resp.previous_item),
            self.event("response.done", response=done),
        ]
