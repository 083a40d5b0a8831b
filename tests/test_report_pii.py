"""The report's PII attack section and adversarial detector table: numbers as computed independently here."""

from __future__ import annotations

import html as htmllib
import re

from scipy import stats

from canaryaudit.gate import evaluate_rule
from canaryaudit.config import GateRule
from canaryaudit.io import read_json, write_json
from canaryaudit.report.inputs import load_inputs
from tests.test_report import make_reports, render


def _section(html: str) -> str:
    return html[html.index('id="pii-attacks"') : html.index('id="dp"')]


def test_pii_section_shows_accuracy_chance_interval_and_reconstructed(tmp_path):
    reports = make_reports(tmp_path / "reports")
    html, _ = render(reports)
    section = _section(html)
    # nonprivate person_name: 62 of 100, exact interval computed here from the beta quantiles
    low, high = stats.beta.ppf(0.025, 62, 39), stats.beta.ppf(0.975, 63, 38)
    assert "0.620" in section and f"[{low:.3f}, {high:.3f}]" in section
    pooled = (62 + 31 + 9) / 280
    assert f"{pooled:.3f}" in section and "0.100" in section
    assert re.search(r"nonprivate</td><td>person_name</td>.*?<td class=\"num hot\">14</td>", section, re.S)
    assert "***ie" in section  # a masked example, never the value


def test_pii_gate_checks_read_the_report(tmp_path):
    reports = make_reports(tmp_path / "reports")
    inputs = load_inputs(reports, ["nonprivate", "dp"])
    rule = GateRule(check="pii_inference_accuracy", variant="nonprivate", max=0.1, use="ci_low", pii_type="person_name")
    result = evaluate_rule(rule, inputs)
    assert result["value"] == stats.beta.ppf(0.025, 62, 39) or abs(result["value"] - stats.beta.ppf(0.025, 62, 39)) < 1e-9
    assert result["passed"] is False and result["pii_type"] == "person_name" and result["use"] == "ci_low"
    dp = evaluate_rule(GateRule(check="pii_inference_accuracy", variant="dp", max=0.1, use="ci_low"), inputs)
    assert dp["passed"] is True and abs(dp["value"] - stats.beta.ppf(0.025, 27, 254)) < 1e-9
    rebuilt = evaluate_rule(GateRule(check="pii_reconstructed", variant="nonprivate", max=0), inputs)
    assert rebuilt["value"] == 16 and rebuilt["passed"] is False
    data = read_json(reports / "pii" / "dp.json")
    data["reconstruction"] = None
    write_json(reports / "pii" / "dp.json", data)
    missing = evaluate_rule(GateRule(check="pii_reconstructed", variant="dp", max=0), load_inputs(reports, ["dp"]))
    assert missing["value"] is None and missing["passed"] is False and "reconstruction" in missing["reason"]


def test_adversarial_table_renders_when_sanitize_reports_it(tmp_path):
    reports = make_reports(tmp_path / "reports")
    data = read_json(reports / "sanitize.json")
    data["adversarial"] = {"documents": 400, "seed": 5, "detection_quality": {
        "phone": {"truth": 321, "detected": 320, "true_positives": 320, "precision": 1.0, "recall": 319 / 321}}}
    write_json(reports / "sanitize.json", data)
    html, _ = render(reports)
    assert "adversarial corpus" in html and f"{319 / 321:.3f}" in htmllib.unescape(html)


def test_summary_carries_the_pii_headline_numbers(tmp_path):
    from canaryaudit.report.summary import build_summary, summary_metrics

    reports = make_reports(tmp_path / "reports")
    inputs = load_inputs(reports, ["nonprivate", "dp"])
    summary = build_summary(inputs, {"passed": True, "rules": []})
    nonprivate = summary["variants"]["nonprivate"]
    assert nonprivate["pii_inference_accuracy"] == (62 + 31 + 9) / 280  # pooled over the types, as in the section
    assert nonprivate["pii_reconstructed"] == 16
    assert summary_metrics(summary)["variant.nonprivate.pii_reconstructed"] == 16.0
