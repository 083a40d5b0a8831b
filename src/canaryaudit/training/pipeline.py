"""From texts and settings to a trained variant: tokenizer, datasets, model, card and report."""

from __future__ import annotations

import hashlib
import json
import logging
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import TensorDataset

from canaryaudit.canaries import CanaryFormat
from canaryaudit.config import TrainSettings
from canaryaudit.errors import ParamsError
from canaryaudit.training.data import chunk_stream, sequence_dataset, token_stream
from canaryaudit.training.loop import TrainResult
from canaryaudit.training.models import (
    ModelSpec,
    build_model,
    count_parameters,
    hf_path,
    load_pretrained,
    save_model_folder,
)
from canaryaudit.training.tokenizers import Tokenizer, TokenizerOptions, build_tokenizer

log = logging.getLogger("canaryaudit.train")

PRIVACY_UNIT = (
    "one training sequence: a chunk of {context} consecutive tokens of the training token stream, "
    "sampled with Poisson sampling. A canary inserted k times sits in up to k sequences, so its "
    "guarantee is group privacy: (k*epsilon, k*exp((k-1)*epsilon)*delta)."
)


def noise_secrecy(settings: TrainSettings) -> str | None:
    """What the DP guarantee assumes about the noise seed (model card and train report); None without DP."""
    dp = settings.dp
    if not dp.enabled:
        return None
    if dp.secure_noise:
        return ("The DP noise was drawn from a generator seeded from the operating system's cryptographic "
                "random source (os.urandom), re-seeded each epoch and never stored (train.dp.secure_noise: true): "
                "epsilon does not depend on keeping params.yaml secret. This run is not bit-for-bit reproducible.")
    return (f"The DP noise was drawn from a generator seeded from train.seed ({settings.seed}) in params.yaml, so "
            "the run is reproducible, and epsilon assumes that seed is secret: anyone holding the params can "
            "regenerate the noise, and then the guarantee does not hold. Set train.dp.secure_noise: true to draw "
            "the noise from a cryptographically seeded generator.")


@dataclass
class PreparedData:
    tokenizer: Tokenizer
    train: TensorDataset
    valid: TensorDataset
    test: TensorDataset


def prepare_data(
    settings: TrainSettings, train_texts: Sequence[str], valid_texts: Sequence[str], test_texts: Sequence[str]
) -> PreparedData:
    """Train (or load) the tokenizer on the training texts and cut every split into sequences."""
    options = TokenizerOptions(settings.tokenizer.bpe_vocab_size, hf_path(settings.model.arch))
    tokenizer = build_tokenizer(settings.tokenizer.kind, train_texts, options)
    context = settings.model.context
    sets = []
    for name, texts in (("train", train_texts), ("valid", valid_texts), ("test", test_texts)):
        try:
            sets.append(sequence_dataset(chunk_stream(token_stream(texts, tokenizer), context)))
        except ValueError as exc:
            raise ParamsError(f"train.model.context: the {name} split is too small: {exc}") from None
    return PreparedData(tokenizer, *sets)


def check_searchable(formats: Sequence[CanaryFormat], tokenizer: Tokenizer, key: str) -> None:
    """Refuse, before training, a tokenizer that cannot spell the canaries; warn when exact rank is out of reach.

    A symbol the tokenizer cannot spell (the char tokenizer never saw it in the training data,
    so it becomes <unk>) makes distinct fillings identical: no exposure could be measured, so it
    is refused here rather than after every model is trained. A format whose token space cannot
    be searched under this tokenizer (``canaryaudit.exposure.token_space``) still gets both estimators;
    exact rank and extraction are then skipped with the reason, which is logged now.
    """
    from canaryaudit.exposure.token_space import LossyTokenizer, SearchUnsupported, canary_space, check_lossless

    for fmt in formats:
        try:
            check_lossless(fmt, tokenizer)
        except LossyTokenizer as exc:
            if tokenizer.kind == "char":
                raise ParamsError(f"canaries.alphabets: symbols of format {fmt.name!r} never occur in the "
                                  f"training data, so the char tokenizer of {key} has no token for them ({exc})") from None
            raise ParamsError(f"{key}.tokenizer.kind: {exc}; use symbols the tokenizer can spell") from None
        try:
            canary_space(fmt, tokenizer)
        except SearchUnsupported as exc:
            log.warning("%s: exposure of format %r will have estimators only, no exact rank or extraction: %s",
                        key, fmt.name, exc)


def build_variant_model(settings: TrainSettings, tokenizer: Tokenizer, key: str = "train") -> tuple[nn.Module, ModelSpec]:
    """A fresh (gpt2, lstm) or pretrained (hf:PATH) model, initialised from ``settings.seed``.

    With ``lora.enabled`` the model comes frozen with LoRA adapters on its target layers
    (``training.lora``); the Trainer merges them after training, so ``spec`` describes the plain
    model that is saved. ``key`` (e.g. train.variants.dp) prefixes the LoRA errors.
    """
    torch.manual_seed(settings.seed)
    m = settings.model
    path = hf_path(m.arch)
    if path is not None:
        model, hf_config = load_pretrained(path)
        spec = ModelSpec(arch=m.arch, vocab_size=tokenizer.vocab_size, context=m.context, hf_config=hf_config)
        if tokenizer.vocab_size > _embedding_rows(model):
            raise ParamsError(f"train.model.arch: hf:{path}: tokenizer has more tokens than the model's embedding")
    else:
        spec = ModelSpec(
            arch=m.arch, vocab_size=tokenizer.vocab_size, layers=m.layers, width=m.width, heads=m.heads,
            context=m.context, dropout=m.dropout, dp_layers=settings.dp.enabled and m.arch == "lstm",
        )
        model = build_model(spec)
    if settings.lora.enabled:
        from canaryaudit.training.lora import apply_lora, trainable_parameters

        apply_lora(model, settings.lora, key)
        log.info("%s: LoRA r=%d on %s: %d of %d parameters train", key, settings.lora.r,
                 ", ".join(sorted(model.model.peft_config["default"].target_modules)),
                 trainable_parameters(model), count_parameters(model))
    return model, spec


