"""Errors a user can act on. Each message names the file, line or params key at fault."""

from __future__ import annotations


class CanaryAuditError(Exception):
    """Base class: an error with a message meant for the user, not a traceback."""


class ParamsError(CanaryAuditError):
    """params.yaml (or an override) is invalid; the message names each dotted key at fault."""


class DataError(CanaryAuditError):
    """Input data is missing, empty, corrupt or wrongly encoded; the message names file and line."""

    def __init__(self, path: object, message: str, line: int | None = None) -> None:
        where = f"{path}:{line}" if line is not None else f"{path}"
        super().__init__(f"{where}: {message}")
        self.path = str(path)
        self.line = line


class OutputError(CanaryAuditError):
    """An output could not be written (disk full, quota, permissions); nothing partial was kept."""

    def __init__(self, path: object, message: str) -> None:
        super().__init__(f"{path}: could not write ({message}); free space or fix the folder and rerun; "
                         "no partial output was kept")
        self.path = str(path)


class RegistryError(CanaryAuditError):
    """An unknown name was asked of a registry; the message lists the known ones."""
