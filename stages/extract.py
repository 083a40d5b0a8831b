"""DVC stage `extract@VARIANT`: generate samples, rank by membership signals, verify against the training data.

Also membership-inference AUC / TPR at low FPR (training vs test segments) and the
one-run empirical epsilon lower bound from the audit canaries.
"""

from __future__ import annotations

from pathlib import Path

from canaryaudit import tracking
from canaryaudit.config import load_params
from canaryaudit.errors import ParamsError
from canaryaudit.extraction.pipeline import AuditedModel, run_extraction
from canaryaudit.io import read_json, write_csv, write_json, write_jsonl
from canaryaudit.report.summary import stage_metrics
from canaryaudit.schemas import CANARIES, DOCUMENTS, SAMPLES, read_checked_jsonl, validate_records
from canaryaudit.stagekit import log, run_stage, stage_parser
from canaryaudit.training.loop import resolve_device
from canaryaudit.training.models import load_model_folder
from canaryaudit.training.base import has_base_model
from canaryaudit.training.tokenizers import load_tokenizer

TOP_SAMPLES = 100  # memorized samples kept in V.json (the report shows report.top_samples of them)


def _texts(path: str) -> list[str]:
    return [r["text"] for r in read_checked_jsonl(DOCUMENTS, path)]


def load_audited(args, reference_variant: str, device) -> tuple[AuditedModel, str | None]:
    """The audited model with its reference, and why there is no reference (None: there is one)."""
    model, spec = load_model_folder(Path(args.model), device)
    tokenizer = load_tokenizer(Path(args.model), spec.vocab_size)
    if args.variant == reference_variant:  # the ratio against itself is identically 1: skip the metric
        return AuditedModel(model, tokenizer, device), None
    if not has_base_model(Path(args.reference_model)):  # models/pretrain with pretrain.source: none
        return AuditedModel(model, tokenizer, device), (
            f"no reference model: {args.reference_model} holds no model (pretrain.source is none); name a train "
            "variant in extract.reference_variant")
    reference, ref_spec = load_model_folder(Path(args.reference_model), device)
    return AuditedModel(model, tokenizer, device, reference,
                        load_tokenizer(Path(args.reference_model), ref_spec.vocab_size)), None


def public_texts(folder: str | None) -> list[str] | None:
    """The public pretraining corpus (data/public/train and valid), or None without one."""
    if not folder or not (Path(folder) / "train.jsonl").is_file():
        return None
    return [t for name in ("train", "valid") if (Path(folder) / f"{name}.jsonl").is_file()
            for t in _texts(str(Path(folder) / f"{name}.jsonl"))]


def log_to_mlflow(variant: str, params, report: dict) -> None:
    tracker = tracking.Tracker()
    run_id = tracker.start_variant_run("extract", variant, {"extract": params.model_dump(mode="json")})
    metrics = {
        "unique_memorized": float(report["unique_memorized"]),
        "memorized_pii": float(len(report["memorized_pii"])),
        "canaries_in_samples": float(len(report["memorized_canaries"])),
    }
    for name, entry in report["membership"]["metrics"].items():
        metrics[f"mia_auc.{name}"] = entry["auc"]
        metrics[f"mia_tpr_at_1pct_fpr.{name}"] = entry["tpr_at_1pct_fpr"]
    if report["empirical_epsilon"]:
        metrics["empirical_epsilon"] = report["empirical_epsilon"]["epsilon_lower_bound"]
    tracker.log_metrics(run_id, {**metrics, **stage_metrics("extract", variant, report)})
    tracker.log_json_artifact(run_id, report["table"], "extraction_table.json")
    tracker.finish(run_id)


def main(args) -> None:
    all_params = load_params(args.params)
    params = all_params.extract
    device = resolve_device(params.device)
    audited, no_reference = load_audited(args, params.reference_variant, device)
    try:
        report, samples, roc = run_extraction(
            audited, params, variant=args.variant, reference_variant=params.reference_variant,
            train_texts=_texts(args.train), test_texts=_texts(args.test), member_texts=_texts(args.members),
            canaries=read_checked_jsonl(CANARIES, args.canaries), train_report=read_json(args.train_report),
            top_samples=TOP_SAMPLES, base_dir=Path(args.params).resolve().parent,
            public_texts=public_texts(args.public), no_reference_reason=no_reference,
        )
    except ValueError as exc:  # a setting that does not fit the data (e.g. segments longer than documents)
        raise ParamsError(str(exc)) from None
    validate_records(SAMPLES, samples, args.samples)
    write_json(args.report, report)
    write_jsonl(args.samples, samples)
    write_csv(args.roc, roc)
    if tracking.tracking_enabled():
        log_to_mlflow(args.variant, params, report)
    informative = {k: v for k, v in report["membership"]["metrics"].items() if not v["degenerate"]}
    best = max((informative or report["membership"]["metrics"]).items(), key=lambda kv: kv[1]["auc"])
    eps = report["empirical_epsilon"]
    log.info("%s: %d unique memorized samples, %d with PII; %d canaries in samples; best MIA AUC %.3f (%s)%s",
             args.variant, report["unique_memorized"], len(report["memorized_pii"]),
             len(report["memorized_canaries"]), best[1]["auc"], best[0],
             f"; empirical epsilon >= {eps['epsilon_lower_bound']:.3f}" if eps else "")


if __name__ == "__main__":
    parser = stage_parser("extract", __doc__)
    parser.add_argument("--variant", required=True)
    parser.add_argument("--model", required=True, help="models/VARIANT")
    parser.add_argument("--reference-model", required=True, help="models/<extract.reference_variant>")
    parser.add_argument("--public", default=None,
                        help="the public pretraining corpus (data/public): its text is not counted as private")
    parser.add_argument("--train", default="data/augmented/train.jsonl")
    parser.add_argument("--members", default="data/sanitized/train.jsonl",
                        help="training split before canary insertion: membership-inference members")
    parser.add_argument("--test", default="data/sanitized/test.jsonl")
    parser.add_argument("--canaries", default="data/canaries/canaries.jsonl")
    parser.add_argument("--train-report", required=True, help="reports/train/VARIANT.json (epsilon, delta)")
    parser.add_argument("--report", required=True, help="reports/extract/VARIANT.json")
    parser.add_argument("--samples", required=True, help="reports/extract/VARIANT_samples.jsonl")
    parser.add_argument("--roc", required=True, help="reports/extract/VARIANT_roc.csv")
    run_stage("extract", main, parser)
