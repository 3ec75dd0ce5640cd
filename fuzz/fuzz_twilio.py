"""Fuzz the Twilio transport: the inbound Media Streams messages (`TwilioProfile.on_text`,
driven with a mock session, as the module has no pure message parser) and the webhook's
helpers (form body, X-Twilio-Signature, TwiML).

Contract: any text frame is handled or answered with `session.error(...)`, never an
exception (one would end the call); the webhook helpers never raise for any request, a
signature they compute verifies and a different one does not, and TwiML is well-formed XML
carrying the caller's parameters.

    python fuzz/fuzz_twilio.py -max_total_time=60 fuzz/seeds/twilio
"""

from __future__ import annotations

import base64
import json
from typing import Any
from unittest import mock
from xml.etree import ElementTree

import _common
import atheris

with atheris.instrument_imports(include=["voxloop"]):
    from voxloop.server.transports import twilio
    from voxloop.session.session import Session

KEYS = sorted(
    {
        "event", "start", "media", "mark", "stop", "dtmf", "connected", "streamSid",
        "callSid", "customParameters", "mediaFormat", "encoding", "sampleRate", "channels",
        "session_id", "user_id", "payload", "track", "inbound", "outbound", "name",
        "audio/x-mulaw",
    }
)  # fmt: skip


def fake_session(started: bool) -> Any:
    session = mock.MagicMock(spec=Session)
    session.started = started
    session.state = None
    session.session_id = "fuzz"
    session.output_rate = 16000
    return session


def run_to_end(coro: Any) -> Any:
    """Drive a coroutine that never waits (the mock session's calls return at once)."""
    try:
        coro.send(None)
    except StopIteration as done:
        return done.value
    raise AssertionError("on_text waited on something; the mock session never wakes it")


def check_messages(raws: list[str], started: bool) -> None:
    profile = twilio.TwilioProfile()
    session = fake_session(started)
    for raw in raws:
        frames = run_to_end(profile.on_text(session, raw))
        assert frames == []
    for call in session.error.call_args_list:
        code, message = call.args[:2]
        assert isinstance(code, str) and code and isinstance(message, str) and message


def check_webhook(fdp: atheris.FuzzedDataProvider) -> None:
    token = fdp.ConsumeUnicodeNoSurrogates(12)
    scheme = fdp.PickValueInList(["https://", "http://", "wss://", "HTTPS://", "", "https://["])
    public = scheme + fdp.ConsumeUnicodeNoSurrogates(24)  # the Host header, when not set
    path = fdp.ConsumeUnicodeNoSurrogates(16)
    query = fdp.ConsumeUnicodeNoSurrogates(16)
    body = fdp.ConsumeUnicodeNoSurrogates(fdp.ConsumeIntInRange(0, 200))
    params = twilio.form_params(body)
    url = twilio.webhook_url(public, path, query)
    good = twilio.compute_signature(token, url, params)
    assert twilio.valid_signature(token, url, params, good)
    forged = ("B" if good[0] == "A" else "A") + good[1:]
    assert not twilio.valid_signature(token, url, params, forged)
    assert not twilio.valid_signature(token, url, params, "")
    stream = twilio.media_url(public)
    assert stream.startswith(("ws://", "wss://")) and stream.endswith(twilio.MEDIA_PATH)
    root = ElementTree.fromstring(twilio.twiml(stream, params))  # well-formed, or it raises
    sent = {p.get("name"): p.get("value") for p in root.iter("Parameter")}
    for name, key in (("caller", "From"), ("call_sid", "CallSid")):
        expected = twilio._XML_INVALID.sub("", params.get(key, ""))
        assert sent.get(name, "") == expected, (name, sent, params)


def structured(fdp: atheris.FuzzedDataProvider) -> list[str]:
    """A call-shaped sequence: a start (usually valid), then messages of any event."""
    start = {"streamSid": "MZ1", "callSid": "CA1", "customParameters": {}}
    start.update(_common.json_object(fdp, KEYS))
    out = [json.dumps({"event": "start", "start": start})] if fdp.ConsumeBool() else []
    for _ in range(fdp.ConsumeIntInRange(0, 4)):
        message = _common.json_object(fdp, KEYS)
        message["event"] = fdp.PickValueInList(["media", "mark", "stop", "dtmf", "x"])
        if message["event"] == "media" and fdp.ConsumeBool():
            payload = fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 400))
            message["media"] = {"payload": base64.b64encode(payload).decode()}
        out.append(json.dumps(message))
    return out


def test_one_input(data: bytes) -> None:
    mode, rest = _common.split_mode(data, 5)
    fdp = atheris.FuzzedDataProvider(rest)
    if mode == 0:
        check_messages([rest.decode("utf-8", "replace")], started=True)
    elif mode == 1:
        check_messages(rest.decode("utf-8", "replace").split("\n"), started=True)
    elif mode == 2:
        check_messages(structured(fdp), started=fdp.ConsumeBool())
    elif mode == 3:
        check_webhook(fdp)
    else:
        check_messages([_common.deep_json(fdp, "event")], started=True)


if __name__ == "__main__":
    _common.run(test_one_input)
