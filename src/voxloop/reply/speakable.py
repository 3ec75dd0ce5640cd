"""Text a voice can say: markdown, lists, symbols, units, URLs and emojis turned into words
before they reach TTS.

The prompt asks the model for plain spoken text, but small models ignore it, and whatever
they write, the voice must not read out "asterisk", spell a URL letter by letter or say
"212 degrees F-100 degrees C". Plain digits stay digits: the voices read them as words
(espeak-ng), and "1969" said as a year beats any rule of ours. `unspeakable()` names what
would still trip a voice; the answer benchmark counts it.
"""

from __future__ import annotations

import re
from collections.abc import Callable

_ODD = r"[^\x00-\x7f\u00c0-\u024f\u2018\u2019\u2013\u2014\u2026]"
_NUM = r"((?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?)"

_CODE_BLOCK = re.compile(r"```.*?(```|$)", re.DOTALL)
_IMAGE_OR_LINK = re.compile(r"!?\[([^\]]*)\]\([^)]*\)")
_URL = re.compile(
    r"\b(?:https?://|www\.)(?:www\.)?([A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+)"
    r"(?:[/?#:]\S*?)?(?=[.,;:!?)]*(?:\s|$))"
)
_EMAIL = re.compile(r"\b([\w.+-]+)@([A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+)\b")
_LINE_MARKERS = re.compile(
    r"^[ \t]*(?:(?:#{1,6}|>|[-*•+])(?:[ \t]+|$)|(?:\d{1,3}|[a-z])[.)][ \t]+(?=\S))+",
    re.MULTILINE,
)
_EMPHASIS = re.compile(r"\*\*|__|(?<!\w)_(?=\w)|(?<=\w)_(?!\w)|\*|`+|~~")
_EMOJI = re.compile(
    "[\U0001f000-\U0001faff\U00002600-\U000027bf\U00002b00-\U00002bff"
    "\U0001f1e6-\U0001f1ff\ufe0f\u200d\u20e3\u2300-\u23ff\u2190-\u21ff\u25a0-\u25ff]"
)

_UNITS = {
    "km/h": "kilometers per hour", "kph": "kilometers per hour", "mph": "miles per hour",
    "m/s": "meters per second", "km²": "square kilometers", "m²": "square meters",
    "km": "kilometers", "cm": "centimeters", "mm": "millimeters", "m": "meters",
    "mi": "miles", "ft": "feet", "kg": "kilograms", "mg": "milligrams", "g": "grams",
    "lbs": "pounds", "lb": "pounds", "oz": "ounces", "ml": "milliliters", "mL": "milliliters",
    "l": "liters", "L": "liters", "kWh": "kilowatt hours", "kW": "kilowatts", "W": "watts",
    "GB": "gigabytes", "MB": "megabytes", "TB": "terabytes", "KB": "kilobytes",
    "GHz": "gigahertz", "MHz": "megahertz", "Hz": "hertz", "hrs": "hours", "hr": "hours",
    "mins": "minutes", "min": "minutes", "sec": "seconds", "ms": "milliseconds",
}  # fmt: skip
_UNIT = re.compile(
    _NUM
    + r"\s?("
    + "|".join(re.escape(u) for u in sorted(_UNITS, key=len, reverse=True))
    + r")(?![\w²/])"
)
_CURRENCY = {"$": ("dollar", "cent"), "€": ("euro", "cent"), "£": ("pound", "penny")}
_MONEY = re.compile(
    r"([$€£])\s?(\d{1,3}(?:,\d{3})+|\d+)(?:\.(\d+))?"
    r"(?:\s?(thousand|million|billion|trillion|k)\b)?"
)
_FRACTIONS = {
    "1/2": "one half", "1/3": "one third", "2/3": "two thirds", "1/4": "one quarter",
    "3/4": "three quarters", "1/8": "one eighth", "1/5": "one fifth",
}  # fmt: skip
_WORDS = {
    "e.g.": "for example", "i.e.": "that is", "etc.": "and so on", "vs.": "versus",
    "approx.": "about",
}  # fmt: skip


def _plural(word: str, amount: str) -> str:
    if amount.replace(",", "") == "1":
        return word
    return "pence" if word == "penny" else word + "s"


def _money(m: re.Match[str]) -> str:
    major, minor = _CURRENCY[m.group(1)]
    whole, cents, scale = m.group(2), m.group(3), m.group(4)
    if scale or (cents and len(cents) != 2):
        amount = f"{whole}.{cents}" if cents else whole
        scale = {"k": " thousand", None: ""}.get(scale, f" {scale}")
        return f"{amount}{scale} {major}s"
    said = f"{whole} {_plural(major, whole)}"
    if cents and cents != "00":
        said += f" {int(cents)} {_plural(minor, str(int(cents)))}"
    return said


def _unit(m: re.Match[str]) -> str:
    number, unit = m.group(1), m.group(2)
    name = _UNITS[unit]
    if number == "1" and " per " not in name:
        name = "foot" if name == "feet" else name.removesuffix("s")
    return f"{number} {name}"


def _url_bare(m: re.Match[str]) -> str:
    return f"{m.group(1)} dot {m.group(2).replace('.', ' dot ')}"


def _url(m: re.Match[str]) -> str:
    return m.group(1).replace(".", " dot ")


