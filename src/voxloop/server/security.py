"""Who may come in: API keys for the REST API and short-lived signed tokens for
WebSockets (browsers' `Host` and `Origin` are guard.py's). No web framework here;
endpoints.py and rest.py ask these questions of each request.

A token is `v1.<payload>.<signature>`: the payload is base64url JSON with its expiry
(`exp`, unix seconds), a random `jti`, the user it acts for (`sub`) and maybe the one
session it may open (`sid`); session/principal.py says what that allows. The signature
is HMAC-SHA256 over `v1.<payload>` with the server's token secret. Every comparison of a
secret is constant-time. Several workers or hosts accept each other's tokens when they
share `auth.token_secret`.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import json
import logging
import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from voxloop.session.principal import Principal

if TYPE_CHECKING:
    from voxloop.config.settings import Settings

log = logging.getLogger("voxloop.server.security")

VERSION = "v1"
SUBPROTOCOL_PREFIX = "voxloop.token."  # Sec-WebSocket-Protocol: voxloop.token.<token>
# WebSocket close codes (4000-4999 are the application's own).
CLOSE_UNAUTHORIZED = 4401


class AuthError(Exception):
    """Refused: `code` is the WebSocket close code (or the HTTP status / 4000 + status)."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message

    @property
    def http_status(self) -> int:
        return self.code - 4000 if self.code >= 4000 else self.code


def is_loopback(host: str) -> bool:
    """Is the server bound to this machine only? ("localhost" and 127.x / ::1.)"""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a name: assume it can be reached from outside


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass(frozen=True)
class Token:
    value: str
    expires_at: float
    user: str | None = None
    session_id: str | None = None


@dataclass(frozen=True)
class Claims:
    """What a valid token says: its id (spent on first use), its expiry, and whom it acts
    for (`user`; None: no user, as a phone call's token) in which session (None: any of
    the user's)."""

    jti: str
    expires_at: float
    user: str | None = None
    session_id: str | None = None

    @property
    def principal(self) -> Principal:
        return Principal(user=self.user, session_id=self.session_id)


class TokenLedger(Protocol):
    """Which token ids have been used. `first_use` is True once per id, until it expires;
    the ledger may forget an id after that (the token is refused as expired anyway)."""

    async def first_use(self, jti: str, expires_at: float) -> bool: ...


class MemoryLedger:
    """One process's ledger (workers that share Redis share `RedisTokenLedger`)."""

    def __init__(self, clock=time.time) -> None:
        self._spent: dict[str, float] = {}
        self.clock = clock

    async def first_use(self, jti: str, expires_at: float) -> bool:
        now = self.clock()
        if len(self._spent) > 1024:  # forget the expired ones now and then
            self._spent = {j: e for j, e in self._spent.items() if e > now}
        if jti in self._spent:
            return False
        self._spent[jti] = expires_at
        return True


