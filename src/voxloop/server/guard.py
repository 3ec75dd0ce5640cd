"""Web pages may not use the server behind the user's back: every HTTP request and
WebSocket must name this server in `Host` and, when a browser sends one, come from an
allowed `Origin`.

A server on 127.0.0.1 with auth off trusts whoever reaches it, and any web page the user
opens can reach it: a cross-site WebSocket (the page's `Origin` is foreign) or DNS
rebinding (the page's own name resolves to 127.0.0.1, so the `Origin` matches the `Host`,
but the `Host` is the page's name). So:

- **Host:** on a loopback bind, only loopback names pass (`localhost`, `127.0.0.1`,
  `[::1]`, any port), plus `server.allowed_hosts`. Elsewhere `server.allowed_hosts`, when
  set, is the list.
- **Origin:** the server's own (the `Host` it was reached by) or one in `auth.origins`, on
  every bind, with auth on or off. Clients that send none (not browsers) pass.

Refused: HTTP 403, WebSocket close 4403, each with a reason that names the setting. A
pure ASGI middleware, so the rule holds for every route, the static app included.
"""

from __future__ import annotations

import ipaddress
import json
import logging
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import Any
from urllib.parse import urlsplit

from voxloop.server.security import is_loopback
from voxloop.session.principal import CLOSE_FORBIDDEN

log = logging.getLogger("voxloop.server.guard")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


def hostname(host: str) -> str:
    """`Host` without its port, lower case; IPv6 without brackets."""
    host = host.strip().lower()
    if host.startswith("["):
        return host[1 : host.find("]")] if "]" in host else host[1:]
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def _is_loopback_name(name: str) -> bool:
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


class SitePolicy:
    """Which `Host` and `Origin` headers this server answers."""

    def __init__(
        self, *, bind_host: str, allowed_hosts: Iterable[str] = (), origins: Iterable[str] = ()
    ) -> None:
        self.loopback = is_loopback(bind_host)
        self.hosts = {hostname(h) for h in allowed_hosts}
        self.origins = {o.rstrip("/").lower() for o in origins}

    def problem(self, host: str | None, origin: str | None) -> str | None:
        """Why a request with these headers is refused, or None."""
        if host is not None and not self._host_ok(hostname(host)):
            return (
                f"host {host!r} is not this server's (server.allowed_hosts): a loopback "
                "server answers only to localhost names"
            )
        if origin is not None and not self._origin_ok(origin.rstrip("/").lower(), host):
            return f"origin {origin!r} is not allowed (auth.origins)"
        return None

    def _host_ok(self, name: str) -> bool:
        if "*" in self.hosts or name in self.hosts:
            return True
        if self.loopback:
            return _is_loopback_name(name)
        return not self.hosts  # off loopback, no list: any name (auth guards the rest)

    def _origin_ok(self, origin: str, host: str | None) -> bool:
        if "*" in self.origins or origin in self.origins:
            return True
        if origin == "null":
            return False  # a sandboxed frame or a file: never the server's own page
        return host is not None and urlsplit(origin).netloc == host.strip().lower()


class SiteGuard:
    """ASGI middleware applying a `SitePolicy` to every HTTP request and WebSocket."""

    def __init__(self, app: ASGIApp, policy: SitePolicy) -> None:
        self.app, self.policy = app, policy

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        problem = self.policy.problem(headers.get("host"), headers.get("origin"))
        if problem is None:
            await self.app(scope, receive, send)
            return
        client = scope.get("client") or ("?", 0)
        log.warning("refused: %s", problem, extra={"client": client[0], "path": scope["path"]})
        if scope["type"] == "http":
            body = json.dumps({"detail": problem}).encode()
            await send(
                {
                    "type": "http.response.start",
                    "status": 403,
                    "headers": [
                        (b"content-type", b"application/json"),
                        (b"content-length", str(len(body)).encode()),
                    ],
                }
            )
            await send({"type": "http.response.body", "body": body})
            return
        await receive()  # websocket.connect
        # Accepted first, so that a browser sees the close code and the reason.
        await send({"type": "websocket.accept"})
        await send({"type": "websocket.close", "code": CLOSE_FORBIDDEN, "reason": problem[:120]})
