"""Training: DP-SGD behaviour, accounting, resume, each arch, bad input. Small real models on real text."""

import math

import pytest
import torch
from torch import nn

from canaryaudit.config import TrainSettings, parse_params
from canaryaudit.corpus.emails import generate_emails
from canaryaudit.errors import ParamsError
from canaryaudit.training.dp import epsilon_for, plan_dp
from canaryaudit.training.loop import Trainer, TrainingDiverged, evaluate, lr_factor
from canaryaudit.training.models import CharLSTM, ModelSpec, build_model
from canaryaudit.training.pipeline import build_variant_model, prepare_data

TEXTS = [d.text for d in generate_emails(11, 40_000)]


def settings(**overrides) -> TrainSettings:
    base = {
        "device": "cpu", "epochs": 2, "batch_size": 16, "physical_batch_size": 16, "eval_batch_size": 64,
        "model": {"arch": "gpt2", "layers": 1, "width": 32, "heads": 2, "context": 16},
        "optimizer": {"lr": 0.003, "warmup_steps": 2},
    }
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            base[key] = {**base[key], **value}
        else:
            base[key] = value
    return parse_params({"train": {**base, "variants": {"v": {}}}}).train.variant("v")


@pytest.fixture(scope="module")
def data():
    return prepare_data(settings(), TEXTS[:-6], TEXTS[-6:-3], TEXTS[-3:])


def run(s: TrainSettings, data, **kwargs):
    model, _spec = build_variant_model(s, data.tokenizer)
    return Trainer(s, model, data.train, data.valid, data.test, progress=False, **kwargs).run()


def flat_params(model: nn.Module) -> torch.Tensor:
    return torch.cat([p.detach().reshape(-1) for p in model.parameters()])


# ------------------------------------------------------------------ DP mechanics on our models


def _dp_step(model: nn.Module, inputs, targets, noise: float, clip: float, mode: str = "hooks") -> nn.Module:
    from opacus import PrivacyEngine

    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(inputs, targets), batch_size=len(inputs))
    engine = PrivacyEngine(accountant="rdp")
    private, optimizer, loader = engine.make_private(module=model, optimizer=optimizer, data_loader=loader,
                                                     noise_multiplier=noise, max_grad_norm=clip, poisson_sampling=False,
                                                     grad_sample_mode=mode)
    x, y = next(iter(loader))
    optimizer.zero_grad()
    logits = private(x)
    nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1)).backward()
    optimizer.step()
    return private._module


def _plain_step(model: nn.Module, inputs, targets) -> nn.Module:
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    optimizer.zero_grad()
    logits = model(inputs)
    nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1)).backward()
    optimizer.step()
    return model


@pytest.mark.parametrize(("arch", "mode"), [("gpt2", "ew"), ("gpt2", "hooks"), ("lstm", "hooks")])
def test_noise_zero_huge_clip_equals_plain_step(arch, mode, data):
    spec = ModelSpec(arch=arch, vocab_size=data.tokenizer.vocab_size, layers=1, width=16, heads=2, context=16,
                     dp_layers=True)
    torch.manual_seed(0)
    model = build_model(spec)
    twin = build_model(spec)
    twin.load_state_dict(model.state_dict())
    inputs, targets = data.train.tensors[0][:8], data.train.tensors[1][:8]
    plain = _plain_step(model, inputs, targets)
    dp = _dp_step(twin, inputs, targets, noise=0.0, clip=1e9, mode=mode)
    assert torch.allclose(flat_params(plain), flat_params(dp), atol=1e-6)


@pytest.mark.parametrize("mode", ["ew", "hooks"])
def test_each_per_sample_gradient_is_clipped_to_max_grad_norm(mode, data):
    """With noise 0, the DP update must equal the mean of per-sample gradients each clipped to C.

    Per-sample gradients are computed here one sample at a time (independently of
    Opacus); the GPT-2 head shares its weight with the embedding, so this also
    checks that Opacus sums both uses of the tied weight before clipping.
    """
    clip = 0.05
    spec = ModelSpec(arch="gpt2", vocab_size=data.tokenizer.vocab_size, layers=1, width=16, heads=2, context=16)
    torch.manual_seed(1)
    model = build_model(spec)
    start = {k: v.clone() for k, v in model.state_dict().items()}
    inputs, targets = data.train.tensors[0][:6], data.train.tensors[1][:6]
    clipped_sum = None
    norms = []
    for i in range(len(inputs)):
        model.zero_grad()
        logits = model(inputs[i : i + 1])
        nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets[i].reshape(-1)).backward()
        grad = torch.cat([p.grad.reshape(-1) for p in model.parameters()])
        norms.append(float(grad.norm()))
        grad = grad * min(1.0, clip / (float(grad.norm()) + 1e-6))
        assert float(grad.norm()) <= clip + 1e-7
        clipped_sum = grad if clipped_sum is None else clipped_sum + grad
    assert min(norms) > clip, "clipping is active for every sample"
    expected = flat_params(model) - 0.5 * clipped_sum / len(inputs)

    model.load_state_dict(start)
    updated = _dp_step(model, inputs, targets, noise=0.0, clip=clip, mode=mode)
    assert torch.allclose(flat_params(updated), expected, atol=1e-6)


