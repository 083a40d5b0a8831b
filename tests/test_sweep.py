"""The sweep: grid parsing, per-point workspaces, results, the comparison table and plot, and a two-point run."""

from __future__ import annotations

import copy
import csv
import json
from pathlib import Path

import pytest
import yaml

from canaryaudit import orchestration as orc
from canaryaudit.errors import ParamsError
from tests.conftest import REPO, TINY_PARAMS, full_params, repo_workspace

pytestmark = pytest.mark.usefixtures("mlflow_tracking")  # these tests look at what MLflow logged


def test_parse_grid_reads_values_as_yaml_and_keeps_brackets_together():
    grid = orc.parse_grid(["train.batch_size=16,32", "train.dp.noise_multiplier=0.5, 1.0", "canaries.insertions=[1,4],[16]"])
    assert grid == {
        "train.batch_size": [16, 32],
        "train.dp.noise_multiplier": [0.5, 1.0],
        "canaries.insertions": [[1, 4], [16]],
    }
    points = orc.grid_points({"a": [1, 2], "b": ["x", "y"]})
    assert points == [{"a": 1, "b": "x"}, {"a": 1, "b": "y"}, {"a": 2, "b": "x"}, {"a": 2, "b": "y"}]
    assert orc.point_overrides({"canaries.insertions": [1, 4], "data.source": "file:x.txt"}) == [
        "canaries.insertions=[1, 4]", 'data.source="file:x.txt"']
    for bad in (["train.batch_size"], ["=1,2"], ["a=1", "a=2"]):
        with pytest.raises(ParamsError):
            orc.parse_grid(bad)
    with pytest.raises(ParamsError, match="empty"):
        orc.grid_points({"a": []})


def test_grid_file_and_point_params_are_validated(tmp_path):
    (tmp_path / "grid.yaml").write_text("train.batch_size: [8, 16]\ntrain.epochs: 2\n")
    assert orc.load_grid_file(tmp_path / "grid.yaml") == {"train.batch_size": [8, 16], "train.epochs": [2]}
    params = copy.deepcopy(TINY_PARAMS)
    params["data"]["source"] = "file:corpus.txt"
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(full_params(params)))
    resolved = orc.point_params(tmp_path, None, {"train.batch_size": 8})
    assert resolved["train"]["batch_size"] == 8
    assert resolved["data"]["source"] == f"file:{(tmp_path / 'corpus.txt').resolve()}"  # the copy still finds it
    with pytest.raises(ParamsError, match="train.batch_size"):
        orc.point_params(tmp_path, None, {"train.batch_size": 0})


def test_point_workspace_copies_sources_and_shares_the_cache(tmp_path):
    stages = orc.list_stages(REPO)
    sources = orc.source_paths(stages)
    assert "stages/train.py" in sources and "src/canaryaudit/training" in sources
    assert not any(p.startswith(("data/", "models/")) for p in sources)  # produced by stages, not copied
    # a folder holding stage outputs is produced too: the parent's reports never reach a point
    assert not any(p.startswith("reports") for p in sources)
    ws = orc.prepare_point_workspace(REPO, tmp_path / "p00", "x: 1  # kept\n", stages, share_cache=True)
    assert (ws / "stages" / "train.py").exists() and (ws / "src" / "canaryaudit" / "training").is_dir()
    assert (ws / "dvc.yaml").read_text() == (REPO / "dvc.yaml").read_text()
    assert (ws / "params.yaml").read_text() == "x: 1  # kept\n" and not (ws / "reports").exists()
    local = (ws / ".dvc" / "config.local").read_text()
    assert "no_scm = true" in local and str(REPO / ".dvc" / "cache") in local
    assert not list(ws.rglob("__pycache__"))


def test_point_params_text_keeps_the_workspace_file_and_quotes(tmp_path):
    (tmp_path / "params.yaml").write_text((REPO / "params.yaml").read_text())
    resolved = orc.point_params(tmp_path, None, {"train.epochs": 2})
    text = orc.point_params_text(tmp_path, None, resolved)
    assert 'd: "0123456789"' in text and text.startswith((REPO / "params.yaml").read_text().splitlines()[0])
    assert yaml.safe_load(text)["train"]["epochs"] == 2


