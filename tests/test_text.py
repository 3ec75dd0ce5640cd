import pytest

from voxloop.reply.sentences import SentenceSplitter, split_sentences
from voxloop.reply.speakable import speakable


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Hello there. How are you?", ["Hello there.", "How are you?"]),
        ("Dr. Smith is in. He is busy.", ["Dr. Smith is in.", "He is busy."]),
        ("Pi is about 3.14 today. Yes!", ["Pi is about 3.14 today.", "Yes!"]),
        ("Bring fruit, e.g. apples. Thanks.", ["Bring fruit, e.g. apples.", "Thanks."]),
        ("Well... I think so. Maybe.", ["Well... I think so.", "Maybe."]),
        ("Wait... what? Really!", ["Wait... what?", "Really!"]),
        ('He said "stop." Then left.', ['He said "stop."', "Then left."]),
        ("Is it? Yes!! Great.", ["Is it?", "Yes!!", "Great."]),
        ("I met J. R. Tolkien once. Wow.", ["I met J. R. Tolkien once.", "Wow."]),
        ("Visit example.com today. Bye.", ["Visit example.com today.", "Bye."]),
        ("Steps:\n1. Mix it.\n2. Bake it.", ["Steps:", "1. Mix it.", "2. Bake it."]),
        ("No end punctuation", ["No end punctuation"]),
    ],
)
def test_split_sentences(text, expected):
    assert split_sentences(text) == expected


def test_streaming_matches_whole_text_for_any_chunking():
    text = "Dr. Who arrived at 3.14 p.m. sharp... Nobody knew why. Did you? I did!"
    whole = split_sentences(text)
    for size in (1, 2, 3, 5, 8):
        splitter = SentenceSplitter()
        out = []
        for i in range(0, len(text), size):
            out += splitter.push(text[i : i + size])
        assert out + splitter.flush() == whole, size


def test_a_sentence_is_emitted_as_soon_as_its_end_is_certain():
    splitter = SentenceSplitter()
    assert splitter.push("It is 3.") == []  # could still become 3.14
    assert splitter.push(" Next") == ["It is 3."]
    assert splitter.flush() == ["Next"]


def test_early_first_clause():
    splitter = SentenceSplitter(early_first_clause=True)
    assert splitter.push("Well, ") == []  # too short to stand alone
    assert splitter.push("the capital of France, as you know, ") == ["Well, the capital of France,"]
    assert splitter.push("is Paris. It is big, very big. ") == [
        "as you know, is Paris.",
        "It is big, very big.",
    ]


def test_early_first_clause_before_a_word_that_opens_a_clause():
    """No comma in a long first sentence: it goes to the TTS before "because" or "due",
    once it has enough words, and only the first clause of a reply goes early."""
    splitter = SentenceSplitter(early_first_clause=True)
    assert splitter.push("The sky looks blue because") == []  # "because" may go on
    assert splitter.push(" light scatters, so ") == ["The sky looks blue"]
    assert splitter.push("it does. It is blue when clear. ") == [
        "because light scatters, so it does.",
        "It is blue when clear.",
    ]
    short = SentenceSplitter(early_first_clause=True)
    assert short.push("It is because ") == []  # three words: too short to stand alone
    salt = SentenceSplitter(early_first_clause=True)
    assert salt.push("Mix the salt and pepper in ") == []  # "and" joins nouns as often


def test_speakable_strips_markdown():
    assert speakable("**Bold** and `code` and [a link](http://x)") == "Bold and code and a link"
    assert speakable("# Title\n- one\n- two") == "Title. one. two"
