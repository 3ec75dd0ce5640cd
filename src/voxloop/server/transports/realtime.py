"""The OpenAI Realtime API (`/v1/realtime`) as a wire profile over the native session.

A client written for OpenAI's Realtime API talks to voxloop's models unchanged: its JSON
client events become `Session` calls, and the session's native events and PCM16 audio
become Realtime server events. The pipeline stays the same (VAD → STT → LLM → TTS), so
what the API models as one audio-in/audio-out model is a transcript in, a reply out.

- Server VAD (the default): appended audio goes straight to the session's listener; its
  turns become `speech_started`/`speech_stopped` (through `Session.on_heard`), then
  `committed`, the user item and its transcription, then a response, by itself.
- `turn_detection: null`: the audio is buffered here until `input_audio_buffer.commit`,
  which transcribes it into a user item; like typed items (`conversation.item.create`),
  it is answered only at `response.create`.
- A response is one native reply (one turn id): it is announced at the reply's first
  event and closed by the reply's completion (`llm_response` complete), or by its
  `metrics` when it failed. A reply cut short (barge-in, `response.cancel`) ends with
  status `cancelled`; a `paused` reply (the user spoke over it) emits nothing until it
  resumes (more audio) or is cut.

Both dialects are spoken: the GA names by default, the beta names (`response.audio.delta`
…) when the client says `OpenAI-Beta: realtime=v1` (realtime_events.py). docs/protocol.md
lists, field by field, what is supported.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
from typing import TYPE_CHECKING, Any

from voxloop.audio.formats import pcm16_to_float
from voxloop.audio.resample import resample
from voxloop.hearing.listener import Heard
from voxloop.hearing.utterance import MODEL_RATE
from voxloop.protocol import messages as p
from voxloop.providers.base import transcribe_all
from voxloop.server.transports.profile import Frame, Profile
from voxloop.server.transports.realtime_events import (
    OPENAI_VOICES,
    Emitter,
    Response,
    new_id,
    user_item,
)
from voxloop.server.transports.realtime_session import (
    MAX_INSTRUCTIONS,
    RATE,
    RealtimeError,
    SessionConfig,
    TurnDetection,
    apply_session_update,
    expect_int,
    expect_str,
    read_response_params,
    show,
)

if TYPE_CHECKING:
    from voxloop.hearing.utterance import Utterance
    from voxloop.protocol.outbox import OutMessage
    from voxloop.session.session import Session

log = logging.getLogger("voxloop.realtime")

MIN_COMMIT_BYTES = RATE * 2 // 10  # 100 ms, as OpenAI asks
MAX_BUFFER_BYTES = RATE * 2 * 300  # 5 minutes of manual-mode audio
# Native events that belong to a reply: the first one announces the response.
REPLY_EVENTS = frozenset(
    {"llm_status", "llm_response", "tts_start", "tts_end", "tts_stop", "tool_calls", "metrics"}
)
SERVER_ERRORS = frozenset(
    {"stt_failed", "reply_failed", "tts_failed", "internal", "store_unavailable", "store_failed"}
)
UNSUPPORTED_EVENTS = frozenset(
    {
        "conversation.item.delete",
        "conversation.item.retrieve",
        "output_audio_buffer.clear",
        "transcription_session.update",
    }
)


class RealtimeProfile(Profile):
    name = "openai-realtime"

    def __init__(self, model: str | None = None, *, beta: bool = False) -> None:
        self.model = model or "voxloop"
        self.beta = beta
        self.cfg = SessionConfig(id="sess_pending", model=self.model, instructions="", voice="")
        self.pending: list[str] = []  # user text not yet answered (waits for response.create)
        self.buffer = bytearray()  # manual mode: audio appended since the last commit
        self.out = Emitter(beta)
        self.responses: dict[int, Response] = {}  # native turn id → open response
        self.finished: set[int] = set()  # turns whose response.done has been sent
        self.heard: dict[int, tuple[str, int, float]] = {}  # turn → (item id, start ms, s)
        self.user_items: dict[int, str] = {}  # turn → its committed user item (to delete)

    # -- connection ---------------------------------------------------------------------

    async def open(self, session: Session) -> list[Frame]:
        await session.handle(p.Start(sample_rate=RATE, output_sample_rate=RATE))
        session.on_heard = lambda heard, utt: self._on_heard(session, heard, utt)
        settings = session.services.settings
        options = session.options() if session.state is not None else {}
        self.cfg = SessionConfig(
            id="sess_" + session.session_id,
            model=self.model,
            instructions=options.get("persona", ""),
            voice=options.get("voice", "default"),
            turn_detection=TurnDetection(
                threshold=settings.vad.threshold,
                prefix_padding_ms=round(settings.turns.preroll_s * 1000),
                silence_duration_ms=round(session.end_of_turn_silence_s * 1000),
                interrupt_response=session.barge_in,
            ),
            transcription={"model": session.services.stt.name},
        )
        frames: list[Frame] = [
            self.out.event("session.created", session=self.cfg.as_json(self.beta))
        ]
        if self.beta:
            conversation = {"id": "conv_" + session.session_id, "object": "realtime.conversation"}
            frames.append(self.out.event("conversation.created", conversation=conversation))
        return frames

    async def on_bytes(self, session: Session, data: bytes) -> list[Frame]:
        return [
            self.out.error(
                RealtimeError(
                    "invalid_frame",
                    "binary frames are not part of the Realtime API; send audio as base64 in"
                    " input_audio_buffer.append",
                )
            )
        ]

    async def on_text(self, session: Session, raw: str) -> list[Frame]:
        event_id: str | None = None
        try:
            try:
                data = json.loads(raw)
            except (ValueError, RecursionError) as exc:
                raise RealtimeError("invalid_json", f"malformed JSON: {exc}") from None
            if not isinstance(data, dict):
                raise RealtimeError("invalid_json", "a client event must be a JSON object")
            event_id = data.get("event_id") if isinstance(data.get("event_id"), str) else None
            kind = data.get("type")
            if not isinstance(kind, str):
                raise RealtimeError(
                    "invalid_value",
                    f"a client event needs a type, a string; got {show(kind)}",
                    "type",
                )
            handler = HANDLERS.get(kind)
            if handler is None:
                if kind in UNSUPPORTED_EVENTS:
                    raise RealtimeError(
                        "unsupported_event", f"{kind!r} is not supported by voxloop"
                    )
                known = ", ".join(HANDLERS)
                raise RealtimeError(
                    "unknown_event",
                    f"unknown client event type {kind!r}; supported: {known}",
                    "type",
                )
            return await handler(self, session, data)
        except RealtimeError as exc:
            return [self.out.error(exc, event_id)]
        except Exception as exc:  # never let one event end the connection
            log.exception("realtime event failed", extra={"session_id": session.session_id})
            error = RealtimeError("internal", f"internal error: {exc}", kind="server_error")
            return [self.out.error(error, event_id)]

    # -- client events ------------------------------------------------------------------

    async def _session_update(self, session: Session, data: dict[str, Any]) -> list[Frame]:
        update = data.get("session", {})
        new, voice = apply_session_update(self.cfg, update)
        native_voice = None
        if voice is not None:
            tts = session.services.tts
            local = {"default", tts.name, getattr(tts, "voice_name", "default")}
            if voice in local:
                native_voice = voice
            elif voice in OPENAI_VOICES:
                native_voice = "default"  # OpenAI's names all mean the server's own voice
            else:
                choices = ", ".join(sorted(local | OPENAI_VOICES))
                raise RealtimeError(
                    "unsupported_value",
                    f"unknown voice {voice!r}; available: {choices}",
                    "session.voice",
                )
            new.voice = voice
        td = new.turn_detection
        await session.handle(
            p.Configure(
                persona=new.instructions if update.get("instructions") is not None else None,
                voice=native_voice,
                end_of_turn_silence_s=td.silence_duration_ms / 1000 if td else None,
                barge_in=td.interrupt_response if td else None,
            )
        )
        new.instructions = session.options()["persona"]  # "" means the default persona
        if td is None and self.cfg.turn_detection is not None:  # to manual: drop VAD's turn
            await session.speculator.drop()
            await session.listener.drop_utterance()
        elif td is not None:
            self.buffer.clear()
        self.cfg = new
        return [self.out.event("session.updated", session=new.as_json(self.beta))]

    async def _append(self, session: Session, data: dict[str, Any]) -> list[Frame]:
        audio = data.get("audio")
        if not isinstance(audio, str):
            raise RealtimeError("invalid_value", "audio must be a base64 string", "audio")
        try:
            pcm = base64.b64decode(audio, validate=True)
        except (binascii.Error, ValueError):
            raise RealtimeError("invalid_value", "audio is not valid base64", "audio") from None
        if len(pcm) % 2:
            raise RealtimeError(
                "invalid_value", f"PCM16 needs an even number of bytes, got {len(pcm)}", "audio"
            )
        if self.cfg.turn_detection is None:
            if len(self.buffer) + len(pcm) > MAX_BUFFER_BYTES:
                raise RealtimeError(
                    "input_audio_buffer_full",
                    "the input audio buffer holds at most 5 minutes; commit or clear it",
                )
            self.buffer += pcm
        elif pcm:
            session.feed_audio(pcm16_to_float(pcm))
        return []

    async def _commit(self, session: Session, data: dict[str, Any]) -> list[Frame]:
        if self.cfg.turn_detection is not None:
            raise RealtimeError(
                "unsupported_event",
                "with server_vad the server commits the audio itself when the user stops"
                " talking; set turn_detection to null to commit by hand",
            )
        if len(self.buffer) < MIN_COMMIT_BYTES:
            ms = len(self.buffer) / 2 / RATE * 1000
            raise RealtimeError(
                "input_audio_buffer_commit_empty",
                f"buffer too small: expected at least 100ms of audio, the buffer has {ms:.2f}ms",
            )
        pcm, self.buffer = bytes(self.buffer), bytearray()
        seconds = len(pcm) / 2 / RATE
        samples = resample(pcm16_to_float(pcm), RATE, MODEL_RATE)
        try:
            text = (await transcribe_all(session.services.stt, samples)).text.strip()
        except Exception as exc:
            log.warning("realtime commit: STT failed: %r", exc)
            return list(self.out.user_audio(new_id("item"), None, seconds, failure=str(exc)))
        if text:
            self.pending.append(text)
        return list(self.out.user_audio(new_id("item"), text, seconds))

    async def _clear(self, session: Session, data: dict[str, Any]) -> list[Frame]:
        self.buffer.clear()
        if self.cfg.turn_detection is not None:  # forget the speech under way, if any
            await session.speculator.drop()
            await session.listener.drop_utterance()
        return [self.out.event("input_audio_buffer.cleared")]

    async def _item_create(self, session: Session, data: dict[str, Any]) -> list[Frame]:
        item = data.get("item")
        if not isinstance(item, dict):
            raise RealtimeError("invalid_value", "item must be an object", "item")
        if item.get("type", "message") != "message" or item.get("role") != "user":
            raise RealtimeError(
                "unsupported_value",
                "only user messages can be added (role 'user'); instructions go in"
                " session.update, and function calls are not supported",
                "item",
            )
        parts = item.get("content")
        if not isinstance(parts, list) or not parts:
            raise RealtimeError("invalid_value", "item.content must be a non-empty list", "item")
        texts = []
        for part in parts:
            if not isinstance(part, dict) or part.get("type") not in ("input_text", "text"):
                raise RealtimeError(
                    "unsupported_value",
                    "only input_text content is supported in conversation.item.create; send"
                    " audio with input_audio_buffer.append",
                    "item.content",
                )
            if not isinstance(part.get("text"), str):
                raise RealtimeError("invalid_value", "input_text needs a text", "item.content")
            texts.append(part["text"])
        text = " ".join(texts).strip()
        if not text or len(text) > MAX_INSTRUCTIONS:
            raise RealtimeError(
                "invalid_value",
                f"the message text must be 1-{MAX_INSTRUCTIONS} characters",
                "item.content",
            )
        item_id = item.get("id") if isinstance(item.get("id"), str) else new_id("item")
        self.pending.append(text)
        return self.out.item_added(user_item(item_id, text=text, status="completed"), done=True)

    async def _response_create(self, session: Session, data: dict[str, Any]) -> list[Frame]:
        params = read_response_params(data.get("response"))
        await session.replies.refresh_context()
        reply = session.reply
        if reply is not None and not reply.done:
            raise RealtimeError(
                "conversation_already_has_active_response",
                f"the conversation already has an active response"
                f" ({self._response(reply.turn_id).id}); wait for its response.done",
            )
        # No await from here on: the new turn is the session's current reply at once.
        text = "\n".join(self.pending)
        self.pending.clear()
        session.turn_counter += 1
        turn_id = session.turn_counter
        self._response(turn_id).metadata = params.get("metadata")
        session.replies.start_reply(turn_id, text, None, source="text")
        return []

    async def _response_cancel(self, session: Session, data: dict[str, Any]) -> list[Frame]:
        reply = session.reply
        asked = data.get("response_id")
        if asked is not None:
            expect_str(asked, "response_id")
        if (
            reply is None
            or reply.done
            or reply.turn_id in self.finished
            or (asked and asked != self._response(reply.turn_id).id)
        ):
            raise RealtimeError(
                "response_cancel_not_active", "cancellation failed: no active response found"
            )
        await session.replies.interrupt("interrupt")
        return []

    async def _truncate(self, session: Session, data: dict[str, Any]) -> list[Frame]:
        """Acknowledged only: the server keeps its own estimate of what was heard."""
        return [
            self.out.event(
                "conversation.item.truncated",
                item_id=expect_str(data.get("item_id"), "item_id"),
                content_index=expect_int(data.get("content_index", 0), "content_index"),
                audio_end_ms=expect_int(data.get("audio_end_ms", 0), "audio_end_ms"),
            )
        ]

    # -- the session's events -----------------------------------------------------------

    def _on_heard(self, session: Session, heard: Heard, utt: Utterance | None) -> None:
        """VAD turn events (Session.on_heard) → speech markers through the outbox, so they
        stay in order with the session's other events."""
        if utt is None:
            return
        if heard is Heard.STARTED:
            preroll = session.services.settings.turns.preroll_s
            start_s = max(0.0, session.listener.detector.speech_start_s - preroll)
            item_id = new_id("item")
            for old in [t for t in self.heard if t < utt.turn_id - 4]:
                del self.heard[old]  # speech that never became a turn (a backchannel…)
            self.heard[utt.turn_id] = (item_id, round(start_s * 1000), 0.0)
            session.outbox.control(
                session.event(
                    "speech_started",
                    utt.turn_id,
                    item_id=item_id,
                    audio_start_ms=round(start_s * 1000),
                )
            )
        elif heard is Heard.ENDED and utt.turn_id in self.heard:
            item_id, start_ms, _ = self.heard[utt.turn_id]
            seconds = sum(len(a) for a in utt.audio) / MODEL_RATE
            self.heard[utt.turn_id] = (item_id, start_ms, seconds)
            session.outbox.control(
                session.event(
                    "speech_stopped",
                    utt.turn_id,
                    item_id=item_id,
                    audio_end_ms=start_ms + round(seconds * 1000),
                )
            )

    def render(self, session: Session, msg: OutMessage) -> list[Frame]:
        if msg.audio is not None:
            resp = self._open_response(msg.turn_id)
            if resp is None or resp.cut:
                return []
            delta = base64.b64encode(msg.audio).decode("ascii")
            return [
                *self._announce(resp),
                self.out.event("response.output_audio.delta", **resp.ids(), delta=delta),
            ]
        event = msg.json or {}
        kind, turn = event.get("type"), event.get("turn_id")
        if kind == "error":
            return self._native_error(event)
        if kind in ("speech_started", "speech_stopped"):
            fields = {
                k: v for k, v in event.items() if k in ("item_id", "audio_start_ms", "audio_end_ms")
            }
            return [self.out.event(f"input_audio_buffer.{kind}", **fields)]
        if kind == "final_transcript" and turn is not None:
            item_id, _, seconds = self.heard.pop(turn, (new_id("item"), 0, 0.0))
            self.user_items = {t: i for t, i in self.user_items.items() if t > turn - 4}
            self.user_items[turn] = item_id
            return list(self.out.user_audio(item_id, event.get("text", ""), seconds))
        if kind == "turn_continued" and turn is not None:
            return self._continued(turn)
        if kind not in REPLY_EVENTS or turn is None:
            return []  # status, session, configured, partials…: nothing in this API
        resp = self._open_response(turn)
        if resp is None:
            return []
        frames = self._announce(resp)
        if kind == "llm_response":
            if event.get("is_complete"):
                content = event.get("content") or ""
                frames += self._finish(turn, resp, content, bool(event.get("interrupted")))
            elif event.get("delta") and not resp.cut:
                resp.transcript += event["delta"]
                frames.append(
                    self.out.event(
                        "response.output_audio_transcript.delta",
                        **resp.ids(),
                        delta=event["delta"],
                    )
                )
        elif kind == "tts_stop" and event.get("reason") != "paused":
            resp.cut = event.get("reason") or "interrupt"
        elif kind == "metrics":  # no completion came (the reply failed): close it now
            frames += self._finish(turn, resp, resp.transcript.strip(), bool(resp.cut))
        return frames

    def _response(self, turn: int) -> Response:
        if turn not in self.responses:
            self.responses[turn] = Response()
        return self.responses[turn]

    def _open_response(self, turn: int | None) -> Response | None:
        if turn is None or turn in self.finished:
            return None
        return self._response(turn)

    def _announce(self, resp: Response) -> list[Frame]:
        return [] if resp.announced else list(self.out.response_started(resp, self.cfg))

    def _continued(self, turn: int) -> list[Frame]:
        """The user went on before the reply to `turn` was heard: its response is cancelled
        and its user item deleted (the next item's transcript holds its words too)."""
        frames: list[Frame] = []
        resp = self.responses.get(turn)
        if resp is not None and resp.announced:
            resp.cut = resp.cut or "new_turn"
            frames += self._finish(turn, resp, "", True)
        else:
            self.responses.pop(turn, None)
            self.finished.add(turn)
        if (item_id := self.user_items.pop(turn, None)) is not None:
            frames.append(self.out.event("conversation.item.deleted", item_id=item_id))
        return frames

    def _finish(self, turn: int, resp: Response, transcript: str, cut: bool) -> list[Frame]:
        self.responses.pop(turn, None)
        self.finished.add(turn)
        details: dict[str, Any] | None = None
        if resp.error is not None:
            status, details = "failed", {"type": "failed", "error": resp.error}
        elif cut or resp.cut:
            status = "cancelled"
            reason = "turn_detected" if resp.cut in ("barge_in", "new_turn") else "client_cancelled"
            details = {"type": "cancelled", "reason": reason}
        else:
            status = "completed"
        return list(self.out.response_done(resp, self.cfg, status, details, transcript))

    def _native_error(self, event: dict[str, Any]) -> list[Frame]:
        code = str(event.get("code") or "error")
        message = str(event.get("message") or code)
        kind = "server_error" if code in SERVER_ERRORS else "invalid_request_error"
        turn = event.get("turn_id")
        if code == "reply_failed" and turn in self.responses:
            self.responses[turn].error = {"type": kind, "code": code, "message": message}
        return [self.out.error(RealtimeError(code, message, kind=kind))]


HANDLERS = {
    "session.update": RealtimeProfile._session_update,
    "input_audio_buffer.append": RealtimeProfile._append,
    "input_audio_buffer.commit": RealtimeProfile._commit,
    "input_audio_buffer.clear": RealtimeProfile._clear,
    "conversation.item.create": RealtimeProfile._item_create,
    "conversation.item.truncate": RealtimeProfile._truncate,
    "response.create": RealtimeProfile._response_create,
    "response.cancel": RealtimeProfile._response_cancel,
}
