"""End to end on the shared tiny pipeline (``canaryaudit audit`` once in a copy of the repo, tiny params):
what it wrote and logged, then DVC's loop in a copy of it (nothing to do, only what changed, experiments)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from canaryaudit.io import read_jsonl
from tests.conftest import PIPELINE_GROUP, TINY_PIPELINE_RULES, dvc, git, write_params

pytestmark = pytest.mark.slow  # (the shared pipeline logs to its own MLflow store)


@pytest.mark.timeout(1800)  # a copy of the shared pipeline, then DVC's experiment loop
def test_dvc_repro_then_nothing_to_do_then_only_changed_stage(tiny_pipeline, tmp_path):
    assert tiny_pipeline.params["gate"]["rules"][-2:] == TINY_PIPELINE_RULES  # a utility and an empirical-epsilon rule
    first = tiny_pipeline.audit.stdout  # `canaryaudit audit` shows DVC's output
    ws = tiny_pipeline.copy_to(tmp_path / "repo")
    variants = tuple(tiny_pipeline.params["train"]["variants"])
    assert variants == ("nonprivate", "dp")
    stages = ["prepare", "sanitize", "pretrain", "canaries", "report"] + [f"{s}@{v}" for s in ("train", "exposure", "extract", "pii")
                                                              for v in variants]
    for stage in stages:
        assert f"Running stage '{stage}'" in first
    assert (ws / "models/dp/model.safetensors").exists() and (ws / "reports/train/dp.json").exists()
    assert json.loads((ws / "reports/pii/dp.json").read_text())["inference"]["types"]["all"]["trials"] > 0
    assert read_jsonl(ws / "data/canaries/canaries.jsonl")
    assert (ws / "dvc.lock").exists()
    html = (ws / "reports/index.html").read_text(encoding="utf-8")
    gate = json.loads((ws / "reports/gate.json").read_text())
    failed = [r for r in gate["rules"] if not r["passed"]]
    expected = ("✔ Privacy gate passed" if gate["passed"] else
                f"✘ Privacy gate failed: {len(failed)} of {len(gate['rules'])} rules")
    assert expected in html  # the report's verdict is gate.json's
    assert len(gate["rules"]) == 3 + 1 + len(variants) and all(r["value"] is not None for r in gate["rules"])
    # The utility and empirical-epsilon rules, recomputed from the stage reports by the rule's logic
    train = {v: json.loads((ws / f"reports/train/{v}.json").read_text()) for v in variants}
    extract = {v: json.loads((ws / f"reports/extract/{v}.json").read_text()) for v in variants}
    by_name = {r["name"]: r for r in gate["rules"]}
    ratio = train["dp"]["test_perplexity"] / train["nonprivate"]["test_perplexity"]
    assert by_name["dp-test_perplexity_ratio"]["value"] == ratio
    assert by_name["dp-test_perplexity_ratio"]["passed"] is (ratio <= 1.5)
    for v in variants:
        bound = extract[v]["empirical_epsilon"]["epsilon_lower_bound"]
        assert by_name[f"{v}-empirical_epsilon"]["value"] == bound
        assert by_name[f"{v}-empirical_epsilon"]["passed"] is (bound <= 1.0)
    assert gate["passed"] is all(r["passed"] for r in gate["rules"])
    assert json.loads((ws / "models/dp/card.json").read_text())["base_model"]["path"] == "models/pretrain"
    assert extract["dp"]["verification"]["public_corpus"] is True

    # The headline file is the one metric: no per-stage report (with its timings) is a metric any more
    metrics = json.loads(dvc(ws, "metrics", "show", "--json"))
    [files] = [entry["data"] for entry in metrics.values()]
    assert list(files) == ["reports/summary.json"]
    summary = json.loads((ws / "reports/summary.json").read_text())
    assert files["reports/summary.json"]["data"] == _without_nulls(summary)  # DVC leaves unmeasured values out
    assert summary["variants"]["dp"]["test_perplexity"] == train["dp"]["test_perplexity"]
    plots = json.loads(dvc(ws, "plots", "show", "--json"))
    assert not plots.get("errors"), plots.get("errors")
    for name in ("exposure_vs_insertions", "validation_loss", "membership_roc"):
        assert name in json.dumps(plots)
    _comparison_loop(ws, summary)

    second = dvc(ws, "repro")
    assert "Data and pipelines are up to date." in second
    assert "Running stage" not in second

    # What one changed section reruns, by DVC's plan (--dry: the stages whose own dependencies changed; the
    # experiment above ran such a plan for real, the stages downstream of the exposure stages included)
    dry = _dry_run_with(ws, "canaries.seed", 4)  # only the canaries stage reads this section
    assert "Running stage 'canaries'" in dry
    assert "Running stage 'prepare'" not in dry and "Running stage 'sanitize'" not in dry
    assert "Running stage 'pretrain'" not in dry  # the public base does not read the canaries
    dry = _dry_run_with(ws, "train.variants.dp.dp.noise_multiplier", 3.0)  # only train@dp reads it
    assert "Running stage 'train@dp'" in dry and "Running stage 'train@nonprivate'" not in dry
    dry = _dry_run_with(ws, "extract.top_k", 5)  # an attack setting: no model is retrained
    assert all(f"Running stage 'extract@{v}'" in dry for v in variants)
    assert "Running stage 'train@" not in dry and "Running stage 'exposure@" not in dry

    status = dvc(ws, "status")
    assert "up to date" in status
    lock = yaml.safe_load((ws / "dvc.lock").read_text())
    assert set(lock["stages"]["canaries"]["params"]["params.yaml"]) == {"canaries"}


def _set_param(ws: Path, dotted: str, value) -> str:
    """Set one key of the workspace's params.yaml; the file's text before."""
    path = ws / "params.yaml"
    before = path.read_text(encoding="utf-8")
    params = yaml.safe_load(before)
    *parents, key = dotted.split(".")
    node = params
    for part in parents:
        node = node[part]
    node[key] = value
    write_params(path, params)
    return before


def _dry_run_with(ws: Path, dotted: str, value) -> str:
    """``dvc repro --dry`` with one key changed (the stages whose own dependencies changed); params restored."""
    before = _set_param(ws, dotted, value)
    try:
        return dvc(ws, "repro", "--dry")
    finally:
        (ws / "params.yaml").write_text(before, encoding="utf-8")


def test_canaryaudit_audit_runs_pipeline_under_one_finished_mlflow_run(tiny_pipeline, request):
    from mlflow.tracking import MlflowClient

    if getattr(request.config.option, "loadgroup", False):  # a pytest-xdist worker: the pipeline's users are one
        assert request.node.nodeid.endswith(f"@{PIPELINE_GROUP}"), request.node.nodeid  # group, built once

    ws, proc, uri = tiny_pipeline.root, tiny_pipeline.audit, tiny_pipeline.mlflow_uri
    gate = json.loads((ws / "reports/gate.json").read_text())
    assert proc.returncode == (0 if gate["passed"] else 1), proc.stdout + proc.stderr  # a failed gate fails the audit
    assert "Outputs:" in proc.stdout and "data/augmented/train.jsonl" in proc.stdout
    assert f"Privacy report: {ws / 'reports' / 'index.html'}" in proc.stdout
    assert f"Privacy gate: {'PASSED' if gate['passed'] else 'FAILED'} " in proc.stdout  # what gate.json says

    client = MlflowClient(uri)
    runs = client.search_runs([client.get_experiment_by_name(tiny_pipeline.experiment).experiment_id])
    parents = [r for r in runs if r.data.tags.get("canaryaudit.role") == "pipeline"]
    assert len(parents) == 1
    run = parents[0]
    assert run.info.status == "FINISHED" and run.data.tags["canaryaudit.launcher"] == "cli"
    assert {"prepare.train.documents", "sanitize.quality.ssn.recall", "canaries.canaries"} <= set(run.data.metrics)
    assert run.data.tags["canaryaudit.gate"] == ("passed" if gate["passed"] else "failed")
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id, "report")}
    assert {"report/index.html", "report/gate.json"} <= artifacts
    children = client.search_runs([run.info.experiment_id], filter_string=f"tags.`mlflow.parentRunId` = '{run.info.run_id}'")
    by_stage = sorted((c.data.tags["canaryaudit.stage"], c.data.tags["canaryaudit.variant"]) for c in children)
    stages = ("train", "exposure", "extract", "pii")  # one nested run per stage that logs (prepare, sanitize ... do not)
    assert by_stage == sorted((s, v) for s in stages for v in tiny_pipeline.params["train"]["variants"])
    # nested runs log their headline numbers under the parent's names, with summary.json's values
    from canaryaudit.report.summary import summary_metrics

    summary = summary_metrics(json.loads((ws / "reports" / "summary.json").read_text()))
    nested: dict[str, float] = {}
    for child in children:
        headline = {k: v for k, v in child.data.metrics.items() if k.startswith("variant.")}
        assert headline and all(k.startswith(f"variant.{child.data.tags['canaryaudit.variant']}.") for k in headline)
        assert headline == pytest.approx({k: summary[k] for k in headline}, rel=1e-12), child.info.run_name
        nested.update(headline)
    assert nested == pytest.approx({k: v for k, v in summary.items() if k.startswith("variant.")}, rel=1e-12)
    assert {"variant.dp.epsilon", "variant.dp.max_exposure_bits.x5", "variant.dp.best_mia_auc",
            "variant.dp.pii_inference_accuracy"} <= set(nested)
    assert run.data.params["canaries.seed"] == "3"
    assert not (ws / ".canaryaudit" / "parent_run").exists()


def test_cli_params_check_and_show(tmp_path, tiny_params):
    write_params(tmp_path / "params.yaml", tiny_params)
    cli = str(Path(sys.executable).with_name("canaryaudit"))
    ok = subprocess.run([cli, "params", "check"], cwd=tmp_path, capture_output=True, text=True)
    assert ok.returncode == 0 and "OK" in ok.stdout
    shown = subprocess.run([cli, "params", "show", "-S", "data.seed=11"], cwd=tmp_path, capture_output=True, text=True)
    assert yaml.safe_load(shown.stdout)["data"]["seed"] == 11
    tiny_params["sanitize"]["default_action"] = "erase"
    write_params(tmp_path / "params.yaml", tiny_params)
    bad = subprocess.run([cli, "params", "check"], cwd=tmp_path, capture_output=True, text=True)
    assert bad.returncode == 2 and "sanitize.default_action: Input should be 'mask', 'drop' or 'keep'" in bad.stderr


def _without_nulls(tree: dict) -> dict:
    return {k: _without_nulls(v) if isinstance(v, dict) else v for k, v in tree.items() if v is not None}


def _comparison_loop(ws: Path, summary: dict) -> None:
    """DVC's loop: commit the audit, run an experiment, compare metrics and plots offline."""
    from canaryaudit.plots import write_offline_template

    write_offline_template(ws)
    git(ws, "add", "-A")
    tracked = git(ws, "ls-files").split()
    assert "reports/summary.json" in tracked and "reports/gate.json" in tracked and "dvc.lock" in tracked
    assert "reports/extract/dp_roc.csv" in tracked and "reports/train/dp_loss.csv" in tracked  # plot files
    assert "reports/train/dp.json" not in tracked and "reports/index.html" not in tracked  # DVC-cached
    git(ws, "commit", "-q", "-m", "audit")

    # An audit setting (the exposure estimators' reference candidates): the exposure stages and the report
    # rerun, no model is retrained (a DP setting's plan is checked below by --dry)
    out = dvc(ws, "exp", "run", "-S", "exposure.references=400")
    assert all(f"Running stage 'exposure@{v}'" in out for v in summary["variants"]) and "Running stage 'report'" in out
    assert "Running stage 'train@" not in out and "Running stage 'extract@" not in out
    rows = json.loads(dvc(ws, "exp", "show", "--json"))
    experiments = [exp for row in rows for exp in (row.get("experiments") or [])]
    assert len(experiments) == 1
    headline = {}
    for rev in (rows[-1], experiments[0]["revs"][0]):  # HEAD (the committed audit) and the experiment
        data = rev["data"]["metrics"]["reports/summary.json"]["data"]
        headline[rev["data"].get("name") or rev["data"]["rev"]] = data["variants"]["dp"]["max_exposure_bits"]["x5"]
    assert summary["variants"]["dp"]["max_exposure_bits"]["x5"] in headline.values()
    assert len(set(headline.values())) == 2  # other references: other exposure estimates

    diff = json.loads(dvc(ws, "metrics", "diff", "--json"))
    changed = diff["reports/summary.json"]  # `dvc metrics diff --json`: {path: {metric: {old, new, diff}}}
    assert changed["variants.dp.max_exposure_bits.x5"]["old"] == summary["variants"]["dp"]["max_exposure_bits"]["x5"]
    assert "variants.nonprivate.test_perplexity" not in changed and "variants.dp.epsilon" not in changed  # not retrained
    page = Path(dvc(ws, "plots", "diff", "--out", "plots_diff").strip().splitlines()[-1].removeprefix("file://"))
    html = page.read_text(encoding="utf-8")
    assert "<script src" not in html and "window.vegaEmbed" in html and html.count("vegaEmbed('#") >= 3
