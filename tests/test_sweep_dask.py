"""Sweeps on Dask (prefect-dask): a 2-point sweep on a distributed.LocalCluster bound to 127.0.0.1."""

from __future__ import annotations

import copy
import csv
import shutil

import pytest

from canaryaudit.errors import CanaryAuditError, RegistryError
from canaryaudit.io import read_json
from tests.conftest import TINY_PARAMS, repo_workspace, run_stage

pytestmark = pytest.mark.slow


def _rows(ws, name: str) -> list[dict[str, str]]:
    return list(csv.DictReader((ws / "reports" / "sweeps" / name / "comparison.csv").open()))


@pytest.mark.slow(minutes=1.0)
def test_two_points_run_on_dask_workers_and_match_a_local_run(tmp_path, harness, monkeypatch):
    from distributed import LocalCluster
    from prefect.settings import PREFECT_API_URL

    from canaryaudit.flows import sweep, sweep_task_runner

    # The workers are other processes: they report task states to the test's Prefect server
    monkeypatch.setenv("PREFECT_API_URL", PREFECT_API_URL.value())
    params = copy.deepcopy(TINY_PARAMS)
    params["train"]["max_steps"] = 3
    params["pretrain"]["source"] = "none"
    ws = repo_workspace(tmp_path / "repo", params)
    grid = {"train.seed": [0, 1]}
    common = {"grid": grid, "workspace": str(ws), "targets": ["train@nonprivate"], "variants": ["nonprivate"]}
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                      dashboard_address=None) as cluster:
        workers = set(cluster.scheduler_info["workers"])
        assert all(address.startswith("tcp://127.0.0.1:") for address in workers)
        runner = sweep_task_runner("dask", cluster.scheduler_address)
        on_dask = sweep.with_options(task_runner=runner)(name="dask", max_parallel=0, **common)
    ran_on = [p["worker"] for p in on_dask["points"]]
    assert set(ran_on) <= workers, (ran_on, workers)  # each point ran on a worker of the cluster

    # The second point's training again in this process, on a copy of its workspace without its model, report
    # or checkpoint (every entry named after the variant): computed again, not restored from the DVC cache the
    # workers filled; the same numbers (the threaded sweep itself is test_sweep.py's)
    [second] = [p for p in on_dask["points"] if p["point"] == "p01"]
    again = shutil.copytree(second["workspace"], tmp_path / "again", symlinks=True,
                            ignore=shutil.ignore_patterns("nonprivate", "nonprivate.json", "nonprivate_loss.csv"))
    assert not (again / "models" / "nonprivate").exists() and (again / "data" / "augmented" / "train.jsonl").exists()
    run_stage(again, "train", "--variant", "nonprivate", "--base", "models/pretrain", "--out", "models/nonprivate",
              "--report", "reports/train/nonprivate.json", "--plot", "reports/train/nonprivate_loss.csv")
    here = read_json(again / "reports" / "train" / "nonprivate.json")
    dask_rows = _rows(ws, "dask")
    assert [r["train.seed"] for r in dask_rows] == ["0", "1"]
    assert float(dask_rows[1]["test_perplexity"]) == here["test_perplexity"] > 1  # deterministic CPU
    assert dask_rows[0]["test_perplexity"] != dask_rows[1]["test_perplexity"]  # the seeds differ


def test_sweep_task_runner_names_and_errors():
    from prefect.task_runners import ThreadPoolTaskRunner
    from prefect_dask import DaskTaskRunner

    from canaryaudit.flows import sweep_task_runner

    assert isinstance(sweep_task_runner("thread", None, 3), ThreadPoolTaskRunner)
    assert isinstance(sweep_task_runner("dask", "tcp://127.0.0.1:8786"), DaskTaskRunner)
    with pytest.raises(RegistryError, match="unknown sweep task runner 'ray'; known: thread, dask"):
        sweep_task_runner("ray")
    with pytest.raises(CanaryAuditError, match="--address names a Dask scheduler"):
        sweep_task_runner("thread", "tcp://127.0.0.1:8786")
