"""``canaryaudit audit``: ``dvc repro`` under one MLflow parent run, then the outputs and the gate verdict."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from canaryaudit.cli.flags import add_gate_failure_flag
from canaryaudit.env import find_workspace_root


def add_audit_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("targets", nargs="*", help="stages to reproduce (default: all)")
    add_gate_failure_flag(parser)


#: What the pipeline writes, in stage order, for the summary printed after a run.
OUTPUTS = (
    ("data/raw", "prepared corpus: train/valid/test.jsonl (+ pii_truth.jsonl for the builtin corpus)"),
    ("data/sanitized", "sanitized splits"),
    ("data/augmented/train.jsonl", "training split with canaries inserted"),
    ("data/canaries", "canaries.jsonl (every canary, included or held out) and formats.json (|R| per format)"),
    ("reports/prepare.json", "document counts and sizes per split"),
    ("reports/sanitize.json", "PII found per type and split, documents dropped, detector precision/recall"),
    ("reports/canaries.json", "canary counts"),
    ("models", "one Hugging Face folder per variant (from_pretrained loads it): weights, tokenizer, README.md, card.json"),
    ("reports/train", "per variant: test loss/perplexity, epsilon, delta, time, memory (.json); loss per epoch (.csv)"),
    ("reports/exposure", "per variant: px, exposure by each estimator, exact rank, extraction, per canary (.json, .csv)"),
    ("reports/extract", "per variant: extraction table, memorized samples, membership inference, empirical epsilon"),
    ("reports/summary.json", "headline numbers per variant (dvc metrics show)"),
    ("reports/gate.json", "privacy gate: each rule, measured value, pass/fail"),
    ("reports/index.html", "the self-contained HTML privacy report"),
)


def run_repro(root: Path, targets: list[str], parent_run_id: str | None) -> int:
    """`dvc repro` in ``root`` under the workspace lock it shares with the Prefect audit flow."""
    from canaryaudit.orchestration import repro_passthrough, workspace_lock

    with workspace_lock(root, on_wait=lambda msg: print(msg, file=sys.stderr), who="canaryaudit audit"):
        return repro_passthrough(root, targets, parent_run_id)


def _ensure_plots_template(root: Path) -> None:
    """The offline page `.dvc/config` names for `dvc plots show`; a failure only warns (plots are extras)."""
    from canaryaudit.plots import write_offline_template

    try:
        write_offline_template(root)
    except (ImportError, OSError, RuntimeError) as exc:
        print(f"warning: could not write the offline plots page (`canaryaudit plots template`): {exc}", file=sys.stderr)


def print_outputs(root: Path) -> None:
    print("\nOutputs:")
    for rel, what in OUTPUTS:
        path = root / rel
        if path.exists():
            size = sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.is_dir() else path.stat().st_size
            print(f"  {rel:<30} {size / 1e3:>9.1f} kB  {what}")
    print(f"\nMLflow runs: mlflow ui --backend-store-uri sqlite:///{root / 'mlflow.db'}")


def cmd_audit(args: argparse.Namespace) -> int:
    from canaryaudit import tracking
    from canaryaudit.config import load_params

    root = find_workspace_root()
    load_params(root / "params.yaml")  # fail fast, before any stage runs (dvc.yaml reads params.yaml)
    _ensure_plots_template(root)
    run_id = None
    tracker = None
    if tracking.tracking_enabled():
        tracker = tracking.Tracker(root)
        run_id = tracker.start_pipeline_run(tags={"canaryaudit.launcher": "cli"})
        print(f"MLflow parent run {run_id} ({tracking.tracking_uri(root)})")
    code = 1
    try:
        code = run_repro(root, args.targets, run_id)
    finally:
        if tracker is not None and run_id is not None:
            if code == 0:
                from canaryaudit.report.summary import complete_parent_run

                complete_parent_run(tracker, run_id, root / "reports" / "summary.json")
            if not tracker.close_pipeline_run(run_id, "FINISHED" if code == 0 else "FAILED"):
                print(f"MLflow: nothing ran, run {run_id} deleted (no empty run for a no-op audit)")
    if code != 0:
        return code
    print_outputs(root)
    print("\nTo record this audit (DVC's convention): git add dvc.lock reports && git commit -m 'audit'")
    status = print_verdict(root)
    return 1 if args.fail_on_gate and status == "failed" else 0


def print_verdict(root: Path) -> str:
    """Print the report's path and the gate verdict; return its status (passed | failed | missing)."""
    from canaryaudit.orchestration import read_gate_file

    report = root / "reports" / "index.html"
    if report.exists():
        print(f"\nPrivacy report: {report}")
    verdict = read_gate_file(root)
    if verdict.status == "missing":
        print(f"Privacy gate: not evaluated ({verdict.reason})")
        return verdict.status
    failed = verdict.failed_rules
    print(f"Privacy gate: {verdict.status.upper()} ({len(verdict.rules) - len(failed)} of {len(verdict.rules)} rules hold)")
    for rule in failed:
        print(f"  failed: {rule.get('reason', rule.get('name'))}")
    return verdict.status
