"""MLflow tracking: one parent run per pipeline run, joined by every stage.

The store is SQLite (``mlflow.db`` at the workspace root) unless
``MLFLOW_TRACKING_URI`` is set. The parent run is found, in order, from
``CANARYAUDIT_PARENT_RUN_ID`` (set by ``canaryaudit audit`` and the Prefect
flow), from ``.canaryaudit/parent_run`` (left by an earlier stage of a plain
``dvc repro``, while that run is still RUNNING), or created anew.

Only settings and aggregate numbers are logged, never text from the data.

Params are section-prefixed dotted keys (``train.dp.noise_multiplier``) with JSON values (``true``,
``null``, ``[1, 4]``: what the params file says, not Python's repr). Metric names follow one scheme,
documented in :mod:`canaryaudit.report.summary` (``variant.VARIANT.KEY`` for headline numbers).
A run that logged nothing (a ``canaryaudit audit`` whose ``dvc repro`` had nothing to do) is deleted
when it closes (:meth:`Tracker.close_pipeline_run`), so no-op audits leave no empty runs.

A run is tagged with the process that owns it (``canaryaudit.pid``, ``canaryaudit.host`` and the
process start time): every variant run, and a parent run opened by ``canaryaudit audit`` or the
Prefect flow. When a new run starts, runs still RUNNING whose owner process on this host has ended
(a stage killed by SIGKILL, the OOM killer, a full disk) are marked KILLED, so none stays RUNNING.
A parent run opened by a stage of a plain ``dvc repro`` has no owner: later stages join it and the
report stage closes it.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from canaryaudit.env import find_workspace_root
from canaryaudit.io import atomic_open

PARENT_ENV = "CANARYAUDIT_PARENT_RUN_ID"
EXPERIMENT_ENV = "CANARYAUDIT_EXPERIMENT"
DISABLE_ENV = "CANARYAUDIT_TRACKING"  # "0" turns tracking off (e.g. for a dry run)
DEFAULT_EXPERIMENT = "canaryaudit"
ARTIFACTS = "mlartifacts"  # the experiment's artifact folder in the workspace (MLflow stores it absolute)
_STATE_FILE = Path(".canaryaudit") / "parent_run"
PID_TAG, HOST_TAG, START_TAG = "canaryaudit.pid", "canaryaudit.host", "canaryaudit.process_start"

log = logging.getLogger("canaryaudit.tracking")


def process_start(pid: int) -> str | None:
    """The kernel's start time of process ``pid`` (ticks since boot), or None if it does not exist.

    Together with the pid it identifies a process: a pid reused by a later process has another start.
    """
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        except PermissionError:
            return ""
        return ""  # alive, start time unknown (no /proc)
    fields = stat.rsplit(")", 1)[1].split()  # after the command name: field 3 (state) onwards
    if fields[0] in ("Z", "X"):
        return None  # a zombie: ended, not yet reaped by its parent
    return fields[19]  # field 22: starttime


def owner_tags() -> dict[str, str]:
    """Tags naming this process as a run's owner."""
    return {PID_TAG: str(os.getpid()), HOST_TAG: socket.gethostname(), START_TAG: process_start(os.getpid()) or ""}


def owner_gone(tags: Mapping[str, str]) -> bool:
    """Whether the owner process recorded in ``tags`` ran on this host and has ended."""
    if tags.get(HOST_TAG) != socket.gethostname() or not tags.get(PID_TAG, "").isdigit():
        return False
    started = process_start(int(tags[PID_TAG]))
    if started is None:
        return True
    return bool(started and tags.get(START_TAG) and started != tags[START_TAG])


def tracking_enabled() -> bool:
    return os.environ.get(DISABLE_ENV, "1") != "0"


def tracking_uri(root: Path | None = None) -> str:
    uri = os.environ.get("MLFLOW_TRACKING_URI")
    if uri:
        return uri
    return f"sqlite:///{(root or find_workspace_root()) / 'mlflow.db'}"


def experiment_name() -> str:
    return os.environ.get(EXPERIMENT_ENV, DEFAULT_EXPERIMENT)


def flatten(tree: Mapping[str, Any], prefix: str = "") -> Iterator[tuple[str, Any]]:
    """Dotted (key, leaf) pairs of a nested mapping; lists stay leaves."""
    for key, value in tree.items():
        dotted = f"{prefix}.{key}" if prefix else str(key)
        if isinstance(value, Mapping):
            yield from flatten(value, dotted)
        else:
            yield dotted, value


def numeric_metrics(tree: Mapping[str, Any], prefix: str) -> dict[str, float]:
    """The numeric leaves of ``tree`` (bools and None skipped), keyed ``prefix.dotted.key``."""
    return {
        key: float(value)
        for key, value in flatten(tree, prefix)
        if isinstance(value, (int, float)) and not isinstance(value, bool)
    }


