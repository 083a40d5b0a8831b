"""``canaryaudit schedule`` (and ``python pipelines/schedule.py``): serve the audit flow on a cron schedule."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from canaryaudit.cli.flags import add_flow_flags, flow_parameters


def add_schedule_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--cron", required=True, help='cron expression, e.g. "0 3 * * *" (03:00 every day)')
    parser.add_argument("--timezone", default=None, help="IANA time zone of the cron expression (default: UTC)")
    parser.add_argument("--name", default="scheduled", help="deployment name (runs show as audit/NAME)")
    add_flow_flags(parser)


def schedule_parameters(args: argparse.Namespace) -> dict[str, Any]:
    """The parameters every scheduled run gets (the workspace is the deployment's own)."""
    parameters = flow_parameters(args)
    parameters.pop("workspace", None)
    return parameters


def cmd_schedule(args: argparse.Namespace) -> int:
    """Serve the audit flow on a cron schedule against a Prefect server (blocks until Ctrl-C)."""
    from canaryaudit.env import find_workspace_root
    from canaryaudit.orchestration import build_deployment, prefect_api_url, resolve_params

    root = Path(args.workspace).resolve() if args.workspace else find_workspace_root()
    api = prefect_api_url()
    if not api:
        print(
            "error: scheduled audits need a Prefect server: the ephemeral one started for single runs has no scheduler.\n"
            "  1. in another terminal: prefect server start --host 127.0.0.1\n"
            "  2. export PREFECT_API_URL=http://127.0.0.1:4200/api\n"
            f"  3. canaryaudit schedule --cron {json.dumps(args.cron)}",
            file=sys.stderr,
        )
        return 2
    parameters = schedule_parameters(args)
    resolve_params(root, parameters.get("params_file"), parameters["overrides"])  # fail now, not at 03:00
    deployment = build_deployment(args.cron, root, args.name, args.timezone, parameters)
    from prefect import serve

    print(f"serving audit/{args.name} on cron {args.cron!r} ({args.timezone or 'UTC'}) for {root} via {api}")
    print(f"  run one now: prefect deployment run 'audit/{args.name}'   stop: Ctrl-C (pauses the schedule)")
    serve(deployment, limit=1)
    return 0
