"""Prefect flows: ``audit`` (the DVC pipeline, one task per stage, then the gate) and ``sweep``.

They live in the package (not in ``pipelines/``) so that ``canaryaudit schedule``,
the tests and a served deployment (entrypoint ``canaryaudit.flows.audit``) import
them by module; ``pipelines/audit.py``, ``pipelines/sweep.py`` and
``pipelines/schedule.py`` are thin command-line entry points. Importing this
module imports :mod:`canaryaudit` first, which applies the offline defaults
(ephemeral Prefect server, no analytics) before Prefect is imported.

The library side (lock, stage order, failure classes, params, gate, sweep
tables) is :mod:`canaryaudit.orchestration`.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.futures import as_completed
from prefect.tasks import exponential_backoff

from canaryaudit import orchestration as orc
from canaryaudit import tracking
from canaryaudit.env import find_workspace_root
from canaryaudit.errors import CanaryAuditError
from canaryaudit.registry import Registry
from canaryaudit.report.summary import complete_parent_run, variant_metrics

GATE_ARTIFACT_KEY = "canaryaudit-gate-failed"
SWEEP_ARTIFACT_KEY = "canaryaudit-sweep"


class GateFailed(CanaryAuditError):
    """The privacy gate failed and the flow was asked to fail on it."""


class SweepFailed(CanaryAuditError):
    """At least one sweep point failed (the others' results are still written)."""


def _retry_condition(task: Any, task_run: Any, state: Any) -> bool:
    """Retry transient stage failures only (Prefect calls this on every failed attempt)."""
    exc = state.data if isinstance(state.data, BaseException) else None
    if exc is None:
        with contextlib.suppress(Exception):
            exc = state.result(raise_on_failure=False)
    if isinstance(exc, orc.StageFailed):
        return exc.retryable
    return not isinstance(exc, CanaryAuditError)  # a user-facing error is not transient


# ===================================================================== Prefect run info


def _flow_run_info() -> dict[str, str]:
    from prefect import runtime
    from prefect.settings import PREFECT_API_URL, PREFECT_UI_URL

    info = {"id": str(runtime.flow_run.id or ""), "name": str(runtime.flow_run.name or "")}
    if PREFECT_UI_URL.value() and info["id"]:
        info["url"] = str(runtime.flow_run.ui_url)
    if PREFECT_API_URL.value():
        info["api_url"] = str(PREFECT_API_URL.value())
    return info


def _add_flow_run_tags(*tags: str) -> None:
    """Add tags to the current flow run (the API replaces the list, so merge first)."""
    from prefect import runtime
    from prefect.client.orchestration import get_client

    run_id = runtime.flow_run.id
    if not run_id:
        return
    with get_client(sync_client=True) as client:
        current = client.read_flow_run(run_id).tags or []
        client.update_flow_run(run_id, tags=[*current, *(t for t in tags if t not in current)])


def _emit(event: str, root: Path, payload: Mapping[str, Any]) -> None:
    from prefect.events import emit_event

    with contextlib.suppress(Exception):  # an event is a notification hook, never a reason to fail
        emit_event(
            event=event,
            resource={"prefect.resource.id": f"canaryaudit.workspace.{root}", "prefect.resource.name": root.name},
            payload=dict(payload),
        )


# ===================================================================== audit


@task(name="params-check", retries=0, cache_policy=NO_CACHE)
def check_params(workspace: str, params_file: str | None, overrides: list[str]) -> dict[str, Any]:
    """Validate the params this run will use (a failure here is never retried)."""
    resolved = orc.resolve_params(Path(workspace), params_file, overrides)
    train = resolved.get("train") or {}
    variants = [*(train.get("variants") or {}), *(train.get("external") or {})]  # as Params.train.audited
    get_run_logger().info("params OK; audited models: %s", ", ".join(variants) or "(none)")
    return {"variants": variants}


@task(
    name="dvc-stage",
    task_run_name="{stage}",
    retry_condition_fn=_retry_condition,
    cache_policy=NO_CACHE,
)
def run_stage(workspace: str, stage: str, parent_run_id: str | None) -> dict[str, Any]:
    """``dvc repro --single-item STAGE`` with the stage's output in this task's log."""
    logger = get_run_logger()
    result = orc.repro_stage(Path(workspace), stage, orc.stage_env(parent_run_id), log=logger.info)
    logger.info("%s: %s in %.1f s", stage, "ran" if result.ran else "up to date, skipped by DVC", result.seconds)
    return {"stage": result.stage, "status": result.status, "seconds": round(result.seconds, 3)}


@flow(name="audit", description="canaryaudit: the DVC pipeline, one task per stage, then the privacy gate")
def audit(
    workspace: str | None = None,
    params_file: str | None = None,
    overrides: list[str] | None = None,
    variants: list[str] | None = None,
    targets: list[str] | None = None,
    retries: dict[str, int] | None = None,
    default_retries: int = 2,
    retry_backoff_seconds: float = 10.0,
    fail_on_gate: bool = orc.FAIL_ON_GATE,
    lock_timeout_seconds: float | None = None,
) -> dict[str, Any]:
    """Run the audit pipeline of ``workspace`` and return the gate verdict.

    Args:
        workspace: the DVC workspace (default: the one containing the current directory).
        params_file: params for this run instead of the workspace's params.yaml.
        overrides: ``dotted.key=value`` overrides (like ``dvc exp run -S``), applied on top.
        variants: subset of ``train.variants`` to audit (default: all); the stages
            aggregating every variant (the report) are then skipped.
        targets: run only these stages (or foreach groups) and what they depend on.
        retries: retries per stage name (``train@dp``) or group (``train``) on a transient failure.
        default_retries: retries of the other stages; a validation failure (stage exit 2) is never retried.
        retry_backoff_seconds: first retry delay; it doubles with each further retry.
        fail_on_gate: a failed gate fails the flow run (after logging and the artifact).
        lock_timeout_seconds: give up waiting for another audit of this workspace after this long (None: wait).
    """
    logger = get_run_logger()
    root = Path(workspace).resolve() if workspace else find_workspace_root()
    if not (root / "dvc.yaml").exists():
        raise CanaryAuditError(f"{root}: no dvc.yaml; not a canaryaudit workspace")
    overrides = list(overrides or [])
    run_info = _flow_run_info()
    started = time.perf_counter()
    with orc.workspace_lock(root, lock_timeout_seconds, on_wait=logger.warning, who=f"flow run {run_info.get('name', '')}"):
        checked = check_params(str(root), params_file, overrides)
        with orc.applied_params(root, params_file, overrides, log=logger.info):
            stages = orc.list_stages(root)
            selected, skipped = orc.select_stages(stages, targets, variants, checked["variants"])
            for name, why in skipped.items():
                logger.info("not running %s: %s", name, why)
            logger.info("stages, in order: %s", ", ".join(s.name for s in selected))
            mlflow_run, tracker = _start_mlflow(root, run_info, overrides, variants, logger)
            results, verdict, mlflow_run = _run_stages(root, stages, selected, mlflow_run, tracker,
                                                       retries, default_retries, retry_backoff_seconds, logger)
    _report_gate(root, verdict, mlflow_run, tracker, logger)
    summary = {
        "workspace": str(root),
        "flow_run_id": run_info.get("id"),
        "mlflow_run_id": mlflow_run,
        "stages": results,
        "skipped": skipped,
        "gate": verdict.as_dict(),
        "seconds": round(time.perf_counter() - started, 2),
    }
    if verdict.status == "failed" and fail_on_gate:
        raise GateFailed(verdict.log_line())
    return summary


def _run_stages(
    root: Path, stages: list[orc.Stage], selected: list[orc.Stage], mlflow_run: str | None,
    tracker: tracking.Tracker | None, retries: dict[str, int] | None, default_retries: int,
    retry_backoff_seconds: float, logger: Any,
) -> tuple[list[dict[str, Any]], orc.GateVerdict, str | None]:
    """One task a stage, in order, stopping at the first failure; then the gate verdict.

    Closes the MLflow parent run either way: FINISHED (deleted when every stage was up to date and
    nothing was logged; the returned run id is then None) or FAILED with the failed stage tagged.
    """
    outcome = "FAILED"
    results: list[dict[str, Any]] = []
    try:
        for stage in selected:
            n = orc.retries_for(stage, retries, default_retries)
            runner = run_stage.with_options(
                retries=n, retry_delay_seconds=exponential_backoff(retry_backoff_seconds) if n else 0
            )
            try:
                results.append(runner(str(root), stage.name, mlflow_run))
            except orc.StageFailed as exc:
                logger.error("stage %s failed (%s); stopping the audit", stage.name, exc.kind)
                if tracker and mlflow_run:
                    tracker.set_tags(mlflow_run, {"canaryaudit.failed_stage": stage.name})
                raise
        verdict = orc.read_gate(root, stages, [s.name for s in selected])
        outcome = "FINISHED"
    finally:
        if tracker and mlflow_run and outcome == "FINISHED":
            complete_parent_run(tracker, mlflow_run, root / "reports" / "summary.json")
        ran = any(r.get("status") == "ran" for r in results)
        if tracker and mlflow_run and not tracker.close_pipeline_run(mlflow_run, outcome, stages_ran=ran):
            logger.info("MLflow run %s logged nothing (every stage up to date): deleted", mlflow_run)
            mlflow_run = None
    return results, verdict, mlflow_run


def _start_mlflow(
    root: Path, run_info: Mapping[str, str], overrides: list[str], variants: list[str] | None, logger: Any
) -> tuple[str | None, tracking.Tracker | None]:
    """The MLflow parent run of this audit, tagged with the Prefect flow run (and vice versa)."""
    if not tracking.tracking_enabled():
        return None, None
    tracker = tracking.Tracker(root)
    tags = {"canaryaudit.launcher": "prefect"}
    for key in ("id", "name", "url", "api_url"):
        if run_info.get(key):
            tags[f"prefect.flow_run_{key}"] = run_info[key]
    if overrides:
        tags["canaryaudit.overrides"] = " ".join(overrides)[:5000]
    if variants:
        tags["canaryaudit.variants"] = ",".join(variants)
    run_id = tracker.start_pipeline_run(tags=tags)
    logger.info("MLflow parent run %s (%s)", run_id, tracking.tracking_uri(root))
    try:
        _add_flow_run_tags(f"mlflow-run:{run_id}")
    except Exception as exc:  # noqa: BLE001 - a missing tag must not stop the audit
        logger.warning("could not tag the flow run with the MLflow run id: %s", exc)
    return run_id, tracker


def _report_gate(root: Path, verdict: orc.GateVerdict, mlflow_run: str | None, tracker: Any, logger: Any) -> None:
    """Log the verdict; on a failure also a markdown artifact and a ``canaryaudit.gate.failed`` event."""
    if tracker and mlflow_run:
        with contextlib.suppress(Exception):
            tracker.set_tags(mlflow_run, {"canaryaudit.gate": verdict.status})
    with contextlib.suppress(Exception):
        _add_flow_run_tags(f"gate:{verdict.status}")
    if verdict.status == "failed":
        logger.error(verdict.log_line())
        from prefect.artifacts import create_markdown_artifact

        create_markdown_artifact(
            markdown=orc.gate_markdown(verdict, root, mlflow_run),
            key=GATE_ARTIFACT_KEY,
            description=f"failed privacy gate rules for {root}",
        )
        _emit(
            "canaryaudit.gate.failed",
            root,
            {"failed_rules": verdict.failed_rules, "report": verdict.report_file, "mlflow_run_id": mlflow_run},
        )
    elif verdict.status == "passed":
        logger.info(verdict.log_line())
        _emit("canaryaudit.gate.passed", root, {"rules": len(verdict.rules), "mlflow_run_id": mlflow_run})
    else:
        logger.warning(verdict.log_line())


# ===================================================================== sweep

#: Where a sweep's points run, keyed by ``--task-runner``: a builder of a Prefect task runner from
#: (address, workers). Every point is one task, so the runner decides which machine runs it.
SWEEP_RUNNERS: Registry[Any] = Registry("sweep task runner")


@SWEEP_RUNNERS.register("thread")
def _thread_runner(address: str | None, workers: int) -> Any:
    """Threads of this process (each point runs its own ``dvc repro`` subprocess)."""
    from prefect.task_runners import ThreadPoolTaskRunner

    if address:
        raise CanaryAuditError("--address names a Dask scheduler: use it with --task-runner dask")
    return ThreadPoolTaskRunner(max_workers=max(1, workers))


@SWEEP_RUNNERS.register("dask")
def _dask_runner(address: str | None, workers: int) -> Any:
    """Prefect's Dask task runner (prefect-dask): the scheduler at ``address`` (``tcp://host:8786``), or a
    local cluster of ``workers`` single-threaded worker processes listening on 127.0.0.1 only."""
    try:
        from prefect_dask import DaskTaskRunner
    except ImportError:
        raise CanaryAuditError("--task-runner dask needs prefect-dask: pip install 'canaryaudit[dask]'") from None
    if address:
        return DaskTaskRunner(address=address)
    return DaskTaskRunner(cluster_class="distributed.LocalCluster",
                          cluster_kwargs={"n_workers": max(1, workers), "threads_per_worker": 1, "processes": True,
                                          "host": "127.0.0.1", "dashboard_address": None})


def sweep_task_runner(kind: str = "thread", address: str | None = None, workers: int = 1) -> Any:
    """The task runner for ``sweep.with_options(task_runner=...)``; an unknown kind lists the known ones."""
    return SWEEP_RUNNERS.get(kind)(address, workers)


def worker_identity() -> str:
    """Which worker ran a point: the Dask worker's address, else host:pid of this process."""
    import os
    import socket

    try:
        from distributed import get_worker

        return str(get_worker().address)
    except (ImportError, ValueError):  # not inside a Dask worker
        return f"{socket.gethostname()}:{os.getpid()}"


@task(name="sweep-plan", retries=0, cache_policy=NO_CACHE)
def plan_sweep(workspace: str, params_file: str | None, grid: dict[str, list[Any]]) -> list[dict[str, Any]]:
    """Every grid point with its validated params (an invalid point fails the sweep before anything runs)."""
    points = orc.grid_points(grid)
    planned = []
    for i, point in enumerate(points):
        params = orc.point_params(Path(workspace), params_file, point)
        planned.append({"point": f"p{i:02d}", "label": orc.point_label(point), "params": point, "resolved": params,
                        "params_text": orc.point_params_text(Path(workspace), params_file, params)})
    get_run_logger().info("%d points over %s", len(planned), ", ".join(grid))
    return planned


@task(
    name="sweep-point",
    task_run_name="{point_id}",
    retry_condition_fn=_retry_condition,
    cache_policy=NO_CACHE,
)
def run_point(
    workspace: str,
    point_id: str,
    resolved: dict[str, Any],
    params_text: str,
    work_dir: str,
    targets: list[str] | None,
    variants: list[str] | None,
    mlflow_run: str | None,
    share_cache: bool,
) -> dict[str, Any]:
    """One grid point: its own workspace copy, ``dvc repro`` of the selected stages, its results."""
    logger = get_run_logger()
    root = Path(workspace)
    ws = Path(work_dir) / point_id
    orc.prepare_point_workspace(root, ws, params_text, orc.list_stages(root), share_cache)
    stages = orc.list_stages(ws)  # the point's params may change the foreach expansion
    train = resolved.get("train") or {}
    known = [*(train.get("variants") or {}), *(train.get("external") or {})]
    selected, _ = orc.select_stages(stages, targets, variants, known)
    audited = [v for v in known if (not variants or v in variants) and any(s.key == v for s in selected)]
    env = orc.stage_env(mlflow_run, {"MLFLOW_TRACKING_URI": tracking.tracking_uri(root)} if mlflow_run else None)
    with orc.workspace_lock(ws, on_wait=logger.warning, who=f"sweep point {point_id}"):
        run = orc.run_dvc(ws, ["repro", *(s.name for s in selected)], point_id, env, log=logger.info)
    results = orc.point_results(ws, selected, audited)  # only what this point's stages produced
    logger.info("%s done in %.1f s: %s", point_id, run.seconds, json.dumps(results))
    return {"results": results, "seconds": round(run.seconds, 2), "workspace": str(ws), "worker": worker_identity()}


@flow(name="sweep", description="canaryaudit: the pipeline over a params grid, compared in a table and a plot")
def sweep(
    grid: dict[str, list[Any]],
    workspace: str | None = None,
    params_file: str | None = None,
    targets: list[str] | None = None,
    variants: list[str] | None = None,
    name: str | None = None,
    output_dir: str | None = None,
    work_dir: str | None = None,
    max_parallel: int = 1,
    retries: int = 1,
    retry_backoff_seconds: float = 10.0,
    share_cache: bool = True,
) -> dict[str, Any]:
    """Run every point of ``grid`` (``{"train.batch_size": [16, 32], ...}``) and compare them.

    Each point runs in its own copy of the workspace (under ``work_dir``, default
    ``.canaryaudit/sweeps/NAME``), so points never share a ``dvc repro`` and can
    run in parallel: ``max_parallel`` points are in flight at once (0: all of them,
    for a task runner that schedules them itself, such as Dask's; see
    :func:`sweep_task_runner`). One MLflow run per point (nested under a sweep run) gets the point's
    values as ``grid.*`` params and its headline metrics; every stage of the point
    logs into it as in a normal audit. Writes ``comparison.csv``,
    ``comparison.md``, ``privacy_utility.svg`` and ``sweep.json`` to
    ``output_dir`` (default ``reports/sweeps/NAME``).
    """
    logger = get_run_logger()
    root = Path(workspace).resolve() if workspace else find_workspace_root()
    name = name or time.strftime("sweep-%Y%m%d-%H%M%S")
    out_dir = Path(output_dir) if output_dir else root / "reports" / "sweeps" / name
    work = Path(work_dir) if work_dir else root / orc.SWEEPS_DIR / name
    planned = plan_sweep(str(root), params_file, grid)

    tracker = tracking.Tracker(root) if tracking.tracking_enabled() else None
    sweep_run, point_runs = _open_sweep_runs(tracker, name, grid, planned, work) if tracker else (None, {})
    runner = run_point.with_options(
        retries=retries, retry_delay_seconds=exponential_backoff(retry_backoff_seconds) if retries else 0
    )

    def submit(p: dict[str, Any]) -> Any:
        return runner.submit(str(root), p["point"], p["resolved"], p["params_text"], str(work), targets, variants,
                             point_runs.get(p["point"]), share_cache)

    def finished(p: dict[str, Any], outcome: dict[str, Any]) -> None:
        if tracker and point_runs:
            _close_point_run(tracker, point_runs[p["point"]], outcome)

    outcomes = _run_bounded(planned, submit, max_parallel, finished, logger)
    points = [{"point": p["point"], "label": p["label"], "params": p["params"], **outcomes[p["point"]]} for p in planned]
    files = _publish_sweep(out_dir, points, grid, name)
    failed = [p["point"] for p in points if p["status"] != "ok"]
    if tracker and sweep_run:
        for path in files.values():
            with contextlib.suppress(Exception):
                tracker.log_artifact(sweep_run, path)
        tracker.finish(sweep_run, "FAILED" if failed else "FINISHED")
    logger.info("sweep %s: %d points, comparison in %s", name, len(points), out_dir)
    summary = {
        "name": name,
        "mlflow_run_id": sweep_run,
        "point_runs": point_runs,
        "points": points,
        "files": {k: str(v) for k, v in files.items()},
    }
    if failed:
        raise SweepFailed(f"sweep {name}: point(s) {', '.join(failed)} failed; see {files['markdown']}")
    return summary


def _open_sweep_runs(
    tracker: tracking.Tracker, name: str, grid: Mapping[str, Any], planned: list[dict[str, Any]], work: Path
) -> tuple[str, dict[str, str]]:
    """The sweep's MLflow run and one nested pipeline run per point, linked to this flow run."""
    info = _flow_run_info()
    sweep_run = tracker.start_sweep_run(
        name, grid, {"canaryaudit.launcher": "prefect", **{f"prefect.flow_run_{k}": v for k, v in info.items() if v}}
    )  # owned by this process: a killed sweep's runs are marked KILLED by the next start
    with contextlib.suppress(Exception):
        _add_flow_run_tags(f"mlflow-run:{sweep_run}")
    return sweep_run, {p["point"]: tracker.start_sweep_point_run(sweep_run, name, p, work / p["point"]) for p in planned}


def _run_bounded(
    planned: list[dict[str, Any]], submit: Any, max_parallel: int, finished: Any, logger: Any
) -> dict[str, dict[str, Any]]:
    """Submit the points with at most ``max_parallel`` in flight (0: all at once); each outcome by point.

    A failed point is recorded (``status: failed`` and its error) and the others go on.
    """
    futures: dict[Any, dict[str, Any]] = {}
    queue = list(planned)
    outcomes: dict[str, dict[str, Any]] = {}
    for _ in range(max_parallel if max_parallel > 0 else len(planned)):
        if queue:
            p = queue.pop(0)
            futures[submit(p)] = p
    while futures:
        done = next(as_completed(list(futures)))
        p = futures.pop(done)
        try:
            outcomes[p["point"]] = {**done.result(), "status": "ok"}
        except Exception as error:  # noqa: BLE001 - a failed point is reported, the others go on
            logger.error("point %s failed: %s", p["point"], error)
            outcomes[p["point"]] = {"results": {}, "status": "failed", "error": str(error)[:2000]}
        finished(p, outcomes[p["point"]])
        if queue:
            nxt = queue.pop(0)
            futures[submit(nxt)] = nxt
    return outcomes


def _close_point_run(tracker: tracking.Tracker, run_id: str, outcome: Mapping[str, Any]) -> None:
    """The point's headline numbers (``variant.V.KEY``, as summary.json's), then FINISHED or FAILED."""
    metrics = {k: x for v, m in outcome["results"].items() for k, x in variant_metrics(v, m).items()}
    if metrics:
        tracker.log_metrics(run_id, metrics)
    tracker.finish(run_id, "FINISHED" if outcome["status"] == "ok" else "FAILED")


def _publish_sweep(out_dir: Path, points: list[dict[str, Any]], grid: Mapping[str, Any], name: str) -> dict[str, Path]:
    """The comparison files, and the markdown table as a Prefect artifact with a link to the plot."""
    from prefect.artifacts import create_markdown_artifact

    files = orc.write_sweep_outputs(out_dir, points, grid, f"sweep {name}")
    markdown = files["markdown"].read_text(encoding="utf-8")
    plot = files["plot"].resolve().as_uri()
    create_markdown_artifact(
        markdown=markdown + f"\nPlot: [{plot}]({plot})\n",
        key=SWEEP_ARTIFACT_KEY,
        description=f"sweep {name}: comparison of {len(points)} points",
    )
    return files
