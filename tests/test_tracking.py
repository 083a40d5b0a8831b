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
    assert run.data.params == {"data.seed": "1", "sanitize.enabled": "true"}  # JSON, as params.yaml says it
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


def test_param_values_are_json_not_python_reprs():
    assert [tracking._param_value(v) for v in (True, None, [1, 4], (1, 2), 0.5, "file:a.txt", {"a": 1})] == [
        "true", "null", "[1, 4]", "[1, 2]", "0.5", "file:a.txt", '{"a": 1}']


def test_a_run_that_logged_nothing_is_deleted_and_one_that_did_is_kept(tmp_path, store):
    tracker = tracking.Tracker(tmp_path)
    empty = tracker.start_pipeline_run(tags={"canaryaudit.launcher": "cli"})
    assert tracker.close_pipeline_run(empty) is False
    assert store.get_run(empty).info.lifecycle_stage == "deleted"
    busy = tracker.start_pipeline_run(tags={"canaryaudit.launcher": "cli"})
    child = tracker.start_variant_run("train", "dp", {"train": {"epochs": 1}})
    tracker.finish(child)
    assert tracker.close_pipeline_run(busy) is True and store.get_run(busy).info.lifecycle_stage == "active"
    failed = tracker.start_pipeline_run(tags={"canaryaudit.launcher": "cli"})
    assert tracker.close_pipeline_run(failed, "FAILED") is True  # a failure is kept, even empty
    assert store.get_run(failed).info.status == "FAILED"


def test_provenance_tags_and_dataset_inputs(tmp_path, store):
    tracker = tracking.Tracker(tmp_path)
    run_id = tracker.start_pipeline_run()
    provenance = {"git": {"commit": "abc123", "dirty": True}, "params_sha256": "p" * 64,
                  "data_sha256": {"raw/train.jsonl": "d" * 64}, "model_sha256": {"dp": "m" * 64}}
    tracking.log_provenance(tracker, run_id, provenance)
    run = store.get_run(run_id)
    assert run.data.tags["canaryaudit.git_commit"] == "abc123" and run.data.tags["canaryaudit.git_dirty"] == "true"
    assert run.data.tags["mlflow.source.git.commit"] == "abc123"
    assert run.data.tags["canaryaudit.params_sha256"] == "p" * 64
    assert run.data.tags["canaryaudit.model_sha256.dp"] == "m" * 64
    [dataset] = run.inputs.dataset_inputs
    assert dataset.dataset.name == "raw/train.jsonl" and dataset.dataset.source == "data/raw/train.jsonl"
    assert {t.key: t.value for t in dataset.tags}["sha256"] == "d" * 64
