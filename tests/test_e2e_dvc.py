"""End to end: `dvc repro` in a temporary copy of the repo with tiny params."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from canaryaudit.io import read_jsonl
from tests.conftest import REPO, write_params

pytestmark = pytest.mark.slow

COPY = ["dvc.yaml", ".dvcignore", ".dvc/config", ".dvc/.gitignore", "stages", "src"]


def _repo_copy(dest: Path) -> Path:
    for rel in COPY:
        src = REPO / rel
        if src.is_dir():
            shutil.copytree(src, dest / rel, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
        else:
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / rel)
    subprocess.run(["git", "init", "-q"], cwd=dest, check=True)
    return dest


def write_full_params(path: Path, params: dict) -> None:
    """DVC requires every params key a stage lists to be in the file: write defaults out in full."""
    from canaryaudit.config import parse_params

    write_params(path, parse_params(params).model_dump(mode="json"))


def _dvc(ws: Path, *args: str) -> str:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    dvc = str(Path(sys.executable).with_name("dvc"))
    proc = subprocess.run([dvc, *args], cwd=ws, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, f"dvc {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout + proc.stderr


def test_dvc_repro_then_nothing_to_do_then_only_changed_stage(tmp_path, tiny_params):
    ws = _repo_copy(tmp_path / "repo")
    tiny_params["gate"]["rules"] += [
        {"check": "test_perplexity_ratio", "variant": "dp", "baseline": "nonprivate", "max": 1.5},
        {"check": "empirical_epsilon", "variant": "all", "max": 1.0},
    ]
    write_full_params(ws / "params.yaml", tiny_params)

    first = _dvc(ws, "repro")
    variants = ("nonprivate", "dp", "reference")
    stages = ["prepare", "sanitize", "pretrain", "canaries", "report"] + [f"{s}@{v}" for s in ("train", "exposure", "extract", "pii")
                                                              for v in variants]
    for stage in stages:
        assert f"Running stage '{stage}'" in first
    assert (ws / "models/dp/model.safetensors").exists() and (ws / "reports/train/dp.json").exists()
    assert json.loads((ws / "reports/pii/dp.json").read_text())["inference"]["types"]["all"]["trials"] > 0
    assert read_jsonl(ws / "data/canaries/canaries.jsonl")
    assert (ws / "dvc.lock").exists()
    html = (ws / "reports/index.html").read_text(encoding="utf-8")
    assert "Privacy gate" in html or "gate" in html.lower()
    gate = json.loads((ws / "reports/gate.json").read_text())
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

    metrics = json.loads(_dvc(ws, "metrics", "show", "--json"))
    shown = json.dumps(metrics)
    for path in ("reports/summary.json", "reports/gate.json", "reports/extract/dp.json", "reports/train/dp.json"):
        assert path in shown
    plots = json.loads(_dvc(ws, "plots", "show", "--json"))
    assert not plots.get("errors"), plots.get("errors")
    for name in ("exposure_vs_insertions", "validation_loss", "membership_roc"):
        assert name in json.dumps(plots)

    second = _dvc(ws, "repro")
    assert "Data and pipelines are up to date." in second
    assert "Running stage" not in second

    tiny_params["canaries"]["seed"] = 4  # only the canaries stage reads this section
    write_full_params(ws / "params.yaml", tiny_params)
    third = _dvc(ws, "repro")
    assert "Running stage 'canaries'" in third
    assert "Running stage 'prepare'" not in third and "Running stage 'sanitize'" not in third
    assert "Running stage 'pretrain'" not in third  # the public base does not read the canaries

    tiny_params["train"]["variants"]["dp"]["dp"]["noise_multiplier"] = 2.0  # only train@dp reads it
    write_full_params(ws / "params.yaml", tiny_params)
    fourth = _dvc(ws, "repro")
    assert "Running stage 'train@dp'" in fourth and "Running stage 'exposure@dp'" in fourth
    assert "Running stage 'train@nonprivate'" not in fourth and "Running stage 'exposure@nonprivate'" not in fourth

    tiny_params["extract"]["top_k"] = 5  # an attack setting: no model is retrained
    write_full_params(ws / "params.yaml", tiny_params)
    fifth = _dvc(ws, "repro")
    assert all(f"Running stage 'extract@{v}'" in fifth for v in variants) and "Running stage 'report'" in fifth
    assert "Running stage 'train@" not in fifth and "Running stage 'exposure@" not in fifth

    status = _dvc(ws, "status")
    assert "up to date" in status
    lock = yaml.safe_load((ws / "dvc.lock").read_text())
    assert set(lock["stages"]["canaries"]["params"]["params.yaml"]) == {"canaries"}


def test_canaryaudit_audit_runs_pipeline_under_one_finished_mlflow_run(tmp_path, tiny_params):
    from mlflow.tracking import MlflowClient

    ws = _repo_copy(tmp_path / "repo")
    write_full_params(ws / "params.yaml", tiny_params)
    uri = f"sqlite:///{tmp_path / 'audit-mlflow.db'}"
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri, "CANARYAUDIT_EXPERIMENT": "e2e"}
    cli = str(Path(sys.executable).with_name("canaryaudit"))
    proc = subprocess.run([cli, "audit"], cwd=ws, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Outputs:" in proc.stdout and "data/augmented/train.jsonl" in proc.stdout
    assert f"Privacy report: {ws / 'reports' / 'index.html'}" in proc.stdout
    assert "Privacy gate: PASSED" in proc.stdout or "Privacy gate: FAILED" in proc.stdout

    client = MlflowClient(uri)
    runs = client.search_runs([client.get_experiment_by_name("e2e").experiment_id])
    parents = [r for r in runs if r.data.tags.get("canaryaudit.role") == "pipeline"]
    assert len(parents) == 1
    run = parents[0]
    assert run.info.status == "FINISHED" and run.data.tags["canaryaudit.launcher"] == "cli"
    assert {"prepare.train.documents", "sanitize.quality.ssn.recall", "canaries.canaries"} <= set(run.data.metrics)
    assert run.data.tags["canaryaudit.gate"] in ("passed", "failed")
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id, "report")}
    assert {"report/index.html", "report/gate.json"} <= artifacts
    children = client.search_runs([run.info.experiment_id], filter_string=f"tags.`mlflow.parentRunId` = '{run.info.run_id}'")
    by_stage = sorted((c.data.tags["canaryaudit.stage"], c.data.tags["canaryaudit.variant"]) for c in children)
    stages = ("train", "exposure", "extract", "pii")  # one nested run per stage that logs (prepare, sanitize ... do not)
    assert by_stage == sorted((s, v) for s in stages for v in ("nonprivate", "dp", "reference"))
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
