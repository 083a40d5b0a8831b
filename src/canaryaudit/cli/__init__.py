"""The `canaryaudit` command: run the audit, check params, show outputs."""

from __future__ import annotations

import argparse
import sys

import yaml

from canaryaudit.cli.audit import add_audit_arguments, cmd_audit, print_outputs
from canaryaudit.env import find_workspace_root
from canaryaudit.errors import CanaryAuditError


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
    add_audit_arguments(audit)
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
              "canaryaudit.cli.gate", "add_gate_arguments", "cmd_gate")
    _add_lazy(sub, command, "compare", "side-by-side table of audit runs from the MLflow store",
              "canaryaudit.cli.compare", "add_compare_arguments", "cmd_compare")
    _add_lazy(sub, command, "schedule", "serve the Prefect audit flow on a cron schedule (needs a local Prefect server)",
              "canaryaudit.cli.schedule", "add_schedule_arguments", "cmd_schedule")
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
