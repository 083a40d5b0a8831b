"""The extraction pipeline's glue: masking of sample rows, canaries found anywhere, metric selection."""

from functools import partial

import numpy as np

from canaryaudit.config import ExtractParams
from canaryaudit.extraction.index import TrainingIndex
from canaryaudit.extraction.pipeline import active_metrics, canaries_in_samples, sample_records
from canaryaudit.extraction.sampling import Sample
from canaryaudit.extraction.table import extraction_table
from canaryaudit.extraction.verify import verify_sample

EMAIL = "dana.whitfield@example.org"
SECRET_DOC = f"Hi team, please write to {EMAIL} about the quarterly numbers before friday."


def _sample(i: int, text: str) -> Sample:
    return Sample(sample_id=f"top_n-{i}", strategy="top_n", prompt_ids=(0,), token_ids=(0,) + (5,) * len(text),
                  prompt_tokens=1, text=text)


def test_sample_rows_mask_pii_whether_verified_or_not():
    texts = [SECRET_DOC, f"unrelated words then {EMAIL} again", "nothing to see here at all"]
    samples = [_sample(i, t) for i, t in enumerate(texts)]
    scores = {"perplexity": np.array([3.0, 1.0, 2.0])}
    index = TrainingIndex([SECRET_DOC, "another training document"])
    table = extraction_table(["top_n"] * 3, scores, texts, partial(verify_sample, index, min_chars=40),
                             sample_ids=[s.sample_id for s in samples], candidates=3, top_k=1)
    rows = sample_records(samples, scores, table)
    assert [r["verified"] for r in rows] == [True, False, False]  # top_k = 1: only the best-ranked is checked
    assert rows[0]["memorized"] is True and rows[0]["match_chars"] == len(SECRET_DOC) and rows[0]["k_eidetic"] == 1
    assert rows[1]["memorized"] is None and rows[1]["match_chars"] is None
    for row, text in zip(rows, texts):
        assert EMAIL not in row["text"] and len(row["text"]) == len(text)
    assert rows[0]["text"].count("*") == len(EMAIL) - 2 and EMAIL[-2:] in rows[0]["text"]
    assert rows[0]["score_perplexity"] == 3.0 and rows[0]["generated_tokens"] == len(SECRET_DOC)
    assert table.memorized_pii and all(EMAIL not in str(entry) for entry in table.memorized_pii)


def test_canaries_found_in_any_sample_counted_once_per_sample():
    canaries = [
        {"canary_id": "number-x4-0", "format": "number", "insertions": 4, "prefix": "the random number is ",
         "text": "the random number is 123456789", "randomness": ["1"], "included": True, "audit": False},
        {"canary_id": "number-x64-0", "format": "number", "insertions": 64, "prefix": "the random number is ",
         "text": "the random number is 987654321", "randomness": ["9"], "included": True, "audit": False},
    ]
    samples = [_sample(0, "x the random number is 123456789 y"), _sample(1, "number 123456789."),
               _sample(2, "91234567890 is not it"), _sample(3, "nothing")]
    found = canaries_in_samples(samples, canaries)
    assert found == [{"canary_id": "number-x4-0", "format": "number", "insertions": 4, "sample_id": "top_n-0",
                      "samples": 2}]


def test_reference_ratio_needs_a_distinct_reference():
    params = ExtractParams(metrics=("perplexity", "reference_ratio", "zlib"))
    assert active_metrics(params, has_reference=True) == ["perplexity", "reference_ratio", "zlib"]
    assert active_metrics(params, has_reference=False) == ["perplexity", "zlib"]
