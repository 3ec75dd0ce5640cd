"""A connected session's conversation: its stored record, its memory, persona and context.

The `Session` drives the audio; this is what it talks *about*. It opens (or resumes) the
record from the store, builds the LLM's system prompt from the persona, the live context
and the memory, folds old turns into the summary in the background, and writes every
change to the store through one ordered writer, so the audio loop never waits on a disk
or on Redis.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import replace
from typing import Any

from voxloop.config.settings import Settings
from voxloop.memory.history import History, summarize
from voxloop.memory.persona import Persona, resolve_persona, system_prompt
from voxloop.providers.base import LLMProvider, Message, ProviderInfo
from voxloop.store.base import (
    ID_RULE,
    SessionRecord,
    SessionStore,
    TurnRecord,
    valid_session_id,
)
from voxloop.store.memory import MemoryStore

log = logging.getLogger("voxloop.memory.conversation")

BACKGROUND_CHARS = 600  # what a new session may carry over from the user's past ones


class StoreWriter:
    """Runs store writes one after another on a background task: in order, off the audio
    path. A failed write is logged and reported; the conversation goes on."""

    def __init__(self, on_error: Callable[[Exception], None]) -> None:
        self._queue: asyncio.Queue[Callable[[], Awaitable[None]]] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self._on_error = on_error

    def submit(self, write: Callable[[], Awaitable[None]]) -> None:
        self._queue.put_nowait(write)
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name="store-writer")

    async def _run(self) -> None:
        while True:
            write = await self._queue.get()
            try:
                await write()
            except Exception as exc:
                log.exception("store write failed")
                self._on_error(exc)
            finally:
                self._queue.task_done()

    async def flush(self, timeout: float = 5.0) -> None:
        if self._task is not None and not self._task.done():
            try:
                await asyncio.wait_for(self._queue.join(), timeout)
            except TimeoutError:
                log.error("store writes still pending after %.0f s; giving up on them", timeout)

    async def close(self) -> None:
        await self.flush()
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)


class Canned(LLMProvider):
    """An "LLM" that says a fixed text: the persona's greeting goes through the same
    reply path (sentences, TTS, barge-in, history) as any answer."""

    name = "canned"

    def __init__(self, text: str) -> None:
        self.text = text

    def info(self) -> ProviderInfo:
        return ProviderInfo(self.name, "fixed text")

    async def generate(
        self, messages: Sequence[Message], *, max_tokens=None, temperature=None
    ) -> AsyncIterator[str]:
        yield self.text


class Conversation:
    def __init__(
        self,
        record: SessionRecord,
        settings: Settings,
        store: SessionStore,
        on_error: Callable[[str, str], None],
    ) -> None:
        self.record = record
        self.settings = settings
        self.store = store
        self.on_error = on_error
        self.history = History(
            turns=[t for t in record.turns if t.turn_id > record.cleared_upto],
            budget_tokens=settings.session.memory_tokens,
            summary=record.summary,
            summarized_upto=record.summarized_upto,
            cleared_upto=record.cleared_upto,
        )
        self.last_turn_id = max((t.turn_id for t in record.turns), default=record.cleared_upto)
        self.persona = self._resolve(record.persona)
        self.background = ""
        self.writer = StoreWriter(lambda exc: on_error("store_failed", f"saving failed: {exc}"))
        self._summary_task: asyncio.Task[None] | None = None

    @classmethod
    async def open(
        cls,
        store: SessionStore,
        settings: Settings,
        session_id: str,
        on_error: Callable[[str, str], None],
        *,
        user_id: str | None = None,
    ) -> tuple[Conversation, bool]:
        """Resume `session_id` from the store, or start it. True if it was resumed."""
        record = await store.load(session_id)
        resumed = record is not None
        if record is None:
            record = SessionRecord(session_id, user_id=user_id)
        elif user_id and not record.user_id:
            record.user_id = user_id
        conv = cls(record, settings, store, on_error)
        if record.user_id and not record.turns:
            conv.background = await conv._user_background()
        conv.save_meta()
        return conv, resumed

    @classmethod
    async def resume(
        cls,
        store: SessionStore,
        settings: Settings,
        session_id: str | None,
        on_error: Callable[[str, str], None],
        *,
        user_id: str | None,
        new_id: str,
    ) -> tuple[Conversation, bool]:
        """What a client's 'start' asks for: the named session (else a new one, `new_id`),
        with bad ids refused and a store that is down reported; the conversation then
        lives in memory only, so the user can talk anyway."""
        if session_id and not valid_session_id(session_id):
            on_error("bad_session_id", f"session_id must be {ID_RULE}")
            session_id = None
        if user_id and not valid_session_id(user_id):
            on_error("bad_user_id", f"user_id must be {ID_RULE}")
            user_id = None
        sid = session_id or new_id
        try:
            return await cls.open(store, settings, sid, on_error, user_id=user_id)
        except Exception as exc:
            log.exception("cannot open the session in the store")
            on_error("store_unavailable", f"conversation not saved: {exc}")
            return await cls.open(MemoryStore(), settings, sid, on_error)

    # -- what the LLM sees ----------------------------------------------------------------

    @property
    def session_id(self) -> str:
        return self.record.session_id

    def _resolve(self, choice: str | None) -> Persona:
        try:
            return resolve_persona(choice, self.settings)
        except ValueError as exc:  # a broken persona file: say so, use the default prompt
            self.on_error("bad_persona", str(exc))
            return Persona("voxloop", "friendly and brief", self.settings.llm.system_prompt)

    def system_prompt(self) -> str:
        return system_prompt(
            self.persona,
            instructions=self.record.instructions,
            facts=self.record.facts,
            summary=self.history.summary,
            background=self.background,
        )

    def set_persona(self, choice: str | None) -> None:
        self.record.persona = choice or None
        self.persona = self._resolve(self.record.persona)
        self.save_meta()

    def set_context(
        self,
        *,
        instructions: str | None = None,
        facts: list[str] | None = None,
        persona: str | None = None,
    ) -> None:
        if instructions is not None:
            self.record.instructions = instructions or None
        if facts is not None:
            self.record.facts = list(facts)
        if persona is not None:
            self.set_persona(persona)
        self.save_meta()

    async def refresh(self) -> None:
        """Pick up context another worker wrote (PUT .../context) since we loaded."""
        await self.writer.flush()  # our own changes land first: never read them back stale
        try:
            fresh = await self.store.load_meta(self.session_id)
        except Exception as exc:  # the store is down: go on with what we have
            log.warning("could not refresh the context: %r", exc)
            return
        if fresh is None:
            return
        if fresh.persona != self.record.persona:
            self.record.persona = fresh.persona
            self.persona = self._resolve(fresh.persona)
        self.record.instructions, self.record.facts = fresh.instructions, fresh.facts

    async def _user_background(self) -> str:
        """What this user's earlier sessions were about (their summaries, or last turns)."""
        user_id = self.record.user_id
        assert user_id is not None
        try:
            past = await self.store.user_sessions(user_id, limit=4)
        except Exception as exc:
            log.warning("could not read the user's past sessions: %r", exc)
            return ""
        notes = []
        for rec in past:
            if rec.session_id == self.session_id:
                continue
            if rec.summary:
                notes.append(rec.summary)
            elif rec.turns:
                last = rec.turns[-1]
                notes.append(f"The user said: {last.user} The assistant said: {last.assistant}")
        return " ".join(notes)[:BACKGROUND_CHARS]

    # -- changes and the store ------------------------------------------------------------

    def save_meta(self) -> None:
        self.record.updated_at = time.time()
        self.record.summary = self.history.summary
        self.record.summarized_upto = self.history.summarized_upto
        self.record.cleared_upto = self.history.cleared_upto
        snapshot = replace(self.record, turns=[], facts=list(self.record.facts))
        self.writer.submit(lambda: self.store.save_meta(snapshot))

    def turn_done(self, turn: TurnRecord, then: Callable[[], None]) -> None:
        """A turn finished (as heard): store it, then call `then` (which tells the client
        the turn is complete: by then it survives a crash of the server)."""

        async def write() -> None:
            try:
                await self.store.append_turn(self.session_id, turn)
            finally:
                then()

        self.writer.submit(write)

    def reset(self) -> None:
        self.cancel_summary()
        self.history.clear()
        self.save_meta()

    def summarize_later(self, llm: LLMProvider) -> None:
        """If turns have left the memory window, summarize them now, in the background.
        `cancel_summary` stops it the moment the user speaks: it must never delay a reply."""
        if not self.settings.session.summarize or self._summary_task is not None:
            return
        if not self.history.overflow():
            return
        self._summary_task = asyncio.create_task(self._summarize(llm), name="summary")

    async def _summarize(self, llm: LLMProvider) -> None:
        try:
            turns = self.history.overflow()
            summary = await summarize(llm, self.history.summary, turns)
            if summary:
                self.history.summary = summary
                self.history.summarized_upto = turns[-1].turn_id
                self.save_meta()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # no summary this time; the window still holds
            log.warning("summary failed: %r", exc)
        finally:
            self._summary_task = None

    def cancel_summary(self) -> None:
        task, self._summary_task = self._summary_task, None
        if task is not None:
            task.cancel()

    def options(self) -> dict[str, Any]:
        return {"persona": self.record.persona or self.persona.instructions}

    def context(self) -> dict[str, Any]:
        return {
            "persona": self.persona.to_json(),
            "instructions": self.record.instructions,
            "facts": list(self.record.facts),
        }

    async def close(self) -> None:
        self.cancel_summary()
        self.record.updated_at = time.time()
        await self.writer.close()
