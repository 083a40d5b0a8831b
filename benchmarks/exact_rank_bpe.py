"""Cost of exact rank and extraction under a digit-merging BPE, against the character tokenizer.

Trains two GPT-2 models of the same size on the same text (builtin emails, numbers in running
text so that the BPE merges digits, and one 9-digit canary "the random number is {d}x9"
inserted --copies times): one with the character tokenizer, one with a byte-level BPE. For
each it measures, for the canary and for fillings near it, the model rows and seconds the
exact-rank search needs, and the expansions of the shortest-path search for the top 1, and
writes the ratios BPE / char (same process, same machine: noise cancels). Target: BPE rows
within 10x of the char case's.

    python benchmarks/exact_rank_bpe.py            # ~4 min on 2 CPU cores

The tokenizers are trained on other emails (another seed), without the canary.
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import time
from pathlib import Path

from canaryaudit.canaries import parse_format
from canaryaudit.config import parse_params
from canaryaudit.corpus.emails import generate_emails
from canaryaudit.exposure.scoring import NextTokenScorer
from canaryaudit.exposure.search import canary_space, exact_rank, shortest_path
from canaryaudit.io import atomic_open
from canaryaudit.training.data import chunk_stream, sequence_dataset, token_stream
from canaryaudit.training.loop import Trainer
from canaryaudit.training.pipeline import build_variant_model
from canaryaudit.training.tokenizers import BpeTokenizer, CharTokenizer

FORMAT = parse_format("number", "the random number is {d}x9", {"d": "0123456789"})
CANARY = list("381952746")


def corpus(seed: int, size: int) -> list[str]:
    """Emails with numbers in running text: what makes a BPE merge digits."""
    rng = random.Random(seed)
    texts = [d.text for d in generate_emails(seed, size)]
    return [t + f"\nref {rng.randrange(10**6)} and {rng.randrange(10**4)}" for t in texts]


def with_canary(texts: list[str], copies: int, seed: int) -> list[str]:
    rng, texts = random.Random(seed), list(texts)
    for _ in range(copies):
        i = rng.randrange(len(texts))
        texts[i] += "\n" + FORMAT.render(CANARY)
    return texts


def tokenizer_for(kind: str, public: list[str]):
    """The tokenizer is trained on text without the canary, as real tokenizers are (on public data):
    a BPE trained on the canary's 64 copies would learn it as one token, a case no real model shows."""
    return CharTokenizer.train(public) if kind == "char" else BpeTokenizer.train(public, 1024)


def train(kind: str, public: list[str], texts: list[str], epochs: int):
    base = {"device": "cpu", "epochs": epochs, "batch_size": 32, "physical_batch_size": 32, "seed": 0,
            "tokenizer": {"kind": kind, "bpe_vocab_size": 1024},
            "model": {"arch": "gpt2", "layers": 2, "width": 128, "heads": 4, "context": 64},
            "optimizer": {"lr": 0.003, "warmup_steps": 20}}
    settings = parse_params({"train": {**base, "variants": {"v": {}}}}).train.variant("v")
    tokenizer = tokenizer_for(kind, public)
    train_set, valid, test = (sequence_dataset(chunk_stream(token_stream(part, tokenizer), 64))
                              for part in (texts[:-10], texts[-10:-5], texts[-5:]))
    model, _ = build_variant_model(settings, tokenizer)
    started = time.perf_counter()
    result = Trainer(settings, model, train_set, valid, test, progress=False).run()
    return result.model.eval(), tokenizer, time.perf_counter() - started, result.test_perplexity


def measure(model, tokenizer, max_rows: int) -> dict:
    space = canary_space(FORMAT, tokenizer)
    scorer = NextTokenScorer(model, space.prefix_ids, 1024, max_suffix=space.max_tokens)
    canary = space.tokens_of(FORMAT.render(CANARY))
    started = time.perf_counter()
    rank = exact_rank(scorer, space, canary, max_rows)
    rank_seconds = time.perf_counter() - started
    search = shortest_path(NextTokenScorer(model, space.prefix_ids, 256, max_suffix=space.max_tokens), space,
                           pop_batch=64, max_expansions=200_000, top_k=1)
    return {"canary_tokens": len(canary), "context_tokens": len(space.text_context_ids),
            "remainder": space.remainder, "exact_rank": rank.rank, "exact_rank_note": rank.message,
            "exact_rank_rows": rank.rows, "exact_rank_seconds": rank_seconds, "rescored": rank.rescored,
            "noncanonical_dropped": rank.noncanonical, "canary_px_bits": rank.canary_px,
            "top1_is_canary": bool(search.candidates) and list(search.candidates[0][1]) == list(canary),
            "top1_expansions": search.nodes_expanded, "top1_rows": search.rows, "top1_seconds": search.seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--copies", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--corpus-bytes", type=int, default=150_000)
    parser.add_argument("--max-rows", type=int, default=2_000_000)
    parser.add_argument("--out", default="benchmarks/results/exact_rank_bpe.json")
    args = parser.parse_args()
    public = corpus(seed=11, size=args.corpus_bytes)  # other people, another seed: the tokenizer's data
    texts = with_canary(corpus(seed=5, size=args.corpus_bytes), args.copies, seed=5)
    report: dict = {"machine": platform.platform(), "format": FORMAT.template, "copies": args.copies}
    for kind in ("char", "bpe"):
        model, tokenizer, seconds, perplexity = train(kind, public, texts, args.epochs)
        report[kind] = {"vocab_size": tokenizer.vocab_size, "train_seconds": seconds,
                        "test_perplexity_per_token": perplexity, **measure(model, tokenizer, args.max_rows)}
        print(kind, json.dumps(report[kind]))
    char, bpe = report["char"], report["bpe"]
    report["ratios_bpe_over_char"] = {
        "exact_rank_rows": bpe["exact_rank_rows"] / max(1, char["exact_rank_rows"]),
        "exact_rank_seconds": bpe["exact_rank_seconds"] / max(1e-9, char["exact_rank_seconds"]),
        "top1_expansions": bpe["top1_expansions"] / max(1, char["top1_expansions"]),
    }
    report["target_rows_within_10x"] = report["ratios_bpe_over_char"]["exact_rank_rows"] <= 10
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    with atomic_open(args.out) as handle:
        json.dump(report, handle, indent=2)
    print(json.dumps(report["ratios_bpe_over_char"]))


if __name__ == "__main__":
    main()
