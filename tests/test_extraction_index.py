"""Suffix-array training index: hand-sorted suffixes, planted substrings, document boundaries."""

from __future__ import annotations

import random

import numpy as np
import pytest

from canaryaudit.errors import DataError
from canaryaudit.extraction.index import Match, TrainingIndex, suffix_array


def _codes(text: str) -> np.ndarray:
    return np.array([ord(c) for c in text], dtype=np.uint32)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("banana", [5, 3, 1, 0, 4, 2]),  # a, ana, anana, banana, na, nana
        ("aaaa", [3, 2, 1, 0]),  # a shorter prefix sorts first
        # \0 < a < b: "\0", "\0ab\0", "ab\0", "ab\0ab\0", "b\0", "b\0ab\0"
        ("ab\x00ab\x00", [5, 2, 3, 0, 4, 1]),
        ("x", [0]),
        ("", []),
    ],
)
def test_suffix_array_by_hand(text: str, expected: list[int]) -> None:
    assert suffix_array(_codes(text)).tolist() == expected


def test_suffix_array_matches_sorted_suffixes_on_random_strings() -> None:
    rng = random.Random(0)
    for _ in range(200):
        text = "".join(rng.choice("ab\x00\U0001f389") for _ in range(rng.randint(1, 60)))
        assert suffix_array(_codes(text)).tolist() == sorted(range(len(text)), key=lambda i: text[i:])


def test_planted_string_counts_distinct_documents() -> None:
    secret = "the vault code is 7731"
    docs = [
        f"hello {secret} bye",
        "nothing here",
        f"{secret} and again {secret}",  # twice in one document
        f"prefix {secret}",
    ]
    index = TrainingIndex(docs)
    sample = f"zz{secret}qq"
    assert index.longest_match(sample) == Match(start=2, end=2 + len(secret), documents=3, occurrences=4)


def test_no_character_in_common_gives_an_empty_match() -> None:
    index = TrainingIndex(["abc", "cab"])
    assert index.longest_match("xyz") == Match(0, 0, 0, 0)
    assert index.longest_match("") == Match(0, 0, 0, 0)


def test_no_documents() -> None:
    index = TrainingIndex([])
    assert (index.documents, index.longest_match("abc")) == (0, Match(0, 0, 0, 0))


def test_match_at_end_of_document_does_not_cross_into_the_next() -> None:
    index = TrainingIndex(["hello world", "next doc"])
    # "world next" would match whole if documents ran together
    match = index.longest_match("world next")
    assert (match.start, match.end, match.documents) == (0, 5, 1)


def test_nul_in_sample_never_matches_the_separator() -> None:
    index = TrainingIndex(["abc", "def"])  # the corpus is "abc\0def\0"
    assert index.longest_match("abc\x00def") == Match(0, 3, 1, 1)


def test_nul_in_a_document_is_an_error_naming_it() -> None:
    with pytest.raises(DataError, match="document 2 contains a NUL"):
        TrainingIndex(["fine", "bad\x00doc"])


def test_unicode_offsets_are_characters() -> None:
    index = TrainingIndex(["Grüße aus Köln 🎉 und mehr", "other"])
    # "xx Köln 🎉 und yy": " Köln 🎉 und " is characters 2..14 (the emoji is one character)
    assert index.longest_match("xx Köln 🎉 und yy") == Match(2, 14, 1, 1)


def test_leftmost_of_equally_long_matches() -> None:
    index = TrainingIndex(["abc", "xyz"])
    assert index.longest_match("xyz-abc") == Match(0, 3, 1, 1)


def test_whole_document_and_repeated_documents() -> None:
    index = TrainingIndex(["same text", "same text", "same text"])
    assert index.longest_match("same text") == Match(0, 9, 3, 3)
    assert index.documents == 3


def test_longest_match_agrees_with_brute_force() -> None:
    rng = random.Random(1)
    for _ in range(150):
        docs = ["".join(rng.choice("abé") for _ in range(rng.randint(0, 12))) for _ in range(rng.randint(1, 4))]
        sample = "".join(rng.choice("abéd") for _ in range(rng.randint(0, 15)))
        best = (0, 0)
        for i in range(len(sample)):
            for j in range(i + 1, len(sample) + 1):
                if j - i > best[1] - best[0] and any(sample[i:j] in d for d in docs):
                    best = (i, j)
        piece = sample[best[0] : best[1]]
        occurrences = sum(d.startswith(piece, k) for d in docs for k in range(len(d))) if piece else 0
        documents = sum(piece in d for d in docs) if piece else 0
        assert index_match(docs, sample) == Match(best[0], best[1], documents, occurrences)


def index_match(docs: list[str], sample: str) -> Match:
    return TrainingIndex(docs).longest_match(sample)
