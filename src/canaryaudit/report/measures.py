"""Headline numbers derived from the stage reports, shared by the gate, the summary and the HTML report.

Units and directions: exposure in bits, higher = more memorized (log2|R| = the
canary is the model's single likeliest filling); epsilon in nats (natural-log
DP units), higher = weaker guarantee; membership AUC in [0, 1], 0.5 = chance.
Every function returns None when its input is missing, never a guess.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

ESTIMATORS = ("interpolation", "extrapolation", "exact")


def as_number(value: Any) -> float | None:
    """A finite float, or None for null, booleans and non-numbers."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def canary_exposure(row: Mapping[str, Any], estimator: str) -> float | None:
    """One canary's exposure in bits; ``best`` = exact when known, else extrapolation."""
    if estimator == "best":
        exact = as_number(row.get("exposure_exact"))
        return exact if exact is not None else as_number(row.get("exposure_extrapolation"))
    return as_number(row.get(f"exposure_{estimator}"))


def best_estimator_used(row: Mapping[str, Any]) -> str:
    """Which estimator ``best`` took for this canary."""
    return "exact" if as_number(row.get("exposure_exact")) is not None else "extrapolation"


def canary_rows(exposure: Mapping[str, Any] | None) -> list[dict[str, Any]]:
    rows = exposure.get("canaries") if exposure else None
    return [r for r in rows if isinstance(r, dict)] if isinstance(rows, list) else []


def insertion_counts(exposure: Mapping[str, Any] | None) -> list[int]:
    """Distinct insertion counts of the canaries, ascending (0 = held out, never trained on)."""
    counts = {r.get("insertions") for r in canary_rows(exposure)}
    return sorted(c for c in counts if isinstance(c, int) and not isinstance(c, bool))


def max_exposure(exposure: Mapping[str, Any] | None, insertions: int, estimator: str = "best") -> float | None:
    """Highest exposure (bits) over the canaries inserted ``insertions`` times; None if none measured."""
    values = [
        canary_exposure(r, estimator) for r in canary_rows(exposure) if r.get("insertions") == insertions
    ]
    measured = [v for v in values if v is not None]
    return max(measured) if measured else None


def mean_exposure(exposure: Mapping[str, Any] | None, insertions: int, estimator: str = "best") -> float | None:
    values = [canary_exposure(r, estimator) for r in canary_rows(exposure) if r.get("insertions") == insertions]
    measured = [v for v in values if v is not None]
    return sum(measured) / len(measured) if measured else None


def extracted_canaries(exposure: Mapping[str, Any] | None) -> int | None:
    """Inserted canaries extracted: among the top K fillings the shortest-path search (Secret Sharer 8.1)
    returns for their format (K: ``exposure.extraction.top_k``, by default the format's canaries in the
    training data; see the exposure report's ``extraction_definition``)."""
    if not exposure:
        return None
    value = exposure.get("extracted")
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    rows = canary_rows(exposure)
    return sum(1 for r in rows if r.get("included") and r.get("extracted")) if rows else None


def log2_space_sizes(exposure: Mapping[str, Any] | None) -> dict[str, float]:
    """log2|R| per canary format: the exposure of a canary that is the model's top candidate."""
    formats = exposure.get("formats") if exposure else None
    if not isinstance(formats, Mapping):
        return {}
    out = {}
    for name, entry in formats.items():
        value = as_number(entry.get("log2_space_size")) if isinstance(entry, Mapping) else None
        if value is not None:
            out[str(name)] = value
    return out


def unique_memorized(extract: Mapping[str, Any] | None) -> int | None:
    value = extract.get("unique_memorized") if extract else None
    return int(value) if as_number(value) is not None else None


def memorized_pii_count(extract: Mapping[str, Any] | None) -> int | None:
    """Distinct (type, masked value) PII items inside verified memorized samples."""
    items = extract.get("memorized_pii") if extract else None
    if not isinstance(items, list):
        return None
    return len({(i.get("type"), i.get("masked"), i.get("sample_id")) for i in items if isinstance(i, Mapping)})


