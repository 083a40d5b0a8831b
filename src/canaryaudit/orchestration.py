"""What the Prefect flows, ``canaryaudit audit`` and ``canaryaudit schedule`` share.

Nothing here imports Prefect at module level (``cli`` imports this module for the
workspace lock); the flows themselves live in :mod:`canaryaudit.flows`, and
``pipelines/*.py`` are thin command-line entry points to them.

- **Workspace lock**: ``.canaryaudit/repro.lock`` (a :class:`filelock.FileLock`).
  ``canaryaudit audit`` holds it around ``dvc repro``; the audit flow holds it for
  its whole run (params override, every stage, the gate read), so two audits in
  one workspace run one after the other, whichever launched them.
- **Stages** come from DVC (``dvc.repo.Repo(...).index.graph``), in dependency
  order; nothing here knows the stage names.
- **Failures**: a stage exiting with 2 (``stagekit.EXIT_USER_ERROR``: bad params or
  data), a Ctrl-C (130) and DVC's own errors (missing dependency, invalid
  dvc.yaml) are not retried; any other non-zero exit (a crash, a kill by the
  OOM killer, ...) and a DVC lock timeout are transient and retried.
- **Overrides** (``-S key=value``) and another params file are validated, then
  written into the workspace's ``params.yaml`` (``dvc.yaml`` reads that file) by a
  YAML round trip that keeps comments and quoting, and left there, as ``dvc exp run
  -S`` does: ``params.yaml``, ``dvc.lock`` and the reports then agree.
- **Gate**: ``reports/gate.json``, written by whichever stage lists it as an
  output; its absence is reported as such, never as a pass.
- **Sweeps**: a grid of overrides, one workspace copy per point (its source
  dependencies, ``params.yaml`` and DVC config, the DVC cache shared with the
  parent workspace so unchanged stages come from DVC's run-cache), results
  collected into a comparison table and a privacy-utility plot (SVG).
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import csv
import html
import itertools
import json
import math
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from canaryaudit.errors import CanaryAuditError, ParamsError
from canaryaudit.stagekit import EXIT_INTERRUPTED, EXIT_USER_ERROR

LogFn = Callable[[str], None]

STATE_DIR = ".canaryaudit"
LOCK_FILE = f"{STATE_DIR}/repro.lock"
GATE_FILE = "reports/gate.json"
REPORT_FILE = "reports/index.html"
SWEEPS_DIR = f"{STATE_DIR}/sweeps"


def _noop(_message: str) -> None:
    return None


# ===================================================================== workspace lock


def lock_path(root: Path) -> Path:
    """The lock every ``dvc repro`` launched by canaryaudit in ``root`` holds."""
    return Path(root) / LOCK_FILE


@contextlib.contextmanager
def workspace_lock(root: Path, timeout: float | None = None, on_wait: LogFn = _noop, who: str = "") -> Iterator[None]:
    """Hold the workspace lock; call ``on_wait`` once if another run holds it, then wait.

    ``timeout`` (seconds, None: forever) bounds the wait; past it a
    :class:`CanaryAuditError` names the holder. The holder writes who it is to
    ``repro.lock.owner`` for that message.
    """
    from filelock import FileLock, Timeout

    path = lock_path(root)
    path.parent.mkdir(parents=True, exist_ok=True)
    owner = path.with_name(path.name + ".owner")
    lock = FileLock(str(path))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        holder = owner.read_text(encoding="utf-8").strip() if owner.exists() else "another process"
        on_wait(f"waiting for the workspace lock {path} (held by {holder})")
        started = time.monotonic()
        try:
            lock.acquire(timeout=-1 if timeout is None else timeout)
        except Timeout:
            raise CanaryAuditError(
                f"workspace lock {path} still held by {holder} after {timeout:.0f} s; "
                "another audit is running in this workspace"
            ) from None
        on_wait(f"workspace lock acquired after {time.monotonic() - started:.1f} s")
    try:
        owner.write_text(f"pid {os.getpid()}{' ' + who if who else ''} since {time.strftime('%H:%M:%S')}\n", encoding="utf-8")
        yield
    finally:
        with contextlib.suppress(OSError):
            owner.unlink()
        lock.release()


# ===================================================================== running DVC


def dvc_executable() -> str:
    """The ``dvc`` next to this interpreter (the project venv), else the one on PATH."""
    beside = Path(sys.executable).with_name("dvc")
    return str(beside) if beside.exists() else (shutil.which("dvc") or "dvc")


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
    log: LogFn = _noop,
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


def repro_stage(root: Path, stage: str, env: Mapping[str, str] | None = None, log: LogFn = _noop) -> StageRun:
    """``dvc repro --single-item STAGE``: this stage only (its upstream ran before it)."""
    return run_dvc(root, ["repro", "--single-item", stage], stage, env, log)


# ===================================================================== stages


@dataclass(frozen=True)
class Stage:
    name: str  # DVC address, e.g. "prepare", "train@dp"
    group: str  # "train" for "train@dp"
    key: str | None  # "dp" for "train@dp"
    upstream: tuple[str, ...]  # stages whose outputs it reads (direct)
    deps: tuple[str, ...]  # dependency paths, relative to the workspace
    outs: tuple[str, ...]  # outputs, metrics and plots, relative to the workspace


_DVC_API = threading.Lock()  # DVC's Python API is not meant for concurrent use in one process


def list_stages(root: Path) -> list[Stage]:
    """Every pipeline stage of the workspace, upstream first (dvc.yaml order among equals)."""
    import networkx as nx
    from dvc.repo import Repo

    root = Path(root).resolve()
    with _DVC_API, Repo(str(root)) as repo:
        graph = repo.index.graph  # edges: stage -> a stage it depends on
        order = {stage: i for i, stage in enumerate(graph.nodes)}
        runnable = [s for s in graph.nodes if getattr(s, "cmd", None)]

        def rel(path: str) -> str:
            with contextlib.suppress(ValueError):
                return Path(path).resolve().relative_to(root).as_posix()
            return path

        def address(stage: Any) -> str:  # as `dvc repro` in root takes it (stage.addressing is cwd-relative)
            dvcfile = Path(stage.dvcfile.path).resolve()
            return stage.name if dvcfile == root / "dvc.yaml" else f"{rel(str(dvcfile))}:{stage.name}"

        result: dict[Any, Stage] = {}
        for stage in runnable:
            name = address(stage)
            group, _, key = stage.name.partition("@")
            if ":" in name:
                group = name.rpartition("@")[0] if key else name
            result[stage] = Stage(
                name=name,
                group=group,
                key=key or None,
                upstream=tuple(sorted(address(u) for u in graph.successors(stage) if getattr(u, "cmd", None))),
                deps=tuple(rel(str(d.fs_path)) for d in stage.deps),
                outs=tuple(rel(str(o.fs_path)) for o in stage.outs),
            )
        sub = graph.subgraph(runnable).reverse(copy=True)  # edges: upstream -> downstream
        ordered = nx.lexicographical_topological_sort(sub, key=lambda s: f"{order[s]:06d}")
        return [result[s] for s in ordered]


def _ancestors(name: str, by_name: Mapping[str, Stage]) -> set[str]:
    seen: set[str] = set()
    todo = list(by_name[name].upstream)
    while todo:
        current = todo.pop()
        if current not in seen and current in by_name:
            seen.add(current)
            todo.extend(by_name[current].upstream)
    return seen


def select_stages(
    stages: Sequence[Stage],
    targets: Sequence[str] | None = None,
    variants: Sequence[str] | None = None,
    known_variants: Sequence[str] = (),
) -> tuple[list[Stage], dict[str, str]]:
    """The stages to run (in order) and, for the others, why not.

    ``targets`` (stage names, or a foreach group such as ``train``) limit the run to
    them and their upstream stages, as ``dvc repro TARGET`` would. ``variants``
    keeps the ``STAGE@V`` stages of those variants (V among ``known_variants``,
    i.e. ``train.variants``), the stages they depend on (``extract@dp`` needs the
    reference model), and the stages without a variant that depend on no excluded
    variant (``report`` reads every variant, so a subset skips it).
    """
    by_name = {s.name: s for s in stages}
    skipped: dict[str, str] = {}
    if targets:
        wanted: set[str] = set()
        for target in targets:
            matches = [s.name for s in stages if s.name == target or s.group == target]
            if not matches:
                raise CanaryAuditError(
                    f"unknown stage {target!r}; the pipeline's stages: {', '.join(s.name for s in stages)}"
                )
            for match in matches:
                wanted |= {match} | _ancestors(match, by_name)
        for s in stages:
            if s.name not in wanted:
                skipped[s.name] = "not a target or upstream of one"
        base = [s for s in stages if s.name in wanted]
    else:
        base = list(stages)
    if not variants:
        return base, skipped
    unknown = sorted(set(variants) - set(known_variants))
    if unknown:
        raise ParamsError(f"unknown variant(s) {', '.join(unknown)}; train.variants and train.external have: "
                          f"{', '.join(known_variants)}")
    known = set(known_variants)
    is_variant = {s.name: s.key is not None and s.key in known for s in base}
    chosen = {s.name for s in base if is_variant[s.name] and s.key in variants}
    for s in base:
        if not is_variant[s.name]:
            excluded = sorted(a for a in _ancestors(s.name, by_name) if is_variant.get(a) and by_name[a].key not in variants)
            if excluded:
                skipped[s.name] = f"depends on variants outside the subset ({', '.join(excluded)})"
            else:
                chosen.add(s.name)
    for name in list(chosen):
        chosen |= _ancestors(name, by_name)
    for s in base:
        if s.name not in chosen:
            skipped.setdefault(s.name, f"variant {s.key} not in the subset")
    return [s for s in base if s.name in chosen], skipped


def retries_for(stage: Stage, retries: Mapping[str, int] | None, default: int) -> int:
    """Retries for a stage: by exact name (``train@dp``), then group (``train``), then ``default``."""
    retries = retries or {}
    for key in (stage.name, stage.group):
        if key in retries:
            return max(0, int(retries[key]))
    return max(0, int(default))


def parse_retries(items: Sequence[str]) -> dict[str, int]:
    """``["train=3", "exposure@dp=0"]`` -> ``{"train": 3, "exposure@dp": 0}``."""
    out: dict[str, int] = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not value.strip().isdigit():
            raise CanaryAuditError(f"--retries {item!r}: expected STAGE=COUNT, e.g. train=3")
        out[name.strip()] = int(value)
    return out


# ===================================================================== params


def _read_yaml(path: Path) -> Any:
    from canaryaudit.config import _UniqueKeyLoader

    try:
        return yaml.load(path.read_text(encoding="utf-8"), Loader=_UniqueKeyLoader)
    except FileNotFoundError:
        raise ParamsError(f"{path}: params file not found") from None


def resolve_params(root: Path, params_file: str | Path | None, overrides: Sequence[str] = ()) -> dict[str, Any]:
    """Validated params (``params_file`` or the workspace's, then ``overrides``), as a full mapping."""
    from canaryaudit.config import load_params

    source = Path(params_file) if params_file else Path(root) / "params.yaml"
    if not source.is_absolute():
        source = Path(root) / source
    return load_params(source, overrides).model_dump(mode="json")


@contextlib.contextmanager
def applied_params(
    root: Path, params_file: str | Path | None, overrides: Sequence[str] = (), log: LogFn = _noop
) -> Iterator[dict[str, Any]]:
    """Validate the effective params; with a params file or overrides, write them into ``params.yaml``.

    Yields the resolved params. Call under the workspace lock. As with ``dvc exp run -S``, the
    settings stay in ``params.yaml`` after the run, so it matches ``dvc.lock`` and the reports
    (``dvc status`` clean); the file is edited round-trip (:mod:`canaryaudit.params_file`):
    comments, quoting and every other value are kept as written.
    """
    from canaryaudit.params_file import write_settings

    root = Path(root)
    resolved = resolve_params(root, params_file, overrides)
    target = root / "params.yaml"
    source = Path(params_file) if params_file else None
    if source is not None and not source.is_absolute():
        source = root / source
    if source is not None and source.resolve() == target.resolve():
        source = None
    if overrides or source is not None:
        what = ", ".join(overrides)
        if write_settings(target, source, overrides):
            log(f"params.yaml now holds {source or 'its settings'}{' with ' + what if what else ''} "
                "(edited in place, comments kept, as `dvc exp run -S` does)")
    yield resolved


# ===================================================================== gate


@dataclass
class GateVerdict:
    status: str  # passed | failed | missing | skipped
    passed: bool | None
    reason: str
    rules: list[dict[str, Any]] = field(default_factory=list)
    gate_file: str | None = None
    report_file: str | None = None

    @property
    def failed_rules(self) -> list[dict[str, Any]]:
        return [r for r in self.rules if not r.get("passed")]

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "failed_rules": self.failed_rules}

    def log_line(self) -> str:
        if self.status == "failed":
            names = "; ".join(r.get("reason") or r.get("name") or r.get("check", "?") for r in self.failed_rules)
            return f"GATE FAILED: {len(self.failed_rules)} of {len(self.rules)} rules failed: {names} (report: {self.report_file or self.gate_file})"
        if self.status == "passed":
            return f"gate passed: all {len(self.rules)} rules hold ({self.gate_file})"
        return f"gate {self.status}: {self.reason}"