def test_points_are_labelled_by_their_settings():
    assert orc.point_label({"train.variants.dp.dp.noise_multiplier": 2.0, "train.batch_size": 16}) == (
        "noise_multiplier=2.0, batch_size=16")
    assert orc.point_label({"train.dp.enabled": True, "train.lora.enabled": False, "data.source": "file:a"}) == (
        "dp.enabled=true, lora.enabled=false, source=file:a")


def _write(path: Path, obj: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj))


def _stage(name: str, outs: tuple[str, ...]) -> orc.Stage:
    group, _, key = name.partition("@")
    return orc.Stage(name, group, key or None, (), (), outs)


def test_point_results_read_only_what_the_point_produced_with_the_report_numbers(tmp_path):
    ws = tmp_path / "ws"
    _write(ws / "reports/train/dp.json", {"test_perplexity": 12.5, "test_loss": 2.5, "epsilon": 3.0, "delta": 1e-5})
    _write(ws / "reports/exposure/dp.json", {
        "canaries": [{"canary_id": "a", "insertions": 1, "included": True, "exposure_extrapolation": 4.0},
                     {"canary_id": "b", "insertions": 64, "included": True, "exposure_exact": 7.0,
                      "exposure_extrapolation": 9.0},
                     {"canary_id": "c", "insertions": 64, "included": True, "exposure_extrapolation": 6.0},
                     {"canary_id": "h", "insertions": 0, "included": False, "exposure_extrapolation": 1.5}],
        "extracted": 1})
    _write(ws / "reports/extract/dp.json", {  # left by an earlier run: extract@dp is not selected now
        "unique_memorized": 3, "membership": {"metrics": {"zlib": {"auc": 0.7}}}})
    _write(ws / "reports/train/nonprivate.json", {"test_perplexity": 9.0})  # not this point's variant
    selected = [_stage("train@dp", ("reports/train/dp.json",)), _stage("exposure@dp", ("reports/exposure/dp.json",))]
    results = orc.point_results(ws, selected, ["dp"])
    # by hand: best exposure = exact when known (b: 7.0) else extrapolation (c: 6.0) -> max 7.0 at x64
    assert results == {"dp": {
        "test_loss": 2.5, "test_perplexity": 12.5, "epsilon": 3.0, "delta": 1e-5, "extracted_canaries": 1,
        "max_exposure_bits.held_out": 1.5, "max_exposure_bits.x1": 4.0, "max_exposure_bits.x64": 7.0}}

    points = [
        {"point": "p00", "label": "batch_size=8", "params": {"train.batch_size": 8}, "results": results, "status": "ok"},
        {"point": "p01", "params": {"train.batch_size": 16}, "results": {}, "status": "failed"},
    ]
    files = orc.write_sweep_outputs(tmp_path / "out", points, {"train.batch_size": [8, 16]}, "sweep t")
    rows = list(csv.DictReader(files["csv"].open()))
    assert [(r["point"], r["label"], r["variant"], r["status"]) for r in rows] == [
        ("p00", "batch_size=8", "dp", "ok"), ("p01", "batch_size=16", "", "failed")]
    assert rows[0]["train.batch_size"] == "8" and rows[0]["max_exposure_bits.x64"] == "7.0"
    assert list(rows[0])[:5] == ["point", "label", "train.batch_size", "variant", "status"]
    md = files["markdown"].read_text()
    assert md.startswith("# sweep t") and "| p00 | batch_size=8 | 8 | dp | ok | 12.5 |" in md
    svg = files["plot"].read_text()
    assert svg.startswith("<svg") and svg.count("<circle") == 1 + 1  # one point (dp), one legend entry
    assert "highest exposure of canaries inserted 64 times (bits)" in svg and ">batch_size=8</text>" in svg
    assert json.loads(files["json"].read_text())["grid"] == {"train.batch_size": [8, 16]}
    empty = orc.privacy_utility_svg([{"point": "p", "variant": "nonprivate", "test_perplexity": 3.0}])
    assert "no point has both" in empty


def test_labels_of_close_points_do_not_overlap():
    rows = [{"point": f"p{i}", "label": f"lr={i}", "variant": "dp", "test_perplexity": 2.0 + i * 1e-3,
             "epsilon": 1.0 + i * 1e-3} for i in range(3)]
    svg = orc.privacy_utility_svg(rows)
    import re

    ys = sorted(float(y) for y in re.findall(r'<text x="[^"]+" y="([^"]+)" font-size="10">lr=', svg))
    assert len(ys) == 3 and all(b - a >= 11 - 1e-6 for a, b in zip(ys, ys[1:]))


