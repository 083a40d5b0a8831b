"""Language models, registered by ``train.model.arch``: gpt2, lstm, hf:PATH.

Every model maps token ids [B, T] to next-token logits [B, T, V]. Weights are
saved and loaded as safetensors, never pickled.
"""

from __future__ import annotations

import copy
import inspect
import json
import shutil
from collections.abc import Callable, Sequence
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


def _conv1d_to_linear(module: nn.Module, prefix: str = "") -> list[str]:
    """Replace transformers' Conv1D by the equivalent nn.Linear (weight transposed); returns their names.

    Why: Opacus has a fast per-sample-gradient rule for nn.Linear but falls back
    to a slower generic path for Conv1D; measured on 2 CPU cores this brings the
    DP step overhead of the default GPT-2 from 1.85x to 1.5x. The function is the
    same: Conv1D computes x @ W + b with W of shape [in, out].
    """
    from transformers.pytorch_utils import Conv1D

    converted: list[str] = []
    for name, child in module.named_children():
        if isinstance(child, Conv1D):
            n_in, n_out = child.weight.shape
            linear = nn.Linear(n_in, n_out)
            with torch.no_grad():
                linear.weight.copy_(child.weight.t())
                linear.bias.copy_(child.bias)
            setattr(module, name, linear)
            converted.append(prefix + name)
        else:
            converted += _conv1d_to_linear(child, f"{prefix}{name}.")
    return converted


def _linear_to_conv1d(model: nn.Module, names: Sequence[str]) -> None:
    """Undo :func:`_conv1d_to_linear` for ``names``, so the saved folder is what transformers expects."""
    from transformers.pytorch_utils import Conv1D

    for name in names:
        parent_name, _, child_name = name.rpartition(".")
        parent = model.get_submodule(parent_name)
        linear = getattr(parent, child_name)
        conv = Conv1D(linear.out_features, linear.in_features)
        with torch.no_grad():
            conv.weight.copy_(linear.weight.t())
            conv.bias.copy_(linear.bias)
        setattr(parent, child_name, conv)


