"""Personas from settings and files, the voice rules, the greeting."""

from __future__ import annotations

import pytest

from voxloop.config.settings import Settings
from voxloop.memory.persona import (
    VOICE_RULES,
    Persona,
    PersonaError,
    load_persona_file,
    resolve_persona,
    system_prompt,
)
from voxloop.testing.fakes import FakeLLM

from engine_helpers import Driver, make_services

DEFAULT = Persona("voxloop", "friendly", "Be helpful.")


def test_toml_and_yaml_persona_files(tmp_path):
    toml = tmp_path / "tutor.toml"
    toml.write_text('name = "Ada"\nstyle = "patient"\nsystem_prompt = "Teach maths."\n')
    yaml = tmp_path / "pirate.yaml"
    yaml.write_text("name: Jack\ngreeting: Ahoy!\ninstructions: Talk like a pirate.\n")
    assert load_persona_file(toml, DEFAULT) == Persona("Ada", "patient", "Teach maths.", None)
    assert load_persona_file(yaml, DEFAULT) == Persona(
        "Jack", "friendly", "Talk like a pirate.", "Ahoy!"
    )


@pytest.mark.parametrize(
    "content, problem",
    [
        ("name = ", "not valid"),
        ('nmae = "typo"', "unknown keys ['nmae']"),
        ("name = 3", "must be text"),
    ],
)
def test_bad_persona_files_name_the_problem(tmp_path, content, problem):
    path = tmp_path / "bad.toml"
    path.write_text(content)
    with pytest.raises(PersonaError, match=r"bad\.toml") as err:
        load_persona_file(path, DEFAULT)
    assert problem in str(err.value)


def test_a_missing_persona_file_is_named(tmp_path):
    with pytest.raises(PersonaError, match=r"nope\.toml"):
        load_persona_file(tmp_path / "nope.toml", DEFAULT)


def test_voice_rules_are_always_in_the_prompt():
    prompt = system_prompt(
        Persona("Ada", "patient", "Use markdown tables and bullet lists."),
        instructions="Interview the user.",
        facts=["The user is Ann."],
        summary="They talked about tea.",
    )
    assert VOICE_RULES in prompt
    # The fixed part leads (its evaluated prefix is reused); live context follows it.
    assert prompt.index("Your name is Ada") < prompt.index(VOICE_RULES) < prompt.index("Interview")
    assert "The user is Ann." in prompt and "They talked about tea." in prompt


def test_clients_pick_a_persona_by_name_or_give_instructions(tmp_path):
    (tmp_path / "tutor.toml").write_text('name = "Ada"\ninstructions = "Teach."\n')
    settings = Settings(persona={"dir": tmp_path})
    assert resolve_persona("tutor", settings).name == "Ada"
    inline = resolve_persona("Answer like a poet.", settings)
    assert inline.instructions == "Answer like a poet." and inline.name == "voxloop"
    assert resolve_persona(None, settings).instructions == settings.llm.system_prompt


async def test_a_new_session_is_greeted_and_a_resumed_one_is_not():
    llm = FakeLLM(["Fine."])
    svc = make_services(llm=llm, persona={"greeting": "Hello! How can I help?"})
    d = await Driver.start(svc, session_id="greet-me")
    await d.run_for(5.0)
    turns = d.session.state.history.turns
    assert [(t.user, t.assistant) for t in turns] == [("", "Hello! How can I help?")]
    assert d.audio_bytes(1) > 0
    assert llm.requests == []  # the greeting is said, not generated
    await d.session.close()
    again = await Driver.start(svc, session_id="greet-me")
    await again.run_for(3.0)
    assert again.events("session")[0]["resumed"] is True
    assert again.audio_bytes() == 0
