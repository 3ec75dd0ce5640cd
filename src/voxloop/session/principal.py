"""Whose conversation it is. A connection acts for a principal: the operator (an API key,
a signed Twilio call, or any client of a server with auth off) may open any session as
any user; a session token acts for the one user it was minted for, and maybe for one
session only. A session belongs to its `user_id`: a token opens only its user's sessions,
so it reads, extends and resets only them, and its `user_id` memory is that user's.

No web framework and no token format here: security.py turns a token into a `Principal`,
the session asks it what a `start` may name and checks the owner before it opens or
takes over anything.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

from voxloop.store.base import SessionStore

CLOSE_FORBIDDEN = 4403
CLOSE_TRY_AGAIN_LATER = 1013


class Forbidden(Exception):
    """A `start` asked for what its principal may not open; `code` closes the connection."""

    def __init__(self, message: str, code: int = CLOSE_FORBIDDEN) -> None:
        super().__init__(message)
        self.message, self.code = message, code


@dataclass(frozen=True)
class Principal:
    """Who a connection acts for. `user`: the user whose sessions and memory it may use
    (None with `operator`: anyone's; None without it: no user's, e.g. a phone call's
    token). `session_id`: the one session it may open (None: any of the user's)."""

    operator: bool = False
    user: str | None = None
    session_id: str | None = None

    def names(self, session_id: str | None, user_id: str | None) -> tuple[str | None, str | None]:
        """The session and user a `start` opens, or `Forbidden`: a token's own user and
        session stand in for those the client left out, and others are refused."""
        if self.operator:
            return session_id, user_id
        if user_id and user_id != self.user:
            raise Forbidden(f"this session token acts for another user, not {user_id!r}")
        if self.session_id and session_id and session_id != self.session_id:
            raise Forbidden(f"this session token opens session {self.session_id!r} only")
        return self.session_id or session_id, self.user

    def may_open(self, owner: str | None) -> bool:
        """May it open a session that belongs to `owner` (the session's user_id)?"""
        return self.operator or owner == self.user


OPERATOR = Principal(operator=True)


class Owned(Protocol):
    """A live session, as far as ownership goes."""

    @property
    def session_id(self) -> str: ...

    @property
    def owner(self) -> str | None: ...


async def check_owner(
    principal: Principal, session_id: str, live: Iterable[Owned], store: SessionStore
) -> None:
    """Raise `Forbidden` unless `principal` may open `session_id`: a live session's owner
    counts first (its record may not be stored yet), then the store's. A store that cannot
    answer refuses a token (1013: try again), since nobody can say whose the session is."""
    if principal.operator:
        return
    for other in live:
        if other.session_id == session_id:
            if not principal.may_open(other.owner):
                raise Forbidden(f"session {session_id!r} belongs to another user")
            return
    try:
        record = await store.load_meta(session_id)
    except Exception as exc:
        raise Forbidden(
            f"cannot check whose session {session_id!r} is now: {exc}", CLOSE_TRY_AGAIN_LATER
        ) from None
    if record is not None and not principal.may_open(record.user_id):
        raise Forbidden(f"session {session_id!r} belongs to another user")
