"""Remote storage, tested locally: a DVC remote (a local folder) carries trained models from one clone to
another, and stages log to an MLflow tracking server (started on 127.0.0.1) instead of SQLite."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import dvc, git, run_stage, write_full_params

pytestmark = pytest.mark.slow


def test_models_trained_in_one_clone_are_audited_in_another_through_a_dvc_remote(tiny_pipeline, tmp_path):
    trainer = tiny_pipeline.copy_to(tmp_path / "trainer")  # a clone where the pipeline ran
    dvc(trainer, "remote", "add", "-d", "store", str(tmp_path / "remote"))
    dvc(trainer, "push")
    git(trainer, "add", "-A")
    git(trainer, "commit", "-qm", "trained")

    auditor = tmp_path / "auditor"  # another machine: the git history, no data or model
    subprocess.run(["git", "clone", "-q", str(trainer), str(auditor)], check=True)
    assert not (auditor / "models/nonprivate").exists()
    dvc(auditor, "pull", "--with-deps", "train@nonprivate")  # what was trained and what it was trained on
    weights = (auditor / "models/nonprivate/model.safetensors").read_bytes()
    assert weights == (trainer / "models/nonprivate/model.safetensors").read_bytes()
    assert "up to date" in dvc(auditor, "status", "train@nonprivate")
    out = dvc(auditor, "repro", "exposure@nonprivate")
    assert "Running stage 'exposure@nonprivate'" in out and "Running stage 'train@nonprivate'" not in out
    assert (auditor / "reports/exposure/nonprivate.json").exists()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def mlflow_server(tmp_path):
    """``mlflow server`` on 127.0.0.1 with its own SQLite store and artifact folder; its URI."""
    port = _free_port()
    mlflow = str(Path(sys.executable).with_name("mlflow"))
    proc = subprocess.Popen([mlflow, "server", "--host", "127.0.0.1", "--port", str(port),
                             "--backend-store-uri", f"sqlite:///{tmp_path / 'server.db'}",
                             "--artifacts-destination", str(tmp_path / "artifacts"), "--workers", "1"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    uri = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", port)) == 0:
                    break
            assert proc.poll() is None, "mlflow server exited"
            time.sleep(0.5)
        else:
            pytest.fail("mlflow server did not start in 120 s")
        yield uri
    finally:
        proc.terminate()
        proc.wait(timeout=30)


@pytest.mark.usefixtures("mlflow_tracking")  # the stage logs, to the server
def test_stages_log_to_an_mlflow_tracking_server(tiny_pipeline, tmp_path, mlflow_server, monkeypatch):
    from mlflow.tracking import MlflowClient

    workspace = tiny_pipeline.copy_to(tmp_path / "ws")  # the data stages have run; train a variant again
    params = tiny_pipeline.fresh_params()
    params["train"]["max_steps"] = 3  # what it logs, not what it learns
    write_full_params(workspace / "params.yaml", params)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server)
    run_stage(workspace, "train", "--variant", "nonprivate", "--out", "models/again", "--report",
              "reports/train/again.json", "--plot", "reports/train/again_loss.csv", in_process=False)
    assert not (workspace / "mlflow.db").exists()  # nothing went to a local SQLite store
    client = MlflowClient(mlflow_server)
    experiments = [e.experiment_id for e in client.search_experiments()]
    runs = client.search_runs(experiments, filter_string="tags.`canaryaudit.variant` = 'nonprivate'")
    assert len(runs) == 1 and runs[0].info.status == "FINISHED"
    assert "test_perplexity" in runs[0].data.metrics
    artifacts = {a.path for a in client.list_artifacts(runs[0].info.run_id)}
    assert "model_card.json" in artifacts  # uploaded through the server (--artifacts-destination)
    assert not (workspace / "mlartifacts").exists()  # the server's artifact root, not a local folder of a worker
    assert any(p.name == "model_card.json" for p in (tmp_path / "artifacts").rglob("*"))  # the server's folder
