"""LoRA fine-tuning through ``peft``: apply adapters, count what trains, merge, save the adapter.

``apply_lora`` freezes every base weight and adds trainable low-rank adapters (A: r x in, B: out x r,
B zero at start, update scaled by alpha / r) to the named linear layers of a ``CausalLM``'s
transformers model. Under DP-SGD only the trainable parameters get per-sample gradients, clipping
and noise (the optimizer and Opacus see nothing else); epsilon keeps its meaning (it depends on
sigma, the sample rate and the steps only).

The pipeline always merges after training (``merge_lora``: W + (alpha / r) B A, then the plain
architecture again), so every later stage loads an ordinary causal LM. The adapter alone is also
kept (``lora_adapter`` before the merge, ``save_adapter``) in the peft format, for use with the
base model it was trained on: ``PeftModel.from_pretrained(base, "models/V/adapter")``. It goes in
a subfolder on purpose: transformers' ``from_pretrained`` of a folder holding ``config.json`` *and*
``adapter_config.json`` loads that folder's (already merged) weights and applies the adapter again.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from canaryaudit.config import LoraParams
from canaryaudit.errors import OutputError, ParamsError
from canaryaudit.io import atomic_open

ADAPTER_FOLDER = "adapter"  # models/V/adapter/{adapter_model.safetensors, adapter_config.json}


@dataclass(frozen=True)
class LoraAdapter:
    """The trained adapter of a LoRA model, taken before the merge (tensors on CPU)."""

    tensors: dict[str, torch.Tensor]  # peft's key names, e.g. base_model.model.transformer.h.0.attn.c_attn.lora_A.weight
    config: dict[str, Any]  # peft's adapter_config.json


def _inner(model: nn.Module) -> nn.Module:
    """The transformers model inside our ``CausalLM`` wrapper (or ``model`` itself)."""
    return getattr(model, "model", model)


def is_lora(model: nn.Module) -> bool:
    if "peft" not in sys.modules:  # no adapter can exist yet; spares plain runs importing peft
        return False
    from peft import PeftModel

    return isinstance(_inner(model), PeftModel)


def trainable_parameters(model: nn.Module) -> int:
    """Number of parameters with ``requires_grad`` (those the optimizer and DP-SGD update)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def linear_module_names(model: nn.Module) -> list[str]:
    """Distinct last name components of the model's ``nn.Linear`` layers, sorted (e.g. c_attn, c_fc, lm_head).

    In a model with adapters, an adapted layer counts under its own name (not peft's base_layer,
    lora_A, lora_B).
    """
    names = set()
    for name, mod in _inner(model).named_modules():
        parts = name.split(".")
        if not isinstance(mod, nn.Linear) or {"lora_A", "lora_B"} & set(parts):
            continue
        if parts[-1] == "base_layer":
            parts = parts[:-1]
        names.add(parts[-1])
    return sorted(names)


def _matches(module_name: str, target: str) -> bool:
    """peft's rule for a list of target names: the full dotted name, or its tail after a '.'."""
    return module_name == target or module_name.endswith("." + target)


def default_targets(model_type: str) -> tuple[str, ...] | None:
    """peft's default LoRA targets for a transformers ``model_type`` (the attention projections), or None.

    gpt2: c_attn (a Linear here: ``CausalLM`` turns GPT-2's Conv1D into nn.Linear); gpt_neox:
    query_key_value; llama, mistral, qwen2 and most others: q_proj, v_proj.
    """
    from peft.utils.constants import TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING as DEFAULTS

    targets = DEFAULTS.get(model_type)
    return tuple(targets) if targets else None


def resolve_targets(model: nn.Module, params: LoraParams, key: str = "train") -> tuple[str, ...]:
    """The target module names for ``model``: ``params.target_modules`` or the architecture's default.

    Each must name at least one ``nn.Linear`` of the model (per-sample gradients of LoRA on other
    layer types are not supported by Opacus); otherwise ParamsError naming
    ``{key}.lora.target_modules`` and listing the model's linear layer names.
    """
    inner = _inner(model)
    named = dict(inner.named_modules())
    linears = linear_module_names(model)
    owners: dict[int, list[str]] = {}  # parameter id -> the modules holding it (more than one: tied)
    for name, mod in named.items():
        for p in mod.parameters(recurse=False):
            owners.setdefault(id(p), []).append(name)
    model_type = str(getattr(getattr(inner, "config", None), "model_type", "") or "")
    if params.target_modules is None:
        targets = default_targets(model_type)
        if targets is None:
            raise ParamsError(f"{key}.lora.target_modules: no default for model type {model_type or type(inner).__name__!r}; "
                              f"name the layers to adapt, from the model's linear layers: {', '.join(linears)}")
        origin = f"the default for {model_type}"
    else:
        targets, origin = tuple(params.target_modules), "given"
    for target in targets:
        hits = [mod for name, mod in named.items() if name and _matches(name, target)]
        if not hits:
            raise ParamsError(f"{key}.lora.target_modules: {target!r} ({origin}) names no layer of this model; "
                              f"its linear layers are: {', '.join(linears)}")
        other = sorted({type(mod).__name__ for mod in hits if not isinstance(mod, nn.Linear)})
        if other:
            raise ParamsError(f"{key}.lora.target_modules: {target!r} names {', '.join(other)} layers; LoRA here "
                              f"adapts nn.Linear layers only: {', '.join(linears)}")
        for mod in hits:
            sharing = owners.get(id(mod.weight), [])
            if len(sharing) > 1:  # merging W + BA into a tied weight would change the other layer too
                others = ", ".join(n for n in sharing if named[n] is not mod)
                raise ParamsError(f"{key}.lora.target_modules: {target!r} shares its weight with {others} (tied "
                                  "weights), so its adapter cannot be merged; adapt other layers")
    return targets


