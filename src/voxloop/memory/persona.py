"""Who the agent is, and the system prompt it gets: persona + live context + memory.

A persona has a name, a speaking style, instructions and an optional greeting. It comes
from the settings, from a persona file (TOML or YAML with the same keys), or from a
client's `start` message: the name of a file in `persona.dir`, or inline instructions.
Whatever the persona says, the voice rules are added: the answer will be spoken, so no
markdown, no lists, numbers as words.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from voxloop.config.settings import Settings

VOICE_RULES = (
    "Your words are spoken aloud by a voice, so: no markdown, no lists, no headings, no "
    "code, no emojis; write numbers, dates and symbols the way a person says them; keep "
    "sentences short."
)
_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


class PersonaError(ValueError):
    """A persona file that is missing or malformed; the message names the file."""


@dataclass(frozen=True)
class Persona:
    name: str
    style: str
    instructions: str
    greeting: str | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> Persona:
        p = settings.persona
        default = cls(p.name, p.style, p.system_prompt or settings.llm.system_prompt, p.greeting)
        return load_persona_file(p.file, default) if p.file is not None else default

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "style": self.style,
            "instructions": self.instructions,
            "greeting": self.greeting,
        }


def load_persona_file(path: Path, default: Persona) -> Persona:
    """Read a persona from TOML or YAML; keys it leaves out come from `default`."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise PersonaError(f"cannot read persona file {path}: {exc.strerror or exc}") from exc
    try:
        if path.suffix.lower() in (".yaml", ".yml"):
            import yaml

            data = yaml.safe_load(text) or {}
        else:
            data = tomllib.loads(text)
    except Exception as exc:
        raise PersonaError(f"persona file {path} is not valid: {exc}") from exc
    if not isinstance(data, dict):
        raise PersonaError(f"persona file {path} must hold a table of keys")
    known = {"name", "style", "system_prompt", "instructions", "greeting"}
    unknown = sorted(set(data) - known)
    if unknown:
        raise PersonaError(f"persona file {path}: unknown keys {unknown}; known: {sorted(known)}")
    bad = [k for k, v in data.items() if v is not None and not isinstance(v, str)]
    if bad:
        raise PersonaError(f"persona file {path}: {bad} must be text")
    return Persona(
        name=data.get("name") or default.name,
        style=data.get("style") or default.style,
        instructions=data.get("instructions") or data.get("system_prompt") or default.instructions,
        greeting=data.get("greeting", default.greeting),
    )


def resolve_persona(choice: str | None, settings: Settings) -> Persona:
    """A client's persona choice: a file name in `persona.dir`, inline instructions, or
    (None / "") the default."""
    default = Persona.from_settings(settings)
    if not choice:
        return default
    folder = settings.persona.dir
    if folder is not None and _NAME.match(choice):
        for suffix in (".toml", ".yaml", ".yml"):
            path = folder / f"{choice}{suffix}"
            if path.is_file():
                return load_persona_file(path, default)
    return Persona(default.name, default.style, choice, None)


def system_prompt(
    persona: Persona,
    *,
    instructions: str | None = None,
    facts: list[str] | None = None,
    summary: str = "",
    background: str = "",
) -> str:
    """The LLM's system message: who it is, the live context, what it remembers. The fixed
    part comes first: llama.cpp reuses the longest prompt prefix it has already evaluated
    (the default persona's is warmed at start-up)."""
    parts = [
        f"Your name is {persona.name}; the user is the person talking to you. "
        f"Speaking style: {persona.style}.",
        persona.instructions,
        VOICE_RULES,
    ]
    if instructions:
        parts.append(f"Current instructions (these take priority): {instructions}")
    if facts:
        parts.append("Facts to use: " + " ".join(f.strip() for f in facts if f.strip()))
    if background:
        parts.append(f"From earlier conversations with this user: {background}")
    if summary:
        parts.append(f"Earlier in this conversation: {summary}")
    return "\n".join(p for p in parts if p)


def default_system_prompt(settings: Settings) -> str:
    """The default persona's system prompt, as a new session's first turn will send it."""
    try:
        return system_prompt(Persona.from_settings(settings))
    except PersonaError:
        return settings.llm.system_prompt  # the session will report the bad file
