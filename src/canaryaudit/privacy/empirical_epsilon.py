"""Empirical epsilon from one training run (Steinke, Nasr, Jagielski 2023, arXiv:2305.08846).

Setting: m audit canaries, each included in the training data independently
with probability 1/2. After training, the auditor scores every canary
(higher score = more likely included), guesses "included" for the k+ best and
"held out" for the k- worst, and abstains on the rest: r = k+ + k- guesses, of
which v are correct. An (eps, delta)-DP training run cannot make too many
correct guesses; the most correct guesses it can plausibly make at confidence
1 - p gives a lower bound on the run's true epsilon (natural log units, like
every DP accountant).

The bound (the paper's Theorem 3; its Appendix D computes it the same way):
for an (eps, delta)-DP algorithm and any v,

    P[W >= v] <= f(v) + 2 m delta * max_{1 <= i <= v} (f(v - i) - f(v)) / i,
    f(u) = P[Binomial(r, q) >= u],   q = e^eps / (1 + e^eps),

where W counts correct guesses. The right-hand side is the p-value of the
hypothesis "the run is (eps, delta)-DP"; the bound is the largest eps whose
p-value is at most p. Indices i > v add nothing: f(v - i) = 1 for all of them
and (1 - f(v)) / i shrinks with i, so i = v is their maximum.
"""

from __future__ import annotations

import math
import operator
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import optimize, special, stats

# Grid used to find the *largest* eps whose p-value is <= p: the delta term is
# not monotone in eps, so we scan before refining with brentq.
_EPS_GRID_POINTS = 257
_EPS_SEARCH_MAX = 64.0  # expit(64) == 1.0 in float64: f(v) = 1 > p there


def _validate_counts(m: int, r: int, v: int) -> tuple[int, int, int]:
    """m, r, v as ints with 0 <= v <= r <= m, or a ValueError saying which is wrong."""
    try:
        m, r, v = operator.index(m), operator.index(r), operator.index(v)
    except TypeError as err:
        raise ValueError(f"m, r and v must be integers, got m={m!r}, r={r!r}, v={v!r}") from err
    if not 0 <= v <= r <= m:
        raise ValueError(
            f"need 0 <= correct guesses v <= guesses r <= canaries m, got m={m}, r={r}, v={v}"
        )
    return m, r, v


def _validate_delta(delta: float) -> None:
    if not 0.0 <= delta < 1.0:  # also rejects NaN
        raise ValueError(f"delta must satisfy 0 <= delta < 1, got {delta!r}")


def _validate_p(p: float) -> None:
    if not 0.0 < p < 1.0:  # also rejects NaN
        raise ValueError(f"p (1 - confidence) must satisfy 0 < p < 1, got {p!r}")


def _p_values(m: int, r: int, v: int, eps: np.ndarray, delta: float) -> np.ndarray:
    """The Theorem 3 p-value at each eps (array in, array out); see the module docstring."""
    q = special.expit(np.asarray(eps, dtype=np.float64))[..., None]  # e^eps / (1 + e^eps)
    f_v = stats.binom.sf(v - 1, r, q)[..., 0]  # P[Binomial(r, q) >= v]
    if delta == 0.0 or v == 0:
        return np.minimum(f_v, 1.0)
    # f(v - i) - f(v) = P[v - i <= W < v] = pmf(v-1) + ... + pmf(v-i), for i = 1..v
    pmf_below_v = stats.binom.pmf(np.arange(v - 1, -1, -1), r, q)
    gaps = np.cumsum(pmf_below_v, axis=-1) / np.arange(1, v + 1)
    return np.minimum(f_v + 2.0 * m * delta * gaps.max(axis=-1), 1.0)


def p_value_one_run(m: int, r: int, v: int, eps: float, delta: float) -> float:
    """Upper bound on P[>= v of r guesses correct] for an (eps, delta)-DP run (Theorem 3).

    This is the p-value of the null hypothesis "the run is (eps, delta)-DP".
    """
    m, r, v = _validate_counts(m, r, v)
    _validate_delta(delta)
    if not eps >= 0.0:
        raise ValueError(f"eps must be >= 0, got {eps!r}")
    return float(_p_values(m, r, v, np.asarray(eps), delta))


def epsilon_lower_bound_one_run(m: int, r: int, v: int, delta: float, p: float = 0.05) -> float:
    """Largest eps (nats) at which v correct guesses out of r are still "too many" at confidence 1 - p.

    That is sup{eps >= 0 : p_value_one_run(m, r, v, eps, delta) <= p}, and 0.0
    when no eps qualifies. This is a valid lower bound even where the p-value is
    not monotone in eps: (eps, delta)-DP implies (eps', delta)-DP for every
    eps' >= eps, so rejecting eps' rejects every smaller eps too.

    Returns 0.0 when v <= r / 2 (no better than chance: no evidence, whatever p),
    and for r = 0. Non-decreasing in v whenever 2 m delta <= 1: the p-value is
    the max over i of (1 - c/i) f(v) + (c/i) f(v - i) with c = 2 m delta, and
    each term falls as v grows when c/i <= 1.
    """
    m, r, v = _validate_counts(m, r, v)
    _validate_delta(delta)
    _validate_p(p)
    if 2 * v <= r:
        return 0.0
    # Beyond eps_high, f(v) alone (increasing in eps) exceeds p, so the p-value does too.
    eps_high = 1.0
    while stats.binom.sf(v - 1, r, special.expit(eps_high)) <= p and eps_high < _EPS_SEARCH_MAX:
        eps_high *= 2.0
    grid = np.linspace(0.0, eps_high, _EPS_GRID_POINTS)
    rejected = np.flatnonzero(_p_values(m, r, v, grid, delta) <= p)
    if rejected.size == 0:
        return 0.0
    last = int(rejected[-1])
    if last == grid.size - 1:  # only at the float limit of q: nothing larger is representable
        return float(grid[last])

    def excess(eps: float) -> float:
        return float(_p_values(m, r, v, np.asarray(eps), delta)) - p

    return float(optimize.brentq(excess, grid[last], grid[last + 1], xtol=1e-12))


