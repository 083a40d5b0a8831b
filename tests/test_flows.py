"""The Prefect audit flow, the schedule and the orchestration helpers.

Fast unit tests of ``canaryaudit.orchestration`` first; then flows against
``prefect_test_harness``: on a throwaway DVC pipeline of tiny shell stages
(order, retries, validation failures, two audits at once) and once on the real
pipeline (a copy of the shared tiny pipeline), through the report and the gate verdict.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
import yaml

from canaryaudit import orchestration as orc
from canaryaudit.errors import CanaryAuditError, ParamsError
from tests.conftest import REPO, TINY_PARAMS, full_params, write_full_params

pytestmark = pytest.mark.usefixtures("mlflow_tracking")  # these tests look at what MLflow logged

# ============================================================ helpers


def fake_workspace(path: Path, stages: dict, files: dict[str, str] | None = None) -> Path:
    """A DVC workspace (no git) whose stages are tiny Python one-liners, with valid tiny params."""
    (path / ".dvc").mkdir(parents=True)
    (path / ".dvc" / "config").write_text("[core]\n    no_scm = true\n    analytics = false\n", encoding="utf-8")
    (path / "dvc.yaml").write_text(yaml.safe_dump({"stages": stages}, sort_keys=False), encoding="utf-8")
    (path / "params.yaml").write_text(yaml.safe_dump(full_params(TINY_PARAMS), sort_keys=False), encoding="utf-8")
    for rel, text in (files or {}).items():
        (path / rel).write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def task_runs(flow_run_id) -> dict[str, list]:
    """Task runs of a flow run by name (stage tasks are named after their stage)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    with get_client(sync_client=True) as client:
        runs = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])))
    out: dict[str, list] = {}
    for run in runs:
        out.setdefault(run.name, []).append(run)
    return out


def flow_run(flow_run_id):
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        return client.read_flow_run(flow_run_id)


STAGE_A = {"cmd": "python -c \"open('a.txt','w').write('a')\"", "outs": ["a.txt"]}


# ============================================================ orchestration: pure helpers


def _stage(name: str, upstream: tuple[str, ...] = (), outs: tuple[str, ...] = ()) -> orc.Stage:
    group, _, key = name.partition("@")
    return orc.Stage(name, group, key or None, upstream, (), outs)


PIPELINE = [
    _stage("prepare"),
    _stage("canaries", ("prepare",)),
    *[_stage(f"train@{v}", ("canaries",)) for v in ("nonprivate", "dp", "reference")],
    *[_stage(f"exposure@{v}", (f"train@{v}",)) for v in ("nonprivate", "dp", "reference")],
    *[_stage(f"extract@{v}", (f"train@{v}", "train@reference")) for v in ("nonprivate", "dp", "reference")],
    _stage("report", tuple(f"{s}@{v}" for s in ("exposure", "extract") for v in ("nonprivate", "dp", "reference")),
           (orc.GATE_FILE,)),
]
VARIANTS = ["nonprivate", "dp", "reference"]


def test_select_stages_targets_variants_and_what_is_skipped():
    every, skipped = orc.select_stages(PIPELINE)
    assert [s.name for s in every] == [s.name for s in PIPELINE] and not skipped

    upto, skipped = orc.select_stages(PIPELINE, targets=["exposure@dp"])
    assert [s.name for s in upto] == ["prepare", "canaries", "train@dp", "exposure@dp"]
    assert skipped["report"] == "not a target or upstream of one"

    group, _ = orc.select_stages(PIPELINE, targets=["train"])
    assert [s.name for s in group] == ["prepare", "canaries", "train@nonprivate", "train@dp", "train@reference"]

    subset, skipped = orc.select_stages(PIPELINE, variants=["dp"], known_variants=VARIANTS)
    names = [s.name for s in subset]
    # extract@dp needs the reference model, so train@reference comes along; the report needs every variant
    assert names == ["prepare", "canaries", "train@dp", "train@reference", "exposure@dp", "extract@dp"]
    assert "variants outside the subset" in skipped["report"] and "exposure@nonprivate" in skipped["report"]
    assert skipped["exposure@reference"] == "variant reference not in the subset"

    with pytest.raises(ParamsError, match="unknown variant"):
        orc.select_stages(PIPELINE, variants=["dpp"], known_variants=VARIANTS)
    with pytest.raises(CanaryAuditError, match="unknown stage 'trian'"):
        orc.select_stages(PIPELINE, targets=["trian"])


