"""DP fine-tuning (hf:PATH) of GPT-2, GPT-NeoX (Pythia) and Llama configs, in full and with LoRA.

Tiny pretrained folders (safetensors weights and a tokenizer) are built and saved by the module
fixture: byte-level BPE for GPT-2 and GPT-NeoX, a SentencePiece-style tokenizer (Metaspace,
digits split one by one) for Llama. No hub access.
"""

import copy
import json
import math

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from canaryaudit.corpus.emails import generate_emails
from canaryaudit.errors import ParamsError
from canaryaudit.training.dp import DpPlan, epsilon_for, make_private
from canaryaudit.training.lora import ADAPTER_FOLDER, is_lora, linear_module_names
from canaryaudit.training.loop import Trainer, evaluate, grad_sample_mode, make_optimizer, trainable
from canaryaudit.training.models import load_model_folder, save_model_folder
from canaryaudit.training.pipeline import (
    build_variant_model,
    model_card,
    prepare_data,
    save_lora_adapter,
    train_report,
)
from tests.test_training import settings

TEXTS = [d.text for d in generate_emails(13, 12_000)]
ARCHS = ("gpt2", "gpt_neox", "llama")
HIDDEN = 32


def _bpe_tokenizer():
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    backend.train_from_iterator(TEXTS, trainers.BpeTrainer(vocab_size=300, special_tokens=["<|endoftext|>"],
                                                          initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    return PreTrainedTokenizerFast(tokenizer_object=backend, eos_token="<|endoftext|>")


def _sentencepiece_style_tokenizer():
    """Llama style: '▁' marks spaces (Metaspace), every digit its own token."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(models.BPE(unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="first"),
                                                     pre_tokenizers.Digits(individual_digits=True)])
    backend.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="first")
    backend.train_from_iterator(TEXTS, trainers.BpeTrainer(vocab_size=300, special_tokens=["<unk>", "<s>", "</s>"]))
    return PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="<unk>", bos_token="<s>", eos_token="</s>")


def _config(arch: str, tokenizer):
    from transformers import GPT2Config, GPTNeoXConfig, LlamaConfig

    vocab, eos = len(tokenizer), tokenizer.eos_token_id
    if arch == "gpt2":
        return GPT2Config(vocab_size=vocab, n_positions=64, n_embd=HIDDEN, n_layer=1, n_head=2,
                          bos_token_id=eos, eos_token_id=eos, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)
    if arch == "gpt_neox":
        return GPTNeoXConfig(vocab_size=vocab, hidden_size=HIDDEN, num_hidden_layers=1, num_attention_heads=2,
                             intermediate_size=2 * HIDDEN, max_position_embeddings=64, bos_token_id=eos,
                             eos_token_id=eos)
    return LlamaConfig(vocab_size=vocab, hidden_size=HIDDEN, num_hidden_layers=1, num_attention_heads=2,
                       num_key_value_heads=1, intermediate_size=2 * HIDDEN, max_position_embeddings=64,
                       bos_token_id=tokenizer.bos_token_id, eos_token_id=eos, pad_token_id=None)


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    """arch -> a tiny pretrained folder (model.safetensors, config.json, tokenizer)."""
    from transformers import AutoModelForCausalLM

    out = {}
    bpe = _bpe_tokenizer()
    for arch in ARCHS:
        tokenizer = _sentencepiece_style_tokenizer() if arch == "llama" else bpe
        folder = tmp_path_factory.mktemp(f"tiny-{arch}")
        tokenizer.save_pretrained(str(folder))
        torch.manual_seed(0)
        AutoModelForCausalLM.from_config(_config(arch, tokenizer)).save_pretrained(str(folder), safe_serialization=True)
        out[arch] = folder
    return out


def arch_settings(folder, lora: bool | dict, **overrides):
    """Settings fine-tuning ``folder``; ``lora``: on/off (r 4, alpha 8), or the lora section's overrides."""
    section = {"enabled": bool(lora), "r": 4, "alpha": 8.0, **(lora if isinstance(lora, dict) else {})}
    return settings(model={"arch": f"hf:{folder}", "context": 16}, tokenizer={"kind": "pretrained"}, lora=section,
                    **overrides)


@pytest.fixture(scope="module")
def datasets(folders):
    """arch -> PreparedData (its pretrained tokenizer, train/valid/test sequences of 16 tokens)."""
    return {arch: prepare_data(arch_settings(folders[arch], False), TEXTS[:-4], TEXTS[-4:-2], TEXTS[-2:])
            for arch in ARCHS}


def _loss(model: nn.Module, inputs, targets) -> torch.Tensor:
    logits = model(inputs)  # the Trainer's loss: mean next-token cross-entropy
    return nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1))


