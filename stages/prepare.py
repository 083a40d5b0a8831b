"""DVC stage `prepare`: load data.source, split by document, write data/raw/*.jsonl."""

from __future__ import annotations

from pathlib import Path

from canaryaudit import tracking
from canaryaudit.config import load_params
from canaryaudit.corpus.sources import describe, load_corpus, split_documents, truth_records
from canaryaudit.io import write_json, write_jsonl
from canaryaudit.schemas import DOCUMENTS, PII_TRUTH, validate_records
from canaryaudit.stagekit import log, run_stage, stage_parser


def main(args) -> None:
    params = load_params(args.params).data
    corpus = load_corpus(params, Path.cwd())
    splits = split_documents(corpus.documents, params.split.valid_fraction, params.split.test_fraction, params.seed)
    out = Path(args.out)
    outputs = {out / f"{name}.jsonl": (DOCUMENTS, [d.record() for d in docs]) for name, docs in splits.items()}
    if corpus.truth is not None:
        outputs[out / "pii_truth.jsonl"] = (PII_TRUTH, truth_records(corpus.truth))
    for path, (schema, records) in outputs.items():  # check everything before writing anything
        validate_records(schema, records, path)
    for path, (_schema, records) in outputs.items():
        write_jsonl(path, records)
    summary = {"source": params.source, "description": corpus.description, "ground_truth": corpus.truth is not None,
               "skipped_files": list(corpus.skipped_files), "splits": describe(splits)}
    write_json(args.report, summary)
    tracking.log_stage("prepare", {"data": params.model_dump()}, tracking.numeric_metrics(summary["splits"], "prepare"))
    for name, info in summary["splits"].items():
        log.info("%s: %d documents, %.1f kB -> %s", name, info["documents"], info["bytes"] / 1e3, out / f"{name}.jsonl")


if __name__ == "__main__":
    parser = stage_parser("prepare", __doc__)
    parser.add_argument("--out", default="data/raw", help="folder for train/valid/test.jsonl")
    parser.add_argument("--report", default="reports/prepare.json")
    run_stage("prepare", main, parser)