@pytest.mark.slow(minutes=1.0)
def test_sweep_of_two_tiny_points_logs_their_runs_and_writes_the_comparison(tmp_path, harness):
    from mlflow.tracking import MlflowClient
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId

    from canaryaudit import tracking
    from canaryaudit.flows import sweep

    params = copy.deepcopy(TINY_PARAMS)
    params["train"]["max_steps"] = 3
    params["pretrain"]["source"] = "none"  # the points train from scratch: no base model per width to train first
    ws = repo_workspace(tmp_path / "repo", params)
    # Two keys, two points: the product order of a larger grid is test_parse_grid's
    grid = {"train.batch_size": [8], "train.model.width": [16, 32]}
    state = sweep(grid=grid, workspace=str(ws), targets=["train@dp"], name="t2", return_state=True)
    assert state.is_completed(), state.result(raise_on_failure=False)
    result = state.result()

    out = ws / "reports" / "sweeps" / "t2"
    rows = list(csv.DictReader((out / "comparison.csv").open()))
    assert [(r["point"], r["train.batch_size"], r["train.model.width"], r["variant"]) for r in rows] == [
        ("p00", "8", "16", "dp"), ("p01", "8", "32", "dp")]
    assert all(float(r["test_perplexity"]) > 1 and float(r["epsilon"]) > 0 for r in rows)
    assert (out / "comparison.md").read_text().count("| dp |") == 2
    assert (out / "privacy_utility.svg").read_text().count("<title>") == 2
    for point in ("p00", "p01"):  # each point ran in its own workspace copy
        assert (ws / orc.SWEEPS_DIR / "t2" / point / "models" / "dp" / "model.safetensors").exists()
    for row in rows:  # each row is the point's own train report, read independently here
        own = json.loads((ws / orc.SWEEPS_DIR / "t2" / row["point"] / "reports" / "train" / "dp.json").read_text())
        assert float(row["test_perplexity"]) == own["test_perplexity"] and float(row["epsilon"]) == own["epsilon"]
        assert "max_exposure_bits.x1" not in row  # exposure@dp was not a target: no exposure numbers
    assert rows[0]["label"] == "batch_size=8, width=16"

    client = MlflowClient(tracking.tracking_uri(ws))
    experiment = client.get_experiment_by_name(tracking.experiment_name()).experiment_id
    runs = client.search_runs([experiment], filter_string="tags.`canaryaudit.sweep_point` != '' and tags.`canaryaudit.sweep` = 't2'")
    assert len(runs) == 2 and all(r.info.status == "FINISHED" for r in runs)
    by_point = {r.data.tags["canaryaudit.sweep_point"]: r for r in runs}
    assert by_point["p01"].data.params["grid.train.model.width"] == "32"
    assert by_point["p01"].data.metrics["variant.dp.epsilon"] == pytest.approx(float(rows[1]["epsilon"]))
    assert by_point["p01"].data.tags["canaryaudit.sweep_label"] == "batch_size=8, width=32"
    assert all(r.data.tags["mlflow.parentRunId"] == result["mlflow_run_id"] for r in runs)
    nested = client.search_runs([experiment], filter_string=f"tags.`mlflow.parentRunId` = '{by_point['p01'].info.run_id}'")
    assert [(r.data.tags["canaryaudit.stage"], r.data.tags["canaryaudit.variant"]) for r in nested] == [("train", "dp")]
    assert "canaries.canaries" in by_point["p00"].data.metrics  # the point's stages logged into its run
    sweep_run = client.get_run(result["mlflow_run_id"])
    assert sweep_run.info.status == "FINISHED" and sweep_run.data.tags["canaryaudit.role"] == "sweep"

    # later points restore prepare/sanitize/canaries from DVC's shared run-cache instead of running them
    with get_client(sync_client=True) as prefect:
        logs = prefect.read_logs(log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[state.state_details.flow_run_id])))
    text = "\n".join(log.message for log in logs)
    assert "Stage 'prepare' is cached - skipping run" in text
