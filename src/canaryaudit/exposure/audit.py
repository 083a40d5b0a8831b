"""Per-format exposure audit of one trained model: px, three exposure estimators, extraction.

Exposure is in bits (higher = more memorized); px is log-perplexity in bits
after the format's prefix (lower = more likely).
"""

from __future__ import annotations

import logging
import math
import random
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from torch import nn

from canaryaudit.canaries import CanaryFormat
from canaryaudit.config import ExposureParams
from canaryaudit.exposure.estimators import (
    SkewNormalFit,
    cap_at_space,
    exposure_extrapolation,
    exposure_from_rank,
    exposure_interpolation,
    interpolation_saturated,
)
from canaryaudit.exposure.scoring import NextTokenScorer, score_candidates
from canaryaudit.exposure.search import ExtractionResult, RankResult, exact_rank, shortest_path
from canaryaudit.exposure.token_space import (
    Context,
    SearchUnsupported,
    TokenSpace,
    canary_space,
    check_lossless,
    counted_tokens,
    format_context,
)
from canaryaudit.training.tokenizers import Tokenizer

log = logging.getLogger("canaryaudit.exposure.estimators")


def sample_references(fmt: CanaryFormat, count: int, exclude: set[str], rng: random.Random) -> list[list[str]]:
    """``count`` distinct fillings drawn uniformly from R, none rendering to a text in ``exclude``."""
    available = fmt.space_size - len(exclude)
    if count > available:
        raise ValueError(f"format {fmt.name!r}: {count} references requested, only {available} candidates are not canaries")
    seen: set[int] = set()
    out: list[list[str]] = []
    while len(out) < count:
        index = rng.randrange(fmt.space_size)
        if index in seen:
            continue
        seen.add(index)
        draws = fmt.fill_from_index(index)
        if fmt.render(draws) not in exclude:
            out.append(draws)
    return out


EXTRACTION_DEFINITION = (
    "a canary is extracted when the shortest-path search (Secret Sharer 8.1) ranks it among the top K "
    "likeliest fillings of its format, K = exposure.extraction.top_k or, by default, the number of canaries "
    "of that format in the training data; its position is its rank among all fillings (1 = the model's "
    "single likeliest filling, also counted as extracted_top1)"
)


@dataclass(frozen=True)
class FormatScores:
    """Px (bits, the model's dtype, one scoring call) of a format's canaries and references, and the estimators."""

    canary_tokens: list[tuple[int, ...]]  # canonical counted tokens (lengths vary under a BPE)
    canary_px: np.ndarray
    reference_px: np.ndarray
    interpolation: np.ndarray
    interpolation_bound: np.ndarray  # True: saturated at log2(references), a lower bound
    extrapolation: np.ndarray  # capped at log2|R|
    extrapolation_bound: np.ndarray  # True: the raw estimate exceeded log2|R| and was capped (a lower bound)
    extrapolation_raw: np.ndarray
    fit: SkewNormalFit


def score_format(scorer: NextTokenScorer, context: Context, tokenizer: Tokenizer, fmt: CanaryFormat,
                 canaries: Sequence[dict[str, Any]], references: Sequence[Sequence[str]]) -> FormatScores:
    """Canaries and references scored in one call (one code path, so their Px are comparable):
    each text's canonical tokens after the format's context (:mod:`canaryaudit.exposure.token_space`)."""
    texts = [c["text"] for c in canaries] + [fmt.render(r) for r in references]
    tokens = [counted_tokens(context, tokenizer, text) for text in texts]
    all_px = score_candidates(scorer, tokens, progress=True)
    canary_px, ref_px = all_px[: len(canaries)], all_px[len(canaries) :]
    raw, fit = exposure_extrapolation(canary_px, ref_px)
    extrapolation, capped = cap_at_space(raw, fmt.log2_space_size)
    return FormatScores(tokens[: len(canaries)], canary_px, ref_px, np.asarray(exposure_interpolation(canary_px, ref_px)),
                        interpolation_saturated(canary_px, ref_px), extrapolation, capped, np.asarray(raw), fit)


