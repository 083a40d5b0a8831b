"""`canaryaudit compare` and the report stage's MLflow logging (a temporary SQLite store per test)."""

from __future__ import annotations

import argparse
import csv
import os
import subprocess
import sys
from types import SimpleNamespace

import pytest
import yaml

from canaryaudit.cli.compare import add_compare_arguments, cmd_compare
from canaryaudit.compare import format_table, rows_for_run, to_csv, variant_metrics
from tests.conftest import REPO
from tests.test_report import LOG2_R, make_reports

pytestmark = pytest.mark.usefixtures("mlflow_tracking")  # these tests look at what MLflow logged

VARIANTS = {"nonprivate": {}, "dp": {"dp": {"enabled": True, "noise_multiplier": 1.0}},
            "reference": {"model": {"layers": 1, "width": 64}, "init": "scratch"}}


def _run(run_id: str, metrics: dict, tags: dict | None = None, params: dict | None = None, start: int = 0):
    return SimpleNamespace(info=SimpleNamespace(run_id=run_id, status="FINISHED", start_time=start),
                           data=SimpleNamespace(metrics=metrics, tags=tags or {}, params=params or {}))


def test_variant_metrics_split_the_summary_keys():
    got = variant_metrics({"variant.dp.max_exposure_bits.x64": 2.4, "variant.dp.epsilon": 0.72, "gate.passed": 1.0})
    assert got == {"dp": {"max_exposure_bits.x64": 2.4, "epsilon": 0.72}}


def test_rows_from_summary_metrics_and_from_child_runs():
    parent = _run("aaaaaaaa1111", {"variant.dp.epsilon": 0.722, "variant.dp.test_perplexity": 17.28,
                                   "variant.dp.max_exposure_bits.x64": 2.39, "variant.dp.max_exposure_bits.held_out": 3.9,
                                   "variant.dp.extracted_canaries": 0.0, "variant.dp.best_mia_auc": 0.535,
                                   "variant.dp.parameters": 415232.0},
                  tags={"canaryaudit.gate": "passed", "canaryaudit.model.dp": "gpt2 2x128"})
    [row] = rows_for_run(parent, [])
    assert row["run"] == "aaaaaaaa" and row["gate"] == "passed" and row["model"] == "gpt2 2x128"
    assert (row["epsilon"], row["exposure_x64"], row["exposure_held_out"], row["mia_auc"]) == (0.722, 2.39, 3.9, 0.535)

    old = _run("bbbbbbbb2222", {})  # ended before the report stage: its nested runs' numbers, same names
    train = _run("c1", {"variant.nonprivate.test_perplexity": 2.06, "variant.nonprivate.parameters": 415232.0,
                        "test_perplexity": 99.0, "valid_loss": 0.7},  # stage details (unprefixed) are not headline
                 tags={"canaryaudit.variant": "nonprivate", "canaryaudit.stage": "train"},
                 params={"model.arch": "lstm", "model.layers": "2", "model.width": "256"})
    exposure = _run("c2", {"variant.nonprivate.extracted_canaries": 1.0, "variant.nonprivate.max_exposure_bits.x64": 5.5},
                    tags={"canaryaudit.variant": "nonprivate", "canaryaudit.stage": "exposure"})
    extract = _run("c3", {"variant.nonprivate.best_mia_auc": 0.61, "variant.nonprivate.unique_memorized": 3.0},
                   tags={"canaryaudit.variant": "nonprivate", "canaryaudit.stage": "extract"})
    [fallback] = rows_for_run(old, [train, exposure, extract])
    assert fallback["model"] == "lstm 2x256" and fallback["test_perplexity"] == 2.06
    assert fallback["extracted_canaries"] == 1.0 and fallback["epsilon"] is None and fallback["exposure_x64"] == 5.5
    assert fallback["mia_auc"] == 0.61 and fallback["memorized_samples"] == 3.0

    table = format_table([row, fallback]).splitlines()
    assert table[0].split() == ["run", "started", "status", "gate", "variant", "model", "parameters", "epsilon",
                                "test_perplexity", "exposure_held_out", "exposure_x64", "extracted_canaries",
                                "memorized_samples", "mia_auc"]
    assert "0.722" in table[2] and "415,232" in table[2] and "2.39" in table[2] and "0.535" in table[2]
    parsed = list(csv.DictReader(to_csv([row, fallback]).splitlines()))
    assert parsed[0]["exposure_x64"] == "2.39" and parsed[1]["model"] == "lstm 2x256"


@pytest.fixture
def store(tmp_path, monkeypatch) -> str:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("CANARYAUDIT_EXPERIMENT", "compare-test")
    monkeypatch.delenv("CANARYAUDIT_PARENT_RUN_ID", raising=False)
    monkeypatch.delenv("CANARYAUDIT_TRACKING", raising=False)
    return uri


def _compare_args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_compare_arguments(parser)
    return parser.parse_args(list(argv))


@pytest.mark.slow
def test_report_stage_closes_the_parent_run_and_compare_reads_it(tmp_path, store, capsys):
    from mlflow.tracking import MlflowClient

    from canaryaudit.tracking import Tracker

    workspace = tmp_path / "ws"
    make_reports(workspace / "reports")
    (workspace / "params.yaml").write_text(yaml.safe_dump({"train": {"variants": VARIANTS}}), encoding="utf-8")
    parent = Tracker(workspace).start_pipeline_run(run_name="audit-test")
    env = {**os.environ, "CANARYAUDIT_PARENT_RUN_ID": parent}
    proc = subprocess.run([sys.executable, str(REPO / "stages" / "report.py"), "--params", "params.yaml",
                           "--reports", "reports", "--data", "data", "--out", "reports/index.html",
                           "--summary", "reports/summary.json", "--gate", "reports/gate.json"],
                          cwd=workspace, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr

    client = MlflowClient(store)
    run = client.get_run(parent)
    assert run.info.status == "FINISHED"
    assert run.data.tags["canaryaudit.gate"] == "passed"
    assert run.data.tags["canaryaudit.model.reference"] == "gpt2 1x64"
    assert run.data.metrics["variant.nonprivate.max_exposure_bits.x64"] == pytest.approx(LOG2_R)
    assert run.data.metrics["gate.passed"] == 1.0
    artifacts = {a.path for a in client.list_artifacts(parent, "report")}
    assert artifacts == {"report/index.html", "report/gate.json", "report/summary.json"}

    out_csv = tmp_path / "runs.csv"
    assert cmd_compare(_compare_args("--last", "5", "--csv", str(out_csv))) == 0
    printed = capsys.readouterr().out
    assert parent[:8] in printed and "gpt2 2x128" in printed and "29.90" in printed
    rows = list(csv.DictReader(out_csv.read_text().splitlines()))
    assert [r["variant"] for r in rows] == ["dp", "nonprivate", "reference"]
    assert float(rows[0]["epsilon"]) == pytest.approx(0.7222, abs=1e-4) and rows[0]["gate"] == "passed"  # CSV: full precision


def test_compare_without_runs_exits_2(store, capsys):
    assert cmd_compare(_compare_args("--experiment", "nothing-here")) == 2
    assert "no experiment 'nothing-here'" in capsys.readouterr().err
    assert cmd_compare(_compare_args("--last", "0")) == 2
