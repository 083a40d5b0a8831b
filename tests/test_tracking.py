"""Tracking against a real SQLite MLflow store: parent run joined across stages, killed runs, moved stores."""

import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml
from mlflow.tracking import MlflowClient

from canaryaudit import tracking

pytestmark = pytest.mark.usefixtures("mlflow_tracking")  # these tests look at what MLflow logged


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
    own_stages = tracker.start_pipeline_run(tags={"canaryaudit.launcher": "prefect"})
    assert tracker.close_pipeline_run(own_stages, stages_ran=True) is True  # stages ran but none logs to MLflow
    assert store.get_run(own_stages).info.lifecycle_stage == "active"


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


# ------------------------------------------------------------ a store moved or copied with its workspace

_ORIGINAL_WORKSPACE = textwrap.dedent("""
    import sys
    from pathlib import Path
    from canaryaudit import tracking
    ws = Path(sys.argv[1])
    tracker = tracking.Tracker(ws)
    done = tracker.start_pipeline_run(tags={"canaryaudit.launcher": "cli"})
    tracker.log_json_artifact(done, {"made_in": "the original workspace"}, "report/note.json")
    tracker.finish_pipeline_run(done)
    left_open = tracker.start_pipeline_run()  # no owner (a stage run by hand): still RUNNING when copied
    print(done, left_open)
""")