def apply_lora(model: nn.Module, params: LoraParams, key: str = "train") -> nn.Module:
    """Freeze ``model`` (a ``CausalLM``) and add LoRA adapters to its target layers; returns ``model``.

    The adapters' A matrices are initialised from torch's global RNG (seed it first), B with zeros,
    so the adapted model starts as the base model.
    """
    from peft import LoraConfig, get_peft_model

    if is_lora(model):
        raise ValueError("apply_lora: the model already has LoRA adapters")
    inner = _inner(model)
    if inner is model:
        raise ParamsError(f"{key}.lora.enabled: LoRA needs a transformers model (model.arch gpt2 or hf:PATH)")
    targets = resolve_targets(model, params, key)
    config = LoraConfig(r=params.r, lora_alpha=params.alpha, lora_dropout=params.dropout,
                        target_modules=list(targets), bias="none", task_type="CAUSAL_LM")
    model.model = get_peft_model(inner, config)  # freezes every base parameter
    return model


def _conv1d_targets(peft_model, targets: Sequence[str]) -> bool:
    """Whether the stock transformers class of this model has Conv1D (GPT-2 style, weight [in, out]) at the targets.

    Built on the meta device (no memory, no weights). Our ``CausalLM`` replaced those Conv1D by
    nn.Linear, but the saved adapter is for the stock class, where peft needs ``fan_in_fan_out``.
    """
    from transformers import AutoModelForCausalLM
    from transformers.pytorch_utils import Conv1D

    config = peft_model.get_base_model().config
    try:
        with torch.device("meta"):
            stock = AutoModelForCausalLM.from_config(config)
    except (ValueError, KeyError, TypeError):
        return False
    return any(isinstance(mod, Conv1D) for name, mod in stock.named_modules()
               if any(_matches(name, t) for t in targets))


def lora_adapter(model: nn.Module, base_model: str | None = None) -> LoraAdapter:
    """The adapter tensors and peft config of a LoRA ``model`` (call before ``merge_lora``).

    ``base_model`` (the hf:PATH the adapter was trained on) is recorded as ``base_model_name_or_path``.
    """
    from peft import get_peft_model_state_dict

    peft_model = _inner(model)
    if not is_lora(model):
        raise ValueError("lora_adapter: the model has no LoRA adapters")
    tensors = {k: v.detach().cpu().contiguous().clone() for k, v in get_peft_model_state_dict(peft_model).items()}
    config = peft_model.peft_config["default"].to_dict()
    targets = sorted(config.get("target_modules") or [])
    config.update(
        target_modules=targets, base_model_name_or_path=base_model, inference_mode=True,
        fan_in_fan_out=_conv1d_targets(peft_model, targets),
    )
    return LoraAdapter(tensors, json.loads(json.dumps(config, default=str)))


def merge_lora(model: nn.Module) -> nn.Module:
    """Fold the adapters into the base weights (W + (alpha / r) B A) and drop them; returns ``model``.

    The result has the plain architecture and state-dict keys of the base model again, with every
    parameter trainable, as if it had been fine-tuned in full.
    """
    if not is_lora(model):
        return model
    merged = _inner(model).merge_and_unload()
    for p in merged.parameters():
        p.requires_grad_(True)
    model.model = merged
    return model


def save_adapter(adapter: LoraAdapter, folder: Path) -> Path:
    """Write ``folder/adapter/adapter_model.safetensors`` and ``adapter_config.json`` (peft's format); returns the subfolder.

    A failed write raises OutputError naming the file.
    """
    from safetensors import SafetensorError
    from safetensors.torch import save_file

    out = folder / ADAPTER_FOLDER
    out.mkdir(parents=True, exist_ok=True)
    target = out / "adapter_model.safetensors"
    tmp = out / ".adapter_model.safetensors.tmp"
    try:
        save_file(adapter.tensors, str(tmp), metadata={"format": "pt"})
        tmp.replace(target)
    except (OSError, SafetensorError) as exc:
        tmp.unlink(missing_ok=True)
        raise OutputError(target, str(exc)) from None
    with atomic_open(out / "adapter_config.json") as handle:
        json.dump(adapter.config, handle, indent=2, sort_keys=True)
    return out


def lora_summary(params: LoraParams, adapter: LoraAdapter | None, trainable: int, total: int) -> dict[str, Any]:
    """What the model card and train report record about a LoRA run."""
    return {
        "r": params.r, "alpha": params.alpha, "dropout": params.dropout,
        "target_modules": list(adapter.config["target_modules"]) if adapter else params.target_modules,
        "trainable_parameters": trainable, "total_parameters": total,
        "merged": True, "adapter_folder": ADAPTER_FOLDER if adapter and adapter.config.get("base_model_name_or_path") else None,
    }