class CausalLM(nn.Module):
    """Wraps a transformers causal LM: explicit [B, T] position ids (Opacus needs them), logits out."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.converted = _conv1d_to_linear(model)  # saved back as Conv1D (save_model_folder)
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


def _hf_model_to_save(model: nn.Module) -> nn.Module | None:
    """The transformers model inside ``model`` as transformers saves it (Conv1D restored), or None (lstm)."""
    if not isinstance(model, CausalLM):
        return None
    inner = model.model
    if model.converted:  # a copy: the live model keeps its fast nn.Linear layers
        inner = copy.deepcopy(inner)
        _linear_to_conv1d(inner, model.converted)
    return inner


def _quiet_transformers() -> None:
    """No per-shard progress bars in stage logs: loading and saving a folder takes well under a second."""
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()


def _replace_from(tmp: Path, folder: Path) -> None:
    """Move every file ``tmp`` holds into ``folder`` (each rename is atomic), then remove ``tmp``."""
    for path in sorted(tmp.iterdir()):
        path.replace(folder / path.name)
    tmp.rmdir()


def save_model_folder(model: nn.Module, spec: ModelSpec, folder: Path) -> None:
    """Write the weights (safetensors) and model_config.json into ``folder``.

    A transformers model (gpt2, hf:PATH) is written in the Hugging Face layout (config.json,
    model.safetensors without a wrapper prefix, generation_config.json) so that
    ``AutoModelForCausalLM.from_pretrained(folder)`` loads it; the LSTM has no HF class and keeps
    canaryaudit's own layout. Files are written into a temporary subfolder and renamed in, so a
    failed write (disk full) leaves no half file; it raises OutputError naming the file.
    """
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / ".saving"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        inner = _hf_model_to_save(model)
        if inner is None:
            save_model(model, str(tmp / "model.safetensors"))  # handles tied weights
        else:
            _quiet_transformers()
            inner.save_pretrained(str(tmp), safe_serialization=True)
        _replace_from(tmp, folder)
    except BaseException as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(exc, (OSError, SafetensorError)):
            raise OutputError(folder / "model.safetensors", str(exc)) from None
        raise
    with atomic_open(folder / "model_config.json") as handle:
        json.dump(asdict(spec), handle, indent=2, sort_keys=True)


def _retrain_hint(folder: Path) -> str:
    return f"rerun the train stage that writes {folder} (dvc repro train@{folder.name})"


def model_positions(config: Any) -> int:
    """Positions a transformers config allows (0: the config states no limit)."""
    for name in ("n_positions", "max_position_embeddings", "n_ctx", "seq_length"):
        value = getattr(config, name, None)
        if isinstance(value, int) and value > 0:
            return value
    return 0


def _check_weights_present(folder: Path) -> None:
    """Refuse a folder without safetensors weights, naming what it holds instead."""
    if (folder / "model.safetensors").is_file() or (folder / "model.safetensors.index.json").is_file():
        return
    pickled = sorted(p.name for p in folder.iterdir() if p.suffix in (".bin", ".pt", ".pth", ".ckpt", ".pkl"))
    if pickled:
        raise DataError(folder / pickled[0], "pickle weights are refused (loading a pickle can run any code); "
                        "save the model with save_pretrained(folder, safe_serialization=True) for model.safetensors")
    raise DataError(folder / "model.safetensors", f"file not found; {_retrain_hint(folder)}")


def _load_hf_folder(folder: Path, device: str | torch.device) -> tuple[nn.Module, Any]:
    """A transformers causal LM saved by save_pretrained (safetensors only, never from a hub)."""
    from transformers import AutoConfig, AutoModelForCausalLM

    config_file = folder / "config.json"
    _quiet_transformers()
    try:
        config = AutoConfig.from_pretrained(str(folder), local_files_only=True)
    except (OSError, ValueError, KeyError) as exc:
        raise DataError(config_file, f"not a transformers model config ({str(exc)[:200]})") from None
    _check_weights_present(folder)
    try:
        model = AutoModelForCausalLM.from_pretrained(str(folder), config=config, use_safetensors=True,
                                                     local_files_only=True)
    except SafetensorError as exc:
        raise DataError(folder / "model.safetensors", f"not a complete safetensors file ({exc}); "
                        f"{_retrain_hint(folder)}") from None
    except ValueError as exc:
        if "Unrecognized configuration class" in str(exc):
            raise DataError(config_file, f"model_type {config.model_type!r} is not a causal language model "
                            "(AutoModelForCausalLM has no class for it)") from None
        raise DataError(folder / "model.safetensors", f"cannot be loaded ({str(exc)[:200]})") from None
    except (OSError, RuntimeError) as exc:
        first = str(exc).strip().splitlines()[-1].strip()[:200] if str(exc).strip() else type(exc).__name__
        raise DataError(folder / "model.safetensors", f"weights do not fit config.json ({first}); "
                        f"{_retrain_hint(folder)}") from None
    return CausalLM(model).to(device).eval(), config


def _spec_of_plain_folder(folder: Path, model: nn.Module, config: Any) -> ModelSpec:
    """The spec of a folder saved by transformers alone (a model trained elsewhere)."""
    rows = model.model.get_input_embeddings().weight.shape[0]
    return ModelSpec(arch=f"hf:{folder}", vocab_size=rows, context=model_positions(config),
                     hf_config=config.to_dict())


def _check_spec_matches(spec: ModelSpec, config: Any, model: nn.Module, own: Path) -> None:
    """model_config.json and config.json describe one model; a mismatch means a hand-edited folder."""
    expected = {"vocab_size": model.model.get_input_embeddings().weight.shape[0]}
    if spec.arch == "gpt2":
        expected |= {"width": config.n_embd, "layers": config.n_layer, "heads": config.n_head,
                     "context": config.n_positions}
    wrong = [f"{k} {getattr(spec, k)} vs {v} in config.json" for k, v in expected.items() if getattr(spec, k) != v]
    if wrong:
        raise DataError(own, f"disagrees with config.json ({'; '.join(wrong)}); {_retrain_hint(own.parent)}")


def _read_spec(config: Path) -> ModelSpec:
    raw = read_json(config)
    try:
        spec = ModelSpec(**raw)
        check_spec(spec)
    except (TypeError, KeyError, ValueError, ParamsError) as exc:
        raise DataError(config, f"not a canaryaudit model config ({exc}); {_retrain_hint(config.parent)}") from None
    return spec


def _load_own_layout(folder: Path, spec: ModelSpec, device: str | torch.device) -> nn.Module:
    """canaryaudit's own layout: model_config.json rebuilds the model, model.safetensors holds its state dict."""
    config = folder / "model_config.json"
    try:
        model = build_model(spec)
    except (TypeError, KeyError, ValueError) as exc:
        raise DataError(config, f"not a canaryaudit model config ({exc}); {_retrain_hint(folder)}") from None
    weights = folder / "model.safetensors"
    _check_weights_present(folder)
    try:
        load_model(model, str(weights), device=str(device))
    except SafetensorError as exc:
        raise DataError(weights, f"not a complete safetensors file ({exc}); {_retrain_hint(folder)}") from None
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[-1].strip()[:200]
        raise DataError(weights, f"weights do not fit {config.name} ({first}); {_retrain_hint(folder)}") from None
    return model.to(device).eval()


def load_model_folder(folder: Path, device: str | torch.device = "cpu") -> tuple[nn.Module, ModelSpec]:
    """Load a model folder: the pipeline's own (model_config.json), or any HF causal LM (config.json).

    A folder with config.json is loaded by transformers (safetensors only); model_config.json, when
    present, supplies the spec, else it is read off the HF config. A missing folder or file, a config
    that is not a ModelSpec or not a causal LM, pickle weights, or weights that are not a complete
    safetensors file of this architecture raise DataError naming the file.
    """
    if not folder.is_dir():
        raise DataError(folder, f"model folder not found; {_retrain_hint(folder)}")
    own = folder / "model_config.json"
    spec = _read_spec(own) if own.is_file() else None
    if (folder / "config.json").is_file() and (spec is None or spec.arch != "lstm"):
        model, config = _load_hf_folder(folder, device)
        if spec is None:
            return model, _spec_of_plain_folder(folder, model, config)
        _check_spec_matches(spec, config, model, own)
        return model, spec
    if spec is None:
        raise DataError(own, f"file not found (nor a transformers config.json); {_retrain_hint(folder)}")
    return _load_own_layout(folder, spec, device), spec
