"""The privacy gate's verdict as an audit reads it from ``reports/gate.json``, and its markdown."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from canaryaudit.orchestration.common import GATE_FILE, REPORT_FILE
from canaryaudit.orchestration.stages import Stage


@dataclass
class GateVerdict:
    status: str  # passed | failed | missing | skipped
    passed: bool | None
    reason: str
    rules: list[dict[str, Any]] = field(default_factory=list)
    gate_file: str | None = None
    report_file: str | None = None

    @property
    def failed_rules(self) -> list[dict[str, Any]]:
        return [r for r in self.rules if not r.get("passed")]

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "failed_rules": self.failed_rules}

    def log_line(self) -> str:
        if self.status == "failed":
            names = "; ".join(r.get("reason") or r.get("name") or r.get("check", "?") for r in self.failed_rules)
            return f"GATE FAILED: {len(self.failed_rules)} of {len(self.rules)} rules failed: {names} (report: {self.report_file or self.gate_file})"
        if self.status == "passed":
            return f"gate passed: all {len(self.rules)} rules hold ({self.gate_file})"
        return f"gate {self.status}: {self.reason}"


#: A failed privacy gate fails the run: `canaryaudit audit` and `pipelines/audit.py` exit 1 and the flow run
#: fails, scheduled runs included. ``--no-fail-on-gate`` (``fail_on_gate=False``) only reports it. A gate
#: that is missing or was skipped is reported, never counted as a failure or a pass.
FAIL_ON_GATE = True


def gate_stage(stages: Sequence[Stage]) -> Stage | None:
    """The stage that writes ``reports/gate.json``, if the pipeline has one."""
    return next((s for s in stages if GATE_FILE in s.outs), None)


def read_gate(root: Path, stages: Sequence[Stage], selected: Sequence[str]) -> GateVerdict:
    """The verdict of this run: reads ``reports/gate.json`` when the stage writing it was part of the run."""
    producer = gate_stage(stages)
    if producer is None:
        return GateVerdict("missing", None, f"no gate configured: no stage in dvc.yaml writes {GATE_FILE}")
    if producer.name not in selected:
        return GateVerdict(
            "skipped", None, f"the {producer.name} stage (which writes {GATE_FILE}) was not part of this run"
        )
    return read_gate_file(root, producer.name)


def read_gate_file(root: Path, producer: str = "report") -> GateVerdict:
    """The verdict ``reports/gate.json`` holds (written by stage ``producer``): passed, failed or missing.

    The one reader of the gate file for the flows and ``canaryaudit audit``; a file without rules is
    "missing" (no gate configured), never a pass.
    """
    root = Path(root)
    path = root / GATE_FILE
    report = root / REPORT_FILE
    report_uri = report.resolve().as_uri() if report.exists() else None
    if not path.exists():
        return GateVerdict("missing", None, f"{producer} ran but {GATE_FILE} is missing")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        rules = list(data.get("rules") or [])
        passed = bool(data["passed"])
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        return GateVerdict("missing", None, f"{GATE_FILE} is not a gate verdict ({exc})", gate_file=str(path))
    if not rules:
        return GateVerdict("missing", None, f"{GATE_FILE} has no rules: no gate configured", gate_file=str(path),
                           report_file=report_uri)
    return GateVerdict(
        "passed" if passed else "failed",
        passed,
        "all rules hold" if passed else f"{sum(not r.get('passed') for r in rules)} rule(s) failed",
        rules,
        str(path),
        report_uri,
    )


def markdown_cell(value: Any) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        value = f"{value:.4g}"
    return str(value).replace("|", "\\|").replace("\n", " ")


def gate_markdown(verdict: GateVerdict, workspace: Path, mlflow_run_id: str | None = None) -> str:
    """The failed rules as a markdown table, with links to the report and the verdict file."""
    lines = [
        f"# Privacy gate failed: {len(verdict.failed_rules)} of {len(verdict.rules)} rules",
        "",
        f"Workspace `{workspace}`" + (f", MLflow run `{mlflow_run_id}`" if mlflow_run_id else ""),
        "",
        "| rule | check | variant | value | max | reason |",
        "|---|---|---|---|---|---|",
    ]
    for rule in verdict.failed_rules:
        cells = [rule.get("name"), rule.get("check"), rule.get("variant"), rule.get("value"), rule.get("max"), rule.get("reason")]
        lines.append("| " + " | ".join(markdown_cell(c) for c in cells) + " |")
    lines.append("")
    if verdict.report_file:
        lines.append(f"Report: [{verdict.report_file}]({verdict.report_file})  ")
    if verdict.gate_file:
        uri = Path(verdict.gate_file).resolve().as_uri()
        lines.append(f"Verdict: [{uri}]({uri})")
    return "\n".join(lines) + "\n"


