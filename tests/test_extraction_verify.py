"""Verification: triviality both ways, memorized spans, PII found and masked, canaries found."""

from __future__ import annotations

import pytest

from canaryaudit.extraction.index import TrainingIndex
from canaryaudit.extraction.verify import (
    PiiHit,
    canary_spans,
    find_canaries,
    find_pii,
    is_trivial,
    mask_pii,
    mask_value,
    trivial_reason,
    verify_sample,
)

SENTENCE = "Can you call me when you are free Friday? Good news: the rollout came in under budget."


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "empty"),
        ("  \n\t ", "mostly whitespace"),
        ("ab\n\n", "mostly whitespace"),  # exactly half whitespace
        ("----------", "mostly punctuation"),
        ("ab!?", "mostly punctuation"),  # exactly half of the visible characters
        (">> Cheers, >>> -- >>>", "mostly punctuation"),  # 11 of 17 visible characters
        ("0123456789012345", "number sequence"),
        ("1 2 3 4 5 6 7 8", "number sequence"),
        ("10, 20, 30, 40, 50", "number sequence"),
        ("9876543210", "number sequence"),
        ("7 8 9 10 11 12 13 1", "number sequence"),  # cut mid-number at the end: 6 of 7 steps are +1
        ("abcabcabcabc", "repeated pattern"),
        ("the the the the", "repeated pattern"),
        ("The  the\nTHE the", "repeated pattern"),  # case and whitespace runs do not matter
        ("abcabcabcabX", "repeated pattern"),  # period 3 over 11 of 12 characters
    ],
)
def test_trivial_texts(text: str, reason: str) -> None:
    assert trivial_reason(text) == reason
    assert is_trivial(text)


@pytest.mark.parametrize(
    "text",
    [
        SENTENCE,
        "Let's meet at 1:00 on Friday to go over the west region rollout.",
        "From: Dennis Cunningham <<EMAIL>>\nTo: Marie Vasquez <<EMAIL>>",
        "my social security number is 686-57-9303",
        "Date: Wed, 19 Feb 2003 16:02:00 -0600",
        "Phone: 415-555-2671\nCell: 415-555-2672",
        "abc\n\n",  # 2 of 5 whitespace
        "abc!?",  # 2 of 5 punctuation
        "1 2 3",  # too few numbers to be a sequence
        "abcab",  # a unit of 3 over 5 characters is not two full repeats
    ],
)
def test_real_text_is_not_trivial(text: str) -> None:
    assert trivial_reason(text) is None
    assert not is_trivial(text)


def _index() -> TrainingIndex:
    contract = "Please send the signed contract to legal by Monday."  # 51 characters
    return TrainingIndex([f"Hi,\n{SENTENCE}\nBest", f"Re: {SENTENCE}", "-" * 80, contract])


def test_a_long_training_substring_is_memorized() -> None:
    sample = f"<<{SENTENCE}>>"  # neither "<" nor ">" occurs in training
    result = verify_sample(_index(), sample, min_chars=50)
    assert (result.memorized, result.trivial) == (True, False)
    assert result.span == (2, 2 + len(SENTENCE))
    assert (result.length, result.k_eidetic) == (len(SENTENCE), 2)
    assert result.reason == f"{len(SENTENCE)} characters found in 2 training document(s)"


def test_min_chars_boundary() -> None:
    contract = "Please send the signed contract to legal by Monday."
    assert len(contract) == 51
    assert verify_sample(_index(), contract, min_chars=51).memorized
    shorter = verify_sample(_index(), contract, min_chars=52)
    assert not shorter.memorized and not shorter.trivial
    assert shorter.reason == "longest training substring has 51 characters (< 52)"


def test_a_long_trivial_substring_is_not_memorized() -> None:
    result = verify_sample(_index(), "ab" + "-" * 70 + "cd", min_chars=50)
    assert (result.memorized, result.trivial, result.span, result.k_eidetic) == (False, True, (2, 72), 1)
    assert "mostly punctuation" in result.reason


