"""The client side of each wire profile, for `voxloop talk --profile`: how to open the
conversation, how to frame 20 ms of microphone audio, and how to read the server's
frames back as native-style events (`{"type": ...}` dicts, and PCM16 bytes for audio),
so that one talk loop (streaming.py) serves every profile.

Each profile signals the end of a reply its own way; the wire turns that into a native
`metrics` event, which is what the talk loop waits for.
"""

from __future__ import annotations

import base64
import json
import struct
import time
from typing import Any

Frame = str | bytes
Event = dict[str, Any] | bytes


class Wire:
    """The native voxloop protocol (docs/protocol.md)."""

    name = "voxloop"
    path = "/ws"
    rate = 16000  # what the microphone audio is sent at
    output_rate: int | None = None  # None: as `tts_start` says
    carries_text = True  # the transcript and the reply's words come back, not only audio
    # After the file: how long to wait for a sign that the server heard speech (a
    # transcript, a status, audio) before concluding that it heard none. It covers the
    # longest end-of-turn wait (1.2 s after an unfinished phrase) and a slow final STT.
    no_speech_grace_s = 6.0

    def __init__(self, *, rate: int = 16000, **start: Any) -> None:
        self.rate = rate
        self.start_fields = {k: v for k, v in start.items() if v is not None}

    def opening(self) -> list[Frame]:
        return [json.dumps({"type": "start", "sample_rate": self.rate, **self.start_fields})]

    def audio(self, pcm: bytes) -> list[Frame]:
        return [pcm]

    def played(self, ms: float) -> list[Frame]:
        """How much of the reply has played so far (the talk loop plays in real time)."""
        return [json.dumps({"type": "playback", "ms": ms})]

    def read(self, message: Frame) -> tuple[list[Event], list[Frame]]:
        """The server's frame as events, and the frames to answer with."""
        if isinstance(message, bytes):
            return [message], []
        event = json.loads(message)
        if event.get("type") == "tts_start":
            self.output_rate = int(event["sample_rate"])
        return [event], []


class RealtimeAIWire(Wire):
    """`/ws?profile=realtime-ai`: 8-byte headers in, 12-byte headers out, 16 kHz."""

    name = "realtime-ai"
    path = "/ws?profile=realtime-ai"

    def __init__(self, *, rate: int = 16000, **start: Any) -> None:
        super().__init__(rate=16000, **start)  # the only rate this client knows
        self.output_rate = 16000
        self.t0 = time.monotonic()
        self.first = True
        self.reply = ""
        self.spoke = False

    def opening(self) -> list[Frame]:
        return [json.dumps({"type": "start", **self.start_fields})]

    def played(self, ms: float) -> list[Frame]:
        return []  # the client has no playback report

    def audio(self, pcm: bytes) -> list[Frame]:
        flags = 1 << 9 if self.first else 0
        self.first = False
        ms = int((time.monotonic() - self.t0) * 1000) & 0xFFFFFFFF
        return [struct.pack("<II", ms, flags) + pcm]

    def read(self, message: Frame) -> tuple[list[Event], list[Frame]]:
        if isinstance(message, bytes):
            return ([message[12:]] if len(message) > 12 else []), []
        event = json.loads(message)
        kind = event.get("type")
        if kind in ("partial_transcript", "final_transcript"):
            return [{**event, "text": event.get("content", "")}], []
        if kind == "llm_response":  # `content` is the whole reply so far
            content = event.get("content", "")
            delta, self.reply = content[len(self.reply) :], content
            out: Event = {**event, "delta": delta}
            if event.get("is_complete"):
                self.reply = ""
            return [out], []
        if kind == "tts_start":
            self.spoke = True
        if kind == "status" and event.get("status") == "listening" and self.spoke:
            self.spoke = False
            return [event, {"type": "metrics", "source": "realtime-ai"}], []
        return [event], []


