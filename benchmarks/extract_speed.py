"""Extraction speed: batched membership scoring vs one sample at a time; generation with vs without KV cache.

Uses a trained model folder (default models/nonprivate) or, if it does not
exist, a freshly built default model (gpt2, 2 layers, width 128, 4 heads,
context 64, char tokenizer). The reference model is a fresh 1-layer, 64-wide
gpt2 (the default `reference` variant's size); its weights do not matter for
speed. Prompts for `prefix` come from data/raw/test.jsonl or synthetic emails.

1. Generation: ``--samples`` samples of ``--tokens`` tokens per strategy with
   the KV cache; ``--compare-samples`` top_n samples with and without it (full
   window recomputed every step): same model, same seed, so the samples must be
   identical; the largest difference of the chosen tokens' log-probs is reported.
   Then top_n throughput at several batch sizes (``--sweep``).
2. Scoring all six metrics for ``--score-samples`` samples (round-robin over
   the strategies): (a) batched, one pass per model over all samples (target,
   reference, lowercased target), (b) the same with the target log-probs that
   generation returns for free (two passes), vs the straightforward way of the
   paper's public code: one sample at a time, each metric's passes run for it
   alone (8 passes per sample), either one forward call per context window (the
   sliding-window loop a sample longer than the context needs) or all of a
   sample's windows in one call. The baselines cost the same for every sample:
   they are timed on ``--baseline-samples`` and scaled to all. The scores must
   agree.
3. Estimates for the extract stage (generation + scoring) at other sizes,
   linear in samples x tokens from the measured rates.

Timings on a shared machine are noisy: every measurement runs in each of
``--repeats`` interleaved rounds and its fastest run is kept (the uncached
generation runs once); the load average is recorded.

    python benchmarks/extract_speed.py --model models/nonprivate
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from canaryaudit.extraction.metrics import (
    METRICS,
    MetricInputs,
    compute_metrics,
    lowercased_ids,
    metric_inputs,
    token_log2probs,
)
from canaryaudit.extraction.sampling import STRATEGIES, Sample, generate_samples
from canaryaudit.io import atomic_open, read_jsonl
from canaryaudit.training.models import ModelSpec, build_model, load_model_folder
from canaryaudit.training.tokenizers import CharTokenizer, Tokenizer, load_tokenizer

ALL = METRICS.names()
PASSES = {"perplexity": ("target",), "reference_ratio": ("target", "reference"), "zlib": ("target",),
          "lowercase": ("target", "lowercase"), "window": ("target",), "min_k": ("target",)}


def load_models(folder: Path, seed: int) -> tuple[nn.Module, nn.Module, Tokenizer, str]:
    """Target (trained if the folder exists, else fresh default size), fresh reference, tokenizer, source."""
    torch.manual_seed(seed)
    if (folder / "model.safetensors").exists():
        model, _ = load_model_folder(folder)
        tokenizer, source = load_tokenizer(folder), str(folder)
    else:
        from canaryaudit.corpus.emails import generate_emails

        tokenizer = CharTokenizer.train(d.text for d in generate_emails(seed, 20_000))
        model = build_model(ModelSpec(arch="gpt2", vocab_size=tokenizer.vocab_size)).eval()
        source = "fresh default gpt2 (2 layers, width 128, 4 heads, context 64)"
    reference = build_model(ModelSpec(arch="gpt2", vocab_size=tokenizer.vocab_size, layers=1, width=64)).eval()
    return model, reference, tokenizer, source


def prompt_texts(seed: int) -> list[str]:
    path = Path("data/raw/test.jsonl")
    if path.exists():
        return [r["text"] for r in read_jsonl(path)]
    from canaryaudit.corpus.emails import generate_emails

    return [d.text for d in generate_emails(seed + 1, 20_000)]


class Fastest:
    """The fastest wall time of each named measurement over interleaved rounds (load comes and goes)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self.results: dict[str, Any] = {}

    def time(self, key: str, fn: Callable[[], Any]) -> Any:
        start = time.perf_counter()
        result = fn()
        self.seconds[key] = min(self.seconds.get(key, float("inf")), time.perf_counter() - start)
        self.results[key] = result
        return result


