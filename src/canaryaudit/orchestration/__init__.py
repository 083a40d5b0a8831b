"""What the Prefect flows, ``canaryaudit audit`` and ``canaryaudit schedule`` share.

One module a concern: :mod:`.lock` (workspace lock), :mod:`.dvc` (running DVC, failure classes),
:mod:`.stages` (stage graph and selection), :mod:`.params` (overrides applied to params.yaml),
:mod:`.verdict` (the gate as an audit reads it), :mod:`.sweep` (grids, point workspaces, comparison
table and plot), :mod:`.schedule` (the Prefect deployment). This package re-exports their public names.

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

from canaryaudit.orchestration.common import (
    GATE_FILE, LOCK_FILE, LogFn, REPORT_FILE, STATE_DIR, SWEEPS_DIR,
)
from canaryaudit.orchestration.lock import (
    lock_path, workspace_lock,
)
from canaryaudit.orchestration.dvc import (
    StageFailed, StageRun, StageTransientError, StageValidationError, classify_failure, dvc_executable,
    repro_passthrough, repro_stage, run_dvc, stage_env, stale_stages,
)
from canaryaudit.orchestration.stages import (
    Stage, list_stages, parse_retries, retries_for, select_stages,
)
from canaryaudit.orchestration.params import (
    applied_params, read_yaml, resolve_params,
)
from canaryaudit.orchestration.verdict import (
    FAIL_ON_GATE, GateVerdict, gate_markdown, gate_stage, markdown_cell, read_gate, read_gate_file,
)
from canaryaudit.orchestration.sweep import (
    EXPOSURE_KEY, METRIC_ORDER, comparison_markdown, comparison_rows, grid_points, load_grid_file,
    parse_grid, point_label, point_overrides, point_params, point_params_text, point_results,
    prepare_point_workspace, privacy_axes, privacy_utility_svg, source_paths, write_comparison_csv,
    write_sweep_outputs,
)
from canaryaudit.orchestration.schedule import (
    build_deployment, prefect_api_url,
)

__all__ = [
    "GATE_FILE", "LOCK_FILE", "LogFn", "REPORT_FILE", "STATE_DIR", "SWEEPS_DIR", "lock_path",
    "workspace_lock", "StageFailed", "StageRun", "StageTransientError", "StageValidationError",
    "classify_failure", "dvc_executable", "repro_passthrough", "repro_stage", "run_dvc", "stage_env",
    "stale_stages", "Stage", "list_stages", "parse_retries", "retries_for", "select_stages",
    "applied_params", "read_yaml", "resolve_params", "FAIL_ON_GATE", "GateVerdict", "gate_markdown",
    "gate_stage", "markdown_cell", "read_gate", "read_gate_file", "EXPOSURE_KEY", "METRIC_ORDER",
    "comparison_markdown", "comparison_rows", "grid_points", "load_grid_file", "parse_grid", "point_label",
    "point_overrides", "point_params", "point_params_text", "point_results", "prepare_point_workspace",
    "privacy_axes", "privacy_utility_svg", "source_paths", "write_comparison_csv", "write_sweep_outputs",
    "build_deployment", "prefect_api_url",
]