def test_failures_are_classified_and_retries_resolved():
    out = "Running stage 'x':\nERROR: failed to reproduce 'x': failed to run: python -c 'exited with 1', exited with {}"
    assert orc.classify_failure(255, out.format(2)) == ("validation", 2)
    assert orc.classify_failure(255, out.format(1)) == ("transient", 1)
    assert orc.classify_failure(255, out.format(-9)) == ("transient", -9)
    assert orc.classify_failure(255, out.format(130)) == ("interrupted", 130)
    assert orc.classify_failure(255, "ERROR: failed to reproduce 'x': dependency 'a' does not exist") == ("pipeline", None)
    assert orc.classify_failure(255, "ERROR: Unable to acquire lock. Most likely another DVC process is running") == (
        "transient", None)

    train_dp = _stage("train@dp")
    assert orc.retries_for(train_dp, {"train@dp": 0, "train": 5}, 2) == 0
    assert orc.retries_for(train_dp, {"train": 5}, 2) == 5
    assert orc.retries_for(_stage("prepare"), {"train": 5}, 2) == 2
    assert orc.parse_retries(["train=3", "exposure@dp=0"]) == {"train": 3, "exposure@dp": 0}
    with pytest.raises(CanaryAuditError, match="STAGE=COUNT"):
        orc.parse_retries(["train"])


def test_gate_verdicts_missing_skipped_failed(tmp_path):
    stages = [_stage("prepare"), _stage("report", ("prepare",), (orc.GATE_FILE,))]
    assert orc.read_gate(tmp_path, stages[:1], ["prepare"]).status == "missing"
    assert "no gate configured" in orc.read_gate(tmp_path, stages[:1], ["prepare"]).reason
    assert orc.read_gate(tmp_path, stages, ["prepare"]).status == "skipped"
    assert "is missing" in orc.read_gate(tmp_path, stages, ["prepare", "report"]).reason

    (tmp_path / "reports").mkdir()
    rules = [
        {"name": "dp-exposure", "check": "exposure", "variant": "dp", "max": 20.0, "value": 24.3, "passed": False,
         "reason": "exposure of dp canaries inserted 64x is 24.3 bits > 20.0"},
        {"name": "dp-auc", "check": "membership_auc", "variant": "dp", "max": 0.6, "value": 0.5, "passed": True,
         "reason": "ok"},
    ]
    (tmp_path / orc.GATE_FILE).write_text(json.dumps({"passed": False, "rules": rules}))
    (tmp_path / orc.REPORT_FILE).write_text("<html></html>")
    verdict = orc.read_gate(tmp_path, stages, ["prepare", "report"])
    assert verdict.status == "failed" and verdict.passed is False
    assert [r["name"] for r in verdict.failed_rules] == ["dp-exposure"]
    assert verdict.log_line().startswith("GATE FAILED: 1 of 2 rules failed: exposure of dp canaries")
    md = orc.gate_markdown(verdict, tmp_path, "run123")
    assert "| dp-exposure | exposure | dp | 24.3 | 20 | exposure of dp canaries" in md
    assert (tmp_path / orc.REPORT_FILE).resolve().as_uri() in md and "run123" in md and "dp-auc" not in md


def test_overrides_are_written_round_trip_and_kept(tmp_path):
    original = "# my comments\n" + yaml.safe_dump(full_params(TINY_PARAMS), sort_keys=False).replace(
        "d: 0123456789", 'd: "0123456789"  # digits')  # PyYAML writes it bare: DVC would read a number
    (tmp_path / "params.yaml").write_text(original)
    with orc.applied_params(tmp_path, None, ["train.epochs=2"]) as resolved:
        assert resolved["train"]["epochs"] == 2
    text = (tmp_path / "params.yaml").read_text()  # kept after the run, as `dvc exp run -S` keeps it
    assert yaml.safe_load(text)["train"]["epochs"] == 2
    assert text.startswith("# my comments\n") and 'd: "0123456789"  # digits' in text
    assert [a for a, b in zip(original.splitlines(), text.splitlines()) if a != b] == ["  epochs: 1"]

    before = (tmp_path / "params.yaml").read_text()
    with pytest.raises(ParamsError, match="train.epochs"), orc.applied_params(tmp_path, None, ["train.epochs=-1"]):
        pass
    assert (tmp_path / "params.yaml").read_text() == before  # invalid: nothing written


