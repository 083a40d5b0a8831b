"""Names every part of the orchestration shares: workspace paths and the log callback."""

from __future__ import annotations

from collections.abc import Callable

LogFn = Callable[[str], None]

STATE_DIR = ".canaryaudit"
LOCK_FILE = f"{STATE_DIR}/repro.lock"
GATE_FILE = "reports/gate.json"
REPORT_FILE = "reports/index.html"
SWEEPS_DIR = f"{STATE_DIR}/sweeps"


def no_log(_message: str) -> None:
    return None


