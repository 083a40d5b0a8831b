"""The extraction table of Carlini et al. (2021, Table 2): memorized samples per strategy x metric.

For each strategy and metric: rank that strategy's samples by the metric
(higher = more likely memorized; ties keep sample order; NaN ranks as -inf, last),
take the best ``candidates``, drop near-duplicates by word trigrams, verify the
best ``top_k`` left against the training data, and count memorized ones.

Unique memorized samples: the memorized samples of all combinations, each at
its best placement (lowest rank, then earliest combination, then sample order),
deduplicated across combinations by the same trigram rule, so one training
passage reproduced by two strategies counts once.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from canaryaudit.extraction.dedup import deduplicate
from canaryaudit.extraction.verify import PiiHit, Verification, canary_spans, find_pii, mask_pii


@dataclass(frozen=True)
class SampleCheck:
    """One verified sample: verification, all PII found in it, canaries extracted in it."""

    verification: Verification
    pii: tuple[PiiHit, ...]  # anywhere in the sample but in canary secrets (all are masked when shown)
    canary_ids: tuple[str, ...]

    @property
    def memorized_pii(self) -> tuple[PiiHit, ...]:
        """PII lying wholly inside the memorized substring (none when not memorized)."""
        if not self.verification.memorized:
            return ()
        return tuple(hit for hit in self.pii if hit.inside(self.verification.span))


@dataclass(frozen=True)
class Placement:
    """Where a sample was verified: combination (strategy, metric), its 1-based rank after dedup."""

    rank: int
    combination: int  # position of (strategy, metric) in the rows
    metric: str

    def order_key(self, sample: int) -> tuple[int, int, int]:
        return (self.rank, self.combination, sample)


@dataclass(frozen=True)
class ExtractionTable:
    """Result of ``extraction_table``; every list is in a deterministic order (best first)."""

    rows: list[dict[str, object]]  # one per strategy x metric, as in reports/extract/V.json "table"
    checks: dict[int, SampleCheck]  # sample index -> check, for every verified sample
    placements: dict[int, Placement]  # sample index -> its best placement
    unique_memorized: list[int]  # sample indices, best first, deduplicated across combinations
    memorized_pii: list[dict[str, object]]  # distinct memorized PII values: type, masked, sample_id
    canaries_found: list[dict[str, object]]  # canaries extracted in any verified sample
    top_samples: list[dict[str, object]]  # the unique memorized samples as report records, best first


def rank_by_score(indices: np.ndarray, score: np.ndarray) -> np.ndarray:
    """``indices`` sorted by ``score`` descending; ties keep their order; NaN ranks as -inf (last)."""
    values = score[indices]
    return indices[np.argsort(np.where(np.isnan(values), np.inf, -values), kind="stable")]


def verified_in_order(texts: Sequence[str], ranked: np.ndarray, candidates: int, top_k: int,
                      overlap: float) -> list[int]:
    """The best ``top_k`` of the best ``candidates`` ranked samples once near-duplicates are dropped."""
    pool = [int(i) for i in ranked[:candidates]]
    kept = deduplicate([texts[i] for i in pool], overlap)
    return [pool[k] for k in kept[:top_k]]


def check_sample(text: str, verify: Callable[[str], Verification], pii: Callable[[str], Sequence[PiiHit]],
                 canaries: Sequence[Mapping[str, object]]) -> SampleCheck:
    """Verify ``text`` and find PII and canaries in it.

    A PII hit overlapping an extracted canary secret (a canary SSN) is the
    canary, reported among canaries, not as PII; it is not masked either (it is
    synthetic, and showing it is the evidence of extraction).
    """
    found = canary_spans(text, canaries)
    hits = tuple(h for h in pii(text) if not any(h.start < end and start < h.end for _, start, end in found))
    return SampleCheck(verify(text), hits, tuple(dict.fromkeys(canary_id for canary_id, _, _ in found)))


def _place(placements: dict[int, Placement], index: int, placement: Placement) -> None:
    """Keep the sample's best placement: lowest rank, then earliest combination."""
    best = placements.get(index)
    if best is None or placement.order_key(index) < best.order_key(index):
        placements[index] = placement


def _check_inputs(strategies: Sequence[str], scores: Mapping[str, np.ndarray], texts: Sequence[str],
                  candidates: int, top_k: int) -> None:
    if len(strategies) != len(texts):
        raise ValueError(f"{len(strategies)} strategies for {len(texts)} texts")
    for metric, values in scores.items():
        if len(values) != len(texts):
            raise ValueError(f"metric {metric!r} has {len(values)} scores for {len(texts)} texts")
    if candidates < 1 or top_k < 1:
        raise ValueError(f"candidates ({candidates}) and top_k ({top_k}) must be >= 1")


def _row(strategy: str, metric: str, candidates: int, top_k: int, checks: Sequence[SampleCheck]) -> dict[str, object]:
    memorized = [c for c in checks if c.verification.memorized]
    return {
        "strategy": strategy,
        "metric": metric,
        "candidates": candidates,
        "top_k": top_k,
        "memorized": len(memorized),
        "memorized_with_pii": sum(1 for c in memorized if c.memorized_pii),
        "memorized_with_canary": sum(1 for c in memorized if c.canary_ids),
    }


