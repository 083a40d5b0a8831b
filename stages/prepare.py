"""DVC stage `prepare`: load data.source, split by document, write data/raw/*.jsonl."""

from __future__ import annotations

from pathlib import Path

from canaryaudit import tracking
from canaryaudit.config import load_params
from canaryaudit.io import write_json
from canaryaudit.schemas import DOCUMENTS, PII_TRUTH, write_checked_jsonl
from canaryaudit.sources import describe, load_corpus, split_documents, truth_records
from canaryaudit.stagekit import log, run_stage, stage_parser


def main(args) -> None:
    params = load_params(args.params).data
    corpus = load_corpus(params, Path.cwd())
    splits = split_documents(corpus.documents, params.split.valid_fraction, params.split.test_fraction, params.seed)
    out = Path(args.out)
    for name, docs in splits.items():
        write_checked_jsonl(DOCUMENTS, out / f"{name}.jsonl", [d.record() for d in docs])
    if corpus.truth is not None:
        write_checked_jsonl(PII_TRUTH, out / "pii_truth.jsonl", truth_records(corpus.truth))
    summary = {"source": params.source, "description": corpus.description, "ground_truth": corpus.truth is not None,
               "splits": describe(splits)}
    write_json(args.report, summary)
    tracking.log_stage("prepare", {"data": params.model_dump()}, tracking.numeric_metrics(summary["splits"], "prepare"))
    for name, info in summary["splits"].items():
        log.info("%s: %d documents, %.1f kB -> %s", name, info["documents"], info["bytes"] / 1e3, out / f"{name}.jsonl")


if __name__ == "__main__":
    parser = stage_parser("prepare", __doc__)
    parser.add_argument("--out", default="data/raw", help="folder for train/valid/test.jsonl")
    parser.add_argument("--report", default="reports/prepare.json")
    run_stage("prepare", main, parser)
