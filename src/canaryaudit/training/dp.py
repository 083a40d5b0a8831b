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


def epsilon_for(noise_multiplier: float, sample_rate: float, steps: int, delta: float, accountant: str) -> float:
    """Epsilon (at ``delta``) of ``steps`` Poisson-subsampled Gaussian steps, from a fresh accountant."""
    from opacus.accountants import create_accountant

    if steps == 0:
        return 0.0
    if noise_multiplier == 0:
        return math.inf
    acc = create_accountant(accountant)
    acc.history = [(noise_multiplier, sample_rate, steps)]
    return float(acc.get_epsilon(delta=delta))


def plan_dp(dp: DpParams, n_sequences: int, batch_size: int, steps: int, key: str) -> DpPlan:
    """Resolve sigma and delta for ``steps`` steps at expected batch ``batch_size`` over N sequences.

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
    return DpPlan(float(sigma), sample_rate, delta, steps, dp.max_grad_norm, dp.accountant)
