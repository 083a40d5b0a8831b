"""What every stage script shares: argument parsing, logging, clean errors and Ctrl-C."""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Callable

from canaryaudit.errors import CanaryAuditError

log = logging.getLogger("canaryaudit")

EXIT_USER_ERROR = 2
EXIT_INTERRUPTED = 130


def stage_parser(stage: str, description: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=f"stages/{stage}.py", description=description)
    parser.add_argument("--params", default="params.yaml", help="params file (default: params.yaml)")
    return parser


def configure_logging() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")


def run_stage(stage: str, body: Callable[[argparse.Namespace], None], parser: argparse.ArgumentParser) -> None:
    """Run ``body(args)``; a user error prints one message (exit 2), Ctrl-C exits 130.

    Outputs are written atomically, so neither leaves a partial file behind.
    """
    args = parser.parse_args()
    configure_logging()
    started = time.perf_counter()
    try:
        body(args)
    except CanaryAuditError as exc:
        log.error("%s failed: %s", stage, exc)
        sys.exit(EXIT_USER_ERROR)
    except KeyboardInterrupt:
        log.error("%s interrupted; no partial output was kept", stage)
        sys.exit(EXIT_INTERRUPTED)
    log.info("%s done in %.1f s", stage, time.perf_counter() - started)