def epsilon_ceiling_one_run(m: int, r: int, delta: float, p: float = 0.05) -> float:
    """The largest bound r guesses can give: every guess right (v = r)."""
    return epsilon_lower_bound_one_run(m, r, r, delta, p)


@dataclass(frozen=True)
class GuessResult:
    """The auditor's guesses on m canaries: r = guesses, v = correct. Indices into the canary array."""

    guesses: int
    correct: int
    guessed_included: tuple[int, ...]
    guessed_excluded: tuple[int, ...]


def choose_guesses(
    scores: np.ndarray, included: np.ndarray, guesses_included: int, guesses_excluded: int
) -> GuessResult:
    """Guess "included" for the guesses_included highest scores, "held out" for the guesses_excluded lowest.

    scores: one per audit canary, higher = more likely included (e.g. -Px in bits).
    included: the truth (bool per canary). The two counts must be fixed (in
    params) before the scores are seen; choosing them after looking would void
    the bound. Ties: canaries are ranked by score descending, then by index
    ascending, so among equal scores the lower index counts as "more likely
    included"; inclusion is random, hence independent of the index.
    """
    scores = np.asarray(scores, dtype=np.float64)
    included = np.asarray(included, dtype=bool)
    if scores.ndim != 1 or scores.shape != included.shape:
        raise ValueError(f"scores and included must be 1-D and equally long, got {scores.shape} and {included.shape}")
    if np.isnan(scores).any():
        raise ValueError("scores contain NaN: every audit canary needs a score")
    k_in, k_out = operator.index(guesses_included), operator.index(guesses_excluded)
    if k_in < 0 or k_out < 0 or k_in + k_out > scores.size:
        raise ValueError(
            f"need guesses_included >= 0, guesses_excluded >= 0 and their sum <= canaries ({scores.size}), "
            f"got {k_in} + {k_out}"
        )
    ranked = np.lexsort((np.arange(scores.size), -scores))  # last key is primary: score descending
    guessed_in = ranked[:k_in]
    guessed_out = ranked[scores.size - k_out :]
    correct = int(included[guessed_in].sum() + (~included[guessed_out]).sum())
    return GuessResult(
        guesses=k_in + k_out,
        correct=correct,
        guessed_included=tuple(int(i) for i in guessed_in),
        guessed_excluded=tuple(int(i) for i in guessed_out),
    )


def empirical_epsilon(
    scores: np.ndarray,
    included: np.ndarray,
    guesses_included: int,
    guesses_excluded: int,
    delta: float,
    p: float,
    accountant_epsilon: float | None = None,
    *,
    score: str = "-px_bits",
    copies: int = 1,
) -> dict[str, Any]:
    """The `empirical_epsilon` block of reports/extract/V.json.

    scores/included: the audit canaries only (those included with probability
    1/2), so m = len(scores). accountant_epsilon: the DP accountant's epsilon
    for the same delta, None for a non-private run. When the lower bound
    exceeds it, either the DP implementation leaks more than it claims or the
    accountant's epsilon is mis-stated: `exceeds_accountant` is true and
    `warning` says so (1 - p is the confidence of that statement).
    """
    guesses = choose_guesses(scores, included, guesses_included, guesses_excluded)
    canaries = int(np.asarray(scores).size)
    bound = epsilon_lower_bound_one_run(canaries, guesses.guesses, guesses.correct, delta, p)
    if accountant_epsilon is not None and not math.isfinite(accountant_epsilon):
        accountant_epsilon = None  # a non-private run (inf): nothing to compare, and JSON has no inf
    exceeds = None
    warning = None
    copies = operator.index(copies)
    if copies < 1:
        raise ValueError(f"copies must be >= 1, got {copies}")
    group_epsilon = None if accountant_epsilon is None else copies * accountant_epsilon
    if group_epsilon is not None:
        exceeds = bound > group_epsilon
        if exceeds:
            what = "the accountant's epsilon" if copies == 1 else f"{copies} x the accountant's epsilon (group of {copies})"
            warning = (
                f"empirical epsilon lower bound {bound:.3g} exceeds {what} "
                f"{group_epsilon:.3g} (delta {delta:.2g}, confidence {1 - p:.0%}): "
                "the DP training leaks more than claimed, or the accountant's epsilon is mis-stated"
            )
    return {
        "canaries": canaries,
        "guesses": guesses.guesses,
        "correct": guesses.correct,
        "delta": float(delta),
        "p": float(p),
        "epsilon_lower_bound": bound,
        "ceiling": epsilon_ceiling_one_run(canaries, guesses.guesses, delta, p),
        "accountant_epsilon": None if accountant_epsilon is None else float(accountant_epsilon),
        "copies": copies,  # sequences per included audit canary: the bound is on a group of this many
        "group_epsilon": None if group_epsilon is None else float(group_epsilon),
        "exceeds_accountant": exceeds,
        "warning": warning,
        "score": score,
    }