def gate_stage(stages: Sequence[Stage]) -> Stage | None:
    """The stage that writes ``reports/gate.json``, if the pipeline has one."""
    return next((s for s in stages if GATE_FILE in s.outs), None)


def read_gate(root: Path, stages: Sequence[Stage], selected: Sequence[str]) -> GateVerdict:
    """The verdict of this run: reads ``reports/gate.json`` when the stage writing it was part of the run."""
    root = Path(root)
    path = root / GATE_FILE
    report = root / REPORT_FILE
    report_uri = report.resolve().as_uri() if report.exists() else None
    producer = gate_stage(stages)
    if producer is None:
        return GateVerdict("missing", None, f"no gate configured: no stage in dvc.yaml writes {GATE_FILE}")
    if producer.name not in selected:
        return GateVerdict(
            "skipped", None, f"the {producer.name} stage (which writes {GATE_FILE}) was not part of this run"
        )
    if not path.exists():
        return GateVerdict("missing", None, f"{producer.name} ran but {GATE_FILE} is missing")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        rules = list(data.get("rules") or [])
        passed = bool(data["passed"])
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        return GateVerdict("missing", None, f"{GATE_FILE} is not a gate verdict ({exc})", gate_file=str(path))
    if not rules:
        return GateVerdict("missing", None, f"{GATE_FILE} has no rules: no gate configured", gate_file=str(path), report_file=report_uri)
    return GateVerdict(
        "passed" if passed else "failed",
        passed,
        "all rules hold" if passed else f"{sum(not r.get('passed') for r in rules)} rule(s) failed",
        rules,
        str(path),
        report_uri,
    )


