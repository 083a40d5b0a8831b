"""DVC stage `pii@VARIANT`: PII reconstruction and inference attacks (Lukas et al. 2023) on one model.

Targets are PII occurrences of the private training split (data/raw/train.jsonl):
the builtin corpus's ground truth, or the detectors' spans for other data.
Writes reports/pii/VARIANT.json: accuracy per type with chance and exact 95 %
intervals, reconstructed counts and masked examples; never a raw value.
"""

from __future__ import annotations

import random
import time
from collections import defaultdict
from pathlib import Path

import torch

from canaryaudit import tracking
from canaryaudit.config import load_params
from canaryaudit.io import write_json
from canaryaudit.pii.detectors import DETECTORS, EntropyOptions, build_detectors
from canaryaudit.privacy.pii_attack import (
    AttackSettings,
    context_renderer,
    occurrences,
    run_attacks,
    select_targets,
    training_spans,
)
from canaryaudit.report.summary import stage_metrics
from canaryaudit.schemas import DOCUMENTS, read_checked_jsonl
from canaryaudit.stagekit import log, run_stage, stage_parser
from canaryaudit.training.loop import resolve_device
from canaryaudit.training.models import load_model_folder
from canaryaudit.training.tokenizers import load_tokenizer


def main(args) -> None:
    all_params = load_params(args.params)
    params, sanitize = all_params.pii, all_params.sanitize
    started = time.perf_counter()
    if params.threads is not None:
        torch.set_num_threads(params.threads)
    device = resolve_device(params.device)
    model, spec = load_model_folder(Path(args.model), device)
    tokenizer = load_tokenizer(Path(args.model), spec.vocab_size)
    raw = Path(args.raw)
    documents = read_checked_jsonl(DOCUMENTS, raw / "train.jsonl")
    detectors = build_detectors(sanitize.detectors or DETECTORS.names(), EntropyOptions(**sanitize.entropy.model_dump()))
    spans, source = training_spans(raw, documents, detectors)
    found = occurrences(documents, spans, params.types)
    settings = AttackSettings(params.max_per_type, params.context_chars, params.candidates, params.batch_size,
                              params.reconstruction.enabled, params.reconstruction.extra_tokens)
    rng = random.Random(params.seed)
    texts = {str(d["doc_id"]): str(d["text"]) for d in documents}
    render = context_renderer(sanitize.enabled, sanitize.action_for, detectors)
    targets = select_targets(found, texts, settings, render, rng)
    pool: dict[str, list[str]] = defaultdict(list)
    for _, pii_type, value, _ in found:
        pool[pii_type].append(value)
    report = {"variant": args.variant, "sanitized": sanitize.enabled, "targets_from": source,
              "settings": params.model_dump(mode="json"),
              **run_attacks(model, tokenizer, targets, pool, settings, rng, device)}
    report["seconds"] = round(time.perf_counter() - started, 2)
    write_json(args.report, report)
    overall = report["inference"]["types"]["all"]
    recon = report["reconstruction"]
    if tracking.tracking_enabled():
        tracker = tracking.Tracker()
        run_id = tracker.start_variant_run("pii", args.variant, {"pii": params.model_dump(mode="json")})
        metrics = {f"pii_inference_accuracy.{t}": e["rate"] for t, e in report["inference"]["types"].items()
                   if e["rate"] is not None}
        if recon:
            metrics.update({f"pii_reconstructed.{t}": float(e["successes"]) for t, e in recon["types"].items()})
        tracker.log_metrics(run_id, {**metrics, **stage_metrics("pii", args.variant, report)})
        tracker.finish(run_id)
    log.info("%s: PII inference accuracy %s over %d targets (chance %s)%s", args.variant,
             "n/a" if overall["rate"] is None else f"{overall['rate']:.3f}", overall["trials"],
             "n/a" if overall["chance"] is None else f"{overall['chance']:.3f}",
             f"; {recon['types']['all']['successes']} reconstructed" if recon else "")


if __name__ == "__main__":
    parser = stage_parser("pii", __doc__)
    parser.add_argument("--variant", required=True)
    parser.add_argument("--model", required=True, help="models/VARIANT")
    parser.add_argument("--raw", default="data/raw", help="the private corpus before sanitization (train.jsonl)")
    parser.add_argument("--report", required=True, help="reports/pii/VARIANT.json")
    run_stage("pii", main, parser)
