"""Word-trigram deduplication: hand-counted overlaps, rank order, short samples."""

from __future__ import annotations

import pytest

from canaryaudit.extraction.dedup import deduplicate, normalised_text, word_trigrams

LONG = [f"w{i}" for i in range(100)]  # 98 distinct trigrams


def _text(words: list[str]) -> str:
    return " ".join(words)


def test_word_trigrams_split_on_any_whitespace_and_are_distinct() -> None:
    assert word_trigrams("a b  c\nd") == {("a", "b", "c"), ("b", "c", "d")}
    assert word_trigrams("a b c a b c") == {("a", "b", "c"), ("b", "c", "a"), ("c", "a", "b")}
    assert word_trigrams("a b") == set()
    assert word_trigrams("") == set()


def test_normalised_text_collapses_whitespace_and_keeps_case() -> None:
    assert normalised_text("  Hi \n there\t") == "Hi there"


def test_exactly_half_of_trigrams_shared_is_a_duplicate() -> None:
    # "a b c d x y": trigrams abc bcd cdx dxy; abc and bcd are in "a b c d e f": 2/4
    assert deduplicate(["a b c d e f", "a b c d x y"]) == [0]


def test_fifty_of_one_hundred_is_a_duplicate_and_forty_nine_is_not() -> None:
    # 52 words of LONG then 50 new: 100 trigrams, the 50 inside LONG's first 52 words are shared
    fifty = _text(LONG[:52] + [f"x{i}" for i in range(50)])
    # 51 words of LONG then 51 new: 100 trigrams, 49 shared
    forty_nine = _text(LONG[:51] + [f"x{i}" for i in range(51)])
    assert deduplicate([_text(LONG), fifty]) == [0]
    assert deduplicate([_text(LONG), forty_nine]) == [0, 1]


def test_overlap_threshold_is_exact_for_decimal_fractions() -> None:
    # 5 words of LONG then 7 new: 10 trigrams, 3 shared; 0.3 * 10 is 3.0000000000000004 in floats
    three_of_ten = _text(LONG[:5] + [f"x{i}" for i in range(7)])
    assert deduplicate([_text(LONG), three_of_ten], overlap=0.3) == [0]
    assert deduplicate([_text(LONG), three_of_ten], overlap=0.31) == [0, 1]


def test_the_better_ranked_sample_is_kept_and_order_matters() -> None:
    long, short = "a b c d e f g h", "a b c d"  # short: 2 trigrams, both in long; long: 6, 2 shared
    assert deduplicate([long, short]) == [0]
    assert deduplicate([short, long]) == [0, 1]


def test_a_duplicate_of_a_removed_duplicate_is_kept() -> None:
    first = "a b c d e f"  # abc bcd cde def
    second = "c d e f g h"  # cde def efg fgh: 2/4 shared with first -> removed
    third = "e f g h i j"  # efg fgh ghi hij: 0 shared with first; 2/4 with second, which is gone
    assert deduplicate([first, second, third]) == [0, 2]


def test_duplicate_of_a_later_kept_sample_is_also_found() -> None:
    texts = ["p q r s", "a b c d e f", "x y z w", "a b c d e f"]
    assert deduplicate(texts) == [0, 1, 2]


def test_samples_without_trigrams_compare_by_normalised_text() -> None:
    texts = ["hi there", "hi  there\n", "Hi there", "hi", "", "  ", "a b c", "a b"]
    # "a b" is not a duplicate of "a b c": it has no trigram, and "a b c" is not short
    assert deduplicate(texts) == [0, 2, 3, 4, 6, 7]


def test_invalid_overlap_is_rejected() -> None:
    for bad in (0.0, -0.1, 1.5):
        with pytest.raises(ValueError, match="overlap"):
            deduplicate(["a b c"], overlap=bad)


def test_empty_input() -> None:
    assert deduplicate([]) == []
