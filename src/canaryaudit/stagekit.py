"""What every stage script shares: argument parsing, logging, clean errors and Ctrl-C."""

from __future__ import annotations

import argparse
import errno
import logging
import signal
import sys
import time
from collections.abc import Callable

from canaryaudit.errors import CanaryAuditError

log = logging.getLogger("canaryaudit")

EXIT_USER_ERROR = 2
EXIT_INTERRUPTED = 130
EXIT_TERMINATED = 143  # 128 + SIGTERM, as a shell reports it


class Terminated(BaseException):
    """SIGTERM arrived (DVC, Prefect or a CI runner stopping the stage): unwinds like Ctrl-C, so
    atomic writes discard their temporary files and open MLflow runs are marked KILLED."""


def _raise_terminated(_signum: int, _frame: object) -> None:
    raise Terminated()


#: errno values that mean "the output cannot be written here", not a bug: a message, exit 2.
_WRITE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS}
_DISK_FULL_TEXT = ("no space left on device", "database or disk is full", "disk quota exceeded")


def storage_problem(exc: BaseException) -> str | None:
    """One line when ``exc`` (or what caused it) is a full disk, a quota or a read-only folder, else None.

    Libraries wrap the OSError (safetensors' SafetensorError, SQLAlchemy's OperationalError from the
    MLflow store), so the chain and the text are both looked at.
    """
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, OSError) and current.errno in _WRITE_ERRNOS:
            where = f"{current.filename}: " if current.filename else ""
            return f"{where}{current.strerror or current}"
        line = _disk_full_line(str(current))
        if line is not None:
            return f"{type(current).__name__}: {line[:300]}"
        current = current.__cause__ or current.__context__
    return None


def _disk_full_line(text: str) -> str | None:
    return next((line.strip() for line in text.splitlines() if any(m in line.lower() for m in _DISK_FULL_TEXT)), None)


class _OneLineStoreErrors(logging.Filter):
    """MLflow's SQL store logs each database error with its full traceback before raising it; on a full
    disk that is several tracebacks for one cause, which the stage reports in one line anyway."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and record.exc_info[1] is not None and storage_problem(record.exc_info[1]):
            record.msg, record.args = f"MLflow store: {storage_problem(record.exc_info[1])}", None
            record.exc_info, record.exc_text = None, None
        return True


def stage_parser(stage: str, description: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=f"stages/{stage}.py", description=description)
    parser.add_argument("--params", default="params.yaml", help="params file (default: params.yaml)")
    return parser


def configure_logging() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    logging.getLogger("mlflow.store.db.utils").addFilter(_OneLineStoreErrors())


def run_in_processes(nproc: int) -> None:
    """Run this stage script again (``sys.argv``) in ``nproc`` local processes with torchrun, and wait.

    Uses torchrun's own entry (``torch.distributed.run``) with ``--standalone`` (a rendezvous on a
    free localhost port). A failed worker has already logged its error; this process then exits
    with that worker's status (2 for a params or data error, as in one process), so retries and
    messages behave the same. Ctrl-C stops every worker (torchrun forwards it).
    """
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import get_args_parser, run

    args = get_args_parser().parse_args(["--standalone", f"--nproc-per-node={nproc}", sys.argv[0], *sys.argv[1:]])
    log.info("launching %d processes with torchrun (train.distributed.nproc)", nproc)
    try:
        run(args)
    except ChildFailedError as exc:
        _rank, failure = exc.get_first_failure()
        sys.exit(failure.exitcode if failure.exitcode > 0 else EXIT_TERMINATED)
    except SignalException as exc:
        raise KeyboardInterrupt if exc.sigval == signal.SIGINT else Terminated() from None


def run_stage(stage: str, body: Callable[[argparse.Namespace], None], parser: argparse.ArgumentParser) -> None:
    """Run ``body(args)``; a user error prints one message (exit 2), Ctrl-C exits 130.

    Outputs are written atomically, so neither leaves a partial file behind.
    """
    args = parser.parse_args()
    configure_logging()
    started = time.perf_counter()
    signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        body(args)
    except CanaryAuditError as exc:
        log.error("%s failed: %s", stage, exc)
        sys.exit(EXIT_USER_ERROR)
    except KeyboardInterrupt:
        log.error("%s interrupted; no partial output was kept", stage)
        sys.exit(EXIT_INTERRUPTED)
    except Terminated:
        log.error("%s terminated (SIGTERM); no partial output was kept", stage)
        sys.exit(EXIT_TERMINATED)
    except Exception as exc:
        problem = storage_problem(exc)
        if problem is None:
            raise  # a bug: keep the traceback
        log.error("%s failed: could not write (%s); free space and rerun; no partial output was kept", stage, problem)
        sys.exit(EXIT_USER_ERROR)
    log.info("%s done in %.1f s", stage, time.perf_counter() - started)
