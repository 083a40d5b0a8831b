"""DVC stage `sanitize`: detect PII, mask/drop/keep it per type, score detectors on ground truth."""

from __future__ import annotations

from pathlib import Path

from canaryaudit import tracking
from canaryaudit.config import load_params
from canaryaudit.corpus.adversarial import ADVERSARIAL_TYPES, generate_adversarial
from canaryaudit.corpus.sources import SPLITS
from canaryaudit.io import write_json
from canaryaudit.pii.detectors import EntropyOptions, build_detectors, detect
from canaryaudit.pii.sanitize import sanitize_records, score_detection, scores_table
from canaryaudit.pii.spans import PII_TYPES, PiiSpan
from canaryaudit.schemas import DOCUMENTS, PII_TRUTH, read_checked_jsonl, write_checked_jsonl
from canaryaudit.stagekit import log, run_stage, stage_parser


def _truth(raw: Path) -> dict[str, list[PiiSpan]] | None:
    path = raw / "pii_truth.jsonl"
    if not path.exists():
        return None
    truth: dict[str, list[PiiSpan]] = {}
    for row in read_checked_jsonl(PII_TRUTH, path):
        truth.setdefault(row["doc_id"], []).append(PiiSpan(row["type"], row["start"], row["end"]))
    return truth


def adversarial_scores(params, detectors) -> dict[str, object] | None:
    """Detector precision and recall on the adversarial corpus (values as real text writes them, look-alikes)."""
    settings = params.adversarial
    if settings.documents == 0:
        return None
    docs = list(generate_adversarial(settings.seed, settings.documents))
    pairs = [(detect(d.text, detectors), d.pii) for d in docs]
    return {"documents": settings.documents, "seed": settings.seed,
            "detection_quality": scores_table(score_detection(pairs, ADVERSARIAL_TYPES), params.detectors)}


def main(args) -> None:
    params = load_params(args.params).sanitize
    raw, out = Path(args.raw), Path(args.out)
    detectors = build_detectors(params.detectors, EntropyOptions(**params.entropy.model_dump()))
    truth = _truth(raw)
    report: dict[str, object] = {"enabled": params.enabled, "detectors": list(params.detectors),
                                 "actions": {t: params.action_for(t) for t in params.detectors}, "splits": {}}
    pairs = []
    for split in SPLITS:
        records = read_checked_jsonl(DOCUMENTS, raw / f"{split}.jsonl")
        result = sanitize_records(records, detectors, params.action_for, params.enabled)
        write_checked_jsonl(DOCUMENTS, out / f"{split}.jsonl", result.records)
        report["splits"][split] = result.counts.as_dict()
        if truth is not None:
            pairs.extend((result.detected[r["doc_id"]], truth.get(r["doc_id"], [])) for r in records)
    report["detection_quality"] = (
        scores_table(score_detection(pairs, PII_TYPES), params.detectors) if truth is not None else None
    )
    report["adversarial"] = adversarial_scores(params, detectors)
    write_json(args.report, report)
    metrics = tracking.numeric_metrics({"splits": report["splits"], "quality": report["detection_quality"] or {}}, "sanitize")
    tracking.log_stage("sanitize", {"sanitize": params.model_dump()}, metrics)
    for split, counts in report["splits"].items():
        log.info("%s: %d PII items found, %d documents dropped", split, sum(counts["found"].values()), counts["dropped"])


if __name__ == "__main__":
    parser = stage_parser("sanitize", __doc__)
    parser.add_argument("--raw", default="data/raw")
    parser.add_argument("--out", default="data/sanitized")
    parser.add_argument("--report", default="reports/sanitize.json")
    run_stage("sanitize", main, parser)
