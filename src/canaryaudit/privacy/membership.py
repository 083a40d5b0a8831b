"""Membership-inference evaluation: ROC, AUC, TPR at low FPR, bootstrap intervals.

Conventions: labels are 1 for members (training text) and 0 for non-members;
a higher score means "more likely a member" (every extraction metric is
oriented that way). A ROC point at threshold t predicts "member" for scores
>= t, so a group of tied scores moves FPR and TPR together.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
from scipy import stats

# A statistic over B bootstrap resamples: (members [B, n1], non-members [B, n0]) -> values [B].
ResampleStatistic = Callable[[np.ndarray, np.ndarray], np.ndarray]

# fpr values are count / n0 in floating point; this slack keeps "fpr <= target"
# true when both are the same fraction rounded differently (e.g. 0.29 vs 29/100).
_FPR_SLACK = 1e-9
# Bootstrap resamples are processed in chunks of at most this many scores (memory bound).
_CHUNK_SCORES = 4_000_000


def _split_by_label(scores: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(member scores, non-member scores), after checking shapes, labels and finiteness."""
    scores = np.asarray(scores, dtype=np.float64)
    labels = np.asarray(labels)
    if scores.ndim != 1 or scores.shape != labels.shape:
        raise ValueError(f"scores and labels must be 1-D and equally long, got {scores.shape} and {labels.shape}")
    if not np.isin(labels, (0, 1)).all():
        raise ValueError("labels must be 0 (non-member) or 1 (member)")
    if not np.isfinite(scores).all():  # sklearn's roc_curve rejects inf too; callers must map them first
        raise ValueError("scores contain NaN or infinity")
    members, nonmembers = scores[labels == 1], scores[labels == 0]
    if members.size == 0 or nonmembers.size == 0:
        raise ValueError(f"need members and non-members, got {members.size} and {nonmembers.size}")
    return members, nonmembers


