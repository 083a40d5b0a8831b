"""Running DVC: the ``dvc`` executable, the stage environment, and failures classified for retries."""

from __future__ import annotations

import collections
import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from canaryaudit.errors import CanaryAuditError
from canaryaudit.orchestration.common import LogFn, no_log
from canaryaudit.stagekit import EXIT_INTERRUPTED, EXIT_USER_ERROR


def dvc_executable() -> str:
    """The ``dvc`` next to this interpreter (the project venv), else the one on PATH."""
    beside = Path(sys.executable).with_name("dvc")
    return str(beside) if beside.exists() else (shutil.which("dvc") or "dvc")


def repro_passthrough(root: Path, targets: Sequence[str] = (), parent_run_id: str | None = None) -> int:
    """``dvc repro [TARGETS]`` in ``root`` with its output on this terminal (``canaryaudit audit``); its exit code.

    The same executable and stage environment as the flows' :func:`run_dvc`; the caller holds the
    workspace lock.
    """
    return subprocess.call([dvc_executable(), "repro", *targets], cwd=root, env=stage_env(parent_run_id))


def stage_env(parent_run_id: str | None = None, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment for stage commands: this interpreter's ``python`` first, the MLflow parent run."""
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["PYTHONUNBUFFERED"] = "1"  # stage logs reach the flow's log as they happen
    if parent_run_id:
        env["CANARYAUDIT_PARENT_RUN_ID"] = parent_run_id
    env.update(extra or {})
    return env


class StageFailed(CanaryAuditError):
    """A ``dvc repro`` of one stage (or of a sweep point) failed.

    ``kind``: ``validation`` (stage exit 2: params or input data at fault),
    ``interrupted`` (exit 130 or SIGINT), ``pipeline`` (DVC refused: missing
    dependency, invalid dvc.yaml, ...), ``transient`` (anything else: a crash or a
    kill; also DVC's lock timeout). Only ``transient`` is retried.
    """

    retryable = False

    def __init__(self, stage: str, kind: str, exit_code: int | None, dvc_code: int, tail: str) -> None:
        what = f"exited with {exit_code}" if exit_code is not None else f"dvc failed (exit {dvc_code})"
        hint = {
            "validation": "a params or input-data error: fix it, no retry",
            "interrupted": "interrupted, no retry",
            "pipeline": "DVC could not run the stage, no retry",
            "transient": "transient, retried if retries are left",
        }[kind]
        super().__init__(f"stage {stage} {what} ({hint})\n{tail}")
        self.stage, self.kind, self.exit_code, self.dvc_code, self.tail = stage, kind, exit_code, dvc_code, tail


class StageValidationError(StageFailed):
    """Stage exit 2, an interrupt, or DVC refusing the stage: retrying cannot help."""


class StageTransientError(StageFailed):
    """A crash or kill: worth retrying."""

    retryable = True


_EXITED = re.compile(r"exited with (-?\d+)\s*$")


def classify_failure(dvc_code: int, output: str) -> tuple[str, int | None]:
    """(kind, stage exit code or None) of a failed ``dvc repro``, from its output."""
    exit_code = None
    for line in reversed(output.splitlines()):
        if line.startswith("ERROR:"):
            match = _EXITED.search(line)
            if match:
                exit_code = int(match.group(1))
            break
    if exit_code is not None:
        if exit_code == EXIT_USER_ERROR:
            return "validation", exit_code
        if exit_code in (EXIT_INTERRUPTED, -2):
            return "interrupted", exit_code
        return "transient", exit_code
    if "Unable to acquire lock" in output or "is busy" in output:
        return "transient", None
    return "pipeline", None


@dataclass
class StageRun:
    stage: str
    ran: bool  # False: DVC found it up to date
    seconds: float
    status: str = ""  # ran | up-to-date

    def __post_init__(self) -> None:
        self.status = "ran" if self.ran else "up-to-date"


def run_dvc(
    root: Path,
    args: Sequence[str],
    label: str,
    env: Mapping[str, str] | None = None,
    log: LogFn = no_log,
) -> StageRun:
    """Run ``dvc ARGS`` in ``root``, streaming its output to ``log``; raise :class:`StageFailed`."""
    started = time.perf_counter()
    tail: collections.deque[str] = collections.deque(maxlen=40)
    ran = False
    proc = subprocess.Popen(
        [dvc_executable(), *args],
        cwd=root,
        env=dict(env) if env is not None else stage_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        errors="replace",
    )
    assert proc.stdout is not None
    try:
        for raw in proc.stdout:
            line = raw.rstrip("\n")
            if not line.strip():
                continue
            tail.append(line)
            ran = ran or line.startswith("Running stage ")
            log(line)
        code = proc.wait()
    except BaseException:  # Ctrl-C or a cancelled flow: do not leave DVC running
        proc.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=30)
        raise
    if code != 0:
        text = "\n".join(tail)
        kind, exit_code = classify_failure(code, text)
        cls = StageTransientError if kind == "transient" else StageValidationError
        raise cls(label, kind, exit_code, code, text)
    return StageRun(label, ran, time.perf_counter() - started)


def repro_stage(root: Path, stage: str, env: Mapping[str, str] | None = None, log: LogFn = no_log) -> StageRun:
    """``dvc repro --single-item STAGE``: this stage only (its upstream ran before it)."""
    return run_dvc(root, ["repro", "--single-item", stage], stage, env, log)


#: What `dvc status` reports that makes a stage's outputs stale: its inputs or code changed, or an
#: output was edited. A deleted or uncached output (a CI checkout with only the committed reports)
#: says nothing about the reports themselves.
_STALE_KINDS = ("changed deps", "changed command")


def stale_stages(root: Path, timeout: float = 300.0) -> tuple[list[str] | None, str | None]:
    """(stages whose outputs are out of date, with what changed; None when unknown), why unknown.

    Asks ``dvc status --json`` in ``root``. The report stage is left out: the gate reads the stage
    reports, not its outputs, and any params edit (gate.rules included) makes it out of date.
    """
    if not (root / "dvc.yaml").is_file():
        return None, f"no dvc.yaml in {root}"
    try:
        proc = subprocess.run([dvc_executable(), "status", "--json"], cwd=root, capture_output=True, text=True, timeout=timeout,
                              env={**os.environ, "DVC_NO_ANALYTICS": "1"})
        status = json.loads(proc.stdout or "{}") if proc.returncode == 0 else None
    except (OSError, subprocess.TimeoutExpired, ValueError) as exc:
        return None, f"dvc status failed ({exc})"
    if not isinstance(status, dict):
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or [f"exit {proc.returncode}"]
        return None, f"dvc status failed ({tail[0][:200]})"
    stale = []
    for stage, entries in status.items():
        if stage == "report" or not isinstance(entries, list):
            continue
        changed: list[str] = []
        for entry in entries:
            if not isinstance(entry, dict):
                continue
            for kind in _STALE_KINDS:
                if kind in entry:
                    detail = entry[kind]
                    changed.extend(detail if isinstance(detail, dict) else [kind.removeprefix("changed ")])
            outs = entry.get("changed outs")
            if isinstance(outs, dict):
                changed.extend(f"{path} (edited)" for path, what in outs.items() if what == "modified")
        if changed:
            stale.append(f"{stage} ({', '.join(sorted(map(str, changed))[:4])})")
    return stale, None