def _md_cell(value: Any) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        value = f"{value:.4g}"
    return str(value).replace("|", "\\|").replace("\n", " ")


def gate_markdown(verdict: GateVerdict, workspace: Path, mlflow_run_id: str | None = None) -> str:
    """The failed rules as a markdown table, with links to the report and the verdict file."""
    lines = [
        f"# Privacy gate failed: {len(verdict.failed_rules)} of {len(verdict.rules)} rules",
        "",
        f"Workspace `{workspace}`" + (f", MLflow run `{mlflow_run_id}`" if mlflow_run_id else ""),
        "",
        "| rule | check | variant | value | max | reason |",
        "|---|---|---|---|---|---|",
    ]
    for rule in verdict.failed_rules:
        cells = [rule.get("name"), rule.get("check"), rule.get("variant"), rule.get("value"), rule.get("max"), rule.get("reason")]
        lines.append("| " + " | ".join(_md_cell(c) for c in cells) + " |")
    lines.append("")
    if verdict.report_file:
        lines.append(f"Report: [{verdict.report_file}]({verdict.report_file})  ")
    if verdict.gate_file:
        uri = Path(verdict.gate_file).resolve().as_uri()
        lines.append(f"Verdict: [{uri}]({uri})")
    return "\n".join(lines) + "\n"


