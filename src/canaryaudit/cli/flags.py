"""The flags the audit commands share, defined once with one set of defaults.

``canaryaudit audit``, ``canaryaudit schedule``, ``python pipelines/audit.py`` and
``python pipelines/schedule.py`` take the gate-failure flag from here; the flow commands
(schedule, pipelines/audit.py) also take the params, variant and retry flags.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from canaryaudit.orchestration.verdict import FAIL_ON_GATE

DEFAULT_RETRIES = 2  # retries of a stage after a transient failure (a crash, a kill), unless --retries names it


def add_gate_failure_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--fail-on-gate", action=argparse.BooleanOptionalAction, default=FAIL_ON_GATE,
        help="a failed privacy gate exits 1 and fails the flow run (default); --no-fail-on-gate only reports it",
    )


def add_flow_flags(parser: argparse.ArgumentParser) -> None:
    """Workspace, params, variants, retries and the gate flag of a Prefect audit run."""
    parser.add_argument("--workspace", default=None, help="DVC workspace (default: the current one)")
    parser.add_argument("--params", default=None, help="params file for the run (default: the workspace's params.yaml)")
    parser.add_argument("-S", "--set", action="append", default=[], metavar="KEY=VALUE",
                        help="params override, e.g. -S train.epochs=1")
    parser.add_argument("--variants", default=None, help="comma-separated subset of train.variants (default: all)")
    parser.add_argument("--retries", action="append", default=[], metavar="STAGE=N",
                        help="retries for a stage or group, e.g. train=3")
    parser.add_argument("--default-retries", type=int, default=DEFAULT_RETRIES,
                        help=f"retries of other stages on a transient failure (default {DEFAULT_RETRIES})")
    add_gate_failure_flag(parser)


def flow_parameters(args: argparse.Namespace) -> dict[str, Any]:
    """The audit flow's parameters from :func:`add_flow_flags`' arguments (paths made absolute)."""
    from canaryaudit.orchestration.stages import parse_retries

    params: dict[str, Any] = {
        "overrides": list(args.set or []),
        "retries": parse_retries(args.retries or []),
        "default_retries": args.default_retries,
        "fail_on_gate": args.fail_on_gate,
    }
    if args.workspace:
        params["workspace"] = str(Path(args.workspace).resolve())
    if args.params:
        params["params_file"] = str(Path(args.params).resolve())
    if args.variants:
        params["variants"] = [v.strip() for v in args.variants.split(",") if v.strip()]
    return params
