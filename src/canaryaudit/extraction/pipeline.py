"""One extraction audit of one model: generate, score, verify, membership inference, empirical epsilon.

Composes the pieces of this package (and ``canaryaudit.privacy.membership`` / ``canaryaudit.privacy.empirical_epsilon``)
into the ``reports/extract/V.json`` document described in DESIGN.md. Every
membership score follows one direction: higher = more likely memorized.
Raw PII never leaves this module unmasked: sample texts are masked (all but
the last 2 characters of each PII value) before they are returned.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from canaryaudit.config import DataParams, ExtractParams
from canaryaudit.corpus.sources import load_files
from canaryaudit.exposure.scoring import log_perplexity_bits
from canaryaudit.extraction.index import TrainingIndex
from canaryaudit.extraction.metrics import compute_metrics, degenerate_metrics, metric_inputs
from canaryaudit.extraction.sampling import Sample, generate_samples
from canaryaudit.extraction.table import ExtractionTable, extraction_table
from canaryaudit.extraction.verify import find_canaries, find_pii, mask_pii, verify_sample
from canaryaudit.privacy.empirical_epsilon import empirical_epsilon
from canaryaudit.privacy.membership import evaluate_membership, membership_documents, roc_rows
from canaryaudit.training.tokenizers import Tokenizer

log = logging.getLogger("canaryaudit.extract")

METRIC_DIRECTIONS = "higher score = more likely memorized (every metric)"
# Members come from the training text *before* canary insertion: inserted canary lines are
# repeated, memorized and absent from the test split, so segments holding them would separate
# members from non-members by the canaries, not by what membership inference measures.
MEMBERS_SOURCE = "segments of the sanitized training split without the inserted canaries"
NONMEMBERS_SOURCE = "segments of the held-out test split, cut and drawn the same way, as many as members"


@dataclass(frozen=True)
class AuditedModel:
    """A model with its tokenizer; ``reference`` is the smaller model for reference_ratio (or None)."""

    model: nn.Module
    tokenizer: Tokenizer
    device: torch.device
    reference: nn.Module | None = None
    reference_tokenizer: Tokenizer | None = None


def active_metrics(params: ExtractParams, has_reference: bool) -> list[str]:
    """The configured metrics; reference_ratio only when a distinct reference model is there."""
    return [m for m in params.metrics if m != "reference_ratio" or has_reference]


NO_REFERENCE_ITSELF = ("no reference model: this variant is extract.reference_variant itself, "
                       "and the ratio of a model to itself is identically 1")


def skipped_metrics(params: ExtractParams, has_reference: bool, why: str | None = None) -> dict[str, str]:
    """Configured metrics that were not computed, with the reason (``why``; default: the variant is
    the reference itself)."""
    if "reference_ratio" in params.metrics and not has_reference:
        return {"reference_ratio": why or NO_REFERENCE_ITSELF}
    return {}


def prompt_texts(params: ExtractParams, test_texts: Sequence[str], base_dir: Path) -> list[str]:
    """The public corpus the `prefix` strategy draws its prompts from."""
    if params.prefix.source == "test":
        return list(test_texts)
    path = Path(params.prefix.source.removeprefix("file:"))
    corpus = load_files(path if path.is_absolute() else base_dir / path, DataParams())
    return [d.text for d in corpus.documents]


def same_vocabulary(a: Tokenizer, b: Tokenizer) -> bool:
    """True when both tokenizers map text to the same ids (then one token sequence serves both models)."""
    itos_a, itos_b = getattr(a, "itos", None), getattr(b, "itos", None)
    return type(a) is type(b) and itos_a is not None and itos_a == itos_b


def reference_ids(sequences: Sequence[Sequence[int]], texts: Sequence[str], audited: AuditedModel) -> list[list[int]]:
    """The sequences in the reference model's ids: the same ids, or the text re-encoded after <eos>."""
    ref_tok = audited.reference_tokenizer
    assert ref_tok is not None
    if same_vocabulary(audited.tokenizer, ref_tok):
        return [list(s) for s in sequences]
    return [[ref_tok.eos_id, *ref_tok.encode(t)] for t in texts]


def score_sequences(names: Sequence[str], audited: AuditedModel, sequences: Sequence[Sequence[int]],
                    texts: Sequence[str], params: ExtractParams,
                    target: Sequence[np.ndarray] | None = None) -> dict[str, np.ndarray]:
    """Every metric from one batched pass per model (plus the lowercase pass that metric needs).

    ``target``: the audited model's per-token log2-probs when already known (the generation
    computed them for its own samples), which saves the target pass.
    """
    uses_reference = "reference_ratio" in names
    inputs = metric_inputs(
        names, audited.model, audited.tokenizer, sequences, texts, target=target,
        reference_model=audited.reference if uses_reference else None,
        reference_sequences=reference_ids(sequences, texts, audited) if uses_reference else None,
        batch_size=params.batch_size, device=audited.device, window_tokens=params.window_tokens,
        min_k_fraction=params.min_k_fraction, progress=True,
    )
    return compute_metrics(names, inputs)


