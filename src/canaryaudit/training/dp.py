"""DP-SGD set-up with Opacus: noise from sigma or a target epsilon, Poisson sampling, accounting.

Privacy unit: one training sequence (a chunk of the token stream). Epsilon is
reported at delta by the configured accountant (PRV or RDP) over the steps
actually taken.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from canaryaudit.config import DpParams
from canaryaudit.errors import ParamsError


@dataclass(frozen=True)
class DpPlan:
    noise_multiplier: float  # sigma: noise std / max_grad_norm
    sample_rate: float  # q = expected batch / N (Poisson sampling)
    delta: float
    steps: int  # planned optimizer steps
    max_grad_norm: float
    accountant: str


def default_delta(n_sequences: int) -> float:
    """1 / (10 N): well below 1/N, the trivial 'release one record' level."""
    return 1.0 / (10 * n_sequences)


#: Largest epsilon a plan may have. Past it the guarantee is vacuous (e^1000), and Opacus' PRV
#: accountant cannot compute it: at sigma 0.01 (q 0.05, 60 steps) it tried to allocate over 100 GB
#: and was killed; at sigma 0 it raises OverflowError. The cheap RDP bound is checked first.
MAX_EPSILON = 1000.0


def epsilon_for(noise_multiplier: float, sample_rate: float, steps: int, delta: float, accountant: str) -> float:
    """Epsilon (at ``delta``) of ``steps`` Poisson-subsampled Gaussian steps, from a fresh accountant.

    inf when the accountant overflows (no noise, or too little for it to represent).
    """
    from opacus.accountants import create_accountant

    if steps == 0:
        return 0.0
    if noise_multiplier == 0:
        return math.inf
    acc = create_accountant(accountant)
    acc.history = [(noise_multiplier, sample_rate, steps)]
    return accountant_epsilon(acc, delta)


def accountant_epsilon(accountant, delta: float) -> float:
    """``accountant.get_epsilon(delta)`` as a float; inf where Opacus overflows or runs out of memory."""
    import warnings

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # numpy overflow on the way to inf
            value = float(accountant.get_epsilon(delta=delta))
    except (OverflowError, ValueError, FloatingPointError, MemoryError, ZeroDivisionError):
        return math.inf
    return value if math.isfinite(value) else math.inf


def planned_steps(epochs: int, max_steps: int | None, n_sequences: int, batch_size: int) -> int:
    """Optimizer steps of a run: every epoch's ceil(N / batch) steps, capped at ``max_steps``."""
    total = epochs * math.ceil(n_sequences / batch_size)
    return min(total, max_steps) if max_steps else total


def check_epsilon(plan: DpPlan, key: str, solved: bool = False) -> float:
    """The plan's epsilon over all its steps; ParamsError (naming the key) when it is not a usable number.

    A given sigma is first bounded with the cheap RDP accountant (PRV is computed only under the
    ceiling); a sigma ``solved`` for a target epsilon was already accounted by the configured one.
    """
    if solved:
        value = epsilon_for(plan.noise_multiplier, plan.sample_rate, plan.steps, plan.delta, plan.accountant)
    else:
        bound = epsilon_for(plan.noise_multiplier, plan.sample_rate, plan.steps, plan.delta, "rdp")
        value = bound if plan.accountant == "rdp" or bound > MAX_EPSILON else epsilon_for(
            plan.noise_multiplier, plan.sample_rate, plan.steps, plan.delta, plan.accountant)
    if value > MAX_EPSILON:
        shown = "infinite" if math.isinf(value) else f"{value:.4g}"
        raise ParamsError(
            f"{key}.dp.noise_multiplier: sigma {plan.noise_multiplier:g} over {plan.steps} steps at sample rate "
            f"{plan.sample_rate:.3g} gives epsilon {shown} (above {MAX_EPSILON:g}: no meaningful guarantee, and "
            "beyond what the accountant can compute); raise noise_multiplier, train fewer steps, "
            "or set dp.enabled: false"
        )
    return value


def plan_dp(dp: DpParams, n_sequences: int, batch_size: int, steps: int, key: str) -> DpPlan:
    """Resolve sigma and delta for ``steps`` steps at expected batch ``batch_size`` over N sequences.

    Every refusal (batch larger than N, delta >= 1/N, an unreachable target, an epsilon the
    accountant cannot compute) is a ParamsError naming the key, raised before any training.

    ``key`` is the dotted params prefix (e.g. ``train.variants.dp``) named in errors.
    """
    from opacus.accountants.utils import get_noise_multiplier

    if batch_size > n_sequences:
        raise ParamsError(f"{key}.batch_size: {batch_size} exceeds the {n_sequences} training sequences")
    # Opacus' Poisson loader samples each sequence with q = 1 / (batches per epoch), so the
    # expected batch is N q (slightly under batch_size when it does not divide N); the
    # accountant must use the same q.
    sample_rate = 1.0 / math.ceil(n_sequences / batch_size)
    delta = dp.delta if dp.delta is not None else default_delta(n_sequences)
    if delta >= 1.0 / n_sequences:
        raise ParamsError(f"{key}.dp.delta: {delta} must be below 1/N = {1.0 / n_sequences:.3g} (N = {n_sequences} sequences)")
    if dp.target_epsilon is not None:
        try:
            sigma = get_noise_multiplier(
                target_epsilon=dp.target_epsilon, target_delta=delta, sample_rate=sample_rate,
                steps=steps, accountant=dp.accountant, epsilon_tolerance=0.01,
            )
        except ValueError:
            sigma = math.inf
        if sigma > dp.max_noise_multiplier:
            raise ParamsError(
                f"{key}.dp.target_epsilon: {dp.target_epsilon} is unreachable within "
                f"dp.max_noise_multiplier = {dp.max_noise_multiplier} ({steps} steps at sample rate {sample_rate:.3g}); "
                "raise the target, train fewer steps or use a smaller batch"
            )
    else:
        assert dp.noise_multiplier is not None  # guaranteed by DpParams
        sigma = dp.noise_multiplier
    plan = DpPlan(float(sigma), sample_rate, delta, steps, dp.max_grad_norm, dp.accountant)
    check_epsilon(plan, key, solved=dp.target_epsilon is not None)
    return plan
