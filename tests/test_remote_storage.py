"""Remote storage, tested locally: a DVC remote (a local folder) carries trained models from one clone to
another, and stages log to an MLflow tracking server (started on 127.0.0.1) instead of SQLite."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import TINY_PARAMS, run_stage, write_params
from tests.test_e2e_dvc import _dvc, _repo_copy, write_full_params

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("mlflow_tracking")]  # asserts what MLflow logged

GIT_ENV = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@example.com"}


def _git(ws: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=ws, check=True, capture_output=True, env={**os.environ, **GIT_ENV})


def test_models_trained_in_one_clone_are_audited_in_another_through_a_dvc_remote(tmp_path):
    params = {**TINY_PARAMS, "pretrain": {**TINY_PARAMS["pretrain"], "source": "none"}}
    params["train"] = {**params["train"], "variants": {"nonprivate": {}}}
    params["extract"] = {**params["extract"], "reference_variant": "nonprivate"}
    params["gate"] = {"rules": []}
    trainer = _repo_copy(tmp_path / "trainer")
    write_full_params(trainer / "params.yaml", params)
    _dvc(trainer, "repro", "train@nonprivate")
    _dvc(trainer, "remote", "add", "-d", "store", str(tmp_path / "remote"))
    _dvc(trainer, "push")
    _git(trainer, "add", "-A")
    _git(trainer, "commit", "-qm", "trained")

    auditor = tmp_path / "auditor"  # another machine: the git history, no data or model
    subprocess.run(["git", "clone", "-q", str(trainer), str(auditor)], check=True)
    assert not (auditor / "models/nonprivate").exists()
    _dvc(auditor, "pull", "--with-deps", "train@nonprivate")  # what was trained and what it was trained on
    weights = (auditor / "models/nonprivate/model.safetensors").read_bytes()
    assert weights == (trainer / "models/nonprivate/model.safetensors").read_bytes()
    assert "up to date" in _dvc(auditor, "status", "train@nonprivate")
    out = _dvc(auditor, "repro", "exposure@nonprivate")
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


def test_stages_log_to_an_mlflow_tracking_server(workspace, tiny_params, mlflow_server, monkeypatch):
    from mlflow.tracking import MlflowClient

    tiny_params["pretrain"]["source"] = "none"
    tiny_params["train"]["variants"] = {"nonprivate": {}}
    tiny_params["extract"]["reference_variant"] = "nonprivate"
    tiny_params["gate"]["rules"] = []
    write_params(workspace / "params.yaml", tiny_params)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server)
    for stage in ("prepare", "sanitize", "pretrain", "canaries"):
        run_stage(workspace, stage)
    run_stage(workspace, "train", "--variant", "nonprivate", "--out", "models/nonprivate", "--report",
              "reports/train/nonprivate.json", "--plot", "reports/train/nonprivate_loss.csv")
    assert not (workspace / "mlflow.db").exists()  # nothing went to a local SQLite store
    client = MlflowClient(mlflow_server)
    experiments = [e.experiment_id for e in client.search_experiments()]
    runs = client.search_runs(experiments, filter_string="tags.`canaryaudit.variant` = 'nonprivate'")
    assert len(runs) == 1 and runs[0].info.status == "FINISHED"
    assert "test_perplexity" in runs[0].data.metrics
    artifacts = {a.path for a in client.list_artifacts(runs[0].info.run_id)}
    assert "model_card.json" in artifacts  # uploaded through the server (--artifacts-destination)
    assert not (workspace / "mlartifacts").exists()  # the server's artifact root, not a local folder of a worker
    assert any(p.name == "model_card.json" for p in (workspace / "artifacts").rglob("*"))  # the server's tmp_path
