"""The server's part of the settings tree: where it listens, who may use it, and the limits
every connection lives under. `voxloop.config.settings.Settings` holds them as `server`, `auth`,
`limits` and `twilio`."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, Field, SecretStr


class ServerSettings(BaseModel):
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    gc_tuning: bool = Field(
        True,
        description="after warm-up, freeze the heap so that full garbage collections skip "
        "it: their pauses stall every session at once (see runtime.py)",
    )
    allowed_hosts: list[str] = Field(
        default_factory=list,
        description="Host names the server answers besides localhost ones on a loopback "
        'bind (DNS rebinding protection); off loopback, when set, the only ones; "*" any',
    )
    llm_check: bool = Field(
        True,
        description="before start-up, run the local LLM once in a child process, so that a "
        "crash in native code is a one-line message (costs about 2 s)",
    )


class AuthSettings(BaseModel):
    enabled: Literal["auto", "on", "off"] = Field(
        "auto", description="auto: on when server.host is not a loopback address"
    )
    api_keys: list[SecretStr] = Field(
        default_factory=list, description="keys for the REST API and POST /api/tokens"
    )
    token_secret: SecretStr | None = Field(
        None,
        description="signs session tokens; share it between workers (default: random per process)",
    )
    token_ttl_s: float = Field(300.0, gt=0, le=86_400, description="a session token's lifetime")
    origins: list[str] = Field(
        default_factory=list,
        description="browser origins allowed besides the server's own, e.g. "
        '["https://app.example.com"]; "*" allows any',
    )


class LimitSettings(BaseModel):
    max_sessions: int = Field(50, ge=1, description="live sessions per process; more get 1013")
    conversations: Annotated[int, Field(ge=1)] | Literal["auto"] = Field(
        "auto",
        description="live conversations the models answer in real time; more get 1013 (503 "
        "for a token). auto: measured at start-up for a local LLM (no bound for remote or "
        "fake ones); a number: that many",
    )
    connections_per_ip_per_s: float = Field(
        5.0, ge=0, description="new WebSocket connections per IP per second (0: no limit)"
    )
    connection_burst: int = Field(20, ge=1, description="connections an IP may open at once")
    messages_per_ip_per_s: float = Field(
        2000.0,
        ge=0,
        description="frames per IP per second, all its connections (0: no limit); a session "
        "sends 50 a second in 20 ms audio frames",
    )
    message_burst: int = Field(4000, ge=1)
    trust_forwarded_for: bool = Field(
        False,
        description="behind a reverse proxy: the client's address is the first of "
        "X-Forwarded-For (only if the proxy sets it)",
    )
    max_frame_bytes: int = Field(
        1 << 20, ge=1024, le=16 << 20, description="largest client frame, text or binary"
    )
    max_text_chars: int = Field(8000, ge=1, le=8000, description="longest text turn")
    max_session_s: float = Field(7200.0, gt=0, description="a connection's longest life")
    idle_timeout_s: float = Field(
        300.0, gt=0, description="a connection that sends nothing this long is closed"
    )
    heartbeat_s: float = Field(
        20.0, gt=0, description="WebSocket ping interval; a peer that misses a pong is dropped"
    )
    send_timeout_s: float = Field(
        10.0, gt=0, description="a client that takes longer to accept one frame is dropped"
    )
    max_outbox_bytes: int = Field(
        8 << 20,
        ge=64 << 10,
        description="the most audio and events that may wait for one client (8 MiB: over a "
        "minute of 48 kHz audio); a client that lets more pile up is dropped",
    )
    retry_after_s: int = Field(5, ge=1, description="advertised when at capacity")


class TwilioSettings(BaseModel):
    public_url: str | None = Field(
        None,
        description="the server's public https:// base URL as Twilio reaches it; the TwiML "
        "points Twilio at its wss://.../twilio/media (default: the request's own host)",
    )
    auth_token: SecretStr | None = Field(
        None, description="checks X-Twilio-Signature on /twilio/voice when set; never logged"
    )