def test_unsupported_layer_under_dp_is_a_clear_error(data):
    s = settings(model={"arch": "lstm"}, dp={"enabled": True, "noise_multiplier": 1.0})
    model = CharLSTM(data.tokenizer.vocab_size, 16, 1, 0.0, dp_layers=False)  # plain nn.LSTM
    with pytest.raises(ParamsError, match="DP-SGD cannot train this model"):
        Trainer(s, model, data.train, data.valid, data.test, progress=False).run()


# ------------------------------------------------------------------ accounting


@pytest.mark.parametrize("accountant", ["prv", "rdp"])
def test_reported_epsilon_is_the_accountants(accountant, data):
    s = settings(dp={"enabled": True, "noise_multiplier": 0.8, "accountant": accountant})
    result = run(s, data)
    n = len(data.train)
    assert result.dp.sample_rate == pytest.approx(1 / math.ceil(n / 16))  # Opacus: 1 / batches per epoch
    assert result.dp.delta == pytest.approx(1 / (10 * n))
    assert result.steps == 2 * math.ceil(n / 16)
    expected = epsilon_for(0.8, 1 / math.ceil(n / 16), result.steps, result.dp.delta, accountant)
    assert result.epsilon == pytest.approx(expected, rel=1e-9)
    assert result.history[-1].epsilon == pytest.approx(expected, rel=1e-9)


def test_target_epsilon_is_met_within_0_05(data):
    s = settings(dp={"enabled": True, "target_epsilon": 3.0, "accountant": "prv"})
    result = run(s, data)
    assert abs(result.epsilon - 3.0) <= 0.05


def test_delta_must_be_below_one_over_n():
    dp = parse_params({}).train.variant("dp").dp.model_copy(update={"delta": 0.02})
    with pytest.raises(ParamsError, match=r"train.variants.dp.dp.delta: 0.02 must be below 1/N = 0.01"):
        plan_dp(dp, n_sequences=100, batch_size=10, steps=50, key="train.variants.dp")


def test_unreachable_target_epsilon():
    dp = parse_params({}).train.variant("dp").dp.model_copy(
        update={"noise_multiplier": None, "target_epsilon": 0.01, "max_noise_multiplier": 5.0})
    with pytest.raises(ParamsError, match="target_epsilon: 0.01 is unreachable within dp.max_noise_multiplier = 5.0"):
        plan_dp(dp, n_sequences=1000, batch_size=100, steps=1000, key="train.variants.dp")


# ------------------------------------------------------------------ loop behaviour


@pytest.mark.parametrize("dp", [False, True])
def test_resume_after_interruption_matches_uninterrupted(dp, data, tmp_path):
    extra = {"dp": {"enabled": True, "noise_multiplier": 1.0}} if dp else {}
    s = settings(epochs=3, **extra)
    full = run(s, data)

    def interrupt_after_first(record):
        if record.epoch == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run(s, data, checkpoint_dir=tmp_path, checkpoint_key="k", on_epoch=interrupt_after_first)
    resumed = run(s, data, checkpoint_dir=tmp_path, checkpoint_key="k")
    assert resumed.resumed_from_epoch == 1
    assert torch.equal(flat_params(full.model), flat_params(resumed.model))
    assert [h.valid_loss for h in full.history] == [h.valid_loss for h in resumed.history]
    if dp:
        assert resumed.epsilon == full.epsilon


def test_checkpoint_of_other_settings_is_not_resumed(data, tmp_path):
    s = settings(epochs=2)
    with pytest.raises(KeyboardInterrupt):
        run(s, data, checkpoint_dir=tmp_path, checkpoint_key="a", on_epoch=lambda r: (_ for _ in ()).throw(KeyboardInterrupt))
    assert run(s, data, checkpoint_dir=tmp_path, checkpoint_key="b").resumed_from_epoch == 0


def test_nan_loss_stops_with_a_message(data):
    s = settings(optimizer={"name": "sgd", "lr": 10.0, "warmup_steps": 0, "schedule": "constant"})
    model, _ = build_variant_model(s, data.tokenizer)
    with torch.no_grad():
        next(model.parameters()).fill_(float("nan"))
    with pytest.raises(TrainingDiverged, match="loss became nan at epoch 1, step 0"):
        Trainer(s, model, data.train, data.valid, data.test, progress=False).run()


def test_early_stopping_keeps_best_weights(data):
    s = settings(epochs=6, early_stopping_patience=1, optimizer={"lr": 0.05, "schedule": "constant", "warmup_steps": 0})
    result = run(s, data)
    best = min(h.valid_loss for h in result.history)
    assert evaluate(result.model, data.valid, 64, torch.device("cpu")) == pytest.approx(best, rel=1e-6)


