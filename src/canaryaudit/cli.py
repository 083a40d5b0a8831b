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
    ("models", "one folder per variant: model.safetensors, model_config.json, tokenizer, card.json"),
    ("reports/train", "per variant: test loss/perplexity, epsilon, delta, time, memory (.json); loss per epoch (.csv)"),
    ("reports/exposure", "per variant: px, exposure by each estimator, exact rank, extraction, per canary (.json, .csv)"),
)


def _lock_path(root: Path) -> Path:
    return root / ".canaryaudit" / "repro.lock"


def run_repro(root: Path, targets: list[str], parent_run_id: str | None) -> int:
    """`dvc repro` in ``root`` under a workspace file lock (two repros in one workspace fail)."""
    from filelock import FileLock

    dvc = shutil.which("dvc") or str(Path(sys.executable).with_name("dvc"))
    env = dict(os.environ)
    if parent_run_id:
        env["CANARYAUDIT_PARENT_RUN_ID"] = parent_run_id
    # Stage commands call `python`: make it this interpreter's (the project venv).
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    lock = _lock_path(root)
    lock.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(lock)):
        return subprocess.call([dvc, "repro", *targets], cwd=root, env=env)


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
            tracker.finish_pipeline_run(run_id, "FINISHED" if code == 0 else "FAILED")
    if code == 0:
        print_outputs(root)
    return code


def cmd_params(args: argparse.Namespace) -> int:
    from canaryaudit.config import load_params

    params = load_params(args.params, overrides=args.set or ())
    if args.action == "show":
        print(yaml.safe_dump(params.model_dump(mode="json"), sort_keys=False), end="")
    else:
        print(f"{args.params}: OK")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="canaryaudit", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    audit = sub.add_parser("audit", help="run the DVC pipeline (dvc repro) under one MLflow parent run")
    audit.add_argument("targets", nargs="*", help="stages to reproduce (default: all)")
    audit.set_defaults(func=cmd_audit)
    params = sub.add_parser("params", help="validate params.yaml, or show it with defaults filled in")
    params.add_argument("action", choices=["check", "show"])
    params.add_argument("--params", default="params.yaml")
    params.add_argument("-S", "--set", action="append", metavar="KEY=VALUE", help="override, e.g. -S data.seed=7")
    params.set_defaults(func=cmd_params)
    outputs = sub.add_parser("outputs", help="list the pipeline outputs present in this workspace")
    outputs.set_defaults(func=lambda _a: print_outputs(find_workspace_root()) or 0)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
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
