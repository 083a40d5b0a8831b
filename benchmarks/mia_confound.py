"""Membership AUC with members drawn from the training text with and without the inserted canaries.

Before the fix the extract stage drew member segments from data/augmented/train.jsonl, so
some members held canary lines (repeated, memorized, absent from the test split). This
script scores the same models both ways, with the stage's own code
(``membership_inference``) and params, and counts the member segments that contain a
canary's secret. Writes JSON.

    python benchmarks/mia_confound.py   # after `make audit`
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from canaryaudit.config import load_params
from canaryaudit.extraction.pipeline import AuditedModel, active_metrics, membership_inference
from canaryaudit.io import atomic_open, read_jsonl
from canaryaudit.privacy.membership import membership_documents
from canaryaudit.training.models import load_model_folder
from canaryaudit.training.tokenizers import load_tokenizer


def texts(path: str) -> list[str]:
    return [r["text"] for r in read_jsonl(path)]


def audited_model(variant: str, reference_variant: str) -> AuditedModel:
    model, _ = load_model_folder(Path("models") / variant)
    tokenizer = load_tokenizer(Path("models") / variant)
    if variant == reference_variant:
        return AuditedModel(model, tokenizer, "cpu")
    reference, _ = load_model_folder(Path("models") / reference_variant)
    return AuditedModel(model, tokenizer, "cpu", reference, load_tokenizer(Path("models") / reference_variant))


def side(audited: AuditedModel, members: list[str], test: list[str], canaries: list[str], params) -> dict:
    names = active_metrics(params, audited.reference is not None)
    block, _ = membership_inference(audited, names, members, test, params)
    segments, _ = membership_documents(members, test, audited.tokenizer.encode, params.membership.tokens,
                                       params.membership.max_samples, params.seed)
    decoded = [audited.tokenizer.decode(s) for s in segments]
    with_canary = sum(any(secret in text for secret in canaries) for text in decoded)
    return {"members": block["members"], "nonmembers": block["nonmembers"], "members_with_a_canary": with_canary,
            "auc": {k: {"auc": m["auc"], "ci": m["auc_ci"]} for k, m in block["metrics"].items()}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--variants", nargs="+", default=["nonprivate", "dp", "reference"])
    parser.add_argument("--out", default="benchmarks/results/mia_confound.json")
    args = parser.parse_args()
    params = load_params(args.params).extract
    augmented, sanitized = texts("data/augmented/train.jsonl"), texts("data/sanitized/train.jsonl")
    test = texts("data/sanitized/test.jsonl")
    # a canary line is recognised by its filling (the secret after the prefix), which no natural text contains
    canaries = [c["text"][len(c["prefix"]):] for c in read_jsonl("data/canaries/canaries.jsonl") if c["included"]]
    out = {}
    for variant in args.variants:
        audited = audited_model(variant, params.reference_variant)
        out[variant] = {"before_members_with_canaries": side(audited, augmented, test, canaries, params),
                        "after_members_without_canaries": side(audited, sanitized, test, canaries, params)}
        print(variant, {k: {m: round(v["auc"], 3) for m, v in out[variant][k]["auc"].items()} for k in out[variant]})
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    with atomic_open(args.out) as handle:
        json.dump(out, handle, indent=2)


if __name__ == "__main__":
    main()