def memorized_canary_count(extract: Mapping[str, Any] | None) -> int | None:
    """Distinct canaries found inside verified memorized generated samples."""
    items = extract.get("memorized_canaries") if extract else None
    if not isinstance(items, list):
        return None
    return len({i.get("canary_id") for i in items if isinstance(i, Mapping)})


def membership_metrics(extract: Mapping[str, Any] | None) -> dict[str, dict[str, Any]]:
    membership = extract.get("membership") if extract else None
    metrics = membership.get("metrics") if isinstance(membership, Mapping) else None
    return {str(k): v for k, v in metrics.items() if isinstance(v, Mapping)} if isinstance(metrics, Mapping) else {}


AUC_USES = {"point": "auc", "ci_low": 0, "ci_high": 1}  # where each `use` reads the AUC from


def auc_value(entry: Mapping[str, Any], use: str = "point") -> float | None:
    """The AUC of one metric's entry: the point estimate or an end of its 95 % bootstrap interval."""
    if use == "point":
        return as_number(entry.get("auc"))
    interval = entry.get("auc_ci")
    if not isinstance(interval, (list, tuple)) or len(interval) != 2:
        return None
    return as_number(interval[AUC_USES[use]])


def membership_auc(extract: Mapping[str, Any] | None, metric: str | None = None,
                   use: str = "point") -> tuple[float | None, str | None]:
    """(AUC, metric): of ``metric``, or the highest over the metrics not marked degenerate (the
    strongest informative attack). ``use``: point estimate, ci_low or ci_high of the interval."""
    if use not in AUC_USES:
        raise ValueError(f"use must be one of {', '.join(AUC_USES)}, got {use!r}")
    metrics = membership_metrics(extract)
    if metric is not None:
        return auc_value(metrics.get(metric, {}), use), metric
    scored = [(auc_value(m, use), name) for name, m in metrics.items() if not m.get("degenerate")]
    scored = [(auc, name) for auc, name in scored if auc is not None]
    if not scored:
        return None, None
    auc, name = max(scored)
    return auc, name


def degenerate_metrics(extract: Mapping[str, Any] | None) -> dict[str, str]:
    """Metric -> why it is uninformative (marked by the extract stage), and configured metrics it skipped."""
    out = {name: str(m.get("degenerate_reason") or "degenerate")
           for name, m in membership_metrics(extract).items() if m.get("degenerate")}
    skipped = extract.get("skipped_metrics") if extract else None
    if isinstance(skipped, Mapping):
        out.update({str(k): f"not computed: {v}" for k, v in skipped.items()})
    return out


def empirical_epsilon(extract: Mapping[str, Any] | None) -> float | None:
    """Lower bound on epsilon from the audit canaries (Steinke et al. 2023), at confidence 1 - p."""
    entry = extract.get("empirical_epsilon") if extract else None
    return as_number(entry.get("epsilon_lower_bound")) if isinstance(entry, Mapping) else None


def accountant_epsilon(train: Mapping[str, Any] | None) -> float | None:
    """The DP accountant's epsilon; None without DP (no guarantee at all) or without the report."""
    return as_number(train.get("epsilon")) if train else None


def test_perplexity(train: Mapping[str, Any] | None) -> float | None:
    return as_number(train.get("test_perplexity")) if train else None


def perplexity_ratio(train: Mapping[str, Any] | None, baseline: Mapping[str, Any] | None) -> float | None:
    """Test perplexity of a variant over its baseline's (1.0 = as useful as the baseline; higher = worse)."""
    mine, theirs = test_perplexity(train), test_perplexity(baseline)
    if mine is None or theirs is None or theirs <= 0:
        return None
    return mine / theirs


def pii_inference_entry(pii: Mapping[str, Any] | None, pii_type: str | None = None) -> dict[str, Any] | None:
    """reports/pii/V.json's inference row for ``pii_type`` (None: all types pooled), or None."""
    types = ((pii or {}).get("inference") or {}).get("types") or {}
    entry = types.get(pii_type or "all")
    return entry if isinstance(entry, dict) else None