def _memorized_pii(order: Sequence[int], checks: Mapping[int, SampleCheck], texts: Sequence[str],
                   sample_ids: Sequence[str]) -> list[dict[str, object]]:
    """Distinct memorized PII values (same type and raw value once), each with its best-placed sample."""
    seen: set[tuple[str, str]] = set()
    out: list[dict[str, object]] = []
    for index in order:
        for hit in checks[index].memorized_pii:
            key = (hit.type, texts[index][hit.start : hit.end])  # raw value: compared, never output
            if key not in seen:
                seen.add(key)
                out.append({"type": hit.type, "masked": hit.masked, "sample_id": sample_ids[index]})
    return out


def _canaries_found(order: Sequence[int], checks: Mapping[int, SampleCheck], sample_ids: Sequence[str],
                    canaries: Sequence[Mapping[str, object]]) -> list[dict[str, object]]:
    """Each canary extracted in a verified sample: its best-placed sample, in how many verified
    samples it was found, and whether any of them is memorized."""
    first: dict[str, int] = {}
    samples: Counter[str] = Counter()
    in_memorized: set[str] = set()
    for index in order:
        for canary_id in checks[index].canary_ids:
            first.setdefault(canary_id, index)
            samples[canary_id] += 1
            if checks[index].verification.memorized:
                in_memorized.add(canary_id)
    by_id = {str(c["canary_id"]): c for c in canaries}
    return [
        {"canary_id": canary_id, "format": by_id[canary_id].get("format"),
         "insertions": by_id[canary_id].get("insertions"), "sample_id": sample_ids[index],
         "samples": samples[canary_id], "memorized": canary_id in in_memorized}
        for canary_id, index in first.items()
    ]


def _json_float(value: float) -> float | None:
    return None if np.isnan(value) else float(value)


def sample_record(index: int, text: str, sample_id: str, strategy: str, placement: Placement, check: SampleCheck,
                  scores: Mapping[str, np.ndarray]) -> dict[str, object]:
    """A verified sample for the report: PII masked (length kept, so span and offsets stay valid)."""
    verification = check.verification
    return {
        "sample_id": sample_id,
        "index": index,
        "strategy": strategy,
        "rank_metric": placement.metric,
        "rank": placement.rank,
        "text": mask_pii(text, check.pii),
        "memorized": verification.memorized,
        "span": list(verification.span),
        "length": verification.length,
        "k_eidetic": verification.k_eidetic,
        "trivial": verification.trivial,
        "reason": verification.reason,
        "pii": [{"type": h.type, "start": h.start, "end": h.end} for h in check.pii],
        "canary_ids": list(check.canary_ids),
        "scores": {metric: _json_float(values[index]) for metric, values in scores.items()},
    }


def default_sample_ids(strategies: Sequence[str]) -> list[str]:
    """``<strategy>-<n>``: n counts that strategy's samples from 0, in sample order."""
    seen: dict[str, int] = {}
    ids: list[str] = []
    for strategy in strategies:
        ids.append(f"{strategy}-{seen.get(strategy, 0)}")
        seen[strategy] = seen.get(strategy, 0) + 1
    return ids


def extraction_table(
    strategies: Sequence[str],
    scores: Mapping[str, np.ndarray],
    texts: Sequence[str],
    verify: Callable[[str], Verification],
    *,
    canaries: Sequence[Mapping[str, object]] = (),
    pii: Callable[[str], Sequence[PiiHit]] = find_pii,
    sample_ids: Sequence[str] | None = None,
    candidates: int = 1000,
    top_k: int = 100,
    overlap: float = 0.5,
) -> ExtractionTable:
    """The paper's table over all samples (``strategies[i]``, ``texts[i]``, ``scores[metric][i]``).

    Rows follow strategies in order of first appearance, then metrics in mapping
    order. ``verify`` (e.g. ``partial(verify_sample, index, min_chars=50)``) runs
    once per distinct verified sample. ``canaries``: canary records (canary_id,
    text, prefix, format, insertions).
    """
    _check_inputs(strategies, scores, texts, candidates, top_k)
    ids = list(sample_ids) if sample_ids is not None else default_sample_ids(strategies)
    labels = np.asarray(strategies, dtype=object)
    checks: dict[int, SampleCheck] = {}
    placements: dict[int, Placement] = {}
    rows: list[dict[str, object]] = []
    for strategy in dict.fromkeys(strategies):
        members = np.flatnonzero(labels == strategy)
        for metric, values in scores.items():
            ranked = rank_by_score(members, np.asarray(values, dtype=float))
            verified = verified_in_order(texts, ranked, candidates, top_k, overlap)
            for rank, index in enumerate(verified, start=1):
                if index not in checks:
                    checks[index] = check_sample(texts[index], verify, pii, canaries)
                _place(placements, index, Placement(rank, len(rows), metric))
            rows.append(_row(strategy, metric, candidates, top_k, [checks[i] for i in verified]))
    order = sorted(placements, key=lambda i: placements[i].order_key(i))
    memorized = [i for i in order if checks[i].verification.memorized]
    unique = [memorized[k] for k in deduplicate([texts[i] for i in memorized], overlap)]
    top = [sample_record(i, texts[i], ids[i], strategies[i], placements[i], checks[i], scores) for i in unique]
    return ExtractionTable(rows, checks, placements, unique, _memorized_pii(memorized, checks, texts, ids),
                           _canaries_found(order, checks, ids, canaries), top)