def generate_all(audited: AuditedModel, params: ExtractParams, prompts: Sequence[str]) -> list[Sample]:
    samples: list[Sample] = []
    for strategy in params.strategies:
        started = time.perf_counter()
        batch = generate_samples(
            audited.model, audited.tokenizer, strategy, params.samples_per_strategy, params.sample_tokens,
            params.batch_size, params.seed, audited.device, top_n=params.top_n,
            temperature=(params.temperature.start, params.temperature.end, params.temperature.decay_tokens),
            prompt_texts=prompts, prefix_tokens=(params.prefix.min_tokens, params.prefix.max_tokens),
            shards=params.shards,
        )
        seconds = time.perf_counter() - started
        log.info("generated %d %s samples of %d tokens in %.1f s (%.1f samples/s)", len(batch), strategy,
                 params.sample_tokens, seconds, len(batch) / max(seconds, 1e-9))
        samples.extend(batch)
    return samples


def sample_records(samples: Sequence[Sample], scores: Mapping[str, np.ndarray],
                   table: ExtractionTable) -> list[dict[str, Any]]:
    """reports/extract/V_samples.jsonl rows (SAMPLES schema), PII masked, in generation order."""
    records = []
    for i, sample in enumerate(samples):
        check = table.checks.get(i)
        hits = check.pii if check is not None else find_pii(sample.text)
        record: dict[str, Any] = {
            "sample_id": sample.sample_id,
            "strategy": sample.strategy,
            "text": mask_pii(sample.text, hits),
            "prompt_tokens": sample.prompt_tokens,
            "generated_tokens": len(sample.token_ids) - sample.prompt_tokens,
        }
        record.update({f"score_{name}": float(values[i]) for name, values in scores.items()})
        verification = check.verification if check is not None else None
        record.update(
            verified=check is not None,
            memorized=None if verification is None else verification.memorized,
            match_start=None if verification is None else verification.span[0],
            match_chars=None if verification is None else verification.length,
            k_eidetic=None if verification is None else verification.k_eidetic,
        )
        records.append(record)
    return records


