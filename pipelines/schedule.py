"""Serve the audit flow on a cron schedule (same as ``canaryaudit schedule``).

    prefect server start --host 127.0.0.1              # another terminal
    export PREFECT_API_URL=http://127.0.0.1:4200/api
    python pipelines/schedule.py --cron "0 3 * * *"    # blocks; Ctrl-C stops and pauses the schedule
"""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    from canaryaudit.cli.schedule import add_schedule_arguments, cmd_schedule
    from canaryaudit.errors import CanaryAuditError

    parser = argparse.ArgumentParser(prog="pipelines/schedule.py", description=__doc__.split("\n\n")[0])
    add_schedule_arguments(parser)
    args = parser.parse_args(argv)
    try:
        return cmd_schedule(args)
    except CanaryAuditError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 0


if __name__ == "__main__":
    sys.exit(main())
