"""DVC stage `pretrain`: the public base model every variant fine-tunes from (train.init: pretrain).

Builds the public corpus of pretrain.source (disjoint from the private corpus: see
canaryaudit.corpus.public), sanitizes it like the private text, trains a base model on it
without DP and writes models/pretrain (Hugging Face layout) and data/public. With
pretrain.source: none both folders hold only a manifest saying so, and every variant trains
from scratch.
"""

from __future__ import annotations

import random
from pathlib import Path

from typing import TYPE_CHECKING

from canaryaudit import tracking
from canaryaudit.config import Params, load_params
from canaryaudit.io import atomic_folder, write_json, write_jsonl
from canaryaudit.stagekit import log, run_in_processes, run_stage, stage_parser

if TYPE_CHECKING:
    from canaryaudit.corpus.public import PublicCorpus
    from canaryaudit.training.distributed import World

MANIFEST = "pretrain.json"


def _texts(path: str) -> list[str]:
    from canaryaudit.schemas import DOCUMENTS, read_checked_jsonl

    return [r["text"] for r in read_checked_jsonl(DOCUMENTS, path)]


def sanitized_records(params: Params, corpus: PublicCorpus) -> list[dict[str, object]]:
    """The public documents as records, through the sanitize stage's detectors and actions."""
    from canaryaudit.pii.detectors import EntropyOptions, build_detectors
    from canaryaudit.pii.sanitize import sanitize_records

    records = [d.record() for d in corpus.documents]
    s = params.sanitize
    if not (params.pretrain.sanitize and s.enabled):
        return records
    detectors = build_detectors(s.detectors, EntropyOptions(**s.entropy.model_dump()))
    return sanitize_records(records, detectors, s.action_for, True).records


def split_public(records: list[dict[str, object]], valid_fraction: float, seed: int):
    """(train, valid) records: a seeded shuffle by document, each keeping the source order."""
    order = list(range(len(records)))
    random.Random(f"public-split-{seed}").shuffle(order)
    n_valid = max(1, round(len(records) * valid_fraction))
    valid = set(order[:n_valid])
    return ([r for i, r in enumerate(records) if i not in valid], [r for i, r in enumerate(records) if i in valid])


def write_none(args) -> None:
    """pretrain.source: none: manifests only (every variant then trains from scratch)."""
    manifest = {"source": "none", "model": False, "why": "pretrain.source is none: variants train from scratch"}
    for folder in (args.out, args.public):
        with atomic_folder(folder) as out:
            write_json(out / MANIFEST, manifest)
    write_json(args.report, manifest)
    log.info("pretrain: pretrain.source is none; no base model (variants train from scratch)")


def main(args) -> None:
    params = load_params(args.params)
    if not params.pretrain.enabled:
        write_none(args)
        return
    # The training stack (torch, transformers, Opacus: ~4 s of imports a process) only when there is a base to
    # train: with pretrain.source none this stage stays a light process (sweeps and flows run it once per point)
    from canaryaudit.training.base import pretrain_settings
    from canaryaudit.training.distributed import close_world, init_world, launched_by_torchrun
    from canaryaudit.training.loop import resolve_device

    settings = pretrain_settings(params.train, params.pretrain)
    if settings.distributed.nproc > 1 and not launched_by_torchrun():
        run_in_processes(settings.distributed.nproc)  # each process runs this script under torchrun
        return
    world, _ = init_world(resolve_device(settings.device), settings.distributed.backend)
    try:
        pretrain(args, params, settings, world)
    finally:
        close_world(world)


def pretrain(args, params: Params, settings, world: World) -> None:
    """Build the public corpus and train the base on it in this process (one of world.size); rank 0 writes."""
    from canaryaudit.corpus.public import load_public_corpus
    from canaryaudit.schemas import DOCUMENTS, validate_records
    from canaryaudit.training.data import file_sha256
    from canaryaudit.training.distributed import quiet_workers
    from canaryaudit.training.loop import Trainer
    from canaryaudit.training.models import count_parameters
    from canaryaudit.training.pipeline import build_variant_model, model_card, prepare_data, save_trained, train_report

    quiet_workers(world)
    corpus = load_public_corpus(params, _texts(args.private), Path(args.params).resolve().parent)
    train_records, valid_records = split_public(sanitized_records(params, corpus), params.pretrain.valid_fraction,
                                                params.pretrain.seed)
    data = prepare_data(settings, [str(r["text"]) for r in train_records], [str(r["text"]) for r in valid_records],
                        _texts(args.test))
    model, spec = build_variant_model(settings, data.tokenizer, "pretrain")
    log.info("pretrain: %s with %d parameters on %d public documents (%s), %d sequences of %d tokens", spec.arch,
             count_parameters(model), len(train_records), corpus.description, len(data.train), spec.context)
    result = Trainer(settings, model, data.train, data.valid, data.test, key="pretrain", world=world).run()
    if not world.is_main:
        return
    public = Path(args.public)
    with atomic_folder(public) as out:
        for name, records in (("train", train_records), ("valid", valid_records)):
            validate_records(DOCUMENTS, records, out / f"{name}.jsonl")
            write_jsonl(out / f"{name}.jsonl", records)
        write_json(out / MANIFEST, {"source": params.pretrain.source, "description": corpus.description})
    card = model_card("pretrain", settings, spec, result.model, result, file_sha256(str(public / "train.jsonl")))
    card["public_corpus"] = {"source": params.pretrain.source, "description": corpus.description,
                             "test_split": "the private test split (sanitized): where fine-tuning starts"}
    save_trained(args.out, result, spec, data.tokenizer, card)
    report = {**train_report("pretrain", result, count_parameters(result.model), settings),
              "source": params.pretrain.source, "description": corpus.description,
              "documents": len(train_records), "valid_documents": len(valid_records),
              "bytes": sum(len(str(r["text"]).encode("utf-8")) for r in train_records),
              "excluded_private_names": corpus.excluded_names, "dropped_private_copies": corpus.dropped_duplicates,
              "test_split": "private test (sanitized)"}
    write_json(args.report, report)
    tracking.log_stage("pretrain", {"pretrain": params.pretrain.model_dump()},
                       {k: float(v) for k, v in report.items() if isinstance(v, (int, float)) and not isinstance(v, bool)})
    log.info("pretrain: private test perplexity %.2f from the public base alone -> %s", result.test_perplexity, args.out)


if __name__ == "__main__":
    parser = stage_parser("pretrain", __doc__)
    parser.add_argument("--private", default="data/raw/train.jsonl",
                        help="private training text: public copies of its documents are dropped")
    parser.add_argument("--test", default="data/sanitized/test.jsonl", help="private test split (evaluation only)")
    parser.add_argument("--out", default="models/pretrain", help="base model folder")
    parser.add_argument("--public", default="data/public", help="the public corpus as used (train/valid.jsonl)")
    parser.add_argument("--report", default="reports/pretrain.json")
    run_stage("pretrain", main, parser)