def pii_inference_accuracy(pii: Mapping[str, Any] | None, pii_type: str | None = None,
                           use: str = "point") -> float | None:
    """PII inference accuracy (share of targets whose true value scored best), or an end of its exact 95 % interval."""
    entry = pii_inference_entry(pii, pii_type)
    return None if entry is None else as_number(entry.get({"point": "rate", "ci_low": "ci_low", "ci_high": "ci_high"}[use]))


def pii_reconstructed(pii: Mapping[str, Any] | None, pii_type: str | None = None) -> int | None:
    """Targets whose value greedy decoding regenerated exactly (None: reconstruction not run or no report)."""
    recon = (pii or {}).get("reconstruction")
    if not isinstance(recon, dict):
        return None
    entry = (recon.get("types") or {}).get(pii_type or "all")
    value = as_number(entry.get("successes")) if isinstance(entry, dict) else None
    return None if value is None else int(value)


def leak_evidence(exposure: Mapping[str, Any] | None, extract: Mapping[str, Any] | None,
                  pii: Mapping[str, Any] | None = None) -> list[str]:
    """What shows that a model leaks, each a short phrase; empty when nothing measurable leaked.

    Only evidence that chance alone cannot produce counts: a canary recovered by the
    shortest-path search or found in generated samples, PII or private text verified in
    samples, a membership AUC whose 95 % interval lies above 0.5, an empirical epsilon
    lower bound above 0 (at its configured confidence), PII inference whose 95 % interval lies
    above chance, PII values regenerated by greedy decoding. A high exposure alone is not listed:
    the exposure section ranks it against the held-out canaries.
    """
    evidence = []
    counts = (
        (extracted_canaries(exposure), "inserted canaries extracted by search"),
        (memorized_canary_count(extract), "canaries found in generated samples"),
        (memorized_pii_count(extract), "PII items in memorized samples"),
        (unique_memorized(extract), "memorized private samples"),
    )
    evidence += [f"{n} {what}" for n, what in counts if n]
    auc, metric = membership_auc(extract, use="ci_low")
    if auc is not None and auc > 0.5:
        point, _ = membership_auc(extract, metric, "point")
        evidence.append(f"membership AUC {point:.3f} ({metric}; 95 % interval above 0.5)")
    eps = empirical_epsilon(extract)
    if eps is not None and eps > 0:
        evidence.append(f"empirical epsilon >= {eps:.2f}")
    inference = pii_inference_entry(pii)
    low, chance = (as_number(inference.get("ci_low")), as_number(inference.get("chance"))) if inference else (None, None)
    if low is not None and chance is not None and low > chance:
        evidence.append(f"PII inference accuracy {inference['rate']:.3f} (chance {chance:.3f}; 95 % interval above it)")
    rebuilt = pii_reconstructed(pii)
    if rebuilt:
        evidence.append(f"{rebuilt} PII values reconstructed by greedy decoding")
    return evidence


def group_privacy(epsilon: float, delta: float, k: int) -> tuple[float, float]:
    """(k*eps, k*e^((k-1)*eps)*delta): the guarantee for a record repeated in k training sequences.

    delta is returned as inf when it overflows; any delta >= 1 means no guarantee.
    """
    exponent = (k - 1) * epsilon + math.log(k) + math.log(delta) if delta > 0 else -math.inf
    return k * epsilon, math.exp(exponent) if exponent < 700 else math.inf


def pareto_front(points: Sequence[tuple[float, float]]) -> list[int]:
    """Indices of the points no other point beats on both axes (both minimized), by ascending x."""
    front = []
    for i, (x, y) in enumerate(points):
        dominated = any(
            (ox <= x and oy <= y) and (ox < x or oy < y) for j, (ox, oy) in enumerate(points) if j != i
        )
        if not dominated:
            front.append(i)
    return sorted(front, key=lambda i: points[i])