def bench_generation(model: nn.Module, tokenizer: Tokenizer, args: argparse.Namespace,
                     texts: list[str]) -> tuple[dict[str, Any], dict[str, list[Sample]]]:
    def run(strategy: str, count: int = args.samples, use_cache: bool = True,
            batch_size: int = args.batch_size) -> list[Sample]:
        return generate_samples(model, tokenizer, strategy, count, args.tokens, batch_size, args.seed,
                                "cpu", prompt_texts=texts, use_cache=use_cache, progress=False)

    best, n = Fastest(), args.compare_samples
    for _ in range(args.repeats):
        for strategy in STRATEGIES:
            best.time(strategy, lambda s=strategy: run(s))
        best.time("cached", lambda: run("top_n", n))
        for size in args.sweep:
            best.time(f"batch {size}", lambda b=size: run("top_n", batch_size=b))
    plain = best.time("recompute", lambda: run("top_n", n, use_cache=False))
    cached, t = best.results["cached"], best.seconds
    diff = max(np.abs(np.subtract(a.log2probs, b.log2probs)).max() for a, b in zip(cached, plain))
    out = {"per_strategy": {strategy: {"seconds": t[strategy], "samples_per_s": args.samples / t[strategy],
                                       "generated_tokens_per_s": args.samples * args.tokens / t[strategy]}
                            for strategy in STRATEGIES},
           "top_n_cache_vs_recompute": {
               "samples": n, "cached_seconds": t["cached"], "recompute_seconds": t["recompute"],
               "speedup": t["recompute"] / t["cached"], "cached_samples_per_s": n / t["cached"],
               "recompute_samples_per_s": n / t["recompute"], "identical_samples": cached == plain,
               "max_log2prob_difference_bits": float(diff)},
           "top_n_batch_size_sweep_samples_per_s": {str(b): args.samples / t[f"batch {b}"] for b in args.sweep}}
    return out, {strategy: best.results[strategy] for strategy in STRATEGIES}


def baseline_scores(model: nn.Module, reference: nn.Module, tokenizer: Tokenizer, samples: list[Sample],
                    args: argparse.Namespace, windows_per_call: int) -> dict[str, np.ndarray]:
    """One sample at a time, each metric's model passes run for it alone (8 passes per sample).

    ``windows_per_call`` 1: one forward call per context window (the sliding-window
    loop a model shorter than the sample needs); 64: a sample's windows in one call.
    """
    scores = {name: np.empty(len(samples)) for name in ALL}
    for i, sample in enumerate(samples):
        ids = [list(sample.token_ids)]
        for name in ALL:
            passes = {"target": lambda: token_log2probs(model, ids, windows_per_call),
                      "reference": lambda: token_log2probs(reference, ids, windows_per_call),
                      "lowercase": lambda: token_log2probs(model, [lowercased_ids(ids[0], tokenizer)],
                                                           windows_per_call)}
            got = {p: passes[p]() for p in PASSES[name]}
            inputs = MetricInputs(texts=[sample.text], window_tokens=args.window, min_k_fraction=args.min_k, **got)
            scores[name][i] = compute_metrics([name], inputs)[name][0]
    return scores


