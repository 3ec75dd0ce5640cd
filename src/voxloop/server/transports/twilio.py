"""Phone calls through Twilio Media Streams, without a web framework (endpoints.py wires it).

A call comes in: Twilio POSTs its webhook to /twilio/voice, we answer with TwiML
(`<Connect><Stream>`), and Twilio opens a WebSocket to /twilio/media. It sends JSON text
frames: `connected`, `start` (the stream's and call's ids, custom parameters), `media`
(20 ms of base64 μ-law at 8 kHz), `mark`, `dtmf`, `stop`. We send back `media` (the
agent's voice in the same format), `mark` (Twilio echoes it when the audio before it has
played: that tells the session what the caller heard) and `clear` (flush Twilio's buffer:
barge-in). Native voxloop events that Twilio does not know are never sent to it.

The webhook puts a single-use token for the call's session (`twilio-<CallSid>`) in the
TwiML; the stream's `start` brings it back and nothing is opened without it (when auth or
twilio.auth_token is on). Twilio's signatures alone can be replayed: the stream's handshake
signature is the same for every call.

Resampling happens here, with the low-latency resampler (audio/resample.py): soxr's streaming
mode holds back 10-115 ms of audio, too much for turn-taking on a call. The session sees
16 kHz in (the models' rate) and gives out the TTS's own rate; this profile converts.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import logging
import re
import secrets
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlsplit, urlunsplit
from xml.sax.saxutils import escape

import numpy as np

from voxloop.audio.resample import LOW_LATENCY, StreamResampler
from voxloop.protocol.messages import Playback, Start, Stop
from voxloop.server.gate import Refusal
from voxloop.server.transports import mulaw
from voxloop.server.transports.profile import Frame, Profile
from voxloop.session.principal import Principal
from voxloop.store.base import valid_session_id

if TYPE_CHECKING:
    from voxloop.protocol.outbox import OutMessage
    from voxloop.session.session import Session

log = logging.getLogger("voxloop.twilio")

MEDIA_PATH = "/twilio/media"
Authorize = Callable[[str | None], Awaitable[Principal]]  # a call's token → whom it acts for
RATE = 8000  # Twilio's μ-law is always 8 kHz mono
SESSION_RATE = 16000  # what the session is given: the models' rate, so it resamples nothing
FRAME_BYTES = 160  # 20 ms of μ-law: the size Twilio sends and we send
MAX_PAYLOAD_BYTES = 1 << 16  # about 8 s of μ-law in one media message: anything more is wrong
_XML_INVALID = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


# -- the webhook: signature and TwiML --------------------------------------------------------


def form_params(body: str) -> dict[str, str]:
    """The webhook's application/x-www-form-urlencoded body (blank values kept: they are
    part of what Twilio signs)."""
    return dict(parse_qsl(body, keep_blank_values=True))


def webhook_url(public: str, path: str, query: str) -> str:
    """The URL Twilio called, hence signed: the public base URL, the path, the query."""
    url = public.rstrip("/") + "/" + path.lstrip("/")
    return f"{url}?{query}" if query else url


def compute_signature(auth_token: str, url: str, params: Mapping[str, str]) -> str:
    """Twilio's X-Twilio-Signature: base64(HMAC-SHA1(token, url + sorted name+value pairs))."""
    data = url + "".join(name + params[name] for name in sorted(params))
    digest = hmac.new(auth_token.encode(), data.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode()


def valid_signature(auth_token: str, url: str, params: Mapping[str, str], signature: str) -> bool:
    """Constant-time check of X-Twilio-Signature. Like Twilio's own helpers, it accepts the
    URL with or without the scheme's default port (Twilio may sign either)."""
    if not signature:
        return False
    given = signature.encode("utf-8", "replace")
    return any(
        hmac.compare_digest(compute_signature(auth_token, candidate, params).encode(), given)
        for candidate in _port_variants(url)
    )


def _port_variants(url: str) -> list[str]:
    try:
        parts = urlsplit(url)
    except ValueError:  # a malformed twilio.public_url: nothing to vary, and no match
        return [url]
    default = {"https": "443", "http": "80"}.get(parts.scheme)
    host = parts.netloc
    if default is None or not host:
        return [url]
    if host.endswith(":" + default):
        other = host[: -len(default) - 1]
    elif re.search(r":\d+$", host) is None:
        other = f"{host}:{default}"
    else:
        return [url]  # a port of its own: signed as it is
    return [url, urlunsplit(parts._replace(netloc=other))]


def media_url(public: str) -> str:
    """The WebSocket URL of /twilio/media under the public base URL (https → wss)."""
    base = public.strip().rstrip("/")
    for plain, secure in (("https://", "wss://"), ("http://", "ws://")):
        if base.lower().startswith(plain):
            base = secure + base[len(plain) :]
            break
    else:
        if not base.lower().startswith(("wss://", "ws://")):
            base = "wss://" + base
    return base + MEDIA_PATH


def call_session_id(call_sid: str | None) -> str | None:
    """The session of a call: `twilio-<CallSid>` (None for a missing or odd CallSid)."""
    sid = f"twilio-{call_sid}" if call_sid else None
    return sid if sid and valid_session_id(sid) else None


def twiml(stream_url: str, params: Mapping[str, str], token: str | None = None) -> str:
    """Answer a call by streaming it to us both ways; the caller's number, the call's id
    and the call's token ride along as custom parameters (they come back in the stream's
    `start`: Twilio drops a query string from the stream's URL)."""
    custom = {
        "caller": params.get("From", ""),
        "call_sid": params.get("CallSid", ""),
        "token": token or "",
    }
    tags = "".join(
        f'<Parameter name="{_attr(name)}" value="{_attr(value)}"/>'
        for name, value in custom.items()
        if value
    )
    return (
        '<?xml version="1.0" encoding="UTF-8"?>'
        f'<Response><Connect><Stream url="{_attr(stream_url)}">{tags}</Stream></Connect>'
        "</Response>"
    )


def _attr(value: str) -> str:
    value = _XML_INVALID.sub("", value)
    return escape(value, {'"': "&quot;", "\n": "&#10;", "\r": "&#13;", "\t": "&#9;"})


# -- the media stream ------------------------------------------------------------------------


class TwilioProfile(Profile):
    """One Twilio Media Stream ↔ one session. See the module docstring for the messages."""

    name = "twilio"

    def __init__(self, authorize: Authorize | None = None) -> None:
        """`authorize`: checks and spends the call's token (the `token` custom parameter)
        and says whom the call acts for, or raises `Refusal`; None: no token needed (auth
        off and no twilio.auth_token), the call acts as the operator."""
        self.authorize = authorize
        self.stream_sid: str | None = None
        self.call_sid: str | None = None
        self.stopped = False
        self._early_reported = False  # media before start: said once, not 50 times a second
        self._in = StreamResampler(RATE, SESSION_RATE, quality=LOW_LATENCY)
        self._out: StreamResampler | None = None  # per stretch of reply audio (tts_start)
        self._carry = b""  # μ-law that does not fill a 160-byte frame yet
        self._sent = 0  # 8 kHz samples sent since the last tts_start (Playback counts from it)
        self._turn: int | None = None
        self._sentence: int | None = None
        self._marks: deque[tuple[str, int | None, float]] = deque()  # (name, turn, ms) sent
        self.frames_in = 0
        self.frames_out = 0

    def closing(self, session: Session) -> bool:
        return self.stopped

    async def on_bytes(self, session: Session, data: bytes) -> list[Frame]:
        session.error("unexpected_binary", "Twilio sends JSON text frames; got a binary frame")
        return []

    async def on_text(self, session: Session, raw: str) -> list[Frame]:
        try:
            message = json.loads(raw)
        except (ValueError, RecursionError) as exc:  # RecursionError: nested too deeply
            session.error("bad_json", f"malformed JSON from Twilio: {exc!r}")
            return []
        if not isinstance(message, dict) or not isinstance(message.get("event"), str):
            session.error("bad_message", "a Twilio message must be a JSON object with 'event'")
            return []
        event = message["event"]
        if event == "media":
            self._media(session, message)
        elif event == "mark":
            await self._mark_played(session, message)
        elif event == "start":
            await self._start(session, message)
        elif event == "stop":
            await self._stop(session)
        elif event == "connected":
            log.debug("twilio connected: %s %s", message.get("protocol"), message.get("version"))
        elif event == "dtmf":  # keypad input: no use for it yet (and digits may be a PIN)
            log.info("dtmf keypress ignored", extra={"session_id": session.session_id})
        else:
            session.error("unknown_event", f"unknown Twilio event {event!r}")
        return []

    async def _start(self, session: Session, message: dict[str, Any]) -> None:
        start = message.get("start")
        sid = start.get("streamSid") if isinstance(start, dict) else None
        sid = sid or message.get("streamSid")
        if not isinstance(start, dict) or not isinstance(sid, str) or not sid:
            session.error("bad_message", "a Twilio 'start' needs start.streamSid")
            return
        if self.stream_sid is not None:
            session.error("already_started", "a second Twilio 'start' on one stream; ignored")
            return
        fmt = start.get("mediaFormat")
        if isinstance(fmt, dict) and (
            fmt.get("encoding", "audio/x-mulaw") != "audio/x-mulaw"
            or fmt.get("sampleRate", RATE) != RATE
            or fmt.get("channels", 1) != 1
        ):
            session.error("unsupported_media_format", f"expected μ-law 8 kHz mono, got {fmt}")
        params = start.get("customParameters")
        params = params if isinstance(params, dict) else {}
        custom = {k: v for k, v in params.items() if isinstance(v, str)}
        call_sid = start.get("callSid")
        self.call_sid = call_sid if isinstance(call_sid, str) else None
        self.stream_sid = sid
        if self.authorize is not None:
            try:
                session.principal = await self.authorize(custom.get("token"))
            except Refusal as refusal:
                session.error("unauthorized", refusal.reason)
                session.end(refusal.code, refusal.reason)
                return
        await session.handle(
            Start(
                sample_rate=SESSION_RATE,
                output_sample_rate=None,  # the TTS's own rate: resampled here, quickly
                session_id=self._id(session, custom, "session_id")
                or call_session_id(self.call_sid),
                user_id=self._id(session, custom, "user_id"),
            )
        )
        log.info("twilio call started", extra={"session_id": session.session_id})

    @staticmethod
    def _id(session: Session, custom: dict[str, str], key: str) -> str | None:
        value = custom.get(key)
        if value and not valid_session_id(value):
            session.error(f"bad_{key}", f"custom parameter {key} must be 1-128 of [A-Za-z0-9_.:-]")
            return None
        return value or None

    def _media(self, session: Session, message: dict[str, Any]) -> None:
        if self.stream_sid is None or not session.started:
            if not self._early_reported:
                session.error("not_started", "Twilio media before 'start'; dropped")
            self._early_reported = True
            return
        media = message.get("media")
        payload = media.get("payload") if isinstance(media, dict) else None
        if not isinstance(payload, str):
            session.error("bad_message", "a Twilio 'media' needs media.payload (base64)")
            return
        if media.get("track", "inbound") not in ("inbound", "inbound_track"):
            return  # our own voice, if the stream was asked for both tracks
        if len(payload) > MAX_PAYLOAD_BYTES * 4 // 3 + 4:
            session.error("frame_too_large", f"{len(payload)} base64 characters in one media")
            return
        try:
            data = base64.b64decode(payload, validate=True)
        except (binascii.Error, ValueError) as exc:
            session.error("bad_media_payload", f"media.payload is not base64: {exc}")
            return
        self.frames_in += 1
        samples = self._in.push(mulaw.decode_float(data))
        if len(samples):
            session.feed_audio(samples)

    async def _mark_played(self, session: Session, message: dict[str, Any]) -> None:
        mark = message.get("mark")
        name = mark.get("name") if isinstance(mark, dict) else None
        if not isinstance(name, str):
            session.error("bad_message", "a Twilio 'mark' needs mark.name")
            return
        if all(pending[0] != name for pending in self._marks):
            log.debug("mark %r is not pending (cleared); ignored", name)
            return
        while True:  # Twilio plays in order: marks before this one have played too
            pending, turn_id, ms = self._marks.popleft()
            if pending == name:
                break
        await session.handle(Playback(ms=ms, turn_id=turn_id))

    async def _stop(self, session: Session) -> None:
        self.stopped = True
        if session.state is not None:
            await session.handle(Stop())  # an unfinished reply is kept as heard, then the end
        log.info(
            "twilio call ended: %d frames in, %d out",
            self.frames_in,
            self.frames_out,
            extra={"session_id": session.session_id},
        )

    # -- the session's messages as Twilio's ------------------------------------------------

    def render(self, session: Session, msg: OutMessage) -> list[Frame]:
        if self.stream_sid is None:
            return []
        if msg.audio is not None:
            return self._audio(session, msg)
        event = msg.json or {}
        kind = event.get("type")
        if kind == "tts_start":
            self._begin(session, event)
        elif kind == "tts_end":
            return self._end()
        elif kind == "tts_stop":  # interrupted or paused: flush what Twilio still buffers
            self._reset()
            self._marks.clear()  # Twilio echoes the marks a clear drops: nothing was heard
            return [json.dumps({"event": "clear", "streamSid": self.stream_sid})]
        else:
            log.debug("not sent to Twilio: %s", kind)
        return []

    def _begin(self, session: Session, event: dict[str, Any]) -> None:
        """A reply's audio starts (or resumes): Playback's milliseconds count from here."""
        rate = int(event.get("sample_rate") or session.output_rate)
        self._reset()
        self._out = StreamResampler(rate, RATE, dtype="int16", quality=LOW_LATENCY)
        self._turn = event.get("turn_id")

    def _reset(self) -> None:
        self._out, self._carry, self._sent, self._sentence = None, b"", 0, None

    def _audio(self, session: Session, msg: OutMessage) -> list[Frame]:
        if self._out is None or msg.turn_id != self._turn:
            self._begin(session, {"turn_id": msg.turn_id})
        assert self._out is not None and msg.audio is not None
        frames: list[Frame] = []
        if self._sentence is not None and msg.sentence != self._sentence:
            frames.append(self._mark(f"{self._turn}:{self._sentence}"))  # the last one's end
        self._sentence = msg.sentence
        pcm = self._out.push(np.frombuffer(msg.audio, dtype="<i2"))
        return frames + self._frames(mulaw.encode(pcm))

    def _end(self) -> list[Frame]:
        """All of the reply's audio is out: flush the resampler and the last partial frame
        (padded with silence), then a final mark."""
        if self._out is None:
            return []
        frames = self._frames(mulaw.encode(self._out.push(np.zeros(0, np.int16), last=True)))
        if self._carry:
            self._sent += len(self._carry)
            padded = self._carry + bytes([mulaw.SILENCE]) * (FRAME_BYTES - len(self._carry))
            self._carry = b""
            frames.append(self._media_frame(padded))
        frames.append(self._mark(f"{self._turn}:{self._sentence}:end"))
        self._out, self._sentence = None, None
        return frames

    def _frames(self, ulaw: bytes) -> list[Frame]:
        data = self._carry + ulaw
        whole = len(data) - len(data) % FRAME_BYTES
        self._carry = data[whole:]
        self._sent += whole
        return [self._media_frame(data[i : i + FRAME_BYTES]) for i in range(0, whole, FRAME_BYTES)]

    def _media_frame(self, ulaw: bytes) -> str:
        self.frames_out += 1
        payload = base64.b64encode(ulaw).decode()
        return json.dumps(
            {"event": "media", "streamSid": self.stream_sid, "media": {"payload": payload}}
        )

    def _mark(self, name: str) -> str:
        self._marks.append((name, self._turn, self._sent * 1000 / RATE))
        return json.dumps({"event": "mark", "streamSid": self.stream_sid, "mark": {"name": name}})


# -- the other side: what Twilio sends, for tests and the CLI ---------------------------------


class TwilioCall:
    """Builds the frames Twilio sends during one call, numbered as Twilio numbers them."""

    def __init__(self, stream_sid: str | None = None, call_sid: str | None = None) -> None:
        self.stream_sid = stream_sid or "MZ" + secrets.token_hex(16)
        self.call_sid = call_sid or "CA" + secrets.token_hex(16)
        self.account_sid = "AC" + secrets.token_hex(16)
        self.sequence = 0
        self.chunk = 0

    def _frame(self, event: str, **fields: Any) -> str:
        self.sequence += 1
        number = str(self.sequence)
        return json.dumps(
            {"event": event, "sequenceNumber": number, **fields, "streamSid": self.stream_sid}
        )

    def connected(self) -> str:
        return json.dumps({"event": "connected", "protocol": "Call", "version": "1.0.0"})

    def start(self, custom: Mapping[str, str] | None = None) -> str:
        start = {
            "streamSid": self.stream_sid,
            "accountSid": self.account_sid,
            "callSid": self.call_sid,
            "tracks": ["inbound"],
            "customParameters": dict(custom or {}),
            "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": RATE, "channels": 1},
        }
        return self._frame("start", start=start)

    def media(self, pcm16: bytes) -> list[str]:
        """PCM16 at 8 kHz → `media` messages of 20 ms (the last one may be shorter)."""
        ulaw = mulaw.from_pcm16(pcm16)
        out = []
        for i in range(0, len(ulaw), FRAME_BYTES):
            self.chunk += 1
            media = {
                "track": "inbound",
                "chunk": str(self.chunk),
                "timestamp": str((self.chunk - 1) * 20),
                "payload": base64.b64encode(ulaw[i : i + FRAME_BYTES]).decode(),
            }
            out.append(self._frame("media", media=media))
        return out

    def mark(self, name: str) -> str:
        return self._frame("mark", mark={"name": name})

    def dtmf(self, digit: str) -> str:
        return self._frame("dtmf", dtmf={"track": "inbound_track", "digit": digit})

    def stop(self) -> str:
        return self._frame("stop", stop={"accountSid": self.account_sid, "callSid": self.call_sid})


def client_messages(
    stream_sid: str, call_sid: str, pcm16_8k: bytes, custom: Mapping[str, str] | None = None
) -> list[str]:
    """A call's opening as Twilio sends it: connected, start, then the audio as media."""
    call = TwilioCall(stream_sid, call_sid)
    return [call.connected(), call.start(custom), *call.media(pcm16_8k)]


def decode_media(message: str | Mapping[str, Any]) -> bytes:
    """A server `media` message's audio as PCM16 at 8 kHz."""
    data = json.loads(message) if isinstance(message, str) else message
    if data.get("event") != "media":
        raise ValueError(f"not a media message: {data.get('event')!r}")
    return mulaw.to_pcm16(base64.b64decode(data["media"]["payload"], validate=True))