def canaries_in_samples(samples: Sequence[Sample], canaries: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Every canary whose whole secret appears in any generated sample (not only the verified top-k)."""
    found: dict[str, dict[str, Any]] = {}
    by_id = {c["canary_id"]: c for c in canaries}
    for sample in samples:
        for canary_id in find_canaries(sample.text, canaries):
            entry = found.setdefault(canary_id, {
                "canary_id": canary_id, "format": by_id[canary_id]["format"],
                "insertions": by_id[canary_id]["insertions"], "sample_id": sample.sample_id, "samples": 0,
            })
            entry["samples"] += 1
    return sorted(found.values(), key=lambda e: (-e["insertions"], e["canary_id"]))


def membership_inference(audited: AuditedModel, names: Sequence[str], members: Sequence[str],
                         nonmembers: Sequence[str], params: ExtractParams) -> tuple[dict[str, Any], list[dict]]:
    """AUC and TPR at low FPR per metric, training segments (members) vs test segments, equal lengths."""
    tok = audited.tokenizer
    inside, outside = membership_documents(members, nonmembers, tok.encode, params.membership.tokens,
                                           params.membership.max_samples, params.seed)
    if len(inside) < 2 or len(outside) < 2:
        raise ValueError(f"membership inference needs 2+ segments of {params.membership.tokens} tokens per side; "
                         f"got {len(inside)} members and {len(outside)} non-members (lower extract.membership.tokens)")
    segments = [list(s) for s in (*inside, *outside)]
    labels = np.array([1] * len(inside) + [0] * len(outside))
    texts = [tok.decode(s) for s in segments]
    scores = score_sequences(names, audited, segments, texts, params)
    block = evaluate_membership(scores, labels, params.membership.bootstrap, params.seed,
                                degenerate=degenerate_metrics(scores, texts))
    block["tokens"] = params.membership.tokens
    block["members_source"] = MEMBERS_SOURCE
    block["nonmembers_source"] = NONMEMBERS_SOURCE
    return block, roc_rows(scores, labels)


def audit_canary_scores(audited: AuditedModel, canaries: Sequence[Mapping[str, Any]]) -> tuple[np.ndarray, np.ndarray]:
    """Score = -Px of each audit canary's randomness after its prefix (bits; higher = more likely included)."""
    audit = [c for c in canaries if c["audit"]]
    scores = np.empty(len(audit))
    for i, canary in enumerate(audit):
        prefix = canary["prefix"]
        scores[i] = -log_perplexity_bits(audited.model, audited.tokenizer, prefix, [canary["text"][len(prefix):]],
                                         device=audited.device)[0]
    return scores, np.array([bool(c["included"]) for c in audit])


def empirical_epsilon_block(audited: AuditedModel, canaries: Sequence[Mapping[str, Any]], params: ExtractParams,
                            train_report: Mapping[str, Any]) -> dict[str, Any] | None:
    """The one-run lower bound from the audit canaries, beside the accountant's epsilon (None: no audit set)."""
    scores, included = audit_canary_scores(audited, canaries)
    if len(scores) == 0:
        return None
    copies = max((int(c["insertions"]) for c in canaries if c["audit"] and c["included"]), default=1)
    wanted = params.audit.guesses_included + params.audit.guesses_excluded
    if wanted > len(scores):
        raise ValueError(f"extract.audit: {wanted} guesses but only {len(scores)} audit canaries "
                         "(raise canaries.audit.count or lower the guesses)")
    delta = train_report.get("delta") or 0.0  # a non-private model: the pure-DP (delta = 0) bound
    return empirical_epsilon(scores, included, params.audit.guesses_included, params.audit.guesses_excluded,
                             delta, params.audit.p, accountant_epsilon=train_report.get("epsilon"), copies=copies)


def run_extraction(audited: AuditedModel, params: ExtractParams, *, variant: str, reference_variant: str | None,
                   train_texts: Sequence[str], test_texts: Sequence[str], canaries: Sequence[Mapping[str, Any]],
                   train_report: Mapping[str, Any], member_texts: Sequence[str] | None = None, top_samples: int = 100,
                   base_dir: Path = Path("."), public_texts: Sequence[str] | None = None,
                   no_reference_reason: str | None = None,
                   ) -> tuple[dict[str, Any], list[dict[str, Any]], list[dict[str, Any]]]:
    """The whole attack on one model: (report JSON, sample rows, ROC rows).

    ``train_texts``: what the model was trained on (canaries included): samples are verified
    against it. ``member_texts``: the same split before canary insertion, the members of
    membership inference (default ``train_texts``, for a corpus without canaries).
    """
    names = active_metrics(params, audited.reference is not None)
    started = time.perf_counter()
    samples = generate_all(audited, params, prompt_texts(params, test_texts, base_dir))
    generation_seconds = time.perf_counter() - started

    started = time.perf_counter()
    texts = [s.text for s in samples]
    generated = [np.asarray(s.log2probs) for s in samples]
    reuse = all(len(g) == len(s.token_ids) - 1 for g, s in zip(generated, samples))
    scores = score_sequences(names, audited, [list(s.token_ids) for s in samples], texts, params,
                             target=generated if reuse else None)
    scoring_seconds = time.perf_counter() - started

    started = time.perf_counter()
    index = TrainingIndex(list(train_texts))
    public = TrainingIndex(list(public_texts)) if public_texts else None
    table = extraction_table(
        [s.strategy for s in samples], scores, texts,
        partial(verify_sample, index, min_chars=params.min_memorized_chars, public=public), canaries=canaries,
        sample_ids=[s.sample_id for s in samples], candidates=params.candidates, top_k=params.top_k,
        overlap=params.dedup_overlap,
    )
    verification_seconds = time.perf_counter() - started

    started = time.perf_counter()
    members = train_texts if member_texts is None else member_texts
    membership, roc = membership_inference(audited, names, members, test_texts, params)
    membership_seconds = time.perf_counter() - started

    report = {
        "variant": variant,
        "reference_variant": reference_variant if audited.reference is not None else None,
        "metrics": names,
        "skipped_metrics": skipped_metrics(params, audited.reference is not None, no_reference_reason),
        "verification": {
            "public_corpus": public is not None,
            "definition": (f"memorized: a substring of at least {params.min_memorized_chars} characters that is in "
                           "the private training text" + (" and not in the public pretraining corpus" if public
                                                          else "") + ", and not trivial"),
        },
        "metric_directions": METRIC_DIRECTIONS,
        "samples": {
            "generated": len(samples), "tokens": params.sample_tokens,
            "per_strategy": {s: sum(x.strategy == s for x in samples) for s in params.strategies},
            "generation_seconds": generation_seconds, "scoring_seconds": scoring_seconds,
            "verification_seconds": verification_seconds, "membership_seconds": membership_seconds,
        },
        "table": table.rows,
        "unique_memorized": len(table.unique_memorized),
        "memorized_pii": table.memorized_pii,
        "memorized_canaries": canaries_in_samples(samples, canaries),
        "top_samples": table.top_samples[:top_samples],
        "membership": membership,
        "empirical_epsilon": empirical_epsilon_block(audited, canaries, params, train_report),
    }
    return report, sample_records(samples, scores, table), roc