_RULES: list[tuple[re.Pattern[str], str | Callable[[re.Match[str]], str]]] = [
    (_CODE_BLOCK, " "),
    (_IMAGE_OR_LINK, r"\1"),
    (_EMAIL, lambda m: f"{m.group(1)} at {m.group(2).replace('.', ' dot ')}"),
    (_URL, _url),
    (re.compile(r"\b[a-z][a-z0-9+.-]*://\S*", re.IGNORECASE), " "),  # other schemes
    (re.compile(r"\b([A-Za-z0-9-]+)\.(com|org|net|io|gov|edu|co\.uk)\b"), _url_bare),
    (_LINE_MARKERS, ""),
    (re.compile(r"(?<=[^\s.,;:!?])[ \t]*\n"), ". "),  # a line (a list item) is a sentence
    (re.compile(r"^\s*\|?(\s*:?-{3,}:?\s*\|)+\s*$", re.MULTILINE), ""),  # table rules
    (_EMPHASIS, ""),
    (_EMOJI, ""),
    (re.compile(r"(-?\d+(?:\.\d+)?)\s?[°º]\s?C\b"), r"\1 degrees Celsius"),
    (re.compile(r"(-?\d+(?:\.\d+)?)\s?[°º]\s?F\b"), r"\1 degrees Fahrenheit"),
    (re.compile(r"[°º]"), " degrees"),
    (re.compile(_NUM + r"\s?%"), r"\1 percent"),
    (re.compile(r"%"), " percent"),
    (_MONEY, _money),
    (re.compile(r"¥\s?" + _NUM), r"\1 yen"),
    (re.compile(r"₹\s?" + _NUM), r"\1 rupees"),
    (re.compile(r"\b24/7\b"), "twenty-four seven"),
    (re.compile(r"(\d) (\d/\d)\b"), r"\1 and \2"),
    (re.compile(r"(?<![\d/])(\d)/(\d)(?![\d/])"), lambda m: _FRACTIONS.get(m.group(0), m[0])),
    (_UNIT, _unit),
    (re.compile(r"²"), " squared"),
    (re.compile(r"³"), " cubed"),
    (re.compile(r"(?<![\w.])(\d+(?:\.\d+)?)\s?[x×]\s?(\d+(?:\.\d+)?)(?![\w.])"), r"\1 times \2"),
    (re.compile(r"(\d)\s?÷\s?(\d)"), r"\1 divided by \2"),
    (re.compile(r"(\d)\s?\*\s?(\d)"), r"\1 times \2"),
    (re.compile(r"(\d)\s?\+\s?(\d)"), r"\1 plus \2"),
    (re.compile(r"(\d)\s+[-−]\s+(\d)"), r"\1 minus \2"),
    (re.compile(r"(\d)\s?[-–—]\s?(\d)"), r"\1 to \2"),  # a range: 5-10
    (re.compile(r"\s?=\s?"), " equals "),
    (re.compile(r"(\d)\s?/\s?(\d)"), r"\1 over \2"),
    (re.compile(r"\^"), " to the power of "),
    (re.compile(r"#(\d)"), r"number \1"),
    (re.compile(r"~\s?(\d)"), r"about \1"),
    (re.compile(r"\s?&\s?"), " and "),
    (re.compile(r"(?<=\w)/(?=\w)"), " or "),
    (re.compile(r"\s?@\s?"), " at "),
    (re.compile(r"\s?(<|≤)\s?(?=\d)"), " less than "),
    (re.compile(r"\s?(>|≥)\s?(?=\d)"), " more than "),
    (re.compile(r"[→⇒]"), " to "),
    (re.compile(r"\s*[(\[{]\s*"), ", "),
    (re.compile(r"\s*[)\]}]"), ","),
    (re.compile(r"[\"“”«»„|\\<>{}\[\]#*_~^$€£¥₹/+×÷²³→`•¡¿]"), " "),
    (re.compile(r"(?<!\w)'(?=\w)|(?<=\w)'(?!\w)(?!s\b)"), ""),  # 'quoted' -> quoted
    # Other scripts (a small model's stray "番茄"): an English voice cannot say them.
    (re.compile(_ODD), " "),
]
_TIDY: list[tuple[re.Pattern[str], str]] = [
    (re.compile(r"\s+"), " "),
    (re.compile(r"\s+([,.!?;:])"), r"\1"),
    (re.compile(r"([,;:])(?:\s*[,;:])+"), r"\1"),
    (re.compile(r"[,;:]\s*([.!?])"), r"\1"),
    (re.compile(r"^(?:[\s,;:.]|-\s)+"), ""),
    (re.compile(r"[\s,;:]+$"), ""),
]


def speakable(text: str) -> str:
    """The text as a voice should say it (see the module docstring)."""
    for short, long in _WORDS.items():
        text = re.sub(rf"(?<!\w){re.escape(short)}", long, text, flags=re.IGNORECASE)
    for pattern, repl in _RULES:
        text = pattern.sub(repl, text)
    for pattern, repl in _TIDY:
        text = pattern.sub(repl, text)
    return text


_UNSPEAKABLE: list[tuple[str, re.Pattern[str]]] = [
    ("markdown", re.compile(r"[*#`|_~\\^<>{}\[\]]")),
    ("list marker", re.compile(r"^\s*[-•+*]\s|\n\s*(?:\d{1,3}[.)]|[-•+*])\s")),
    ("url", re.compile(r"://|\bwww\.|\.(?:com|org|net)\b")),
    ("symbol", re.compile(r"[°º%$€£¥₹@&=+/÷×²³→]")),
    ("emoji", _EMOJI),
    ("quote", re.compile(r"[\"“”«»]")),
    ("odd character", re.compile(_ODD)),
]


def unspeakable(text: str) -> list[str]:
    """What in `text` a voice would read out wrongly or stumble over (empty: nothing)."""
    return [name for name, pattern in _UNSPEAKABLE if pattern.search(text)]
