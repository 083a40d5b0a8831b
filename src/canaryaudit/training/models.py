"""Language models, registered by ``train.model.arch``: gpt2, lstm, hf:PATH.

Every model maps token ids [B, T] to next-token logits [B, T, V]. Weights are
saved and loaded as safetensors, never pickled.
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_model, save_model
from torch import nn

from canaryaudit.errors import DataError, OutputError, ParamsError
from canaryaudit.io import atomic_open, read_json
from canaryaudit.registry import Registry


@dataclass(frozen=True)
class ModelSpec:
    """Everything needed to rebuild a model's architecture (saved as model_config.json)."""

    arch: str  # "gpt2", "lstm" or "hf:PATH"
    vocab_size: int
    layers: int = 2
    width: int = 128  # gpt2: embedding width; lstm: units per layer
    heads: int = 4
    context: int = 64  # tokens per training sequence
    dropout: float = 0.0
    dp_layers: bool = False  # lstm: use opacus.layers.DPLSTM (needed under DP-SGD)
    hf_config: dict[str, Any] = field(default_factory=dict)  # hf: the pretrained model's config


def _conv1d_to_linear(module: nn.Module) -> None:
    """Replace transformers' Conv1D by the equivalent nn.Linear (weight transposed).

    Why: Opacus has a fast per-sample-gradient rule for nn.Linear but falls back
    to a slower generic path for Conv1D; measured on 2 CPU cores this brings the
    DP step overhead of the default GPT-2 from 1.85x to 1.5x. The function is the
    same: Conv1D computes x @ W + b with W of shape [in, out].
    """
    from transformers.pytorch_utils import Conv1D

    for name, child in module.named_children():
        if isinstance(child, Conv1D):
            n_in, n_out = child.weight.shape
            linear = nn.Linear(n_in, n_out)
            with torch.no_grad():
                linear.weight.copy_(child.weight.t())
                linear.bias.copy_(child.bias)
            setattr(module, name, linear)
        else:
            _conv1d_to_linear(child)


class CausalLM(nn.Module):
    """Wraps a transformers causal LM: explicit [B, T] position ids (Opacus needs them), logits out."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        _conv1d_to_linear(model)
        self.model = model
        self._takes_positions = "position_ids" in inspect.signature(model.forward).parameters

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        kwargs: dict[str, Any] = {"input_ids": input_ids, "use_cache": False}
        if self._takes_positions:
            batch, length = input_ids.shape
            kwargs["position_ids"] = torch.arange(length, device=input_ids.device).unsqueeze(0).expand(batch, length)
        return self.model(**kwargs).logits


class CharLSTM(nn.Module):
    """The Secret Sharer's character-level LSTM: embedding, stacked LSTM, linear head."""

    def __init__(self, vocab_size: int, units: int, layers: int, dropout: float, dp_layers: bool) -> None:
        super().__init__()
        from opacus.layers import DPLSTM

        self.embed = nn.Embedding(vocab_size, units)
        lstm_cls = DPLSTM if dp_layers else nn.LSTM  # nn.LSTM's fused kernel has no per-sample gradients
        self.lstm = lstm_cls(units, units, num_layers=layers, batch_first=True, dropout=dropout if layers > 1 else 0.0)
        self.head = nn.Linear(units, vocab_size)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        hidden, _ = self.lstm(self.embed(input_ids))
        return self.head(hidden)


def check_spec(spec: ModelSpec) -> None:
    """What building ``spec`` would refuse, without building it (``params check`` refuses it first)."""
    if arch_family(spec.arch) == "gpt2" and spec.width % spec.heads:
        raise ParamsError(f"train.model.width ({spec.width}) must be a multiple of train.model.heads ({spec.heads})")


def _gpt2(spec: ModelSpec) -> nn.Module:
    from transformers import GPT2Config, GPT2LMHeadModel

    check_spec(spec)
    config = GPT2Config(
        vocab_size=spec.vocab_size, n_positions=spec.context, n_embd=spec.width, n_layer=spec.layers,
        n_head=spec.heads, resid_pdrop=spec.dropout, embd_pdrop=spec.dropout, attn_pdrop=spec.dropout,
        bos_token_id=0, eos_token_id=0,
    )
    return CausalLM(GPT2LMHeadModel(config))


