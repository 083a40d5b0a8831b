"""Precision/recall by hand on tiny span sets, and split counts."""

import pytest

from canaryaudit.pii.detectors import build_detectors
from canaryaudit.pii.sanitize import sanitize_records, score_detection, scores_table
from canaryaudit.pii.spans import PiiSpan as S


def test_scores_by_hand():
    # doc 1: truth ssn [0,11) and ssn [20,31); detections ssn [0,11) (TP), ssn [40,51) (FP)
    # doc 2: truth phone [5,17); detection phone [6,17) overlaps (TP), email [30,40) with no truth (FP)
    pairs = [
        ([S("ssn", 0, 11), S("ssn", 40, 51)], [S("ssn", 0, 11), S("ssn", 20, 31)]),
        ([S("phone", 6, 17), S("email", 30, 40)], [S("phone", 5, 17)]),
    ]
    scores = score_detection(pairs, ["ssn", "phone", "email", "iban"])
    assert (scores["ssn"].precision, scores["ssn"].recall) == (0.5, 0.5)
    assert (scores["phone"].precision, scores["phone"].recall) == (1.0, 1.0)  # 11 of 12 chars = 91.7% >= 90%
    assert scores["phone"].char_recall == pytest.approx(11 / 12)
    assert scores["ssn"].char_recall == pytest.approx(11 / 22)  # [0,11) covered, [20,31) not
    assert scores["email"].precision == 0.0 and scores["email"].recall is None  # no truth: recall undefined
    assert scores["iban"].precision is None and scores["iban"].recall is None
    table = scores_table(scores, ["ssn", "phone", "email"])
    assert table["iban"]["detector"] is False
    assert table["ssn"]["false_positives"] == 1 and table["ssn"]["false_negatives"] == 1


def test_type_must_match():
    scores = score_detection([([S("phone", 0, 11)], [S("ssn", 0, 11)])], ["ssn", "phone"])
    assert scores["ssn"].recall == 0.0 and scores["phone"].precision == 0.0


def test_sanitize_records_counts():
    records = [
        {"doc_id": "a", "text": "SSN 078-05-1120 here", "author": None},
        {"doc_id": "b", "text": "nothing to see", "author": "p"},
        {"doc_id": "c", "text": "IBAN DE89370400440532013000", "author": None},
    ]
    action = {"ssn": "mask", "iban": "drop"}.get
    result = sanitize_records(records, build_detectors(["ssn", "iban"]), lambda t: action(t), enabled=True)
    counts = result.counts.as_dict()
    assert counts == {"documents_in": 3, "documents_out": 2, "dropped": 1,
                      "found": {"iban": 1, "ssn": 1}, "masked": {"ssn": 1}}
    assert [r["doc_id"] for r in result.records] == ["a", "b"]
    assert result.records[0]["text"] == "SSN <SSN> here"
    assert result.records[1]["author"] == "p"


@pytest.mark.parametrize("enabled", [True, False])
def test_report_counts_hold_no_raw_values(enabled):
    records = [{"doc_id": "a", "text": "SSN 078-05-1120", "author": None}]
    result = sanitize_records(records, build_detectors(["ssn"]), lambda t: "mask", enabled)
    assert "078-05-1120" not in repr(result.counts.as_dict())


def test_partial_masks_are_not_recalled():
    # doc 1: email truth [0,24) (24 chars, like john.o'brien@example.com); detection [7,24) leaves 7 chars in clear
    # doc 2: address truth [10,60) (50 chars); detection [10,55) covers 45 = exactly 90% -> recalled
    # doc 3: address truth [0,20); detections [0,9) + [11,20) cover 18 of 20 = 90% -> recalled; a phone
    #        detection over the same characters does not count for the address
    pairs = [
        ([S("email", 7, 24)], [S("email", 0, 24)]),
        ([S("street_address", 10, 55)], [S("street_address", 10, 60)]),
        ([S("street_address", 0, 9), S("street_address", 11, 20), S("phone", 9, 11)], [S("street_address", 0, 20)]),
    ]
    scores = score_detection(pairs, ["email", "street_address", "phone"])
    email = scores["email"].as_dict()
    assert (email["precision"], email["recall"], email["false_negatives"]) == (1.0, 0.0, 1)
    assert email["char_recall"] == pytest.approx(17 / 24)
    address = scores["street_address"].as_dict()
    assert (address["detected"], address["true_positives"], address["recall"]) == (3, 3, 1.0)
    assert address["char_recall"] == pytest.approx((45 + 18) / (50 + 20))
    assert scores["phone"].precision == 0.0 and scores["phone"].char_recall is None


def test_coverage_just_under_ninety_percent_is_a_miss():
    # 17 of 19 chars = 89.5%: not recalled; 9 of 10 = 90%: recalled
    pairs = [([S("ssn", 2, 19)], [S("ssn", 0, 19)]), ([S("ssn", 1, 10)], [S("ssn", 0, 10)])]
    score = score_detection(pairs, ["ssn"])["ssn"]
    assert (score.truth, score.recalled, score.true_positives) == (2, 1, 2)
    assert score.char_recall == pytest.approx(26 / 29)
