"""Exposure speed: tree-shared scoring vs full independent sequences, exact rank and shortest path.

Needs a trained model folder (default: models/nonprivate from `make audit`) and
the canaries (data/canaries/canaries.jsonl). Writes JSON.

1. Scoring throughput: every candidate of a 4-digit subtree under the most
   exposed canary's first 5 digits (10^4 candidates), scored (a) level by level
   with each tree node once and the prefix computed once, (b) as full independent
   sequences (prefix + candidate) with no sharing. Same model, same candidates;
   ratio = time (b) / time (a), and the Px agree.
2. Exact rank of that canary in its full 10^9 space: model rows and wall time.
3. Shortest-path extraction of its format: node expansions, rows, wall time, with
   pop batch 1 (capped) and the configured pop batch.

    python benchmarks/exposure_speed.py --model models/nonprivate
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np
import torch

from canaryaudit.config import load_params
from canaryaudit.exposure.scoring import NextTokenScorer, log_perplexity_bits, score_tree
from canaryaudit.exposure.search import canary_space, candidate_tokens, exact_rank, shortest_path
from canaryaudit.io import atomic_open, read_jsonl
from canaryaudit.training.models import load_model_folder
from canaryaudit.training.tokenizers import load_tokenizer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="models/nonprivate")
    parser.add_argument("--canaries", default="data/canaries/canaries.jsonl")
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--format", default="number")
    parser.add_argument("--out", default="benchmarks/results/exposure_speed.json")
    args = parser.parse_args()

    params = load_params(args.params)
    fmt = next(f for f in params.canaries.parsed_formats() if f.name == args.format)
    model, _ = load_model_folder(Path(args.model))
    tokenizer = load_tokenizer(Path(args.model))
    space = canary_space(fmt, tokenizer)
    canaries = [c for c in read_jsonl(args.canaries) if c["format"] == fmt.name and c["insertions"] > 0]
    probe = NextTokenScorer(model, space.prefix_ids, max_suffix=space.max_tokens)
    tokens = {c["canary_id"]: candidate_tokens(space, fmt, c["randomness"], tokenizer) for c in canaries}
    best = min(canaries, key=lambda c: probe.sequence_px(np.array([tokens[c["canary_id"]]]))[0])
    canary = tokens[best["canary_id"]]

    # 1. a dense 10^4 subtree: the canary's first depth-4 tokens fixed, the last 4 positions enumerated
    fixed = canary[: space.max_tokens - 4]
    # the char tokenizer: one token per position, so position k allows the moves of the state after k tokens
    options = [space.moves(space.walk(canary[:k]))[0] for k in range(space.max_tokens - 4, space.max_tokens)]
    grid = np.array(np.meshgrid(*options, indexing="ij"))
    tails = grid.reshape(4, -1).T
    candidates = np.concatenate([np.tile(fixed, (len(tails), 1)), tails], axis=1)
    scorer = NextTokenScorer(model, space.prefix_ids, batch_size=params.exposure.batch_size, max_suffix=space.max_tokens)
    start = time.perf_counter()
    tree_px = score_tree(scorer, candidates)
    tree_s = time.perf_counter() - start
    tree_rows = scorer.rows
    prefix_text = tokenizer.decode(list(space.prefix_ids))
    texts = [tokenizer.decode([int(t) for t in row]) for row in candidates]
    start = time.perf_counter()
    full_px = log_perplexity_bits(model, tokenizer, prefix_text, texts, batch_size=params.exposure.batch_size)
    full_s = time.perf_counter() - start

    # 2. exact rank in the full space
    rank = exact_rank(NextTokenScorer(model, space.prefix_ids, params.exposure.batch_size, max_suffix=space.max_tokens),
                      space, canary, max_rows=params.exposure.exact_rank.max_rows)

    # 3. shortest path, one pop per call (capped) vs the configured batch
    runs = {}
    for pop in (1, params.exposure.extraction.pop_batch):
        budget = params.exposure.extraction.max_expansions if pop > 1 else min(5_000, params.exposure.extraction.max_expansions)
        search = shortest_path(NextTokenScorer(model, space.prefix_ids, params.exposure.batch_size, max_suffix=space.max_tokens),
                               space, pop, budget, canary=canary)
        runs[str(pop)] = {"iterations": search.iterations, "nodes_expanded": search.nodes_expanded,
                          "model_calls": search.calls, "seconds": search.seconds,
                          "expansions_per_second": search.nodes_expanded / max(search.seconds, 1e-9),
                          "top_is_canary": search.top_is_canary, "within_budget": search.within_budget}
    pop = str(params.exposure.extraction.pop_batch)
    result = {
        "canary_id": best["canary_id"], "insertions": best["insertions"], "space_size": fmt.space_size,
        "scoring": {"candidates": len(candidates), "tree_seconds": tree_s, "tree_rows": tree_rows,
                    "full_sequence_seconds": full_s, "speedup_tree_vs_full": full_s / tree_s,
                    "max_abs_px_difference_bits": float(np.abs(tree_px - full_px).max())},
        "exact_rank": {"rank": rank.rank, "model_rows": rank.rows, "model_calls": rank.calls,
                       "nodes_expanded": rank.nodes_expanded, "seconds": rank.seconds,
                       "brute_force_rows": fmt.space_size, "message": rank.message},
        "shortest_path": runs,
        "batching_speedup_expansions_per_second": runs[pop]["expansions_per_second"] / runs["1"]["expansions_per_second"],
        "targets": {"speedup_tree_vs_full_min": 5.0},
        "machine": {"python": platform.python_version(), "torch": torch.__version__, "threads": torch.get_num_threads()},
    }
    with atomic_open(Path(args.out)) as handle:
        json.dump(result, handle, indent=2)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
