"""The `canaryaudit` command: run the audit, check params, show outputs."""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from canaryaudit.env import find_workspace_root
from canaryaudit.errors import CanaryAuditError

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


def _lock_path(root: Path) -> Path:
    from canaryaudit.orchestration import lock_path

    return lock_path(root)


def run_repro(root: Path, targets: list[str], parent_run_id: str | None) -> int:
    """`dvc repro` in ``root`` under the workspace lock it shares with the Prefect audit flow."""
    from canaryaudit.orchestration import workspace_lock

    dvc = shutil.which("dvc") or str(Path(sys.executable).with_name("dvc"))
    env = dict(os.environ)
    if parent_run_id:
        env["CANARYAUDIT_PARENT_RUN_ID"] = parent_run_id
    # Stage commands call `python`: make it this interpreter's (the project venv).
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    with workspace_lock(root, on_wait=lambda msg: print(msg, file=sys.stderr), who="canaryaudit audit"):
        return subprocess.call([dvc, "repro", *targets], cwd=root, env=env)


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
    passed = print_verdict(root)
    return 1 if args.fail_on_gate and passed is not True else 0


def print_verdict(root: Path) -> bool | None:
    """Print the report's path and the gate verdict; None when the gate was not evaluated."""
    import json

    report, gate = root / "reports" / "index.html", root / "reports" / "gate.json"
    if report.exists():
        print(f"\nPrivacy report: {report}")
    if not gate.exists():
        print("Privacy gate: not evaluated (reports/gate.json missing)")
        return None
    try:
        verdict = json.loads(gate.read_text(encoding="utf-8"))
    except ValueError as exc:
        print(f"Privacy gate: unreadable {gate} ({exc}); run `canaryaudit gate`")
        return None
    failed = [r for r in verdict.get("rules", []) if not r.get("passed")]
    print(f"Privacy gate: {'PASSED' if verdict.get('passed') else 'FAILED'} "
          f"({len(verdict.get('rules', [])) - len(failed)} of {len(verdict.get('rules', []))} rules hold)")
    for rule in failed:
        print(f"  failed: {rule.get('reason', rule.get('name'))}")
    return bool(verdict.get("passed"))


def cmd_params(args: argparse.Namespace) -> int:
    from canaryaudit.config import load_params

    params = load_params(args.params, overrides=args.set or ())
    if args.action == "show":
        print(yaml.safe_dump(params.model_dump(mode="json"), sort_keys=False), end="")
    else:
        print(f"{args.params}: OK")
    return 0


def cmd_plots(args: argparse.Namespace) -> int:
    from canaryaudit.plots import write_offline_template

    path = write_offline_template(find_workspace_root(), force=args.force)
    print(f"{path}: `dvc plots show` and `dvc plots diff` pages work offline (Vega inlined)")
    return 0


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The full parser; the options of a heavy subcommand are loaded only when ``command`` names it."""
    parser = argparse.ArgumentParser(prog="canaryaudit", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    audit = sub.add_parser("audit", help="run the DVC pipeline (dvc repro) under one MLflow parent run")
    audit.add_argument("targets", nargs="*", help="stages to reproduce (default: all)")
    audit.add_argument("--fail-on-gate", action="store_true", help="exit 1 when the privacy gate fails")
    audit.set_defaults(func=cmd_audit)
    params = sub.add_parser("params", help="validate params.yaml, or show it with defaults filled in")
    params.add_argument("action", choices=["check", "show"])
    params.add_argument("--params", default="params.yaml")
    params.add_argument("-S", "--set", action="append", metavar="KEY=VALUE", help="override, e.g. -S data.seed=7")
    params.set_defaults(func=cmd_params)
    plots = sub.add_parser("plots", help="write .dvc/plots/offline.html, the page `dvc plots show` uses (no network)")
    plots.add_argument("action", choices=["template"])
    plots.add_argument("--force", action="store_true", help="rewrite it even when present")
    plots.set_defaults(func=cmd_plots)
    outputs = sub.add_parser("outputs", help="list the pipeline outputs present in this workspace")
    outputs.set_defaults(func=lambda _a: print_outputs(find_workspace_root()) or 0)
    _add_lazy(sub, command, "gate", "check the privacy gate rules against the reports (exit 0 pass, 1 fail, 2 bad input)",
              "canaryaudit.gate", "add_gate_arguments", "cmd_gate")
    _add_lazy(sub, command, "compare", "side-by-side table of audit runs from the MLflow store",
              "canaryaudit.compare", "add_compare_arguments", "cmd_compare")
    _add_lazy(sub, command, "schedule", "serve the Prefect audit flow on a cron schedule (needs a local Prefect server)",
              "canaryaudit.orchestration", "add_schedule_arguments", "cmd_schedule")
    return parser


def _add_lazy(sub, chosen: str | None, name: str, help_text: str, module: str, add_arguments: str,
              command: str) -> None:
    """A subcommand whose module (Prefect, MLflow: seconds to import) loads only when it is the one run."""
    import importlib

    parser = sub.add_parser(name, help=help_text, description=help_text)
    if chosen != name:
        return
    mod = importlib.import_module(module)
    getattr(mod, add_arguments)(parser)
    parser.set_defaults(func=getattr(mod, command))


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    command = next((a for a in argv if not a.startswith("-")), None)
    args = build_parser(command).parse_args(argv)
    try:
        return int(args.func(args))
    except CanaryAuditError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