class Auth:
    """The auth policy of one process, built from `[auth]` and the bind address."""

    def __init__(
        self,
        *,
        enabled: bool,
        api_keys: Sequence[str] = (),
        secret: bytes | None = None,
        ttl_s: float = 300.0,
        clock=time.time,
    ) -> None:
        self.enabled = enabled
        self._keys = [k.encode() for k in api_keys if k]
        self._secret = secret or secrets.token_bytes(32)
        self.ttl_s = ttl_s
        self.clock = clock

    @classmethod
    def from_settings(cls, settings: Settings) -> Auth:
        a = settings.auth
        enabled = a.enabled == "on" or (
            a.enabled == "auto" and not is_loopback(settings.server.host)
        )
        keys = [k.get_secret_value() for k in a.api_keys]
        if enabled and not keys:
            log.warning(
                "auth is on (the server listens on %s) but auth.api_keys is empty: nobody "
                "can mint a session token; set VOXLOOP_AUTH__API_KEYS",
                settings.server.host,
            )
        secret = a.token_secret.get_secret_value().encode() if a.token_secret else None
        if enabled and secret is None:
            log.info("auth.token_secret not set: tokens are valid on this process only")
        return cls(enabled=enabled, api_keys=keys, secret=secret, ttl_s=a.token_ttl_s)

    # -- API keys -------------------------------------------------------------------------

    def check_api_key(self, presented: str | None) -> None:
        """Raise `AuthError` (401) unless `presented` is one of the configured keys."""
        if not self.enabled:
            return
        if not presented:
            raise AuthError(4401, "an API key is required (Authorization: Bearer <key>)")
        given = presented.encode()
        # Compare with every key, always, so the time taken says nothing about which matched.
        ok = False
        for key in self._keys:
            ok |= hmac.compare_digest(given, key)
        if not ok:
            raise AuthError(4401, "the API key is not valid")

    # -- session tokens -------------------------------------------------------------------

    def mint(
        self, user: str | None, session_id: str | None = None, ttl_s: float | None = None
    ) -> Token:
        """A token that acts for `user` (and opens `session_id` only, when given). One
        with neither could open every session that has no user: there is no such token."""
        if user is None and session_id is None:
            raise ValueError("a session token acts for a user or opens one session")
        ttl = min(ttl_s or self.ttl_s, self.ttl_s)
        expires = self.clock() + ttl
        claims = {"exp": round(expires, 3), "jti": secrets.token_hex(8), "sub": user}
        if session_id is not None:
            claims["sid"] = session_id
        body = f"{VERSION}.{_b64(json.dumps(claims).encode())}"
        return Token(f"{body}.{self._sign(body)}", expires, user, session_id)

    def _sign(self, body: str) -> str:
        return _b64(hmac.new(self._secret, body.encode(), hashlib.sha256).digest())

    def check_token(self, token: str | None) -> Claims | None:
        """Raise `AuthError` (4401) for a missing, forged, malformed or expired token; its
        claims otherwise (None with auth off). Whether it was used already is the
        ledger's to say."""
        return self.verify(token) if self.enabled else None

    def verify(self, token: str | None) -> Claims:
        """`check_token`, with auth on or off (a Twilio call's token is checked always)."""
        if not token:
            raise AuthError(4401, "a session token is required (POST /api/tokens)")
        parts = token.split(".")
        if len(parts) != 3 or parts[0] != VERSION:
            raise AuthError(4401, "the session token is malformed")
        body = f"{parts[0]}.{parts[1]}"
        if not hmac.compare_digest(self._sign(body).encode(), parts[2].encode()):
            raise AuthError(4401, "the session token's signature is not valid")
        try:
            payload = json.loads(_unb64(parts[1]))
            expires, jti = float(payload["exp"]), str(payload["jti"])
            user, sid = payload.get("sub"), payload.get("sid")
            if not all(v is None or isinstance(v, str) for v in (user, sid)):
                raise TypeError
        except (ValueError, KeyError, TypeError, AttributeError):
            raise AuthError(4401, "the session token is malformed") from None
        if self.clock() >= expires:
            raise AuthError(4401, "the session token has expired; mint a new one")
        return Claims(jti, expires, user, sid)


def bearer(authorization: str | None, api_key_header: str | None = None) -> str | None:
    """The key from `Authorization: Bearer <key>` or `X-API-Key: <key>`."""
    if authorization and authorization.lower().startswith("bearer "):
        return authorization[7:].strip()
    return api_key_header


def token_from(
    query_token: str | None, subprotocols: Sequence[str]
) -> tuple[str | None, str | None]:
    """A WebSocket's token, from `?token=` or a `voxloop.token.<token>` subprotocol, and
    the subprotocol to answer with (a browser refuses a connection whose offered
    subprotocols all go unanswered)."""
    for offered in subprotocols:
        if offered.startswith(SUBPROTOCOL_PREFIX):
            chosen = "voxloop" if "voxloop" in subprotocols else offered
            return offered[len(SUBPROTOCOL_PREFIX) :], chosen
    return query_token, None
