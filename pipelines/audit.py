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


def build_parser() -> argparse.ArgumentParser:
    from canaryaudit.cli.flags import add_flow_flags

    parser = argparse.ArgumentParser(prog="pipelines/audit.py", description=__doc__.split("\n\n")[0])
    add_flow_flags(parser)
    parser.add_argument("--targets", nargs="+", default=None, metavar="STAGE", help="run only these stages and their upstream")
    parser.add_argument("--retry-backoff", type=float, default=10.0, help="first retry delay in seconds, doubling (default 10)")
    parser.add_argument("--lock-timeout", type=float, default=None, help="seconds to wait for another audit of this workspace")
    parser.add_argument("--json", action="store_true", help="print the flow's result as JSON")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from canaryaudit import orchestration as orc
    from canaryaudit.cli.flags import flow_parameters
    from canaryaudit.errors import CanaryAuditError
    from canaryaudit.flows import GateFailed, audit

    try:
        result = audit(
            **flow_parameters(args),
            targets=args.targets,
            retry_backoff_seconds=args.retry_backoff,
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
