"""What reaches the voice: the LLM's markdown, lists, symbols and units said as words."""

import pytest

from voxloop.reply.speakable import speakable, unspeakable


@pytest.mark.parametrize(
    ("written", "said"),
    [
        # Piper read this one as "212 degrees F-100 degrees C".
        (
            "Water boils at 212°F (100°C).",
            "Water boils at 212 degrees Fahrenheit, 100 degrees Celsius.",
        ),
        ("1. Sunscreen\n2. Towel\n3. **Hat**", "Sunscreen. Towel. Hat"),
        ("- eggs\n- milk", "eggs. milk"),
        ("A 15% tip on $5.99.", "A 15 percent tip on 5 dollars 99 cents."),
        (
            "It cost €5, then $1,200, then $2.5 million.",
            "It cost 5 euros, then 1,200 dollars, then 2.5 million dollars.",
        ),
        ("It is 1 ft and 384,400 km away.", "It is 1 foot and 384,400 kilometers away."),
        ("Drive at 50 km/h.", "Drive at 50 kilometers per hour."),
        ("See https://www.example.com/docs?x=1 😀!", "See example dot com!"),
        ("Mail sam@mail.example.org.", "Mail sam at mail dot example dot org."),
        ("Use 1/2 cup & 3/4 cup.", "Use one half cup and three quarters cup."),
        (
            "2 + 2 = 4, 12 x 8 = 96, 5-10 people.",
            "2 plus 2 equals 4, 12 times 8 equals 96, 5 to 10 people.",
        ),
        ("He said \"hello\" to 'Bob'.", "He said hello to Bob."),
        ("Run `ls`:\n```bash\nls -la\n```\nDone.", "Run ls: Done."),
        ("# Tips\nSleep well.", "Tips. Sleep well."),
        ("e.g. apples, i.e. fruit.", "for example apples, that is fruit."),
        ("That's the dog's bone.", "That's the dog's bone."),
        ("Use tools like番茄 timers. ¡Hola!", "Use tools like timers. Hola!"),
        ("30.", "30."),  # a whole answer, not a list marker
        ("1. 1", "1"),
    ],
)
def test_written_forms_become_words(written: str, said: str) -> None:
    assert speakable(written) == said
    assert unspeakable(said) == []


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("**Bold**", "markdown"),
        ("Boils at 100°C", "symbol"),
        ("A 15% tip", "symbol"),
        ("Go to www.example.com", "url"),
        ("Hi 😀", "emoji"),
        ('"quoted"', "quote"),
        ("Intro\n2. Second", "list marker"),
    ],
)
def test_unspeakable_names_what_a_voice_would_misread(text: str, reason: str) -> None:
    assert reason in unspeakable(text)
    assert unspeakable(speakable(text)) == []


def test_plain_sentences_pass_untouched() -> None:
    text = "The capital of France is Paris, and it has about 2 million people."
    assert speakable(text) == text
    assert unspeakable(text) == []
