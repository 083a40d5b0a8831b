"""DVC stage `canaries`: make canaries from params and insert them into the training split.

It is the first stage that knows the training split's size, so before writing anything it also
refuses canary copies that would swamp the corpus and, for char-tokenizer variants, the training
settings that need N (DP delta, batch, target epsilon): an error there names the train key
instead of failing in the train stage.
"""

from __future__ import annotations

import random
from pathlib import Path

from canaryaudit import tracking
from canaryaudit.canaries import (
    check_canary_volume,
    check_distinct,
    count_occurrences,
    insert_canaries,
    make_canaries,
)
from canaryaudit.config import load_params
from canaryaudit.errors import DataError, ParamsError
from canaryaudit.io import write_json
from canaryaudit.schemas import CANARIES, DOCUMENTS, read_checked_jsonl, write_checked_jsonl
from canaryaudit.stagekit import log, run_stage, stage_parser
from canaryaudit.training.preflight import check_char_variants


def main(args) -> None:
    all_params = load_params(args.params)
    params = all_params.canaries
    rng = random.Random(params.seed)
    formats = params.parsed_formats()
    canaries = [c for fmt in formats for c in make_canaries(fmt, params.plan_for(fmt.name), rng)]
    try:
        check_distinct(canaries)
    except ValueError as exc:
        raise ParamsError(f"canaries.formats: {exc}") from None
    train = read_checked_jsonl(DOCUMENTS, args.train)
    warning = check_canary_volume(canaries, [r["text"] for r in train], params.warn_fraction, params.max_fraction)
    if warning:
        log.warning("canaries: %s", warning)
    texts = insert_canaries([r["text"] for r in train], canaries, rng)
    for variant, n in check_char_variants(all_params.train, texts).items():
        log.info("train.variants.%s: %d training sequences; its settings fit them", variant, n)
    mismatched = [c.canary_id for c in canaries if count_occurrences(texts, c.text) != c.insertions]
    if mismatched:  # an invariant of insert_canaries, checked before anything is written
        raise DataError("data/augmented/train.jsonl", f"canary copies differ from the plan for {mismatched[:5]}")
    augmented = [{**r, "text": t} for r, t in zip(train, texts)]
    write_checked_jsonl(DOCUMENTS, args.out_train, augmented)
    out = Path(args.out)
    write_checked_jsonl(CANARIES, out / "canaries.jsonl", [c.record() for c in canaries])
    write_json(out / "formats.json", {
        f.name: {"template": f.template, "prefix": f.prefix, "holes": len(f.holes),
                 "space_size": f.space_size, "log2_space_size": f.log2_space_size}
        for f in formats
    })
    summary = {
        "canaries": len(canaries),
        "included": sum(c.included for c in canaries),
        "held_out": sum(not c.included for c in canaries),
        "audit": sum(c.audit for c in canaries),
        "copies_inserted": sum(c.insertions for c in canaries),
        "per_format": {f.name: {"canaries": sum(c.format == f.name for c in canaries),
                                "log2_space_size": f.log2_space_size} for f in formats},
    }
    write_json(args.report, summary)
    tracking.log_stage("canaries", {"canaries": params.model_dump()}, tracking.numeric_metrics(summary, "canaries"))
    log.info("%d canaries (%d included, %d copies) -> %s, %s", summary["canaries"], summary["included"],
             summary["copies_inserted"], args.out_train, out / "canaries.jsonl")


if __name__ == "__main__":
    parser = stage_parser("canaries", __doc__)
    parser.add_argument("--train", default="data/sanitized/train.jsonl")
    parser.add_argument("--out-train", default="data/augmented/train.jsonl")
    parser.add_argument("--out", default="data/canaries")
    parser.add_argument("--report", default="reports/canaries.json")
    run_stage("canaries", main, parser)