def save_lora_adapter(result: TrainResult, folder: Path) -> Path | None:
    """Write the LoRA adapter of an hf:PATH fine-tune to ``folder/adapter/`` (peft format); None otherwise.

    The model folder itself holds the merged weights (what every stage audits); the adapter is for
    use with the base model it was trained on (``adapter_config.json``'s base_model_name_or_path):
    ``PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base), "models/V/adapter")``.
    A LoRA run of the gpt2 arch (trained from scratch) has no saved base, so no adapter is written.
    """
    from canaryaudit.training.lora import save_adapter

    if result.adapter is None or not result.adapter.config.get("base_model_name_or_path"):
        return None
    return save_adapter(result.adapter, folder)


def save_trained(folder: str | Path, result: TrainResult, spec: ModelSpec, tokenizer: Tokenizer,
                 card: dict[str, Any]) -> None:
    """models/V: weights (HF layout), tokenizer, LoRA adapter if any, card.json and the README model card.

    All or nothing: a full disk or a Ctrl-C leaves no half model folder for DVC to cache.
    """
    from canaryaudit.io import atomic_folder, write_json
    from canaryaudit.training.hf_card import write_model_card

    with atomic_folder(folder) as out:
        save_model_folder(result.model, spec, out)
        tokenizer.save(out)
        save_lora_adapter(result, out)  # models/V/adapter/ for an hf:PATH LoRA fine-tune
        write_json(out / "card.json", card)
        write_model_card(out, card)  # README.md: the HF model card


def _embedding_rows(model: nn.Module) -> int:
    embeddings = [mod for mod in model.modules() if isinstance(mod, nn.Embedding)]
    return embeddings[0].num_embeddings if embeddings else 0


def settings_hash(settings: TrainSettings, data_sha256: str) -> str:
    """Key of a checkpoint: resume only with the same settings and the same training data."""
    payload = json.dumps({"settings": settings.model_dump(mode="json"), "data": data_sha256}, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def model_card(variant: str, settings: TrainSettings, spec: ModelSpec, model: nn.Module, result: TrainResult,
               data_sha256: str) -> dict[str, Any]:
    dp = result.dp
    return {
        "variant": variant,
        "arch": spec.arch,
        "parameters": count_parameters(model),
        "trainable_parameters": result.trainable_parameters or count_parameters(model),
        "lora": result.lora,  # LoRA settings and counts; the saved weights are merged (training.lora)
        "vocab_size": spec.vocab_size,
        "tokenizer": settings.tokenizer.kind,
        "context": spec.context,
        "training_data_sha256": data_sha256,
        "dp": None if dp is None else {
            "noise_multiplier": dp.noise_multiplier, "max_grad_norm": dp.max_grad_norm,
            "sample_rate": dp.sample_rate, "delta": dp.delta, "accountant": dp.accountant,
            "epsilon": result.epsilon, "steps": result.steps,
            "privacy_unit": PRIVACY_UNIT.format(context=spec.context),
            "secure_noise": settings.dp.secure_noise,
            "noise_seed_source": "os.urandom" if settings.dp.secure_noise else "train.seed",
            "noise_secrecy": noise_secrecy(settings),
        },
        "test_loss_nats_per_token": result.test_loss,
        "test_perplexity": result.test_perplexity,
        "settings": settings.model_dump(mode="json"),
    }


def train_report(variant: str, result: TrainResult, parameters: int,
                 settings: TrainSettings | None = None) -> dict[str, Any]:
    """reports/train/V.json: final metrics (losses in nats/token; times in s; memory in bytes).

    With ``settings`` and DP: ``secure_noise`` and ``noise_secrecy`` (the sentence stating what
    epsilon assumes about the noise seed) as well.
    """
    dp = result.dp
    extra: dict[str, Any] = {}
    if settings is not None and dp is not None:
        extra = {"secure_noise": settings.dp.secure_noise, "noise_secrecy": noise_secrecy(settings)}
    return {
        **extra,
        "variant": variant,
        "parameters": parameters,
        "trainable_parameters": result.trainable_parameters or parameters,
        "lora": result.lora,
        "test_loss": result.test_loss,
        "test_perplexity": result.test_perplexity,
        "valid_loss": result.history[-1].valid_loss if result.history else math.nan,
        "epsilon": result.epsilon,
        "delta": dp.delta if dp else None,
        "noise_multiplier": dp.noise_multiplier if dp else None,
        "steps": result.steps,
        "epochs": result.epochs_run,
        "stopped_early": result.stopped_early,
        "train_seconds": result.train_seconds,
        "tokens_per_second": result.tokens_per_second,
        "peak_memory_bytes": result.peak_memory_bytes,
        "resumed_from_epoch": result.resumed_from_epoch,
    }


def loss_series(result: TrainResult) -> list[dict[str, Any]]:
    return [asdict(h) for h in result.history]
