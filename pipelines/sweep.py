"""Run the canaryaudit pipeline over a params grid and compare the points.

    python pipelines/sweep.py --grid train.batch_size=16,32 --grid train.model.width=64,128 \\
        --targets exposure --variants nonprivate,dp
    python pipelines/sweep.py --grid-file grid.yaml       # {train.batch_size: [16, 32], ...}

Each point runs in its own copy of the workspace (``.canaryaudit/sweeps/NAME/pNN``)
sharing the DVC cache, logs one MLflow run, and the sweep writes
``reports/sweeps/NAME/comparison.{csv,md}`` and ``privacy_utility.svg``.
Exit status: 0 all points ran, 1 a point failed, 2 invalid grid or params.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pipelines/sweep.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--grid", action="append", default=[], metavar="KEY=V1,V2", help="one grid axis (repeat for more)")
    parser.add_argument("--grid-file", default=None, help="YAML mapping of dotted keys to value lists")
    parser.add_argument("--workspace", default=None, help="DVC workspace (default: the current one)")
    parser.add_argument("--params", default=None, help="base params file (default: the workspace's params.yaml)")
    parser.add_argument("--targets", nargs="+", default=None, metavar="STAGE", help="stop at these stages (default: all)")
    parser.add_argument("--variants", default=None, help="comma-separated subset of train.variants")
    parser.add_argument("--name", default=None, help="sweep name (default: sweep-DATE-TIME)")
    parser.add_argument("--out", default=None, help="output folder (default: reports/sweeps/NAME)")
    parser.add_argument("--work-dir", default=None, help="where the point workspaces go (default: .canaryaudit/sweeps/NAME)")
    parser.add_argument("--parallel", type=int, default=1,
                        help="points run at once on this machine (default 1); with --task-runner dask and no "
                             "--address: the local cluster's worker processes")
    parser.add_argument("--task-runner", default="thread", choices=["thread", "dask"],
                        help="thread (this process) or dask (prefect-dask: a local cluster, or --address)")
    parser.add_argument("--address", default=None, help="a running Dask scheduler, e.g. tcp://scheduler:8786")
    parser.add_argument("--retries", type=int, default=1, help="retries of a point after a transient failure")
    parser.add_argument("--no-shared-cache", action="store_true", help="do not share the workspace's DVC cache")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from canaryaudit import orchestration as orc
    from canaryaudit.errors import CanaryAuditError
    from canaryaudit.flows import SweepFailed, sweep, sweep_task_runner

    try:
        grid = orc.load_grid_file(Path(args.grid_file)) if args.grid_file else {}
        for key, values in orc.parse_grid(args.grid).items():
            grid[key] = values
        if not grid:
            raise CanaryAuditError("give the grid: --grid KEY=V1,V2 (repeatable) or --grid-file FILE")
        if args.parallel < 1:
            raise CanaryAuditError(f"--parallel: {args.parallel}; give 1 or more")
        runner = sweep_task_runner(args.task_runner, args.address, args.parallel)
        result = sweep.with_options(task_runner=runner)(
            grid=grid,
            workspace=str(Path(args.workspace).resolve()) if args.workspace else None,
            params_file=str(Path(args.params).resolve()) if args.params else None,
            targets=args.targets,
            variants=[v.strip() for v in args.variants.split(",") if v.strip()] if args.variants else None,
            name=args.name,
            output_dir=str(Path(args.out).resolve()) if args.out else None,
            work_dir=str(Path(args.work_dir).resolve()) if args.work_dir else None,
            max_parallel=0 if args.task_runner == "dask" else args.parallel,  # Dask schedules every point itself
            retries=args.retries,
            share_cache=not args.no_shared_cache,
        )
    except (SweepFailed, orc.StageFailed) as exc:
        print(f"sweep: {exc}", file=sys.stderr)
        return 1
    except CanaryAuditError as exc:
        print(f"sweep: error: {exc}", file=sys.stderr)
        return 2
    print(Path(result["files"]["markdown"]).read_text(encoding="utf-8"))
    print(json.dumps(result["files"], indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
