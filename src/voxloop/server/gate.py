"""The door every WebSocket comes through: capacity, the per-IP connection rate and the
credential, checked in that order before a session exists; and the per-IP message rate
while it lives (a browser's `Host` and `Origin` were checked before, by guard.py). No
web framework here: endpoints.py hands in what the request carried.

A refusal is a `Refusal` with a WebSocket close code and a reason that names the limit
(1013 at capacity, with the seconds to wait; 1008 over a rate; 4401 without a valid
credential).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from voxloop.config.settings import Settings
from voxloop.server.limits import CLOSE_POLICY, CLOSE_TRY_AGAIN_LATER, RateLimiter
from voxloop.server.security import (
    CLOSE_UNAUTHORIZED,
    Auth,
    AuthError,
    Claims,
    MemoryLedger,
    TokenLedger,
    bearer,
    token_from,
)
from voxloop.session.principal import OPERATOR, Principal

OPENAI_KEY_PREFIX = "openai-insecure-api-key."  # how OpenAI's browser clients pass a key


class Refusal(Exception):
    def __init__(self, code: int, reason: str, retry_after_s: int | None = None) -> None:
        super().__init__(reason)
        self.code, self.reason, self.retry_after_s = code, reason, retry_after_s


@dataclass
class Admission:
    subprotocol: str | None  # to answer the client's offer with
    token: Claims | None = None  # the session token it came with, to spend (`spend`)

    @property
    def principal(self) -> Principal:
        """Whom the connection acts for: its token's user, else the operator (an API key,
        a vouched caller, or auth off)."""
        return self.token.principal if self.token is not None else OPERATOR


class Gate:
    def __init__(
        self,
        settings: Settings,
        clock: Callable[[], float] = time.monotonic,
        ledger: TokenLedger | None = None,
    ) -> None:
        """`ledger`: where spent tokens are kept (this process's memory by default)."""
        self.limits = settings.limits
        # What the models carry in real time (set once they are measured, at start-up).
        wanted = settings.limits.conversations
        self.capacity: int | None = wanted if isinstance(wanted, int) else None
        self.auth = Auth.from_settings(settings)
        self.ledger: TokenLedger = ledger or MemoryLedger()
        lim = self.limits
        self.connections = RateLimiter(lim.connections_per_ip_per_s, lim.connection_burst, clock)
        self.messages = RateLimiter(lim.messages_per_ip_per_s, lim.message_burst, clock)

    def at_capacity(self, live: int) -> Refusal | None:
        wait = self.limits.retry_after_s
        cap = self.capacity
        if cap is not None and cap < self.limits.max_sessions and live >= cap:
            return Refusal(
                CLOSE_TRY_AGAIN_LATER,
                f"server at capacity: its models answer {cap} conversations at once in real "
                f"time on this machine; retry after {wait} s",
                wait,
            )
        if live < self.limits.max_sessions:
            return None
        return Refusal(
            CLOSE_TRY_AGAIN_LATER,
            f"server at capacity ({self.limits.max_sessions} sessions); retry after {wait} s",
            wait,
        )

    def admit(
        self,
        *,
        ip: str,
        live: int,
        headers: Mapping[str, str],
        query: Mapping[str, str],
        subprotocols: Sequence[str],
        vouched: bool = False,
    ) -> Admission:
        """Let a WebSocket in, or raise `Refusal`. `vouched`: the caller proves who it is
        another way (a Twilio stream, with the token of its call in its `start`)."""
        if (full := self.at_capacity(live)) is not None:
            raise full
        if not self.connections.allow(ip):
            raise Refusal(CLOSE_POLICY, f"too many connections from {ip}; slow down")
        token, chosen = token_from(query.get("token"), subprotocols)
        claims = None
        try:
            if vouched:
                pass
            elif token is not None:
                claims = self.auth.check_token(token)
            elif (key := self._api_key(headers, subprotocols)) is not None:
                self.auth.check_api_key(key)  # server-side clients may present a key
            elif self.auth.enabled:
                raise Refusal(
                    CLOSE_UNAUTHORIZED,
                    "a session token is required: POST /api/tokens, then pass it as "
                    "?token= or the subprotocol voxloop.token.<token>",
                )
        except AuthError as exc:
            raise Refusal(exc.code, exc.message) from None
        if chosen is None:
            offered = [p for p in subprotocols if not p.startswith(OPENAI_KEY_PREFIX)]
            chosen = offered[0] if offered else None
        return Admission(chosen, claims)

    async def redeem(self, token: str | None) -> Principal:
        """Check and spend a token that came after the handshake (a Twilio call's, in its
        `start`), auth on or off; whom it acts for, or `Refusal`."""
        try:
            claims = self.auth.verify(token)
        except AuthError as exc:
            raise Refusal(exc.code, exc.message) from None
        await self.spend(Admission(None, claims))
        return claims.principal

    async def spend(self, admission: Admission) -> None:
        """A session token opens one connection: raise `Refusal` (4401) if this one's was
        used before, here or (through Redis) on another worker."""
        claims = admission.token
        if claims is None:
            return
        used = "this session token was used already; mint one per connection"
        await self.first_use(claims.jti, claims.expires_at, used)

    async def first_use(self, key: str, until: float, used: str) -> None:
        """Raise `Refusal` (4401, `used`) unless this is the first use of `key`."""
        try:
            first = await self.ledger.first_use(key, until)
        except ConnectionError as exc:  # the shared ledger is down: refuse, say why
            raise Refusal(
                CLOSE_TRY_AGAIN_LATER, f"cannot check the session token now: {exc}", 5
            ) from None
        if not first:
            raise Refusal(CLOSE_UNAUTHORIZED, used)

    @staticmethod
    def _api_key(headers: Mapping[str, str], subprotocols: Sequence[str]) -> str | None:
        for offered in subprotocols:
            if offered.startswith(OPENAI_KEY_PREFIX):
                return offered[len(OPENAI_KEY_PREFIX) :]
        return bearer(headers.get("authorization"), headers.get("x-api-key"))

    def message_allowed(self, ip: str) -> bool:
        return self.messages.allow(ip)
