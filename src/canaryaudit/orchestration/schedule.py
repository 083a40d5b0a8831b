"""Scheduled audits: the Prefect deployment of the audit flow on a cron schedule."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from canaryaudit.errors import CanaryAuditError


def prefect_api_url() -> str | None:
    """PREFECT_API_URL from the environment or the active Prefect profile (None: ephemeral)."""
    from prefect.settings import PREFECT_API_URL

    return PREFECT_API_URL.value() or None


def build_deployment(
    cron: str,
    workspace: Path,
    name: str = "scheduled",
    timezone: str | None = None,
    parameters: Mapping[str, Any] | None = None,
):
    """The audit flow as a cron-scheduled RunnerDeployment (at most one run at a time)."""
    from prefect.schedules import Cron
    from prefect.types.entrypoint import EntrypointType

    from canaryaudit.flows import audit

    try:
        schedule = Cron(cron, timezone=timezone)
    except ValueError as exc:
        raise CanaryAuditError(
            f"--cron {cron!r} / --timezone {timezone!r}: not a valid cron expression or time zone "
            f"(e.g. \"0 3 * * *\": 03:00 every day): {exc}"
        ) from None
    return audit.to_deployment(
        name=name,
        schedules=[schedule],
        parameters={"workspace": str(Path(workspace).resolve()), **dict(parameters or {})},
        concurrency_limit=1,  # the server never starts a second run while one is active
        tags=["canaryaudit", "scheduled"],
        description=f"canaryaudit audit of {Path(workspace).resolve()} on cron {cron!r}",
        entrypoint_type=EntrypointType.MODULE_PATH,  # canaryaudit.flows.audit, importable wherever canaryaudit is installed
    )


