"""``canaryaudit gate``: judge the reports against ``gate.rules``; exit 0 pass, 1 a rule fails, 2 bad input."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from canaryaudit.errors import CanaryAuditError
from canaryaudit.gate import (
    EXIT_FAILED,
    EXIT_INVALID,
    EXIT_PASSED,
    evaluate_gate,
    format_table,
    gate_inputs,
    invalid_inputs,
)
from canaryaudit.orchestration.dvc import stale_stages


def add_gate_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--params", default="params.yaml", help="params file with gate.rules (default: params.yaml)")
    parser.add_argument("--reports", default="reports", help="the pipeline's reports folder (default: reports)")
    parser.add_argument("--out", default=None, help="also write the result as JSON here (e.g. reports/gate.json)")
    parser.add_argument("--strict", action="store_true",
                        help="exit 2 when `dvc status` says the reports are out of date (default: a warning)")
    parser.add_argument("--no-status", action="store_true", help="do not run `dvc status` (no staleness check)")


def cmd_gate(args: argparse.Namespace) -> int:
    """Evaluate the gate, print a table; exit 0 all pass, 1 a rule fails, 2 inputs missing or invalid."""
    from canaryaudit.config import load_params
    from canaryaudit.io import write_json

    reports_dir = Path(args.reports)
    try:
        params = load_params(args.params)
        rules = params.gate.rules
        inputs = gate_inputs(rules, reports_dir, params.train.audited)
    except CanaryAuditError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_INVALID
    problem = invalid_inputs(inputs, reports_dir) if rules else None
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return EXIT_INVALID
    if rules and not getattr(args, "no_status", False):
        stale, unknown = stale_stages(Path(args.params).resolve().parent)
        if stale:
            what = (f"the reports may be out of date: dvc status says {len(stale)} stage(s) changed since they ran: "
                    f"{'; '.join(stale[:6])}{' ...' if len(stale) > 6 else ''}; rerun them (canaryaudit audit)")
            if getattr(args, "strict", False):
                print(f"error: {what} (--strict)", file=sys.stderr)
                return EXIT_INVALID
            print(f"warning: {what}; judging them anyway (--strict fails instead)", file=sys.stderr)
        elif unknown and getattr(args, "strict", False):
            print(f"error: cannot tell whether the reports are current: {unknown} (--strict)", file=sys.stderr)
            return EXIT_INVALID
    gate = evaluate_gate(rules, inputs)
    if getattr(args, "out", None):
        write_json(args.out, gate)
    print(format_table(gate) if rules else "gate PASSED (no rules configured in gate.rules)")
    return EXIT_PASSED if gate["passed"] else EXIT_FAILED
