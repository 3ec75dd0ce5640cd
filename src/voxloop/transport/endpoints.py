"""The WebSocket endpoints and the Twilio webhook, as one FastAPI router. Each endpoint
picks its `Profile` (the protocol modules hold no FastAPI code) and hands the connection
to the shared loop in ws.py."""

from __future__ import annotations

import contextlib

from fastapi import APIRouter, Request, WebSocket
from fastapi.responses import PlainTextResponse, Response

from voxloop.services import Services
from voxloop.transport.profile import Profile
from voxloop.transport.ws import serve_websocket

router = APIRouter()

POLICY_VIOLATION = 1008


def _profile(name: str) -> Profile | None:
    if name == "voxloop":
        return Profile()
    if name == "realtime-ai":
        from voxloop.transport.realtime_ai import RealtimeAIProfile

        return RealtimeAIProfile()
    return None


@router.websocket("/ws")
async def ws(websocket: WebSocket) -> None:
    services: Services = websocket.app.state.services
    name = websocket.query_params.get("profile") or services.settings.ws_profile
    profile = _profile(name)
    if profile is None:
        await websocket.accept()  # so that the close code and reason reach the client
        await websocket.close(
            POLICY_VIOLATION, f"unknown profile {name!r}; known: voxloop, realtime-ai"
        )
        return
    await serve_websocket(websocket, services, profile)


@router.post("/twilio/voice")
async def twilio_voice(request: Request) -> Response:
    """Twilio's incoming-call webhook: answer with TwiML that streams the call to us."""
    from voxloop.transport import twilio

    services: Services = request.app.state.services
    settings = services.settings.twilio
    body = (await request.body()).decode("utf-8", "replace")
    public = settings.public_url or str(request.base_url)
    if settings.auth_token is not None:
        url = twilio.webhook_url(public, request.url.path, request.url.query)
        signature = request.headers.get("x-twilio-signature", "")
        if not twilio.valid_signature(
            settings.auth_token.get_secret_value(), url, twilio.form_params(body), signature
        ):
            return PlainTextResponse("invalid X-Twilio-Signature", status_code=403)
    xml = twilio.twiml(twilio.media_url(public), twilio.form_params(body))
    return Response(xml, media_type="application/xml")


@router.websocket("/twilio/media")
async def twilio_media(websocket: WebSocket) -> None:
    from starlette.websockets import WebSocketState

    from voxloop.transport.twilio import TwilioProfile

    await serve_websocket(websocket, websocket.app.state.services, TwilioProfile())
    # Twilio's `stop` ends the loop with the socket still open: hang up properly (1000),
    # not by dropping the connection.
    if WebSocketState.CONNECTED == websocket.client_state == websocket.application_state:
        with contextlib.suppress(RuntimeError):
            await websocket.close()


@router.websocket("/v1/realtime")
async def realtime(websocket: WebSocket) -> None:
    """The OpenAI Realtime API's WebSocket (the subset a voice client needs)."""
    from voxloop.transport.realtime import RealtimeProfile
    from voxloop.transport.realtime_events import wants_beta

    offered = [p.strip() for p in websocket.headers.get("sec-websocket-protocol", "").split(",")]
    # OpenAI's browser clients offer "realtime" (plus a key as a subprotocol); echo it.
    subprotocol = "realtime" if "realtime" in offered else None
    # Beta clients (OpenAI-Beta: realtime=v1) get the beta event names; others the GA ones.
    beta = wants_beta(websocket.headers.get("openai-beta", ""), offered)
    profile = RealtimeProfile(model=websocket.query_params.get("model"), beta=beta)
    await serve_websocket(websocket, websocket.app.state.services, profile, subprotocol)
