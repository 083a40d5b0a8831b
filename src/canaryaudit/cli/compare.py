"""``canaryaudit compare``: audit runs side by side from the MLflow store (see :mod:`canaryaudit.compare`)."""

from __future__ import annotations

import argparse
import sys

from canaryaudit.compare import comparison_rows, format_table, to_csv
from canaryaudit.tracking import experiment_name, tracking_uri


def add_compare_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--experiment", default=None,
                        help="MLflow experiment (default: $CANARYAUDIT_EXPERIMENT or canaryaudit)")
    parser.add_argument("--last", type=int, default=10, metavar="N", help="the N most recent pipeline runs (default: 10)")
    parser.add_argument("--csv", default=None, metavar="PATH", help="also write the table as CSV")


def cmd_compare(args: argparse.Namespace) -> int:
    """Print the runs side by side (and write CSV); exit 2 when the store or experiment has no runs."""
    from canaryaudit.io import atomic_open

    if args.last < 1:
        print("error: --last must be >= 1", file=sys.stderr)
        return 2
    experiment = args.experiment or experiment_name()
    uri = tracking_uri()
    rows = comparison_rows(experiment, args.last, uri)
    if not rows:
        what = "no experiment" if rows is None else "no pipeline runs in experiment"
        print(f"error: {what} {experiment!r} in {uri}; run `canaryaudit audit` first", file=sys.stderr)
        return 2
    print(format_table(rows))
    if args.csv:
        with atomic_open(args.csv) as handle:
            handle.write(to_csv(rows))
        print(f"\nwritten: {args.csv}")
    return 0