def _original_workspace(ws: Path) -> tuple[str, str]:
    """A workspace whose default store (ws/mlflow.db) holds a finished run with an artifact and an open run,
    made by another process, as a real earlier audit would be."""
    ws.mkdir()
    (ws / "params.yaml").write_text("{}\n")
    proc = subprocess.run([sys.executable, "-c", _ORIGINAL_WORKSPACE, str(ws)], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    done, left_open = proc.stdout.split()
    assert (ws / tracking.ARTIFACTS / done / "artifacts" / "report" / "note.json").is_file()
    return done, left_open


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture
def default_store(monkeypatch):
    """No MLFLOW_TRACKING_URI: each workspace uses its own mlflow.db, as a user's would."""
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv(tracking.EXPERIMENT_ENV, "moved")
    monkeypatch.delenv(tracking.PARENT_ENV, raising=False)
    monkeypatch.delenv(tracking.DVC_STAGE_ENV, raising=False)


def test_a_copied_workspace_logs_artifacts_under_the_copy_and_never_into_the_original(tmp_path, default_store):
    original = tmp_path / "original"
    done, left_open = _original_workspace(original)
    copy = tmp_path / "copy"
    shutil.copytree(original, copy)
    before = _files(original)

    tracker = tracking.Tracker(copy)
    client = tracker.client
    assert client.get_experiment(tracker.experiment_id).artifact_location == (copy / tracking.ARTIFACTS).as_uri()
    parent = tracker.pipeline_run_id()
    assert parent == left_open  # the copied state file is joined, and the run now writes here
    child = tracker.start_variant_run("train", "dp", {"train": {"epochs": 1}})
    for run_id in (parent, child):
        tracker.log_json_artifact(run_id, {"run": run_id}, "report/new.json")
        path = copy / tracking.ARTIFACTS / run_id / "artifacts" / "report" / "new.json"
        assert json.loads(path.read_text()) == {"run": run_id}
    tracker.finish(child)
    tracker.finish_pipeline_run(parent)
    assert _files(original) == before  # nothing written to the old workspace: artifacts, store, state file

    # the finished run's artifacts came with the copy: it now reads them there
    assert client.get_run(done).info.artifact_uri == (copy / tracking.ARTIFACTS / done / "artifacts").as_uri()
    assert [a.path for a in client.list_artifacts(done, "report")] == ["report/note.json"]
    assert client.get_experiment(tracker.experiment_id).tags[tracking.ARTIFACT_ROOT_TAG] == tracking.ARTIFACTS
    assert tracking.Tracker(copy).follow_moved_store(client.get_experiment(tracker.experiment_id)) is None  # settled


def test_a_renamed_workspace_keeps_reading_and_writing_its_artifacts(tmp_path, default_store):
    old = tmp_path / "old-name"
    done, _ = _original_workspace(old)
    new = tmp_path / "new-name"
    old.rename(new)
    tracker = tracking.Tracker(new)
    run_id = tracker.start_pipeline_run(tags={"canaryaudit.launcher": "cli"})
    tracker.log_json_artifact(run_id, {"ok": True}, "report/new.json")
    assert (new / tracking.ARTIFACTS / run_id / "artifacts" / "report" / "new.json").is_file()
    assert [a.path for a in tracker.client.list_artifacts(done, "report")] == ["report/note.json"]
    assert not old.exists()  # nothing recreated the old folder


def test_a_store_copied_without_its_artifacts_reads_old_runs_where_they_are(tmp_path, default_store):
    original = tmp_path / "original"
    done, _ = _original_workspace(original)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    shutil.copy(original / "mlflow.db", elsewhere / "mlflow.db")
    (elsewhere / "params.yaml").write_text("{}\n")
    before = _files(original)
    tracker = tracking.Tracker(elsewhere)
    assert tracker.client.get_run(done).info.artifact_uri.startswith((original / tracking.ARTIFACTS).as_uri())
    run_id = tracker.start_pipeline_run(tags={"canaryaudit.launcher": "cli"})
    tracker.log_json_artifact(run_id, {"ok": True}, "report/new.json")
    assert (elsewhere / tracking.ARTIFACTS / run_id / "artifacts" / "report" / "new.json").is_file()
    assert _files(original) == before


def test_an_artifact_location_its_user_chose_is_left_alone(tmp_path, default_store):
    chosen = (tmp_path / "shared-artifacts").as_uri()
    ws = tmp_path / "ws"
    ws.mkdir()
    client = MlflowClient(tracking.tracking_uri(ws))
    client.create_experiment("moved", artifact_location=chosen)
    assert client.get_experiment(tracking.Tracker(ws).experiment_id).artifact_location == chosen


def test_artifact_roots_and_relocated_uris(tmp_path):
    root = tmp_path / "ws"
    assert tracking.local_artifact_root(f"sqlite:///{tmp_path}/db/mlflow.db", root) == tmp_path / "db" / "mlartifacts"
    assert tracking.local_artifact_root("postgresql+psycopg2://u@h/db", root) == root / "mlartifacts"
    assert tracking.local_artifact_root("http://127.0.0.1:5000", root) is None  # the server's artifact root
    assert tracking.sqlite_store_folder("sqlite:///:memory:") is None
    old, new = (tmp_path / "a" / "mlartifacts").as_uri(), (tmp_path / "b" / "mlartifacts").as_uri()
    run = f"{old}/r1/artifacts"
    assert tracking.relocated_uri(run, old, new, running=True) == f"{new}/r1/artifacts"
    assert tracking.relocated_uri(run, old, new, running=False) == f"{new}/r1/artifacts"  # gone from the old place
    (tmp_path / "a" / "mlartifacts" / "r1" / "artifacts").mkdir(parents=True)
    assert tracking.relocated_uri(run, old, new, running=False) is None  # only the old place has them
    (tmp_path / "b" / "mlartifacts" / "r1" / "artifacts").mkdir(parents=True)
    assert tracking.relocated_uri(run, old, new, running=False) == f"{new}/r1/artifacts"  # came along
    assert tracking.relocated_uri("s3://bucket/r1/artifacts", old, new, running=True) is None
    assert tracking.relocated_uri(f"{old}-other/r1", old, new, running=True) is None


# ------------------------------------------------------------ a plain `dvc repro` owns its parent run

_STAGE = textwrap.dedent("""
    import sys
    from pathlib import Path
    from canaryaudit import tracking
    name = sys.argv[2]
    print(tracking.Tracker(Path(sys.argv[1])).log_stage(name, {name: {"seed": 1}}, {f"{name}.done": 1.0}))
""")

# Runs two stages the way DVC does ($SHELL -c CMD with DVC_STAGE set for the command only; "; true"
# keeps the shell between), then is killed before the report stage could close the parent run.
_KILLED_REPRO = textwrap.dedent("""
    import os, shlex, signal, subprocess, sys
    ws, stage = sys.argv[1], sys.argv[2]
    ids = []
    for name in ("prepare", "sanitize"):
        cmd = f"{shlex.quote(sys.executable)} {shlex.quote(stage)} {shlex.quote(ws)} {name}; true"
        done = subprocess.run(["/bin/sh", "-c", cmd], env={**os.environ, "DVC_STAGE": name},
                              capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        ids.append(done.stdout.split()[-1])
    print(os.getpid(), *ids, flush=True)
    os.kill(os.getpid(), signal.SIGKILL)
""")


def test_the_parent_run_of_a_killed_dvc_repro_is_marked_killed_by_the_next_start(tmp_path, store, monkeypatch):
    monkeypatch.delenv(tracking.DVC_STAGE_ENV, raising=False)
    (tmp_path / "stage.py").write_text(_STAGE)
    proc = subprocess.run([sys.executable, "-c", _KILLED_REPRO, str(tmp_path), str(tmp_path / "stage.py")],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    repro_pid, first, second = proc.stdout.split()
    assert first == second  # the second stage joined the parent run: its owner was alive
    parent = store.get_run(first)
    assert parent.data.tags[tracking.PID_TAG] == repro_pid  # the repro, not a stage or its shell
    assert parent.data.tags[tracking.LAUNCHER_TAG] == "dvc" and parent.info.status == "RUNNING"
    assert set(parent.data.metrics) == {"prepare.done", "sanitize.done"}

    next_parent = tracking.Tracker(tmp_path).pipeline_run_id()  # the next repro's first stage
    assert next_parent != first
    killed = store.get_run(first)
    assert killed.info.status == "KILLED"
    assert f"the dvc process {repro_pid} that ran its stages ended" in killed.data.tags[tracking.KILLED_TAG]


def test_dvc_process_is_the_dvc_repro_running_the_stage(tmp_path, monkeypatch):
    """A real `dvc repro`: the stage finds DVC's own process, not its shell."""
    monkeypatch.delenv(tracking.DVC_STAGE_ENV, raising=False)
    assert tracking.dvc_process() is None  # not under DVC
    probe = tmp_path / "probe.py"
    probe.write_text("from pathlib import Path\nfrom canaryaudit.tracking import dvc_process\n"
                     "pid = dvc_process()\n"
                     "Path('found.txt').write_text(Path(f'/proc/{pid}/cmdline').read_text().replace(chr(0), ' '))\n")
    (tmp_path / "dvc.yaml").write_text(yaml.safe_dump(
        {"stages": {"probe": {"cmd": f"{shlex.quote(sys.executable)} probe.py && true", "outs": ["found.txt"]}}}))
    dvc = str(Path(sys.executable).with_name("dvc"))
    env = {**os.environ, "DVC_NO_ANALYTICS": "1"}
    subprocess.run([dvc, "init", "--no-scm", "-q"], cwd=tmp_path, env=env, check=True, timeout=120)
    proc = subprocess.run([dvc, "repro", "--no-commit"], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    cmdline = (tmp_path / "found.txt").read_text().split()
    assert any(Path(arg).name == "dvc" for arg in cmdline) and "repro" in cmdline, cmdline