def test_workspace_lock_excludes_a_second_holder_and_names_it(tmp_path):
    messages: list[str] = []
    with orc.workspace_lock(tmp_path, who="first"):
        box: dict = {}

        def second() -> None:
            try:
                with orc.workspace_lock(tmp_path, timeout=0.5, on_wait=messages.append):
                    box["got"] = True
            except CanaryAuditError as exc:
                box["error"] = str(exc)

        thread = threading.Thread(target=second)
        thread.start()
        thread.join()
    assert "got" not in box and "still held by pid" in box["error"] and "first" in box["error"]
    assert messages and "waiting for the workspace lock" in messages[0]
    with orc.workspace_lock(tmp_path, timeout=0.5):  # released
        pass


def test_canaryaudit_audit_waits_for_the_lock_a_flow_holds(tmp_path, capsys):
    """`canaryaudit audit` runs `dvc repro` only once the workspace lock (held here as a flow holds it) is free."""
    from canaryaudit.cli.audit import run_repro

    box: dict[str, int] = {}
    thread = threading.Thread(target=lambda: box.setdefault("code", run_repro(tmp_path, [], None)))
    with orc.workspace_lock(tmp_path, who="flow run"):
        thread.start()
        thread.join(timeout=1.5)
        assert thread.is_alive() and "code" not in box  # waiting, dvc not started
    thread.join(timeout=120)
    assert box["code"] != 0  # then dvc ran: tmp_path is no DVC repository
    assert "waiting for the workspace lock" in capsys.readouterr().err


def test_list_stages_reads_the_real_pipeline_in_dependency_order():
    stages = orc.list_stages(REPO)
    names = [s.name for s in stages]
    for first, later in (("prepare", "sanitize"), ("sanitize", "canaries"), ("canaries", "train@nonprivate"),
                         ("train@nonprivate", "exposure@nonprivate")):
        assert names.index(first) < names.index(later)
    by_name = {s.name: s for s in stages}
    assert by_name["train@dp"].group == "train" and by_name["train@dp"].key == "dp"
    assert "stages/train.py" in by_name["train@dp"].deps and "models/dp" in by_name["train@dp"].outs
    for stage in stages:
        assert all(names.index(u) < names.index(stage.name) for u in stage.upstream)


# ============================================================ the audit flow on a throwaway pipeline


FLAKY = """
    import os, sys
    if not os.path.exists("flaky.marker"):      # first attempt: a simulated crash
        open("flaky.marker", "w").write("1")
        sys.exit(1)
    open("b.txt", "w").write("b")
"""


@pytest.mark.slow
def test_audit_flow_one_task_per_stage_retries_transient_failure(tmp_path, harness):
    from mlflow.tracking import MlflowClient

    from canaryaudit import tracking
    from canaryaudit.flows import audit

    ws = fake_workspace(
        tmp_path / "ws",
        {
            "a": STAGE_A,
            "flaky": {"cmd": "python flaky.py", "deps": ["a.txt", "flaky.py"], "outs": ["b.txt"]},
            "c": {"cmd": "python -c \"open('c.txt','w').write(open('b.txt').read())\"", "deps": ["b.txt"],
                  "outs": ["c.txt"]},
        },
        {"flaky.py": FLAKY},
    )
    result = audit(workspace=str(ws), retries={"flaky": 2}, default_retries=0, retry_backoff_seconds=0)
    assert [(s["stage"], s["status"]) for s in result["stages"]] == [("a", "ran"), ("flaky", "ran"), ("c", "ran")]
    assert result["gate"]["status"] == "missing" and "no gate configured" in result["gate"]["reason"]

    runs = task_runs(result["flow_run_id"])
    assert {n for n in runs if not n.startswith("params-check")} == {"a", "flaky", "c"}
    assert all(len(v) == 1 for v in runs.values())  # one task run per stage
    assert runs["flaky"][0].run_count == 2 and runs["a"][0].run_count == 1  # retried once, then recovered
    assert all(v[0].state.is_completed() for v in runs.values())

    # tags both ways: the MLflow run names the Prefect flow run and the flow run names the MLflow run
    client = MlflowClient(tracking.tracking_uri(ws))
    mlflow_run = client.get_run(result["mlflow_run_id"])
    assert mlflow_run.info.status == "FINISHED"
    assert mlflow_run.data.tags["prefect.flow_run_id"] == result["flow_run_id"]
    assert mlflow_run.data.tags["canaryaudit.launcher"] == "prefect"
    assert mlflow_run.data.tags["canaryaudit.gate"] == "missing"
    assert f"mlflow-run:{result['mlflow_run_id']}" in flow_run(result["flow_run_id"]).tags

    again = audit(workspace=str(ws), default_retries=0)
    assert [s["status"] for s in again["stages"]] == ["up-to-date"] * 3


