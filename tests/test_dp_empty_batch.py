"""DP-SGD on an empty Poisson batch: the step still happens (noise only) and the accountant counts it.

Real Opacus, real tiny models, CPU. With N = 3 sequences and batch_size 1 each logical
batch is empty with probability (2/3)^3 ~ 0.3, so a few epochs are sure to draw some.
"""

import math

import pytest
import torch
from opacus import PrivacyEngine
from opacus.accountants import RDPAccountant
from torch import nn
from torch.optim.optimizer import register_optimizer_step_post_hook
from torch.utils.data import DataLoader, TensorDataset

from canaryaudit.config import TrainSettings, parse_params
from canaryaudit.training import loop
from canaryaudit.training.checkpoint import load_checkpoint
from canaryaudit.training.loop import Trainer, empty_dp_step
from canaryaudit.training.models import ModelSpec, build_model

VOCAB, CONTEXT = 40, 8


def dp_settings(**overrides) -> TrainSettings:
    base = {
        "device": "cpu", "epochs": 4, "batch_size": 1, "physical_batch_size": 1, "eval_batch_size": 8,
        "model": {"arch": "gpt2", "layers": 1, "width": 16, "heads": 2, "context": CONTEXT},
        "optimizer": {"name": "sgd", "lr": 0.05, "warmup_steps": 0, "schedule": "constant"},
        "dp": {"enabled": True, "noise_multiplier": 1.0, "accountant": "rdp"},
    }
    base.update(overrides)
    return parse_params({"train": {**base, "variants": {"v": {}}}}).train.variant("v")


def sequences(n: int, seed: int) -> TensorDataset:
    tokens = torch.randint(0, VOCAB, (n, CONTEXT + 1), generator=torch.Generator().manual_seed(seed))
    return TensorDataset(tokens[:, :-1], tokens[:, 1:])


def tiny_gpt2(width: int = 16) -> nn.Module:
    torch.manual_seed(0)
    return build_model(ModelSpec(arch="gpt2", vocab_size=VOCAB, layers=1, width=width, heads=2, context=CONTEXT))


def flat_params(model: nn.Module) -> torch.Tensor:
    return torch.cat([p.detach().reshape(-1) for p in model.parameters()])


class EmptyStepSpy:
    """Wraps loop.empty_dp_step: counts empty steps and records whether each moved the weights."""

    def __init__(self, model: nn.Module) -> None:
        self.model, self.changed = model, []

    def __call__(self, optimizer) -> None:
        before = flat_params(self.model)
        empty_dp_step(optimizer)
        self.changed.append(not torch.equal(before, flat_params(self.model)))


def train_counting_steps(s: TrainSettings, n_train: int, tmp_path, monkeypatch):
    """Run the Trainer; return (result, empty-step spy, wrapped-optimizer steps, accountant history)."""
    model = tiny_gpt2()
    spy = EmptyStepSpy(model)
    monkeypatch.setattr(loop, "empty_dp_step", spy)
    # Count the real parameter updates independently of the Trainer's own step counter:
    # the global hook fires on the wrapped torch optimizer's step, not on Opacus' skipped ones.
    base_steps = []
    handle = register_optimizer_step_post_hook(lambda *_: base_steps.append(1))
    try:
        result = Trainer(s, model, sequences(n_train, 1), sequences(4, 2), sequences(4, 3), progress=False,
                         checkpoint_dir=tmp_path, checkpoint_key="k").run()
    finally:
        handle.remove()
    # The checkpoint stores the engine's accountant history as [noise, sample_rate, steps] entries.
    history = load_checkpoint(tmp_path, "k").meta["accountant"]
    return result, spy, len(base_steps), history


def test_n3_batch1_dp_training_steps_and_accounts_every_batch_including_empty(tmp_path, monkeypatch):
    s = dp_settings(epochs=4, batch_size=1)
    result, spy, base_steps, history = train_counting_steps(s, 3, tmp_path, monkeypatch)

    assert spy.changed, "the seeded sampler should have drawn at least one empty batch"
    assert all(spy.changed)  # every empty step applied a (noise-only) update
    planned = s.epochs * 3  # Poisson loader: 1 / sample_rate = 3 logical batches per epoch
    assert result.steps == base_steps == planned
    assert sum(entry[2] for entry in history) == base_steps
    assert all(entry[0] == 1.0 and entry[1] == pytest.approx(1 / 3) for entry in history)
    # Epsilon from a fresh Opacus accountant for that many sampled-Gaussian steps at q = 1/3.
    fresh = RDPAccountant()
    fresh.history = [(1.0, 1 / 3, base_steps)]
    assert result.epsilon == pytest.approx(fresh.get_epsilon(delta=result.dp.delta), rel=1e-9)
    assert all(math.isfinite(h.train_loss) for h in result.history)