def exact_ranks(scorer: NextTokenScorer, space: TokenSpace, fmt: CanaryFormat, scores: FormatScores,
                params: ExposureParams) -> dict[int, RankResult | str]:
    """Exact rank per canary index, or a note saying why there is none (every canary gets one or the other)."""
    out: dict[int, RankResult | str] = {}
    if not params.exact_rank.enabled:
        return {i: "not searched: exposure.exact_rank.enabled is false" for i in range(len(scores.canary_px))}
    stopped: str | None = None
    for i in np.argsort(scores.canary_px, kind="stable"):  # most exposed first: once one exceeds the budget, later ones would too
        i = int(i)
        if stopped is not None:
            out[i] = f"not searched: {stopped}, and this canary is less likely, so its search would be larger"
            continue
        estimated_rank = fmt.space_size * 2.0 ** (-float(scores.extrapolation[i]))
        if estimated_rank > params.exact_rank.max_estimated_rank:
            out[i] = f"skipped: estimated rank {estimated_rank:.3g} > exposure.exact_rank.max_estimated_rank {params.exact_rank.max_estimated_rank}"
            continue
        result = exact_rank(scorer, space, scores.canary_tokens[i], params.exact_rank.max_rows)
        out[i] = result
        if not result.exact:
            stopped = f"the search for a likelier canary of this format stopped ({result.message})"
    return out


def extraction_top_k(params: ExposureParams, canaries: Sequence[dict[str, Any]]) -> int:
    """K of the extraction definition: the setting, or the format's canaries in the training data (at least 1)."""
    if params.extraction.top_k is not None:
        return params.extraction.top_k
    return max(1, sum(bool(c["included"]) for c in canaries))


def _rank_fields(rank: RankResult | str | None, space_size: int) -> dict[str, Any]:
    exact = rank.rank if isinstance(rank, RankResult) and rank.exact else None
    if isinstance(rank, str):
        note = rank
    elif isinstance(rank, RankResult) and not rank.exact:
        note = rank.message
    else:
        note = ""
    return {
        "exact_rank": exact,
        "exposure_exact": exposure_from_rank(exact, space_size) if exact is not None else None,
        "exact_px_bits": rank.canary_px if isinstance(rank, RankResult) else None,
        "exact_rank_rows": rank.rows if isinstance(rank, RankResult) else None,
        "exact_rank_note": note,
    }


