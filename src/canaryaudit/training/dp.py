"""DP-SGD set-up with Opacus: noise from sigma or a target epsilon, Poisson sampling, accounting.

Privacy unit: one training sequence (a chunk of the token stream). Epsilon is
reported at delta by the configured accountant (PRV or RDP) over the steps
actually taken. Only trainable parameters (``requires_grad``) get per-sample
gradients, clipping and noise: with LoRA, the adapters alone; the guarantee
covers everything the training released, since the frozen weights do not depend
on the private data.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from canaryaudit.config import DpParams
from canaryaudit.errors import ParamsError

if TYPE_CHECKING:  # light import: the canaries stage's preflight plans DP without loading torch
    import torch
    from torch import nn


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


def ew_modules() -> tuple[type[nn.Module], ...]:
    """Module types whose per-sample gradients torch's ExpandedWeights ("ew") computes.

    EW works at the level of functional calls (F.linear, F.embedding, F.layer_norm, ...), so a
    trainable weight used in any other operation fails in the forward pass: Llama's (and Qwen's,
    Mistral's) RMSNorm computes ``weight * x`` ("Expanded Weights encountered but cannot handle
    function mul").
    """
    from torch import nn

    return (nn.Linear, nn.Embedding, nn.LayerNorm, nn.GroupNorm, nn.InstanceNorm1d, nn.InstanceNorm2d,
            nn.InstanceNorm3d, nn.Conv1d, nn.Conv2d, nn.Conv3d)


def ew_unsupported(model: nn.Module) -> list[str]:
    """Class names of the modules that own trainable parameters ExpandedWeights cannot handle (sorted)."""
    supported = ew_modules()
    names = set()
    for module in model.modules():
        if any(p.requires_grad for p in module.parameters(recurse=False)) and type(module) not in supported:
            names.add(type(module).__name__)
    return sorted(names)


def auto_grad_sample_mode(model: nn.Module, arch: str) -> str:
    """Opacus' per-sample gradient mode for ``train.dp.grad_sample_mode: auto``.

    - lstm: hooks (DPLSTM: 14x the plain step with hooks vs 26x with ew, benchmarks/train_speed.py).
    - a model whose trainable parameters all sit in ew_modules(): ew, the fastest where it works
      (GPT-2 full: 1.47x vs 1.71x with hooks). This covers GPT-2 (our CausalLM turns its Conv1D into
      nn.Linear), GPT-NeoX/Pythia (Linear, LayerNorm, Embedding) and every LoRA model (only the
      adapters' nn.Linear train; the frozen RMSNorm and rotary embeddings are not differentiated).
    - otherwise hooks: Opacus' hooks for the layers it knows and, for the others, functorch
      (vmap of the layer's own forward, GradSampleModule's fallback for a layer without a grad
      sampler). Full fine-tuning of Llama-family models needs it for LlamaRMSNorm (a custom module,
      not torch's nn.RMSNorm that Opacus 1.6 has a rule for); the rotary embedding has no
      parameters. Nothing needs freezing.
    """
    if arch == "lstm":
        return "hooks"
    return "hooks" if ew_unsupported(model) else "ew"


def poisson_loader(dataset: Any, plan: DpPlan, steps_per_epoch: int, generator: torch.Generator,
                   world: Any = None) -> Any:
    """The DP training loader: ``steps_per_epoch`` Poisson batches at ``plan.sample_rate``, empty ones included.

    The sampler is ``distributed.ShardedPoissonSampler`` (the global draw, this rank's shard), and
    the collate function is Opacus' ``wrap_collate_with_empty``, which turns an empty batch into
    zero-length tensors of the right shape.
    """
    from torch.utils.data import DataLoader

    from canaryaudit.training.distributed import SINGLE, ShardedPoissonSampler, empty_safe_collate

    sampler = ShardedPoissonSampler(len(dataset), plan.sample_rate, steps_per_epoch, generator, world or SINGLE)
    return DataLoader(dataset, batch_sampler=sampler, collate_fn=empty_safe_collate(dataset), generator=generator)


def make_private(model: nn.Module, optimizer: torch.optim.Optimizer, loader: Any, plan: DpPlan, *,
                 noise_generator: torch.Generator | None, grad_sample_mode: str):
    """Opacus' PrivacyEngine over ``plan``: (engine, model, DP optimizer, the loader).

    ``loader`` is :func:`poisson_loader`'s (Opacus keeps it: ``poisson_sampling=False``), so the
    accountant's sample rate is 1 / len(loader) = plan.sample_rate and the DP optimizer divides the
    noisy sum of clipped per-sample gradients by the expected batch size. ``optimizer`` should hold
    the trainable parameters only. A ``model`` wrapped in Opacus' DPDDP gets the distributed DP
    optimizer: each rank clips its own per-sample gradients, rank 0 alone adds the noise, and the
    sums are all-reduced, so the noise is added once per logical (global) batch.
    """
    from opacus import PrivacyEngine

    engine = PrivacyEngine(accountant=plan.accountant)
    private, dp_optimizer, dp_loader = engine.make_private(
        module=model, optimizer=optimizer, data_loader=loader,
        noise_multiplier=plan.noise_multiplier, max_grad_norm=plan.max_grad_norm,
        poisson_sampling=False, noise_generator=noise_generator, grad_sample_mode=grad_sample_mode,
    )
    private.forbid_grad_accumulation()  # as Opacus does under its own Poisson sampling
    return engine, private, dp_optimizer, dp_loader
