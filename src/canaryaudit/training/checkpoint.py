"""Epoch checkpoints for resume: weights, optimizer state, RNG and accountant, in safetensors + JSON.

Layout under the checkpoint folder: ``ckpt-EEEE/{state.safetensors,state.json}``
and ``latest.json`` naming the newest complete one (written last, atomically,
so an interrupted save is never resumed from).
"""

from __future__ import annotations

import json
import logging
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from canaryaudit.errors import DataError, OutputError
from canaryaudit.io import atomic_open, read_json

log = logging.getLogger("canaryaudit.train")


@dataclass
class Checkpoint:
    epoch: int  # last completed epoch (1-based)
    tensors: dict[str, torch.Tensor]  # "model.*", "opt.*", "rng.*"
    meta: dict[str, Any]  # JSON-able: step counters, history, optimizer groups, accountant history, key


def split_optimizer_state(state: dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Tensors of an optimizer state_dict (as 'opt.PID.NAME') and the JSON-able rest."""
    tensors: dict[str, torch.Tensor] = {}
    rest: dict[str, Any] = {"param_groups": state["param_groups"], "state": {}}
    for pid, entries in state["state"].items():
        rest["state"][str(pid)] = {}
        for name, value in entries.items():
            if torch.is_tensor(value):
                tensors[f"opt.{pid}.{name}"] = value.detach().cpu().contiguous()
            else:
                rest["state"][str(pid)][name] = value
    return tensors, rest


def join_optimizer_state(tensors: dict[str, torch.Tensor], rest: dict[str, Any]) -> dict[str, Any]:
    state: dict[int, dict[str, Any]] = {int(pid): dict(entries) for pid, entries in rest["state"].items()}
    for key, value in tensors.items():
        if key.startswith("opt."):
            _, pid, name = key.split(".", 2)
            state.setdefault(int(pid), {})[name] = value
    return {"state": state, "param_groups": rest["param_groups"]}


def save_checkpoint(folder: Path, checkpoint: Checkpoint) -> Path:
    """Write the checkpoint, then point latest.json at it; a failed write (disk full) removes the
    incomplete checkpoint, keeps the previous one and raises OutputError."""
    target = folder / f"ckpt-{checkpoint.epoch:04d}"
    if target.exists():
        shutil.rmtree(target)
    try:
        target.mkdir(parents=True)
        save_file({k: v.contiguous() for k, v in checkpoint.tensors.items()}, str(target / "state.safetensors"))
        with atomic_open(target / "state.json") as handle:
            json.dump({"epoch": checkpoint.epoch, **checkpoint.meta}, handle)
    except (OSError, SafetensorError) as exc:
        shutil.rmtree(target, ignore_errors=True)
        raise OutputError(target, str(exc)) from None
    try:
        with atomic_open(folder / "latest.json") as handle:
            json.dump({"path": target.name, "epoch": checkpoint.epoch, "key": checkpoint.meta.get("key")}, handle)
    except OSError as exc:
        shutil.rmtree(target, ignore_errors=True)
        raise OutputError(folder / "latest.json", str(exc)) from None
    for old in folder.glob("ckpt-*"):
        if old != target:
            shutil.rmtree(old, ignore_errors=True)
    return target


def load_checkpoint(folder: Path, key: str) -> Checkpoint | None:
    """The newest complete checkpoint saved under the same ``key`` (settings + data), else None."""
    latest = folder / "latest.json"
    if not latest.exists():
        return None
    try:
        pointer = read_json(latest)
        if not isinstance(pointer, dict) or pointer.get("key") != key:
            return None
        target = folder / str(pointer["path"])
        meta = read_json(target / "state.json")
        tensors = load_file(str(target / "state.safetensors"))
        return Checkpoint(int(meta.pop("epoch")), tensors, meta)
    except (DataError, SafetensorError, OSError, KeyError, TypeError, ValueError) as exc:
        # A checkpoint is only a shortcut: an unreadable one is skipped, and training starts over.
        log.warning("ignoring the unreadable checkpoint in %s (%s); training from the start", folder, exc)
        return None


def clear_checkpoints(folder: Path) -> None:
    shutil.rmtree(folder, ignore_errors=True)