class Tracker:
    """Thin wrapper over MlflowClient bound to the pipeline's parent run."""

    def __init__(self, root: Path | None = None) -> None:
        from mlflow.tracking import MlflowClient  # heavy import, only when tracking

        self.root = root or find_workspace_root()
        self.client = MlflowClient(tracking_uri(self.root))
        name = experiment_name()
        experiment = self.client.get_experiment_by_name(name)
        self.experiment_id = (
            experiment.experiment_id
            if experiment
            else self.client.create_experiment(name, artifact_location=(self.root / ARTIFACTS).as_uri())
        )

    # -------------------------------------------------------------- parent run

    def _state_path(self) -> Path:
        return self.root / _STATE_FILE

    def _running(self, run_id: str) -> bool:
        try:
            return self.client.get_run(run_id).info.status == "RUNNING"
        except Exception:  # noqa: BLE001 - a missing or foreign run id means "not joinable"
            return False

    def reap_stale_runs(self) -> list[str]:
        """Mark KILLED every RUNNING run of this experiment whose owner process on this host has ended.

        Returns their ids. A store error is logged, never raised: it must not stop a stage.
        """
        from mlflow.exceptions import MlflowException

        host = socket.gethostname().replace("'", "")
        try:
            runs = self.client.search_runs(
                [self.experiment_id],
                filter_string=f"attributes.status = 'RUNNING' and tags.`{HOST_TAG}` = '{host}'",
                max_results=1000,
            )
            reaped = []
            for run in runs:
                if owner_gone(run.data.tags):
                    self.client.set_tag(run.info.run_id, "canaryaudit.killed",
                                        f"process {run.data.tags.get(PID_TAG)} ended without closing the run; "
                                        f"marked KILLED by process {os.getpid()}")
                    self.client.set_terminated(run.info.run_id, status="KILLED")
                    reaped.append(run.info.run_id)
        except (MlflowException, OSError) as exc:
            log.warning("could not check for runs left RUNNING by killed stages: %s", exc)
            return []
        state = self._state_path()
        if reaped and state.exists() and state.read_text(encoding="utf-8").strip() in reaped:
            state.unlink(missing_ok=True)
        for run_id in reaped:
            log.warning("MLflow run %s was left RUNNING by a process that ended; marked KILLED", run_id)
        return reaped

    def start_pipeline_run(self, run_name: str | None = None, tags: Mapping[str, str] | None = None) -> str:
        """Create a new parent run and remember it for later stages of this workspace.

        With a ``canaryaudit.launcher`` tag (cli, prefect) this process owns the run (see the module
        docstring); without one (a stage of a plain ``dvc repro``) it has no owner.
        """
        self.reap_stale_runs()
        owner = owner_tags() if tags and "canaryaudit.launcher" in tags else {}
        run = self.client.create_run(
            self.experiment_id,
            run_name=run_name or time.strftime("audit-%Y%m%d-%H%M%S"),
            tags={"canaryaudit.role": "pipeline", "canaryaudit.workspace": str(self.root), **owner, **(tags or {})},
        )
        with atomic_open(self._state_path()) as handle:
            handle.write(run.info.run_id + "\n")
        return run.info.run_id

    def pipeline_run_id(self) -> str:
        """The parent run to join (see module docstring), created if none is open."""
        from_env = os.environ.get(PARENT_ENV)
        if from_env:
            return from_env
        state = self._state_path()
        if state.exists():
            run_id = state.read_text(encoding="utf-8").strip()
            if run_id and self._running(run_id):
                return run_id
        return self.start_pipeline_run()

    def logged_nothing(self, run_id: str) -> bool:
        """No params, no metrics, no stage and no nested run: the pipeline had nothing to do."""
        run = self.client.get_run(run_id)
        if run.data.params or run.data.metrics or any(t.startswith("canaryaudit.stage.") for t in run.data.tags):
            return False
        children = self.client.search_runs([self.experiment_id], f"tags.`mlflow.parentRunId` = '{run_id}'",
                                           max_results=1)
        return not children

    def close_pipeline_run(self, run_id: str, status: str = "FINISHED") -> bool:
        """Finish the parent run, or delete it when a successful run logged nothing; False if deleted."""
        if status == "FINISHED" and self.logged_nothing(run_id):
            self.finish_pipeline_run(run_id, status)
            self.client.delete_run(run_id)  # hidden from searches, `compare` and the UI's default view
            return False
        self.finish_pipeline_run(run_id, status)
        return True

    def finish_pipeline_run(self, run_id: str, status: str = "FINISHED") -> None:
        self.client.set_terminated(run_id, status=status)
        state = self._state_path()
        if state.exists() and state.read_text(encoding="utf-8").strip() == run_id:
            state.unlink()

    # -------------------------------------------------------------- logging

    def log_stage(self, stage: str, params: Mapping[str, Any], metrics: Mapping[str, float]) -> str:
        """Log a stage's params (prefixed by section) and metrics to the parent run; return its id.

        MLflow forbids changing a logged param: when this stage's params differ
        from those already in the open parent run, that run is finished and a new
        one started (it is a different pipeline run).
        """
        from mlflow.entities import Metric, Param

        run_id = self.pipeline_run_id()
        flat = {k: _param_value(v) for k, v in flatten(params)}
        existing = self.client.get_run(run_id).data.params
        if any(k in existing and existing[k] != v for k, v in flat.items()) and not os.environ.get(PARENT_ENV):
            self.finish_pipeline_run(run_id)
            run_id = self.start_pipeline_run()
            existing = {}
        new_params = [Param(k, v) for k, v in flat.items() if k not in existing]
        now = int(time.time() * 1000)
        metric_list = [Metric(k, float(v), now, 0) for k, v in metrics.items()]
        for i in range(0, max(len(new_params), len(metric_list)), 100):
            self.client.log_batch(run_id, metrics=metric_list[i : i + 100], params=new_params[i : i + 100])
        self.client.set_tag(run_id, f"canaryaudit.stage.{stage}", "done")
        return run_id


    # -------------------------------------------------------------- variant (child) runs

    def start_variant_run(self, stage: str, variant: str, params: Mapping[str, Any]) -> str:
        """A run nested under the pipeline run (MLflow's parentRunId tag), with the variant's params."""
        from mlflow.entities import Param

        self.reap_stale_runs()
        parent = self.pipeline_run_id()
        run = self.client.create_run(
            self.experiment_id,
            run_name=f"{stage}@{variant}",
            tags={"mlflow.parentRunId": parent, "canaryaudit.role": "variant", "canaryaudit.variant": variant,
                  "canaryaudit.stage": stage, **owner_tags()},
        )
        flat = [Param(k, _param_value(v)) for k, v in flatten(params)]
        for i in range(0, len(flat), 100):
            self.client.log_batch(run.info.run_id, params=flat[i : i + 100])
        return run.info.run_id

    def log_metrics(self, run_id: str, metrics: Mapping[str, float], step: int = 0) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        items = [Metric(k, float(v), now, step) for k, v in metrics.items()]
        for i in range(0, len(items), 1000):
            self.client.log_batch(run_id, metrics=items[i : i + 1000])

    def log_json_artifact(self, run_id: str, obj: Any, artifact_file: str) -> None:
        self.client.log_dict(run_id, obj, artifact_file)

    def finish(self, run_id: str, status: str = "FINISHED") -> None:
        self.client.set_terminated(run_id, status=status)

    def finish_quietly(self, run_id: str, status: str) -> None:
        """Close a run on the way out of a failure: a store error (the disk that failed the stage is full)
        is logged, so the stage reports its own error, not the store's; the next run reaps it."""
        try:
            self.client.set_terminated(run_id, status=status)
        except Exception as exc:  # noqa: BLE001 - whatever the store raises, the stage's error comes first
            log.warning("could not mark MLflow run %s %s: %s", run_id, status, str(exc).splitlines()[0][:200])


