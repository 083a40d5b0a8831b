"""Sharded exposure scoring: throughput with N model replicas against 1, in one process.

Scores the same random 9-digit candidates of the default `number` format with
``NextTokenScorer(shards=1)`` and ``shards=N`` (same batches, so the same numbers: checked here
too), alternating rounds and keeping the median time, and writes
benchmarks/results/sharded_scoring.json with the ratio of candidates per second. On CUDA the N
replicas sit on cuda:0..N-1; on the CPU they are threads sharing the cores (expect no gain: torch
already uses every core for one replica).

    python benchmarks/sharded_scoring.py                          # CPU, models/nonprivate if present
    python benchmarks/sharded_scoring.py --device cuda --shards 2
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from canaryaudit.canaries import parse_format
from canaryaudit.exposure.scoring import NextTokenScorer
from canaryaudit.exposure.search import canary_space, candidate_tokens

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"


def load(model_dir: Path, device: str):
    from canaryaudit.training.models import load_model_folder
    from canaryaudit.training.tokenizers import load_tokenizer

    model, _ = load_model_folder(model_dir)
    return model.to(device).eval(), load_tokenizer(model_dir)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=str(ROOT / "models" / "nonprivate"), help="a model folder (make audit)")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--shards", type=int, default=2)
    parser.add_argument("--candidates", type=int, default=20_000)
    parser.add_argument("--batch", type=int, default=1024)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    model, tokenizer = load(Path(args.model), args.device)
    fmt = parse_format("number", "the random number is {d}x9", {"d": "0123456789"})
    space = canary_space(fmt, tokenizer)
    rng = np.random.default_rng(0)
    fillings = [list(map(str, rng.integers(0, 10, 9))) for _ in range(args.candidates)]
    rows = np.array([candidate_tokens(space, fmt, f, tokenizer) for f in fillings])
    times: dict[int, list[float]] = {1: [], args.shards: []}
    results = {}
    for _ in range(args.rounds):
        for shards in times:
            scorer = NextTokenScorer(model, space.prefix_ids, args.batch, args.device, max_suffix=space.max_tokens,
                                     shards=shards)
            start = time.perf_counter()
            results[shards] = scorer.sequence_px(rows)
            if args.device == "cuda":
                torch.cuda.synchronize()
            times[shards].append(time.perf_counter() - start)
    identical = bool(np.array_equal(results[1], results[args.shards]))
    one, many = statistics.median(times[1]), statistics.median(times[args.shards])
    payload = {
        "device": args.device, "shards": args.shards, "candidates": args.candidates, "batch": args.batch,
        "seconds": {"one": one, "sharded": many},
        "candidates_per_second": {"one": args.candidates / one, "sharded": args.candidates / many},
        "throughput_ratio": one / many, "identical_results": identical,
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count(), "threads": torch.get_num_threads(),
                    "cuda_devices": torch.cuda.device_count()},
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "sharded_scoring.json").write_text(json.dumps(payload, indent=2))
    print(f"{args.shards} replicas: {payload['throughput_ratio']:.2f}x the candidates/s of 1 "
          f"({args.candidates / one:.0f}/s); identical results: {identical}")


if __name__ == "__main__":
    main()