@pytest.mark.slow
def test_validation_failure_fails_its_task_without_retries(tmp_path, harness):
    from mlflow.tracking import MlflowClient

    from canaryaudit import tracking
    from canaryaudit.flows import audit

    ws = fake_workspace(
        tmp_path / "ws",
        {
            "a": STAGE_A,
            # what stagekit does on a params or data error: one message, exit 2
            "invalid": {"cmd": "python -c \"import sys; print('data.source: no such file'); sys.exit(2)\"",
                        "deps": ["a.txt"], "outs": ["b.txt"]},
            "after": {"cmd": "python -c \"open('c.txt','w').write('c')\"", "deps": ["b.txt"], "outs": ["c.txt"]},
        },
    )
    state = audit(workspace=str(ws), default_retries=3, retry_backoff_seconds=0, return_state=True)
    assert state.is_failed()
    error = state.result(raise_on_failure=False)
    assert isinstance(error, orc.StageValidationError) and error.kind == "validation" and error.exit_code == 2
    assert "data.source: no such file" in str(error)
    runs = task_runs(state.state_details.flow_run_id)
    assert runs["invalid"][0].run_count == 1 and runs["invalid"][0].state.is_failed()  # 3 retries allowed, none used
    assert "after" not in runs and runs["a"][0].state.is_completed()

    client = MlflowClient(tracking.tracking_uri(ws))
    [parent] = client.search_runs(
        [client.get_experiment_by_name(tracking.experiment_name()).experiment_id],
        filter_string=f"tags.`prefect.flow_run_id` = '{state.state_details.flow_run_id}'",
    )
    assert parent.info.status == "FAILED" and parent.data.tags["canaryaudit.failed_stage"] == "invalid"

    # invalid params: the params-check task fails, no stage runs, the workspace's params.yaml is untouched
    before = (ws / "params.yaml").read_text()
    state = audit(workspace=str(ws), overrides=["train.epochs=-1"], return_state=True)
    assert state.is_failed() and "train.epochs" in str(state.result(raise_on_failure=False))
    runs = task_runs(state.state_details.flow_run_id)
    assert [n for n in runs if not n.startswith("params-check")] == []
    assert (ws / "params.yaml").read_text() == before


SLOW = """
    import json, os, sys, time
    with open("timeline.jsonl", "a") as log:
        log.write(json.dumps({"pid": os.getppid(), "event": "start", "t": time.time()}) + "\\n")
    time.sleep(2.0)
    open("slow.txt", "w").write(str(time.time()))
    with open("timeline.jsonl", "a") as log:
        log.write(json.dumps({"pid": os.getppid(), "event": "end", "t": time.time()}) + "\\n")
"""


