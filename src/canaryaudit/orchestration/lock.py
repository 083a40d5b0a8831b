"""The workspace lock: two audits of one workspace (CLI, flow, sweep) run one after the other."""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator
from pathlib import Path

from canaryaudit.errors import CanaryAuditError
from canaryaudit.orchestration.common import LOCK_FILE, LogFn, no_log


def lock_path(root: Path) -> Path:
    """The lock every ``dvc repro`` launched by canaryaudit in ``root`` holds."""
    return Path(root) / LOCK_FILE


@contextlib.contextmanager
def workspace_lock(root: Path, timeout: float | None = None, on_wait: LogFn = no_log, who: str = "") -> Iterator[None]:
    """Hold the workspace lock; call ``on_wait`` once if another run holds it, then wait.

    ``timeout`` (seconds, None: forever) bounds the wait; past it a
    :class:`CanaryAuditError` names the holder. The holder writes who it is to
    ``repro.lock.owner`` for that message.
    """
    from filelock import FileLock, Timeout

    path = lock_path(root)
    path.parent.mkdir(parents=True, exist_ok=True)
    owner = path.with_name(path.name + ".owner")
    lock = FileLock(str(path))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        holder = owner.read_text(encoding="utf-8").strip() if owner.exists() else "another process"
        on_wait(f"waiting for the workspace lock {path} (held by {holder})")
        started = time.monotonic()
        try:
            lock.acquire(timeout=-1 if timeout is None else timeout)
        except Timeout:
            raise CanaryAuditError(
                f"workspace lock {path} still held by {holder} after {timeout:.0f} s; "
                "another audit is running in this workspace"
            ) from None
        on_wait(f"workspace lock acquired after {time.monotonic() - started:.1f} s")
    try:
        owner.write_text(f"pid {os.getpid()}{' ' + who if who else ''} since {time.strftime('%H:%M:%S')}\n", encoding="utf-8")
        yield
    finally:
        with contextlib.suppress(OSError):
            owner.unlink()
        lock.release()