@pytest.mark.parametrize(
    ("step", "factor"),
    [(0, 0.25), (3, 1.0), (4, 1.0), (9, 0.5), (14, 0.0)],  # warmup 4 steps, cosine over steps 4..14
)
def test_lr_schedule_by_hand(step, factor):
    assert lr_factor(step, 14, 4, "cosine") == pytest.approx(factor)


def test_lr_linear_and_constant():
    assert lr_factor(7, 10, 0, "linear") == pytest.approx(0.3)
    assert lr_factor(7, 10, 0, "constant") == 1.0


# ------------------------------------------------------------------ archs


@pytest.mark.parametrize(
    "variant",
    [
        {"model": {"arch": "gpt2"}},
        {"model": {"arch": "lstm", "width": 32}},
        {"model": {"arch": "lstm", "width": 32}, "optimizer": {"lr": 0.02},
         "dp": {"enabled": True, "noise_multiplier": 0.3, "max_grad_norm": 5.0}},
        {"model": {"arch": "gpt2"}, "optimizer": {"name": "rmsprop", "lr": 0.002}},
        {"model": {"arch": "gpt2"}, "optimizer": {"name": "sgd", "lr": 0.5, "momentum": 0.9}},
        {"model": {"arch": "gpt2"}, "batch_size": 32, "physical_batch_size": 8},
        {"model": {"arch": "gpt2"}, "batch_size": 32, "physical_batch_size": 8,
         "dp": {"enabled": True, "noise_multiplier": 0.5, "max_grad_norm": 5.0}},
    ],
    ids=["gpt2", "lstm", "lstm-dp", "rmsprop", "sgd", "accumulate", "dp-batch-memory-manager"],
)
def test_each_configuration_lowers_the_loss(variant, data):
    s = settings(**variant)
    model, _ = build_variant_model(s, data.tokenizer)
    before = evaluate(model, data.valid, 64, torch.device("cpu"))
    result = Trainer(s, model, data.train, data.valid, data.test, progress=False).run()
    assert result.history[-1].valid_loss < before - 0.3
    assert math.isfinite(result.test_loss)


def test_bpe_tokenizer_trains(data):
    s = settings(tokenizer={"kind": "bpe", "bpe_vocab_size": 300})
    bpe = prepare_data(s, TEXTS[:-6], TEXTS[-6:-3], TEXTS[-3:])
    assert 256 < bpe.tokenizer.vocab_size <= 300
    assert bpe.tokenizer.decode(bpe.tokenizer.encode("Hello, SSN 078-05-1120")) == "Hello, SSN 078-05-1120"
    result = run(s, bpe)
    assert math.isfinite(result.test_loss)


# ------------------------------------------------------------------ the one-run bound on real DP models


@pytest.mark.parametrize("seed", range(6))
def test_empirical_epsilon_of_a_dp_model_never_exceeds_its_accountant_epsilon(seed):
    """A property over seeds: small DP models trained with audit canaries (each included with
    probability 1/2, 4 copies, so the bound is on a group of 4); the one-run lower bound must stay
    at or below 4 x the accountant's epsilon. A violation is a bug in DP-SGD or in the bound. The
    noise is low (epsilon in the tens) and the canaries are repeated, so the attack has a chance."""
    import random

    from canaryaudit.extraction.pipeline import AuditedModel, audit_canary_scores
    from canaryaudit.privacy.empirical_epsilon import empirical_epsilon

    rng = random.Random(seed)
    prefix = "the audit code is "
    canaries = [{"audit": True, "prefix": prefix, "text": prefix + f"{rng.randrange(10**6):06d}",
                 "included": rng.random() < 0.5, "insertions": 4} for _ in range(48)]
    texts = list(TEXTS[:-6])
    for c in canaries:
        for _ in range(4 if c["included"] else 0):
            i = rng.randrange(len(texts))
            texts[i] = texts[i] + "\n" + c["text"] + "\n"
    s = settings(seed=seed, epochs=2, model={"context": 32},  # the canary fits one window
                 dp={"enabled": True, "noise_multiplier": 0.5, "max_grad_norm": 1.0})
    prepared = prepare_data(s, texts, TEXTS[-6:-3], TEXTS[-3:])
    result = run(s, prepared)
    scores, included = audit_canary_scores(AuditedModel(result.model, prepared.tokenizer, torch.device("cpu")),
                                           canaries)
    block = empirical_epsilon(scores, included, 8, 8, result.dp.delta, 0.05, accountant_epsilon=result.epsilon,
                              copies=4)
    assert block["group_epsilon"] == pytest.approx(4 * result.epsilon)
    assert 0.0 <= block["epsilon_lower_bound"] <= block["ceiling"]
    assert block["exceeds_accountant"] is False, block