@pytest.mark.slow
def test_two_audits_at_once_in_one_workspace_run_one_after_the_other(tmp_path, harness):
    from prefect.settings import PREFECT_API_URL

    ws = fake_workspace(
        tmp_path / "ws",
        {
            "a": STAGE_A,
            "slow": {"cmd": "python slow.py", "deps": ["a.txt"], "outs": ["slow.txt"], "always_changed": True},
            "c": {"cmd": "python -c \"open('c.txt','w').write(open('slow.txt').read())\"", "deps": ["slow.txt"],
                  "outs": ["c.txt"]},
        },
        {"slow.py": SLOW},
    )
    from prefect.client.orchestration import get_client

    env = {**os.environ, "PREFECT_API_URL": PREFECT_API_URL.value(),  # both processes report to the harness server
           "CANARYAUDIT_TRACKING": "0"}  # what they log is not this test's: two MLflow imports and runs less
    cmd = [sys.executable, str(REPO / "pipelines" / "audit.py"), "--workspace", str(ws), "--default-retries", "0",
           "--json"]
    with orc.workspace_lock(ws, who="the test"):  # both flows start while the workspace is busy
        procs = [subprocess.Popen(cmd, cwd=ws, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                 for _ in range(2)]
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and all(p.poll() is None for p in procs):
            with get_client(sync_client=True) as client:
                running = [r for r in client.read_flow_runs()
                           if r.parameters.get("workspace") == str(ws) and r.state and r.state.is_running()]
            if len(running) == 2:
                break
            time.sleep(0.5)
        time.sleep(1.0)  # both flow runs are past their start: each is now waiting for the lock
    outs = [p.communicate(timeout=600) for p in procs]
    for proc, (out, err) in zip(procs, outs):
        assert proc.returncode == 0, err[-3000:]
        assert "waiting for the workspace lock" in err and "the test" in err
    results = [json.loads(out[out.index("{"):]) for out, _ in outs]
    assert all(flow_run(r["flow_run_id"]).state.is_completed() for r in results)

    events = [json.loads(line) for line in (ws / "timeline.jsonl").read_text().splitlines()]
    assert [e["event"] for e in events] == ["start", "end", "start", "end"]  # never interleaved
    assert events[0]["pid"] != events[2]["pid"]
    status = subprocess.run([orc.dvc_executable(), "status", "c"], cwd=ws, capture_output=True, text=True)
    assert status.returncode == 0 and "c.txt" not in status.stdout  # dvc.lock consistent with the outputs
    lock = yaml.safe_load((ws / "dvc.lock").read_text())
    assert set(lock["stages"]) == {"a", "slow", "c"}


# ============================================================ the schedule


@pytest.mark.slow
def test_schedule_builds_a_cron_deployment_and_requires_a_server(tmp_path, harness, capsys):
    import argparse

    import httpx
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from canaryaudit.cli.schedule import add_schedule_arguments, cmd_schedule, schedule_parameters

    ws = fake_workspace(tmp_path / "ws", {"a": STAGE_A})
    parser = argparse.ArgumentParser()
    add_schedule_arguments(parser)
    args = parser.parse_args(["--cron", "0 3 * * *", "--workspace", str(ws), "-S", "train.epochs=2",
                              "--variants", "dp", "--retries", "train=3", "--timezone", "Europe/Paris"])
    params = schedule_parameters(args)
    assert params == {"overrides": ["train.epochs=2"], "retries": {"train": 3}, "default_retries": 2,
                      "fail_on_gate": True, "variants": ["dp"]}

    deployment = orc.build_deployment(args.cron, ws, "nightly", args.timezone, params)
    assert deployment.name == "nightly" and deployment.entrypoint == "canaryaudit.flows.audit"
    [schedule] = deployment.schedules
    assert schedule.schedule.cron == "0 3 * * *" and schedule.schedule.timezone == "Europe/Paris"
    assert deployment.concurrency_limit == 1
    assert deployment.parameters["workspace"] == str(ws.resolve()) and deployment.parameters["variants"] == ["dp"]

    deployment_id = deployment.apply()  # registered on the (harness) server with its schedule
    with get_client(sync_client=True) as client:
        stored = client.read_deployment(deployment_id)
        assert stored.name == "nightly" and [s.schedule.cron for s in stored.schedules] == ["0 3 * * *"]
        assert stored.parameters["overrides"] == ["train.epochs=2"]
        # what the server's scheduler service does every minute: turn the cron into scheduled flow runs
        # (fails with SQLAlchemy 2.1: "Can't evaluate bulk DML statement"; prefect 3.8.8 needs 2.0.x)
        response = httpx.post(f"{PREFECT_API_URL.value()}/deployments/{deployment_id}/schedule",
                              json={"max_runs": 3}, timeout=60)  # one attempt: the client would retry a 503
        assert response.status_code < 300, (
            f"the server cannot turn the schedule into runs ({response.text}); with prefect 3.8.8 that is "
            "SQLAlchemy 2.1 ('Can't evaluate bulk DML statement' in the server log): pin SQLAlchemy 2.0.x")
        from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId

        runs = client.read_flow_runs(deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployment_id])))
    assert len(runs) == 3 and all(r.state.is_scheduled() for r in runs)
    from zoneinfo import ZoneInfo

    starts = sorted(r.expected_start_time.astimezone(ZoneInfo("Europe/Paris")) for r in runs)
    assert all((t.hour, t.minute) == (3, 0) for t in starts) and len({t.date() for t in starts}) == 3

    with pytest.raises(CanaryAuditError, match="not a valid cron expression"):
        orc.build_deployment("every night", ws)

    with temporary_settings(restore_defaults={PREFECT_API_URL}):
        assert cmd_schedule(args) == 2
    err = capsys.readouterr().err
    assert "prefect server start --host 127.0.0.1" in err and "PREFECT_API_URL" in err


