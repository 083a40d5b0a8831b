"""pandera schemas of every file passed between stages, checked on write and on read."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import pandas as pd
import pandera.pandas as pa

from canaryaudit.errors import DataError
from canaryaudit.io import read_jsonl_with_lines, write_jsonl
from canaryaudit.pii.spans import PII_TYPES

DOCUMENTS = pa.DataFrameSchema(
    {
        "doc_id": pa.Column(str, unique=True),
        "text": pa.Column(str, pa.Check.str_length(min_value=1)),
        "author": pa.Column(str, nullable=True, required=False),
    },
    strict=True,
    name="documents",
)

PII_TRUTH = pa.DataFrameSchema(
    {
        "doc_id": pa.Column(str),
        "type": pa.Column(str, pa.Check.isin(PII_TYPES)),
        "start": pa.Column(int, pa.Check.ge(0)),
        "end": pa.Column(int, pa.Check.ge(1)),
    },
    checks=[pa.Check(lambda df: df["end"] > df["start"], error="end must exceed start")],
    strict=True,
    name="pii_truth",
)

CANARIES = pa.DataFrameSchema(
    {
        "canary_id": pa.Column(str, unique=True),
        "format": pa.Column(str),
        "text": pa.Column(str, pa.Check.str_length(min_value=1)),
        "prefix": pa.Column(str),
        "randomness": pa.Column(object, pa.Check(lambda s: s.map(lambda v: isinstance(v, list) and len(v) > 0))),
        "insertions": pa.Column(int, pa.Check.ge(0)),
        "included": pa.Column(bool),
        "audit": pa.Column(bool),
    },
    checks=[
        pa.Check(lambda df: df["included"] == (df["insertions"] > 0), error="included iff insertions > 0"),
        pa.Check(
            lambda df: pd.Series([t.startswith(p) for t, p in zip(df["text"], df["prefix"])], index=df.index),
            error="text must start with prefix",
        ),
    ],
    strict=True,
    name="canaries",
)


EXPOSURE = pa.DataFrameSchema(
    {
        "canary_id": pa.Column(str, unique=True),
        "format": pa.Column(str),
        "insertions": pa.Column(int, pa.Check.ge(0)),
        "included": pa.Column(bool),
        "audit": pa.Column(bool),
        "px_bits": pa.Column(float, pa.Check.ge(0)),
        "exposure_interpolation": pa.Column(float),
        "exposure_interpolation_lower_bound": pa.Column(bool),
        "exposure_extrapolation": pa.Column(float, pa.Check(lambda s: s.map(lambda v: v == v and abs(v) != float("inf")))),
        "exposure_extrapolation_lower_bound": pa.Column(bool),
        "exposure_extrapolation_raw": pa.Column(float),
        "exact_rank": pa.Column(float, pa.Check.ge(1), nullable=True, coerce=True),
        "exposure_exact": pa.Column(float, pa.Check.ge(0), nullable=True, coerce=True),
        "exact_px_bits": pa.Column(float, pa.Check.ge(0), nullable=True, coerce=True),
        "exact_rank_rows": pa.Column(float, nullable=True, coerce=True),
        "exact_rank_note": pa.Column(str),
        "extracted": pa.Column(bool),
        "extracted_top1": pa.Column(bool),
        "extraction_position": pa.Column(float, pa.Check.ge(1), nullable=True, coerce=True),
    },
    checks=[
        # every canary without an exact rank says why
        pa.Check(lambda df: df["exact_rank"].notna() | (df["exact_rank_note"].str.len() > 0),
                 error="a canary without exact_rank needs an exact_rank_note"),
        pa.Check(lambda df: df["extracted"] == df["extraction_position"].notna(),
                 error="extracted must be true exactly when extraction_position is set"),
    ],
    strict=True,
    coerce=False,
    name="exposure",
)

# reports/extract/V_samples.jsonl: every generated sample, with its membership scores
# (columns score_<metric>; higher = more likely memorized) and, for those checked against
# the training data, the verification result.
SAMPLES = pa.DataFrameSchema(
    {
        "sample_id": pa.Column(str, unique=True),
        "strategy": pa.Column(str),
        "text": pa.Column(str),
        "prompt_tokens": pa.Column(int, pa.Check.ge(0)),
        "generated_tokens": pa.Column(int, pa.Check.ge(1)),
        "score_.+": pa.Column(float, regex=True, checks=pa.Check(lambda s: s.map(lambda v: v == v), error="nan score")),
        "verified": pa.Column(bool),
        "memorized": pa.Column("boolean", nullable=True, coerce=True),
        "match_start": pa.Column(float, pa.Check.ge(0), nullable=True, coerce=True),
        "match_chars": pa.Column(float, pa.Check.ge(0), nullable=True, coerce=True),
        "k_eidetic": pa.Column(float, pa.Check.ge(0), nullable=True, coerce=True),
    },
    checks=[pa.Check(lambda df: pd.Series([bool(v) or pd.isna(m) for v, m in zip(df["verified"], df["memorized"])],
                                          index=df.index), error="memorized is set only when verified")],
    strict=True,
    coerce=False,
    name="samples",
)


def validate_records(
    schema: pa.DataFrameSchema,
    records: Sequence[dict[str, Any]],
    path: str | os.PathLike[str],
    lines: Sequence[int] | None = None,
) -> None:
    """Check ``records`` against ``schema``; a failure names the file and the first bad record's line.

    ``lines`` maps record positions to file lines (default: position + 1).
    """
    if not records:
        raise DataError(path, f"no {schema.name} records")
    frame = pd.DataFrame.from_records(list(records))
    try:
        schema.validate(frame, lazy=True)
    except pa.errors.SchemaErrors as exc:
        cases = exc.failure_cases
        rows = cases["index"].dropna()
        position = int(rows.min()) if len(rows) else None
        line = None if position is None else (lines[position] if lines is not None else position + 1)
        first = cases.loc[rows.idxmin()] if len(rows) else cases.iloc[0]
        raise DataError(
            path,
            f"does not match the {schema.name} schema: column {first['column']!r} fails {first['check']!r}"
            f" ({len(cases)} failure(s))",
            line=line,
        ) from None


def write_checked_jsonl(schema: pa.DataFrameSchema, path: str | os.PathLike[str], records: Sequence[dict[str, Any]]) -> None:
    validate_records(schema, records, path)
    write_jsonl(path, records)


def read_checked_jsonl(schema: pa.DataFrameSchema, path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    records, lines = read_jsonl_with_lines(path)
    validate_records(schema, records, path, lines)
    return records
