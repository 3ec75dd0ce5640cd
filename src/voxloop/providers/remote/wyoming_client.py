"""The client side of a Wyoming connection, shared by the STT and TTS providers
(`wyoming.py`): connecting, sending, receiving with caps, and asking a server what it runs.
Every failure is a `ProviderCallError` that says which server and whether a retry helps.
"""

from __future__ import annotations

import asyncio
import errno
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any, Self

from voxloop.clock import Clock, RealClock
from voxloop.errors import ProviderCallError
from voxloop.providers.base import ProviderInfo
from voxloop.providers.remote.wyoming_protocol import (
    Event,
    Limits,
    ProtocolError,
    read_event,
    tcp_address,
    write_event,
)
from voxloop.providers.resilience import CircuitBreaker, RetryPolicy, resilient_stream

log = logging.getLogger(__name__)


class Connection:
    """One TCP connection to a Wyoming server, its failures as `ProviderCallError`s that
    say where they happened and whether a retry makes sense."""

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        where: str,
        limits: Limits,
        timeout_s: float,
    ) -> None:
        self.reader, self.writer, self.where, self.limits = reader, writer, where, limits
        self.timeout_s = timeout_s  # for a write: a server that stops reading is stuck

    @classmethod
    async def open(cls, host: str, port: int, where: str, timeout_s: float, limits: Limits) -> Self:
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(host, port, limit=limits.header_bytes), timeout_s
            )
        except TimeoutError:
            raise ProviderCallError(
                f"cannot connect to {where}: no answer within {timeout_s:g} s", retryable=True
            ) from None
        except OSError as exc:
            refused = isinstance(exc, ConnectionRefusedError) or exc.errno == errno.ECONNREFUSED
            reason = (
                "connection refused (is the server running, on that port?)"
                if refused or "refused" in str(exc).lower()
                else exc.strerror or str(exc)
            )
            raise ProviderCallError(
                f"cannot connect to {where}: {reason}", retryable=True
            ) from None
        return cls(reader, writer, where, limits, timeout_s)

    async def send(self, event: Event) -> None:
        try:
            await asyncio.wait_for(write_event(self.writer, event), self.timeout_s)
        except TimeoutError:
            raise ProviderCallError(
                f"{self.where} took no data for {self.timeout_s:g} s", retryable=True
            ) from None
        except OSError as exc:  # reset, broken pipe
            raise ProviderCallError(
                f"{self.where} dropped the connection: {exc.strerror or exc}", retryable=True
            ) from None

    async def receive(self) -> Event:
        """The next event; the server's `error` event, garbage or an early end as errors."""
        try:
            event = await read_event(self.reader, self.limits)
        except ProtocolError as exc:
            raise ProviderCallError(
                f"{self.where} sent something that is not Wyoming: {exc}", retryable=False
            ) from None
        except OSError as exc:
            raise ProviderCallError(
                f"{self.where} dropped the connection: {exc.strerror or exc}", retryable=True
            ) from None
        if event is None:
            raise ProviderCallError(f"{self.where} closed the connection early", retryable=True)
        if event.type == "error":
            text, code = event.data.get("text", "no reason given"), event.data.get("code")
            raise ProviderCallError(
                f"{self.where} answered an error: {text}" + (f" ({code})" if code else ""),
                retryable=False,
            )
        return event

    async def receive_type(self, kind: str) -> Event:
        """The next event of `kind`; others (pings, streaming extras) are skipped."""
        while (event := await self.receive()).type != kind:
            log.debug("skipped a %s event from %s", event.type, self.where)
        return event

    def close(self) -> None:
        self.writer.close()


class WyomingRemote:
    """What both providers share: the address, caps, retry policy, breaker and clock, and
    what the server said about itself (`describe`)."""

    def __init__(
        self,
        base_url: str | None,
        *,
        setting: str,
        kind: str,
        policy: RetryPolicy | None = None,
        clock: Clock | None = None,
        limits: Limits | None = None,
    ) -> None:
        self.host, self.port = tcp_address(base_url, setting)
        shown = f"[{self.host}]" if ":" in self.host else self.host
        self.url = f"tcp://{shown}:{self.port}"
        self.where = f"the Wyoming {kind} server at {self.url}"
        self.policy = policy or RetryPolicy()
        self.clock = clock or RealClock()
        self.breaker = CircuitBreaker(clock=self.clock)
        self.limits = limits or Limits()
        self.model: str | None = None  # from the server's `info`, once asked

    async def connect(self) -> Connection:
        return await Connection.open(
            self.host, self.port, self.where, self.policy.first_item_timeout_s, self.limits
        )

    def stream(self, make: Callable[[], AsyncIterator[Any]], policy: RetryPolicy | None = None):
        return resilient_stream(
            make,
            name=self.where,
            policy=policy or self.policy,
            breaker=self.breaker,
            clock=self.clock,
        )

    async def describe(self, domain: str) -> str:
        """Ask the server what it runs; remembers "program (model)" of its first `domain`
        ("asr" or "tts") program for `info()`."""
        conn = await self.connect()
        try:
            await conn.send(Event("describe"))
            info = await asyncio.wait_for(
                conn.receive_type("info"), self.policy.first_item_timeout_s
            )
        except TimeoutError:
            raise ProviderCallError(
                f"{self.where} did not describe itself within "
                f"{self.policy.first_item_timeout_s:g} s",
                retryable=True,
            ) from None
        finally:
            conn.close()
        self.model = _program(info.data, domain)
        if self.model is None:
            raise ProviderCallError(f"{self.where} serves no {domain} program", retryable=False)
        return self.model

    async def warmup(self, domain: str) -> None:
        """Describe the server if it is up; a server that starts later is no reason to
        refuse to start (the first request then says what is wrong)."""
        try:
            await self.describe(domain)
        except ProviderCallError as exc:
            log.warning("%s", exc)

    def info(self, name: str) -> ProviderInfo:
        return ProviderInfo(name, self.model or "(not described yet)", source=self.url)


def _program(data: dict[str, Any], domain: str) -> str | None:
    programs = data.get(domain)
    if not isinstance(programs, list) or not programs or not isinstance(programs[0], dict):
        return None
    program = programs[0]
    items = program.get("models" if domain == "asr" else "voices") or []
    first = items[0].get("name") if items and isinstance(items[0], dict) else None
    name = str(program.get("name", "?"))
    return f"{name} ({first})" if first else name