def test_empty_batches_under_batch_memory_manager_step_and_account(tmp_path, monkeypatch):
    # physical_batch_size < batch_size routes through Opacus' BatchMemoryManager, whose
    # skip-step queue must stay in sync across empty logical batches (q = 1/2: P(empty) = 1/8;
    # seed 2 draws some within 4 epochs, which the first assert checks).
    s = dp_settings(epochs=4, batch_size=2, physical_batch_size=1, seed=2)
    result, spy, base_steps, history = train_counting_steps(s, 3, tmp_path, monkeypatch)

    assert spy.changed, "the seeded sampler should have drawn at least one empty batch"
    assert all(spy.changed)
    assert result.steps == base_steps == s.epochs * 2
    assert sum(entry[2] for entry in history) == base_steps


def make_private_sgd(model: nn.Module, *, n: int, batch_size: int, lr: float, sigma: float, clip: float, mode: str):
    """Opacus set-up as in Trainer._build (Poisson sampling), with plain SGD."""
    engine = PrivacyEngine(accountant="rdp")
    _private, optimizer, loader = engine.make_private(
        module=model, optimizer=torch.optim.SGD(model.parameters(), lr=lr),
        data_loader=DataLoader(sequences(n, 1), batch_size=batch_size),
        noise_multiplier=sigma, max_grad_norm=clip, poisson_sampling=True,
        noise_generator=torch.Generator().manual_seed(5), grad_sample_mode=mode,
    )
    return engine, optimizer, loader


@pytest.mark.parametrize("mode", ["ew", "hooks"])
def test_empty_step_adds_noise_of_std_lr_sigma_clip_over_expected_batch(mode):
    n, batch, lr, sigma, clip = 8, 4, 0.1, 2.0, 0.5  # batch divides n: expected batch = 4 exactly
    model = tiny_gpt2(width=32)
    engine, optimizer, _ = make_private_sgd(model, n=n, batch_size=batch, lr=lr, sigma=sigma, clip=clip, mode=mode)
    before = flat_params(model)

    optimizer.zero_grad(set_to_none=True)
    empty_dp_step(optimizer)

    change = flat_params(model) - before
    expected_std = lr * sigma * clip / batch  # SGD on (0 + N(0, (sigma C)^2)) / B
    assert change.numel() > 10_000  # enough samples: the std estimate's relative error is ~1/sqrt(2n) < 1%
    assert float(change.std()) == pytest.approx(expected_std, rel=0.05)
    assert abs(float(change.mean())) < 5 * expected_std / math.sqrt(change.numel())
    assert engine.accountant.history == [(sigma, pytest.approx(batch / n), 1)]


def test_empty_step_without_noise_leaves_weights_unchanged_but_is_accounted():
    model = tiny_gpt2()
    engine, optimizer, _ = make_private_sgd(model, n=8, batch_size=4, lr=0.1, sigma=0.0, clip=1.0, mode="ew")
    before = flat_params(model)

    optimizer.zero_grad(set_to_none=True)
    empty_dp_step(optimizer)

    assert torch.equal(flat_params(model), before)  # zero sum of clipped gradients, no noise: no update
    assert len(engine.accountant.history) == 1


def test_empty_step_refuses_leftover_per_sample_gradients():
    # Overwriting gradients from a backward pass would silently drop data from the step.
    model = tiny_gpt2()
    _engine, optimizer, _ = make_private_sgd(model, n=8, batch_size=4, lr=0.1, sigma=1.0, clip=1.0, mode="hooks")
    optimizer.zero_grad(set_to_none=True)
    optimizer.params[0].grad_sample = torch.zeros((1, *optimizer.params[0].shape))
    with pytest.raises(RuntimeError, match="call zero_grad"):
        empty_dp_step(optimizer)