# ============================================================ the real pipeline, tiny, through the gate


#: A gate of two rules on the nonprivate variant: one that cannot hold (it fails the gate), one that holds
FAILING_GATE = {
    "rules": [
        {"name": "np-perplexity", "check": "test_perplexity", "variant": "nonprivate", "max": 0.0},  # cannot hold
        {"name": "np-extracted", "check": "extracted_canaries", "variant": "nonprivate", "max": 1000},
    ]
}


def gate_artifacts(key: str) -> list:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    with get_client(sync_client=True) as client:
        return client.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[key])))


@pytest.mark.slow
def test_audit_flow_on_the_real_pipeline_reruns_what_changed_and_gates(tiny_pipeline, tmp_path, harness):
    """The flow over the real dvc.yaml, in a copy of the audited tiny pipeline whose gate rules changed: one task
    per stage in DVC's order, DVC reruns the report alone (what each stage computes and logs when it runs is the
    shared pipeline's test), the verdict, its artifact and tags, the report's numbers in the flow's MLflow run."""
    import copy

    from mlflow.tracking import MlflowClient

    from canaryaudit import tracking
    from canaryaudit.flows import GATE_ARTIFACT_KEY, audit

    ws = tiny_pipeline.copy_to(tmp_path / "repo")
    params = tiny_pipeline.fresh_params()
    params["gate"] = copy.deepcopy(FAILING_GATE)
    write_full_params(ws / "params.yaml", params)
    expected = [s.name for s in orc.list_stages(ws)]
    assert expected[0] == "prepare" and expected[-1] == "report"
    assert {"train@dp", "exposure@nonprivate", "extract@dp", "pii@nonprivate"} <= set(expected)

    result = audit(workspace=str(ws), fail_on_gate=False, default_retries=0)
    assert [s["stage"] for s in result["stages"]] == expected
    assert [s["status"] for s in result["stages"]] == ["up-to-date"] * (len(expected) - 1) + ["ran"]  # the gate changed
    runs = task_runs(result["flow_run_id"])
    assert {n for n in runs if not n.startswith("params-check")} == set(expected)
    assert all(len(v) == 1 and v[0].state.is_completed() for v in runs.values())  # one task run per stage

    gate = result["gate"]
    assert gate["status"] == "failed" and gate["passed"] is False
    assert [r["name"] for r in gate["failed_rules"]] == ["np-perplexity"]
    assert gate["report_file"] == (ws / orc.REPORT_FILE).resolve().as_uri()
    assert json.loads((ws / orc.GATE_FILE).read_text())["passed"] is False
    [artifact] = [a for a in gate_artifacts(GATE_ARTIFACT_KEY) if str(a.flow_run_id) == result["flow_run_id"]]
    assert "np-perplexity" in artifact.data and "np-extracted" not in artifact.data
    assert (ws / orc.REPORT_FILE).resolve().as_uri() in artifact.data

    client = MlflowClient(tracking.tracking_uri(ws))
    run = client.get_run(result["mlflow_run_id"])
    assert run.data.tags["prefect.flow_run_id"] == result["flow_run_id"] and run.data.tags["canaryaudit.gate"] == "failed"
    summary = json.loads((ws / "reports" / "summary.json").read_text())
    assert run.data.metrics["variant.dp.epsilon"] == summary["variants"]["dp"]["epsilon"]  # the report logged here
    assert "gate:failed" in flow_run(result["flow_run_id"]).tags


