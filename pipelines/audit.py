"""Run the canaryaudit audit as a Prefect flow: one task per DVC stage, then the privacy gate.

    python pipelines/audit.py                      # the workspace containing the current directory
    python pipelines/audit.py -S train.epochs=1 --variants nonprivate,dp --no-fail-on-gate

Works offline: without PREFECT_API_URL, Prefect starts a temporary local server
for the run. Exit status: 0 gate passed (or no gate, or --no-fail-on-gate), 1 gate
failed or a stage failed, 2 invalid params, data or arguments. The flow itself is
``canaryaudit.flows.audit``; this file only parses the command line.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pipelines/audit.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--workspace", default=None, help="DVC workspace (default: the current one)")
    parser.add_argument("--params", default=None, help="params file for this run (default: the workspace's params.yaml)")
    parser.add_argument("-S", "--set", action="append", default=[], metavar="KEY=VALUE", help="params override, e.g. -S train.epochs=1")
    parser.add_argument("--variants", default=None, help="comma-separated subset of train.variants (default: all)")
    parser.add_argument("--targets", nargs="+", default=None, metavar="STAGE", help="run only these stages and their upstream")
    parser.add_argument("--retries", action="append", default=[], metavar="STAGE=N", help="retries for a stage or group, e.g. train=3")
    parser.add_argument("--default-retries", type=int, default=2, help="retries of other stages on a transient failure (default 2)")
    parser.add_argument("--retry-backoff", type=float, default=10.0, help="first retry delay in seconds, doubling (default 10)")
    parser.add_argument("--no-fail-on-gate", action="store_true", help="report a failed gate without failing the flow run or the exit status")
    parser.add_argument("--lock-timeout", type=float, default=None, help="seconds to wait for another audit of this workspace")
    parser.add_argument("--json", action="store_true", help="print the flow's result as JSON")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from canaryaudit import orchestration as orc
    from canaryaudit.errors import CanaryAuditError
    from canaryaudit.flows import GateFailed, audit

    try:
        result = audit(
            workspace=str(Path(args.workspace).resolve()) if args.workspace else None,
            params_file=str(Path(args.params).resolve()) if args.params else None,
            overrides=args.set,
            variants=[v.strip() for v in args.variants.split(",") if v.strip()] if args.variants else None,
            targets=args.targets,
            retries=orc.parse_retries(args.retries),
            default_retries=args.default_retries,
            retry_backoff_seconds=args.retry_backoff,
            fail_on_gate=not args.no_fail_on_gate,
            lock_timeout_seconds=args.lock_timeout,
        )
    except GateFailed as exc:
        print(f"audit: {exc}", file=sys.stderr)
        return 1
    except orc.StageFailed as exc:
        print(f"audit: {exc}", file=sys.stderr)
        return 2 if exc.kind == "validation" else 1
    except CanaryAuditError as exc:
        print(f"audit: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("audit: interrupted", file=sys.stderr)
        return 130
    if args.json:
        print(json.dumps(result, indent=2, default=str))
    else:
        for stage in result["stages"]:
            print(f"  {stage['stage']:<24} {stage['status']:<11} {stage['seconds']:>7.1f} s")
        gate = result["gate"]
        print(f"gate: {gate['status']} ({gate['reason']})")
        if result.get("mlflow_run_id"):
            print(f"MLflow run {result['mlflow_run_id']}, Prefect flow run {result['flow_run_id']}")
    return 0  # a failed gate with --no-fail-on-gate: reported above, not an error


if __name__ == "__main__":
    sys.exit(main())
