import pytest

from voxloop.wer import edit_distance, normalize, wer


def test_normalize_strips_case_and_punctuation():
    assert normalize("Hello, World! It's 3-D.") == ["hello", "world", "it's", "3", "d"]


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
