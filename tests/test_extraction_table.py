"""The extraction table on a hand-made set of six samples, two strategies and two metrics."""

from __future__ import annotations

from collections import Counter
from functools import partial

import numpy as np
import pytest

from canaryaudit.extraction.index import TrainingIndex
from canaryaudit.extraction.table import default_sample_ids, extraction_table, rank_by_score
from canaryaudit.extraction.verify import PiiHit, Verification, verify_sample

STRATEGIES = ["s1", "s1", "s1", "s2", "s2", "s2"]
TEXTS = [
    "alpha beta gamma delta",  # 0: trigrams abg bgd
    "alpha beta gamma delta epsilon",  # 1: abg bgd gde -> 2/3 in sample 0
    "one two three four",  # 2
    "red green blue yellow",  # 3
    "cat dog fish bird",  # 4
    "alpha beta gamma delta 123456789",  # 5: abg bgd gd1 -> 2/3 in sample 0; holds a canary secret
]
SCORES = {
    # s1 by m1: 0, 1, 2 -> 1 is a duplicate of 0 -> verified [0, 2]; s2: 5, 3, 4 -> top 2 [5, 3]
    "m1": np.array([3.0, 2.0, 1.0, 5.0, 4.0, 6.0]),
    # s1 by m2: 1, 2 (tie, sample order), 0 -> 0 is a duplicate of 1 -> [1, 2];
    # s2: 4, 5 (tie), 3 (NaN last) -> [4, 5]
    "m2": np.array([1.0, 2.0, 2.0, np.nan, 2.0, 2.0]),
}
MEMORIZED = {0: True, 1: True, 2: False, 3: False, 4: True, 5: True}
SPANS = {0: (0, 22), 1: (0, 22), 2: (0, 0), 3: (0, 0), 4: (0, 7), 5: (0, 22)}
PII = {
    0: [PiiHit("person_name", 0, 5, "***ha")],  # "alpha", inside the memorized span
    1: [PiiHit("person_name", 0, 5, "***ha")],  # the same value again: counted once
    4: [PiiHit("person_name", 8, 12, "**sh")],  # "fish", outside the span "cat dog"
    5: [PiiHit("ssn", 23, 32, "*******89")],  # the canary secret 123456789: a canary, not PII
}
CANARIES = [
    {"canary_id": "number-x4-0", "text": "the random number is 123456789", "prefix": "the random number is ",
     "format": "number", "insertions": 4},
    {"canary_id": "number-x1-0", "text": "the random number is 555000111", "prefix": "the random number is ",
     "format": "number", "insertions": 1},
]


def _fake_verify(calls: Counter[str], text: str) -> Verification:
    calls[text] += 1
    i = TEXTS.index(text)
    span = SPANS[i]
    return Verification(MEMORIZED[i], span, span[1] - span[0], 2 if MEMORIZED[i] else 0, False, "fake")


def _table(calls: Counter[str], **kwargs: object):  # noqa: ANN202
    return extraction_table(
        STRATEGIES, SCORES, TEXTS, partial(_fake_verify, calls), canaries=CANARIES,
        pii=lambda text: PII.get(TEXTS.index(text), []), candidates=3, top_k=2, **kwargs,
    )


def test_rows_by_hand() -> None:
    table = _table(Counter())
    base = {"candidates": 3, "top_k": 2}
    assert table.rows == [
        {"strategy": "s1", "metric": "m1", **base, "memorized": 1, "memorized_with_pii": 1, "memorized_with_canary": 0},
        {"strategy": "s1", "metric": "m2", **base, "memorized": 1, "memorized_with_pii": 1, "memorized_with_canary": 0},
        {"strategy": "s2", "metric": "m1", **base, "memorized": 1, "memorized_with_pii": 0, "memorized_with_canary": 1},
        {"strategy": "s2", "metric": "m2", **base, "memorized": 2, "memorized_with_pii": 0, "memorized_with_canary": 1},
    ]


def test_each_verified_sample_is_verified_once() -> None:
    calls: Counter[str] = Counter()
    table = _table(calls)
    assert calls == Counter({t: 1 for t in TEXTS})  # all six verified somewhere, each once
    assert sorted(table.checks) == [0, 1, 2, 3, 4, 5]


def test_best_placements() -> None:
    placements = _table(Counter()).placements
    # (rank, combination): 0 first in s1/m1; 2 second in s1/m1 (and s1/m2); 5 first in s2/m1 (second in s2/m2)
    got = {i: (p.rank, p.combination, p.metric) for i, p in placements.items()}
    assert got == {0: (1, 0, "m1"), 2: (2, 0, "m1"), 1: (1, 1, "m2"), 5: (1, 2, "m1"), 3: (2, 2, "m1"),
                   4: (1, 3, "m2")}