def _perturb_lora_b(model: nn.Module, seed: int = 3) -> None:
    """LoRA starts with B = 0, where A has no gradient; give B seeded values so both matrices are tested."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.copy_(torch.randn(p.shape, generator=gen) * 0.1)


def _models(folders, datasets, arch: str, lora: bool, **overrides):
    s = arch_settings(folders[arch], lora, **overrides)
    model, _spec = build_variant_model(s, datasets[arch].tokenizer)
    if lora:
        _perturb_lora_b(model)
    return s, model, copy.deepcopy(model)


def _dp_step(s, model: nn.Module, inputs, targets, clip: float, mode: str | None = None) -> tuple[nn.Module, str]:
    """One DP-SGD step as the Trainer takes it, at sigma 0 and sample rate 1 (Poisson keeps every sequence)."""
    loader = DataLoader(TensorDataset(inputs, targets), batch_size=len(inputs))  # one batch: q = 1
    plan = DpPlan(noise_multiplier=0.0, sample_rate=1.0, delta=1e-5, steps=1, max_grad_norm=clip, accountant="rdp")
    mode = mode or grad_sample_mode(s, model)
    _engine, private, optimizer, dp_loader = make_private(
        model, make_optimizer(s, trainable(model)), loader, plan, noise_generator=torch.Generator().manual_seed(1),
        grad_sample_mode=mode)
    x, y = next(iter(dp_loader))
    assert len(x) == len(inputs)
    private.train()  # as the Trainer: Opacus' hooks record activations in training mode only
    optimizer.zero_grad(set_to_none=True)
    _loss(private, x, y).backward()
    optimizer.step()
    return private, mode


def _plain_step(s, model: nn.Module, inputs, targets) -> None:
    optimizer = make_optimizer(s, trainable(model))
    model.train()
    optimizer.zero_grad(set_to_none=True)
    _loss(model, inputs, targets).backward()
    optimizer.step()


# ------------------------------------------------------------------ (a) noise 0, huge clip = a plain step


@pytest.mark.parametrize("lora", [False, True], ids=["full", "lora"])
@pytest.mark.parametrize("arch", ARCHS)
def test_noise_zero_huge_clip_equals_plain_step(folders, datasets, arch, lora):
    s, dp_model, plain_model = _models(folders, datasets, arch, lora, optimizer={"name": "sgd", "lr": 0.5})
    before = {n: p.detach().clone() for n, p in plain_model.named_parameters()}
    inputs, targets = datasets[arch].train.tensors[0][:8], datasets[arch].train.tensors[1][:8]

    _plain_step(s, plain_model, inputs, targets)
    _private, mode = _dp_step(s, dp_model, inputs, targets, clip=1e6)

    # auto: ExpandedWeights wherever every trainable weight sits in a layer it knows; full Llama has
    # trainable LlamaRMSNorm weights (weight * x), so hooks, with Opacus' functorch fallback for them.
    assert mode == ("hooks" if arch == "llama" and not lora else "ew")
    changed = 0
    for (name, p), (_, q) in zip(dp_model.named_parameters(), plain_model.named_parameters(), strict=True):
        assert torch.allclose(p, q, atol=2e-6, rtol=1e-4), name
        changed += int(not torch.equal(q, before[name]))
    assert changed == len(trainable(plain_model)) > 0  # every trainable tensor moved, the frozen ones did not


def test_full_llama_hooks_and_functorch_modes_also_match_plain(folders, datasets):
    for mode in ("hooks", "functorch"):
        s, dp_model, plain_model = _models(folders, datasets, "llama", False, optimizer={"name": "sgd", "lr": 0.5})
        inputs, targets = datasets["llama"].train.tensors[0][:4], datasets["llama"].train.tensors[1][:4]
        _plain_step(s, plain_model, inputs, targets)
        _dp_step(s, dp_model, inputs, targets, clip=1e6, mode=mode)
        for p, q in zip(dp_model.parameters(), plain_model.parameters(), strict=True):
            assert torch.allclose(p, q, atol=2e-6, rtol=1e-4), mode


def test_full_llama_refused_by_expanded_weights(folders, datasets):
    """Why auto picks hooks for full Llama fine-tuning: ExpandedWeights cannot differentiate RMSNorm's weight * x."""
    s, model, _ = _models(folders, datasets, "llama", False)
    inputs, targets = datasets["llama"].train.tensors[0][:2], datasets["llama"].train.tensors[1][:2]
    with pytest.raises(RuntimeError, match="Expanded Weights"):
        _dp_step(s, model, inputs, targets, clip=1.0, mode="ew")


# ------------------------------------------------------------------ (d) per-sample clipping of the adapters


