"""Canary formats, |R|, generation and exact insertion counts."""

import random

import pytest

from canaryaudit.canaries import (
    CanaryPlan,
    count_occurrences,
    insert_canaries,
    make_canaries,
    parse_format,
)
from canaryaudit.errors import DataError

DIGITS = {"d": "0123456789", "w": ["red", "green", "blue"], "l": "ab"}


def test_space_size_by_hand():
    fmt = parse_format("f", "pin {d}x3 color {w} {l}", DIGITS)
    assert fmt.space_size == 10 * 10 * 10 * 3 * 2  # 6000
    assert fmt.prefix == "pin "
    assert fmt.log2_space_size == pytest.approx(12.550746785383243)  # log2(6000)


def test_render_and_mixed_radix_index():
    fmt = parse_format("f", "n={d}x2/{w}", DIGITS)
    assert fmt.render(["4", "2", "blue"]) == "n=42/blue"
    assert fmt.fill_from_index(0) == ["0", "0", "red"]
    assert fmt.fill_from_index(1) == ["0", "0", "green"]  # last hole varies fastest
    assert fmt.fill_from_index(3) == ["0", "1", "red"]
    assert fmt.fill_from_index(299) == ["9", "9", "blue"]
    with pytest.raises(ValueError):
        fmt.fill_from_index(300)


@pytest.mark.parametrize(
    ("template", "message"),
    [
        ("no holes", "no hole"),
        ("x {q}", "unknown alphabet {q}"),
        ("x {d", "stray brace"),
        ("x {d}x0", "between 1 and 64"),
        ("two\nlines {d}", "one line"),
    ],
)
def test_bad_templates(template, message):
    with pytest.raises(ValueError, match=message):
        parse_format("f", template, DIGITS)


def test_too_small_space_is_an_error_not_a_truncation():
    fmt = parse_format("tiny", "x {l}{l}", DIGITS)  # |R| = 4
    with pytest.raises(ValueError, match="5 canaries requested .* only 4"):
        make_canaries(fmt, CanaryPlan((1,), per_count=5), random.Random(0))


def test_plan_and_audit_split():
    fmt = parse_format("num", "the random number is {d}x6", DIGITS)
    plan = CanaryPlan((1, 4, 16), per_count=3, audit_count=200, audit_insertions=2)
    canaries = make_canaries(fmt, plan, random.Random(1))
    assert len(canaries) == 9 + 200
    assert len({c.text for c in canaries}) == len(canaries), "canaries are distinct"
    main = [c for c in canaries if not c.audit]
    assert sorted(c.insertions for c in main) == [1, 1, 1, 4, 4, 4, 16, 16, 16]
    audit = [c for c in canaries if c.audit]
    included = sum(c.included for c in audit)
    assert all(c.insertions in (0, 2) for c in audit)
    assert 70 <= included <= 130  # Binomial(200, 1/2): mean 100, sd ~7
    assert all(c.text.startswith(c.prefix) and c.text == c.prefix + "".join(c.randomness) for c in canaries)


def test_insertion_counts_are_exact_and_as_own_lines():
    fmt = parse_format("num", "the random number is {d}x6", DIGITS)
    canaries = make_canaries(fmt, CanaryPlan((1, 3, 20), per_count=2, audit_count=10), random.Random(2))
    texts = [f"doc {i} line one\nline two of {i}" for i in range(8)]  # 8 docs < 20 copies: repeats allowed
    out = insert_canaries(texts, canaries, random.Random(3))
    for c in canaries:
        assert count_occurrences(out, c.text) == c.insertions
    for i, doc in enumerate(out):
        lines = doc.split("\n")
        assert [ln for ln in lines if not ln.startswith("the random number is ")] == texts[i].split("\n")


def test_copies_go_to_distinct_documents_when_possible():
    fmt = parse_format("num", "n {d}x6", DIGITS)
    canary = make_canaries(fmt, CanaryPlan((5,), per_count=1), random.Random(0))
    out = insert_canaries([f"doc {i}" for i in range(10)], canary, random.Random(1))
    assert sum(canary[0].text in doc for doc in out) == 5


def test_insertion_is_deterministic():
    fmt = parse_format("num", "n {d}x6", DIGITS)
    texts = [f"doc {i}\nmore" for i in range(6)]

    def run():
        rng = random.Random(9)
        canaries = make_canaries(fmt, CanaryPlan((1, 4), per_count=2, audit_count=4), rng)
        return canaries, insert_canaries(texts, canaries, rng)

    assert run() == run()


def test_canary_already_in_data_is_refused():
    fmt = parse_format("num", "n {d}", DIGITS)
    canaries = make_canaries(fmt, CanaryPlan((1,), per_count=10), random.Random(0))
    with pytest.raises(DataError, match="already occurs"):
        insert_canaries(["x\nn 5\ny"], canaries, random.Random(0))


def test_huge_space_beyond_int64():
    fmt = parse_format("big", "key {d}x30", DIGITS)  # |R| = 10^30 > 2^63
    canaries = make_canaries(fmt, CanaryPlan((1, 2), per_count=3), random.Random(0))
    assert len({c.text for c in canaries}) == 6 and all(len(c.randomness) == 30 for c in canaries)


def test_canary_inside_another_is_refused():
    from canaryaudit.canaries import check_distinct

    short = make_canaries(parse_format("a", "code {d}x2", DIGITS), CanaryPlan((1,), per_count=100), random.Random(0))
    long = make_canaries(parse_format("b", "code {d}x3", DIGITS), CanaryPlan((1,), per_count=5), random.Random(0))
    with pytest.raises(ValueError, match="occurs inside"):
        check_distinct(short + long)


def test_ambiguous_word_alphabet_is_refused():
    from canaryaudit.canaries import check_distinct

    fmt = parse_format("w", "x {w}x6", {"w": ["a", "aa"]})
    canaries = make_canaries(fmt, CanaryPlan((1,), per_count=40), random.Random(0))
    with pytest.raises(ValueError, match="render the same text"):
        check_distinct(canaries)