class RealtimeWire(Wire):
    """`/v1/realtime`, the OpenAI Realtime API (GA event names, beta ones understood)."""

    name = "realtime"
    path = "/v1/realtime"

    def __init__(self, *, persona: str | None = None, **_: Any) -> None:
        super().__init__(rate=24000)
        self.output_rate = 24000
        self.instructions = persona
        self.started_audio = False

    def opening(self) -> list[Frame]:
        session: dict[str, Any] = {
            "type": "realtime",
            "audio": {"input": {"turn_detection": {"type": "server_vad"}}},
        }
        if self.instructions:
            session["instructions"] = self.instructions
        return [json.dumps({"type": "session.update", "session": session})]

    def played(self, ms: float) -> list[Frame]:
        return []  # a Realtime client truncates an item instead; not needed here

    def audio(self, pcm: bytes) -> list[Frame]:
        payload = base64.b64encode(pcm).decode()
        return [json.dumps({"type": "input_audio_buffer.append", "audio": payload})]

    def read(self, message: Frame) -> tuple[list[Event], list[Frame]]:
        if isinstance(message, bytes):
            return [], []
        event = json.loads(message)
        kind = str(event.get("type", ""))
        if kind == "session.created":
            return [{"type": "session", "session_id": event["session"].get("id", "")}], []
        if kind == "input_audio_buffer.speech_started":
            return [{"type": "speech_started"}], []
        if kind == "conversation.item.input_audio_transcription.completed":
            return [{"type": "final_transcript", "text": event.get("transcript", "")}], []
        if kind in ("response.output_audio_transcript.delta", "response.audio_transcript.delta"):
            return [{"type": "llm_response", "delta": event["delta"], "is_complete": False}], []
        if kind in ("response.output_audio_transcript.done", "response.audio_transcript.done"):
            text = event.get("transcript", "")
            return [{"type": "llm_response", "content": text, "is_complete": True}], []
        if kind in ("response.output_audio.delta", "response.audio.delta"):
            out: list[Event] = []
            if not self.started_audio:
                self.started_audio = True
                out.append({"type": "tts_start", "sample_rate": 24000})
            return [*out, base64.b64decode(event["delta"])], []
        if kind == "response.done":
            self.started_audio = False
            status = event.get("response", {}).get("status")
            return [{"type": "metrics", "source": "realtime", "status": status}], []
        if kind == "error":
            error = event.get("error", {})
            return [
                {"type": "error", "code": error.get("code"), "message": error.get("message")}
            ], []
        return [], []


class TwilioWire(Wire):
    """`/twilio/media`, as Twilio Media Streams would call it: μ-law at 8 kHz, marks
    echoed back as if played at once."""

    name = "twilio"
    path = "/twilio/media"
    carries_text = False
    # Only the reply's audio shows that speech was heard: wait for the whole answer.
    no_speech_grace_s = 15.0

    def __init__(self, *, session_id: str | None = None, **_: Any) -> None:
        """A phone line carries no text: the transcript and the reply's words are not
        seen, only the reply's audio."""
        from voxloop.server.transports.twilio import TwilioCall

        super().__init__(rate=8000)
        self.output_rate = 8000
        self.call = TwilioCall()
        self.custom = {"session_id": session_id} if session_id else {}
        self.started_audio = False

    def opening(self) -> list[Frame]:
        return [self.call.connected(), self.call.start(self.custom)]

    def audio(self, pcm: bytes) -> list[Frame]:
        return list(self.call.media(pcm))

    def played(self, ms: float) -> list[Frame]:
        return []  # marks, echoed back in `read`, say what was heard

    def read(self, message: Frame) -> tuple[list[Event], list[Frame]]:
        from voxloop.server.transports.twilio import decode_media

        if isinstance(message, bytes):
            return [], []
        event = json.loads(message)
        kind = event.get("event")
        if kind == "media":
            out: list[Event] = []
            if not self.started_audio:
                self.started_audio = True
                out.append({"type": "tts_start", "sample_rate": 8000})
            return [*out, decode_media(event)], []
        if kind == "mark":
            name = event["mark"]["name"]
            echo = [self.call.mark(name)]  # "played": tells the server what was heard
            if name.endswith(":end"):
                self.started_audio = False
                return [{"type": "metrics", "source": "twilio"}], echo
            return [], echo
        if kind == "clear":
            return [{"type": "tts_stop", "reason": "clear"}], []
        return [], []


WIRES: dict[str, type[Wire]] = {
    "voxloop": Wire,
    "realtime-ai": RealtimeAIWire,
    "realtime": RealtimeWire,
    "twilio": TwilioWire,
}