# ===================================================================== sweeps


def _split_top_level(text: str) -> list[str]:
    """Split on commas that are not inside [], {} or quotes."""
    parts, depth, quote, current = [], 0, "", []
    for char in text:
        if quote:
            quote = "" if char == quote else quote
        elif char in "\"'":
            quote = char
        elif char in "[{":
            depth += 1
        elif char in "]}":
            depth -= 1
        elif char == "," and depth == 0:
            parts.append("".join(current))
            current = []
            continue
        current.append(char)
    parts.append("".join(current))
    return [p.strip() for p in parts]


def parse_grid(items: Sequence[str]) -> dict[str, list[Any]]:
    """``["train.batch_size=16,32", "train.model.width=32,64"]`` -> a grid (values read as YAML)."""
    from canaryaudit.config import _UniqueKeyLoader

    grid: dict[str, list[Any]] = {}
    for item in items:
        key, sep, values = item.partition("=")
        key = key.strip()
        if not sep or not key or not values.strip():
            raise ParamsError(f"--grid {item!r}: expected KEY=V1,V2,... e.g. train.batch_size=16,32")
        if key in grid:
            raise ParamsError(f"--grid: {key} given twice")
        grid[key] = [yaml.load(v, Loader=_UniqueKeyLoader) for v in _split_top_level(values)]
    return grid


def load_grid_file(path: Path) -> dict[str, list[Any]]:
    """A YAML mapping ``dotted.key: [values...]`` (a scalar is a one-value axis)."""
    raw = _read_yaml(Path(path))
    if not isinstance(raw, Mapping) or not raw:
        raise ParamsError(f"{path}: a grid is a mapping of dotted params keys to lists of values")
    return {str(k): list(v) if isinstance(v, list) else [v] for k, v in raw.items()}


def grid_points(grid: Mapping[str, Sequence[Any]]) -> list[dict[str, Any]]:
    """Every combination, the last key varying fastest."""
    if not grid or any(len(v) == 0 for v in grid.values()):
        raise ParamsError("the sweep grid is empty (every key needs at least one value)")
    keys = list(grid)
    return [dict(zip(keys, combo)) for combo in itertools.product(*(grid[k] for k in keys))]


def point_overrides(point: Mapping[str, Any]) -> list[str]:
    """A grid point as ``-S`` overrides (values as JSON, which is YAML)."""
    return [f"{key}={json.dumps(value)}" for key, value in point.items()]


