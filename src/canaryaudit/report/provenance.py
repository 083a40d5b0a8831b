"""Provenance of an audit: which code, data, models and settings the report's numbers come from.

Everything is read from the workspace as it is when the report stage runs: the package
version, the git commit and whether the tree has uncommitted changes, the sha256 of every
data split and model file, of params.yaml, and the output hashes DVC recorded in dvc.lock
for each stage. A reviewer recomputes any of them with ``sha256sum`` or ``dvc status``.
Missing pieces are left out (a report built outside a git checkout has no commit).
"""

from __future__ import annotations

import hashlib
import subprocess
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

import yaml

#: Data files hashed, relative to the data folder (those that exist).
DATA_FILES = (
    "raw/train.jsonl", "raw/valid.jsonl", "raw/test.jsonl", "sanitized/train.jsonl", "sanitized/valid.jsonl",
    "sanitized/test.jsonl", "augmented/train.jsonl", "canaries/canaries.jsonl", "public/train.jsonl",
)
MODEL_FILE = "model.safetensors"


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _git(root: Path, *args: str) -> str | None:
    try:
        proc = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return proc.stdout.strip() if proc.returncode == 0 else None


def git_state(root: Path) -> dict[str, Any] | None:
    """{"commit", "dirty"}: dirty = tracked files changed since the commit (DVC outputs are ignored)."""
    commit = _git(root, "rev-parse", "HEAD")
    if commit is None:
        return None
    status = _git(root, "status", "--porcelain", "--untracked-files=no")
    return {"commit": commit, "dirty": bool(status) if status is not None else None}


def dvc_lock_hashes(lock_path: Path) -> dict[str, dict[str, str]]:
    """Stage -> {output path: md5} from dvc.lock (empty when there is none or it is unreadable)."""
    try:
        lock = yaml.safe_load(lock_path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError):
        return {}
    stages = lock.get("stages") if isinstance(lock, dict) else None
    out: dict[str, dict[str, str]] = {}
    for stage, entry in (stages or {}).items():
        outs = entry.get("outs") if isinstance(entry, dict) else None
        hashes = {str(o["path"]): str(o["md5"]) for o in outs or [] if isinstance(o, dict) and "md5" in o}
        if hashes:
            out[str(stage)] = hashes
    return out


def collect_provenance(root: Path, data_dir: Path, models_dir: Path, params_path: Path,
                       models: Sequence[str]) -> dict[str, Any]:
    """The provenance block of the report (and summary.json): see the module docstring."""
    try:
        version = metadata.version("canaryaudit")
    except metadata.PackageNotFoundError:
        version = None
    data = {rel: sha256_file(data_dir / rel) for rel in DATA_FILES if (data_dir / rel).is_file()}
    model_hashes = {name: sha256_file(models_dir / name / MODEL_FILE) for name in models
                    if (models_dir / name / MODEL_FILE).is_file()}
    return {
        "canaryaudit_version": version,
        "git": git_state(root),
        "params_sha256": sha256_file(params_path) if params_path.is_file() else None,
        "data_sha256": data,
        "model_sha256": model_hashes,
        "dvc_lock": dvc_lock_hashes(root / "dvc.lock"),
    }