def _lstm(spec: ModelSpec) -> nn.Module:
    return CharLSTM(spec.vocab_size, spec.width, spec.layers, spec.dropout, spec.dp_layers)


def _hf_from_config(spec: ModelSpec) -> nn.Module:
    from transformers import AutoConfig, AutoModelForCausalLM

    config_dict = dict(spec.hf_config)
    model_type = config_dict.pop("model_type")
    config = AutoConfig.for_model(model_type, **config_dict)
    return CausalLM(AutoModelForCausalLM.from_config(config))


ARCHS: Registry[Callable[[ModelSpec], nn.Module]] = Registry("model arch")
ARCHS.add("gpt2", _gpt2)
ARCHS.add("lstm", _lstm)
ARCHS.add("hf", _hf_from_config)


def arch_family(arch: str) -> str:
    return "hf" if arch.startswith("hf:") else arch


def hf_path(arch: str) -> str | None:
    return arch[3:] if arch.startswith("hf:") else None


def load_pretrained(path: str) -> tuple[nn.Module, dict[str, Any]]:
    """A pretrained causal LM from ``path`` (a local folder, or a hub name when online), safetensors only."""
    from transformers import AutoModelForCausalLM

    local = Path(path)
    if not local.exists() and ("/" not in path or path.startswith((".", "/"))):
        raise ParamsError(f"train.model.arch: hf:{path}: no such folder")
    try:
        model = AutoModelForCausalLM.from_pretrained(path, use_safetensors=True)
    except (OSError, ValueError) as exc:
        raise ParamsError(f"train.model.arch: hf:{path}: could not load a causal LM ({str(exc)[:300]})") from None
    return CausalLM(model), model.config.to_dict()


def build_model(spec: ModelSpec) -> nn.Module:
    """A freshly initialised model of ``spec`` (call under a seeded RNG for determinism)."""
    return ARCHS.get(arch_family(spec.arch))(spec)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def save_model_folder(model: nn.Module, spec: ModelSpec, folder: Path) -> None:
    """Write model.safetensors and model_config.json into ``folder`` (each atomically).

    A failed write (disk full) removes its temporary file and raises OutputError naming the file.
    """
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / ".model.safetensors.tmp"
    try:
        save_model(model, str(tmp))  # handles tied weights (GPT-2 ties the head to the embedding)
        tmp.replace(folder / "model.safetensors")
    except BaseException as exc:
        tmp.unlink(missing_ok=True)
        if isinstance(exc, (OSError, SafetensorError)):
            raise OutputError(folder / "model.safetensors", str(exc)) from None
        raise
    with atomic_open(folder / "model_config.json") as handle:
        json.dump(asdict(spec), handle, indent=2, sort_keys=True)


def _retrain_hint(folder: Path) -> str:
    return f"rerun the train stage that writes {folder} (dvc repro train@{folder.name})"


def load_model_folder(folder: Path, device: str | torch.device = "cpu") -> tuple[nn.Module, ModelSpec]:
    """Rebuild the architecture from model_config.json and load the safetensors weights.

    A missing folder or file, a config that is not a ModelSpec, or weights that are not a complete
    safetensors file of this architecture raise DataError naming the file.
    """
    if not folder.is_dir():
        raise DataError(folder, f"model folder not found; {_retrain_hint(folder)}")
    config = folder / "model_config.json"
    raw = read_json(config)
    try:
        spec = ModelSpec(**raw)
        model = build_model(spec)
    except (TypeError, KeyError, ValueError) as exc:
        raise DataError(config, f"not a canaryaudit model config ({exc}); {_retrain_hint(folder)}") from None
    weights = folder / "model.safetensors"
    if not weights.is_file():
        raise DataError(weights, f"file not found; {_retrain_hint(folder)}")
    try:
        load_model(model, str(weights), device=str(device))
    except SafetensorError as exc:
        raise DataError(weights, f"not a complete safetensors file ({exc}); {_retrain_hint(folder)}") from None
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[-1].strip()[:200]
        raise DataError(weights, f"weights do not fit {config.name} ({first}); {_retrain_hint(folder)}") from None
    return model.to(device).eval(), spec
