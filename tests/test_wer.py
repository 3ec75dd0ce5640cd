import pytest

from voxloop.hearing.wer import edit_distance, normalize, wer


def test_normalize_strips_case_and_punctuation():
    assert normalize("Hello, World! It's 3-D.") == ["hello", "world", "it's", "three", "d"]


def test_identical_texts_score_zero():
    assert wer("The quick brown fox.", "the quick brown fox") == 0.0


@pytest.mark.parametrize(
    ("ref", "hyp", "expected"),
    [
        ("a b c d", "a x c d", 0.25),  # one substitution
        ("a b c d", "a b c", 0.25),  # one deletion
        ("a b c d", "a b c d e", 0.25),  # one insertion
        ("a b", "c d e f", 2.0),  # can exceed 1
        ("a b c d", "", 1.0),
    ],
)
def test_wer_counts_each_edit(ref, hyp, expected):
    assert wer(ref, hyp) == pytest.approx(expected)


def test_empty_reference():
    assert wer("", "") == 0.0
    assert wer("", "something") == 1.0


def test_edit_distance_is_word_levenshtein():
    assert edit_distance(["kitten"], ["sitting"]) == 1
    assert edit_distance(["a", "b", "c"], ["c", "b", "a"]) == 2


@pytest.mark.parametrize(
    ("n", "words"),
    [
        (0, "zero"),
        (7, "seven"),
        (40, "forty"),
        (144, "one hundred forty four"),
        (2026, "two thousand twenty six"),
    ],
)
def test_spell_number(n, words):
    from voxloop.hearing.wer import spell_number

    assert spell_number(n) == words


def test_digits_and_words_compare_equal():
    assert wer("a table for four at seven", "a table for 4 at 7") == 0.0
    assert wer("one hundred and forty four", "144") == 0.0
    assert wer("it costs 1,000 dollars", "it costs one thousand dollars") == 0.0
    assert normalize("rock and roll") == ["rock", "and", "roll"]  # only numbers lose "and"