def point_params(root: Path, params_file: str | Path | None, point: Mapping[str, Any]) -> dict[str, Any]:
    """Validated full params of a point; a relative ``file:`` data source is made absolute.

    The source is checked against this workspace (``data.allow_outside_workspace``) here; the point's
    copy, elsewhere, is then allowed to read it from its absolute path.
    """
    from canaryaudit.config import DataParams
    from canaryaudit.sources import resolve_source_path

    resolved = resolve_params(root, params_file, point_overrides(point))
    source = str(resolved.get("data", {}).get("source", ""))
    if source.startswith("file:"):
        path = resolve_source_path(DataParams.model_validate_json(json.dumps(resolved["data"])), Path(root))
        resolved["data"]["source"] = "file:" + str(path.resolve())
        resolved["data"]["allow_outside_workspace"] = True
        if "dependency" in resolved["data"]:  # the DVC dependency follows the source (checked at load)
            resolved["data"]["dependency"] = str(path.resolve())
    return resolved


def point_params_text(root: Path, params_file: str | Path | None, resolved: Mapping[str, Any]) -> str:
    """The point's ``params.yaml``: the workspace's file (comments, quoting kept) edited to hold ``resolved``.

    Not a fresh dump: PyYAML would write ``"0123456789"`` bare, which DVC (YAML 1.2) reads as a number,
    and the points' params would no longer match the workspace's in DVC's run-cache.
    """
    from canaryaudit.params_file import synced_text

    source = Path(params_file) if params_file else Path(root) / "params.yaml"
    source = source if source.is_absolute() else Path(root) / source
    return synced_text(source.read_text(encoding="utf-8"), resolved, str(source))


def point_label(point: Mapping[str, Any]) -> str:
    """A point named by its settings, each key by its last part: ``noise_multiplier=2.0, batch_size=16``.

    A last part shared by two keys keeps one more part (``dp.enabled`` vs ``lora.enabled``).
    """
    keys = list(point)

    def short(key: str) -> str:
        parts = key.split(".")
        for n in range(1, len(parts) + 1):
            tail = ".".join(parts[-n:])
            if sum(1 for k in keys if k == tail or k.endswith("." + tail)) == 1:
                return tail
        return key

    return ", ".join(f"{short(k)}={v if isinstance(v, str) else json.dumps(v)}" for k, v in point.items())


def source_paths(stages: Sequence[Stage]) -> list[str]:
    """Dependency paths no stage produces (code and inputs a workspace copy needs)."""
    produced = [o for s in stages for o in s.outs]

    def is_produced(path: str) -> bool:
        # a folder holding some stage's output (reports/train) is produced too: copying it would hand a
        # sweep point the parent workspace's reports, numbers the point never computed
        return any(path == o or path.startswith(o.rstrip("/") + "/") or o.startswith(path.rstrip("/") + "/")
                   for o in produced)

    paths: list[str] = []
    for stage in stages:
        for dep in stage.deps:
            outside = Path(dep).is_absolute() or ".." in Path(dep).parts  # e.g. an external model elsewhere
            if not is_produced(dep) and not outside and dep not in paths:
                paths.append(dep)
    return paths


_COPY_IGNORE = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")


def prepare_point_workspace(
    root: Path, dest: Path, params_text: str, stages: Sequence[Stage], share_cache: bool = True
) -> Path:
    """A DVC workspace at ``dest`` that runs the same pipeline with ``params``.

    Copies dvc.yaml, .dvcignore, the DVC config, the stage scripts folder(s) and
    every source dependency; keeps what an earlier sweep left there (so a rerun
    is incremental). With ``share_cache`` the copy uses the parent's DVC cache:
    a stage whose command, dependencies and params match an earlier run anywhere
    (the prepare/sanitize/canaries prefix of every point, usually) is restored
    from DVC's run-cache instead of run again.
    """
    root, dest = Path(root).resolve(), Path(dest).resolve()
    dest.mkdir(parents=True, exist_ok=True)
    paths = ["dvc.yaml", ".dvcignore", ".dvc/config", *source_paths(stages)]
    scripts = {Path(d).parts[0] for s in stages for d in s.deps if d.endswith(".py") and len(Path(d).parts) == 2}
    for rel in [*paths, *sorted(scripts)]:
        src = root / rel
        target = dest / rel
        if not src.exists():
            continue
        if src.is_dir():
            if target.exists():
                shutil.rmtree(target)
            shutil.copytree(src, target, ignore=_COPY_IGNORE)
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, target)
    (dest / ".dvc").mkdir(exist_ok=True)
    local = ["[core]", "    no_scm = true", "    analytics = false"]
    if share_cache:
        local += ["[cache]", f"    dir = {root / '.dvc' / 'cache'}"]
    (dest / ".dvc" / "config.local").write_text("\n".join(local) + "\n", encoding="utf-8")
    (dest / "params.yaml").write_text(params_text, encoding="utf-8")
    return dest


