"""Offline-by-default environment, set in one place before heavy libraries import.

Why: the audit machines reach only package registries, and several of our
dependencies phone home (analytics) or try a hub at import or first use. Every
value is a default (``setdefault``): a user who exports a variable wins.
"""

from __future__ import annotations

import os
from pathlib import Path

#: Files whose presence marks the root of a canaryaudit workspace.
_ROOT_MARKERS = ("dvc.yaml", "params.yaml", ".dvc")


def find_workspace_root(start: Path | None = None) -> Path:
    """Nearest ancestor of ``start`` (default: the cwd) that holds a root marker, else ``start``."""
    here = (start or Path.cwd()).resolve()
    for candidate in (here, *here.parents):
        if any((candidate / marker).exists() for marker in _ROOT_MARKERS):
            return candidate
    return here


def offline_defaults(root: Path) -> dict[str, str]:
    """The environment defaults of DESIGN.md ("Conventions"), for a workspace at ``root``."""
    return {
        "PREFECT_HOME": str(root / ".prefect"),
        "PREFECT_SERVER_EPHEMERAL_ENABLED": "true",
        "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "DO_NOT_TRACK": "1",
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "DVC_NO_ANALYTICS": "1",
        "HF_HUB_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
    }


def apply_offline_defaults(root: Path | None = None) -> dict[str, str]:
    """Set each default that the environment does not already define; return what was set."""
    applied: dict[str, str] = {}
    for key, value in offline_defaults(root or find_workspace_root()).items():
        if key not in os.environ:
            os.environ[key] = value
            applied[key] = value
    return applied