@pytest.mark.slow
def test_flow_with_overrides_leaves_dvc_status_clean(tmp_path, harness):
    from canaryaudit.flows import audit

    stage = {"cmd": "python -c \"open('a.txt','w').write('a')\"", "outs": ["a.txt"],
             "params": ["train.epochs", "canaries.alphabets"]}  # alphabets: "0123456789" must stay a string
    ws = fake_workspace(tmp_path / "ws", {"a": stage})
    result = audit(workspace=str(ws), overrides=["train.epochs=2"], default_retries=0, fail_on_gate=False)
    assert [s["status"] for s in result["stages"]] == ["ran"]
    dvc = str(Path(sys.executable).with_name("dvc"))
    status = subprocess.run([dvc, "status", "--json"], cwd=ws, capture_output=True, text=True, check=True)
    assert json.loads(status.stdout) == {}  # params.yaml, dvc.lock and the outputs agree
    lock = yaml.safe_load((ws / "dvc.lock").read_text())["stages"]["a"]["params"]["params.yaml"]
    assert lock["train.epochs"] == 2 and lock["canaries.alphabets"]["d"] == "0123456789"


REPORT = """
    import json, os, sys
    os.makedirs("reports", exist_ok=True)
    rules = [{"name": "dp-auc", "check": "membership_auc", "variant": "dp", "max": 0.6, "value": 0.8,
              "passed": False, "reason": "membership AUC of dp is 0.8 > 0.6"},
             {"name": "dp-x", "check": "extracted_canaries", "variant": "dp", "max": 0, "value": 0,
              "passed": True, "reason": "ok"}]
    json.dump({"passed": False, "rules": rules}, open("reports/gate.json", "w"))
    open("reports/index.html", "w").write("<html>report</html>")
"""


@pytest.mark.slow
def test_failed_gate_logs_an_artifact_and_fails_the_flow_when_asked(tmp_path, harness):
    from canaryaudit.flows import GATE_ARTIFACT_KEY, GateFailed, audit

    ws = fake_workspace(
        tmp_path / "ws",
        {"a": STAGE_A,
         "report": {"cmd": "python report.py", "deps": ["a.txt"], "outs": ["reports/index.html"],
                    "metrics": [{"reports/gate.json": {"cache": False}}]}},
        {"report.py": REPORT},
    )
    state = audit(workspace=str(ws), default_retries=0, return_state=True)  # fail_on_gate defaults to True
    assert state.is_failed()
    error = state.result(raise_on_failure=False)
    assert isinstance(error, GateFailed)
    assert str(error).startswith("GATE FAILED: 1 of 2 rules failed: membership AUC of dp is 0.8 > 0.6")
    flow_run_id = str(state.state_details.flow_run_id)
    assert all(r[0].state.is_completed() for r in task_runs(flow_run_id).values())  # the stages themselves passed
    [artifact] = [a for a in gate_artifacts(GATE_ARTIFACT_KEY) if str(a.flow_run_id) == flow_run_id]
    assert "| dp-auc | membership_auc | dp | 0.8 | 0.6 |" in artifact.data and "dp-x" not in artifact.data
    assert (ws / "reports" / "index.html").resolve().as_uri() in artifact.data

    result = audit(workspace=str(ws), fail_on_gate=False, targets=["report"])
    assert result["gate"]["status"] == "failed" and [s["status"] for s in result["stages"]] == ["up-to-date"] * 2
    skipped = audit(workspace=str(ws), targets=["a"])  # the gate stage did not run: no verdict, not a pass
    assert skipped["gate"]["status"] == "skipped" and skipped["gate"]["passed"] is None