@pytest.mark.parametrize("arch", ARCHS)
def test_lora_per_sample_gradients_are_clipped_to_the_bound(folders, datasets, arch):
    clip, lr, n = 1e-3, 1.0, 4
    s, model, _ = _models(folders, datasets, arch, True, optimizer={"name": "sgd", "lr": lr})
    inputs, targets = datasets[arch].train.tensors[0][:n], datasets[arch].train.tensors[1][:n]
    adapters = [p for p in model.parameters() if p.requires_grad]
    before = [p.detach().clone() for p in adapters]
    frozen = {name: p.detach().clone() for name, p in model.named_parameters() if not p.requires_grad}
    # Reference: each sequence's own adapter gradient, scaled to norm C, averaged over the n.
    per_sample = []
    for i in range(n):
        model.zero_grad(set_to_none=True)
        _loss(model, inputs[i:i + 1], targets[i:i + 1]).backward()
        per_sample.append([p.grad.detach().clone() for p in adapters])
    model.zero_grad(set_to_none=True)
    norms = [math.sqrt(sum(float(g.pow(2).sum()) for g in grads)) for grads in per_sample]
    assert min(norms) > clip  # every sequence is clipped
    expected = [sum(grads[k] * (clip / norm) for grads, norm in zip(per_sample, norms)) / n
                for k in range(len(adapters))]

    _private, _mode = _dp_step(s, model, inputs, targets, clip=clip)

    # The DP optimizer's gradient (what SGD stepped on): the mean of the clipped per-sample gradients.
    step = [p.grad for p in adapters]
    assert math.sqrt(sum(float(g.pow(2).sum()) for g in step)) <= clip * (1 + 1e-5)
    for g, e, p, b in zip(step, expected, adapters, before):
        assert torch.allclose(g, e, atol=1e-10, rtol=1e-4)
        assert torch.allclose(p, b - lr * g)
    for name, p in model.named_parameters():  # the base: no per-sample gradient, no update
        if name in frozen:
            assert getattr(p, "grad_sample", None) is None and torch.equal(p, frozen[name]), name


# ------------------------------------------------------------------ (b) epsilon is the accountant's