def bench_scoring(model: nn.Module, reference: nn.Module, tokenizer: Tokenizer, samples: list[Sample],
                  args: argparse.Namespace) -> dict[str, Any]:
    ids = [s.token_ids for s in samples]
    texts = [s.text for s in samples]

    def batched(target=None) -> dict[str, np.ndarray]:
        inputs = metric_inputs(ALL, model, tokenizer, ids, texts, target=target, reference_model=reference,
                               batch_size=args.batch_size, window_tokens=args.window, min_k_fraction=args.min_k)
        return compute_metrics(ALL, inputs)

    n = min(args.baseline_samples, len(samples))  # the baselines cost the same per sample: time n, scale to all
    baselines = {"one_call_per_window": 1, "one_call_per_sample": 64}
    best = Fastest()
    for _ in range(args.repeats):
        best.time("batched", batched)
        best.time("reuse", lambda: batched([np.array(s.log2probs) for s in samples]))
        best.time("target", lambda: token_log2probs(model, ids, args.batch_size))
        best.time("reference", lambda: token_log2probs(reference, ids, args.batch_size))
        for label, per_call in baselines.items():
            best.time(label, lambda c=per_call: baseline_scores(model, reference, tokenizer, samples[:n], args, c))
    t, fast, reused = best.seconds, best.results["batched"], best.results["reuse"]
    out: dict[str, Any] = {
        "samples": len(samples), "tokens_per_sample": len(ids[0]), "metrics": ALL,
        "batched_seconds": t["batched"], "batched_reusing_generation_log2probs_seconds": t["reuse"],
        "target_pass_seconds": t["target"], "reference_pass_seconds": t["reference"],
        "max_abs_score_difference_generation_log2probs_vs_pass": {
            name: float(np.abs(reused[name] - fast[name]).max()) for name in ALL}}
    for label in baselines:
        scaled, slow = t[label] * len(samples) / n, best.results[label]
        out[f"baseline_{label}"] = {
            "samples_timed": n, "seconds_timed": t[label], "seconds_scaled_to_all": scaled,
            "speedup_batched": scaled / t["batched"], "speedup_batched_reusing_generation": scaled / t["reuse"],
            "max_abs_score_difference": {name: float(np.abs(fast[name][:n] - slow[name]).max()) for name in ALL}}
    return out


def estimates(generation: dict[str, Any], scoring: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    """Stage seconds (3 strategies; scoring with generation's free log-probs), linear in samples x tokens."""
    gen_per_token = np.mean([1 / g["generated_tokens_per_s"] for g in generation["per_strategy"].values()])
    score_per_token = scoring["batched_reusing_generation_log2probs_seconds"] / (scoring["samples"] * args.tokens)
    out = {}
    for per_strategy, tokens in [(1000, 256), (500, 256), (256, 256), (256, 128), (200, 128), (128, 128)]:
        work = len(STRATEGIES.names()) * per_strategy * tokens
        out[f"{per_strategy}x{tokens}"] = {"generation_seconds": work * gen_per_token,
                                          "scoring_seconds": work * score_per_token,
                                          "total_seconds": work * (gen_per_token + score_per_token)}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="models/nonprivate")
    parser.add_argument("--samples", type=int, default=256, help="samples per strategy")
    parser.add_argument("--score-samples", type=int, default=128, help="samples scored (round-robin over strategies)")
    parser.add_argument("--baseline-samples", type=int, default=32, help="samples the baselines time (then scaled)")
    parser.add_argument("--compare-samples", type=int, default=64, help="top_n samples for cache vs recompute")
    parser.add_argument("--tokens", type=int, default=256, help="generated tokens per sample")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--window", type=int, default=50)
    parser.add_argument("--min-k", type=float, default=0.2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--sweep", type=int, nargs="*", default=[64, 128, 256],
                        help="top_n generation batch sizes (<= --samples)")
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--out", default="benchmarks/results/extract_speed.json")
    args = parser.parse_args()

    load_before = os.getloadavg()
    model, reference, tokenizer, source = load_models(Path(args.model), args.seed)
    generation, samples = bench_generation(model, tokenizer, args, prompt_texts(args.seed))
    mixed = [s for group in zip(*samples.values()) for s in group][: args.score_samples]  # round-robin
    scoring = bench_scoring(model, reference, tokenizer, mixed, args)
    result = {
        "model": source, "device": "cpu", "samples": args.samples, "tokens": args.tokens,
        "batch_size": args.batch_size, "seed": args.seed, "generation": generation, "scoring": scoring,
        "stage_estimates_seconds": estimates(generation, scoring, args),
        "targets": {"speedup_batched_vs_baseline_one_call_per_window_min": 10.0},
        "machine": {"python": platform.python_version(), "torch": torch.__version__,
                    "threads": torch.get_num_threads(), "cpus": os.cpu_count(),
                    "load_average_before": load_before, "load_average_after": os.getloadavg()},
    }
    with atomic_open(Path(args.out)) as handle:
        json.dump(result, handle, indent=2)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
