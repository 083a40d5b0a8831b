"""Exact rank against a brute-force recount, on the default models, for a format small enough to enumerate.

The default canary formats have |R| = 10^9, too many to enumerate; this check keeps their
prefix ("the random number is ") and shortens the randomness to --digits digits (10^5 by
default), enumerates every filling and scores it by an independent float64 full-sequence
pass over the text (``log_perplexity_bits`` on a float64 copy: tokenizes prefix + filling,
no KV cache, no tree). For a set of probe fillings (the likeliest, the closest near-ties,
and quantiles of the distribution) it compares:

- ``exact_rank``: the pipeline's pruned search (float32) plus float64 rescoring of survivors;
- ``brute_force_rank``: |{r : Px64(r) <= Px64(probe)}| over all of R;
- ``float32_rank``: the same count over float32 batched scores with the probe's float32 path
  score (the pre-fix definition), to show what float noise does in near-ties;

and the model rows each needed. Writes JSON (``--out``).

    python benchmarks/exact_rank_check.py --model models/nonprivate --digits 5
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np

from canaryaudit.canaries import parse_format
from canaryaudit.exposure.scoring import NextTokenScorer, float64_copy, log_perplexity_bits, path_px, score_candidates
from canaryaudit.exposure.search import canary_space, candidate_tokens, exact_rank
from canaryaudit.io import atomic_open
from canaryaudit.training.models import load_model_folder
from canaryaudit.training.tokenizers import load_tokenizer


def probe_indices(px: np.ndarray, near_ties: int, quantiles: int) -> dict[str, list[int]]:
    """Indices to check: the 5 likeliest, the closest near-tie pairs, and quantiles (ranks up to 10^4)."""
    order = np.argsort(px, kind="stable")
    gaps = np.diff(px[order])
    closest = np.argsort(gaps, kind="stable")[:near_ties]
    ties = sorted({int(order[k]) for k in closest} | {int(order[k + 1]) for k in closest})
    ranks = np.unique(np.geomspace(6, min(10_000, len(px)), quantiles).astype(int)) - 1
    return {"likeliest": [int(i) for i in order[:5]], "near_ties": ties, "quantiles": [int(order[r]) for r in ranks]}


def check_model(folder: Path, digits: int, near_ties: int, quantiles: int, max_rows: int) -> dict:
    model, _ = load_model_folder(folder)
    tokenizer = load_tokenizer(folder)
    fmt = parse_format("short_number", "the random number is {d}x" + str(digits), {"d": "0123456789"})
    space = canary_space(fmt, tokenizer)
    fillings = [fmt.fill_from_index(i) for i in range(fmt.space_size)]
    started = time.perf_counter()
    texts = [fmt.render(f)[len(fmt.prefix):] for f in fillings]
    brute64 = log_perplexity_bits(float64_copy(model), tokenizer, fmt.prefix, texts, batch_size=2048)
    brute_seconds = time.perf_counter() - started
    rows = np.array([candidate_tokens(space, fmt, f, tokenizer) for f in fillings])
    scorer32 = NextTokenScorer(model, space.prefix_ids, batch_size=2048, max_suffix=space.max_tokens)
    brute32 = score_candidates(scorer32, rows)
    probes = probe_indices(brute64, near_ties, quantiles)
    results, mismatches = [], 0
    for kind, indices in probes.items():
        for index in indices:
            scorer = NextTokenScorer(model, space.prefix_ids, batch_size=1024, max_suffix=space.max_tokens)
            started = time.perf_counter()
            rank = exact_rank(scorer, space, rows[index], max_rows=max_rows)
            seconds = time.perf_counter() - started
            truth = int((brute64 <= brute64[index]).sum())
            old = int((brute32 <= path_px(scorer32, rows[index]) + 1e-6).sum())
            mismatches += rank.rank != truth
            results.append({
                "kind": kind, "filling": "".join(fillings[index]), "px64_bits": float(brute64[index]),
                "gap_to_nearest_bits": float(np.sort(np.abs(brute64 - brute64[index]))[1]),
                "exact_rank": rank.rank, "brute_force_rank": truth, "float32_rank": old,
                "search_rows": rank.rows, "rescored_rows": rank.rescored, "seconds": seconds,
                "max_float_error_bits": rank.max_float_error, "note": rank.message,
            })
    return {
        "model": str(folder), "format": fmt.template, "space_size": fmt.space_size,
        "brute_force_seconds_float64": brute_seconds,
        "max_abs_float32_vs_float64_bits": float(np.abs(brute32 - brute64).max()),
        "probes": results, "mismatches_exact_vs_brute_force": mismatches,
        "mismatches_float32_vs_brute_force": sum(r["float32_rank"] != r["brute_force_rank"] for r in results),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", action="append", help="model folder (repeatable; default: nonprivate and dp)")
    parser.add_argument("--digits", type=int, default=5)
    parser.add_argument("--near-ties", type=int, default=6, help="closest pairs to probe")
    parser.add_argument("--quantiles", type=int, default=8)
    parser.add_argument("--max-rows", type=int, default=2_000_000)
    parser.add_argument("--out", default="benchmarks/results/exact_rank_check.json")
    args = parser.parse_args()
    folders = [Path(m) for m in (args.model or ["models/nonprivate", "models/dp"])]
    report = {"machine": platform.platform(), "digits": args.digits,
              "models": [check_model(f, args.digits, args.near_ties, args.quantiles, args.max_rows) for f in folders]}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    with atomic_open(args.out) as handle:
        json.dump(report, handle, indent=2)
    for entry in report["models"]:
        print(f"{entry['model']}: {len(entry['probes'])} probes, exact vs brute force mismatches "
              f"{entry['mismatches_exact_vs_brute_force']}, float32 (pre-fix) mismatches "
              f"{entry['mismatches_float32_vs_brute_force']}")


if __name__ == "__main__":
    main()
