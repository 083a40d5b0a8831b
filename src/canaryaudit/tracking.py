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
process start time): every variant run; a parent run opened by ``canaryaudit audit`` or the Prefect
flow (that process); a parent run opened by a stage of a plain ``dvc repro`` or ``dvc exp run`` (the
DVC process running the stages, found from the ``DVC_STAGE`` variable DVC sets for every stage
command, :func:`dvc_process`; launcher tag ``dvc``). When a run starts, or a stage looks for the parent
run to join, runs still RUNNING whose owner process on this host has ended (SIGKILL, the OOM killer,
a full disk, a ``dvc repro`` killed or stopped before its report stage) are marked KILLED, with a
``canaryaudit.killed`` tag saying why, so none stays RUNNING and no later repro joins a dead one.

Artifacts of a SQLite store live beside its file, in ``mlartifacts/`` (the workspace's, by default).
MLflow stores an experiment's local artifact location, and each run's artifact URI, as absolute paths,
so a store copied or moved with its workspace would keep writing into the old folder. The experiment
is therefore tagged ``canaryaudit.artifact_root = mlartifacts`` (relative to the store's folder), and a
Tracker that finds it pointing elsewhere repoints it at the ``mlartifacts/`` beside the store it opened
(:meth:`Tracker.follow_moved_store`): new runs, and runs still RUNNING, write there; a finished run is
repointed when its artifacts came along (or are gone from the old place). A tracking server
(``http://...``) keeps its own artifact root (``--artifacts-destination``); nothing is repointed there.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import time
import urllib.parse
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from canaryaudit.env import find_workspace_root
from canaryaudit.io import atomic_open

PARENT_ENV = "CANARYAUDIT_PARENT_RUN_ID"
EXPERIMENT_ENV = "CANARYAUDIT_EXPERIMENT"
DISABLE_ENV = "CANARYAUDIT_TRACKING"  # "0" turns tracking off (e.g. for a dry run)
DEFAULT_EXPERIMENT = "canaryaudit"
ARTIFACTS = "mlartifacts"  # the artifact folder beside a SQLite store (MLflow stores it absolute)
ARTIFACT_ROOT_TAG = "canaryaudit.artifact_root"  # experiment tag: its artifact folder, relative to the store's
_STATE_FILE = Path(".canaryaudit") / "parent_run"
PID_TAG, HOST_TAG, START_TAG = "canaryaudit.pid", "canaryaudit.host", "canaryaudit.process_start"
LAUNCHER_TAG, KILLED_TAG = "canaryaudit.launcher", "canaryaudit.killed"
DVC_STAGE_ENV = "DVC_STAGE"  # DVC sets it in the environment of every stage command it runs
_DATABASE_SCHEMES = ("sqlite", "postgresql", "mysql", "mssql")

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


def owner_tags(pid: int | None = None) -> dict[str, str]:
    """Tags naming process ``pid`` (default: this one) as a run's owner."""
    pid = os.getpid() if pid is None else pid
    return {PID_TAG: str(pid), HOST_TAG: socket.gethostname(), START_TAG: process_start(pid) or ""}


def _parent_pid(pid: int) -> int | None:
    """The parent of process ``pid`` (``/proc``), or None if unknown."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return int(fields[1]) if fields[1].isdigit() else None


def _started_with(pid: int, variable: str) -> bool | None:
    """Whether process ``pid`` started with ``variable`` in its environment; None if that cannot be read."""
    try:
        environ = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return None
    prefix = variable.encode() + b"="
    return any(entry.startswith(prefix) for entry in environ.split(b"\0"))


def dvc_process() -> int | None:
    """The DVC process (``dvc repro``, ``dvc exp run``) running this stage, or None (not under DVC, or no ``/proc``).

    DVC runs a stage command as ``$SHELL -c CMD`` with ``DVC_STAGE`` set in that environment only, so the
    shell, the stage and any launcher between them (torchrun) start with it: the nearest ancestor that
    started without it is DVC.
    """
    if DVC_STAGE_ENV not in os.environ:
        return None
    pid: int | None = os.getppid()
    for _ in range(64):  # a bounded walk up the process tree
        if pid is None or pid <= 1:
            return None
        inherited = _started_with(pid, DVC_STAGE_ENV)
        if inherited is None:
            return None
        if not inherited:
            return pid
        pid = _parent_pid(pid)
    return None


def owner_gone(tags: Mapping[str, str]) -> bool:
    """Whether the owner process recorded in ``tags`` ran on this host and has ended."""
    if tags.get(HOST_TAG) != socket.gethostname() or not tags.get(PID_TAG, "").isdigit():
        return False
    started = process_start(int(tags[PID_TAG]))
    if started is None:
        return True
    return bool(started and tags.get(START_TAG) and started != tags[START_TAG])


def killed_reason(tags: Mapping[str, str]) -> str:
    """Why a run whose owner ended is marked KILLED (its ``canaryaudit.killed`` tag)."""
    pid = tags.get(PID_TAG)
    if tags.get(LAUNCHER_TAG) == "dvc":
        return (f"the dvc process {pid} that ran its stages ended without closing the run (killed, a failed stage, "
                f"or targets that stop before the report stage); marked KILLED by process {os.getpid()}")
    return f"process {pid} ended without closing the run; marked KILLED by process {os.getpid()}"


def tracking_enabled() -> bool:
    return os.environ.get(DISABLE_ENV, "1") != "0"


def tracking_uri(root: Path | None = None) -> str:
    uri = os.environ.get("MLFLOW_TRACKING_URI")
    if uri:
        return uri
    return f"sqlite:///{(root or find_workspace_root()) / 'mlflow.db'}"


def experiment_name() -> str:
    return os.environ.get(EXPERIMENT_ENV, DEFAULT_EXPERIMENT)


def sqlite_store_folder(uri: str) -> Path | None:
    """The folder holding a SQLite store's file (``sqlite:///mlflow.db`` is relative to the cwd), else None."""
    if not uri.startswith("sqlite:///"):
        return None
    path = uri[len("sqlite:///"):].split("?", 1)[0]
    if not path or path == ":memory:":
        return None
    return Path(path).resolve().parent


def local_artifact_root(uri: str, root: Path) -> Path | None:
    """Where a new experiment of store ``uri`` keeps its artifacts.

    ``mlartifacts/`` beside a SQLite store's file (it moves with the file); the workspace's
    ``mlartifacts/`` for another database; None for a tracking server, whose own artifact root
    (``--default-artifact-root``, ``--artifacts-destination``) applies.
    """
    folder = sqlite_store_folder(uri)
    if folder is not None:
        return folder / ARTIFACTS
    scheme = uri.partition(":")[0].partition("+")[0]
    return root / ARTIFACTS if scheme in _DATABASE_SCHEMES else None


def file_uri_path(uri: str) -> Path | None:
    """The local path of a ``file:`` URI or a plain path, else None (``s3:``, ``mlflow-artifacts:``, ...)."""
    parsed = urllib.parse.urlparse(uri)
    if parsed.scheme == "file":
        return Path(urllib.parse.unquote(parsed.path))
    return Path(uri) if parsed.scheme == "" else None


def relocated_uri(uri: str, old_root: str, new_root: str, running: bool) -> str | None:
    """A run's artifact URI once its store's artifact root moved from ``old_root`` to ``new_root``; None: keep it.

    A run still RUNNING always moves (what it logs next must land under the new root). A finished run
    moves when its artifacts are at the new place (copied or renamed with the store) or gone from the
    old one; it stays when only the old place has them (a store copied without its artifacts).
    """
    old_root, new_root = old_root.rstrip("/"), new_root.rstrip("/")
    if not uri.startswith(old_root + "/"):
        return None
    moved = new_root + uri[len(old_root):]
    if running:
        return moved
    old_path, new_path = file_uri_path(uri), file_uri_path(moved)
    if old_path is None or new_path is None:
        return None
    return moved if new_path.exists() or not old_path.exists() else None


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
        self.uri = tracking_uri(self.root)
        self.client = MlflowClient(self.uri)
        self.artifact_root = local_artifact_root(self.uri, self.root)
        self.experiment_id = self._experiment(experiment_name())

    def _experiment(self, name: str) -> str:
        """The experiment's id: created with its artifacts beside the store, or followed there if the store moved."""
        from mlflow.exceptions import MlflowException

        experiment = self.client.get_experiment_by_name(name)
        relocatable = sqlite_store_folder(self.uri) is not None
        if experiment is None:
            try:
                return self.client.create_experiment(
                    name, artifact_location=self.artifact_root.as_uri() if self.artifact_root else None,
                    tags={ARTIFACT_ROOT_TAG: ARTIFACTS} if relocatable else None)
            except MlflowException:  # a stage running beside this one created it first
                experiment = self.client.get_experiment_by_name(name)
                if experiment is None:
                    raise
        if relocatable:
            self.follow_moved_store(experiment)
        return experiment.experiment_id

    def follow_moved_store(self, experiment: Any) -> int | None:
        """Repoint ``experiment`` at the ``mlartifacts/`` beside this SQLite store if it points elsewhere.

        Only an experiment whose artifacts canaryaudit placed (tagged ``canaryaudit.artifact_root``, or
        untagged with a local folder named ``mlartifacts``) is repointed; one given another location by
        its user is left alone. Returns how many runs were repointed (see :func:`relocated_uri`), or None
        when nothing had moved.
        """
        stored = experiment.artifact_location
        path = file_uri_path(stored)
        if path is None or self.artifact_root is None:
            return None
        relative = experiment.tags.get(ARTIFACT_ROOT_TAG)
        if relative not in (ARTIFACTS, None) or (relative is None and path.name != ARTIFACTS):
            return None
        if path.resolve() == self.artifact_root.resolve():
            return None
        moved = self._repoint_artifacts(experiment.experiment_id, stored, self.artifact_root.as_uri())
        if relative is None:
            self.client.set_experiment_tag(experiment.experiment_id, ARTIFACT_ROOT_TAG, ARTIFACTS)
        log.warning("MLflow store %s was moved or copied from %s: artifacts now go to %s (%d runs repointed)",
                    self.uri, path.parent, self.artifact_root, moved)
        return moved

    def _repoint_artifacts(self, experiment_id: str, old_root: str, new_root: str) -> int:
        """Set the experiment's artifact location and move its runs' artifact URIs (MLflow has no API for it).

        Uses MLflow's own session and table models, as its SQL store does when it creates an experiment.
        """
        from mlflow.store.tracking.dbmodels.models import SqlExperiment, SqlRun

        store = self.client._tracking_client.store  # the SQLAlchemy store of this client's URI
        moved = 0
        with store.ManagedSessionMaker(read_only=False) as session:
            row = session.query(SqlExperiment).filter(SqlExperiment.experiment_id == int(experiment_id)).one()
            row.artifact_location = new_root
            for run in session.query(SqlRun).filter(SqlRun.experiment_id == int(experiment_id)):
                target = relocated_uri(run.artifact_uri or "", old_root, new_root, run.status == "RUNNING")
                if target is not None:
                    run.artifact_uri = target
                    moved += 1
        return moved

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
                    self.client.set_tag(run.info.run_id, KILLED_TAG, killed_reason(run.data.tags))
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

        Its owner (see the module docstring): this process when a ``canaryaudit.launcher`` tag is given
        (cli, prefect); else the DVC process running this stage (a plain ``dvc repro``); else none.
        """
        self.reap_stale_runs()
        return self._create_pipeline_run(run_name, tags)

    def _create_pipeline_run(self, run_name: str | None = None, tags: Mapping[str, str] | None = None) -> str:
        if tags and LAUNCHER_TAG in tags:
            owner = owner_tags()
        else:
            repro = dvc_process()
            owner = {**owner_tags(repro), LAUNCHER_TAG: "dvc"} if repro is not None else {}
        run = self.client.create_run(
            self.experiment_id,
            run_name=run_name or time.strftime("audit-%Y%m%d-%H%M%S"),
            tags={"canaryaudit.role": "pipeline", "canaryaudit.workspace": str(self.root), **owner, **(tags or {})},
        )
        with atomic_open(self._state_path()) as handle:
            handle.write(run.info.run_id + "\n")
        return run.info.run_id

    def pipeline_run_id(self) -> str:
        """The parent run to join (see module docstring), created if none is open.

        Runs left RUNNING by ended processes are reaped first, so a ``dvc repro`` never joins the parent
        run of an earlier one that was killed.
        """
        self.reap_stale_runs()
        from_env = os.environ.get(PARENT_ENV)
        if from_env:
            return from_env
        state = self._state_path()
        if state.exists():
            run_id = state.read_text(encoding="utf-8").strip()
            if run_id and self._running(run_id):
                return run_id
        return self._create_pipeline_run()

    def logged_nothing(self, run_id: str) -> bool:
        """No params, no metrics, no stage and no nested run: the pipeline had nothing to do."""
        run = self.client.get_run(run_id)
        if run.data.params or run.data.metrics or any(t.startswith("canaryaudit.stage.") for t in run.data.tags):
            return False
        children = self.client.search_runs([self.experiment_id], f"tags.`mlflow.parentRunId` = '{run_id}'",
                                           max_results=1)
        return not children

    def close_pipeline_run(self, run_id: str, status: str = "FINISHED", *, stages_ran: bool = False) -> bool:
        """Finish the parent run, or delete it when a successful run logged nothing; False if deleted.

        ``stages_ran``: the caller knows some stage ran (a stage that logs nothing to
        MLflow, such as a user's own stage, still made this run worth keeping).
        """
        if status == "FINISHED" and not stages_ran and self.logged_nothing(run_id):
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

        parent = self.pipeline_run_id()  # reaps runs of ended processes first
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

    def log_inputs(self, run_id: str, datasets: list[Any]) -> None:
        """MLflow dataset inputs (``mlflow.entities.DatasetInput``) of the run."""
        self.client.log_inputs(run_id, datasets=datasets)

    def log_artifact(self, run_id: str, path: Path | str, artifact_path: str | None = None) -> None:
        """One file into the run's artifacts (under ``artifact_path``)."""
        self.client.log_artifact(run_id, str(path), artifact_path=artifact_path)

    def log_artifacts(self, run_id: str, folder: Path | str, artifact_path: str | None = None) -> None:
        """A folder's files into the run's artifacts (under ``artifact_path``)."""
        self.client.log_artifacts(run_id, str(folder), artifact_path=artifact_path)

    def set_tags(self, run_id: str, tags: Mapping[str, str]) -> None:
        from mlflow.entities import RunTag

        items = [RunTag(k, str(v)) for k, v in tags.items()]
        for i in range(0, len(items), 100):
            self.client.log_batch(run_id, tags=items[i : i + 100])

    def metrics_of(self, run_id: str) -> dict[str, float]:
        """The latest value of each metric the run logged."""
        return dict(self.client.get_run(run_id).data.metrics)

    def start_sweep_run(self, name: str, grid: Mapping[str, Any], tags: Mapping[str, str]) -> str:
        """The parent run of a sweep (role ``sweep``), with its grid as a param; owned by this process."""
        run = self.client.create_run(
            self.experiment_id, run_name=name,
            tags={"canaryaudit.role": "sweep", "canaryaudit.sweep": name, **owner_tags(), **tags},
        )
        self.client.log_param(run.info.run_id, "grid", _param_value(json.dumps(dict(grid))))
        return run.info.run_id

    def start_sweep_point_run(self, sweep_run: str, sweep: str, point: Mapping[str, Any], workspace: Path) -> str:
        """A sweep point's pipeline run, nested under the sweep's, its grid values as ``grid.KEY`` params.

        ``point``: ``{"point": id, "label": text, "params": {dotted key: value}}``; its stages log into
        this run as into any pipeline run.
        """
        from mlflow.entities import Param

        run = self.client.create_run(
            self.experiment_id,
            run_name=f"{sweep}/{point['point']} {point['label']}"[:250],
            tags={"mlflow.parentRunId": sweep_run, "canaryaudit.role": "pipeline", "canaryaudit.sweep": sweep,
                  "canaryaudit.sweep_point": point["point"], "canaryaudit.sweep_label": point["label"],
                  "canaryaudit.launcher": "prefect-sweep", **owner_tags(), "canaryaudit.workspace": str(workspace)},
        )
        params = [Param(f"grid.{k}", json.dumps(v)) for k, v in point["params"].items()]
        for i in range(0, len(params), 100):
            self.client.log_batch(run.info.run_id, params=params[i : i + 100])
        return run.info.run_id

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


def pipeline_runs(experiment: str, last: int, uri: str) -> tuple[list[Any], dict[str, list[Any]]] | None:
    """The ``last`` most recent pipeline runs of ``experiment`` (newest first) and, by parent run id, their
    nested variant runs; None when the store has no such experiment. Reads only: creates nothing."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    found = client.get_experiment_by_name(experiment)
    if found is None:
        return None
    ids = [found.experiment_id]
    parents = client.search_runs(ids, "tags.`canaryaudit.role` = 'pipeline'", max_results=last,
                                 order_by=["attributes.start_time DESC"])
    children: dict[str, list[Any]] = {}
    for child in client.search_runs(ids, "tags.`canaryaudit.role` = 'variant'", max_results=50_000):
        children.setdefault(child.data.tags.get("mlflow.parentRunId", ""), []).append(child)
    return list(parents), children


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
    from mlflow.entities import Dataset, DatasetInput, InputTag

    tracker.set_tags(run_id, provenance_tags(provenance))
    inputs = [
        DatasetInput(Dataset(name=rel, digest=str(digest)[:36], source_type="local", source=f"data/{rel}"),
                     tags=[InputTag("mlflow.data.context", rel.partition("/")[0]), InputTag("sha256", str(digest))])
        for rel, digest in (provenance.get("data_sha256") or {}).items()
    ]
    if inputs:
        tracker.log_inputs(run_id, inputs)
