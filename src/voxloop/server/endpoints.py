"""The WebSocket endpoints, the Twilio webhook and token minting, as one FastAPI router.
Each WebSocket passes the gate (gate.py: capacity, rate, credential, origin), then picks
its `Profile` (the protocol modules hold no FastAPI code) and hands the connection to the
shared loop in ws.py."""

from __future__ import annotations

import json
import secrets
import time

from fastapi import APIRouter, Depends, HTTPException, Request, WebSocket
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from voxloop.config.settings import Settings
from voxloop.server.gate import Gate, Refusal
from voxloop.server.security import CLOSE_UNAUTHORIZED, AuthError, bearer
from voxloop.server.transports.profile import Profile
from voxloop.server.ws import close_reason, serve_websocket
from voxloop.session.services import Services
from voxloop.store.base import ID_PATTERN

router = APIRouter()

POLICY_VIOLATION = 1008


async def _enter(
    websocket: WebSocket, profile: Profile, subprotocol: str | None = None, vouched: bool = False
) -> None:
    """Through the gate, then the shared loop; a refusal closes with its code and reason
    (accepted first, so that they reach the client)."""
    services: Services = websocket.app.state.services
    gate: Gate = websocket.app.state.gate
    offered = [p.strip() for p in websocket.headers.get("sec-websocket-protocol", "").split(",")]
    try:
        admission = gate.admit(
            ip=client_ip(websocket, gate),
            live=services.conversations(),
            headers=websocket.headers,
            query=websocket.query_params,
            subprotocols=[p for p in offered if p],
            vouched=vouched,
        )
        await gate.spend(admission)
    except Refusal as refusal:
        await websocket.accept()
        await websocket.close(refusal.code, close_reason(refusal.reason))
        return
    chosen = subprotocol if subprotocol in offered else admission.subprotocol
    ip = client_ip(websocket, gate)
    await serve_websocket(websocket, services, profile, chosen, gate, ip, admission.principal)


def client_ip(connection: WebSocket | Request, gate: Gate) -> str:
    """The address the per-IP limits count: the peer's, or behind a trusted proxy the
    first address of X-Forwarded-For."""
    if gate.limits.trust_forwarded_for:
        forwarded = connection.headers.get("x-forwarded-for", "").split(",")[0].strip()
        if forwarded:
            return forwarded
    return connection.client.host if connection.client else "unknown"


def require_api_key(request: Request) -> None:
    """A dependency: the REST API wants an API key when auth is on."""
    gate: Gate = request.app.state.gate
    try:
        gate.auth.check_api_key(
            bearer(request.headers.get("authorization"), request.headers.get("x-api-key"))
        )
    except AuthError as exc:
        raise HTTPException(
            exc.http_status, exc.message, headers={"WWW-Authenticate": "Bearer"}
        ) from None


class TokenRequest(BaseModel):
    """Whom a token acts for. No user: a new anonymous one (`anon-…`, in the answer; mint
    the next token for it to resume that user's sessions)."""

    model_config = ConfigDict(extra="forbid")

    user: str | None = Field(None, pattern=ID_PATTERN)
    session_id: str | None = Field(None, pattern=ID_PATTERN)
    ttl_s: float | None = Field(None, gt=0)


def _token_request(raw: bytes) -> TokenRequest:
    """The body, or a 422 that names the field (an empty body asks for the defaults)."""
    try:
        return TokenRequest.model_validate(json.loads(raw) if raw.strip() else {})
    except ValueError as exc:
        if isinstance(exc, ValidationError):
            detail = "; ".join(
                f"{'.'.join(map(str, e['loc'])) or 'body'}: {e['msg']}" for e in exc.errors()
            )
        else:
            detail = f"body: malformed JSON ({exc})"
        raise HTTPException(422, detail) from None


@router.post("/api/tokens", dependencies=[Depends(require_api_key)])
async def mint_token(request: Request) -> JSONResponse:
    """A short-lived token for one WebSocket connection (`?token=` or the subprotocol
    `voxloop.token.<token>`), acting for one user (and maybe one session). At capacity:
    503 with Retry-After, before anyone dials."""
    gate: Gate = request.app.state.gate
    services: Services = request.app.state.services
    wanted = _token_request(await request.body())
    full = gate.at_capacity(services.conversations())
    if full is not None:
        return JSONResponse(
            {"error": "at_capacity", "message": full.reason},
            status_code=503,
            headers={"Retry-After": str(full.retry_after_s)},
        )
    user = wanted.user or f"anon-{secrets.token_urlsafe(9)}"
    token = gate.auth.mint(user, wanted.session_id, wanted.ttl_s)
    return JSONResponse(
        {
            "token": token.value,
            "user": user,
            "session_id": wanted.session_id,
            "expires_at": token.expires_at,
            "ttl_s": round(token.expires_at - gate.auth.clock(), 3),
        }
    )


