"""Shared fixtures: a tiny params file and an isolated MLflow store per test session."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]

TINY_PARAMS = {
    "data": {
        "source": "builtin:emails",
        "seed": 7,
        "min_chars": 20,
        "builtin": {"target_bytes": 20_000},
        "split": {"valid_fraction": 0.1, "test_fraction": 0.1},
    },
    "pretrain": {"source": "builtin:emails", "seed": 5, "target_bytes": 20_000, "epochs": 1},
    "sanitize": {"enabled": True},
    "canaries": {
        "seed": 3,
        "alphabets": {"d": "0123456789"},
        "formats": [
            {"name": "ssn", "template": "my social security number is {d}x3-{d}x2-{d}x4"},
            {"name": "number", "template": "the random number is {d}x9"},
        ],
        "insertions": [1, 2, 5],
        "per_count": 2,
        "audit": {"count": 8, "insertions": 1, "format": "number"},
    },
    "train": {
        "device": "cpu",
        "model": {"arch": "gpt2", "layers": 1, "width": 32, "heads": 2, "context": 32},
        "epochs": 1,
        "batch_size": 16,
        "physical_batch_size": 16,
        "variants": {
            "nonprivate": {},
            "dp": {"dp": {"enabled": True, "noise_multiplier": 1.0}},
            "reference": {"model": {"width": 16}, "init": "scratch"},  # smaller: not the base's shape
        },
    },
    "exposure": {
        "references": 500,
        "batch_size": 256,
        "exact_rank": {"max_estimated_rank": 1000, "max_rows": 20_000},
        "extraction": {"pop_batch": 64, "max_expansions": 2_000},
    },
    "extract": {
        "device": "cpu",
        "reference_variant": "reference",
        "samples_per_strategy": 12,
        "sample_tokens": 40,
        "batch_size": 8,
        "window_tokens": 10,
        "candidates": 6,
        "top_k": 4,
        "min_memorized_chars": 20,
        "membership": {"tokens": 24, "max_samples": 40, "bootstrap": 50},
        "audit": {"guesses_included": 2, "guesses_excluded": 2},
    },
    "gate": {
        "rules": [
            {"check": "exposure", "variant": "dp", "insertions": 5, "max": 20.0},
            {"check": "extracted_canaries", "variant": "dp", "max": 0},
            {"check": "membership_auc", "variant": "dp", "max": 0.9},
        ]
    },
}


@pytest.fixture(scope="session", autouse=True)
def isolated_mlflow(tmp_path_factory: pytest.TempPathFactory) -> str:
    """Every test logs to a throwaway SQLite MLflow store, never the workspace's mlflow.db.

    Tracking is off unless a test asks for it (``mlflow_tracking``): importing MLflow and writing its
    store cost each stage process 3-5 s here, and most tests do not look at what it logged.
    """
    uri = f"sqlite:///{tmp_path_factory.mktemp('mlflow') / 'mlflow.db'}"
    os.environ["MLFLOW_TRACKING_URI"] = uri
    os.environ["CANARYAUDIT_TRACKING"] = "0"
    os.environ.pop("CANARYAUDIT_PARENT_RUN_ID", None)
    return uri


@pytest.fixture
def mlflow_tracking(monkeypatch: pytest.MonkeyPatch, isolated_mlflow: str) -> str:
    """MLflow tracking on (into the session's throwaway store), for a test about what is logged."""
    monkeypatch.setenv("CANARYAUDIT_TRACKING", "1")
    return isolated_mlflow


def write_params(path: Path, params: dict) -> Path:
    path.write_text(yaml.safe_dump(params, sort_keys=False), encoding="utf-8")
    return path


@pytest.fixture
def tiny_params() -> dict:
    import copy

    return copy.deepcopy(TINY_PARAMS)


@pytest.fixture
def workspace(tmp_path: Path, tiny_params: dict) -> Path:
    """A folder laid out like the repo (stage scripts + tiny params.yaml) to run stages in."""
    shutil.copytree(REPO / "stages", tmp_path / "stages")
    write_params(tmp_path / "params.yaml", tiny_params)
    return tmp_path


def run_stage(workspace: Path, stage: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run a stage script as DVC would (fresh interpreter, cwd = workspace)."""
    proc = subprocess.run(
        [sys.executable, f"stages/{stage}.py", *args],
        cwd=workspace,
        capture_output=True,
        text=True,
        timeout=600,
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"stage {stage} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


@pytest.fixture(scope="module")
def one_torch_thread():
    """Tiny models: one thread is faster, and far faster on a busy machine (for a module: usefixtures)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
