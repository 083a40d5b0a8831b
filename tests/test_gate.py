"""The privacy gate: each check on hand-made reports, missing measurements, gate.json and the CLI's exit codes."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest
import yaml

from canaryaudit.config import GATE_CHECKS, GateRule
from canaryaudit.cli.gate import add_gate_arguments, cmd_gate
from canaryaudit.gate import CHECKS, evaluate_gate, evaluate_rule, format_table
from canaryaudit.report.inputs import load_inputs
from tests.test_report import make_reports

VARIANTS = {"nonprivate": {}, "dp": {"dp": {"enabled": True, "noise_multiplier": 1.0}},
            "reference": {"model": {"layers": 1, "width": 64}, "init": "scratch"}}


def _exposure_report() -> dict:
    """Three canaries inserted 64x: exact known for one; two held out."""
    return {"variant": "dp", "extracted": 1, "canaries": [
        {"canary_id": "a", "insertions": 64, "included": True, "exposure_exact": 21.5, "exposure_extrapolation": 24.3,
         "exposure_interpolation": 13.29, "extracted": True},
        {"canary_id": "b", "insertions": 64, "included": True, "exposure_exact": None, "exposure_extrapolation": 22.0,
         "exposure_interpolation": 13.29, "extracted": False},
        {"canary_id": "c", "insertions": 0, "included": False, "exposure_exact": None, "exposure_extrapolation": 3.1,
         "exposure_interpolation": 3.0, "extracted": False},
    ]}


@pytest.fixture
def reports(tmp_path: Path) -> Path:
    root = tmp_path / "reports"
    (root / "exposure").mkdir(parents=True)
    (root / "exposure" / "dp.json").write_text(json.dumps(_exposure_report()))
    (root / "train").mkdir()
    (root / "train" / "dp.json").write_text(json.dumps({"epsilon": 0.72, "delta": 1e-5, "test_perplexity": 17.28}))
    (root / "train" / "nonprivate.json").write_text(json.dumps({"epsilon": None, "delta": None, "test_perplexity": 2.06}))
    (root / "extract").mkdir()
    (root / "extract" / "dp.json").write_text(json.dumps({
        "unique_memorized": 3,
        "memorized_pii": [{"type": "email", "masked": "****om", "sample_id": "s1"},
                          {"type": "ssn", "masked": "*********89", "sample_id": "s1"}],
        "memorized_canaries": [{"canary_id": "a", "sample_id": "s2"}, {"canary_id": "a", "sample_id": "s3"}],
        "membership": {"metrics": {"perplexity": {"auc": 0.71, "auc_ci": [0.58, 0.83]},
                                   "zlib": {"auc": 0.64, "auc_ci": [0.52, 0.75]},
                                   "lowercase": {"auc": 0.9, "auc_ci": [0.85, 0.95], "degenerate": True,
                                                 "degenerate_reason": "100% of the scored texts are unchanged"}}},
        "empirical_epsilon": {"epsilon_lower_bound": 0.4, "ceiling": 1.58}}))
    return root


def _rule(**fields) -> GateRule:
    return GateRule(**fields)


def _evaluate(reports: Path, rule: GateRule) -> dict:
    return evaluate_rule(rule, load_inputs(reports, ("dp", "nonprivate")))


def test_every_configurable_check_is_registered():
    assert sorted(CHECKS.names()) == sorted(GATE_CHECKS)


def test_exposure_rule_uses_the_chosen_estimator(reports):
    best = _evaluate(reports, _rule(check="exposure", variant="dp", insertions=64, max=20.0))
    # best: canary a has an exact rank (21.5), canary b only an extrapolation (22.0) -> max 22.0
    assert best["value"] == 22.0 and best["passed"] is False
    assert best["reason"] == "highest exposure of dp canaries inserted 64x (best) is 22 bits > 20"
    extrapolation = _evaluate(reports, _rule(check="exposure", variant="dp", insertions=64, estimator="extrapolation", max=25))
    assert extrapolation["value"] == 24.3 and extrapolation["passed"] is True
    assert extrapolation["name"] == "dp-exposure-x64" and extrapolation["estimator"] == "extrapolation"
    exact = _evaluate(reports, _rule(check="exposure", variant="dp", insertions=64, estimator="exact", max=25))
    assert exact["value"] == 21.5


def test_exposure_for_an_insertion_count_never_used_is_missing_and_fails(reports):
    result = _evaluate(reports, _rule(check="exposure", variant="dp", insertions=16, max=100.0))
    assert result["value"] is None and result["passed"] is False
    assert "no best exposure measured for canaries inserted 16x (insertion counts: 0, 64)" in result["reason"]


@pytest.mark.parametrize(("check", "expected"), [
    ("extracted_canaries", 1.0), ("memorized_samples", 3.0), ("memorized_pii", 2.0), ("memorized_canaries", 1.0),
    ("empirical_epsilon", 0.4), ("accountant_epsilon", 0.72), ("test_perplexity", 17.28),
])
def test_count_and_scalar_checks(reports, check, expected):
    result = _evaluate(reports, _rule(check=check, variant="dp", max=0.5))
    assert result["value"] == pytest.approx(expected)
    assert result["passed"] is (expected <= 0.5)


def test_membership_auc_default_is_the_best_metric(reports):
    best = _evaluate(reports, _rule(check="membership_auc", variant="dp", max=0.6))
    assert best["value"] == 0.71 and "(perplexity, point estimate)" in best["reason"] and best["passed"] is False
    zlib = _evaluate(reports, _rule(check="membership_auc", variant="dp", metric="zlib", max=0.65))
    assert zlib["value"] == 0.64 and zlib["passed"] is True and zlib["name"] == "dp-membership_auc-zlib"


def test_membership_auc_skips_degenerate_metrics_unless_named(reports):
    """lowercase has the highest AUC but is marked degenerate: "best" ignores it; naming it still measures it."""
    best = _evaluate(reports, _rule(check="membership_auc", variant="dp", max=0.8))
    assert best["value"] == 0.71 and "(perplexity, point estimate)" in best["reason"]
    named = _evaluate(reports, _rule(check="membership_auc", variant="dp", metric="lowercase", max=0.8))
    assert named["value"] == 0.9 and "degenerate" in named["reason"] and named["passed"] is False


@pytest.mark.parametrize("use, value, metric", [("point", 0.71, "perplexity"), ("ci_low", 0.58, "perplexity"),
                                                ("ci_high", 0.83, "perplexity")])
def test_membership_auc_uses_the_chosen_end_of_the_interval(reports, use, value, metric):
    result = _evaluate(reports, _rule(check="membership_auc", variant="dp", max=0.6, use=use))
    assert result["value"] == value and result["use"] == use and f"({metric}, " in result["reason"]
    assert result["passed"] is (value <= 0.6)  # ci_low 0.58 passes where the point estimate 0.71 fails


def test_membership_auc_interval_missing_fails(reports):
    path = reports / "extract" / "dp.json"
    data = json.loads(path.read_text())
    data["membership"]["metrics"] = {"perplexity": {"auc": 0.5}}
    path.write_text(json.dumps(data))
    result = _evaluate(reports, _rule(check="membership_auc", variant="dp", max=0.6, use="ci_high"))
    assert result["value"] is None and result["passed"] is False and "high end" in result["reason"]


def test_use_applies_to_membership_auc_only():
    with pytest.raises(ValueError, match="use applies to membership_auc and pii_inference_accuracy"):
        GateRule(check="memorized_pii", variant="dp", max=0, use="ci_low")


def test_missing_measurements_fail_with_a_reason(reports):
    no_dp = _evaluate(reports, _rule(check="accountant_epsilon", variant="nonprivate", max=8))
    assert no_dp["value"] is None and no_dp["passed"] is False and "not trained with DP" in no_dp["reason"]
    no_file = _evaluate(reports, _rule(check="memorized_pii", variant="nonprivate", max=0))
    assert no_file["value"] is None and "extract/nonprivate.json is missing" in no_file["reason"]


def test_unreadable_file_is_named(reports):
    (reports / "extract" / "dp.json").write_text("{broken")
    result = _evaluate(reports, _rule(check="memorized_samples", variant="dp", max=0))
    assert result["value"] is None and "extract/dp.json is unreadable" in result["reason"]


def test_gate_json_shape_and_table(reports):
    rules = [_rule(check="test_perplexity", variant="dp", max=20, name="dp-utility"),
             _rule(check="memorized_pii", variant="dp", max=0)]
    gate = evaluate_gate(rules, load_inputs(reports, ("dp",)))
    assert gate["passed"] is False
    assert gate["rules"][0] == {"name": "dp-utility", "check": "test_perplexity", "variant": "dp", "max": 20.0,
                                "value": 17.28, "passed": True, "reason": "test perplexity of dp is 17.28 <= 20"}
    table = format_table(gate)
    assert "dp-utility" in table and "FAIL" in table and "gate FAILED (1 of 2 rules fail)" in table
    empty = evaluate_gate([], load_inputs(reports, ("dp",)))
    assert empty["passed"] is True and empty["rules"] == []


# ---------------------------------------------------------------- rules over `all`, utility, leaks


def test_rule_over_all_is_checked_for_every_variant(reports):
    inputs = load_inputs(reports, ("dp", "nonprivate"))
    gate = evaluate_gate([_rule(check="test_perplexity", variant="all", max=5.0)], inputs)
    by_variant = {r["variant"]: r for r in gate["rules"]}
    assert sorted(by_variant) == ["dp", "nonprivate"]
    assert by_variant["nonprivate"]["passed"] is True and by_variant["nonprivate"]["value"] == 2.06
    assert by_variant["dp"]["passed"] is False and by_variant["dp"]["name"] == "dp-test_perplexity"
    assert gate["passed"] is False  # one variant failing fails the rule over all
    named = evaluate_gate([_rule(check="test_perplexity", variant="all", max=50.0, name="usable")], inputs)
    assert [r["name"] for r in named["rules"]] == ["usable-dp", "usable-nonprivate"] and named["passed"] is True


def test_rule_over_all_fails_for_a_variant_without_the_measurement(reports):
    inputs = load_inputs(reports, ("dp", "nonprivate"))
    gate = evaluate_gate([_rule(check="memorized_pii", variant="all", max=0)], inputs)
    nonprivate = next(r for r in gate["rules"] if r["variant"] == "nonprivate")
    assert nonprivate["value"] is None and "extract/nonprivate.json is missing" in nonprivate["reason"]


@pytest.mark.parametrize("limit, passed", [(8.4, True), (8.38, False), (1.5, False)])
def test_perplexity_ratio_rule(reports, limit, passed):
    result = _evaluate(reports, _rule(check="test_perplexity_ratio", variant="dp", baseline="nonprivate", max=limit))
    assert result["value"] == pytest.approx(17.28 / 2.06)  # 8.388...
    assert result["passed"] is passed and result["baseline"] == "nonprivate"
    assert "test perplexity of dp / test perplexity of nonprivate is 8.388x" in result["reason"]


def test_perplexity_ratio_over_all_skips_its_baseline(reports):
    gate = evaluate_gate([_rule(check="test_perplexity_ratio", variant="all", baseline="nonprivate", max=10)],
                         load_inputs(reports, ("dp", "nonprivate")))
    assert [r["variant"] for r in gate["rules"]] == ["dp"] and gate["passed"] is True


def test_perplexity_ratio_missing_baseline_report_fails(reports):
    (reports / "train" / "nonprivate.json").unlink()
    result = _evaluate(reports, _rule(check="test_perplexity_ratio", variant="dp", baseline="nonprivate", max=10))
    assert result["value"] is None and "train/nonprivate.json is missing" in result["reason"]


def test_baseline_is_required_by_the_ratio_rule_and_only_by_it():
    with pytest.raises(ValueError, match="baseline is required"):
        GateRule(check="test_perplexity_ratio", variant="dp", max=1.5)
    with pytest.raises(ValueError, match="baseline is required"):
        GateRule(check="test_perplexity", variant="dp", baseline="nonprivate", max=1.5)


def test_empirical_epsilon_rule_says_it_bounds_the_lower_end(reports):
    result = _evaluate(reports, _rule(check="empirical_epsilon", variant="dp", max=1.0))
    assert "lower end" in result["reason"] and result["passed"] is True


def test_leaks_name_every_variant_with_evidence_even_when_the_gate_passes(reports):
    """dp has extracted canaries, PII, samples, an AUC interval above 0.5 and eps > 0: all listed."""
    inputs = load_inputs(reports, ("dp", "nonprivate"))
    gate = evaluate_gate([_rule(check="test_perplexity", variant="dp", max=20)], inputs)
    assert gate["passed"] is True
    assert gate["leaks"]["dp"] == [
        "1 inserted canaries extracted by search", "1 canaries found in generated samples",
        "2 PII items in memorized samples", "3 memorized private samples",
        "membership AUC 0.710 (perplexity; 95 % interval above 0.5)", "empirical epsilon >= 0.40"]
    assert "nonprivate" not in gate["leaks"]  # no exposure or extract report: nothing to judge
    assert gate["verdict"].startswith("gate PASSED (1 of 1 rules hold); dp leaks: 1 inserted canaries")


def test_no_leak_is_stated_as_such(reports):
    exposure = reports / "exposure" / "dp.json"
    data = json.loads(exposure.read_text())
    data["extracted"] = 0
    exposure.write_text(json.dumps(data))
    (reports / "extract" / "dp.json").write_text(json.dumps({
        "unique_memorized": 0, "memorized_pii": [], "memorized_canaries": [],
        "membership": {"metrics": {"perplexity": {"auc": 0.53, "auc_ci": [0.47, 0.6]}}},
        "empirical_epsilon": {"epsilon_lower_bound": 0.0}}))
    gate = evaluate_gate([], load_inputs(reports, ("dp",)))
    assert gate["leaks"] == {"dp": []} and gate["verdict"] == "gate PASSED (0 of 0 rules hold); dp: no leak measured."


# ---------------------------------------------------------------- canaryaudit gate


def _args(tmp_path: Path, rules: list[dict] | None = None, reports: Path | None = None, out: Path | None = None):
    raw = {"train": {"variants": VARIANTS}}
    if rules is not None:
        raw["gate"] = {"rules": rules}
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump(raw), encoding="utf-8")
    parser = argparse.ArgumentParser()
    add_gate_arguments(parser)
    argv = ["--params", str(params), "--reports", str(reports or tmp_path / "reports")]
    return parser.parse_args(argv + (["--out", str(out)] if out else []))


def test_cli_exit_0_when_every_default_rule_passes(tmp_path, capsys):
    make_reports(tmp_path / "reports")
    out = tmp_path / "gate.json"
    assert cmd_gate(_args(tmp_path, out=out)) == 0
    printed = capsys.readouterr().out
    assert "dp-exposure-x64" in printed and "dp-test_perplexity_ratio" in printed
    assert "gate PASSED (7 of 7 rules hold); " in printed and "nonprivate leaks: 2 inserted canaries" in printed
    assert json.loads(out.read_text())["passed"] is True


def test_cli_exit_1_when_a_rule_fails(tmp_path, capsys):
    make_reports(tmp_path / "reports")
    rules = [{"check": "exposure", "variant": "nonprivate", "insertions": 64, "max": 20.0}]
    assert cmd_gate(_args(tmp_path, rules)) == 1
    assert "nonprivate-exposure-x64" in capsys.readouterr().out


def test_cli_rule_over_all_exits_1_when_one_variant_fails_and_0_when_all_pass(tmp_path, capsys):
    make_reports(tmp_path / "reports")
    strict = [{"check": "extracted_canaries", "variant": "all", "max": 0}]
    assert cmd_gate(_args(tmp_path, strict)) == 1  # the non-private model has extracted canaries
    assert "nonprivate-extracted_canaries" in capsys.readouterr().out
    loose = [{"check": "test_perplexity", "variant": "all", "max": 100.0}]
    assert cmd_gate(_args(tmp_path, loose)) == 0


def test_cli_utility_rule_exit_codes(tmp_path):
    make_reports(tmp_path / "reports")
    rule = {"check": "test_perplexity_ratio", "variant": "dp", "baseline": "nonprivate"}
    assert cmd_gate(_args(tmp_path, [{**rule, "max": 1.5}])) == 0
    assert cmd_gate(_args(tmp_path, [{**rule, "max": 1.01}])) == 1
    assert cmd_gate(_args(tmp_path, [{**rule, "baseline": "nobody", "max": 1.5}])) == 2  # not a variant


def test_cli_exit_1_when_a_measurement_is_missing(tmp_path):
    make_reports(tmp_path / "reports", extract=False)
    assert cmd_gate(_args(tmp_path)) == 1  # the PII and membership rules have no extract report


def test_cli_exit_2_without_reports(tmp_path, capsys):
    assert cmd_gate(_args(tmp_path)) == 2
    assert "reports folder not found" in capsys.readouterr().err
    (tmp_path / "reports").mkdir()
    assert cmd_gate(_args(tmp_path)) == 2
    assert "none of the reports the gate reads exists" in capsys.readouterr().err


def test_cli_exit_2_on_unparsable_json(tmp_path, capsys):
    make_reports(tmp_path / "reports")
    (tmp_path / "reports" / "exposure" / "dp.json").write_text('{"canaries": [', encoding="utf-8")
    assert cmd_gate(_args(tmp_path)) == 2
    assert "exposure/dp.json" in capsys.readouterr().err


def test_cli_exit_2_on_bad_params(tmp_path, capsys):
    make_reports(tmp_path / "reports")
    assert cmd_gate(_args(tmp_path, [{"check": "exposure", "variant": "dp", "max": 1.0}])) == 2  # no insertions
    assert "gate.rules" in capsys.readouterr().err
    assert cmd_gate(_args(tmp_path, [{"check": "vibes", "variant": "dp", "max": 1.0}])) == 2