@router.get("/api/auth")
async def auth_info(request: Request) -> dict:
    """What a client needs to know before it connects (the browser app asks)."""
    gate: Gate = request.app.state.gate
    return {"required": gate.auth.enabled, "token_url": "/api/tokens"}


def _profile(name: str) -> Profile | None:
    if name == "voxloop":
        return Profile()
    if name == "realtime-ai":
        from voxloop.server.transports.realtime_ai import RealtimeAIProfile

        return RealtimeAIProfile()
    return None


@router.websocket("/ws")
async def ws(websocket: WebSocket) -> None:
    services: Services = websocket.app.state.services
    name = websocket.query_params.get("profile") or services.settings.ws_profile
    profile = _profile(name)
    if profile is None:
        await websocket.accept()  # so that the close code and reason reach the client
        reason = f"unknown profile {name!r}; known: voxloop, realtime-ai"
        await websocket.close(POLICY_VIOLATION, close_reason(reason))
        return
    await _enter(websocket, profile)


CALL_ANSWERED_FOR_S = 24 * 3600  # a call's webhook is answered once within this time


@router.post("/twilio/voice")
async def twilio_voice(request: Request) -> Response:
    """Twilio's incoming-call webhook: answer with TwiML that streams the call to us, with
    a token for that call's session only. Each call is answered once: a replayed webhook
    (its signature is valid for ever) gets 403 instead of a second token."""
    from voxloop.server.transports import twilio

    services: Services = request.app.state.services
    gate: Gate = request.app.state.gate
    settings = services.settings.twilio
    body = (await request.body()).decode("utf-8", "replace")
    params = twilio.form_params(body)
    public = settings.public_url or str(request.base_url)
    if settings.auth_token is not None:
        url = twilio.webhook_url(public, request.url.path, request.url.query)
        signature = request.headers.get("x-twilio-signature", "")
        secret = settings.auth_token.get_secret_value()
        if not twilio.valid_signature(secret, url, params, signature):
            return PlainTextResponse("invalid X-Twilio-Signature", status_code=403)
    session_id = twilio.call_session_id(params.get("CallSid"))
    if session_id is None:
        return PlainTextResponse("the webhook needs a CallSid of [A-Za-z0-9]", status_code=400)
    try:
        await gate.first_use(
            f"twilio-call:{session_id}",
            time.time() + CALL_ANSWERED_FOR_S,
            "this call was answered already",
        )
    except Refusal as refusal:
        status = 503 if refusal.retry_after_s else 403
        return PlainTextResponse(refusal.reason, status_code=status)
    token = gate.auth.mint(None, session_id)
    xml = twilio.twiml(twilio.media_url(public), params, token.value)
    return Response(xml, media_type="application/xml")


@router.websocket("/twilio/media")
async def twilio_media(websocket: WebSocket) -> None:
    """A call's media stream. Its handshake is signed (when twilio.auth_token is set), but
    that signature is the same for every call: the credential is the token of the call,
    which /twilio/voice put in the TwiML and Twilio sends back in the stream's `start`."""
    from voxloop.server.transports import twilio

    settings: Settings = websocket.app.state.services.settings
    gate: Gate = websocket.app.state.gate
    if settings.twilio.auth_token is not None:
        public = settings.twilio.public_url or str(websocket.base_url)
        if not twilio.valid_signature(
            settings.twilio.auth_token.get_secret_value(),
            twilio.media_url(public),
            {},
            websocket.headers.get("x-twilio-signature", ""),
        ):
            await websocket.accept()
            await websocket.close(CLOSE_UNAUTHORIZED, "invalid X-Twilio-Signature")
            return
    required = settings.twilio.auth_token is not None or gate.auth.enabled
    profile = twilio.TwilioProfile(gate.redeem if required else None)
    await _enter(websocket, profile, vouched=True)


@router.websocket("/v1/realtime")
async def realtime(websocket: WebSocket) -> None:
    """The OpenAI Realtime API's WebSocket (the subset a voice client needs)."""
    from voxloop.server.transports.realtime import RealtimeProfile
    from voxloop.server.transports.realtime_events import wants_beta

    offered = [p.strip() for p in websocket.headers.get("sec-websocket-protocol", "").split(",")]
    # OpenAI's browser clients offer "realtime" (plus a key as a subprotocol); echo it.
    subprotocol = "realtime" if "realtime" in offered else None
    # Beta clients (OpenAI-Beta: realtime=v1) get the beta event names; others the GA ones.
    beta = wants_beta(websocket.headers.get("openai-beta", ""), offered)
    profile = RealtimeProfile(model=websocket.query_params.get("model"), beta=beta)
    await _enter(websocket, profile, subprotocol)