def _param_value(value: Any) -> str:
    """A param as the params file writes it: strings as is, anything else as JSON (true, null, [1, 4])."""
    text = value if isinstance(value, str) else json.dumps(list(value) if isinstance(value, tuple) else value)
    return text if len(text) <= 6000 else text[:5997] + "..."


def log_stage(stage: str, params: Mapping[str, Any], metrics: Mapping[str, float]) -> str | None:
    """Log to the pipeline's parent run unless tracking is disabled; return the run id."""
    if not tracking_enabled():
        return None
    return Tracker().log_stage(stage, params, metrics)


def provenance_tags(provenance: Mapping[str, Any]) -> dict[str, str]:
    """Tags of a run's provenance (see :mod:`canaryaudit.report.provenance`): code, settings, data, models."""
    tags: dict[str, str] = {}
    git = provenance.get("git") or {}
    if git.get("commit"):
        tags["canaryaudit.git_commit"] = str(git["commit"])
        tags["mlflow.source.git.commit"] = str(git["commit"])  # MLflow's own tag: the UI links it
    if git.get("dirty") is not None:
        tags["canaryaudit.git_dirty"] = json.dumps(bool(git["dirty"]))
    if provenance.get("params_sha256"):
        tags["canaryaudit.params_sha256"] = str(provenance["params_sha256"])
    for name, digest in (provenance.get("model_sha256") or {}).items():
        tags[f"canaryaudit.model_sha256.{name}"] = str(digest)
    for rel, digest in (provenance.get("data_sha256") or {}).items():
        tags[f"canaryaudit.data_sha256.{rel}"] = str(digest)
    return tags


def log_provenance(tracker: Tracker, run_id: str, provenance: Mapping[str, Any]) -> None:
    """Provenance tags, and each data file as an MLflow dataset input (name, sha256 digest, path)."""
    from mlflow.entities import Dataset, DatasetInput, InputTag, RunTag

    tags = [RunTag(k, v) for k, v in provenance_tags(provenance).items()]
    for i in range(0, len(tags), 100):
        tracker.client.log_batch(run_id, tags=tags[i : i + 100])
    inputs = [
        DatasetInput(Dataset(name=rel, digest=str(digest)[:36], source_type="local", source=f"data/{rel}"),
                     tags=[InputTag("mlflow.data.context", rel.partition("/")[0]), InputTag("sha256", str(digest))])
        for rel, digest in (provenance.get("data_sha256") or {}).items()
    ]
    if inputs:
        tracker.client.log_inputs(run_id, datasets=inputs)