def roc_curve(scores: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(fpr, tpr), one point per distinct score plus (0, 0), both non-decreasing, ending at (1, 1).

    Uses scikit-learn (installed with mlflow) with drop_intermediate=False so
    that every threshold is kept; imported here because it takes a second.
    """
    from sklearn.metrics import roc_curve as sklearn_roc_curve

    _split_by_label(scores, labels)
    fpr, tpr, _thresholds = sklearn_roc_curve(
        np.asarray(labels).astype(np.int64), np.asarray(scores, dtype=np.float64), pos_label=1, drop_intermediate=False
    )
    return fpr, tpr


def auc_of_resamples(members: np.ndarray, nonmembers: np.ndarray) -> np.ndarray:
    """AUC of each row: P[member score > non-member score] + 1/2 P[equal] (Mann-Whitney U / (n1 n0)).

    U comes from mid-ranks (scipy's rankdata, ties averaged) of each row's pooled scores.
    """
    n1, n0 = members.shape[-1], nonmembers.shape[-1]
    ranks = stats.rankdata(np.concatenate([members, nonmembers], axis=-1), axis=-1)
    u_statistic = ranks[..., :n1].sum(axis=-1) - n1 * (n1 + 1) / 2.0
    return u_statistic / (n1 * n0)


def tpr_at_fpr_of_resamples(target: float) -> ResampleStatistic:
    """Statistic: per row, the largest TPR among ROC points with FPR <= target (as tpr_at_fpr).

    With k = floor(target * n0) false positives allowed, the best threshold lies
    just above the (k+1)-th highest non-member score q, so TPR = share of members > q.
    """
    _check_fpr_target(target)

    def statistic(members: np.ndarray, nonmembers: np.ndarray) -> np.ndarray:
        n0 = nonmembers.shape[-1]
        allowed = math.floor(target * n0 * (1 + _FPR_SLACK))
        if allowed >= n0:
            return np.ones(members.shape[:-1])
        cut = np.partition(nonmembers, n0 - 1 - allowed, axis=-1)[..., n0 - 1 - allowed]
        return (members > cut[..., None]).mean(axis=-1)

    return statistic


def _check_fpr_target(target: float) -> None:
    if not 0.0 <= target <= 1.0:
        raise ValueError(f"FPR target must be in [0, 1], got {target!r}")


def roc_auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Area under the ROC curve; ties between a member and a non-member count 1/2."""
    members, nonmembers = _split_by_label(scores, labels)
    return float(auc_of_resamples(members, nonmembers))


def tpr_at_fpr(fpr: np.ndarray, tpr: np.ndarray, target: float) -> float:
    """Largest TPR among the curve's points with FPR <= target.

    The conservative convention of Carlini et al. (2022, "Membership inference
    attacks from first principles"): no interpolation between ROC points, so the
    attack must actually achieve that FPR at some threshold. The curve must
    contain (0, 0), as roc_curve's does, so there is always such a point.
    """
    _check_fpr_target(target)
    fpr, tpr = np.asarray(fpr, dtype=np.float64), np.asarray(tpr, dtype=np.float64)
    within = fpr <= target * (1 + _FPR_SLACK)
    if not within.any():
        raise ValueError(f"no ROC point has FPR <= {target}; the curve must start at (0, 0)")
    return float(tpr[within].max())


def bootstrap_cis(
    scores: np.ndarray,
    labels: np.ndarray,
    statistics: Mapping[str, ResampleStatistic],
    n_boot: int,
    seed: int,
    level: float = 0.95,
) -> dict[str, tuple[float, float]]:
    """Percentile intervals of several statistics over the same stratified bootstrap resamples.

    Members and non-members are resampled separately (with replacement, each at
    its own size), so every resample keeps the class sizes. Deterministic given seed.
    """
    members, nonmembers = _split_by_label(scores, labels)
    if n_boot < 1:
        raise ValueError(f"n_boot must be >= 1, got {n_boot}")
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1), got {level!r}")
    rng = np.random.default_rng(seed)
    chunk = max(1, _CHUNK_SCORES // (members.size + nonmembers.size))
    values: dict[str, list[np.ndarray]] = {name: [] for name in statistics}
    for start in range(0, n_boot, chunk):
        rows = min(chunk, n_boot - start)
        member_rows = members[rng.integers(0, members.size, size=(rows, members.size))]
        nonmember_rows = nonmembers[rng.integers(0, nonmembers.size, size=(rows, nonmembers.size))]
        for name, statistic in statistics.items():
            values[name].append(statistic(member_rows, nonmember_rows))
    tail = (1.0 - level) / 2.0
    intervals = {}
    for name, parts in values.items():
        low, high = np.quantile(np.concatenate(parts), [tail, 1.0 - tail])
        intervals[name] = (float(low), float(high))
    return intervals


def bootstrap_ci(
    scores: np.ndarray,
    labels: np.ndarray,
    statistic: ResampleStatistic,
    n_boot: int,
    seed: int,
    level: float = 0.95,
) -> tuple[float, float]:
    """Percentile interval of one statistic (e.g. auc_of_resamples) over a stratified bootstrap."""
    return bootstrap_cis(scores, labels, {"statistic": statistic}, n_boot, seed, level)["statistic"]


def roc_points(fpr: np.ndarray, tpr: np.ndarray, max_points: int = 200) -> tuple[np.ndarray, np.ndarray]:
    """At most max_points of a ROC curve for plots: both endpoints, the TPR at FPR 0, and
    for a log-spaced FPR grid (from the smallest non-zero FPR to 1) the highest point at
    or left of each grid value, so the low-FPR region keeps its detail.
    """
    fpr, tpr = np.asarray(fpr, dtype=np.float64), np.asarray(tpr, dtype=np.float64)
    if max_points < 4:
        raise ValueError(f"max_points must be >= 4 (two endpoints, FPR 0, one grid point), got {max_points}")
    if fpr.size <= max_points:
        return fpr.copy(), tpr.copy()
    positive = fpr[fpr > 0]
    grid = np.geomspace(positive.min(), 1.0, max_points - 3)
    at_or_left = np.searchsorted(fpr, grid, side="right") - 1
    top_at_zero = np.searchsorted(fpr, 0.0, side="right") - 1
    keep = np.unique(np.concatenate([[0, top_at_zero, fpr.size - 1], at_or_left]))
    return fpr[keep], tpr[keep]


def evaluate_membership(
    scores_by_metric: Mapping[str, np.ndarray], labels: np.ndarray, n_boot: int, seed: int,
    degenerate: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """The `membership` block of reports/extract/V.json (without `tokens`, which the caller knows).

    Per metric: auc, tpr_at_1pct_fpr, tpr_at_0_1pct_fpr, each with a 95 %
    bootstrap interval; every metric uses the same resamples (same seed), so the
    intervals are comparable. low_fpr_resolution = 1 / non-members, the smallest
    non-zero FPR: above 0.001, "TPR at 0.1 % FPR" is the TPR at zero false positives.
    ``degenerate``: metric -> why it cannot separate anything; such a metric is reported
    (``degenerate: true`` with the reason) but a rule over "the best metric" skips it.
    """
    degenerate = degenerate or {}
    labels = np.asarray(labels)
    n_members, n_nonmembers = int((labels == 1).sum()), int((labels == 0).sum())
    if n_members == 0 or n_nonmembers == 0:
        raise ValueError(f"need members and non-members, got {n_members} and {n_nonmembers}")
    resolution = 1.0 / n_nonmembers
    note = None
    if resolution > 0.001:
        note = (
            f"only {n_nonmembers} non-members: the smallest non-zero FPR is {resolution:.3g} > 0.001, "
            "so tpr_at_0_1pct_fpr is the TPR at zero false positives"
        )
    statistics = {
        "auc": auc_of_resamples,
        "tpr_at_1pct_fpr": tpr_at_fpr_of_resamples(0.01),
        "tpr_at_0_1pct_fpr": tpr_at_fpr_of_resamples(0.001),
    }
    metrics = {}
    for name, scores in scores_by_metric.items():
        fpr, tpr = roc_curve(scores, labels)
        intervals = bootstrap_cis(scores, labels, statistics, n_boot, seed)
        metrics[name] = {
            "auc": roc_auc(scores, labels),
            "auc_ci": list(intervals["auc"]),
            "tpr_at_1pct_fpr": tpr_at_fpr(fpr, tpr, 0.01),
            "tpr_at_1pct_fpr_ci": list(intervals["tpr_at_1pct_fpr"]),
            "tpr_at_0_1pct_fpr": tpr_at_fpr(fpr, tpr, 0.001),
            "tpr_at_0_1pct_fpr_ci": list(intervals["tpr_at_0_1pct_fpr"]),
            "degenerate": name in degenerate,
            "degenerate_reason": degenerate.get(name),
        }
    return {
        "members": n_members,
        "nonmembers": n_nonmembers,
        "low_fpr_resolution": resolution,
        "low_fpr_note": note,
        "metrics": metrics,
    }


def roc_rows(
    scores_by_metric: Mapping[str, np.ndarray], labels: np.ndarray, max_points: int = 200
) -> list[dict[str, Any]]:
    """Rows (metric, fpr, tpr) for reports/extract/V_roc.csv, at most max_points per metric."""
    rows = []
    for name, scores in scores_by_metric.items():
        fpr, tpr = roc_points(*roc_curve(scores, labels), max_points=max_points)
        rows.extend({"metric": name, "fpr": float(f), "tpr": float(t)} for f, t in zip(fpr, tpr, strict=True))
    return rows


def _segments(texts: Sequence[str], tokenize: Callable[[str], Sequence[int]], tokens: int) -> list[list[int]]:
    """Every document cut into consecutive, non-overlapping pieces of exactly `tokens` ids; short tails dropped."""
    pieces = []
    for text in texts:
        ids = list(tokenize(text))
        pieces.extend(ids[start : start + tokens] for start in range(0, len(ids) - tokens + 1, tokens))
    return pieces


def membership_documents(
    member_texts: Sequence[str],
    nonmember_texts: Sequence[str],
    tokenize: Callable[[str], Sequence[int]],
    tokens: int,
    max_samples: int,
    seed: int,
) -> tuple[list[list[int]], list[list[int]]]:
    """(member segments, non-member segments): token-id lists of exactly `tokens` ids each,
    the same number on both sides.

    Both sides are drawn the same way: every document cut into consecutive `tokens`-id
    segments, then n segments drawn without replacement (kept in document order), with
    n = min(max_samples, segments available on either side). Equal lengths because
    log-perplexity, and most membership scores built on it, grow with length; equal counts
    so that neither side's sampling differs from the other's. Each side has its own child seed.
    """
    if tokens < 1:
        raise ValueError(f"tokens must be >= 1, got {tokens}")
    if max_samples < 0:
        raise ValueError(f"max_samples must be >= 0, got {max_samples}")
    member_rng, nonmember_rng = (np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(2))
    pieces = [_segments(member_texts, tokenize, tokens), _segments(nonmember_texts, tokenize, tokens)]
    count = min(max_samples, len(pieces[0]), len(pieces[1]))
    sampled = []
    for side, rng in zip(pieces, (member_rng, nonmember_rng)):
        chosen = np.sort(rng.choice(len(side), size=count, replace=False))
        sampled.append([side[i] for i in chosen])
    return sampled[0], sampled[1]