def _num(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def point_results(ws: Path, selected: Sequence[Stage], variants: Sequence[str]) -> dict[str, dict[str, Any]]:
    """Headline numbers per variant of one sweep point, from the reports its selected stages produced.

    The numbers are the report's (:func:`canaryaudit.report.summary.variant_summary`, the same code
    writes summary.json), keyed as there (``max_exposure_bits.x64``). A report the point's stages do
    not produce (a stage outside ``--targets``, a file left by an earlier sweep) is not read.
    """
    from canaryaudit.report.inputs import VARIANT_JSON, load_inputs
    from canaryaudit.report.summary import flat_headline, variant_summary

    produced = {o for stage in selected for o in stage.outs}
    inputs = load_inputs(Path(ws) / "reports", list(variants), parts=VARIANT_JSON)
    for part, pattern in VARIANT_JSON.items():
        found = getattr(inputs, part)
        for variant in list(found):
            if f"reports/{pattern.format(v=variant)}" not in produced:
                del found[variant]
    results = {v: flat_headline(variant_summary(inputs, v)) for v in variants}
    return {v: r for v, r in results.items() if r}


METRIC_ORDER = (
    "test_perplexity", "test_loss", "epsilon", "delta", "extracted_canaries", "unique_memorized", "memorized_pii",
    "memorized_canaries", "best_mia_auc", "best_mia_metric", "empirical_epsilon",
)  # fmt: skip; then max_exposure_bits.* by insertion count, then the rest


def comparison_rows(points: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """One row per (point, variant): the grid values, then the metrics; failed points keep one row."""
    rows: list[dict[str, Any]] = []
    for point in points:
        base = {"point": point["point"], "label": point.get("label") or point_label(point["params"]),
                **{k: point["params"][k] for k in point["params"]}}
        results = point.get("results") or {}
        if not results:
            rows.append({**base, "variant": "", "status": point.get("status", "failed")})
            continue
        for variant, metrics in results.items():
            ordered = {k: metrics[k] for k in METRIC_ORDER if k in metrics}
            ordered.update({k: metrics[k] for k in sorted((k for k in metrics if k.startswith(EXPOSURE_KEY)), key=_by_count)})
            ordered.update({k: v for k, v in metrics.items() if k not in ordered})
            rows.append({**base, "variant": variant, "status": point.get("status", "ok"), **ordered})
    return rows


def _columns(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    columns: list[str] = []
    for row in rows:
        columns.extend(k for k in row if k not in columns)
    return columns


def write_comparison_csv(rows: Sequence[Mapping[str, Any]], path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=_columns(rows))
        writer.writeheader()
        for row in rows:
            writer.writerow({k: ("" if v is None else v) for k, v in row.items()})
    return path


def comparison_markdown(rows: Sequence[Mapping[str, Any]], title: str = "Sweep comparison") -> str:
    columns = _columns(rows)
    lines = [f"# {title}", "", "| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        lines.append("| " + " | ".join(_md_cell(row.get(c, "")) for c in columns) + " |")
    return "\n".join(lines) + "\n"


EXPOSURE_KEY = "max_exposure_bits."


def _by_count(key: str) -> int:
    """Sort key of ``max_exposure_bits.xN`` by N (``held_out`` first)."""
    suffix = key.rpartition(".")[2]
    return int(suffix[1:]) if suffix[1:].isdigit() else -1


def _top_exposure_key(rows: Sequence[Mapping[str, Any]]) -> str | None:
    keys = {k for r in rows for k in r if k.startswith(EXPOSURE_KEY) and _by_count(k) > 0}
    return max(keys, key=_by_count) if keys else None


def privacy_axes(rows: Sequence[Mapping[str, Any]]) -> list[tuple[str, str]]:
    """y axes of the privacy-utility plot, in order of preference (higher = more leakage)."""
    top = _top_exposure_key(rows)
    axes = [(top, f"highest exposure of canaries inserted {top.rpartition('.')[2][1:]} times (bits)")] if top else []
    return axes + [
        ("best_mia_auc", "membership-inference AUC (highest informative metric)"),
        ("empirical_epsilon", "empirical epsilon (lower bound)"),
        ("epsilon", "accountant epsilon"),
    ]


def _spread_labels(ys: list[float], gap: float) -> list[float]:
    """Label positions near ``ys`` at least ``gap`` apart (greedy, in order of y), so labels do not overlap."""
    order = sorted(range(len(ys)), key=lambda i: ys[i])
    placed = list(ys)
    for previous, current in zip(order, order[1:]):
        placed[current] = max(ys[current], placed[previous] + gap)
    return placed


def privacy_utility_svg(rows: Sequence[Mapping[str, Any]], title: str = "privacy vs utility") -> str:
    """A scatter plot as standalone SVG: test perplexity (x, lower = better utility) against leakage (y)."""
    width, height, left, right, top, bottom = 640, 420, 70, 170, 40, 55
    y_key, y_label = next(
        ((k, label) for k, label in privacy_axes(rows) if any(_num(r.get(k)) is not None for r in rows)), (None, "")
    )
    points = [r for r in rows if y_key and _num(r.get("test_perplexity")) is not None and _num(r.get(y_key)) is not None]
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="12">',
        f'<rect width="{width}" height="{height}" fill="white"/>',
        f'<text x="{width / 2}" y="22" text-anchor="middle" font-size="15">{html.escape(title)}</text>',
    ]
    if not points:
        parts.append(f'<text x="{width / 2}" y="{height / 2}" text-anchor="middle">no point has both a test perplexity and a privacy metric</text>')
        return "\n".join(parts + ["</svg>"]) + "\n"
    xs = [float(r["test_perplexity"]) for r in points]
    ys = [float(r[y_key]) for r in points]

    def span(values: list[float]) -> tuple[float, float]:
        lo, hi = min(values), max(values)
        pad = (hi - lo) * 0.08 or max(abs(hi) * 0.1, 1e-3)
        return lo - pad, hi + pad

    (x0, x1), (y0, y1) = span(xs), span(ys)
    plot_w, plot_h = width - left - right, height - top - bottom

    def px(x: float) -> float:
        return left + (x - x0) / (x1 - x0) * plot_w

    def py(y: float) -> float:
        return top + plot_h - (y - y0) / (y1 - y0) * plot_h

    parts.append(f'<rect x="{left}" y="{top}" width="{plot_w}" height="{plot_h}" fill="none" stroke="#444"/>')
    for i in range(5):
        xv, yv = x0 + (x1 - x0) * i / 4, y0 + (y1 - y0) * i / 4
        parts.append(f'<text x="{px(xv):.1f}" y="{top + plot_h + 16}" text-anchor="middle">{xv:.3g}</text>')
        parts.append(f'<text x="{left - 6}" y="{py(yv) + 4:.1f}" text-anchor="end">{yv:.3g}</text>')
        parts.append(f'<line x1="{left}" x2="{left + plot_w}" y1="{py(yv):.1f}" y2="{py(yv):.1f}" stroke="#eee"/>')
    parts.append(f'<text x="{left + plot_w / 2}" y="{height - 12}" text-anchor="middle">test perplexity (lower = more useful)</text>')
    parts.append(
        f'<text x="16" y="{top + plot_h / 2}" text-anchor="middle" transform="rotate(-90 16 {top + plot_h / 2})">'
        f"{html.escape(y_label)}</text>"
    )
    palette = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf"]
    variants = sorted({str(r.get("variant", "")) for r in points})
    label_ys = _spread_labels([py(y) - 6 for y in ys], gap=11)
    for row, x, y, label_y in zip(points, xs, ys, label_ys):
        color = palette[variants.index(str(row.get("variant", ""))) % len(palette)]
        label = str(row.get("label") or row["point"])
        tip = html.escape(f"{label} ({row.get('variant', '')})")
        parts.append(f'<circle cx="{px(x):.1f}" cy="{py(y):.1f}" r="5" fill="{color}"><title>{tip}: {x:.4g}, {y:.4g}</title></circle>')
        parts.append(f'<text x="{px(x) + 7:.1f}" y="{label_y:.1f}" font-size="10">{html.escape(label)}</text>')
    for i, variant in enumerate(variants):
        y = top + 10 + i * 18
        parts.append(f'<circle cx="{width - right + 20}" cy="{y}" r="5" fill="{palette[i % len(palette)]}"/>')
        parts.append(f'<text x="{width - right + 30}" y="{y + 4}">{html.escape(variant)}</text>')
    return "\n".join(parts + ["</svg>"]) + "\n"


def write_sweep_outputs(
    out_dir: Path, points: Sequence[Mapping[str, Any]], grid: Mapping[str, Sequence[Any]], title: str
) -> dict[str, Path]:
    """comparison.csv, comparison.md, privacy_utility.svg and sweep.json under ``out_dir``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rows = comparison_rows(points)
    files = {
        "csv": write_comparison_csv(rows, out_dir / "comparison.csv"),
        "markdown": out_dir / "comparison.md",
        "plot": out_dir / "privacy_utility.svg",
        "json": out_dir / "sweep.json",
    }
    files["markdown"].write_text(comparison_markdown(rows, title), encoding="utf-8")
    files["plot"].write_text(privacy_utility_svg(rows, title), encoding="utf-8")
    files["json"].write_text(json.dumps({"grid": grid, "points": list(points)}, indent=2, default=str) + "\n", encoding="utf-8")
    return files


# ===================================================================== `canaryaudit schedule`


def prefect_api_url() -> str | None:
    """PREFECT_API_URL from the environment or the active Prefect profile (None: ephemeral)."""
    from prefect.settings import PREFECT_API_URL

    return PREFECT_API_URL.value() or None


def build_deployment(
    cron: str,
    workspace: Path,
    name: str = "scheduled",
    timezone: str | None = None,
    parameters: Mapping[str, Any] | None = None,
):
    """The audit flow as a cron-scheduled RunnerDeployment (at most one run at a time)."""
    from prefect.schedules import Cron
    from prefect.types.entrypoint import EntrypointType

    from canaryaudit.flows import audit

    try:
        schedule = Cron(cron, timezone=timezone)
    except ValueError as exc:
        raise CanaryAuditError(
            f"--cron {cron!r} / --timezone {timezone!r}: not a valid cron expression or time zone "
            f"(e.g. \"0 3 * * *\": 03:00 every day): {exc}"
        ) from None
    return audit.to_deployment(
        name=name,
        schedules=[schedule],
        parameters={"workspace": str(Path(workspace).resolve()), **dict(parameters or {})},
        concurrency_limit=1,  # the server never starts a second run while one is active
        tags=["canaryaudit", "scheduled"],
        description=f"canaryaudit audit of {Path(workspace).resolve()} on cron {cron!r}",
        entrypoint_type=EntrypointType.MODULE_PATH,  # canaryaudit.flows.audit, importable wherever canaryaudit is installed
    )


def add_schedule_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``canaryaudit schedule`` (also ``python pipelines/schedule.py``)."""
    parser.add_argument("--cron", required=True, help='cron expression, e.g. "0 3 * * *" (03:00 every day)')
    parser.add_argument("--timezone", default=None, help="IANA time zone of the cron expression (default: UTC)")
    parser.add_argument("--name", default="scheduled", help="deployment name (runs show as audit/NAME)")
    parser.add_argument("--workspace", default=None, help="workspace to audit (default: the current one)")
    parser.add_argument("--params", default=None, help="params file for every run (default: the workspace's params.yaml)")
    parser.add_argument("-S", "--set", action="append", default=[], metavar="KEY=VALUE", help="params override for every run")
    parser.add_argument("--variants", default=None, help="comma-separated subset of train.variants (default: all)")
    parser.add_argument("--retries", action="append", default=[], metavar="STAGE=N", help="retries for a stage or group, e.g. train=3")
    parser.add_argument("--default-retries", type=int, default=2, help="retries of other stages on a transient failure (default 2)")
    parser.add_argument("--no-fail-on-gate", action="store_true", help="a failed gate does not fail the flow run")


def schedule_parameters(args: argparse.Namespace) -> dict[str, Any]:
    params: dict[str, Any] = {
        "overrides": list(args.set or []),
        "retries": parse_retries(args.retries or []),
        "default_retries": args.default_retries,
        "fail_on_gate": not args.no_fail_on_gate,
    }
    if args.params:
        params["params_file"] = str(Path(args.params).resolve())
    if args.variants:
        params["variants"] = [v.strip() for v in args.variants.split(",") if v.strip()]
    return params


def cmd_schedule(args: argparse.Namespace) -> int:
    """Serve the audit flow on a cron schedule against a Prefect server (blocks until Ctrl-C)."""
    from canaryaudit.env import find_workspace_root

    root = Path(args.workspace).resolve() if args.workspace else find_workspace_root()
    api = prefect_api_url()
    if not api:
        print(
            "error: scheduled audits need a Prefect server: the ephemeral one started for single runs has no scheduler.\n"
            "  1. in another terminal: prefect server start --host 127.0.0.1\n"
            "  2. export PREFECT_API_URL=http://127.0.0.1:4200/api\n"
            f"  3. canaryaudit schedule --cron {json.dumps(args.cron)}",
            file=sys.stderr,
        )
        return 2
    parameters = schedule_parameters(args)
    resolve_params(root, parameters.get("params_file"), parameters["overrides"])  # fail now, not at 03:00
    deployment = build_deployment(args.cron, root, args.name, args.timezone, parameters)
    from prefect import serve

    print(f"serving audit/{args.name} on cron {args.cron!r} ({args.timezone or 'UTC'}) for {root} via {api}")
    print(f"  run one now: prefect deployment run 'audit/{args.name}'   stop: Ctrl-C (pauses the schedule)")
    serve(deployment, limit=1)
    return 0
