"""DVC stage `report`: the self-contained HTML report, summary.json (DVC metrics) and gate.json.

The stage succeeds even when the gate fails (the report is what explains why);
`canaryaudit gate` turns the verdict into an exit code. It then closes the
pipeline's MLflow parent run with the summary metrics, the verdict as tag
``canaryaudit.gate`` and the report and gate.json as artifacts.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from canaryaudit import tracking
from canaryaudit.config import PRETRAIN_MODEL, Params, load_params
from canaryaudit.gate import evaluate_gate, format_table
from canaryaudit.io import atomic_open, write_json
from canaryaudit.report.inputs import load_inputs
from canaryaudit.report.provenance import collect_provenance
from canaryaudit.report.render import render_report
from canaryaudit.report.summary import build_summary, summary_metrics
from canaryaudit.stagekit import log, run_stage, stage_parser


def close_parent_run(params: Params, summary: dict[str, Any], gate: dict[str, Any], files: list[Path],
                     provenance: dict[str, Any]) -> str:
    """Log the summary, the verdict, the provenance and the artifacts to the pipeline's parent run, then finish it."""
    tracker = tracking.Tracker()
    settings = {"report": params.report.model_dump(mode="json"),
                "gate": {"rules": [r.model_dump(mode="json", exclude_none=True) for r in params.gate.rules]}}
    run_id = tracker.log_stage("report", settings, summary_metrics(summary))
    tags = {"canaryaudit.gate": "passed" if gate["passed"] else "failed"}
    for variant in params.train.variants:
        model = params.train.variant(variant).model
        tags[f"canaryaudit.model.{variant}"] = f"{model.arch} {model.layers}x{model.width}"
    for name, external in params.train.external.items():
        tags[f"canaryaudit.model.{name}"] = f"external {Path(external.path).name}"
    tracker.set_tags(run_id, tags)
    tracking.log_provenance(tracker, run_id, provenance)
    for path in files:
        tracker.log_artifact(run_id, path, artifact_path="report")
    tracker.finish_pipeline_run(run_id, "FINISHED")
    return run_id


def main(args) -> None:
    started = time.perf_counter()
    params = load_params(args.params)
    inputs = load_inputs(args.reports, params.train.audited, data_dir=args.data)
    gate = evaluate_gate(params.gate.rules, inputs)
    summary = build_summary(inputs, gate)
    root = Path(args.params).resolve().parent
    provenance = collect_provenance(root, Path(args.data), root / "models", Path(args.params),
                                    [*params.train.audited, PRETRAIN_MODEL])
    html = render_report(inputs, params, gate, generated_at=time.strftime("%Y-%m-%d %H:%M %Z"),
                         provenance=provenance)
    with atomic_open(args.out) as handle:
        handle.write(html)
    write_json(args.summary, summary)
    write_json(args.gate, gate)
    for path in [*inputs.missing, *inputs.invalid]:
        log.warning("report: input %s is missing or unreadable; the report says so", path)
    log.info("report: %s (%.0f kB, %.2f s)", args.out, Path(args.out).stat().st_size / 1e3, time.perf_counter() - started)
    if tracking.tracking_enabled():
        run_id = close_parent_run(params, summary, gate, [Path(args.out), Path(args.gate), Path(args.summary)],
                                  provenance)
        log.info("report: closed MLflow run %s (gate %s)", run_id, "passed" if gate["passed"] else "failed")
    print(format_table(gate) if gate["rules"] else "gate: no rules configured")
    print(f"report: {Path(args.out).resolve()}")


if __name__ == "__main__":
    parser = stage_parser("report", __doc__)
    parser.add_argument("--reports", default="reports", help="folder of the stage reports")
    parser.add_argument("--data", default="data", help="data folder (canary formats for the report)")
    parser.add_argument("--out", default="reports/index.html")
    parser.add_argument("--summary", default="reports/summary.json")
    parser.add_argument("--gate", default="reports/gate.json")
    run_stage("report", main, parser)
