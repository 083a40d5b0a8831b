"""Models trained outside the pipeline (``train.external``): checked, fingerprinted, evaluated, copied.

Nothing is trained. The folder must be a Hugging Face causal LM with safetensors weights and a
tokenizer (``models.load_model_folder`` and ``tokenizers.load_tokenizer`` refuse anything else,
naming the file). The copy under ``models/NAME`` is a standard HF folder like every variant's, so
the exposure and extraction stages audit it unchanged. The DP claim (epsilon, delta) is the
user's declaration: it is recorded as such and shown as declared, never as an accountant's.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from canaryaudit.config import ExternalModel
from canaryaudit.errors import DataError, ParamsError
from canaryaudit.training.data import chunk_stream, file_sha256, sequence_dataset, token_stream
from canaryaudit.training.loop import evaluate
from canaryaudit.training.models import ModelSpec, count_parameters, load_model_folder
from canaryaudit.training.tokenizers import Tokenizer, load_tokenizer

DECLARED = ("declared by the user (train.external): canaryaudit did not train this model and cannot verify "
            "the claim; an empirical lower bound above it shows the claim is false")


@dataclass
class ExternalImport:
    """An external model ready to be copied into models/NAME, with what the card and report record."""

    model: nn.Module
    spec: ModelSpec
    tokenizer: Tokenizer
    files: dict[str, str]  # file name -> sha256 of every weight, config and tokenizer file in the folder
    test_loss: float  # nats/token on the test split, windows of spec.context tokens
    test_sequences: int


def fingerprint(folder: Path) -> dict[str, str]:
    """sha256 of each regular file at the top of ``folder`` (weights, config, tokenizer), by name."""
    return {p.name: file_sha256(p) for p in sorted(folder.iterdir()) if p.is_file()}


def scoring_context(external: ExternalModel, default: int, model_positions: int, key: str) -> int:
    """Tokens per window: the declared context (else ``default``), at most the model's positions."""
    wanted = external.context or default
    if external.context is not None and external.context > model_positions:
        raise ParamsError(f"{key}.context: {external.context} tokens, but the model has only {model_positions} "
                          "positions; lower it or leave it null")
    return min(wanted, model_positions)


def load_external(external: ExternalModel, key: str, default_context: int, test_texts: Sequence[str],
                  batch_size: int, device: torch.device) -> ExternalImport:
    """Load and check the folder of ``external``, then measure its test loss (nats/token)."""
    folder = Path(external.path)
    if not folder.is_dir():
        raise ParamsError(f"{key}.path: {folder} is not a folder (a Hugging Face model folder: config.json, "
                          "model.safetensors, tokenizer files)")
    model, spec = load_model_folder(folder, device)
    tokenizer = load_tokenizer(folder, spec.vocab_size, at_most=True)
    spec = replace(spec, context=scoring_context(external, default_context, spec.context, key))
    try:
        test = sequence_dataset(chunk_stream(token_stream(test_texts, tokenizer), spec.context))
    except ValueError as exc:
        raise ParamsError(f"{key}.context: the test split is too small for {spec.context}-token windows: {exc}") from None
    with torch.no_grad():
        loss = evaluate(model, test, batch_size, device)
    if not math.isfinite(loss):
        raise DataError(folder, f"the model's test loss is {loss} (weights corrupt or not a language model)")
    return ExternalImport(model, spec, tokenizer, fingerprint(folder), loss, len(test))


def dp_claim(external: ExternalModel) -> dict[str, Any] | None:
    if external.epsilon is None:
        return None
    return {"epsilon": external.epsilon, "delta": external.delta, "source": DECLARED}


def external_card(name: str, external: ExternalModel, imported: ExternalImport, data_sha: str) -> dict[str, Any]:
    """card.json of an external model: where it came from, its fingerprint and its declared claim."""
    return {
        "variant": name,
        "external": {"path": str(Path(external.path).resolve()), "files_sha256": imported.files},
        "arch": imported.spec.arch,
        "model_type": imported.spec.hf_config.get("model_type"),
        "parameters": count_parameters(imported.model),
        "trainable_parameters": None,
        "vocab_size": imported.spec.vocab_size,
        "tokenizer": getattr(imported.tokenizer, "kind", "pretrained"),
        "context": imported.spec.context,
        "training_data_sha256": data_sha,  # the data the audit assumes it was trained on
        "dp": dp_claim(external),  # None: no DP claim
        "test_loss_nats_per_token": imported.test_loss,
        "test_perplexity": math.exp(imported.test_loss),
    }


def external_report(name: str, external: ExternalModel, imported: ExternalImport) -> dict[str, Any]:
    """reports/train/NAME.json with the fields of a trained variant's report that apply (nats/token)."""
    return {
        "variant": name,
        "external": True,
        "parameters": count_parameters(imported.model),
        "test_loss": imported.test_loss,
        "test_perplexity": math.exp(imported.test_loss),
        "test_sequences": imported.test_sequences,
        "context": imported.spec.context,
        "epsilon": external.epsilon,
        "delta": external.delta,
        "epsilon_declared": external.epsilon is not None,
        "dp_claim": DECLARED if external.epsilon is not None else None,
    }
