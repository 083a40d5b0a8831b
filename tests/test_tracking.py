"""Tracking against a real SQLite MLflow store: parent run joined across stages."""

import pytest
from mlflow.tracking import MlflowClient

from canaryaudit import tracking


@pytest.fixture
def store(tmp_path, monkeypatch):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv(tracking.EXPERIMENT_ENV, "test-tracking")
    monkeypatch.delenv(tracking.PARENT_ENV, raising=False)
    return MlflowClient(uri)


def test_flatten_and_numeric_metrics():
    tree = {"a": {"b": 1, "c": [1, 2], "d": True, "e": None, "f": 2.5}}
    assert dict(tracking.flatten(tree)) == {"a.b": 1, "a.c": [1, 2], "a.d": True, "a.e": None, "a.f": 2.5}
    assert tracking.numeric_metrics(tree, "s") == {"s.a.b": 1.0, "s.a.f": 2.5}


def test_stages_join_one_parent_run(tmp_path, store):
    tracker = tracking.Tracker(tmp_path)
    first = tracker.log_stage("prepare", {"data": {"seed": 1}}, {"prepare.docs": 10.0})
    second = tracking.Tracker(tmp_path).log_stage("sanitize", {"sanitize": {"enabled": True}}, {"sanitize.found": 3.0})
    assert first == second
    run = store.get_run(first)
    assert run.data.params == {"data.seed": "1", "sanitize.enabled": "True"}
    assert run.data.metrics == {"prepare.docs": 10.0, "sanitize.found": 3.0}
    assert run.data.tags["canaryaudit.role"] == "pipeline"
    assert run.data.tags["canaryaudit.stage.sanitize"] == "done"


def test_changed_params_start_a_new_parent_run(tmp_path, store):
    tracker = tracking.Tracker(tmp_path)
    first = tracker.log_stage("prepare", {"data": {"seed": 1}}, {})
    second = tracker.log_stage("prepare", {"data": {"seed": 2}}, {})
    assert first != second
    assert store.get_run(first).info.status == "FINISHED"
    assert store.get_run(second).data.params["data.seed"] == "2"


def test_env_parent_run_wins_and_finish_closes(tmp_path, store, monkeypatch):
    tracker = tracking.Tracker(tmp_path)
    parent = tracker.start_pipeline_run(run_name="from-cli")
    (tmp_path / ".canaryaudit" / "parent_run").unlink()
    monkeypatch.setenv(tracking.PARENT_ENV, parent)
    assert tracking.log_stage("canaries", {"canaries": {"seed": 3}}, {"canaries.n": 4.0}) == parent
    tracker.finish_pipeline_run(parent)
    assert store.get_run(parent).info.status == "FINISHED"


def test_disabled(monkeypatch):
    monkeypatch.setenv(tracking.DISABLE_ENV, "0")
    assert tracking.log_stage("x", {}, {}) is None
