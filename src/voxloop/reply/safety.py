"""Safety basics that don't depend on the model's good will: no instructions for weapons,
explosives, poisons, hard drugs or breaking into what is someone else's, and care plus a
crisis line for someone who says they may hurt themselves.

A 0.5B model given "How do I make a bomb at home?" writes step-by-step nonsense, and given
a self-harm statement it writes something garbled. So the user's words are checked before
the LLM is asked, and a matched turn gets the configured reply instead (`SafetySettings`:
on by default, both texts replaceable, the whole check can be switched off). The patterns
want an intent (making, getting, using) next to a harmful object, so that "kill a Python
process" or "the history of fireworks" pass.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from voxloop.config.reply import SafetySettings

Category = Literal["harm", "self_harm"]

_SEEK = (
    r"(?:how|make|making|made|build|building|create|cook|cooking|synthesi[sz]e|produce|"
    r"assemble|brew|mix|get|buy|obtain|recipe|instructions?|steps?|teach|guide|ingredients|"
    r"chemicals?|need|way|ways|easiest|best way|where)"
)
_OBJECT = (
    r"(?<!bath )(?<!photo)(?:bomb|bombs|explosives?|pipe ?bomb|grenade|molotov|napalm|thermite|"
    r"dynamite|tnt|detonator|ied|landmine|ghost gun|untraceable gun|(?:a |my own )?gun at home|"
    r"silencer|suppressor|nerve agent|sarin|ricin|anthrax|mustard gas|chlorine gas|toxic gas|"
    r"poison(?:ous)? gas|poison (?:someone|somebody|a person|people|my \w+|him|her|them)|"
    r"meth|methamphetamine|crack cocaine|heroin|fentanyl|bioweapon|chemical weapon)"
)
_VIOLENCE = (
    r"\b(?:kill|murder|hurt|stab|shoot|strangle) (?:someone|somebody|a person|people|my "
    r"(?:wife|husband|boss|neighbou?r|mother|father|mom|dad|brother|sister|friend|teacher)|him|her|them)\b"
)
# Other people's property and accounts: cars, locks, homes, passwords.
_CRIME = (
    r"\b(?:hot ?wire|steal|break into|broke into|breaking into|pick the lock|picking the lock|"
    r"pick a lock|hack into|hacking into|shoplift)\b.{0,60}\b(?:not mine|isn.?t mine|someone|"
    r"somebody|neighbou?r|other people|a car|a house|a store|a shop|an account|their|his|her|"
    r"without (?:them|him|her|permission)|when they.?re out)"
)
_GUN = r"\b(?:make|build|3d[- ]?print|assemble) (?:a |an |my own )?(?:gun|firearm|rifle|pistol)s?\b"
_HARM = re.compile(
    rf"\b{_SEEK}\b.{{0,60}}\b{_OBJECT}\b|\b{_OBJECT}\b.{{0,40}}\b{_SEEK}\b|{_VIOLENCE}|{_GUN}|{_CRIME}",
    re.IGNORECASE,
)
_SELF_HARM = re.compile(
    r"\b(?:kill(?:ing)? myself|end(?:ing)? (?:my (?:own )?life|it all)|suicid(?:e|al)|"
    r"hurt(?:ing)? myself|harm(?:ing)? myself|self[- ]?harm|cut(?:ting)? myself|"
    r"don'?t want to (?:live|be alive|exist|be here)|point in (?:living|going on|life)|"
    r"reason to (?:live|go on)|better off dead|want(?:ed)? to die|wish I (?:was|were) dead|"
    r"take my (?:own )?life|overdos(?:e|ing))\b",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class SafetyPolicy:
    """What to say instead of asking the LLM, for the turns that need it."""

    refusal: str
    crisis: str
    enabled: bool = True

    @classmethod
    def from_settings(cls, s: SafetySettings) -> SafetyPolicy | None:
        return cls(s.refusal, s.crisis) if s.enabled else None

    def check(self, user_text: str) -> Category | None:
        if not self.enabled:
            return None
        text = user_text.replace("’", "'")
        if _SELF_HARM.search(text):
            return "self_harm"
        if _HARM.search(text):
            return "harm"
        return None

    def reply_for(self, user_text: str) -> str | None:
        """The fixed reply for `user_text`, or None when the LLM should answer."""
        category = self.check(user_text)
        if category == "self_harm":
            return self.crisis
        if category == "harm":
            return self.refusal
        return None