def audit_format(
    model: nn.Module,
    tokenizer: Tokenizer,
    fmt: CanaryFormat,
    canaries: Sequence[dict[str, Any]],
    params: ExposureParams,
    device: str,
    rng: random.Random,
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Rows (one per canary of ``fmt``) and a summary of the format's search.

    Every canary gets Px and both estimators; exact rank and extraction need the format's token
    space, and where the tokenizer makes it unusable every row's note says why they were skipped.
    """
    check_lossless(fmt, tokenizer)
    references = sample_references(fmt, params.references, {c["text"] for c in canaries}, rng)
    texts = [c["text"] for c in canaries] + [fmt.render(r) for r in references]
    context = format_context(fmt, tokenizer, texts)
    space: TokenSpace | None = None
    unsupported = ""
    try:
        space = canary_space(fmt, tokenizer, texts, context)
    except SearchUnsupported as exc:
        unsupported = str(exc)
        log.warning("%s: exact rank and extraction skipped, estimators only: %s", fmt.name, exc)
    longest = space.max_tokens if space else max(len(tokenizer.encode(t)) for t in texts) - len(context.text_ids)
    scorer = NextTokenScorer(model, context.ids, params.batch_size, device, max_suffix=longest, shards=params.shards)
    scores = score_format(scorer, context, tokenizer, fmt, canaries, references)
    log.info("%s: %d canaries, %d references scored", fmt.name, len(canaries), len(references))
    if space is not None:
        ranks = exact_ranks(scorer, space, fmt, scores, params)
    else:
        ranks = {i: f"not searched: {unsupported}" for i in range(len(canaries))}
    top_k = extraction_top_k(params, canaries)
    search = None
    if params.extraction.enabled and space is not None:
        search = shortest_path(scorer, space, params.extraction.pop_batch, params.extraction.max_expansions,
                               top_k=top_k)
        log.info("%s: shortest path: %d iterations, %d expansions, %d rows in %.1f s, %d of top %d confirmed",
                 fmt.name, search.iterations, search.nodes_expanded, search.rows, search.seconds,
                 len(search.candidates), top_k)
    rows = [_canary_row(fmt, canary, i, scores, ranks.get(i), search.position(scores.canary_tokens[i]) if search else None)
            for i, canary in enumerate(canaries)]
    tokenization = _tokenization_summary(tokenizer, fmt, context, space, unsupported)
    return rows, _format_summary(fmt, scores, scorer, search, top_k, tokenization)


def _canary_row(fmt: CanaryFormat, canary: Mapping[str, Any], i: int, scores: Any, rank: Any,
                position: int | None) -> dict[str, Any]:
    """The exposure row of canary ``i``: Px (bits), each estimator, the exact rank and the extraction position."""
    return {
        "canary_id": canary["canary_id"],
        "format": fmt.name,
        "insertions": int(canary["insertions"]),
        "included": bool(canary["included"]),
        "audit": bool(canary["audit"]),
        "px_bits": float(scores.canary_px[i]),
        "exposure_interpolation": float(scores.interpolation[i]),
        "exposure_interpolation_lower_bound": bool(scores.interpolation_bound[i]),
        "exposure_extrapolation": float(scores.extrapolation[i]),
        "exposure_extrapolation_lower_bound": bool(scores.extrapolation_bound[i]),
        "exposure_extrapolation_raw": float(scores.extrapolation_raw[i]),
        **_rank_fields(rank, fmt.space_size),
        "extracted": position is not None,
        "extracted_top1": position == 1,
        "extraction_position": position,
    }


def _tokenization_summary(tokenizer: Tokenizer, fmt: CanaryFormat, context: Context, space: TokenSpace | None,
                          unsupported: str) -> dict[str, Any]:
    """How the format was tokenized: the context, the remainder of the prefix counted with the filling."""
    out: dict[str, Any] = {"tokenizer": tokenizer.kind, "context_tokens": len(context.text_ids),
                           "context_is_eos": not context.text_ids, "remainder": fmt.prefix[len(context.covered):],
                           "searchable": space is not None, "reason": unsupported or None}
    if space is not None:
        out.update(one_token_sequence_per_filling=space.single_path, max_tokens=space.max_tokens)
    return out


def _format_summary(fmt: CanaryFormat, scores: FormatScores, scorer: NextTokenScorer,
                    search: ExtractionResult | None, top_k: int, tokenization: dict[str, Any]) -> dict[str, Any]:
    return {
        "tokenization": tokenization,
        "space_size": fmt.space_size,
        "log2_space_size": fmt.log2_space_size,
        "references": len(scores.reference_px),
        "log2_references": math.log2(len(scores.reference_px)),
        "reference_px_mean": float(scores.reference_px.mean()),
        "reference_px_std": float(scores.reference_px.std()),
        "skew_normal_fit": asdict(scores.fit),
        "model_rows": scorer.rows,
        "model_calls": scorer.calls,
        "exact_rescored_rows": scorer.exact_rows,
        "extraction": None if search is None else {
            "top_k": top_k, "confirmed": len(search.candidates), "unconfirmed_popped": search.unconfirmed,
            "iterations": search.iterations, "nodes_expanded": search.nodes_expanded, "model_rows": search.rows,
            "model_calls": search.calls, "seconds": search.seconds, "within_budget": search.within_budget,
            "noncanonical_dropped": search.noncanonical,
            "top_px_bits": search.candidates[0][0] if search.candidates else None,
        },
    }


def summarize_by_insertions(rows: Sequence[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Mean, median, min and max exposure per estimator (and how many values are lower bounds),
    and the fraction extracted, per insertion count."""
    out: dict[str, dict[str, Any]] = {}
    for count in sorted({r["insertions"] for r in rows}):
        group = [r for r in rows if r["insertions"] == count]
        entry: dict[str, Any] = {"canaries": len(group), "extracted_fraction": sum(r["extracted"] for r in group) / len(group)}
        for estimator in ("interpolation", "extrapolation", "exact"):
            measured = [r for r in group if r[f"exposure_{estimator}"] is not None]
            values = [r[f"exposure_{estimator}"] for r in measured]
            entry[estimator] = (
                {"mean": float(np.mean(values)), "median": float(np.median(values)), "min": float(np.min(values)),
                 "max": float(np.max(values)), "n": len(values),
                 "lower_bounds": sum(bool(r.get(f"exposure_{estimator}_lower_bound")) for r in measured)}
                if values else None
            )
        out[str(count)] = entry
    return out
