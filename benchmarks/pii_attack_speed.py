"""PII attack speed: contexts scored once and reused (the pii stage) vs every sequence scored whole.

Builds the pii stage's targets and candidate sets from a trained model folder
(default models/nonprivate) and the private split (data/raw, ground truth when
present), with the stage's settings from params.yaml, then times in the same
process, alternating, ``--repeats`` rounds each keeping its fastest:

* inference: Px of every candidate, with the context's KV cache reused by its
  candidates (``reuse_context``) vs each context + candidate scored whole;
* reconstruction: greedy decoding with prompts prefilled at once and rows
  stopped once decided vs token-by-token teacher forcing of every prompt and
  the whole budget.

The two ways must agree: the largest Px difference (bits), whether the winners
and reconstructed flags are identical. Writes JSON (default
benchmarks/results/pii_attack_speed.json) with seconds (wall and CPU), the
speedup ratios and the load average.

    python benchmarks/pii_attack_speed.py --model models/nonprivate
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from canaryaudit.config import load_params
from canaryaudit.io import atomic_open
from canaryaudit.pii.detectors import DETECTORS, EntropyOptions, build_detectors
from canaryaudit.privacy.pii_attack import (
    AttackSettings,
    candidate_sets,
    context_renderer,
    filling_px,
    greedy_reconstructed,
    inference_wins,
    occurrences,
    select_targets,
    training_spans,
)
from canaryaudit.schemas import DOCUMENTS, read_checked_jsonl
from canaryaudit.training.models import load_model_folder
from canaryaudit.training.tokenizers import load_tokenizer


def timed(fn: Callable[[], Any]) -> tuple[float, float, Any]:
    """(wall seconds, CPU seconds of this process, result) of one call."""
    wall, cpu = time.perf_counter(), time.process_time()
    result = fn()
    return time.perf_counter() - wall, time.process_time() - cpu, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="models/nonprivate")
    parser.add_argument("--raw", default="data/raw")
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--only", choices=["inference", "reconstruction"], default=None, help="time one attack")
    parser.add_argument("--out", default="benchmarks/results/pii_attack_speed.json")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    params = load_params(args.params)
    pii, sanitize = params.pii, params.sanitize
    device = torch.device("cpu")
    model, spec = load_model_folder(Path(args.model), device)
    model.eval()
    tokenizer = load_tokenizer(Path(args.model), spec.vocab_size)
    documents = read_checked_jsonl(DOCUMENTS, Path(args.raw) / "train.jsonl")
    entropy = EntropyOptions(**sanitize.entropy.model_dump())
    detectors = build_detectors(sanitize.detectors or DETECTORS.names(), entropy)
    spans, _ = training_spans(Path(args.raw), documents, detectors)
    found = occurrences(documents, spans, pii.types)
    settings = AttackSettings(pii.max_per_type, pii.context_chars, pii.candidates, pii.batch_size,
                              pii.reconstruction.enabled, pii.reconstruction.extra_tokens)
    rng = random.Random(pii.seed)
    texts = {str(d["doc_id"]): str(d["text"]) for d in documents}
    targets = select_targets(found, texts, settings, context_renderer(sanitize.enabled, sanitize.action_for,
                                                                      detectors), rng)
    pool: dict[str, list[str]] = defaultdict(list)
    for _, pii_type, value, _ in found:
        pool[pii_type].append(value)
    sets = candidate_sets(targets, pool, settings.candidates, rng)
    pairs = [(t.context, value) for t, values in zip(targets, sets) for value in values]

    runs: dict[str, Callable[[], Any]] = {
        "inference_reused": lambda: filling_px(model, tokenizer, pairs, settings.batch_size, device),
        "inference_whole": lambda: filling_px(model, tokenizer, pairs, settings.batch_size, device, False),
        "reconstruction_reused": lambda: greedy_reconstructed(model, tokenizer, targets, settings, device),
        "reconstruction_whole": lambda: greedy_reconstructed(model, tokenizer, targets, settings, device, False),
    }
    kinds = [args.only] if args.only else ["inference", "reconstruction"]
    runs = {name: run for name, run in runs.items() if name.split("_")[0] in kinds}
    wall: dict[str, float] = {}
    cpu: dict[str, float] = {}
    results: dict[str, Any] = {}
    for _ in range(args.repeats):
        for name, run in runs.items():
            seconds, cpu_seconds, results[name] = timed(run)
            wall[name] = min(wall.get(name, float("inf")), seconds)
            cpu[name] = min(cpu.get(name, float("inf")), cpu_seconds)
    result: dict[str, Any] = {
        "model": args.model,
        "targets": len(targets),
        "candidate_sequences": len(pairs),
        "seconds_wall": wall,
        "seconds_cpu": cpu,
        "speedup_wall": {kind: wall[f"{kind}_whole"] / wall[f"{kind}_reused"] for kind in kinds},
        "speedup_cpu": {kind: cpu[f"{kind}_whole"] / cpu[f"{kind}_reused"] for kind in kinds},
        "attacks_wall_s": {way: sum(wall[f"{kind}_{way}"] for kind in kinds) for way in ("reused", "whole")},
        "load_average": os.getloadavg(),
        "machine": {"python": platform.python_version(), "processor": platform.machine(),
                    "torch_threads": torch.get_num_threads()},
    }
    if "inference" in kinds:
        px_reused, px_whole = results["inference_reused"], results["inference_whole"]
        result["max_px_difference_bits"] = float(np.max(np.abs(px_reused - px_whole))) if len(pairs) else 0.0
        result["same_inference_wins"] = (inference_wins(px_reused, sets, random.Random(0))
                                         == inference_wins(px_whole, sets, random.Random(0)))
    if "reconstruction" in kinds:
        result["same_reconstructed"] = results["reconstruction_reused"] == results["reconstruction_whole"]
        result["reconstructed"] = int(sum(results["reconstruction_reused"]))
    with atomic_open(Path(args.out)) as handle:
        json.dump(result, handle, indent=2)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