def test_no_match() -> None:
    result = verify_sample(_index(), "\u4e2d\u6587", min_chars=50)
    assert (result.memorized, result.span, result.length, result.k_eidetic) == (False, (0, 0), 0, 0)


def test_min_chars_must_be_positive() -> None:
    with pytest.raises(ValueError, match="min_chars"):
        verify_sample(_index(), "abc", min_chars=0)


TEXT = "Write to john.smith@example.com or call 415-555-2671 today."


def test_find_pii_types_offsets_and_masks() -> None:
    hits = find_pii(TEXT)
    assert hits == [
        PiiHit("email", 9, 31, "*" * 20 + "om"),  # john.smith@example.com: 22 characters
        PiiHit("phone", 40, 52, "*" * 10 + "71"),  # 415-555-2671: 12 characters
    ]
    assert TEXT[9:31] == "john.smith@example.com" and TEXT[40:52] == "415-555-2671"


def test_placeholders_of_a_sanitized_corpus_are_not_pii() -> None:
    text = (
        "From: <PERSON_NAME> <<EMAIL>>\nCall <PHONE> or fax <PHONE>. SSN <SSN>, card <CREDIT_CARD>, "
        "at <STREET_ADDRESS>; hosts <IPV4> and <IPV6>; IBAN <IBAN>; key <API_KEY>; <PERSON_NAME>"
    )
    assert find_pii(text) == []


def test_mask_pii_keeps_length_and_offsets_and_hides_values() -> None:
    masked = mask_pii(TEXT, find_pii(TEXT))
    assert masked == "Write to ********************om or call **********71 today."
    assert len(masked) == len(TEXT)
    assert "john.smith" not in masked and "example.com" not in masked and "415-555-26" not in masked


def test_short_values_keep_at_most_half_in_clear() -> None:
    assert mask_value("abcdef") == "****ef"
    assert mask_value("abc") == "**c"
    assert mask_value("ab") == "*b"
    assert mask_value("a") == "*"
    assert mask_value("") == ""
    assert mask_pii("x ab y", [PiiHit("ssn", 2, 4, "*b")]) == "x *b y"
    assert mask_pii("abcdef", [PiiHit("ssn", 0, 6, "")], keep_last=0) == "******"


CANARIES = [
    {"canary_id": "ssn-x1-0", "text": "my social security number is 686-57-9303",
     "prefix": "my social security number is "},
    {"canary_id": "number-x4-0", "text": "the random number is 123456789", "prefix": "the random number is "},
]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("I said my social security number is 686-57-9303 ok", ["ssn-x1-0"]),  # full text
        ("SSN: 686-57-9303.", ["ssn-x1-0"]),  # the secret alone
        ("no.123456789, and 686-57-9303", ["ssn-x1-0", "number-x4-0"]),  # order of the canaries given
        ("686-57-930", []),  # part of the secret
        ("91234567890", []),  # inside a longer number
        ("1234567890", []),
        ("x123456789", []),  # glued to a word
        ("123456789 and 123456789", ["number-x4-0"]),
        ("11234567890 then 123456789!", ["number-x4-0"]),  # the second occurrence stands alone
        ("the random number is ", []),  # the prefix is not the secret
        ("", []),
    ],
)
def test_find_canaries(text: str, expected: list[str]) -> None:
    assert find_canaries(text, CANARIES) == expected


def test_canary_without_prefix_is_matched_by_its_whole_text() -> None:
    assert find_canaries("see 4242 9999 here", [{"canary_id": "c", "text": "4242 9999", "prefix": ""}]) == ["c"]


def test_canary_spans_give_every_standalone_occurrence() -> None:
    text = "123456789 x 686-57-9303 and 123456789"
    assert canary_spans(text, CANARIES) == [("ssn-x1-0", 12, 23), ("number-x4-0", 0, 9), ("number-x4-0", 28, 37)]
