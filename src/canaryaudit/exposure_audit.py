"""Per-format exposure audit of one trained model: px, three exposure estimators, extraction.

Exposure is in bits (higher = more memorized); px is log-perplexity in bits
after the format's prefix (lower = more likely).
"""

from __future__ import annotations

import logging
import random
from collections.abc import Sequence
from dataclasses import asdict
from typing import Any

import numpy as np
from torch import nn

from canaryaudit.canaries import CanaryFormat
from canaryaudit.config import ExposureParams
from canaryaudit.exposure import exposure_extrapolation, exposure_from_rank, exposure_interpolation
from canaryaudit.scoring import NextTokenScorer, score_candidates
from canaryaudit.search import CanarySpace, canary_space, exact_rank, shortest_path, tokens_follow_tree
from canaryaudit.training.tokenizers import Tokenizer

log = logging.getLogger("canaryaudit.exposure")


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


def _tokens(space: CanarySpace, tokenizer: Tokenizer, fmt: CanaryFormat, fillings: Sequence[Sequence[str]]) -> np.ndarray:
    rows = []
    for draws in fillings:
        ids = tokenizer.encode(fmt.render(draws))
        if not tokens_follow_tree(space, ids):
            raise ValueError(f"format {fmt.name!r}: a candidate does not tokenize position by position")
        rows.append(ids[len(space.prefix_ids) :])
    return np.array(rows, dtype=np.int64).reshape(len(rows), space.depth)


def audit_format(
    model: nn.Module,
    tokenizer: Tokenizer,
    fmt: CanaryFormat,
    canaries: Sequence[dict[str, Any]],
    params: ExposureParams,
    device: str,
    rng: random.Random,
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Rows (one per canary of ``fmt``) and a summary of the format's search."""
    space = canary_space(fmt, tokenizer)
    scorer = NextTokenScorer(model, space.prefix_ids, params.batch_size, device, max_suffix=space.depth)
    canary_tokens = _tokens(space, tokenizer, fmt, [c["randomness"] for c in canaries])
    references = sample_references(fmt, params.references, {c["text"] for c in canaries}, rng)
    ref_px = score_candidates(scorer, _tokens(space, tokenizer, fmt, references), progress=True)
    canary_px = score_candidates(scorer, canary_tokens)
    interpolation = exposure_interpolation(canary_px, ref_px)
    extrapolation, fit = exposure_extrapolation(canary_px, ref_px)
    log.info("%s: %d canaries, %d references scored in %d model rows", fmt.name, len(canaries), len(references), scorer.rows)

    ranks: dict[int, Any] = {}
    if params.exact_rank.enabled:
        for i in np.argsort(canary_px):  # most exposed first: once one exceeds the budget, later ones would too
            estimated_rank = fmt.space_size * 2.0 ** (-float(extrapolation[i]))
            if estimated_rank > params.exact_rank.max_estimated_rank:
                ranks[int(i)] = f"skipped: estimated rank {estimated_rank:.3g} > {params.exact_rank.max_estimated_rank}"
                continue
            result = exact_rank(scorer, space, canary_tokens[i], params.exact_rank.max_rows)
            ranks[int(i)] = result
            if not result.exact:
                break

    search = None
    if params.extraction.enabled:
        search = shortest_path(scorer, space, params.extraction.pop_batch, params.extraction.max_expansions)
        log.info("%s: shortest path: %d iterations, %d expansions, %d rows in %.1f s, %d candidates",
                 fmt.name, search.iterations, search.nodes_expanded, search.rows, search.seconds, len(search.candidates))
    found = {tuple(tokens): position for position, (_px, tokens) in enumerate(search.candidates, 1)} if search else {}

    rows = []
    for i, canary in enumerate(canaries):
        rank = ranks.get(i)
        exact = rank.rank if rank is not None and not isinstance(rank, str) and rank.exact else None
        note = rank if isinstance(rank, str) else (rank.message if rank is not None else "")
        position = found.get(tuple(int(t) for t in canary_tokens[i]))
        rows.append({
            "canary_id": canary["canary_id"],
            "format": fmt.name,
            "insertions": int(canary["insertions"]),
            "included": bool(canary["included"]),
            "audit": bool(canary["audit"]),
            "px_bits": float(canary_px[i]),
            "exposure_interpolation": float(interpolation[i]),
            "exposure_extrapolation": float(extrapolation[i]),
            "exact_rank": exact,
            "exposure_exact": exposure_from_rank(exact, fmt.space_size) if exact is not None else None,
            "exact_rank_rows": None if rank is None or isinstance(rank, str) else rank.rows,
            "exact_rank_note": note,
            "extracted": position == 1,
            "extraction_position": position,
        })
    summary = {
        "space_size": fmt.space_size,
        "log2_space_size": fmt.log2_space_size,
        "references": len(references),
        "reference_px_mean": float(ref_px.mean()),
        "reference_px_std": float(ref_px.std()),
        "skew_normal_fit": asdict(fit),
        "model_rows": scorer.rows,
        "model_calls": scorer.calls,
        "extraction": None if search is None else {
            "iterations": search.iterations, "nodes_expanded": search.nodes_expanded, "model_rows": search.rows,
            "model_calls": search.calls, "seconds": search.seconds, "within_budget": search.within_budget,
            "candidates_returned": len(search.candidates),
            "top_px_bits": search.candidates[0][0] if search.candidates else None,
        },
    }
    return rows, summary


def summarize_by_insertions(rows: Sequence[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Mean, min and max exposure per estimator, and the fraction extracted, per insertion count."""
    out: dict[str, dict[str, Any]] = {}
    for count in sorted({r["insertions"] for r in rows}):
        group = [r for r in rows if r["insertions"] == count]
        entry: dict[str, Any] = {"canaries": len(group), "extracted_fraction": sum(r["extracted"] for r in group) / len(group)}
        for estimator in ("interpolation", "extrapolation", "exact"):
            values = [r[f"exposure_{estimator}"] for r in group if r[f"exposure_{estimator}"] is not None]
            entry[estimator] = (
                {"mean": float(np.mean(values)), "min": float(np.min(values)), "max": float(np.max(values)), "n": len(values)}
                if values else None
            )
        out[str(count)] = entry
    return out