def test_unique_memorized_deduplicates_across_combinations() -> None:
    table = _table(Counter())
    # memorized by best placement: 0 (1, s1/m1), 1 (1, s1/m2), 5 (1, s2/m1), 4 (1, s2/m2);
    # 1 and 5 share 2 of their 3 trigrams with 0
    assert table.unique_memorized == [0, 4]


def test_memorized_pii_distinct_values_inside_spans() -> None:
    assert _table(Counter()).memorized_pii == [{"type": "person_name", "masked": "***ha", "sample_id": "s1-0"}]


def test_canaries_found_in_verified_samples() -> None:
    assert _table(Counter()).canaries_found == [
        {"canary_id": "number-x4-0", "format": "number", "insertions": 4, "sample_id": "s2-2", "samples": 1,
         "memorized": True},
    ]


def test_pii_inside_a_canary_secret_is_left_to_the_canary() -> None:
    check = _table(Counter()).checks[5]
    assert (check.pii, check.canary_ids) == ((), ("number-x4-0",))


def test_top_samples_are_masked_report_records() -> None:
    first, second = _table(Counter()).top_samples
    assert first == {
        "sample_id": "s1-0", "index": 0, "strategy": "s1", "rank_metric": "m1", "rank": 1,
        "text": "***ha beta gamma delta", "memorized": True, "span": [0, 22], "length": 22, "k_eidetic": 2,
        "trivial": False, "reason": "fake", "pii": [{"type": "person_name", "start": 0, "end": 5}],
        "canary_ids": [], "scores": {"m1": 3.0, "m2": 1.0},
    }
    assert (second["sample_id"], second["text"], second["scores"]) == ("s2-1", "cat dog **sh bird",
                                                                      {"m1": 4.0, "m2": 2.0})


def test_output_is_deterministic_and_ids_can_be_given() -> None:
    ids = [f"id{i}" for i in range(6)]
    one, two = _table(Counter(), sample_ids=ids), _table(Counter(), sample_ids=ids)
    assert one == two
    assert [r["sample_id"] for r in one.top_samples] == ["id0", "id4"]


def test_top_k_one_and_candidates_one() -> None:
    table = extraction_table(STRATEGIES, {"m1": SCORES["m1"]}, TEXTS, partial(_fake_verify, Counter()),
                             pii=lambda text: [], candidates=1, top_k=1)
    assert [r["memorized"] for r in table.rows] == [1, 1]  # s1: sample 0; s2: sample 5
    assert sorted(table.checks) == [0, 5]


def test_rank_by_score_descending_stable_nan_last() -> None:
    scores = np.array([1.0, 3.0, np.nan, 3.0, 2.0])
    assert rank_by_score(np.arange(5), scores).tolist() == [1, 3, 4, 0, 2]
    assert rank_by_score(np.array([4, 2, 0]), scores).tolist() == [4, 0, 2]


def test_default_sample_ids_count_per_strategy() -> None:
    assert default_sample_ids(["a", "b", "a"]) == ["a-0", "b-0", "a-1"]


def test_inputs_of_different_lengths_are_rejected() -> None:
    with pytest.raises(ValueError, match="metric 'm1' has 2 scores for 6 texts"):
        extraction_table(STRATEGIES, {"m1": np.zeros(2)}, TEXTS, partial(_fake_verify, Counter()))
    with pytest.raises(ValueError, match="top_k"):
        extraction_table(STRATEGIES, SCORES, TEXTS, partial(_fake_verify, Counter()), top_k=0)


def test_with_the_real_index_and_detectors() -> None:
    email = "Hi Marie, my new address is marie.vasquez@tessellate.example.com, write me there."
    index = TrainingIndex([email, "Unrelated note about lunch on Friday."])
    texts = [f"... {email} ...", "Lunch on Friday? no idea"]
    table = extraction_table(["top_n", "top_n"], {"zlib": np.array([2.0, 1.0])}, texts,
                             partial(verify_sample, index, min_chars=50), candidates=10, top_k=10)
    assert table.rows[0]["memorized"] == 1 and table.rows[0]["memorized_with_pii"] == 1
    assert table.memorized_pii == [{"type": "person_name", "masked": "***ie", "sample_id": "top_n-0"},
                                   {"type": "email", "masked": "*" * 34 + "om", "sample_id": "top_n-0"}]
    record = table.top_samples[0]
    assert "marie.vasquez" not in record["text"] and len(record["text"]) == len(texts[0])
    assert record["span"] == [4, 4 + len(email)] and record["k_eidetic"] == 1
