"""DVC stage `exposure@VARIANT`: px, exposure (interpolation, extrapolation, exact) and extraction per canary."""

from __future__ import annotations

import random
from pathlib import Path

from canaryaudit import tracking
from canaryaudit.config import load_params
from canaryaudit.errors import DataError, ParamsError
from canaryaudit.exposure.audit import EXTRACTION_DEFINITION, audit_format, summarize_by_insertions
from canaryaudit.exposure.token_space import LossyTokenizer
from canaryaudit.io import write_csv, write_json
from canaryaudit.report.summary import insertion_key, stage_metrics
from canaryaudit.schemas import CANARIES, EXPOSURE, read_checked_jsonl, validate_records
from canaryaudit.stagekit import log, run_stage, stage_parser
from canaryaudit.training.loop import resolve_device
from canaryaudit.training.models import load_model_folder
from canaryaudit.training.tokenizers import load_tokenizer


def main(args) -> None:
    all_params = load_params(args.params)
    params = all_params.exposure
    device = resolve_device(params.device)
    model, spec = load_model_folder(Path(args.model), device)
    tokenizer = load_tokenizer(Path(args.model), spec.vocab_size)
    canaries = read_checked_jsonl(CANARIES, args.canaries)
    rng = random.Random(params.seed)
    rows: list[dict] = []
    formats: dict[str, dict] = {}
    for fmt in all_params.canaries.parsed_formats():
        group = [c for c in canaries if c["format"] == fmt.name]
        if not group:
            continue
        try:
            fmt_rows, summary = audit_format(model, tokenizer, fmt, group, params, str(device), rng)
        except LossyTokenizer as exc:  # the model's tokenizer file cannot spell the canaries it was trained on
            raise DataError(Path(args.model) / "tokenizer.json",
                            f"cannot be used to measure exposure ({exc}); retrain the model") from None
        except ValueError as exc:
            raise ParamsError(f"exposure.references: {exc}") from None
        rows.extend(fmt_rows)
        formats[fmt.name] = summary
    validate_records(EXPOSURE, rows, args.csv)
    by_insertions = summarize_by_insertions(rows)
    report = {"variant": args.variant, "formats": formats, "by_insertions": by_insertions, "canaries": rows,
              "extracted": sum(r["extracted"] for r in rows if r["included"]),
              "extracted_top1": sum(r["extracted_top1"] for r in rows if r["included"]),
              "extraction_definition": EXTRACTION_DEFINITION}
    write_json(args.report, report)
    write_csv(args.csv, rows)
    if tracking.tracking_enabled():
        tracker = tracking.Tracker()
        run_id = tracker.start_variant_run("exposure", args.variant, {"exposure": params.model_dump(mode="json")})
        metrics = {"extracted_canaries": float(report["extracted"]),
                   "extracted_canaries_top1": float(report["extracted_top1"])}
        for count, entry in by_insertions.items():
            key = insertion_key(int(count))  # x64, held_out: the names summary.json and the parent run use
            metrics[f"extracted_fraction.{key}"] = entry["extracted_fraction"]
            for estimator in ("interpolation", "extrapolation", "exact"):
                if entry[estimator]:
                    metrics[f"exposure_{estimator}.{key}.mean"] = entry[estimator]["mean"]
        tracker.log_metrics(run_id, {**metrics, **stage_metrics("exposure", args.variant, report)})
        tracker.finish(run_id)
    for count, entry in by_insertions.items():
        log.info("%s x%s: exposure interpolation %.2f, extrapolation %.2f bits; extracted %.0f%%", args.variant, count,
                 entry["interpolation"]["mean"], entry["extrapolation"]["mean"], 100 * entry["extracted_fraction"])


if __name__ == "__main__":
    parser = stage_parser("exposure", __doc__)
    parser.add_argument("--variant", required=True)
    parser.add_argument("--model", required=True, help="models/VARIANT")
    parser.add_argument("--canaries", default="data/canaries/canaries.jsonl")
    parser.add_argument("--report", required=True, help="reports/exposure/VARIANT.json")
    parser.add_argument("--csv", required=True, help="reports/exposure/VARIANT.csv")
    run_stage("exposure", main, parser)