@pytest.mark.parametrize("lora", [False, True], ids=["full", "lora"])
@pytest.mark.parametrize("arch", ARCHS)
def test_epsilon_equals_the_accountants_and_lora_only_changes_targets(folders, datasets, arch, lora, tmp_path):
    from opacus.accountants import create_accountant

    sigma, steps = 1.1, 4
    s = arch_settings(folders[arch], lora, epochs=1, max_steps=steps, batch_size=8, physical_batch_size=8,
                      dp={"enabled": True, "noise_multiplier": sigma, "max_grad_norm": 1.0})
    data = datasets[arch]
    model, spec = build_variant_model(s, data.tokenizer)
    base = build_variant_model(arch_settings(folders[arch], False), data.tokenizer)[0].state_dict()
    result = Trainer(s, model, data.train, data.valid, data.test, progress=False).run()

    q = 1.0 / math.ceil(len(data.train) / 8)
    fresh = create_accountant("prv")  # the configured accountant, recomputed from (sigma, q, steps) alone
    fresh.history = [(sigma, q, steps)]
    assert result.steps == steps and result.dp.sample_rate == pytest.approx(q)
    assert result.epsilon == pytest.approx(fresh.get_epsilon(delta=result.dp.delta), rel=1e-6)
    assert result.epsilon == pytest.approx(epsilon_for(sigma, q, steps, result.dp.delta, "prv"), rel=1e-9)

    card = model_card("dp", s, spec, result.model, result, "sha")
    report = train_report("dp", result, sum(p.numel() for p in result.model.parameters()), s)
    assert card["dp"]["epsilon"] == report["epsilon"] == result.epsilon
    assert not is_lora(result.model)  # merged: a plain causal LM, its state-dict keys are the base model's
    assert set(result.model.state_dict()) == set(base)
    if not lora:
        assert card["lora"] is None and report["trainable_parameters"] == report["parameters"]
        return
    targets = tuple(card["lora"]["target_modules"])
    assert card["lora"] == report["lora"] and card["lora"]["merged"] is True
    assert report["trainable_parameters"] == card["lora"]["trainable_parameters"] < report["parameters"] / 4
    for name, weights in result.model.state_dict().items():  # noise reached the adapted layers only
        adapted = any(f".{t}.weight" in f".{name}" for t in targets)
        assert torch.equal(weights, base[name]) != adapted, name
    assert save_lora_adapter(result, tmp_path) == tmp_path / ADAPTER_FOLDER
    config = json.loads((tmp_path / ADAPTER_FOLDER / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == str(folders[arch]) and config["r"] == 4


# ------------------------------------------------------------------ (c) LoRA: fewer parameters, loss goes down


@pytest.mark.parametrize("arch", ARCHS)
def test_lora_trains_fewer_parameters_and_lowers_the_loss(folders, datasets, arch):
    data = datasets[arch]
    full_s = arch_settings(folders[arch], False)
    full, _ = build_variant_model(full_s, data.tokenizer)
    s = arch_settings(folders[arch], True, epochs=2, optimizer={"lr": 0.03, "warmup_steps": 2})
    model, _ = build_variant_model(s, data.tokenizer)
    n_lora, n_full = len(trainable(model)), sum(p.numel() for p in full.parameters() if p.requires_grad)
    assert 0 < sum(p.numel() for p in trainable(model)) < n_full / 4 and n_lora < len(trainable(full))
    before = evaluate(model, data.train, 64, torch.device("cpu"))

    result = Trainer(s, model, data.train, data.valid, data.test, progress=False).run()

    after = evaluate(result.model, data.train, 64, torch.device("cpu"))
    # A random "pretrained" base and frozen embeddings and head: the attention adapters alone lower
    # the loss by 0.05 to 0.09 nats/token here (seeded, so the same every run).
    assert after < before - 0.03, (before, after)
    assert result.trainable_parameters == result.lora["trainable_parameters"] < n_full / 4
    assert result.lora["total_parameters"] == n_full


# ------------------------------------------------------------------ the saved adapter, bad target names


@pytest.mark.parametrize("arch", ["gpt2", "llama"])
def test_saved_adapter_on_the_stock_base_equals_the_merged_model(folders, datasets, arch, tmp_path):
    """GPT-2's stock layers are Conv1D (our wrapper trains nn.Linear): the adapter says fan_in_fan_out for them."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    s = arch_settings(folders[arch], True, max_steps=3, optimizer={"lr": 0.05, "warmup_steps": 0})
    data = datasets[arch]
    model, spec = build_variant_model(s, data.tokenizer)
    result = Trainer(s, model, data.train, data.valid, data.test, progress=False).run()
    folder = save_lora_adapter(result, tmp_path)
    assert json.loads((folder / "adapter_config.json").read_text())["fan_in_fan_out"] is (arch == "gpt2")

    stock = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(str(folders[arch])), str(folder)).eval()
    ids = data.valid.tensors[0][:2]
    with torch.no_grad():
        expected = result.model(ids)
        assert not torch.allclose(expected, AutoModelForCausalLM.from_pretrained(str(folders[arch]))(ids).logits,
                                  atol=1e-4)  # the fine-tune changed something
        assert torch.allclose(stock(input_ids=ids).logits, expected, atol=1e-4)
    # The model folder holds the merged model: it loads like any other variant's.
    save_model_folder(result.model, spec, tmp_path / "m")
    loaded, _ = load_model_folder(tmp_path / "m")
    with torch.no_grad():
        assert torch.allclose(loaded(ids), expected, atol=1e-5)


def test_unknown_or_non_linear_target_modules_are_refused_naming_the_key(folders, datasets):
    tokenizer = datasets["gpt_neox"].tokenizer
    s = arch_settings(folders["gpt_neox"], {"target_modules": ["q_proj"]})
    with pytest.raises(ParamsError, match=r"train.variants.x.lora.target_modules: 'q_proj' .*names no layer.*"
                                          r"linear layers are: .*query_key_value"):
        build_variant_model(s, tokenizer, key="train.variants.x")
    s = arch_settings(folders["gpt_neox"], {"target_modules": ["embed_in"]})
    with pytest.raises(ParamsError, match=r"lora.target_modules: 'embed_in' names Embedding layers"):
        build_variant_model(s, tokenizer)


def test_lora_on_a_tied_head_is_refused(folders, datasets):
    """GPT-2 ties lm_head to the token embedding: merging an adapter there would change the embedding too."""
    s = arch_settings(folders["gpt2"], {"target_modules": ["c_attn", "lm_head"]})
    with pytest.raises(ParamsError, match=r"lora.target_modules: 'lm_head' shares its weight with transformer.wte"):
        build_variant_model(s, datasets["gpt2"].tokenizer)


def test_explicit_targets_and_linear_names(folders, datasets):
    s = arch_settings(folders["llama"], {"target_modules": ["q_proj", "mlp.down_proj"]})
    model, _ = build_variant_model(s, datasets["llama"].tokenizer)
    assert {"q_proj", "k_proj", "v_proj", "o_proj", "down_proj", "lm_head"} <= set(linear_module_names(model))
    names = {n for n, p in model.named_parameters() if p.requires_grad}
    assert names and all("lora_" in n and ("q_proj" in n or "down_proj" in n) for n in names)


def test_lora_refused_for_the_lstm():
    with pytest.raises(ParamsError, match=r"train\.lora: LoRA adapts the linear layers"):
        settings(model={"arch": "lstm"}, lora={"enabled": True})
